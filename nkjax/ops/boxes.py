"""Box operations with static shapes: area, IoU, encode/decode, clipping, NMS.

Pixel convention (one, everywhere in nkjax): a box is `(x1, y1, x2, y2)` float32
in pixels of continuous image coordinates, as torchvision and COCO use them.
Pixel `(i, j)` (row i, column j) covers `[j, j + 1) x [i, i + 1)`, so a box
around exactly that pixel is `(j, i, j + 1, i + 1)`; width is `x2 - x1` and
height `y2 - y1`, with no `+ 1` (the original R-CNN code's inclusive integer
convention would call that box `(j, i, j, i)` with width `x2 - x1 + 1`).
The whole image of height H and width W is `(0, 0, W, H)`. Datasets convert to
this convention when they load; nothing downstream converts again.

Every function is pure `jnp`, works on NumPy or JAX inputs, and runs under
`jax.jit` with static shapes: a variable number of boxes travels as a fixed-size
array with a boolean mask beside it.
"""

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError

DEFAULT_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Faster R-CNN's clip on decoded log-scales: no box grows more than 1000 / 16
# times its anchor, so exp() never overflows on a wild regression output.
MAX_LOG_SCALE = math.log(1000.0 / 16)


def _check_boxes(name: str, boxes, ndim: int | None = None) -> None:
  if boxes.shape[-1:] != (4,) or (ndim is not None and boxes.ndim != ndim):
    want = '[n, 4]' if ndim == 2 else '[..., 4]'
    raise UserError(
      f'{name} must have shape {want} as (x1, y1, x2, y2); got shape {tuple(boxes.shape)}'
    )


def area(boxes: jax.Array) -> jax.Array:
  """Areas `[...]` in square pixels of `boxes [..., 4]`; inverted boxes have area 0."""
  boxes = jnp.asarray(boxes)
  _check_boxes('boxes', boxes)
  w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0)
  h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)
  return w * h


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection over union of every box in `a [n, 4]` with every box in `b [m, 4]`.

  Returns:
    `[n, m]` float IoU in [0, 1]; 0 where the union is 0 (two empty boxes), so
    degenerate padding never produces NaN.
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  _check_boxes('a', a, 2)
  _check_boxes('b', b, 2)
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.maximum(rb - lt, 0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a)[:, None] + area(b)[None, :] - inter
  positive = union > 0
  # The inner where keeps the untaken branch finite, so gradients stay NaN-free too.
  return jnp.where(positive, inter / jnp.where(positive, union, 1), 0)


def _centre_size(boxes: jax.Array):
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode(
  boxes: jax.Array,
  anchors: jax.Array,
  *,
  weights: Sequence[float] = DEFAULT_WEIGHTS,
) -> jax.Array:
  """Regression targets (dx, dy, dw, dh) that move `anchors` onto `boxes`.

  With centres (x, y) and sizes (w, h) of the box and (xa, ya, wa, ha) of the
  anchor (R-CNN, appendix C; Faster R-CNN eq. 2):
  dx = wx (x - xa) / wa, dy = wy (y - ya) / ha, dw = ww log(w / wa),
  dh = wh log(h / ha), where `weights = (wx, wy, ww, wh)` (Faster R-CNN's
  second stage uses 10, 10, 5, 5; its RPN uses 1, 1, 1, 1).

  Args:
    boxes: `[..., 4]` target boxes in pixels.
    anchors: `[..., 4]` anchors (or proposals) in pixels, broadcastable to `boxes`.
    weights: four multipliers (wx, wy, ww, wh).

  Returns:
    `[..., 4]` float32 deltas. Sizes are floored at 1e-6 px so that padded
    all-zero boxes give finite (and meaningless, so mask them) targets instead of
    -inf, which would turn a masked loss into NaN.
  """
  boxes, anchors = jnp.asarray(boxes, jnp.float32), jnp.asarray(anchors, jnp.float32)
  _check_boxes('boxes', boxes)
  _check_boxes('anchors', anchors)
  wx, wy, ww, wh = _weights(weights)
  x, y, w, h = _centre_size(boxes)
  xa, ya, wa, ha = _centre_size(anchors)
  w, h = jnp.maximum(w, 1e-6), jnp.maximum(h, 1e-6)
  wa, ha = jnp.maximum(wa, 1e-6), jnp.maximum(ha, 1e-6)
  return jnp.stack(
    [
      wx * (x - xa) / wa,
      wy * (y - ya) / ha,
      ww * jnp.log(w / wa),
      wh * jnp.log(h / ha),
    ],
    axis=-1,
  )


