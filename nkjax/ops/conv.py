"""2-D convolution and pooling written from their definitions, NHWC.

These are the teaching versions: each output is the sum (or max, or mean) over
the window that the definition names, computed as one strided slice per window
offset. They equal `jax.lax.conv_general_dilated` and flax's pooling (the tests
check it); models use the library versions, which XLA fuses better.
"""

import functools

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


def cpu_forms_apply() -> bool:
  """Whether the CPU-only forms of this module (the sum of shifted matmuls for
  tiny convolution outputs, the sub-pixel transposed convolution) are taken.

  Only when JAX computes on the host CPU: both work around XLA:CPU's kernels
  and would only add ops on a GPU or a TPU, whose convolution emitters handle
  these shapes at full rate. The backend is asked when the op is traced
  (`jax.default_backend()`, the backend that `jax.jit` compiles for unless
  told otherwise), so one program never mixes the two.
  """
  return jax.default_backend() == 'cpu'


def fusion_boundaries_apply() -> bool:
  """Whether `cpu_fusion_boundary` adds its barrier: on a CPU with jax 0.12+.

  Measured A/B on the idle 2-core machine, ResNet-20 at batch 128, 3
  alternating pairs, ms a step without -> with the boundaries: jax 0.12
  543 -> 435, 467 -> 354, 459 -> 335 (23% less); jax 0.10.2 465 -> 496,
  517 -> 572, 498 -> 485 (no gain), so older XLAs go without.
  """
  return cpu_forms_apply() and _jax_version() >= (0, 12)


def _jax_version() -> tuple[int, int]:
  major, minor = jax.__version__.split('.')[:2]
  return int(major), int(minor)


def cpu_fusion_boundary(x: jax.Array) -> jax.Array:
  """`x` itself, computed once: where `fusion_boundaries_apply()`, an
  `optimization_barrier` that XLA does not fuse across; elsewhere nothing.

  XLA:CPU fused the batch-norm, ReLU and residual additions of several ResNet
  blocks into each transpose that feeds a weight-gradient convolution, so every
  such transpose recomputed them (`python -m nkjax.bench resnet20 --profile`:
  one transpose fusion taking four blocks' norm outputs was 5.6% of the step;
  the transposes 29% in all, against PyTorch's 5% for copies). A boundary at
  each block's output and after its first ReLU keeps each computed once. GPU
  and TPU fusion gains from the same freedom.
  """
  return jax.lax.optimization_barrier(x) if fusion_boundaries_apply() else x


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
  if not cpu_forms_apply() or not plain:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
  if lhs.shape[-1] == 1 and out.shape[1] * out.shape[2] > 4 and precision is None:
    pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    y = _one_channel_conv(
      lhs, rhs, tuple(window_strides), pads, tuple(rhs_dilation or (1, 1))
    )
    return y.astype(out.dtype)
  if out.shape[1] * out.shape[2] > 4:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
  pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
  y = conv2d(
    lhs,
    rhs,
    stride=tuple(window_strides),
    padding=pads,
    dilation=tuple(rhs_dilation or (1, 1)),
  )
  return y.astype(out.dtype)


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
  is faster (16x16x64 -> 3: 50 vs 122 ms), so it is kept there, and on other
  backends.
  """
  kh, kw, _, cout = w.shape
  if not cpu_forms_apply() or cout < 8:
    return jax.lax.conv_transpose(
      x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
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
