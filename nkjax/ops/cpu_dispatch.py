"""Where XLA:CPU runs a convolution slowly, the same convolution in a form it
runs fast; on a GPU or TPU, XLA's own op unchanged.

* `conv_general_dilated`: drop-in for `lax.conv_general_dilated` (what
  `nkjax.models.layers.Conv` runs): tiny outputs as the definition's sum of
  shifted matmuls (`nkjax.ops.conv.conv2d`), one-channel inputs as shifted
  multiply-adds with XLA's own gradient;
* `conv_transpose`: `lax.conv_transpose` as s*s sub-pixel convolutions;
* `cpu_fusion_boundary`: a barrier that keeps XLA:CPU from recomputing
  batch-norm blocks inside weight-gradient transposes.

The choice is made inside the program (`on_cpu`, `jax.lax.platform_dependent`):
a program lowered for a GPU or a TPU holds only XLA's ops, one lowered for
the CPU only the CPU forms, and one exported for several platforms carries
both and picks at compile time. Each form's speed-up is measured in its
docstring.
"""

import functools

import jax
import jax.numpy as jnp

from nkjax.ops.conv import _same_pads, _windows, conv2d
from nkjax.ops.sizes import output_size


def on_cpu(cpu_form, xla_form, *args):
  """`cpu_form(*args)` in the program compiled for a CPU, `xla_form(*args)` in
  one compiled for any other platform.

  The choice is made for the platform the program is lowered for, not the
  backend of the process that traces it (`jax.lax.platform_dependent`): a
  program exported on a CPU for a TPU or a GPU holds XLA's own op only. Both
  forms must return the same shapes and dtypes.
  """
  return jax.lax.platform_dependent(*args, cpu=cpu_form, default=xla_form)


def fusion_boundaries_apply() -> bool:
  """Whether `cpu_fusion_boundary` adds its barrier to CPU programs: with jax 0.12+.

  Measured A/B on the idle 2-core machine, ResNet-20 at batch 128, 3
  alternating pairs, ms a step without -> with the boundaries: jax 0.12
  543 -> 435, 467 -> 354, 459 -> 335 (23% less); jax 0.10.2 465 -> 496,
  517 -> 572, 498 -> 485 (no gain), so older XLAs go without. Programs for
  other platforms never have them.
  """
  return _jax_version() >= (0, 12)


def _jax_version() -> tuple[int, int]:
  major, minor = jax.__version__.split('.')[:2]
  return int(major), int(minor)


