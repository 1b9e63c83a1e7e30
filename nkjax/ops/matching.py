"""Matching anchors (or proposals) to padded ground truth, and sampling them.

Ground truth arrives padded to `max_boxes` with a boolean `gt_mask`; padded
boxes are inert: they never match an anchor, not even under the "best anchor for
each ground-truth box" rule, whatever their coordinates. Everything here runs
under `jit` with static shapes.
"""

import functools

import jax
import jax.numpy as jnp

from nkjax.errors import UserError
from nkjax.ops.boxes import pairwise_iou

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def match(
  anchors: jax.Array,
  gt_boxes: jax.Array,
  gt_mask: jax.Array,
  *,
  positive_iou: float,
  negative_iou: float,
  negative_iou_low: float = 0.0,
  allow_low_quality: bool = True,
) -> tuple[jax.Array, jax.Array]:
  """Labels each anchor positive, negative or ignored by its IoU with the ground truth.

  An anchor's match is the valid ground-truth box of highest IoU with it (ties:
  lower index). It is positive if that IoU >= `positive_iou`, negative if
  `negative_iou_low <= IoU < negative_iou`, otherwise ignored. With
  `allow_low_quality` (Faster R-CNN's RPN rule), every anchor whose IoU with
  some valid box equals that box's highest IoU over all anchors is also
  positive (ties all count), keeping its own best match; a box that overlaps no
  anchor at all (highest IoU 0) has no best anchor, else every anchor would tie
  at 0 and turn positive.

  Faster R-CNN's RPN: positive_iou=0.7, negative_iou=0.3; its Fast R-CNN stage:
  positive_iou=0.5, negative_iou=0.5, negative_iou_low=0.1 (0 in torchvision),
  allow_low_quality=False.

  Args:
    anchors: `[A, 4]` anchors or proposals, pixels.
    gt_boxes: `[G, 4]` ground truth padded to G, pixels.
    gt_mask: bool `[G]`, True for real boxes.
    positive_iou, negative_iou, negative_iou_low: IoU thresholds as above.
    allow_low_quality: apply the best-anchor rule.

  Returns:
    `(matched, labels)`: int32 `[A]` index into `gt_boxes` of each anchor's
    match (0 when there is no valid box), and int32 `[A]` labels: 1 positive,
    0 negative, -1 ignored. With no valid box, every anchor is negative when
    `negative_iou_low <= 0 < negative_iou` (its IoU counts as 0), else ignored.
  """
  anchors, gt_boxes = jnp.asarray(anchors), jnp.asarray(gt_boxes)
  gt_mask = jnp.asarray(gt_mask, bool)
  if gt_mask.shape != gt_boxes.shape[:1]:
    raise UserError(
      f'gt_mask must have shape ({gt_boxes.shape[0]},) to match gt_boxes; got {gt_mask.shape}'
    )
  if not negative_iou_low <= negative_iou <= positive_iou:
    raise UserError(
      'need negative_iou_low <= negative_iou <= positive_iou; got '
      f'{negative_iou_low}, {negative_iou}, {positive_iou}'
    )
  if gt_boxes.shape[0] == 0:
    gt_boxes, gt_mask = jnp.zeros((1, 4), anchors.dtype), jnp.zeros(1, bool)
  return _match(
    anchors,
    gt_boxes,
    gt_mask,
    positive_iou,
    negative_iou,
    negative_iou_low,
    allow_low_quality=bool(allow_low_quality),
  )


# Jitted so that eager callers compile once per shape; under an outer jit it inlines.
@functools.partial(jax.jit, static_argnames=('allow_low_quality',))
def _match(
  anchors,
  gt_boxes,
  gt_mask,
  positive_iou,
  negative_iou,
  negative_iou_low,
  *,
  allow_low_quality,
):
  iou = pairwise_iou(anchors, gt_boxes)  # [A, G]
  # -1 for padding: below every real IoU, so a padded box can never be the
  # argmax, the max, or a column's best.
  iou = jnp.where(gt_mask[None, :], iou, -1.0)
  matched = jnp.argmax(iou, axis=1).astype(jnp.int32)
  best = jnp.maximum(jnp.max(iou, axis=1), 0.0)
  any_gt = jnp.any(gt_mask)
  matched = jnp.where(any_gt, matched, 0)
  labels = jnp.full(best.shape, IGNORED, jnp.int32)
  labels = jnp.where(
    (best >= negative_iou_low) & (best < negative_iou), NEGATIVE, labels
  )
  positive = best >= positive_iou
  if allow_low_quality:
    best_per_gt = jnp.max(iou, axis=0, initial=-1.0)  # [G]; -1 for padding
    is_best = (iou == best_per_gt[None, :]) & gt_mask[None, :] & (best_per_gt > 0)
    positive = positive | jnp.any(is_best, axis=1)
  labels = jnp.where(positive, POSITIVE, labels)
  return matched, labels


def sample(
  rng: jax.Array,
  labels: jax.Array,
  *,
  num_samples: int,
  positive_fraction: float,
) -> tuple[jax.Array, jax.Array]:
  """Draws a fixed-size minibatch of anchors (or RoIs) from `labels` at random.

  Takes min(#positives, floor(num_samples * positive_fraction)) positives
  uniformly at random, then fills up to `num_samples` with negatives drawn
  uniformly at random (fewer if there are too few); ignored labels are never
  drawn. Faster R-CNN's RPN: 256 anchors per image, fraction 0.5; Fast R-CNN:
  64 RoIs per image (128 per two-image minibatch), fraction 0.25; Faster
  R-CNN's end-to-end training: 128 RoIs of one image.

  Args:
    rng: a PRNG key.
    labels: int32 `[A]`: 1 positive, 0 negative, -1 ignored (as `match` gives).
    num_samples: static batch size per image.
    positive_fraction: the most positives can be of `num_samples`.

  Returns:
    `(positive, negative)`: bool `[A]` masks of the drawn anchors; together they
    hold exactly min(num_samples, #positives drawn + #negatives) anchors.
  """
  labels = jnp.asarray(labels)
  if labels.ndim != 1:
    raise UserError(f'labels must be [A]; got shape {labels.shape}')
  if not 0.0 <= positive_fraction <= 1.0 or num_samples < 0:
    raise UserError(
      'need num_samples >= 0 and 0 <= positive_fraction <= 1; got '
      f'{num_samples}, {positive_fraction}'
    )
  return _sample(
    rng,
    labels,
    num_samples=int(num_samples),
    max_positive=int(num_samples * positive_fraction),
  )


@functools.partial(jax.jit, static_argnames=('num_samples', 'max_positive'))
def _sample(rng, labels, *, num_samples, max_positive):
  k_pos, k_neg = jax.random.split(rng)

  def random_rank(key, member):
    """Each member's rank in a uniformly random order of the members (others last)."""
    u = jnp.where(member, jax.random.uniform(key, labels.shape), 2.0)
    return jnp.argsort(jnp.argsort(u))

  is_pos, is_neg = labels == POSITIVE, labels == NEGATIVE
  positive = is_pos & (random_rank(k_pos, is_pos) < max_positive)
  room = num_samples - jnp.sum(positive)
  negative = is_neg & (random_rank(k_neg, is_neg) < room)
  return positive, negative