def decode(
  deltas: jax.Array,
  anchors: jax.Array,
  *,
  weights: Sequence[float] = DEFAULT_WEIGHTS,
  max_log_scale: float = MAX_LOG_SCALE,
) -> jax.Array:
  """Boxes `[..., 4]` that `deltas [..., 4]` (dx, dy, dw, dh) make of `anchors`.

  The inverse of `encode`: x = xa + wa dx / wx, w = wa exp(dw / ww), and so on,
  with dw / ww and dh / wh clipped from above at `max_log_scale`
  (log(1000 / 16), as Faster R-CNN) before exp(). Not clipped to the image:
  call `clip_to_image`.
  """
  deltas, anchors = jnp.asarray(deltas, jnp.float32), jnp.asarray(anchors, jnp.float32)
  _check_boxes('deltas', deltas)
  _check_boxes('anchors', anchors)
  wx, wy, ww, wh = _weights(weights)
  xa, ya, wa, ha = _centre_size(anchors)
  x = xa + deltas[..., 0] / wx * wa
  y = ya + deltas[..., 1] / wy * ha
  w = wa * jnp.exp(jnp.minimum(deltas[..., 2] / ww, max_log_scale))
  h = ha * jnp.exp(jnp.minimum(deltas[..., 3] / wh, max_log_scale))
  return jnp.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], axis=-1)


def _weights(weights):
  if len(weights) != 4:
    raise UserError(f'weights must be four numbers (wx, wy, ww, wh); got {weights!r}')
  return tuple(weights)


def clip_to_image(boxes: jax.Array, *, height, width) -> jax.Array:
  """Clips `boxes [..., 4]` into the image `(0, 0, width, height)` (pixels).

  `height` and `width` may be Python numbers or traced scalars (per-image sizes).
  """
  boxes = jnp.asarray(boxes)
  _check_boxes('boxes', boxes)
  x = jnp.clip(boxes[..., 0::2], 0, width)
  y = jnp.clip(boxes[..., 1::2], 0, height)
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def min_size_mask(boxes: jax.Array, *, min_size: float) -> jax.Array:
  """Bool `[...]`: True where both the width and the height of `boxes [..., 4]`
  are at least `min_size` pixels. Use it as a mask (shapes stay static)."""
  boxes = jnp.asarray(boxes)
  _check_boxes('boxes', boxes)
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  return (w >= min_size) & (h >= min_size)


# ---------------------------------------------------------------- NMS


def nms(
  boxes: jax.Array,
  scores: jax.Array,
  *,
  iou_threshold,
  max_output: int,
  valid: jax.Array | None = None,
  block_size: int = 128,
) -> tuple[jax.Array, jax.Array]:
  """Greedy non-maximum suppression with a fixed-size output.

  Visits boxes by descending score (equal scores: lower index first), keeps a
  box unless a box kept before it overlaps it with IoU > `iou_threshold`
  (strictly greater, as torchvision), and returns the first `max_output` kept.
  The result equals plain greedy NMS at every threshold.

  Blocked for speed: boxes are processed `block_size` at a time in score order;
  each block is first suppressed by the boxes kept in earlier blocks (one
  `[max_output + block_size, block_size]` IoU matrix against them, kept
  compacted), then within itself by iterating `keep[i] = alive[i] and no kept j < i
  with IoU(j, i) > threshold` to its fixed point. That recurrence has exactly one
  solution, greedy NMS's, and the iteration reaches it (position t is final
  after t steps), so no threshold is assumed anywhere. Blocks after the
  `max_output`-th kept box are skipped.

  Args:
    boxes: `[n, 4]` boxes in pixels.
    scores: `[n]` scores; higher first.
    iou_threshold: suppress at IoU strictly above this (float or traced scalar).
    max_output: static number of outputs.
    valid: optional bool `[n]`; False entries are neither kept nor suppress.
    block_size: static block length; changes speed only, never the result.

  Returns:
    `(indices, keep)`: int32 `[max_output]` indices into `boxes` in descending
    score order, and bool `[max_output]`, True for real outputs; padded outputs
    have keep False and index 0.

  >>> b = jnp.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10.0]])
  >>> idx, keep = nms(b, jnp.array([0.9, 0.8, 0.7]), iou_threshold=0.5, max_output=3)
  >>> idx.tolist(), keep.tolist()
  ([0, 2, 0], [True, True, False])
  """
  return _greedy_nms(boxes, scores, None, iou_threshold, max_output, valid, block_size)


def batched_nms(
  boxes: jax.Array,
  scores: jax.Array,
  classes: jax.Array,
  *,
  iou_threshold,
  max_output: int,
  valid: jax.Array | None = None,
  block_size: int = 128,
) -> tuple[jax.Array, jax.Array]:
  """Per-class greedy NMS: a box is suppressed only by kept boxes of its class.

  Equals running `nms` on each class separately, merging the kept boxes by
  descending score (equal scores: lower index first) and keeping the first
  `max_output`: the per-image top-k. Boxes of other classes are masked out of
  the IoU comparison exactly, rather than shifted apart by coordinate offsets
  (which cost float32 precision at large offsets).

  Args:
    boxes: `[n, 4]`; scores: `[n]`; classes: int `[n]`; others as `nms`.

  Returns:
    `(indices int32 [max_output], keep bool [max_output])` as `nms`.
  """
  classes = jnp.asarray(classes)
  if classes.shape != jnp.shape(scores):
    raise UserError(
      f'classes must have the shape of scores {jnp.shape(scores)}; got {classes.shape}'
    )
  return _greedy_nms(
    boxes, scores, classes, iou_threshold, max_output, valid, block_size
  )


