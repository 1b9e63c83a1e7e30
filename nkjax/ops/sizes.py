"""Layer arithmetic: output sizes, receptive fields, parameter counts."""

from collections.abc import Sequence


def output_size(
  n: int,
  k: int,
  *,
  stride: int = 1,
  padding: tuple[int, int] = (0, 0),
  dilation: int = 1,
) -> int:
  """Output length of a conv or pool along one axis.

  floor((n + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1;
  e.g. 32 with a 5-wide kernel at stride 1 gives 28.
  """
  return (n + sum(padding) - dilation * (k - 1) - 1) // stride + 1


def receptive_field(
  layers: Sequence[tuple[int, int] | tuple[int, int, int]],
) -> tuple[int, int]:
  """Receptive field and jump of the last layer of a stack, in input pixels.

  Args:
    layers: (kernel, stride) or (kernel, stride, dilation) per layer, input first.

  Returns:
    `(field, jump)`: one output unit sees `field` input pixels along an axis,
    and neighbouring output units are `jump` input pixels apart. Each layer
    widens the field by (k - 1) * dilation * jump and multiplies the jump by
    its stride.
  """
  field, jump = 1, 1
  for layer in layers:
    k, s, d = (*layer, 1) if len(layer) == 2 else layer
    field += (k - 1) * d * jump
    jump *= s
  return field, jump


def conv_params(
  kh: int, kw: int, in_channels: int, out_channels: int, *, bias: bool = True
) -> int:
  """Weights of a convolution: kh * kw * in * out (+ out biases), whatever the image size."""
  return kh * kw * in_channels * out_channels + (out_channels if bias else 0)


def dense_params(inputs: int, outputs: int, *, bias: bool = True) -> int:
  """Weights of a fully connected layer: inputs * outputs (+ outputs biases)."""
  return inputs * outputs + (outputs if bias else 0)
