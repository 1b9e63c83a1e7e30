"""RoI pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) with static shapes and gradients.

Both take the features of one image, `[H, W, C]`, and `R` regions of interest
`(x1, y1, x2, y2)` in image pixels (`nkjax.ops.boxes`' continuous convention),
mapped onto the feature map by `spatial_scale` (1 / stride, e.g. 1 / 16); vmap
them over a batch. Neither loops over boxes: RoI pooling reads each bin's
maximum from a table of power-of-two window maxima, RoIAlign applies each RoI's
bilinear weights as two matrix products (on large maps, one gather of the taps).
`spatial_scale`, `output_size` and the flags are static Python values.
"""

import functools

import jax
import jax.numpy as jnp

from nkjax.errors import UserError


def _check(features, rois, output_size):
  if features.ndim != 3:
    raise UserError(
      f'features must be [H, W, C] for one image (vmap over a batch); got {features.shape}'
    )
  if rois.ndim != 2 or rois.shape[-1] != 4:
    raise UserError(f'rois must be [R, 4] as (x1, y1, x2, y2); got {rois.shape}')
  if len(output_size) != 2 or min(output_size) < 1:
    raise UserError(f'output_size must be two positive ints; got {output_size!r}')
  return tuple(int(s) for s in output_size)


def _round_half_away(x):
  """C's round(): halves go away from zero (jnp.round goes to even)."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def roi_pool(
  features: jax.Array,
  rois: jax.Array,
  *,
  output_size: tuple[int, int] = (7, 7),
  spatial_scale: float,
) -> jax.Array:
  """Fast R-CNN's RoI max pooling: the Caffe layer's quantisation, with its bin
  edges computed exactly.

  Each RoI's corners are scaled by `spatial_scale` and rounded to whole feature
  cells (halves away from zero); the RoI then covers cells
  `round(x1 s) .. round(x2 s)` inclusive (so at least one), split into
  `oh x ow` bins whose cell ranges are `[floor(i h / oh), ceil((i + 1) h / oh))`
  in integer arithmetic, offset by the RoI's start and clipped to the map. Each
  output is the maximum over its bin; an empty bin (wholly outside the map)
  gives 0. Each bin's gradient goes to its maximal cell (of equal maxima, one).

  The Caffe layer and torchvision's `roi_pool` compute the same edges in
  float32, `floor(i * (h / oh))` and `ceil((i + 1) * (h / oh))`, which differ
  where the product rounds across an integer. Of RoIs 1 to 256 cells long
  pooled into 1 to 14 bins, 47 of the 3,584 (length, bins) pairs differ, each
  in one or two bins by one cell; up to 64 cells: (7, 13), (14, 13), (28, 13),
  (29, 11), (47, 11), (56, 13), (57, 7), (57, 14), (58, 11) (the float last
  bin ends one cell past the RoI) and (62, 14) (the float bin 7 starts one cell
  early). With 7 bins only lengths 57, 114, 121, 228, 235, 242 and 249 differ,
  so VGG-16's 7 x 7 pooling of RoIs up to 56 cells matches torchvision exactly.

  Each bin's maximum is read from a 2-D sparse table of power-of-two window
  maxima (four reads per bin), so the cost does not grow with the bin size; the
  table holds (log2 H + 1)(log2 W + 1) copies of the map (and as many int32
  argmax indices when differentiated): 140 MB each for VGG-16's 38 x 50 x 512
  conv5_3 map of a 600 x 800 image, 262 KB for an 8 x 8 x 64 map.

  Args:
    features: `[H, W, C]` feature map of one image.
    rois: `[R, 4]` boxes in image pixels.
    output_size: `(oh, ow)`; Fast R-CNN with VGG-16 uses 7 x 7.
    spatial_scale: feature cells per image pixel (1 / 16 for VGG-16's conv5_3).

  Returns:
    `[R, oh, ow, C]` pooled features, dtype of `features`.
  """
  features, rois = jnp.asarray(features), jnp.asarray(rois, jnp.float32)
  output_size = _check(features, rois, output_size)
  return _roi_pool(features, rois, output_size=output_size, spatial_scale=spatial_scale)


# The cores are jitted so that eager callers compile once per shape (under an
# outer jit they inline); the sizes, the scale and the flags are static.
@functools.partial(jax.jit, static_argnames=('output_size', 'spatial_scale'))
def _roi_pool(features, rois, *, output_size, spatial_scale):
  oh, ow = output_size
  h, w = features.shape[:2]
  q = _round_half_away(rois * spatial_scale).astype(jnp.int32)

  def bins(start, end, n_bins):
    extent = jnp.maximum(end - start + 1, 1)[:, None]
    i = jnp.arange(n_bins)[None, :]
    lo = i * extent // n_bins + start[:, None]
    hi = -(-(i + 1) * extent // n_bins) + start[:, None]  # ceil, in integers
    return lo, hi

  h0, h1 = bins(q[:, 1], q[:, 3], oh)  # [R, oh], cells [h0, h1)
  w0, w1 = bins(q[:, 0], q[:, 2], ow)  # [R, ow]
  return _pool_bins(features, h0, h1, w0, w1)


@jax.custom_vjp
def _pool_bins(features, h0, h1, w0, w1):
  return _pool_bins_fwd(features, h0, h1, w0, w1)[0]


def _pool_bins_fwd(features, h0, h1, w0, w1):
  """Max over each bin `[h0, h1) x [w0, w1)` (clipped to the map; 0 if empty),
  `[R, oh, ow, C]`, with the flat cell index of the maximum as the residual."""
  h, w, c = features.shape
  values, where_max, levels_h, levels_w = _range_max_table(features)
  h0, h1 = jnp.clip(h0, 0, h), jnp.clip(h1, 0, h)
  w0, w1 = jnp.clip(w0, 0, w), jnp.clip(w1, 0, w)
  empty = (h1 <= h0)[:, :, None] | (w1 <= w0)[:, None, :]  # [R, oh, ow]

  def level(n, levels):
    """floor(log2(n)) for n >= 1 in exact integer steps (0 for empty bins)."""
    return sum(
      ((n >= 2**k).astype(jnp.int32) for k in range(1, levels)), jnp.zeros_like(n)
    )

  # Four overlapping power-of-two windows cover the bin exactly: O(1) reads
  # per bin however large it is, where a masked max reads the whole map.
  a = level(h1 - h0, levels_h)  # [R, oh]
  b = level(w1 - w0, levels_w)  # [R, ow]
  ys = jnp.stack([h0, h1 - 2**a], -1).clip(0, h - 1)  # [R, oh, 2]
  xs = jnp.stack([w0, w1 - 2**b], -1).clip(0, w - 1)  # [R, ow, 2]
  index = (
    (a[:, :, None, None, None] * levels_w + b[:, None, :, None, None]) * h
    + ys[:, :, None, :, None]
  ) * w + xs[:, None, :, None, :]  # [R, oh, ow, 2, 2]
  index = index.reshape(*index.shape[:3], 4)
  corners = values.reshape(-1, c)[index]  # [R, oh, ow, 4, C]
  best = jnp.argmax(corners, axis=3)[:, :, :, None, :]
  pooled = jnp.take_along_axis(corners, best, axis=3)[:, :, :, 0]
  cell = jnp.take_along_axis(where_max.reshape(-1, c)[index], best, axis=3)[:, :, :, 0]
  pooled = jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)
  return pooled, (cell, empty, features.shape)


def _pool_bins_bwd(residuals, g):
  # Each bin's gradient goes to its one maximal cell, as Caffe's and
  # torchvision's backward passes do; empty bins send nothing.
  cell, empty, shape = residuals
  g = jnp.where(empty[..., None], 0, g)
  c = shape[-1]
  channel = jnp.broadcast_to(jnp.arange(c), cell.shape)
  grad = jnp.zeros((shape[0] * shape[1], c), g.dtype).at[cell, channel].add(g)
  return grad.reshape(shape), None, None, None, None


_pool_bins.defvjp(_pool_bins_fwd, _pool_bins_bwd)


def _range_max_table(features):
  """2-D sparse table of window maxima and where they are.

  `values[a, b, y, x] = max(features[y : y + 2^a, x : x + 2^b])` and `cells`
  the flat index `y' W + x'` of that maximum (per channel), built by doubling:
  (log2 H + 1)(log2 W + 1) maps of `[H, W, C]`. Entries whose window would
  leave the map are never read.
  """
  h, w, c = features.shape
  levels_h, levels_w = h.bit_length(), w.bit_length()
  low = jnp.finfo(features.dtype).min
  cells = jnp.broadcast_to(
    jnp.arange(h * w, dtype=jnp.int32).reshape(h, w, 1), (h, w, c)
  )

  def double(pair, axis, span):
    x, i = pair

    def shift(t, fill):
      pad = [(0, 0)] * t.ndim
      pad[axis] = (0, span)
      return jnp.pad(
        jax.lax.slice_in_dim(t, span, None, axis=axis), pad, constant_values=fill
      )

    sx, si = shift(x, low), shift(i, 0)
    later = sx > x  # ties keep the earlier cell
    return jnp.where(later, sx, x), jnp.where(later, si, i)

  along_w = [(features, cells)]
  for b in range(1, levels_w):
    along_w.append(double(along_w[-1], 1, 2 ** (b - 1)))
  table = [tuple(jnp.stack(t) for t in zip(*along_w, strict=True))]  # [Lw, H, W, C]
  for a in range(1, levels_h):
    table.append(double(table[-1], 1, 2 ** (a - 1)))
  values, where_max = (jnp.stack(t) for t in zip(*table, strict=True))
  return values, where_max, levels_h, levels_w  # [Lh, Lw, H, W, C] each


def _sample_axis(start, extent, n_bins, grid, size):
  """One axis of RoIAlign's sample grid as bilinear taps.

  Bin i's `grid` sample points sit at the centres of equal sub-bins; each reads
  the two nearest cells with linear weights (cell k's centre is at k), and the
  bin averages them. Returns int32 cell indices and float weights, both
  `[R, n_bins, 2 * grid]`, the weights already divided by `grid` and 0 for
  points more than one cell outside the map.
  """
  bin_size = (extent / n_bins)[:, None, None]
  i = jnp.arange(n_bins)[None, :, None]
  g = jnp.arange(grid)[None, None, :]
  p = start[:, None, None] + i * bin_size + (g + 0.5) * bin_size / grid
  # torchvision's bilinear_interpolate, one axis at a time (its tests are
  # separable): a point beyond [-1, size] reads 0, otherwise it is clamped in.
  inside = (p >= -1.0) & (p <= size)
  p = jnp.maximum(p, 0.0)
  low = jnp.floor(p).astype(jnp.int32)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  frac = jnp.where(at_edge, 0.0, p - low)
  weight = inside / grid
  shape = (p.shape[0], n_bins, 2 * grid)
  taps = jnp.stack([low, high], axis=-1).reshape(shape)
  weights = jnp.stack([weight * (1 - frac), weight * frac], axis=-1).reshape(shape)
  return taps, weights


def roi_align(
  features: jax.Array,
  rois: jax.Array,
  *,
  output_size: tuple[int, int] = (7, 7),
  spatial_scale: float,
  sampling_ratio: int = 2,
  aligned: bool = True,
) -> jax.Array:
  """RoIAlign (He et al., 2017) with torchvision's semantics.

  The RoI is scaled by `spatial_scale` without rounding; with `aligned=True`
  it is also shifted by -0.5 cell, so that continuous coordinates line up with
  cell centres (cell k's centre is at k + 0.5 in scaled coordinates);
  `aligned=False` is the original, half-cell-shifted version, which also widens
  RoIs thinner than one cell to one cell. Each of the `oh x ow` bins averages
  `sampling_ratio x sampling_ratio` bilinear samples at the centres of a regular
  sub-grid; a sample more than one cell outside the map reads 0.

  No loop over RoIs. Bilinear sampling is separable, so each RoI's output is
  `A F B^T` per channel, with `A` its `[oh, H]` and `B` its `[ow, W]` matrix of
  tap weights (each bin's samples summed): two matrix products, whose
  transposes are the gradient. Their multiply-adds grow with the map; on a
  large map (VGG-16's) one gather of each bin's 4 g^2 taps and a weighted sum
  costs less, with a scatter-add of the same weights as its gradient.
  `_dense_is_cheaper` picks the form by shape; both give the same values to
  float32 rounding (tested against the reference).

  Args:
    features: `[H, W, C]` feature map of one image.
    rois: `[R, 4]` boxes in image pixels.
    output_size: `(oh, ow)`.
    spatial_scale: feature cells per image pixel.
    sampling_ratio: samples per bin along each axis, >= 1 (torchvision's
      adaptive `0` needs a data-dependent count, which static shapes exclude).
    aligned: the half-cell correction (Detectron2's default), or not.

  Returns:
    `[R, oh, ow, C]` float features.
  """
  features, rois = jnp.asarray(features), jnp.asarray(rois, jnp.float32)
  output_size = _check(features, rois, output_size)
  if not isinstance(sampling_ratio, int) or sampling_ratio < 1:
    raise UserError(
      f'sampling_ratio must be an int >= 1 (static shapes have no adaptive 0); '
      f'got {sampling_ratio!r}'
    )
  h, w = features.shape[:2]
  return _roi_align(
    features,
    rois,
    output_size=output_size,
    spatial_scale=spatial_scale,
    sampling_ratio=sampling_ratio,
    aligned=bool(aligned),
    dense=_dense_is_cheaper(h, w, output_size, sampling_ratio),
  )


# A gathered tap costs about as much as this many multiply-adds of the dense
# products. Forward and gradient on 2 CPU cores (jax 0.10.2), 128 RoIs into 7 x 7
# bins, g = 2, products / taps in brackets: the offline detector's 16 x 16 x 128
# map (3.3) 12 ms against the gather's 62; 25 x 25 x 256 (7.1) 52 against 108;
# 32 x 32 x 256 (11.1) 80 against 92; 40 x 40 x 128 (16.8) 45 against 51;
# VGG-16's 38 x 50 x 512 at a 600 x 800 image (20.1) 337 against 192 (the
# products as at commit 5c5fda0; batching the second over rows then took the
# Faster R-CNN step from 60-68 to 52-59 ms).
_PRODUCTS_PER_TAP = 18


def _dense_is_cheaper(h: int, w: int, output_size: tuple[int, int], grid: int) -> bool:
  """Whether RoIAlign's two dense products beat its gather on an `h x w` map:
  their multiply-adds per RoI and channel against the gathered taps."""
  oh, ow = output_size
  products = oh * h * w + oh * ow * w
  taps = oh * ow * (2 * grid) ** 2
  return products <= _PRODUCTS_PER_TAP * taps


@functools.partial(
  jax.jit,
  static_argnames=(
    'output_size',
    'spatial_scale',
    'sampling_ratio',
    'aligned',
    'dense',
  ),
)
def _roi_align(
  features, rois, *, output_size, spatial_scale, sampling_ratio, aligned, dense
):
  oh, ow = output_size
  h, w = features.shape[:2]
  offset = 0.5 if aligned else 0.0
  scaled = rois * spatial_scale - offset
  extent_x = scaled[:, 2] - scaled[:, 0]
  extent_y = scaled[:, 3] - scaled[:, 1]
  if not aligned:
    extent_x, extent_y = jnp.maximum(extent_x, 1.0), jnp.maximum(extent_y, 1.0)
  ty, wy = _sample_axis(scaled[:, 1], extent_y, oh, sampling_ratio, h)
  tx, wx = _sample_axis(scaled[:, 0], extent_x, ow, sampling_ratio, w)
  # HIGHEST: the sums are dots, which GPUs would otherwise run in TF32 (10-bit
  # mantissas); on CPU it costs nothing.
  highest = jax.lax.Precision.HIGHEST
  if dense:
    # [R, oh, H] and [R, ow, W]: each bin's taps scattered into a row of weights.
    a = jnp.sum(wy[..., None] * jax.nn.one_hot(ty, h, dtype=wy.dtype), axis=2)
    b = jnp.sum(wx[..., None] * jax.nn.one_hot(tx, w, dtype=wx.dtype), axis=2)
    rows = jnp.einsum('riy,yxc->rixc', a, features, precision=highest)
    # Batched over (RoI, output row), so that neither operand is transposed.
    b = jnp.broadcast_to(b[:, None], (b.shape[0], oh, ow, w))
    return jnp.einsum('rijx,rixc->rijc', b, rows, precision=highest)
  # One gather of every tap of every bin, [R, oh, ow, 2g, 2g, C], then a
  # weighted sum.
  flat = features.reshape(h * w, -1)
  taps = ty[:, :, None, :, None] * w + tx[:, None, :, None, :]
  weights = wy[:, :, None, :, None] * wx[:, None, :, None, :]
  return jnp.einsum('rijab,rijabc->rijc', weights, flat[taps], precision=highest)
