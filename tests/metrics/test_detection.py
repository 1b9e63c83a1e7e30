"""VOC AP on hand-worked cases; COCO AP against pycocotools and by hand."""

import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.metrics import detection

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 40.0, 30.0]
C = [50.0, 0.0, 60.0, 30.0]


def gt(boxes, labels, difficult=None):
  out = {
    'boxes': np.array(boxes, np.float32).reshape(-1, 4),
    'labels': np.array(labels, int),
  }
  if difficult is not None:
    out['difficult'] = np.array(difficult, bool)
  return out


def det(boxes, scores, labels=None):
  labels = [0] * len(scores) if labels is None else labels
  return {
    'boxes': np.array(boxes, np.float32).reshape(-1, 4),
    'scores': np.array(scores, np.float32),
    'labels': np.array(labels, int),
  }


def voc(dets, gts, num_classes=1):
  return detection.voc_evaluate(
    detections=dets, ground_truths=gts, num_classes=num_classes
  )


# Each case: (detections, ground truths, AP07, AP all-point), worked out by hand
# from the ranked list of true (T) and false (F) positives.
CASES = {
  # T T T over two images: precision 1 at recall 1.
  'perfect': (
    [det([A, B], [0.9, 0.3]), det([C], [0.5])],
    [gt([A, B], [0, 0]), gt([C], [0])],
    1.0,
    1.0,
  ),
  # A, A again, B: T F T, recall .5 .5 1, precision 1 1/2 2/3. All-point:
  # .5 * 1 + .5 * 2/3 = 5/6. 11-point: t = 0..0.5 see 1 (6 points), t = 0.6..1
  # see 2/3 (5 points): (6 + 10/3) / 11 = 28/33.
  'duplicate': (
    [det([A, A, B], [0.9, 0.8, 0.7])],
    [gt([A, B], [0, 0])],
    28 / 33,
    5 / 6,
  ),
  # Only A found: recall .5 at precision 1, nothing beyond: 6/11 and 1/2.
  'miss': ([det([A], [0.9])], [gt([A, B], [0, 0])], 6 / 11, 0.5),
  # The detection on the difficult B is neither T nor F and B is not counted:
  # T alone at recall 1 (counting it as F would give T at precision 1/2).
  'difficult': (
    [det([B, A], [0.95, 0.9])],
    [gt([A, B], [0, 0], [False, True])],
    1.0,
    1.0,
  ),
  # An image without ground truth: its detection (the highest score) is F, then
  # T: precision 1/2 at recall 1 everywhere. A third image, empty, changes nothing.
  'empty image': (
    [det([A], [0.8]), det([B], [0.9]), det([], [])],
    [gt([A], [0]), gt([], []), gt([], [])],
    0.5,
    0.5,
  ),
  # IoU of [0,0,10,20] with A is 100/200 = 0.5 exactly: >= counts it as T.
  'iou exactly 0.5': ([det([[0, 0, 10, 20]], [0.9])], [gt([A], [0])], 1.0, 1.0),
  # Two overlapping boxes P, Q; the second detection's best box is P (IoU 0.8,
  # taken) although Q overlaps it at 0.75: VOC does not fall back, it is F.
  # T F: recall 1/2 at precision 1: 6/11 and 1/2.
  'no fallback': (
    [det([[0, 0, 10, 10], [0, 0, 10, 8]], [0.9, 0.8])],
    [gt([[0, 0, 10, 10], [0, 0, 10, 6]], [0, 0])],
    6 / 11,
    0.5,
  ),
}


@pytest.mark.parametrize('name', CASES)
def test_voc_ap_on_hand_worked_cases(name):
  dets, gts, ap07, ap_all = CASES[name]
  out = voc(dets, gts)
  np.testing.assert_allclose(out['ap_07'], [ap07], atol=1e-12)
  np.testing.assert_allclose(out['ap_all'], [ap_all], atol=1e-12)
  assert out['map_07'] == pytest.approx(ap07) and out['map_all'] == pytest.approx(
    ap_all
  )


