"""Detection metrics on the host: PASCAL VOC average precision and COCO's through pycocotools.

Boxes are `(x1, y1, x2, y2)` in pixels, continuous coordinates (pixel `i` covers
`[i, i + 1)`, width = `x2 - x1`) as in torchvision and COCO. The VOC devkit
itself uses the +1 convention of the original R-CNN code (width = x2 - x1 + 1);
nkjax converts at the dataset boundary, so the IoUs here are the continuous ones.

Per image `i`, the inputs are
- `detections[i]`: `{'boxes': [k, 4], 'scores': [k], 'labels': [k]}`;
- `ground_truths[i]`: `{'boxes': [g, 4], 'labels': [g]}` and optionally
  `'difficult'` bool `[g]` (VOC's difficult objects, COCO's crowd regions:
  objects the evaluation ignores; see `nkjax.data.detection.ground_truths`).
Class ids are 0..num_classes-1.
"""

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from nkjax.errors import UserError
from nkjax.ops import boxes as boxes_lib


def _check(detections, ground_truths):
  if len(detections) != len(ground_truths):
    raise UserError(
      f'{len(detections)} images of detections but {len(ground_truths)} of ground '
      'truth; give one entry per image to both'
    )


def _difficult(gt) -> np.ndarray:
  labels = np.asarray(gt['labels'])
  return np.asarray(gt.get('difficult', np.zeros(len(labels), bool)), bool)


def ap_07(recall: np.ndarray, precision: np.ndarray) -> float:
  """VOC2007's 11-point AP: the mean over t = 0, 0.1, ..., 1 of the best
  precision at recall >= t (0 where recall never reaches t)."""
  points = [
    precision[recall >= t].max() if np.any(recall >= t) else 0.0
    for t in np.linspace(0, 1, 11)
  ]
  return float(np.mean(points))


def ap_all(recall: np.ndarray, precision: np.ndarray) -> float:
  """VOC2010+'s all-point AP: the area under the precision envelope (the best
  precision at any recall >= r) as a step function of recall r."""
  r = np.concatenate([[0.0], recall, [1.0]])
  p = np.concatenate([[0.0], precision, [0.0]])
  p = np.maximum.accumulate(p[::-1])[::-1]
  step = np.flatnonzero(r[1:] != r[:-1])
  return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))


