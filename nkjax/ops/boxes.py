"""Box operations (placeholder written by det-model until det-ops lands; the
det-ops branch owns this file). Boxes are (x1, y1, x2, y2) float32 pixels,
continuous coordinates (width = x2 - x1)."""

import math

import jax
import jax.numpy as jnp


def area(boxes):
  boxes = jnp.asarray(boxes)
  return jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) * jnp.maximum(
    boxes[..., 3] - boxes[..., 1], 0
  )


def pairwise_iou(a, b):
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.maximum(rb - lt, 0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a)[:, None] + area(b)[None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def _centre(boxes):
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode(boxes, anchors, *, weights=(10.0, 10.0, 5.0, 5.0)):
  bx, by, bw, bh = _centre(jnp.asarray(boxes, jnp.float32))
  ax, ay, aw, ah = _centre(jnp.asarray(anchors, jnp.float32))
  wx, wy, ww, wh = weights
  aw, ah = jnp.maximum(aw, 1e-6), jnp.maximum(ah, 1e-6)
  return jnp.stack(
    [
      wx * (bx - ax) / aw,
      wy * (by - ay) / ah,
      ww * jnp.log(jnp.maximum(bw, 1e-6) / aw),
      wh * jnp.log(jnp.maximum(bh, 1e-6) / ah),
    ],
    axis=-1,
  )


def decode(deltas, anchors, *, weights=(10.0, 10.0, 5.0, 5.0), max_log_scale=math.log(1000 / 16)):
  deltas = jnp.asarray(deltas, jnp.float32)
  ax, ay, aw, ah = _centre(jnp.asarray(anchors, jnp.float32))
  wx, wy, ww, wh = weights
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, max_log_scale)
  dh = jnp.minimum(deltas[..., 3] / wh, max_log_scale)
  cx, cy = ax + dx * aw, ay + dy * ah
  w, h = aw * jnp.exp(dw), ah * jnp.exp(dh)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def clip_to_image(boxes, *, height, width):
  boxes = jnp.asarray(boxes)
  lim = jnp.asarray([width, height, width, height], boxes.dtype)
  return jnp.clip(boxes, 0, lim)


def min_size_mask(boxes, *, min_size):
  boxes = jnp.asarray(boxes)
  return (boxes[..., 2] - boxes[..., 0] >= min_size) & (
    boxes[..., 3] - boxes[..., 1] >= min_size
  )


def nms(boxes, scores, *, iou_threshold, max_output, valid=None):
  boxes = jnp.asarray(boxes, jnp.float32)
  scores = jnp.asarray(scores, jnp.float32)
  n = boxes.shape[0]
  valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
  order = jnp.argsort(-jnp.where(valid, scores, -jnp.inf), stable=True)
  b = boxes[order]
  alive = valid[order]
  iou = pairwise_iou(b, b)

  def body(i, alive):
    suppress = (iou[i] > iou_threshold) & (jnp.arange(n) > i) & alive[i]
    return alive & ~suppress

  alive = jax.lax.fori_loop(0, n, body, alive)
  idx = jnp.nonzero(alive, size=max_output, fill_value=0)[0]
  keep = jnp.arange(max_output) < jnp.sum(alive)
  return jnp.where(keep, order[idx], 0).astype(jnp.int32), keep


def batched_nms(boxes, scores, classes, *, iou_threshold, max_output, valid=None):
  boxes = jnp.asarray(boxes, jnp.float32)
  offset = jnp.asarray(classes, jnp.float32)[:, None] * (jnp.max(boxes) + 1.0)
  return nms(boxes + offset, scores, iou_threshold=iou_threshold, max_output=max_output, valid=valid)