def test_a_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
  # Class 0: perfect; class 1: only A found of A, B (1/2); class 2: no ground
  # truth, one detection.
  dets = [det([A, A, C], [0.9, 0.8, 0.7], [0, 1, 2])]
  gts = [gt([A, A, B], [0, 1, 1])]
  out = voc(dets, gts, num_classes=3)
  np.testing.assert_allclose(out['ap_all'][:2], [1.0, 0.5])
  assert np.isnan(out['ap_all'][2]) and np.isnan(out['ap_07'][2])
  np.testing.assert_array_equal(out['num_gt'], [1, 2, 0])
  assert out['map_all'] == pytest.approx(0.75)
  assert out['map_07'] == pytest.approx((1 + 6 / 11) / 2)


def test_difficult_objects_do_not_count_in_num_gt_and_may_be_hit_twice():
  dets = [det([B, B, A], [0.9, 0.8, 0.7])]
  out = voc(dets, [gt([A, B], [0, 0], [False, True])])
  assert out['num_gt'][0] == 1 and out['ap_all'][0] == 1.0
  np.testing.assert_array_equal(out['precision'][0], [1.0])  # B's hits are skipped


def test_mismatched_image_counts_name_the_fix():
  with pytest.raises(UserError, match='one entry per image'):
    voc([det([A], [0.9])], [])


def _coco_101(recall, precision):
  """COCO's interpolated AP from a ranked recall/precision list, by its
  definition: the mean over r = 0, 0.01, ..., 1 of the best precision at
  recall >= r (0 where none)."""
  return np.mean(
    [
      precision[recall >= r].max() if np.any(recall >= r) else 0.0
      for r in np.linspace(0, 1, 101)
    ]
  )


def _random_scene(rng, num_classes):
  """Ground truth in the four disjoint quadrants of a 200x200 image, and
  detections near them or anywhere. With disjoint ground truth no detection
  reaches IoU 0.5 with two boxes (it would need more than half its area in
  each), so VOC's "best box or nothing" and COCO's "best untaken box" match
  the same pairs."""
  gts, dets = [], []
  for _ in range(6):
    boxes, labels = [], []
    for qy in (0, 100):
      for qx in (0, 100):
        if rng.random() < 0.7:
          x1, y1 = qx + rng.uniform(0, 40), qy + rng.uniform(0, 40)
          boxes.append([x1, y1, x1 + rng.uniform(20, 60), y1 + rng.uniform(20, 60)])
          labels.append(rng.integers(num_classes))
    d_boxes, d_labels = [], []
    for box, label in zip(boxes, labels, strict=True):
      for _ in range(rng.integers(0, 3)):  # 0, 1 or 2 (a duplicate) hits
        jitter = rng.normal(0, 6, 4)
        d_boxes.append(np.array(box) + jitter)
        d_labels.append(label if rng.random() < 0.8 else rng.integers(num_classes))
    for _ in range(rng.integers(0, 4)):
      x1, y1 = rng.uniform(0, 150, 2)
      d_boxes.append([x1, y1, x1 + rng.uniform(5, 50), y1 + rng.uniform(5, 50)])
      d_labels.append(rng.integers(num_classes))
    d_boxes = np.array(d_boxes).reshape(-1, 4)
    d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2] + 1)
    gts.append(gt(boxes, labels))
    dets.append(det(d_boxes, rng.random(len(d_boxes)), d_labels))  # no ties
  return dets, gts


@pytest.mark.parametrize('seed', range(4))
def test_voc_matching_agrees_with_pycocotools_at_iou_half(seed):
  """pycocotools at IoU 0.5, area range 'all', at most 100 detections per
  image (more than any image here has) ranks and matches as VOC does here, so
  its 101-point AP must equal the one computed from our recall/precision
  exactly. The interpolations differ: COCO averages the precision envelope at
  101 recall points, VOC2010+ integrates it. For a non-increasing step
  function f on [0, 1], (1/101) sum f(k/100) is within 1/101 of its integral
  (it lies between the left and right Riemann sums up to the extra point), so
  the two APs agree within 1/101."""
  rng = np.random.default_rng(seed)
  num_classes = 3
  dets, gts = _random_scene(rng, num_classes)
  out = voc(dets, gts, num_classes)
  ev = detection.coco_eval(
    detections=dets, ground_truths=gts, num_classes=num_classes,
    image_sizes=[(200, 200)] * len(gts),
  )  # fmt: skip
  assert ev.params.iouThrs[0] == 0.5 and ev.params.areaRngLbl[0] == 'all'
  assert ev.params.maxDets[-1] == 100
  for k, cat in enumerate(ev.params.catIds):
    c = cat - 1
    coco_ap = ev.eval['precision'][0, :, k, 0, -1].mean()
    ours = _coco_101(out['recall'][c], out['precision'][c])
    assert coco_ap == pytest.approx(ours, abs=1e-9)
    assert abs(coco_ap - out['ap_all'][c]) <= 1 / 101 + 1e-12