def voc_evaluate(
  *,
  detections: Sequence[dict],
  ground_truths: Sequence[dict],
  num_classes: int,
  iou_threshold: float = 0.5,
) -> dict:
  """PASCAL VOC average precision per class and its mean.

  For each class, the detections of all images are sorted by score (highest
  first; ties keep image order, then order within the image). Each takes the
  ground-truth box of its class in its image with the highest IoU. If that IoU
  is >= `iou_threshold` (the devkit writes `>`; they differ only at exact
  equality) the detection is a true positive, unless the box is difficult
  (then it is neither true nor false positive, and may be hit any number of
  times) or an earlier detection already took it (then it is a false
  positive: duplicates count against a detector). Otherwise it is a false
  positive. As in the devkit, a detection whose best box is taken does not
  fall back to its second best (COCO's matching does).

  Args:
    detections, ground_truths: per image, as in the module docstring.
    num_classes: C.
    iou_threshold: 0.5 for VOC.

  Returns:
    `{'ap_07': [C], 'ap_all': [C], 'map_07': float, 'map_all': float,
    'num_gt': int [C], 'recall': [C arrays], 'precision': [C arrays]}`: the
    VOC2007 11-point AP and the VOC2010+ all-point AP of each class, their
    means over classes with ground truth, the non-difficult ground-truth count
    of each class, and each class's recall and precision after each of its
    detections in score order. A class without non-difficult ground truth has
    AP nan and is left out of the means.

  Two objects; detections by score: a hit, a miss, a hit. Precision 1, 1/2,
  2/3 at recall 1/2, 1/2, 1: all-point AP = 1/2 * 1 + 1/2 * 2/3 = 5/6, and
  11-point AP = (6 * 1 + 5 * 2/3) / 11 = 28/33.

  >>> truth = [{'boxes': np.array([[0, 0, 10, 10], [20, 20, 30, 30]]),
  ...           'labels': np.array([0, 0])}]
  >>> found = [{'boxes': np.array([[0, 0, 10, 11], [50, 50, 60, 60], [21, 20, 30, 30]]),
  ...           'scores': np.array([0.9, 0.8, 0.7]), 'labels': np.array([0, 0, 0])}]
  >>> r = voc_evaluate(detections=found, ground_truths=truth, num_classes=1)
  >>> bool(np.isclose(r['map_all'], 5 / 6)), bool(np.isclose(r['map_07'], 28 / 33))
  (True, True)
  """
  _check(detections, ground_truths)
  gts = [
    (
      np.asarray(g['boxes'], np.float64).reshape(-1, 4),
      np.asarray(g['labels']),
      _difficult(g),
    )
    for g in ground_truths
  ]
  dets = [
    (
      np.asarray(d['boxes'], np.float64).reshape(-1, 4),
      np.asarray(d['scores'], np.float64).reshape(-1),
      np.asarray(d['labels']).reshape(-1),
    )
    for d in detections
  ]
  out = {k: np.full(num_classes, np.nan) for k in ('ap_07', 'ap_all')}
  out['num_gt'] = np.zeros(num_classes, np.int64)
  out['recall'], out['precision'] = [], []
  for c in range(num_classes):
    gt_c = [(b[lab == c], hard[lab == c]) for b, lab, hard in gts]
    npos = sum(int(np.sum(~hard)) for _, hard in gt_c)
    out['num_gt'][c] = npos
    # Each detection's best ground-truth box of its class in its image, by one
    # IoU matrix per image; only the greedy pass over ranks is sequential.
    image, best, best_iou, scores = [], [], [], []
    for i, ((d_boxes, d_scores, d_labels), (g_boxes, _)) in enumerate(
      zip(dets, gt_c, strict=True)
    ):
      mine = d_labels == c
      k = int(mine.sum())
      image.append(np.full(k, i))
      scores.append(d_scores[mine])
      if len(g_boxes):
        iou = boxes_lib.host_iou(d_boxes[mine][:, None], g_boxes[None])
        best.append(np.argmax(iou, 1))
        best_iou.append(iou.max(1, initial=0.0))
      else:
        best.append(np.zeros(k, int))
        best_iou.append(np.full(k, -1.0))
    image, best, best_iou, scores = (
      np.concatenate(x) if x else np.zeros(0) for x in (image, best, best_iou, scores)
    )
    order = np.argsort(-scores, kind='stable')
    taken = [np.zeros(len(b), bool) for b, _ in gt_c]
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, d in enumerate(order):
      i, j = int(image[d]), int(best[d])
      if best_iou[d] >= iou_threshold:
        if gt_c[i][1][j]:
          continue  # a difficult box: neither true nor false positive
        if not taken[i][j]:
          taken[i][j] = True
          tp[rank] = 1
          continue
      fp[rank] = 1
    counted = (tp + fp) > 0  # ranks that hit a difficult box are skipped
    tp, fp = np.cumsum(tp[counted]), np.cumsum(fp[counted])
    recall = tp / npos if npos else np.full(len(tp), np.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    out['recall'].append(recall)
    out['precision'].append(precision)
    if npos:
      out['ap_07'][c] = ap_07(recall, precision)
      out['ap_all'][c] = ap_all(recall, precision)
  has_gt = out['num_gt'] > 0
  out['map_07'] = float(np.mean(out['ap_07'][has_gt])) if has_gt.any() else float('nan')
  out['map_all'] = (
    float(np.mean(out['ap_all'][has_gt])) if has_gt.any() else float('nan')
  )
  return out


def to_coco(
  *,
  detections: Sequence[dict],
  ground_truths: Sequence[dict],
  image_sizes: Sequence[tuple[int, int]],
) -> tuple[dict, list[dict]]:
  """nkjax boxes as COCO JSON: a ground-truth dataset and a result list.

  Images get ids 1..n in order and classes ids `label + 1` (COCO's ids start
  at 1). A box `(x1, y1, x2, y2)` becomes `bbox = [x1, y1, x2 - x1, y2 - y1]`
  (COCO's `[x, y, width, height]` in the same continuous pixels) with `area`
  the box's area; COCO's own annotations give the segment's area instead, so
  APs/APm/APl on real COCO can differ slightly from the official server's.
  Difficult (crowd) boxes become `iscrowd: 1`, COCO's ignore regions.

  Returns:
    `(dataset, results)`: `dataset` has `images` (`id`, `height`, `width`),
    `annotations` (`id`, `image_id`, `category_id`, `bbox`, `area`,
    `iscrowd`) and `categories`; `results` is a list of `{'image_id',
    'category_id', 'bbox', 'score'}`.
  """
  _check(detections, ground_truths)
  if len(image_sizes) != len(ground_truths):
    raise UserError(
      f'{len(image_sizes)} image sizes for {len(ground_truths)} images; give one '
      '(height, width) per image'
    )

  def bbox(box):
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]

  images, annotations, results, classes = [], [], [], set()
  for i, (gt, det, (h, w)) in enumerate(
    zip(ground_truths, detections, image_sizes, strict=True), start=1
  ):
    images.append({'id': i, 'height': int(h), 'width': int(w)})
    for box, label, hard in zip(
      np.asarray(gt['boxes']).reshape(-1, 4), np.asarray(gt['labels']), _difficult(gt),
      strict=True,
    ):  # fmt: skip
      b = bbox(box)
      annotations.append({
        'id': len(annotations) + 1, 'image_id': i, 'category_id': int(label) + 1,
        'bbox': b, 'area': b[2] * b[3], 'iscrowd': int(hard),
      })  # fmt: skip
    for box, label, score in zip(
      np.asarray(det['boxes']).reshape(-1, 4), np.asarray(det['labels']),
      np.asarray(det['scores']), strict=True,
    ):  # fmt: skip
      results.append({
        'image_id': i, 'category_id': int(label) + 1, 'bbox': bbox(box),
        'score': float(score),
      })  # fmt: skip
    classes.update(int(label) for label in np.asarray(gt['labels']))
  dataset = {
    'images': images,
    'annotations': annotations,
    'categories': [{'id': c + 1, 'name': str(c)} for c in sorted(classes)],
  }
  return dataset, results


