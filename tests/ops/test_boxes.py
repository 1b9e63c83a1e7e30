"""Box ops against references written from the definitions (NumPy, Python loops)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.ops import boxes


def iou_reference(a, b):
  """IoU of two (x1, y1, x2, y2) boxes in float64, straight from the definition."""
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
  area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
  union = area_a + area_b - inter
  return inter / union if union > 0 else 0.0


def greedy_nms_reference(bxs, scores, threshold, valid=None, classes=None):
  """Plain greedy NMS: visit by descending score (ties: lower index), keep a box
  unless an already kept box of its class overlaps it with IoU > threshold."""
  n = len(scores)
  valid = [True] * n if valid is None else valid
  classes = [0] * n if classes is None else classes
  order = sorted((i for i in range(n) if valid[i]), key=lambda i: (-scores[i], i))
  kept = []
  for i in order:
    if all(
      classes[j] != classes[i] or iou_reference(bxs[i], bxs[j]) <= threshold
      for j in kept
    ):
      kept.append(i)
  return kept


def random_grid_boxes(rng, n, *, size=24, duplicates=6):
  """Boxes on an integer grid (so IoUs are exact ratios of small integers, computed
  identically in float32 and float64), some of them exact copies of others."""
  xy = rng.integers(0, size, (n, 2))
  wh = rng.integers(1, size // 2, (n, 2))
  b = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
  copies = rng.choice(n, duplicates, replace=False)
  b[copies] = b[rng.choice(n, duplicates)]
  return b


def test_area_is_width_times_height_and_zero_for_inverted_boxes():
  b = np.array([[0, 0, 2, 3], [1, 1, 1, 5], [5, 5, 4, 7], [-1.5, 0, 1.5, 0.5]])
  np.testing.assert_allclose(boxes.area(b), [6, 0, 0, 1.5])
  assert boxes.area(b.reshape(2, 2, 4)).shape == (2, 2)


def test_pairwise_iou_hand_cases():
  a = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [0, 0, 0, 0]], np.float32)
  b = np.array([[1, 0, 3, 1], [0, 0, 1, 1], [1, 0, 2, 1], [0, 0, 0, 0]], np.float32)
  got = np.asarray(boxes.pairwise_iou(a, b))
  want = [[1 / 3, 1 / 2, 1 / 2, 0], [0, 1, 0, 0], [0, 0, 0, 0]]  # touching: 0
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_pairwise_iou_matches_reference_and_is_nan_free_for_empty_boxes():
  rng = np.random.default_rng(0)
  a = rng.uniform(0, 50, (13, 4)).astype(np.float32)
  b = rng.uniform(0, 50, (7, 4)).astype(np.float32)
  a[:, 2:] = a[:, :2] + rng.uniform(0, 30, (13, 2))
  b[:, 2:] = b[:, :2] + rng.uniform(0, 30, (7, 2))
  a[0] = 0  # padding
  b[3] = b[2]
  want = [
    [iou_reference(x, y) for y in b.astype(np.float64)] for x in a.astype(np.float64)
  ]
  np.testing.assert_allclose(boxes.pairwise_iou(a, b), want, rtol=1e-5, atol=1e-7)
  grad = jax.jit(jax.grad(lambda a: jnp.sum(boxes.pairwise_iou(a, a))))(
    jnp.zeros((2, 4))
  )
  assert np.all(np.isfinite(grad))


def test_encode_hand_case_with_faster_rcnn_weights():
  anchor = np.array([0, 0, 10, 10], np.float32)
  box = np.array([5, 0, 15, 20], np.float32)
  # Centres (10, 10) vs (5, 5), sizes (10, 20) vs (10, 10).
  want = [10 * 5 / 10, 10 * 5 / 10, 5 * math.log(1), 5 * math.log(2)]
  np.testing.assert_allclose(boxes.encode(box, anchor), want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
    boxes.encode(box, anchor, weights=(1, 1, 1, 1)),
    [0.5, 0.5, 0, math.log(2)],
    rtol=1e-6,
    atol=1e-6,
  )
  assert boxes.DEFAULT_WEIGHTS == (10.0, 10.0, 5.0, 5.0)


@pytest.mark.parametrize('weights', [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_encode_decode_round_trip(weights):
  rng = np.random.default_rng(1)
  anchors = rng.uniform(0, 100, (3, 50, 4)).astype(np.float32)
  anchors[..., 2:] = anchors[..., :2] + rng.uniform(4, 200, (3, 50, 2))
  b = rng.uniform(0, 100, (3, 50, 4)).astype(np.float32)
  b[..., 2:] = b[..., :2] + rng.uniform(1, 300, (3, 50, 2))
  deltas = boxes.encode(b, anchors, weights=weights)
  np.testing.assert_allclose(
    boxes.decode(deltas, anchors, weights=weights), b, atol=1e-3
  )
  d = rng.normal(0, 1, (3, 50, 4)).astype(np.float32)
  np.testing.assert_allclose(
    boxes.encode(boxes.decode(d, anchors, weights=weights), anchors, weights=weights),
    d,
    atol=1e-4,
  )


def test_decode_clips_log_scales_at_log_1000_over_16():
  assert boxes.MAX_LOG_SCALE == pytest.approx(math.log(1000 / 16))
  anchor = np.array([10, 20, 30, 60], np.float32)  # 20 wide, 40 high, centre (20, 40)
  deltas = np.array([[0, 0, 5 * 100, 5 * 50], [0, 0, 5 * 1.0, -5 * 2.0]], np.float32)
  got = np.asarray(boxes.decode(deltas, anchor))
  w, h = 20 * 1000 / 16, 40 * 1000 / 16
  np.testing.assert_allclose(
    got[0], [20 - w / 2, 40 - h / 2, 20 + w / 2, 40 + h / 2], rtol=1e-6
  )
  w, h = 20 * math.e, 40 * math.exp(-2)  # below the clip: untouched
  np.testing.assert_allclose(
    got[1], [20 - w / 2, 40 - h / 2, 20 + w / 2, 40 + h / 2], rtol=1e-6
  )
  big = boxes.decode(np.full((4,), 1e4, np.float32), anchor)
  assert np.all(np.isfinite(big))


def test_encode_of_padded_zero_boxes_is_finite():
  d = boxes.encode(np.zeros((3, 4)), np.array([[0, 0, 16, 16.0]] * 3))
  assert np.all(np.isfinite(d))


def test_clip_to_image_and_min_size_mask():
  b = np.array([[-5, -3, 20, 40], [2, 3, 4, 5], [50, 50, 60, 70]], np.float32)
  np.testing.assert_allclose(
    boxes.clip_to_image(b, height=30, width=16),
    [[0, 0, 16, 30], [2, 3, 4, 5], [16, 30, 16, 30]],
  )
  # Traced per-image sizes work under jit and vmap.
  clip = jax.jit(jax.vmap(lambda b, h, w: boxes.clip_to_image(b, height=h, width=w)))
  got = clip(np.stack([b, b]), jnp.array([30.0, 10.0]), jnp.array([16.0, 100.0]))
  np.testing.assert_allclose(got[1, 0], [0, 0, 20, 10])
  m = boxes.min_size_mask(
    np.array([[0, 0, 2, 2], [0, 0, 1.9, 5], [0, 0, 5, 1.9], [3, 3, 1, 1]]), min_size=2
  )
  np.testing.assert_array_equal(m, [True, False, False, False])


def test_bad_boxes_raise_user_error():
  with pytest.raises(UserError, match=r'\[n, 4\]'):
    boxes.pairwise_iou(np.zeros((3, 5)), np.zeros((2, 4)))
  with pytest.raises(UserError, match='max_output'):
    boxes.nms(np.zeros((3, 4)), np.zeros(3), iou_threshold=0.5, max_output=0)


# ---------------------------------------------------------------- NMS


def test_nms_chain_at_0_3_differs_from_0_5():
  """A overlaps B and B overlaps C at IoU 0.4; A and C do not touch. Greedy at 0.3
  suppresses B (by A), so C survives; at 0.5 nothing is suppressed. A padded NMS
  whose self-suppression hard-codes 0.5 gets 0.3 wrong here."""
  b = np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], np.float32)
  # IoU(A, B) = 60 / 140 = 0.43; IoU(B, C) = 0.43; IoU(A, C) = 20 / 180 = 0.11.
  s = np.array([3.0, 2.0, 1.0], np.float32)
  for threshold, want in [
    (0.3, [0, 2]),
    (0.5, [0, 1, 2]),
    (0.1, [0]),
    (0.0, [0]),
    (1.0, [0, 1, 2]),
  ]:
    idx, keep = boxes.nms(b, s, iou_threshold=threshold, max_output=3)
    assert list(np.asarray(idx)[np.asarray(keep)]) == want
    assert want == greedy_nms_reference(b, s, threshold)


@pytest.mark.parametrize('block_size', [5, 256])
def test_nms_equals_greedy_with_ties_duplicates_and_invalid_entries(block_size):
  n = 40
  fn = jax.jit(
    lambda b, s, v, t, m: boxes.nms(
      b, s, iou_threshold=t, max_output=m, valid=v, block_size=block_size
    ),
    static_argnums=4,
  )
  for seed, threshold in itertools.product(range(6), (0.3, 0.5, 0.7)):
    rng = np.random.default_rng(seed)
    b = random_grid_boxes(rng, n)
    if seed % 2:  # quarter pixels, duplicates kept: still exact in float32
      b = b / 4
    s = rng.integers(0, 6, n).astype(np.float32)  # many tied scores
    v = rng.random(n) > 0.15
    want = greedy_nms_reference(b.astype(np.float64), s, threshold, valid=list(v))
    for max_output in (n + 3, 4):
      idx, keep = fn(b, s, v, threshold, max_output)
      idx, keep = np.asarray(idx), np.asarray(keep)
      k = min(len(want), max_output)
      assert idx.dtype == np.int32 and idx.shape == keep.shape == (max_output,)
      assert list(idx[keep]) == want[:k], (seed, threshold, max_output)
      assert not keep[k:].any() and np.all(idx[k:] == 0)


def test_nms_exact_duplicates_keep_the_lower_index_and_invalid_entries_are_inert():
  b = np.array([[0, 0, 4, 4]] * 4 + [[10, 10, 12, 12]], np.float32)
  s = np.array([1.0, 2.0, 2.0, 2.0, 0.5], np.float32)
  v = np.array([True, False, True, True, True])
  idx, keep = boxes.nms(b, s, iou_threshold=0.7, max_output=4, valid=v)
  assert list(np.asarray(idx)[np.asarray(keep)]) == [2, 4]
  # The invalid entry's contents cannot change anything.
  b2, s2 = b.copy(), s.copy()
  b2[1], s2[1] = [100, 100, 200, 200], 1e9
  idx2, keep2 = boxes.nms(b2, s2, iou_threshold=0.7, max_output=4, valid=v)
  np.testing.assert_array_equal(idx, idx2)
  np.testing.assert_array_equal(keep, keep2)


def test_nms_edge_cases_no_boxes_all_invalid_and_vmap():
  idx, keep = boxes.nms(np.zeros((0, 4)), np.zeros(0), iou_threshold=0.5, max_output=3)
  assert idx.shape == (3,) and not np.any(keep)
  idx, keep = boxes.nms(
    np.ones((4, 4)),
    np.ones(4),
    iou_threshold=0.5,
    max_output=3,
    valid=np.zeros(4, bool),
  )
  assert not np.any(keep) and np.all(np.asarray(idx) == 0)
  rng = np.random.default_rng(7)
  bb = np.stack([random_grid_boxes(rng, 12) for _ in range(3)])
  ss = rng.integers(0, 3, (3, 12)).astype(np.float32)
  f = jax.vmap(
    lambda b, s: boxes.nms(b, s, iou_threshold=0.3, max_output=12, block_size=4)
  )
  idx, keep = f(bb, ss)
  for i in range(3):
    assert list(np.asarray(idx[i])[np.asarray(keep[i])]) == greedy_nms_reference(
      bb[i].astype(np.float64), ss[i], 0.3
    )


def test_batched_nms_equals_greedy_per_class_merged_by_score():
  n = 36
  fn = jax.jit(
    lambda b, s, c, v, t: boxes.batched_nms(
      b, s, c, iou_threshold=t, max_output=n, valid=v, block_size=8
    )
  )
  for seed, threshold in itertools.product(range(4), (0.3, 0.5, 0.7)):
    rng = np.random.default_rng(100 + seed)
    b = random_grid_boxes(rng, n, size=16)
    s = rng.integers(0, 5, n).astype(np.float32)
    c = rng.integers(0, 3, n).astype(np.int32)
    v = rng.random(n) > 0.1
    # Independent route: greedy NMS on each class alone, then merge by score.
    kept = []
    for cls in range(3):
      members = [i for i in range(n) if c[i] == cls and v[i]]
      sub = greedy_nms_reference(b[members].astype(np.float64), s[members], threshold)
      kept += [members[j] for j in sub]
    want = sorted(kept, key=lambda i: (-s[i], i))
    idx, keep = fn(b, s, c, v, threshold)
    assert list(np.asarray(idx)[np.asarray(keep)]) == want, (seed, threshold)
  # Identical boxes of different classes both survive; top-k cuts across classes.
  b = np.array([[0, 0, 4, 4]] * 3, np.float32)
  idx, keep = boxes.batched_nms(
    b, np.array([3.0, 2, 1]), np.array([0, 1, 0]), iou_threshold=0.5, max_output=3
  )
  assert list(np.asarray(idx)[np.asarray(keep)]) == [0, 1]
  idx, keep = boxes.batched_nms(
    b, np.array([3.0, 2, 1]), np.array([0, 1, 2]), iou_threshold=0.5, max_output=2
  )
  assert list(np.asarray(idx)[np.asarray(keep)]) == [0, 1]


def test_host_iou_equals_pairwise_iou():
  rng = np.random.default_rng(7)
  xy = rng.uniform(0, 50, (2, 9, 2))
  wh = rng.uniform(0, 20, (2, 9, 2))
  a, b = (np.concatenate([xy[i], xy[i] + wh[i]], -1) for i in range(2))
  b[0] = b[1]  # a duplicate
  b[2, 2:] = b[2, :2]  # an empty box
  np.testing.assert_allclose(
    boxes.host_iou(a[:, None], b[None]), boxes.pairwise_iou(a, b), rtol=1e-5, atol=1e-6
  )
