"""RoI pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) with static shapes and gradients.

Both take the features of one image, `[H, W, C]`, and `R` regions of interest
`(x1, y1, x2, y2)` in image pixels (`nkjax.ops.boxes`' continuous convention),
mapped onto the feature map by `spatial_scale` (1 / stride, e.g. 1 / 16); vmap
them over a batch. Neither loops over boxes: both are separable along the two
axes, so each is written as per-RoI row and column operators applied to the
whole feature map.
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
  """Fast R-CNN's RoI max pooling, quantised as the original Caffe layer.

  Each RoI's corners are scaled by `spatial_scale` and rounded to whole feature
  cells (halves away from zero); the RoI then covers cells
  `round(x1 s) .. round(x2 s)` inclusive (so at least one), split into
  `oh x ow` bins whose cell ranges are `[floor(i h / oh), ceil((i + 1) h / oh))`
  in integer arithmetic, offset by the RoI's start and clipped to the map. Each
  output is the maximum over its bin; an empty bin (wholly outside the map)
  gives 0. Gradients go to the maximal cell(s) of each bin.

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

  def ranges(start, end, n_bins, size):
    extent = jnp.maximum(end - start + 1, 1)[:, None]
    i = jnp.arange(n_bins)[None, :]
    lo = jnp.clip(i * extent // n_bins + start[:, None], 0, size)
    hi = jnp.clip(-(-(i + 1) * extent // n_bins) + start[:, None], 0, size)
    cells = jnp.arange(size)[None, None, :]
    return (cells >= lo[..., None]) & (cells < hi[..., None]), hi <= lo

  rows, empty_rows = ranges(q[:, 1], q[:, 3], oh, h)  # [R, oh, H], [R, oh]
  cols, empty_cols = ranges(q[:, 0], q[:, 2], ow, w)  # [R, ow, W], [R, ow]
  low = jnp.finfo(features.dtype).min
  # Max over each bin's columns for every row, then over its rows: R * ow * H * W
  # comparisons instead of a gather of each bin's variable-size window.
  by_cols = jnp.max(
    jnp.where(cols[:, :, None, :, None], features[None, None], low), axis=3
  )  # [R, ow, H, C]
  pooled = jnp.max(
    jnp.where(rows[:, :, None, :, None], by_cols[:, None], low), axis=3
  )  # [R, oh, ow, C]
  empty = empty_rows[:, :, None] | empty_cols[:, None, :]
  return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)


def _bilinear_operator(start, extent, n_bins, grid, size):
  """`[R, n_bins, size]` weights: bin i's mean over its `grid` sample points of
  1-D bilinear interpolation at cell positions (cell k's centre is at k)."""
  bin_size = extent / n_bins
  i = jnp.arange(n_bins)[None, :, None]
  g = jnp.arange(grid)[None, None, :]
  p = start[:, None, None] + i * bin_size[:, None, None]
  p = p + (g + 0.5) * bin_size[:, None, None] / grid  # [R, n_bins, grid]
  # torchvision's bilinear_interpolate, one axis at a time: a point more than
  # one cell outside the map reads 0; otherwise it is clamped into the map.
  inside = (p >= -1.0) & (p <= size)
  p = jnp.maximum(p, 0.0)
  low = jnp.floor(p).astype(jnp.int32)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  p = jnp.where(at_edge, low.astype(p.dtype), p)
  frac = p - low
  weight = inside / grid
  cells = jnp.arange(size)
  one_hot = lambda k: (k[..., None] == cells).astype(p.dtype)
  op = (weight * (1 - frac))[..., None] * one_hot(low) + (weight * frac)[
    ..., None
  ] * one_hot(high)
  return jnp.sum(op, axis=2)


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

  Bilinear sampling on a grid is separable, so the output is `A_y F A_x^T` per
  RoI and channel, with `[oh, H]` and `[ow, W]` interpolation matrices: two
  matmuls (at full float32 precision) whose gradient with respect to the
  features is exact, the transposed matmuls.

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
  return _roi_align(
    features,
    rois,
    output_size=output_size,
    spatial_scale=spatial_scale,
    sampling_ratio=sampling_ratio,
    aligned=bool(aligned),
  )


@functools.partial(
  jax.jit, static_argnames=('output_size', 'spatial_scale', 'sampling_ratio', 'aligned')
)
def _roi_align(features, rois, *, output_size, spatial_scale, sampling_ratio, aligned):
  oh, ow = output_size
  h, w = features.shape[:2]
  offset = 0.5 if aligned else 0.0
  scaled = rois * spatial_scale - offset
  extent_x = scaled[:, 2] - scaled[:, 0]
  extent_y = scaled[:, 3] - scaled[:, 1]
  if not aligned:
    extent_x, extent_y = jnp.maximum(extent_x, 1.0), jnp.maximum(extent_y, 1.0)
  a_y = _bilinear_operator(scaled[:, 1], extent_y, oh, sampling_ratio, h)
  a_x = _bilinear_operator(scaled[:, 0], extent_x, ow, sampling_ratio, w)
  hp = jax.lax.Precision.HIGHEST
  f = features.astype(a_y.dtype)
  rows = jnp.einsum('rih,hwc->riwc', a_y, f, precision=hp)
  return jnp.einsum('rjw,riwc->rijc', a_x, rows, precision=hp)
