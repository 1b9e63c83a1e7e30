"""Object detection: R-CNN, Fast R-CNN and Faster R-CNN, trained and compared.

  python experiments/detection.py                                   # Faster R-CNN on shapes
  python experiments/detection.py --config=experiments/detection.py:fast_rcnn
  python experiments/detection.py --config=experiments/detection.py:rcnn
  python experiments/detection.py --config=experiments/detection.py:compare   # one table
  python experiments/detection.py --config.dataset=digits_canvas
  python experiments/detection.py --config=experiments/detection.py:voc07 \\
      --config.backbone_weights=vgg16.npz --config.data_dir=DIR     # the paper's recipe
  python experiments/detection.py --config=experiments/detection.py:detect \\
      --config.image=photo.png --config.run=runs/detection          # boxes on your image
  python experiments/detection.py --config=experiments/detection.py:svd \\
      --config.run=runs/detection "--config.svd_ranks=(16,64)"      # truncated SVD sweep
  python experiments/detection.py --config.training=alternating     # the 4-step training

A run reports per-class AP (VOC07 11-point and all-point), mAP, COCO
AP@[.5:.95] and AP50 and the test time per image (console table and
summary.json), and writes `detections.png`: fixed test images with the
detections (solid, with scores) over the ground truth (dashed).

Proposals of Fast R-CNN and R-CNN (`--config.proposals`): `selective_search`
(OpenCV contrib, the `[rcnn]` extra), or `sliding_windows`, the fallback that
needs nothing: the same dense windows for every image. `auto` (the default)
takes selective search when it is installed.
"""

import functools
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nkjax import launch, validate, viz, weights
from nkjax.data import detection as det_data
from nkjax.data import images as image_files
from nkjax.data import proposals as prop
from nkjax.errors import UserError, choose
from nkjax.metrics import detection as det_metrics
from nkjax.models import detection as det
from nkjax.train import checkpoint, loop, optim, restore, sharding, writers
from nkjax.train import detection as det_steps
from nkjax.train import detection_timing as det_timing
from nkjax.train import state as state_lib

METHODS = ('faster_rcnn', 'fast_rcnn', 'rcnn')
PRESETS = (*METHODS, 'compare', 'smoke', 'voc07', 'detect', 'svd')
PROPOSALS = ('auto', 'selective_search', 'sliding_windows')
PAPER_MAP_VOC07 = {'faster_rcnn': 69.9, 'fast_rcnn': 66.9, 'rcnn': 66.0}
_positives = validate.each(validate.positive_number())
CHECKS = {
  **validate.TRAINING,
  'method': validate.one_of(*METHODS),
  'methods': validate.each(validate.one_of(*METHODS)),
  'proposals': validate.one_of(*PROPOSALS),
  'roi_op': validate.one_of('align', 'pool'),
  'backbone': validate.one_of(*det.BACKBONES),
  'training': validate.one_of('joint', 'alternating'),
  'image_size': validate.count,
  'max_boxes': validate.optional(validate.count),
  'num_train': validate.count,
  'num_test': validate.count,
  'anchor_scales': _positives,
  'anchor_ratios': _positives,
  'window_sizes': _positives,
  'rpn_width': validate.count,
  'fc': validate.each(validate.count),
  'roi_size': validate.count,
  'rpn_pre_nms_train': validate.count,
  'rpn_post_nms_train': validate.count,
  'rpn_pre_nms_test': validate.count,
  'rpn_post_nms_test': validate.count,
  'rpn_nms_threshold': validate.interval(0.0, 1.0, low_open=True),
  'rpn_batch': validate.count,
  'rois_per_image': validate.count,
  'fg_fraction': validate.interval(0.0, 1.0, low_open=True),
  'max_proposals': validate.count,
  'warp_size': validate.count,
  'context': validate.cadence,
  'crops_per_image': validate.count,
  'rcnn_widths': validate.each(validate.count),
  'rcnn_fc': validate.each(validate.count),
  'score_threshold': validate.interval(0.0, 1.0, high_open=True),
  'nms_threshold': validate.interval(0.0, 1.0),
  'max_detections': validate.count,
  'svd_rank': validate.optional(validate.count),
  'svd_ranks': validate.each(validate.count),
  'timing_images': validate.count,
  'num_pictures': validate.cadence,
  'stage_steps': validate.Rule(
    lambda v: (
      isinstance(v, tuple | list)
      and (len(v) == 0 or (len(v) == 4 and all(validate.count(n) for n in v)))
    ),
    '() (num_steps split in four) or 4 step counts, each an integer >= 1',
  ),
  ('training', 'method', 'compare'): validate.Rule(
    lambda v: v[0] != 'alternating' or (v[1] == 'faster_rcnn' and not v[2]),
    '--config.training=alternating applies to faster_rcnn only (not to fast_rcnn, '
    'rcnn or compare)',
  ),
}


