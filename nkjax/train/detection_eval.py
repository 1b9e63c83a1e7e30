"""The detectors at test time: evaluation, result tables, timing, truncated SVD.

* `evaluate`: mAP (VOC07 11-point and all-point), COCO AP, per-class AP, the
  test time per image and `detections.png` of a trained state.
* `print_table`, `print_compare_table`, `print_svd_table`: the console tables.
* `svd_rows`: a trained head evaluated whole and at truncated-SVD ranks
  (Fast R-CNN, section 3.1).
* `detect_image`: a trained detector's boxes on one image file, drawn.
* `time_per_image`, `time_head`: test-time measurements, as Fast R-CNN's paper
  reports them.

`nkjax.bench` measures training throughput: many steps over one fixed batch.
A detector's test time is another quantity: seconds per test image, one image
at a time, each image different, with the host's region proposals (selective
search for R-CNN and Fast R-CNN) timed beside the network; and, for the
truncated-SVD study, the box head alone. Both time on one device after a
warm-up call (which compiles) and report medians.
"""

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nkjax import viz
from nkjax.bench import measure
from nkjax.data import detection as det_data
from nkjax.metrics import detection as det_metrics
from nkjax.train import detection as det_steps
from nkjax.train import loop
from nkjax.train import state as state_lib


def time_per_image(
  predict_step: Callable[[Any, dict], Any],
  state: Any,
  images: np.ndarray,
  *,
  add_proposals: Callable[[dict], dict] | None = None,
) -> dict:
  """Median seconds per test image of the network and of the proposals.

  Args:
    predict_step: `predict_step(state, batch) -> outputs`, jitted here.
    state: what `predict_step` takes (a train state); copied to one device.
    images: `[n, h, w, 3]` test images, n >= 1; image 0 is run once more
      first, untimed, to compile.
    add_proposals: `add_proposals(batch) -> batch` with `proposals` and
      `proposal_mask` added, computed afresh for each image (not from a
      cache); None for Faster R-CNN, whose proposals are part of the network.

  Returns:
    `{'net': s, 'proposals': s, 'total': s}`: medians over the images of the
    network's time, the proposals' time (without `add_proposals`: the
    microseconds of making the batch) and their sum.
  """
  device = jax.devices()[0]
  params = jax.device_put(jax.device_get(state), device)
  step = jax.jit(predict_step)
  net, props = [], []
  for i in range(len(images) + 1):
    image = images[i % len(images)][None]
    t = time.perf_counter()
    batch = {'image': image}
    if add_proposals is not None:
      batch = add_proposals(batch)
    t_props = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(step(params, jax.device_put(batch, device)))
    if i:  # the first image compiles
      net.append(time.perf_counter() - t)
      props.append(t_props)
  net_s, props_s = float(np.median(net)), float(np.median(props))
  return {'net': net_s, 'proposals': props_s, 'total': net_s + props_s}


def _box_head(model, pooled):
  return model.box_head(pooled)


def time_head(state: Any, *, num_rois: int, repeats: int = 50) -> float:
  """Median seconds of a detector's box head alone (fc layers, class and box
  outputs) on `num_rois` RoIs of one image, on one device, after a warm-up.

  Args:
    state: a train state of a Fast or Faster R-CNN (`apply_fn` of a model with
      a `box_head`, `params['box_head']` with `fc_0`, whole or factored by
      truncated SVD).
    num_rois: RoIs per image (the RoI-pooled features are ones `[1, R, 1, 1, d]`).
    repeats: timed calls; the median is returned.
  """
  head = state.params['box_head']
  fc_0 = head['fc_0'] if 'kernel' in head['fc_0'] else head['fc_0']['sv']
  d_in = fc_0['kernel'].shape[0]
  device = jax.devices()[0]
  params = jax.device_put(jax.device_get(state.params), device)
  pooled = jax.device_put(jnp.ones((1, num_rois, 1, 1, d_in), jnp.float32), device)

  @jax.jit
  def run(params, pooled):
    return state.apply_fn({'params': params}, pooled, method=_box_head)

  def run_calls(n):
    for _ in range(n):
      out = run(params, pooled)
    jax.block_until_ready(out)

  (times,) = measure.time_runs(run_calls, steps=1, repeats=repeats, warmup=1)
  return float(np.median(times))