def cpu_fusion_boundary(x: jax.Array) -> jax.Array:
  """`x` itself, computed once: in a CPU program where
  `fusion_boundaries_apply()`, an `optimization_barrier` that XLA does not
  fuse across; elsewhere nothing.

  XLA:CPU fused the batch-norm, ReLU and residual additions of several ResNet
  blocks into each transpose that feeds a weight-gradient convolution, so every
  such transpose recomputed them (`python -m nkjax.bench resnet20 --profile`:
  one transpose fusion taking four blocks' norm outputs was 5.6% of the step;
  the transposes 29% in all, against PyTorch's 5% for copies). A boundary at
  each block's output and after its first ReLU keeps each computed once. GPU
  and TPU fusion gains from the same freedom.
  """
  if not fusion_boundaries_apply():
    return x
  return on_cpu(jax.lax.optimization_barrier, lambda y: y, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _one_channel_conv(lhs, rhs, window_strides, padding, rhs_dilation):
  """A convolution of a one-channel input as the definition's kh*kw shifted
  products, `x_shift * w[di, dj, 0, :]`, which XLA fuses into one elementwise
  loop; its gradient is XLA's own (`_one_channel_conv_bwd`)."""
  pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
  stride, dilation = tuple(window_strides), tuple(rhs_dilation)
  kh, kw, _, cout = rhs.shape
  if pads == 'SAME':
    pads = _same_pads(lhs.shape[1:3], (kh, kw), stride, dilation)
  elif pads == 'VALID':
    pads = ((0, 0), (0, 0))
  x = jnp.pad(lhs, ((0, 0), *pads, (0, 0)))
  out_hw = tuple(
    output_size(x.shape[1 + a], (kh, kw)[a], stride=stride[a], dilation=dilation[a])
    for a in range(2)
  )
  # Accumulated in float32 whatever the compute type, as XLA's convolution does.
  y = jnp.zeros((x.shape[0], *out_hw, cout), jnp.float32)
  for (di, dj), patch in _windows(x, (kh, kw), stride, dilation, out_hw):
    y = y + patch.astype(jnp.float32) * rhs[di, dj, 0].astype(jnp.float32)
  return y.astype(jnp.result_type(lhs, rhs))


def _lax_nhwc(lhs, rhs, window_strides, padding, rhs_dilation):
  return jax.lax.conv_general_dilated(
    lhs, rhs, window_strides, padding, rhs_dilation=rhs_dilation,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )  # fmt: skip


def _one_channel_conv_fwd(lhs, rhs, window_strides, padding, rhs_dilation):
  y = _one_channel_conv(lhs, rhs, window_strides, padding, rhs_dilation)
  return y, (lhs, rhs)


def _one_channel_conv_bwd(window_strides, padding, rhs_dilation, residuals, g):
  lhs, rhs = residuals
  conv = functools.partial(
    _lax_nhwc, window_strides=window_strides, padding=padding, rhs_dilation=rhs_dilation
  )
  # The convolution is linear in each argument: transposing it gives XLA's two
  # gradient convolutions, without recomputing the forward one.
  (d_lhs,) = jax.linear_transpose(lambda x: conv(x, rhs), lhs)(g)
  (d_rhs,) = jax.linear_transpose(lambda w: conv(lhs, w), rhs)(g)
  return d_lhs, d_rhs


_one_channel_conv.defvjp(_one_channel_conv_fwd, _one_channel_conv_bwd)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  precision=None,
  preferred_element_type=None,
):
  """`lax.conv_general_dilated`, except for two shapes that XLA:CPU runs slowly.

  * Tiny outputs: XLA's CPU convolution ran a 3x3 convolution of 512 channels
    on a 2x2 map at 3 GFLOP/s, 70x below its rate on 4x4 maps (VGG's last stage
    on 32x32 images); for outputs of at most 4 pixels the definition's sum of
    shifted matmuls (`conv2d`) is used instead (788 ms -> 21 ms forward and
    backward, measured).
  * One input channel (LeNet's C1 on grey digits, SRCNN and VDSR on the Y
    channel): the forward pass is kh*kw shifted multiply-adds, one fused
    elementwise loop, and the gradient stays XLA's (a custom VJP). LeNet-5's
    C1 forward, batch 256 of 28x28 on one core: 18.7 -> 1.25 ms (jax 0.10.2),
    2.6 -> 1.3 ms with jax 0.12's oneDNN convolutions.

  Drop-in for `flax.linen.Conv(conv_general_dilated=...)`.
  """
  kwargs = dict(
    lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count, precision=precision, preferred_element_type=preferred_element_type,
  )  # fmt: skip
  out = jax.eval_shape(
    lambda a, b: jax.lax.conv_general_dilated(a, b, window_strides, padding, **kwargs),
    lhs,
    rhs,
  )
  nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ('NHWC', 'HWIO', 'NHWC'))
  plain = (
    jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc
    and feature_group_count == 1
    and all(d == 1 for d in (lhs_dilation or (1, 1)))
  )

  def xla(lhs, rhs):
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)

  pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
  if not plain:
    return xla(lhs, rhs)
  if lhs.shape[-1] == 1 and out.shape[1] * out.shape[2] > 4 and precision is None:

    def cpu(lhs, rhs):
      y = _one_channel_conv(
        lhs, rhs, tuple(window_strides), pads, tuple(rhs_dilation or (1, 1))
      )
      return y.astype(out.dtype)

    return on_cpu(cpu, xla, lhs, rhs)
  if out.shape[1] * out.shape[2] > 4:
    return xla(lhs, rhs)

  def cpu(lhs, rhs):
    y = conv2d(
      lhs,
      rhs,
      stride=tuple(window_strides),
      padding=pads,
      dilation=tuple(rhs_dilation or (1, 1)),
    )
    return y.astype(out.dtype)

  return on_cpu(cpu, xla, lhs, rhs)