def get_config(preset: str = 'faster_rcnn') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.method = preset if preset in METHODS else 'faster_rcnn'
  c.compare = preset == 'compare'
  c.methods = METHODS
  c.task = preset if preset in ('detect', 'svd') else 'train'
  # detect: the image file and the workdir of the run whose checkpoint draws it
  # (svd: the run whose checkpoint is evaluated at each rank of svd_ranks).
  c.image = ml_collections.config_dict.placeholder(str)
  c.run = 'runs/detection'
  c.dataset = 'shapes'  # or digits_canvas; voc/2007, coco/2017 through TFDS
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.image_size = 128  # generated sets: the side; TFDS: the shorter side
  c.max_boxes = ml_collections.config_dict.placeholder(int)  # None: the dataset's
  c.num_train = 2048
  c.num_test = 256
  # Networks.
  c.backbone = 'small'  # vgg16, resnet18/34/50 (truncated at stride 16)
  c.backbone_weights = ml_collections.config_dict.placeholder(str)  # ImageNet .npz
  c.anchor_scales = (16.0, 32.0, 64.0)
  c.anchor_ratios = (0.5, 1.0, 2.0)
  c.rpn_width = 128
  c.fc = (256, 256)
  c.dropout_rate = 0.0
  c.roi_op = 'align'  # or 'pool' (the papers' RoI max pooling)
  c.roi_size = 5
  # Faster R-CNN proposals (train / test) and RPN sampling.
  c.rpn_pre_nms_train = 2000
  c.rpn_post_nms_train = 128
  c.rpn_pre_nms_test = 1000
  c.rpn_post_nms_test = 100
  c.rpn_nms_threshold = 0.7
  c.rpn_batch = 256
  c.rois_per_image = 64
  c.fg_fraction = 0.25
  # Fast R-CNN and R-CNN proposals.
  c.proposals = 'auto'
  c.max_proposals = 1000
  c.window_sizes = (16.0, 32.0, 64.0)
  # R-CNN: warp size, context pixels, crops per image, network.
  c.warp_size = 32
  c.context = 4
  c.crops_per_image = 32
  c.rcnn_widths = (16, 32, 64)
  c.rcnn_fc = (256,)
  # Test-time post-processing.
  c.score_threshold = 0.05
  c.nms_threshold = 0.3
  c.max_detections = 100
  # Truncated SVD of the box head's fc layers at test time (Fast R-CNN 3.1):
  # None (off) or the rank t kept in every fc layer, for a run's evaluation
  # and for detect; the svd task evaluates a trained run at each of svd_ranks.
  c.svd_rank = ml_collections.config_dict.placeholder(int)
  c.svd_ranks = (8, 16, 32, 64, 128)
  # Optimisation.
  c.update(
    optim.default_fields(
      optimizer='adam', learning_rate=1e-3, schedule='warmup_cosine', warmup_steps=100
    )
  )
  c.batch_size = 4
  c.eval_batch_size = 16
  c.num_steps = 2000
  c.log_every = 100
  c.checkpoint_every = 1000
  c.divergence_factor = 1000.0  # stop when the loss passes this x its first; 0: never
  c.timing_images = 16
  c.num_pictures = 8
  c.seed = 0
  c.dtype = 'float32'  # 'bfloat16': bfloat16 compute, float32 parameters and losses
  # Faster R-CNN: 'joint' (approximate joint training) or the paper's 4-step
  # 'alternating' training, the steps of each stage in stage_steps (() splits
  # num_steps in four).
  c.training = 'joint'
  c.stage_steps = ()
  if preset == 'faster_rcnn':
    # Stride 8 gives small shapes (12 px) several anchors; 7x7 RoIs and the
    # fewer pre-NMS proposals in training took mAP@0.5 from 0.79 to 0.90.
    c.backbone = 'small_s8'
    c.num_steps = 3000
    c.roi_size = 7
    c.rpn_pre_nms_train = 1000
  if preset == 'rcnn':
    c.learning_rate = 1e-3
  if preset == 'compare':
    c.num_steps = 2000
  if preset == 'smoke':
    c.backbone = 'small_tiny'
    c.num_train, c.num_test = 16, 8
    c.num_steps, c.log_every, c.checkpoint_every = 4, 2, 4
    c.fc, c.rpn_width, c.rcnn_widths, c.rcnn_fc = (16, 16), 8, (4, 8), (16,)
    c.batch_size, c.eval_batch_size = 8, 8
    c.proposals, c.max_proposals = 'sliding_windows', 64
    c.rpn_post_nms_train = c.rpn_post_nms_test = 32
    c.warmup_steps = 0
    c.timing_images, c.num_pictures = 2, 4
  if preset == 'voc07':
    # Ren et al. 2015 / Girshick 2015: VGG-16 from ImageNet, images with the
    # shorter side 600 (longer <= 1000), 2 images of 128 RoIs (64 each), SGD
    # 0.001 for 50k iterations then 0.0001 for 20k (Faster R-CNN VOC07 trainval,
    # 70k in the paper's joint training), momentum 0.9, weight decay 5e-4;
    # anchors 128/256/512 x 0.5/1/2; RPN 12000/2000 proposals in training,
    # 6000/300 at test; RoI pooling 7x7, fc 4096-4096 with dropout.
    c.dataset = 'voc/2007'
    c.image_size = 600
    c.backbone = 'vgg16'
    c.anchor_scales = (128.0, 256.0, 512.0)
    c.rpn_width = 512
    c.fc = (4096, 4096)
    c.dropout_rate = 0.5
    c.roi_op = 'pool'
    c.roi_size = 7
    c.rpn_pre_nms_train, c.rpn_post_nms_train = 12000, 2000
    c.rpn_pre_nms_test, c.rpn_post_nms_test = 6000, 300
    c.proposals = 'selective_search'
    c.max_proposals = 2000
    c.warp_size, c.context = 227, 16
    c.optimizer = 'momentum'
    c.learning_rate = 1e-3
    c.schedule = 'step'
    c.decay_boundaries, c.decay_steps = (), (50_000,)
    c.warmup_steps = 0
    c.weight_decay = 5e-4
    c.batch_size = 2
    c.eval_batch_size = 1
    c.num_steps = 70_000
    c.checkpoint_every = 10_000
  return c