# ---------------------------------------------------------------- evaluation


def predict_step(
  method: str,
  *,
  warp_size: int,
  context: int,
  score_threshold: float,
  nms_threshold: float,
  max_detections: int,
) -> Callable[[Any, dict], dict]:
  """The predict step of `method` ('faster_rcnn', 'fast_rcnn' or 'rcnn');
  the keyword arguments are R-CNN's (its crops and post-processing: the two
  others have them in their model)."""
  if method == 'faster_rcnn':
    return det_steps.faster_rcnn_predict_step
  if method == 'fast_rcnn':
    return det_steps.fast_rcnn_predict_step
  return functools.partial(
    det_steps.rcnn_predict_step, warp_size=warp_size, context=context,
    score_threshold=score_threshold, nms_threshold=nms_threshold,
    max_detections=max_detections,
  )  # fmt: skip


def evaluate(
  state: Any,
  data: Any,
  *,
  method: str,
  predict: Callable[[Any, dict], dict],
  mesh: Any,
  proposals: Any = None,
  workdir: str | None = None,
  dataset: str = '',
  num_pictures: int = 8,
  timing_images: int = 16,
) -> dict:
  """Scores of a trained detector on the test split of `data`.

  Args:
    state: a train state (or `nkjax.train.restore.inference_state`).
    data: a detection `Dataset` (`nkjax.data.detection.load`).
    method: 'faster_rcnn', 'fast_rcnn' or 'rcnn' (named in the figures).
    predict: its predict step (`predict_step`).
    mesh: the data-parallel mesh the test batches are split over.
    proposals: a `nkjax.data.proposals.ProposalSource` for Fast R-CNN
      and R-CNN; None for Faster R-CNN.
    workdir: where `detections.png` goes (the first `num_pictures` test
      images, detections over ground truth); None draws nothing.
    dataset: the dataset's name, for the figure's title.
    timing_images: test images timed one at a time (`time_per_image`).

  Returns:
    `map_07`, `map_all` (VOC07 11-point and all-point mAP at IoU 0.5),
    `coco_ap`, `coco_ap50`, `coco_ap75`, per-class `ap_07`, `ap_all` and
    `num_gt`, `test_seconds_per_image` (`time_per_image`'s dict),
    `proposal_source`, `test_images` and `method`.
  """
  out = loop.make_predictor(predict, mesh=mesh)(
    state,
    data.eval_batches()
    if proposals is None
    else (proposals.add(b) for b in data.eval_batches()),
  )
  detections = det_steps.detections(out)
  truths = det_data.ground_truths(out)
  k = data.num_classes
  voc = det_metrics.voc_evaluate(
    detections=detections, ground_truths=truths, num_classes=k
  )
  coco = det_metrics.coco_evaluate(
    detections=detections, ground_truths=truths, num_classes=k,
    image_sizes=[tuple(int(v) for v in s) for s in out['image_size']],
  )  # fmt: skip
  n = min(num_pictures, len(detections))
  if workdir is not None:
    viz.save_detections(
      os.path.join(workdir, 'detections.png'), out['image'][:n],
      detections=detections[:n], ground_truths=truths[:n],
      class_names=data.class_names,
      title=f'{viz.run_name(workdir)}: {method} on {dataset}, detections (solid, score >= 0.5) over ground truth (dashed)',
    )  # fmt: skip
  timing = time_per_image(
    predict, state, out['image'][:timing_images],
    # Selective search is timed afresh for every image, not from the cache.
    add_proposals=None if proposals is None else lambda b: proposals.add(b, cached=False),
  )  # fmt: skip
  names = data.class_names
  return {
    'method': method,
    'map_07': float(voc['map_07']),
    'map_all': float(voc['map_all']),
    'coco_ap': float(coco['AP']),
    'coco_ap50': float(coco['AP50']),
    'coco_ap75': float(coco['AP75']),
    'ap_07': {names[i]: float(voc['ap_07'][i]) for i in range(k)},
    'ap_all': {names[i]: float(voc['ap_all'][i]) for i in range(k)},
    'num_gt': {names[i]: int(voc['num_gt'][i]) for i in range(k)},
    'test_seconds_per_image': timing,
    'proposal_source': None if proposals is None else proposals.kind,
    'test_images': len(detections),
  }


