import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import losses
from nkjax.errors import UserError
from nkjax.ops import boxes, matching
from tests.ops.test_boxes import iou_reference, random_grid_boxes

RPN = dict(positive_iou=0.7, negative_iou=0.3, allow_low_quality=True)
FAST_RCNN = dict(
  positive_iou=0.5, negative_iou=0.5, negative_iou_low=0.1, allow_low_quality=False
)


def match_reference(
  anchors,
  gt,
  mask,
  *,
  positive_iou,
  negative_iou,
  negative_iou_low=0.0,
  allow_low_quality=True,
):
  """The matching rules, one anchor and one box at a time (float64)."""
  real = [g for g in range(len(gt)) if mask[g]]
  iou = {
    (a, g): iou_reference(anchors[a], gt[g]) for a in range(len(anchors)) for g in real
  }
  matched, labels = [], []
  for a in range(len(anchors)):
    ious = [iou[a, g] for g in real]
    best = max(ious, default=0.0)
    matched.append(real[ious.index(best)] if real else 0)
    labels.append(
      1
      if best >= positive_iou
      else 0
      if negative_iou_low <= best < negative_iou
      else -1
    )
  if allow_low_quality:
    for g in real:
      top = max(iou[a, g] for a in range(len(anchors)))
      for a in range(len(anchors)):
        if top > 0 and iou[a, g] == top:
          labels[a] = 1
  return np.array(matched), np.array(labels)


@pytest.mark.parametrize('rule', [RPN, FAST_RCNN], ids=['rpn', 'fast_rcnn'])
def test_match_equals_reference(rule):
  fn = jax.jit(functools.partial(matching.match, **rule))
  for seed in range(5):
    rng = np.random.default_rng(seed)
    anchors = random_grid_boxes(rng, 60)
    gt = random_grid_boxes(rng, 6, duplicates=1)
    mask = np.array([True, True, False, True, False, True])
    matched, labels = fn(anchors, gt, mask)
    want_matched, want_labels = match_reference(
      anchors.astype(np.float64), gt.astype(np.float64), mask, **rule
    )
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(matched, want_matched)
    assert matched.dtype == labels.dtype == jnp.int32


def test_padded_ground_truth_is_inert_under_the_best_anchor_rule():
  rng = np.random.default_rng(10)
  anchors = random_grid_boxes(rng, 50)
  gt = random_grid_boxes(rng, 5, duplicates=0)
  mask = np.array([True, False, True, False, False])
  fn = jax.jit(functools.partial(matching.match, **RPN))
  base = fn(anchors, gt, mask)
  # Padding that would match if it counted: zeros (IoU 0 with every anchor, so
  # every anchor ties for its "best"), exact copies of anchors (IoU 1), a box
  # covering everything.
  for padding in (
    np.zeros((3, 4)),
    anchors[:3],
    np.array([[-1e4, -1e4, 1e4, 1e4]] * 3),
  ):
    gt2 = gt.copy()
    gt2[~mask] = padding
    for got, want in zip(fn(anchors, gt2, mask), base, strict=True):
      np.testing.assert_array_equal(got, want)
  # The same as passing the real boxes alone (indices mapped back).
  m_real, l_real = fn(anchors, gt[mask], np.ones(2, bool))
  np.testing.assert_array_equal(base[1], l_real)
  np.testing.assert_array_equal(base[0], np.flatnonzero(mask)[m_real])


def test_best_anchor_rule_hand_case_with_ties():
  anchors = np.array(
    [
      [0, 0, 10, 10],
      [5, 0, 15, 10],
      [20, 20, 30, 30],
      [5, 0, 15, 10],
      [40, 40, 50, 50],
    ],
    np.float32,
  )
  gt = np.array(
    [[7, 0, 17, 10], [100, 100, 110, 110]], np.float32
  )  # 2nd: touches nothing
  # IoU(gt0, anchors 1 and 3) = 80 / 120 = 0.67 < 0.7: the best, tied, so both positive.
  matched, labels = matching.match(anchors, gt, np.array([True, True]), **RPN)
  np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0])  # IoU(gt0, anchor 0) = 0.18
  np.testing.assert_array_equal(matched, [0, 0, 0, 0, 0])
  _, labels = matching.match(
    anchors, gt, np.array([True, True]), **{**RPN, 'allow_low_quality': False}
  )
  np.testing.assert_array_equal(labels, [0, -1, 0, -1, 0])