def _transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  # lax.conv_transpose's padding of the stride-dilated input for 'SAME' and 'VALID'.
  if padding == 'SAME':
    total = k + s - 2
    lo = k - 1 if s > k - 1 else -(-total // 2)
  else:
    total, lo = k + s - 2 + max(k - s, 0), k - 1
  return lo, total - lo


def _window(x: jax.Array, axis: int, start: int, length: int) -> jax.Array:
  """x[start : start + length] along `axis`, zeros where that runs off either end."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (max(0, -start), max(0, start + length - n))
  x = jnp.pad(x, pad)
  return jax.lax.slice_in_dim(x, max(0, start), max(0, start) + length, axis=axis)


def conv_transpose(
  x: jax.Array,
  w: jax.Array,
  strides: tuple[int, int],
  padding: str | tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """`lax.conv_transpose` (NHWC, HWIO, the kernel not flipped), as s*s small
  convolutions whose outputs interleave: the sub-pixel form.

  The definition convolves w over x with s - 1 zeros inserted between its
  pixels; output pixel o only meets the taps t = o - lo (mod s), so each output
  phase r is an ordinary stride-1 convolution of x with w[t0::s]. It skips the
  multiplications by inserted zeros, and its gradient is the ordinary
  convolution's. Measured on XLA:CPU, batch 128, 4x4 kernels, stride 2, forward
  and backward: 4x4x256 -> 128 channels 538 -> 48 ms, 8x8x128 -> 64 975 -> 109 ms,
  32x32x128 -> 64 37.8 s -> 2.7 s. With fewer than 8 output channels XLA's own op
  is faster (16x16x64 -> 3: 50 vs 122 ms), so it is kept there, and in programs
  for other platforms (`on_cpu`).
  """

  def xla(x, w):
    return jax.lax.conv_transpose(
      x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  if w.shape[-1] < 8:
    return xla(x, w)
  return on_cpu(
    functools.partial(_sub_pixel_conv_transpose, strides=strides, padding=padding),
    xla,
    x,
    w,
  )


def _sub_pixel_conv_transpose(x, w, *, strides, padding):
  kh, kw, _, cout = w.shape
  pads = (
    [_transpose_pads(k, s, padding) for k, s in zip((kh, kw), strides, strict=True)]
    if isinstance(padding, str)
    else [tuple(p) for p in padding]
  )
  # Per axis and phase r: (first tap t0, number of taps, first input index e, outputs).
  phases = []
  for n, k, s, (lo, hi) in zip(x.shape[1:3], (kh, kw), strides, pads, strict=True):
    out = (n - 1) * s + 1 + lo + hi - k + 1
    axis = []
    for r in range(s):
      t0 = (lo - r) % s
      axis.append((t0, len(range(t0, k, s)), (r + t0 - lo) // s, len(range(r, out, s))))
    phases.append((out, axis))
  (out_h, rows), (out_w, cols) = phases
  qh, qw = -(-out_h // strides[0]), -(-out_w // strides[1])
  grid = []
  for t0h, kh_r, eh, nh in rows:
    line = []
    for t0w, kw_r, ew, nw in cols:
      if kh_r == 0 or kw_r == 0:  # no tap reaches this phase
        z = jnp.zeros((x.shape[0], nh, nw, cout), jnp.result_type(x, w))
      else:
        xw = _window(_window(x, 1, eh, nh + kh_r - 1), 2, ew, nw + kw_r - 1)
        z = conv_general_dilated(
          xw, w[t0h::strides[0], t0w::strides[1]], (1, 1), 'VALID',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        )  # fmt: skip
      line.append(jnp.pad(z, ((0, 0), (0, qh - nh), (0, qw - nw), (0, 0))))
    grid.append(jnp.stack(line, axis=3))  # [n, qh, qw, s_w, c]
  y = jnp.stack(grid, axis=2)  # [n, qh, s_h, qw, s_w, c]
  y = y.reshape(x.shape[0], qh * strides[0], qw * strides[1], cout)
  return y[:, :out_h, :out_w]