def print_table(result: dict) -> None:
  """Per-class AP, mAP, COCO AP and the test time of one `evaluate` result."""
  print(f'\n{result["method"]} on {result.get("dataset", "")}')
  print(f'{"class":>12} {"AP07":>7} {"AP all":>7} {"gt":>5}')
  for name, ap in result['ap_07'].items():
    print(
      f'{name:>12} {ap:7.3f} {result["ap_all"][name]:7.3f} {result["num_gt"][name]:5d}'
    )
  t = result['test_seconds_per_image']
  print(
    f'{"mAP":>12} {result["map_07"]:7.3f} {result["map_all"]:7.3f}\n'
    f'COCO AP@[.5:.95] {result["coco_ap"]:.3f}  AP50 {result["coco_ap50"]:.3f}  '
    f'test time/image {1000 * t["total"]:.1f} ms (network {1000 * t["net"]:.1f}, '
    f'proposals {1000 * t["proposals"]:.1f})'
  )


COMPARED = (
  'map_07', 'map_all', 'coco_ap', 'coco_ap50', 'train_seconds',
  'test_seconds_per_image', 'proposal_source',
)  # fmt: skip


def print_compare_table(table: dict[str, dict], *, title: str) -> None:
  """One row per detector: `table[method]` holds the `COMPARED` figures."""
  print(f'\n{title}')
  print(
    f'{"method":>12} {"mAP07":>6} {"mAPall":>6} {"COCO AP":>7} {"AP50":>6} '
    f'{"train s":>8} {"test ms/img":>11} {"(net + proposals)":>18}'
  )
  for m, r in table.items():
    t = r['test_seconds_per_image']
    print(
      f'{m:>12} {r["map_07"]:6.3f} {r["map_all"]:6.3f} {r["coco_ap"]:7.3f} '
      f'{r["coco_ap50"]:6.3f} {r["train_seconds"]:8.1f} {1000 * t["total"]:11.1f} '
      f'{1000 * t["net"]:8.1f} + {1000 * t["proposals"]:.1f}'
    )


# ---------------------------------------------------------------- truncated SVD


def svd_rows(
  *,
  ranks: Sequence[int],
  factored: Callable[[int | None], Any],
  score: Callable[[Any], dict],
  num_rois: int,
) -> list[dict]:
  """A trained head whole (rank None) and at each rank of `ranks`.

  Args:
    ranks: ranks t of the truncated SVD of the box head's fc layers.
    factored: `factored(rank) -> state` with the head factored at `rank`
      (the trained state itself for None).
    score: `score(state) -> evaluate's dict` (drawing nothing).
    num_rois: RoIs per image, for timing the head alone (`time_head`).

  Returns:
    One row per rank, the whole head first: `rank`, `map_07`, `map_all`,
    `coco_ap`, `fc_params`, `head_seconds`, `net_seconds_per_image`, and
    against the whole head `head_speedup` and `map_07_change`.
  """
  rows = []
  for rank in (None, *ranks):
    s = factored(rank)
    r = score(s)
    fc = {k: v for k, v in s.params['box_head'].items() if k.startswith('fc_')}
    rows.append({
      'rank': rank,
      'map_07': r['map_07'], 'map_all': r['map_all'], 'coco_ap': r['coco_ap'],
      'fc_params': state_lib.num_params(fc),
      'head_seconds': time_head(s, num_rois=num_rois),
      'net_seconds_per_image': r['test_seconds_per_image']['net'],
    })  # fmt: skip
  full = rows[0]
  for row in rows:
    row['head_speedup'] = full['head_seconds'] / row['head_seconds']
    row['map_07_change'] = row['map_07'] - full['map_07']
  return rows