@pytest.mark.parametrize('name', ['perfect', 'duplicate', 'difficult', 'empty image'])
def test_voc_and_pycocotools_coincide_where_the_envelope_is_flat(name):
  """Where recall reaches 1 and the precision envelope is constant (1 when
  perfect, 1/2 after one false positive first), sampling it at 101 points and
  integrating it give the same AP. Difficult boxes enter COCO as crowd regions;
  a detection equal to one has IoU 1 both ways and is ignored by both."""
  dets, gts, _, ap_all = CASES[name]
  if name == 'duplicate':
    # One ground-truth box hit twice: T F, envelope 1 up to recall 1.
    dets, gts, ap_all = [det([A, A], [0.9, 0.8])], [gt([A], [0])], 1.0
  sizes = [(100, 100)] * len(gts)
  coco = detection.coco_evaluate(
    detections=dets, ground_truths=gts, num_classes=1, image_sizes=sizes
  )
  assert coco['AP50'] == pytest.approx(ap_all, abs=1e-12)
  assert voc(dets, gts)['ap_all'][0] == pytest.approx(ap_all, abs=1e-12)


def test_to_coco_converts_corners_to_x_y_width_height():
  dataset, results = detection.to_coco(
    detections=[det([[1.5, 2.0, 11.5, 7.0]], [0.7], [2])],
    ground_truths=[gt([[3.0, 4.0, 13.0, 24.0], [0, 0, 5, 5]], [2, 0], [False, True])],
    image_sizes=[(30, 40)],
  )
  assert dataset['images'] == [{'id': 1, 'height': 30, 'width': 40}]
  first, crowd = dataset['annotations']
  assert first['bbox'] == [3.0, 4.0, 10.0, 20.0] and first['area'] == 200.0
  assert first['category_id'] == 3 and first['iscrowd'] == 0 and first['image_id'] == 1
  assert crowd['iscrowd'] == 1 and crowd['category_id'] == 1
  assert results == [
    {
      'image_id': 1,
      'category_id': 3,
      'bbox': [1.5, 2.0, 10.0, 5.0],
      'score': pytest.approx(0.7),
    }
  ]
  assert {c['id'] for c in dataset['categories']} == {1, 3}


def test_coco_ap_over_iou_thresholds_and_sizes_by_hand():
  """One 20x20 box (small: area 400 < 32^2) found by one detection of IoU
  400 / 600 = 2/3: a hit at the thresholds 0.5, 0.55, 0.6, 0.65 of the ten,
  so AP = 0.4, AP50 = 1, AP75 = 0, APs = 0.4, and no medium or large boxes."""
  dets = [det([[10, 10, 30, 40]], [0.9])]
  gts = [gt([[10, 10, 30, 30]], [0])]
  out = detection.coco_evaluate(
    detections=dets, ground_truths=gts, num_classes=1, image_sizes=[(64, 64)]
  )
  # pycocotools divides by tp + fp + eps, hence approx.
  assert out['AP'] == pytest.approx(0.4) and out['AP50'] == pytest.approx(1.0)
  assert out['AP75'] == 0.0
  assert out['APs'] == pytest.approx(0.4)
  assert np.isnan(out['APm']) and np.isnan(out['APl'])


def test_coco_sizes_split_by_area_and_no_detections_give_zero():
  # A medium (40x40 = 1600 px) box found exactly, a large (100x100) one missed.
  gts = [gt([[0, 0, 40, 40], [100, 100, 200, 200]], [0, 1])]
  dets = [det([[0, 0, 40, 40]], [0.9], [0])]
  out = detection.coco_evaluate(
    detections=dets, ground_truths=gts, num_classes=2, image_sizes=[(256, 256)]
  )
  assert out['APm'] == pytest.approx(1.0) and out['APl'] == 0.0
  assert out['AP'] == pytest.approx(0.5)
  none = detection.coco_evaluate(
    detections=[det([], [])], ground_truths=gts, num_classes=2, image_sizes=[(256, 256)]
  )
  assert none['AP'] == 0.0
