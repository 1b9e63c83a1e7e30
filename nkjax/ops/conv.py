"""2-D convolution and pooling written from their definitions, NHWC.

These are the teaching versions: each output is the sum (or max, or mean) over
the window that the definition names, computed as one strided slice per window
offset. They equal `jax.lax.conv_general_dilated` and flax's pooling (the tests
check it); models use the library versions, which XLA fuses better, through
`nkjax.ops.cpu_dispatch` (the forms that XLA:CPU runs fast). `max_pool` is
flax's max pooling with a cheaper gradient when windows do not overlap.
"""

import jax
import jax.numpy as jnp

from nkjax.errors import UserError
from nkjax.ops.sizes import output_size

Padding = str | int | tuple[tuple[int, int], tuple[int, int]]


def _pairs(padding: Padding):
  """Explicit ((top, bottom), (left, right)) padding from 'VALID', an int or pairs."""
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  if isinstance(padding, tuple) and len(padding) == 2:
    return tuple(tuple(p) for p in padding)
  raise UserError(
    f"padding must be 'SAME', 'VALID', an int or ((top, bottom), (left, right)); got {padding!r}"
  )


def _windows(x: jax.Array, window, stride, dilation, out_hw):
  """Yields ((di, dj), the strided slice of x that window offset (di, dj) sees)."""
  (kh, kw), (sh, sw), (dh, dw), (oh, ow) = window, stride, dilation, out_hw
  for di in range(kh):
    for dj in range(kw):
      top, left = di * dh, dj * dw
      yield (
        (di, dj),
        x[
          :, top : top + sh * (oh - 1) + 1 : sh, left : left + sw * (ow - 1) + 1 : sw, :
        ],
      )


def conv2d(
  x: jax.Array,
  w: jax.Array,
  *,
  stride: int | tuple[int, int] = 1,
  padding: Padding = 'VALID',
  dilation: int | tuple[int, int] = 1,
) -> jax.Array:
  """y[n, i, j, o] = sum_{di, dj, c} x_pad[n, s*i + d*di, s*j + d*dj, c] * w[di, dj, c, o].

  Args:
    x: `[batch, height, width, in_channels]`.
    w: `[kh, kw, in_channels, out_channels]`.
    stride, dilation: an int or (vertical, horizontal).
    padding: 'VALID', 'SAME' (as lax: output = ceil(size / stride)), an int,
      or ((top, bottom), (left, right)).

  Returns:
    `[batch, out_height, out_width, out_channels]`.

  The course's shapes: a 32x32x3 image and six 5x5 filters give 28x28x6; at
  stride 2, floor((32 - 5) / 2) + 1 = 14. A 3x3 averaging kernel over a ramp:

  >>> import jax.numpy as jnp
  >>> conv2d(jnp.ones((1, 32, 32, 3)), jnp.ones((5, 5, 3, 6))).shape
  (1, 28, 28, 6)
  >>> conv2d(jnp.ones((1, 32, 32, 3)), jnp.ones((5, 5, 3, 6)), stride=2).shape
  (1, 14, 14, 6)
  >>> ramp = jnp.arange(5.0).reshape(1, 1, 5, 1) * jnp.ones((1, 3, 5, 1))
  >>> conv2d(ramp, jnp.full((3, 3, 1, 1), 1 / 9))[0, :, :, 0]
  Array([[1., 2., 3.]], dtype=float32)
  """
  stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
  dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
  kh, kw, cin, cout = w.shape
  if x.shape[-1] != cin:
    raise UserError(f'input has {x.shape[-1]} channels but the kernel expects {cin}')
  pads = (
    _same_pads(x.shape[1:3], (kh, kw), stride, dilation)
    if padding == 'SAME'
    else _pairs(padding)
  )
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  out_hw = tuple(
    output_size(x.shape[1 + a], (kh, kw)[a], stride=stride[a], dilation=dilation[a])
    for a in range(2)
  )
  y = jnp.zeros((x.shape[0], *out_hw, cout), jnp.result_type(x, w))
  for (di, dj), patch in _windows(x, (kh, kw), stride, dilation, out_hw):
    y = y + patch @ w[di, dj]
  return y