def print_svd_table(rows: list[dict], *, title: str) -> None:
  """`svd_rows`'s rows as a console table."""
  print(f'\n{title}')
  print(
    f'{"rank":>6} {"mAP07":>6} {"mAPall":>6} {"COCO AP":>7} {"fc params":>10} '
    f'{"head ms":>8} {"speed-up":>8} {"net ms/img":>10}'
  )
  for row in rows:
    print(
      f'{"full" if row["rank"] is None else row["rank"]:>6} {row["map_07"]:6.3f} '
      f'{row["map_all"]:6.3f} {row["coco_ap"]:7.3f} {row["fc_params"]:10d} '
      f'{1000 * row["head_seconds"]:8.3f} {row["head_speedup"]:8.2f} '
      f'{1000 * row["net_seconds_per_image"]:10.2f}'
    )


# ---------------------------------------------------------------- one image


def detect_image(
  image: np.ndarray,
  state: Any,
  *,
  predict: Callable[[Any, dict], dict],
  image_size: int,
  class_names: Sequence[str],
  workdir: str,
  title: str,
  proposals: Callable[[tuple[int, ...]], Any] | None = None,
  score_threshold: float = 0.5,
  record: dict | None = None,
) -> dict:
  """A trained detector's boxes on one image: `detections.png` and
  `detections.json` in `workdir`.

  Args:
    image: `[h, w, 3]` in [0, 1]; its shorter side is resized (bilinear) to
      `image_size`, the size the detector saw in training.
    state: the detector's state; `predict(state, batch)` its predict step.
    class_names: the names of the detector's classes, by label.
    title: the picture's title.
    proposals: for Fast R-CNN and R-CNN, `proposals(image_shape) ->
      ProposalSource` for the resized image; None for Faster R-CNN.
    score_threshold: the detections drawn and listed score at least this.
    record: fields written first into `detections.json` (what was run).

  Returns:
    `detections.json`'s contents: `record`, `picture` (the PNG's path),
    `image_size` (`[h, w]` of the file), `network_size` (`[h, w]` the
    detector saw), `scale` (`[sy, sx]`, file pixels per network pixel) and
    `detections`, each `{'box': [x0, y0, x1, y1] in the file's pixels,
    'score', 'class'}`. The picture shows the file at its resolution (its
    longer side at least 640 pixels, at most 1600).
  """
  original = np.asarray(image, np.float32)
  h, w = original.shape[:2]
  s = image_size / min(h, w)
  new = (max(1, round(h * s)), max(1, round(w * s)))
  image = np.asarray(jax.image.resize(jnp.asarray(original), (*new, 3), 'linear'))
  batch = {'image': image[None]}
  if proposals is not None:
    batch = proposals(image.shape).add(batch)
  dets = det_steps.detections(jax.device_get(jax.jit(predict)(state, batch)))
  scale = (h / new[0], w / new[1])
  boxes = np.asarray(dets[0]['boxes'], np.float64) * np.array([scale[1], scale[0]] * 2)
  dets = [{**dets[0], 'boxes': boxes}]
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'detections.png')
  # A panel of the file's longer side in pixels at 100 dpi, the axes taking
  # about 85% of it.
  viz.save_detections(
    path, original[None], detections=dets, ground_truths=None,
    class_names=tuple(class_names), title=title, score_threshold=score_threshold,
    cols=1, panel_inches=min(max(max(h, w), 640), 1600) / 85, dpi=100,
  )  # fmt: skip
  found = [
    {'box': [float(v) for v in b], 'score': float(sc), 'class': class_names[int(lb)]}
    for b, sc, lb in zip(boxes, dets[0]['scores'], dets[0]['labels'], strict=True)
    if sc >= score_threshold
  ]
  result = {
    **(record or {}), 'picture': path, 'image_size': [h, w], 'network_size': list(new),
    'scale': list(scale), 'detections': found,
  }  # fmt: skip
  with open(os.path.join(workdir, 'detections.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return result