def coco_eval(
  *,
  detections: Sequence[dict],
  ground_truths: Sequence[dict],
  num_classes: int,
  image_sizes: Sequence[tuple[int, int]],
):
  """A run `pycocotools.cocoeval.COCOeval` (bbox) after `evaluate` and `accumulate`.

  Its `eval['precision']` is `[iou thresholds 10, recall points 101, classes,
  area ranges 4, max detections 3]` over the classes with ground truth in
  ascending order; see `coco_evaluate`.
  """
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  for d in detections:
    labels = np.asarray(d['labels'])
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise UserError(f'detection labels must be in 0..{num_classes - 1}')
  dataset, results = to_coco(
    detections=detections, ground_truths=ground_truths, image_sizes=image_sizes
  )
  # Both sides built from dicts (not COCO.loadRes, which fails on no
  # detections); pycocotools' progress prints are swallowed.
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    dt = COCO()
    dt.dataset = {
      'images': dataset['images'],
      'categories': dataset['categories'],
      'annotations': [
        {**r, 'id': k + 1, 'area': r['bbox'][2] * r['bbox'][3], 'iscrowd': 0}
        for k, r in enumerate(results)
      ],
    }
    dt.createIndex()
    ev = COCOeval(gt, dt, iouType='bbox')
    ev.evaluate()
    ev.accumulate()
  return ev


def coco_evaluate(
  *,
  detections: Sequence[dict],
  ground_truths: Sequence[dict],
  num_classes: int,
  image_sizes: Sequence[tuple[int, int]],
) -> dict[str, float]:
  """COCO's box AP through pycocotools.

  Args:
    detections, ground_truths: per image, as in the module docstring; boxes
      in the pixels of `image_sizes` (for COCO's size ranges, the original
      image's: divide by the loader's `scale`).
    num_classes: C; detection labels must lie in 0..C-1.
    image_sizes: `(height, width)` of each image.

  Returns:
    `{'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'}`: AP averaged over IoU 0.5,
    0.55, ..., 0.95, at IoU 0.5, at 0.75, and for small (< 32^2 px), medium
    and large (> 96^2 px) objects, each the mean over classes with ground
    truth of COCO's 101-point interpolated AP with at most 100 detections
    per image; nan where no ground truth qualifies.
  """
  with contextlib.redirect_stdout(io.StringIO()):
    ev = coco_eval(
      detections=detections, ground_truths=ground_truths, num_classes=num_classes,
      image_sizes=image_sizes,
    )  # fmt: skip
    if not ev.params.catIds:
      return dict.fromkeys(('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'), float('nan'))
    ev.summarize()
  names = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')
  return {
    k: (float(v) if v >= 0 else float('nan'))
    for k, v in zip(names, ev.stats, strict=False)
  }