def _same_pads(hw, window, stride, dilation):
  # XLA's 'SAME': output = ceil(n / s), the padding split with the extra row at the end.
  pads = []
  for n, k, s, d in zip(hw, window, stride, dilation, strict=True):
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    pads.append((total // 2, total - total // 2))
  return tuple(pads)


def pool2d(
  x: jax.Array,
  *,
  window: int | tuple[int, int],
  stride: int | tuple[int, int] | None = None,
  kind: str = 'max',
  padding: Padding = 'VALID',
) -> jax.Array:
  """Max or average over each window, NHWC; stride defaults to the window.

  Average pooling divides by the full window size, padding included (as flax
  and `torch.nn.AvgPool2d(count_include_pad=True)` do); max pooling pads with
  -inf so that padding never wins.

  Args:
    x: `[batch, height, width, channels]`.
    window, stride: an int or (vertical, horizontal).
    kind: 'max' or 'avg'.
    padding: as in `conv2d`.

  Returns:
    `[batch, out_height, out_width, channels]`.

  The course's example, a 4x4 map pooled over 2x2 windows at stride 2:

  >>> import jax.numpy as jnp
  >>> course_map = jnp.array(
  ...   [[1, 5, 4, 3], [2, 6, 4, 0], [3, 1, 7, 9], [2, 8, 6, 5]], jnp.float32
  ... )[None, :, :, None]
  >>> pool2d(course_map, window=2, kind='max')[0, :, :, 0]
  Array([[6., 4.],
         [8., 9.]], dtype=float32)
  >>> pool2d(course_map, window=2, kind='avg')[0, :, :, 0]
  Array([[3.5 , 2.75],
         [3.5 , 6.75]], dtype=float32)
  """
  window = (window, window) if isinstance(window, int) else tuple(window)
  stride = (
    window
    if stride is None
    else ((stride, stride) if isinstance(stride, int) else tuple(stride))
  )
  if kind not in ('max', 'avg'):
    raise UserError(f'unknown pooling {kind!r}; valid choices: avg, max')
  pads = (
    _same_pads(x.shape[1:3], window, stride, (1, 1))
    if padding == 'SAME'
    else _pairs(padding)
  )
  fill = -jnp.inf if kind == 'max' else 0
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=fill)
  out_hw = tuple(
    output_size(x.shape[1 + a], window[a], stride=stride[a]) for a in range(2)
  )
  patches = [p for _, p in _windows(x, window, stride, (1, 1), out_hw)]
  if kind == 'max':
    return jnp.max(jnp.stack(patches), axis=0)
  return jnp.sum(jnp.stack(patches), axis=0) / (window[0] * window[1])


def adaptive_avg_pool(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
  """Average over windows that tile the input into `out_hw` cells, NHWC.

  Cell i along an axis of length n spans [floor(i n / m), ceil((i + 1) n / m)),
  as in `torch.nn.AdaptiveAvgPool2d`: VGG's classifier expects a 7x7 map
  whatever the input size.
  """
  rows = []
  (h, w), (oh, ow) = x.shape[1:3], out_hw
  for i in range(oh):
    r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
    cols = []
    for j in range(ow):
      c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
      cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
    rows.append(jnp.stack(cols, axis=1))
  return jnp.stack(rows, axis=1)


def max_pool(
  x: jax.Array, window: tuple[int, int], strides: tuple[int, int]
) -> jax.Array:
  """Max pooling, VALID, NHWC, as `flax.linen.max_pool`, but faster to differentiate
  when windows do not overlap.

  A non-overlapping window (stride = window, sizes divisible) is a reshape and a
  max, whose gradient is an elementwise mask; the general op's gradient is
  XLA's select-and-scatter, which measured 2.7x slower on a CPU for LeNet's pools.
  """
  import flax.linen as nn

  n, h, w, c = x.shape
  (kh, kw), (sh, sw) = window, strides
  if (kh, kw) != (sh, sw) or h % kh or w % kw:
    return nn.max_pool(x, window, strides)
  return x.reshape(n, h // kh, kh, w // kw, kw, c).max(axis=(2, 4))
