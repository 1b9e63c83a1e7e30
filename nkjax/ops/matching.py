"""Matching and sampling (placeholder written by det-model until det-ops lands)."""

import jax
import jax.numpy as jnp

from nkjax.ops import boxes as box_ops


def match(anchors, gt_boxes, gt_mask, *, positive_iou, negative_iou, negative_iou_low=0.0, allow_low_quality=True):
  iou = box_ops.pairwise_iou(anchors, gt_boxes)
  iou = jnp.where(gt_mask[None, :], iou, -1.0)
  best = jnp.max(iou, axis=1)
  matched = jnp.argmax(iou, axis=1).astype(jnp.int32)
  labels = jnp.full(best.shape, -1, jnp.int32)
  any_gt = jnp.any(gt_mask)
  neg_iou = jnp.where(any_gt, best, 0.0)
  labels = jnp.where((neg_iou >= negative_iou_low) & (neg_iou < negative_iou), 0, labels)
  labels = jnp.where(best >= positive_iou, 1, labels)
  if allow_low_quality:
    gt_best = jnp.max(iou, axis=0)
    is_best = (iou == gt_best[None]) & gt_mask[None] & (gt_best[None] > 0)
    labels = jnp.where(jnp.any(is_best, axis=1), 1, labels)
  matched = jnp.where(any_gt, matched, 0)
  return matched, labels


def sample(rng, labels, *, num_samples, positive_fraction):
  kp, kn = jax.random.split(rng)
  pos, neg = labels == 1, labels == 0
  max_pos = int(num_samples * positive_fraction)
  rp = jnp.where(pos, jax.random.uniform(kp, labels.shape), 2.0)
  rank_p = jnp.argsort(jnp.argsort(rp))
  positive = pos & (rank_p < max_pos)
  num_neg = num_samples - jnp.sum(positive)
  rn = jnp.where(neg, jax.random.uniform(kn, labels.shape), 2.0)
  rank_n = jnp.argsort(jnp.argsort(rn))
  negative = neg & (rank_n < num_neg)
  return positive, negative