def test_images_without_ground_truth_give_all_negatives_and_finite_losses():
  anchors = boxes.clip_to_image(
    jnp.asarray(random_grid_boxes(np.random.default_rng(3), 400, size=60)),
    height=64,
    width=64,
  )
  gt = jnp.asarray(np.random.default_rng(4).uniform(0, 50, (4, 4)), jnp.float32)
  no_gt = jnp.zeros(4, bool)

  @jax.jit
  def rpn_targets(rng, deltas):
    matched, labels = matching.match(anchors, gt, no_gt, **RPN)
    pos, neg = matching.sample(rng, labels, num_samples=256, positive_fraction=0.5)
    targets = boxes.encode(gt[matched], anchors, weights=(1, 1, 1, 1))
    box_loss = jnp.sum(losses.smooth_l1(deltas, targets, beta=1 / 9).sum(-1) * pos)
    return matched, labels, pos, neg, box_loss / jnp.maximum(jnp.sum(pos), 1)

  deltas = jnp.zeros((400, 4))
  matched, labels, pos, neg, loss = rpn_targets(jax.random.key(0), deltas)
  np.testing.assert_array_equal(labels, 0)
  np.testing.assert_array_equal(matched, 0)
  assert int(pos.sum()) == 0 and int(neg.sum()) == 256
  assert float(loss) == 0.0
  grad = jax.grad(lambda d: rpn_targets(jax.random.key(0), d)[-1])(deltas)
  assert np.all(np.isfinite(grad))
  # Fast R-CNN's background range starts at 0.1: with no boxes nothing qualifies.
  _, labels = matching.match(anchors, gt, no_gt, **FAST_RCNN)
  np.testing.assert_array_equal(labels, -1)
  # A zero-sized ground-truth array works too.
  _, labels = matching.match(anchors, jnp.zeros((0, 4)), jnp.zeros(0, bool), **RPN)
  np.testing.assert_array_equal(labels, 0)


@pytest.mark.parametrize(
  'num_pos,num_neg,num_samples,fraction,want_pos,want_neg',
  [
    (1000, 5000, 256, 0.5, 128, 128),
    (10, 5000, 256, 0.5, 10, 246),
    (10, 20, 256, 0.5, 10, 20),
    (300, 50, 128, 0.25, 32, 50),
    (0, 3000, 64, 0.25, 0, 64),
  ],
)
def test_sample_counts_are_exact(
  num_pos, num_neg, num_samples, fraction, want_pos, want_neg
):
  labels = np.concatenate([np.ones(num_pos), np.zeros(num_neg), -np.ones(300)]).astype(
    np.int32
  )
  labels = np.random.default_rng(0).permutation(labels)
  fn = jax.jit(
    functools.partial(
      matching.sample, num_samples=num_samples, positive_fraction=fraction
    )
  )
  pos, neg = fn(jax.random.key(1), labels)
  assert int(pos.sum()) == want_pos and int(neg.sum()) == want_neg
  assert np.all(labels[np.asarray(pos)] == 1) and np.all(labels[np.asarray(neg)] == 0)


def test_sample_draws_uniformly_at_random():
  labels = np.array([1] * 20 + [0] * 40 + [-1] * 5, np.int32)
  keys = jax.random.split(jax.random.key(2), 400)
  pos, neg = jax.vmap(
    lambda k: matching.sample(k, labels, num_samples=20, positive_fraction=0.25)
  )(keys)
  assert np.all(pos.sum(1) == 5) and np.all(neg.sum(1) == 15)
  # Each positive is drawn with probability 5 / 20, each negative 15 / 40: 400
  # draws give 100 and 150 on average (sd about 9 and 10), checked at 5 sd.
  np.testing.assert_allclose(pos.sum(0)[:20], 100, atol=45)
  np.testing.assert_allclose(neg.sum(0)[20:60], 150, atol=50)
  assert len({tuple(np.flatnonzero(p)) for p in np.asarray(pos)}) > 300


def test_bad_matching_input_raises_user_error():
  with pytest.raises(UserError, match='negative_iou'):
    matching.match(
      np.zeros((2, 4)),
      np.zeros((1, 4)),
      np.ones(1, bool),
      positive_iou=0.3,
      negative_iou=0.7,
    )
  with pytest.raises(UserError, match='positive_fraction'):
    matching.sample(
      jax.random.key(0), np.zeros(3, np.int32), num_samples=4, positive_fraction=2.0
    )