# ---------------------------------------------------------------- building blocks


def _mesh(batch_size: int, eval_batch_size: int):
  mesh = sharding.data_mesh()
  sharding.check_batch_size(batch_size, mesh)
  sharding.check_batch_size(eval_batch_size, mesh)
  return mesh


def _load_data(config):
  return det_data.load(
    config.dataset,
    batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    seed=config.seed,
    image_size=config.image_size,
    max_boxes=config.max_boxes,
    num_train=config.num_train,
    num_test=config.num_test,
    data_dir=config.data_dir,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


def build_model(config, method: str, num_classes: int, svd_rank: int | None = None):
  """The network of `method` with the config's attributes; `svd_rank` the
  rank of the box head's fc layers (None: whole)."""
  dtype = jnp.dtype(config.get('dtype', 'float32'))  # absent from older runs
  if method == 'faster_rcnn':
    return det.FasterRCNN(
      num_classes=num_classes, backbone=config.backbone,
      anchor_scales=tuple(config.anchor_scales), anchor_ratios=tuple(config.anchor_ratios),
      rpn_width=config.rpn_width, fc=tuple(config.fc), roi_op=config.roi_op,
      roi_size=config.roi_size, pre_nms_top_n=config.rpn_pre_nms_test,
      post_nms_top_n=config.rpn_post_nms_test, rpn_nms_threshold=config.rpn_nms_threshold,
      score_threshold=config.score_threshold, nms_threshold=config.nms_threshold,
      max_detections=config.max_detections, dropout_rate=config.dropout_rate,
      svd_rank=svd_rank, dtype=dtype,
    )  # fmt: skip
  if method == 'fast_rcnn':
    return det.FastRCNN(
      num_classes=num_classes, backbone=config.backbone, fc=tuple(config.fc),
      roi_op=config.roi_op, roi_size=config.roi_size,
      score_threshold=config.score_threshold, nms_threshold=config.nms_threshold,
      max_detections=config.max_detections, dropout_rate=config.dropout_rate,
      svd_rank=svd_rank, dtype=dtype,
    )  # fmt: skip
  return det.RCNNClassifier(
    num_classes=num_classes,
    widths=tuple(config.rcnn_widths),
    fc=tuple(config.rcnn_fc),
    dtype=dtype,
  )


def check_svd(method: str, state, rank: int | None) -> None:
  """One line unless `rank` is None or fits every fc layer of the box head."""
  if rank is None:
    return
  if method == 'rcnn':
    raise UserError('--config.svd_rank applies to fast_rcnn and faster_rcnn only')
  det.check_svd_rank(state.params['box_head'], rank)


def with_svd(config, method: str, num_classes: int, state, rank: int | None):
  """`state` with the box head's fc layers replaced by their rank-`rank`
  truncated SVD and the matching model (test time only); `state` itself
  when `rank` is None."""
  if rank is None:
    return state
  model = build_model(config, method, num_classes, svd_rank=rank)
  params = {
    **state.params,
    'box_head': det.factor_box_head(state.params['box_head'], rank),
  }
  return state.replace(apply_fn=model.apply, params=params)


def _init_inputs(config, method, image_shape):
  image = jnp.zeros((1, *image_shape), jnp.float32)
  if method == 'faster_rcnn':
    return (image,)
  if method == 'fast_rcnn':
    return image, jnp.zeros((1, 8, 4)), jnp.ones((1, 8), bool)
  return (jnp.zeros((1, config.warp_size, config.warp_size, 3), jnp.float32),)


# ---------------------------------------------------------------- proposals (host)


class ProposalSource:
  """Proposals of Fast R-CNN and R-CNN for host batches: selective search
  (cached per image, since training sees each image many times) or the fixed
  sliding windows. `add(batch)` returns the batch with `proposals [b, P, 4]`
  and `proposal_mask [b, P]`; `seconds_per_image` is the measured cost."""

  def __init__(self, config, image_shape):
    kind = config.proposals
    if kind == 'auto':
      kind = (
        'selective_search' if prop.selective_search_available() else 'sliding_windows'
      )
    self.kind = kind
    self.size = config.max_proposals
    self.cache: dict[bytes, np.ndarray] = {}
    self.seconds = 0.0
    self.images = 0
    if kind == 'sliding_windows':
      h, w = image_shape[:2]
      windows = prop.sliding_windows(
        height=h, width=w, sizes=tuple(config.window_sizes)
      )
      self.windows = prop.pad_proposals(windows, self.size)
    else:
      prop.selective_search(
        np.zeros((8, 8, 3), np.uint8), max_proposals=1
      )  # installed?

  def one(
    self, image: np.ndarray, cached: bool = True
  ) -> tuple[np.ndarray, np.ndarray]:
    t = time.perf_counter()
    if self.kind == 'sliding_windows':
      out = self.windows
    elif not cached:
      out = prop.pad_proposals(
        prop.selective_search(image, max_proposals=self.size), self.size
      )
    else:
      key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
      if key not in self.cache:
        self.cache[key] = prop.selective_search(image, max_proposals=self.size)
      out = prop.pad_proposals(self.cache[key], self.size)
    self.seconds += time.perf_counter() - t
    self.images += 1
    return out

  def add(self, batch: dict, cached: bool = True) -> dict:
    props = [self.one(im, cached) for im in batch['image']]
    return {
      **batch,
      'proposals': np.stack([p for p, _ in props]),
      'proposal_mask': np.stack([m for _, m in props]),
    }


# ---------------------------------------------------------------- evaluation


def _predict_step(config, method):
  if method == 'faster_rcnn':
    return det_steps.faster_rcnn_predict_step
  if method == 'fast_rcnn':
    return det_steps.fast_rcnn_predict_step
  return functools.partial(
    det_steps.rcnn_predict_step, warp_size=config.warp_size, context=config.context,
    score_threshold=config.score_threshold, nms_threshold=config.nms_threshold,
    max_detections=config.max_detections,
  )  # fmt: skip


def evaluate(config, method, state, data, mesh, proposals, workdir) -> dict:
  """mAP (VOC07 11-point, all-point), COCO AP, per-class AP, the test time per
  image and `detections.png` (unless `workdir` is None), for the final state."""
  predict = loop.make_predictor(_predict_step(config, method), mesh=mesh)
  batches = data.eval_batches()
  if proposals is not None:
    batches = (proposals.add(b) for b in batches)
  out = predict(state, batches)
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
  n = min(config.num_pictures, len(detections))
  if workdir is not None:
    viz.save_detections(
      os.path.join(workdir, 'detections.png'), out['image'][:n],
      detections=detections[:n], ground_truths=truths[:n],
      class_names=data.class_names,
      title=f'{viz.run_name(workdir)}: {method} on {config.dataset}, detections (solid, score >= 0.5) over ground truth (dashed)',
    )  # fmt: skip
  timing = det_timing.time_per_image(
    _predict_step(config, method), state, out['image'][: config.timing_images],
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


# ---------------------------------------------------------------- training


def make_train_step(config, method, model):
  common = dict(rois_per_image=config.rois_per_image, fg_fraction=config.fg_fraction)
  if method == 'faster_rcnn':
    return functools.partial(
      det_steps.faster_rcnn_train_step, model=model, rpn_batch=config.rpn_batch,
      pre_nms_top_n=config.rpn_pre_nms_train, post_nms_top_n=config.rpn_post_nms_train,
      **common,
    )  # fmt: skip
  if method == 'fast_rcnn':
    return functools.partial(det_steps.fast_rcnn_train_step, **common)
  return functools.partial(
    det_steps.rcnn_train_step, warp_size=config.warp_size, context=config.context,
    crops_per_image=config.crops_per_image, fg_fraction=config.fg_fraction,
  )  # fmt: skip


def make_tx(config, num_steps: int | None = None, frozen: tuple[str, ...] = ()):
  """The run's optimizer (`optim.build` on the config's fields) over
  `num_steps` (default the config's; a stage's in alternating training), the
  parameters under `frozen` (and the config's own) left bitwise unchanged
  (`detect` rebuilds it to restore a checkpoint's optimizer state)."""
  fields = optim.fields(config)
  fields['frozen'] = tuple(dict.fromkeys((*fields.get('frozen', ()), *frozen)))
  try:
    return optim.build(num_steps=num_steps or config['num_steps'], **fields)
  except UserError as e:
    if num_steps is None:
      raise
    raise UserError(f'{e} (here the {num_steps} steps of one stage)') from e


# The 4 steps of Faster R-CNN's alternating training (Ren et al. 2015, 3.2):
# (name, train_rpn, train_head, frozen parameter subtrees, proposals from
# step 1's network). Step 3 starts from step 2's backbone and head and step
# 1's RPN; step 4 from step 3. Freezing the part whose loss is dropped keeps
# it bitwise unchanged whatever the optimizer's weight decay.
STAGES = (
  ('stage1_rpn', True, False, ('box_head',), False),
  ('stage2_detector', False, True, ('rpn_head',), True),
  ('stage3_rpn_finetune', True, False, ('backbone_net', 'box_head'), False),
  ('stage4_head_finetune', False, True, ('backbone_net', 'rpn_head'), False),
)


def stage_steps(config) -> tuple[int, ...]:
  """The steps of each of the 4 stages: `config.stage_steps`, or num_steps
  split in 4 (the remainder to the last)."""
  if config.stage_steps:
    steps = tuple(int(v) for v in config.stage_steps)
  else:
    q = config.num_steps // 4
    steps = (q, q, q, config.num_steps - 3 * q)
  if len(steps) != 4 or min(steps) < 1:
    raise UserError(
      f'--config.stage_steps={steps} must be 4 positive step counts (or () to '
      f'split --config.num_steps={config.num_steps} >= 4 in four)'
    )
  return steps


def run_method(config, workdir: str, method: str) -> dict:
  mesh = _mesh(config.batch_size, config.eval_batch_size)
  data = _load_data(config)
  image_shape = data.example_shape
  model = build_model(config, method, data.num_classes)
  tx = make_tx(config)
  k_init, rng = jax.random.split(jax.random.key(config.seed))
  state = state_lib.create(
    model=model, tx=tx, rng=k_init, inputs=_init_inputs(config, method, image_shape)
  )
  if config.backbone_weights:
    if method == 'rcnn':
      raise UserError('backbone_weights apply to fast_rcnn and faster_rcnn only')
    params = weights.load_backbone_params(
      {'backbone': state.params['backbone_net'], 'head': state.params['box_head']},
      weights.read_npz(config.backbone_weights, flag='--config.backbone_weights'),
      source=config.backbone_weights,
    )
    state = state.replace(
      params={
        **state.params,
        'backbone_net': params['backbone'],
        'box_head': params['head'],
      }
    )
  check_svd(method, state, config.svd_rank)
  proposals = None if method == 'faster_rcnn' else ProposalSource(config, image_shape)

  def train_batches(start):
    for b in data.train_batches(start):
      yield proposals.add(b) if proposals is not None else b

  last = {}

  def summarize(state):
    t = time.perf_counter()
    state = with_svd(config, method, data.num_classes, state, config.svd_rank)
    result = evaluate(config, method, state, data, mesh, proposals, workdir)
    result['dataset'] = config.dataset
    result['eval_seconds'] = time.perf_counter() - t
    last.update(result)
    return result

  fit = functools.partial(
    loop.fit, train_batches=train_batches, rng=rng, mesh=mesh,
    examples_per_step=config.batch_size, log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    divergence_factor=config.divergence_factor,
  )  # fmt: skip
  run_config = {
    **config.to_dict(), 'method': method, 'num_classes': data.num_classes,
    'class_names': list(data.class_names),
  }  # fmt: skip
  if method == 'faster_rcnn' and config.training == 'alternating':
    return fit_alternating(
      config, workdir, model, state, fit, run_config, summarize, last
    )
  result = fit(
    state=state, train_step=make_train_step(config, method, model),
    num_steps=config.num_steps, workdir=workdir, config=run_config,
    summarize=summarize,
  )  # fmt: skip
  print_table(last)
  return {**result.summary, **last}


def fit_alternating(config, workdir, model, state, fit, run_config, summarize, last):
  """Faster R-CNN's 4-step alternating training, each step a run of its own
  in `workdir/<stage name>` (its checkpoints, metrics and summary; a rerun
  resumes each step from its own checkpoints and never mixes them). The
  final model is step 4's; `detect` reads `workdir/stage4_head_finetune`.
  Writes `workdir/summary.json`: step 4's figures and each step's record."""
  steps = stage_steps(config)
  host = jax.device_get(state.params)  # fit donates its state: copy per stage
  dirs = [os.path.join(workdir, name) for name, *_ in STAGES]
  records = []
  # Every stage's optimizer before the first trains: a bad schedule stops here.
  txs = [make_tx(config, n, stage[3]) for stage, n in zip(STAGES, steps, strict=True)]
  for i, ((name, rpn, head, frozen, proposer), n) in enumerate(
    zip(STAGES, steps, strict=True)
  ):
    stage_state = state_lib.TrainState.create(
      apply_fn=state.apply_fn, params=jax.tree.map(jnp.asarray, host),
      tx=txs[i], batch_stats=state.batch_stats,
    )  # fmt: skip
    warm = None
    if i == 2:

      def warm(s):
        s = checkpoint.warm_start(s, source_workdir=dirs[1])
        return checkpoint.warm_start(
          s, source_workdir=dirs[0], source='params.rpn_head', target='params.rpn_head'
        )
    elif i == 3:
      warm = functools.partial(checkpoint.warm_start, source_workdir=dirs[2])
    source = (
      checkpoint.warm_start(stage_state, source_workdir=dirs[0]).params
      if proposer
      else None
    )
    step = functools.partial(
      make_train_step(config, 'faster_rcnn', model), train_rpn=rpn, train_head=head,
      proposer=proposer,
    )  # fmt: skip
    result = fit(
      state=stage_state, train_step=step, num_steps=n, workdir=dirs[i],
      config={**run_config, 'stage': name, 'stage_num_steps': n, 'frozen': list(frozen)},
      frozen=source, warm_start=warm, summarize=summarize if i == 3 else None,
    )  # fmt: skip
    records.append({
      'stage': name, 'steps': n, 'train_rpn': rpn, 'train_head': head,
      'frozen': list(frozen), 'train_seconds': result.summary.get('train_seconds'),
      'train': result.summary.get('train'), 'workdir': dirs[i],
    })  # fmt: skip
  if not last:  # a rerun of finished stages: step 4's figures are on disk
    last.update(result.summary)
  print_table(last)
  summary = {
    **result.summary, **last, 'training': 'alternating', 'stages': records,
    'train_seconds': sum(r['train_seconds'] or 0.0 for r in records),
  }  # fmt: skip
  writers.write_summary(workdir, summary)
  return summary


# ---------------------------------------------------------------- detect


def _read_image(path: str) -> np.ndarray:
  if not path:
    raise UserError('give the image to draw on: --config.image=PATH')
  return image_files.read_image(path, drop_alpha=True)


def restore_run(run: str):
  """`(run_config, method, state)` of the finished detection run in `run`: its
  variables (`nkjax.train.restore`, read-only) in a state without an optimizer.

  Raises:
    UserError: no finished detection run or no readable checkpoint there.
  """
  found = restore.restore(run, experiment='detection', option='--config.run')
  run_config = ml_collections.ConfigDict(found.config)
  method = run_config.method
  if 'num_classes' not in run_config:
    raise UserError(
      f'--config.run={run} holds no trained detector (its config names no '
      'num_classes); give the workdir of a detection training run'
    )
  model = build_model(run_config, method, run_config.num_classes)
  shape = (run_config.image_size, run_config.image_size, 3)
  inputs = _init_inputs(run_config, method, shape)
  return run_config, method, restore.inference_state(model, found, inputs=inputs)


def detect(config, workdir: str) -> dict:
  """Draws the detections of the run in `config.run` on `config.image`
  (with the head's fc layers at `config.svd_rank` when it is set)."""
  run_config, method, state = restore_run(config.run)
  check_svd(method, state, config.svd_rank)
  image = _read_image(config.image)
  # The detector saw images of one size: resize the shorter side to it.
  size = run_config.image_size
  h, w = image.shape[:2]
  s = size / min(h, w)
  new = (max(1, round(h * s)), max(1, round(w * s)))
  image = np.asarray(jax.image.resize(jnp.asarray(image), (*new, 3), 'linear'))
  state = with_svd(run_config, method, run_config.num_classes, state, config.svd_rank)
  batch = {'image': image[None]}
  if method != 'faster_rcnn':
    batch = ProposalSource(run_config, image.shape).add(batch)
  out = jax.device_get(jax.jit(_predict_step(run_config, method))(state, batch))
  dets = det_steps.detections(out)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'detections.png')
  viz.save_detections(
    path, image[None], detections=dets, ground_truths=None,
    class_names=tuple(run_config.class_names),
    title=f'{viz.run_name(workdir)}: {method} on {os.path.basename(config.image)}',
    score_threshold=0.5, cols=1,
  )  # fmt: skip
  found = [
    {
      'box': [float(v) for v in b],
      'score': float(sc),
      'class': run_config.class_names[int(lb)],
    }
    for b, sc, lb in zip(
      dets[0]['boxes'], dets[0]['scores'], dets[0]['labels'], strict=True
    )
    if sc >= 0.5
  ]
  result = {
    'task': 'detect',
    'image': config.image,
    'run': config.run,
    'checkpoint_step': int(state.step),
    'picture': path,
    'detections': found,
  }
  with open(os.path.join(workdir, 'detections.json'), 'w') as f:
    json.dump(result, f, indent=1)
  print(
    f'{len(found)} detections (score >= 0.5) -> {path}, by the checkpoint at step '
    f'{int(state.step)} of {config.run}'
  )
  return result


# ---------------------------------------------------------------- svd


def svd_sweep(config, workdir: str) -> dict:
  """The trained run in `config.run` evaluated with its head's fc layers whole
  and at each rank of `config.svd_ranks` (truncated SVD, Fast R-CNN section
  3.1): mAP, COCO AP, the fc layers' parameters, the head's time and the
  network's time per test image. Writes `summary.json` with an `svd` entry."""
  run_config, method, state = restore_run(config.run)
  if method == 'rcnn':
    raise UserError('the svd task applies to fast_rcnn and faster_rcnn runs only')
  ranks = tuple(config.svd_ranks)
  for r in ranks:
    check_svd(method, state, r)
  mesh = _mesh(run_config.batch_size, run_config.eval_batch_size)
  data = _load_data(run_config)
  proposals = (
    None if method == 'faster_rcnn' else ProposalSource(run_config, data.example_shape)
  )
  num_rois = (
    run_config.rpn_post_nms_test
    if method == 'faster_rcnn'
    else run_config.max_proposals
  )
  rows = []
  for rank in (None, *ranks):
    s = with_svd(run_config, method, data.num_classes, state, rank)
    r = evaluate(run_config, method, s, data, mesh, proposals, None)
    fc = {k: v for k, v in s.params['box_head'].items() if k.startswith('fc_')}
    rows.append({
      'rank': rank,
      'map_07': r['map_07'], 'map_all': r['map_all'], 'coco_ap': r['coco_ap'],
      'fc_params': state_lib.num_params(fc),
      'head_seconds': det_timing.time_head(s, num_rois=num_rois),
      'net_seconds_per_image': r['test_seconds_per_image']['net'],
    })  # fmt: skip
  full = rows[0]
  print(f'\n{method} of {config.run}: truncated SVD of the fc layers ({num_rois} RoIs)')
  print(
    f'{"rank":>6} {"mAP07":>6} {"mAPall":>6} {"COCO AP":>7} {"fc params":>10} '
    f'{"head ms":>8} {"speed-up":>8} {"net ms/img":>10}'
  )
  for row in rows:
    row['head_speedup'] = full['head_seconds'] / row['head_seconds']
    row['map_07_change'] = row['map_07'] - full['map_07']
    print(
      f'{"full" if row["rank"] is None else row["rank"]:>6} {row["map_07"]:6.3f} '
      f'{row["map_all"]:6.3f} {row["coco_ap"]:7.3f} {row["fc_params"]:10d} '
      f'{1000 * row["head_seconds"]:8.3f} {row["head_speedup"]:8.2f} '
      f'{1000 * row["net_seconds_per_image"]:10.2f}'
    )
  summary = {
    'task': 'svd', 'run': config.run, 'method': method, 'num_rois': num_rois,
    'test_images': data.num_test, 'svd': rows,
  }  # fmt: skip
  os.makedirs(workdir, exist_ok=True)
  writers.write_summary(workdir, summary)
  return summary


# ---------------------------------------------------------------- main


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config.method` (every one of `config.methods` with `compare`)."""
  if not config.compare:
    return run_method(config, workdir, config.method)
  table = {}
  for m in config.methods:
    s = run_method(config, os.path.join(workdir, m), m)
    table[m] = {
      'map_07': s['map_07'], 'map_all': s['map_all'], 'coco_ap': s['coco_ap'],
      'coco_ap50': s['coco_ap50'], 'train_seconds': s['train_seconds'],
      'test_seconds_per_image': s['test_seconds_per_image'],
      'proposal_source': s['proposal_source'],
    }  # fmt: skip
  print(
    f'\n{config.dataset}: {config.num_steps} steps of {config.batch_size} images each'
  )
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
  summary = {'task': 'compare', 'dataset': config.dataset, 'results': table}
  writers.write_summary(workdir, summary)
  return summary


def resumable(config) -> bool:
  """Whether the task trains (and so resumes); detect and svd read a run."""
  return config.task == 'train'


TASKS = {'train': train, 'detect': detect, 'svd': svd_sweep}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  choose('task', config.task, TASKS)
  return TASKS[config.task](config, workdir)


if __name__ == '__main__':
  launch.run(main)