def _greedy_nms(boxes, scores, classes, iou_threshold, max_output, valid, block_size):
  boxes = jnp.asarray(boxes, jnp.float32)
  scores = jnp.asarray(scores)
  _check_boxes('boxes', boxes, 2)
  n = boxes.shape[0]
  if scores.shape != (n,):
    raise UserError(f'scores must have shape ({n},) to match boxes; got {scores.shape}')
  if not isinstance(max_output, int) or max_output < 1:
    raise UserError(f'max_output must be a positive int; got {max_output!r}')
  if not isinstance(block_size, int) or block_size < 1:
    raise UserError(f'block_size must be a positive int; got {block_size!r}')
  if n == 0:
    return jnp.zeros(max_output, jnp.int32), jnp.zeros(max_output, bool)
  valid = jnp.ones(n, bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != (n,):
    raise UserError(f'valid must have shape ({n},) to match boxes; got {valid.shape}')
  return _greedy_nms_core(
    boxes,
    scores,
    classes,
    valid,
    iou_threshold,
    max_output=max_output,
    block_size=block_size,
  )


# Jitted so that eager callers compile once per shape; under an outer jit it inlines.
@functools.partial(jax.jit, static_argnames=('max_output', 'block_size'))
def _greedy_nms_core(
  boxes, scores, classes, valid, iou_threshold, *, max_output, block_size
):
  n = boxes.shape[0]
  # Invalid entries go last so that they never break a tie ahead of a valid box;
  # the stable sort puts equal scores in index order.
  order = jnp.lexsort((-scores, ~valid)).astype(jnp.int32)
  block = min(block_size, n)
  num_blocks = -(-n // block)
  pad = num_blocks * block - n
  order = jnp.pad(order, (0, pad))
  b = boxes[order]
  alive0 = valid[order] & (jnp.arange(num_blocks * block) < n)
  c = jnp.zeros(num_blocks * block, jnp.int32) if classes is None else classes[order]
  earlier = jnp.arange(block)[:, None] < jnp.arange(block)[None, :]

  def suppresses(rows, row_classes, cols, col_classes):
    """Bool [rows, cols]: box row, if kept, suppresses box col."""
    s = pairwise_iou(rows, cols) > iou_threshold
    return s & (row_classes[:, None] == col_classes[None, :])

  # The kept boxes so far, compacted: a later block is compared with at most
  # max_output of them rather than with all n (the last block may overfill by
  # up to block - 1, hence the slack).
  size = max_output + block

  def block_step(state):
    k, count, kept_boxes, kept_classes, kept_order = state
    start = k * block
    bb = jax.lax.dynamic_slice_in_dim(b, start, block)
    cb = jax.lax.dynamic_slice_in_dim(c, start, block)
    alive = jax.lax.dynamic_slice_in_dim(alive0, start, block)
    # Kept boxes of earlier blocks are final: they suppress this block outright.
    cross = suppresses(kept_boxes, kept_classes, bb, cb)
    cross = cross & (jnp.arange(size) < count)[:, None]
    alive = alive & ~jnp.any(cross, axis=0)
    inner = suppresses(bb, cb, bb, cb) & earlier

    def fixed_point_step(s):
      _, cur = s
      new = alive & ~jnp.any(inner & cur[:, None], axis=0)
      return jnp.any(new != cur), new

    _, kept = jax.lax.while_loop(
      lambda s: s[0], fixed_point_step, (jnp.array(True), alive)
    )
    slot = jnp.where(kept, count + jnp.cumsum(kept) - 1, size)  # size: dropped
    kept_boxes = kept_boxes.at[slot].set(bb, mode='drop')
    kept_classes = kept_classes.at[slot].set(cb, mode='drop')
    block_order = jax.lax.dynamic_slice_in_dim(order, start, block)
    kept_order = kept_order.at[slot].set(block_order, mode='drop')
    return k + 1, count + jnp.sum(kept), kept_boxes, kept_classes, kept_order

  _, count, _, _, kept_order = jax.lax.while_loop(
    lambda s: (s[0] < num_blocks) & (s[1] < max_output),
    block_step,
    (
      jnp.int32(0),
      jnp.int32(0),
      jnp.zeros((size, 4), b.dtype),
      jnp.zeros(size, c.dtype),
      jnp.zeros(size, jnp.int32),
    ),
  )
  out_keep = jnp.arange(max_output) < count
  return jnp.where(out_keep, kept_order[:max_output], 0), out_keep


def host_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of boxes `a` `[..., 4]` broadcast against `b` `[..., 4]`, in NumPy.

  The host twin of `pairwise_iou` (`host_iou(a[:, None], b[None])` is the
  pairwise matrix) for code that sees a different number of boxes every call
  (the VOC evaluation, the dataset generator): jitted code would compile once
  per shape. 0 where the union is 0.
  """
  a, b = np.asarray(a), np.asarray(b)
  w = np.clip(
    np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None
  )
  h = np.clip(
    np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None
  )
  inter = w * h
  union = (
    (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    - inter
  )
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
