"""Object detection: R-CNN, Fast R-CNN and Faster R-CNN, trained and compared.

  python experiments/detection.py                                   # Faster R-CNN on shapes
  python experiments/detection.py --config=experiments/detection.py:fast_rcnn   # or :rcnn
  python experiments/detection.py --config=experiments/detection.py:compare   # one table
  python experiments/detection.py --config=experiments/detection.py:voc07 \\
      --config.backbone_weights=vgg16.npz --config.data_dir=DIR     # the paper's recipe
  python experiments/detection.py --config=experiments/detection.py:detect \\
      --config.image=photo.png --config.run=runs/detection          # boxes on your image
  python experiments/detection.py --config=experiments/detection.py:svd \\
      --config.run=runs/detection "--config.svd_ranks=(16,64)"      # truncated SVD sweep
  python experiments/detection.py --config.training=alternating     # the 4-step training

A run reports per-class AP (VOC07 11-point and all-point), mAP, COCO AP and
AP50 and the test time per image (console and summary.json), and draws fixed
test images' detections (solid) over the ground truth (dashed). Fast R-CNN and
R-CNN take their proposals from `nkjax.data.proposals` (`--config.proposals`).
"""

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections

from nkjax import launch, validate, viz, weights
from nkjax.data import detection as det_data
from nkjax.data import images as image_files
from nkjax.data import proposals as prop
from nkjax.errors import UserError, choose
from nkjax.models import detection as det
from nkjax.train import (
  alternating,
  detection_presets,
  loop,
  optim,
  restore,
  sharding,
  writers,
)
from nkjax.train import detection as det_steps
from nkjax.train import detection_eval as det_eval
from nkjax.train import state as state_lib

METHODS = ('faster_rcnn', 'fast_rcnn', 'rcnn')
# `default` is Faster R-CNN's recipe below (the `faster_rcnn` preset).
PRESETS = ('default', *METHODS, 'compare', 'smoke', 'voc07', 'detect', 'svd')
PROPOSALS = prop.KINDS
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

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  **optim.DESCRIPTIONS,
  'method': f'the detector: {", ".join(METHODS)}',
  'compare': 'train every method of methods and compare them',
  'methods': 'compare: the methods trained',
  'task': 'train, detect (draw one image) or svd (truncated-SVD heads of a run)',
  'image': 'detect: the image file',
  'run': 'detect, svd: the workdir of the trained run',
  'dataset': 'shapes or digits_canvas (generated), voc/2007, coco/2017 (TFDS)',
  'data_dir': 'where TFDS keeps its datasets; None: its default',
  'image_size': "generated sets: the images' side; TFDS: the shorter side",
  'max_boxes': "boxes kept per image; None: the dataset's",
  'augment': 'flip and scale-jitter each training batch with its boxes',
  'num_train': 'generated sets: training images',
  'num_test': 'generated sets: test images',
  'backbone': 'the convolutional backbone: small*, vgg16, resnet18/34/50',
  'backbone_weights': 'ImageNet weights: torchvision .pth, Keras .h5 or nkjax .npz; None: none',
  'anchor_scales': "the anchors' sides, pixels",
  'anchor_ratios': "the anchors' aspect ratios",
  'rpn_width': "the RPN's 3x3 convolution channels",
  'fc': "the box head's fully connected widths",
  'dropout_rate': 'dropout probability in the box head (not the keep rate)',
  'roi_op': "align (RoIAlign) or pool (the papers' RoI max pooling)",
  'roi_size': 'side of the pooled RoI features',
  'rpn_pre_nms_train': 'Faster R-CNN training: top proposals before NMS',
  'rpn_post_nms_train': 'Faster R-CNN training: proposals kept after NMS',
  'rpn_pre_nms_test': 'Faster R-CNN test: top proposals before NMS',
  'rpn_post_nms_test': 'Faster R-CNN test: proposals kept after NMS',
  'rpn_nms_threshold': "the RPN's NMS IoU threshold",
  'rpn_batch': 'anchors sampled per image for the RPN loss',
  'rois_per_image': 'RoIs sampled per image for the box-head loss',
  'fg_fraction': 'the share of foreground RoIs in that sample',
  'proposals': 'Fast R-CNN, R-CNN: selective_search, sliding_windows, or auto',
  'max_proposals': 'Fast R-CNN, R-CNN: proposals kept per image',
  'window_sizes': "sliding windows' sides, pixels",
  'warp_size': 'R-CNN: the side each crop is warped to',
  'context': 'R-CNN: pixels of context around each crop',
  'crops_per_image': 'R-CNN: crops sampled per training image',
  'rcnn_widths': "R-CNN: the crop network's convolution widths",
  'rcnn_fc': "R-CNN: the crop network's fully connected widths",
  'score_threshold': 'test: drop detections scoring below this',
  'nms_threshold': 'test: the per-class NMS IoU threshold',
  'max_detections': 'test: detections kept per image',
  'svd_rank': "the rank kept in the box head's fc layers at test time; None: off",
  'svd_ranks': 'svd: the ranks evaluated',
  'batch_size': 'training images per step, over all devices',
  'eval_batch_size': 'images per evaluation batch',
  'num_steps': 'training steps',
  'log_every': 'steps between training-metric lines',
  'checkpoint_every': 'steps between checkpoints; 0: only at the end',
  'divergence_factor': 'stop when the loss passes this multiple of its first value; 0: never',
  'timing_images': 'test images timed per method',
  'num_pictures': 'test images drawn with their detections',
  'seed': 'the root random seed: same seed, same run',
  'dtype': 'compute dtype: float32 or bfloat16 (parameters stay float32)',
  'training': "Faster R-CNN: joint, or the paper's 4-step alternating",
  'stage_steps': 'alternating: the steps of each stage; (): num_steps in four',
}


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.method = preset if preset in METHODS else 'faster_rcnn'
  c.compare = preset == 'compare'
  c.methods = METHODS
  c.task = preset if preset in ('detect', 'svd') else 'train'
  c.image = ml_collections.config_dict.placeholder(str)
  c.run = 'runs/detection'
  c.dataset = 'shapes'  # or digits_canvas; voc/2007, coco/2017 through TFDS
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.image_size = 128  # generated sets: the side; TFDS: the shorter side
  c.max_boxes = ml_collections.config_dict.placeholder(int)  # None: the dataset's
  c.augment = False  # horizontal flips and scale jitter of the training batches
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
  c.svd_rank = ml_collections.config_dict.placeholder(int)  # Fast R-CNN 3.1
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
  if preset in ('default', 'faster_rcnn'):
    c.update(detection_presets.OFFLINE)  # the sizes nkjax.bench's faster_rcnn times
    c.num_steps = 3000
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
    # shorter side 600 (longer <= 1000), 64 RoIs per image, SGD momentum 0.9,
    # weight decay 5e-4; anchors 128/256/512 x 0.5/1/2; RPN 12000/2000
    # proposals in training, 6000/300 at test; RoI pooling 7x7, fc 4096-4096
    # with dropout. py-faster-rcnn's VOC07 joint training takes 1 image per
    # step: 0.001 for 50k steps, then 0.0001 for 20k. Here 2 images per step,
    # so by the linear scaling rule (Goyal et al. 2017: rate in proportion to
    # the images per step, steps in inverse proportion; the same images seen
    # at each rate) 0.002 for 25k, then 0.0002 for 10k. Fixed for this batch:
    # an override of batch_size alone keeps them (scale all four with it).
    c.dataset = 'voc/2007'
    c.update(detection_presets.VOC07)  # the sizes nkjax.bench's faster_rcnn_voc times
    c.dropout_rate = 0.5
    c.rpn_pre_nms_test, c.rpn_post_nms_test = 6000, 300
    c.proposals = 'selective_search'
    c.max_proposals = 2000
    c.warp_size, c.context = 227, 16
    c.optimizer = 'momentum'
    c.learning_rate = 1e-3 * c.batch_size  # VOC07's 2 images a step
    c.schedule = 'step'
    c.decay_boundaries, c.decay_steps = (), (50_000 // c.batch_size,)
    c.warmup_steps = 0
    c.weight_decay = 5e-4
    c.eval_batch_size = c.batch_size  # split over the devices like the training batch
    c.num_steps = 70_000 // c.batch_size
    c.checkpoint_every = 5_000
  return c


# ---------------------------------------------------------------- building blocks


def _mesh(batch_size: int, eval_batch_size: int):
  mesh = sharding.data_mesh()
  sharding.check_batch_size(batch_size, mesh)
  sharding.check_batch_size(eval_batch_size, mesh)
  return mesh


def _load_data(config):
  return det_data.load(
    config.dataset, batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size, seed=config.seed,
    image_size=config.image_size, max_boxes=config.max_boxes, augment=config.augment,
    num_train=config.num_train, num_test=config.num_test, data_dir=config.data_dir,
    process_index=jax.process_index(), process_count=jax.process_count(),
  )  # fmt: skip


def build_model(config, method: str, num_classes: int, svd_rank: int | None = None):
  """The network of `method` with the config's attributes; `svd_rank` the
  rank of the box head's fc layers (None: whole). A run's recorded config
  names the input its backbone weights expect (`preprocess`, from the file:
  `backbones.PREPROCESS`); the experiment's config has no such field: 'none'."""
  dtype = jnp.dtype(config.get('dtype', 'float32'))  # absent from older runs
  common = dict(
    num_classes=num_classes, backbone=config.backbone,
    preprocess=config.get('preprocess', 'none'), fc=tuple(config.fc),
    roi_op=config.roi_op, roi_size=config.roi_size,
    score_threshold=config.score_threshold, nms_threshold=config.nms_threshold,
    max_detections=config.max_detections, dropout_rate=config.dropout_rate,
    svd_rank=svd_rank, dtype=dtype,
  )  # fmt: skip
  if method == 'faster_rcnn':
    return det.FasterRCNN(
      anchor_scales=tuple(config.anchor_scales), anchor_ratios=tuple(config.anchor_ratios),
      rpn_width=config.rpn_width, pre_nms_top_n=config.rpn_pre_nms_test,
      post_nms_top_n=config.rpn_post_nms_test, rpn_nms_threshold=config.rpn_nms_threshold,
      **common,
    )  # fmt: skip
  if method == 'fast_rcnn':
    return det.FastRCNN(**common)
  return det.RCNNClassifier(
    num_classes=num_classes, widths=tuple(config.rcnn_widths), fc=tuple(config.rcnn_fc),
    dtype=dtype,
  )  # fmt: skip


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


def _proposals(config, image_shape) -> prop.ProposalSource:
  return prop.ProposalSource(
    kind=config.proposals, max_proposals=config.max_proposals,
    window_sizes=config.window_sizes, image_shape=image_shape,
  )  # fmt: skip


def _predict_step(config, method):
  return det_eval.predict_step(
    method, warp_size=config.warp_size, context=config.context,
    score_threshold=config.score_threshold, nms_threshold=config.nms_threshold,
    max_detections=config.max_detections,
  )  # fmt: skip


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
  parameters under `frozen` (and the config's own) left bitwise unchanged."""
  fields = optim.fields(config)
  fields['frozen'] = tuple(dict.fromkeys((*fields.get('frozen', ()), *frozen)))
  try:
    return optim.build(num_steps=num_steps or config['num_steps'], **fields)
  except UserError as e:
    if num_steps is None:
      raise
    raise UserError(f'{e} (here the {num_steps} steps of one stage)') from e


# ---------------------------------------------------------------- tasks


def run_method(config, workdir: str, method: str) -> dict:
  mesh = _mesh(config.batch_size, config.eval_batch_size)
  data = _load_data(config)
  model = build_model(config, method, data.num_classes)
  k_init, rng = jax.random.split(jax.random.key(config.seed))
  state = state_lib.create(
    model=model, tx=make_tx(config), rng=k_init,
    inputs=_init_inputs(config, method, data.example_shape),
  )  # fmt: skip
  preprocess = 'none'  # the input the weights file expects (nkjax's own: as is)
  if config.backbone_weights:
    if method == 'rcnn':
      raise UserError('backbone_weights apply to fast_rcnn and faster_rcnn only')
    state, preprocess = weights.load_detector_weights(state, config.backbone_weights)
  # The run records it, so that resume, detect and svd build the same network.
  run_config = {
    **config.to_dict(), 'method': method, 'num_classes': data.num_classes,
    'class_names': list(data.class_names), 'preprocess': preprocess,
  }  # fmt: skip
  built = ml_collections.ConfigDict(run_config)
  if preprocess != 'none':  # the network feeds its backbone what the file expects
    model = build_model(built, method, data.num_classes)
    state = state.replace(apply_fn=model.apply)
  check_svd(method, state, config.svd_rank)
  proposals = (
    None if method == 'faster_rcnn' else _proposals(config, data.example_shape)
  )

  def train_batches(start):
    for b in data.train_batches(start):
      yield proposals.add(b) if proposals is not None else b

  def summarize(state):
    t = time.perf_counter()
    state = with_svd(built, method, data.num_classes, state, config.svd_rank)
    result = det_eval.evaluate(
      state, data, method=method, predict=_predict_step(config, method), mesh=mesh,
      proposals=proposals, workdir=workdir, dataset=config.dataset,
      num_pictures=config.num_pictures, timing_images=config.timing_images,
    )  # fmt: skip
    return {
      **result,
      'dataset': config.dataset,
      'eval_seconds': time.perf_counter() - t,
    }

  fit = functools.partial(
    loop.fit, train_batches=train_batches, rng=rng, mesh=mesh,
    examples_per_step=config.batch_size, log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    divergence_factor=config.divergence_factor,
    loss_unit='nats + smooth L1 of boxes',
  )  # fmt: skip
  if method == 'faster_rcnn' and config.training == 'alternating':
    summary = alternating.fit_alternating(
      state=state, workdir=workdir, fit=fit, config=run_config, summarize=summarize,
      steps=alternating.stage_steps(config.stage_steps, num_steps=config.num_steps),
      make_tx=functools.partial(make_tx, config),
      train_step=make_train_step(config, method, model),
    )  # fmt: skip
  else:
    summary = fit(
      state=state, train_step=make_train_step(config, method, model),
      num_steps=config.num_steps, workdir=workdir, config=run_config,
      summarize=summarize,
    ).summary  # fmt: skip
  det_eval.print_table(summary)
  return summary


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
  if not config.image:
    raise UserError('give the image to draw on: --config.image=PATH')
  image = image_files.read_image(config.image, drop_alpha=True)
  result = det_eval.detect_image(
    image, with_svd(run_config, method, run_config.num_classes, state, config.svd_rank),
    predict=_predict_step(run_config, method), image_size=run_config.image_size,
    class_names=run_config.class_names, workdir=workdir,
    title=f'{viz.run_name(workdir)}: {method} on {os.path.basename(config.image)}',
    proposals=None if method == 'faster_rcnn' else functools.partial(_proposals, run_config),
    record={'task': 'detect', 'image': config.image, 'run': config.run,
            'checkpoint_step': int(state.step)},
  )  # fmt: skip
  print(
    f'{len(result["detections"])} detections (score >= 0.5) -> {result["picture"]}, '
    f'by the checkpoint at step {int(state.step)} of {config.run}, trained on '
    f'{run_config.get("dataset", "?")}; the classes it knows: '
    f'{", ".join(run_config.class_names)}'
  )
  return result


def svd_sweep(config, workdir: str) -> dict:
  """The trained run in `config.run` evaluated with its head's fc layers whole
  and at each rank of `config.svd_ranks` (truncated SVD, Fast R-CNN section
  3.1): mAP, COCO AP, the fc layers' parameters, the head's time and the
  network's time per test image. Writes `summary.json` with an `svd` entry."""
  run_config, method, state = restore_run(config.run)
  if method == 'rcnn':
    raise UserError('the svd task applies to fast_rcnn and faster_rcnn runs only')
  for r in config.svd_ranks:
    check_svd(method, state, r)
  mesh = _mesh(run_config.batch_size, run_config.eval_batch_size)
  data = _load_data(run_config)
  faster = method == 'faster_rcnn'
  num_rois = run_config.rpn_post_nms_test if faster else run_config.max_proposals
  rows = det_eval.svd_rows(
    ranks=tuple(config.svd_ranks), num_rois=num_rois,
    factored=lambda rank: with_svd(run_config, method, data.num_classes, state, rank),
    score=functools.partial(
      det_eval.evaluate, data=data, method=method, mesh=mesh,
      predict=_predict_step(run_config, method),
      proposals=None if faster else _proposals(run_config, data.example_shape),
    ),
  )  # fmt: skip
  det_eval.print_svd_table(
    rows,
    title=f'{method} of {config.run}: truncated SVD of the fc layers ({num_rois} RoIs)',
  )
  summary = {
    'task': 'svd', 'run': config.run, 'method': method, 'num_rois': num_rois,
    'test_images': data.num_test, 'svd': rows,
  }  # fmt: skip
  os.makedirs(workdir, exist_ok=True)
  writers.write_summary(workdir, summary)
  return summary


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config.method` (every one of `config.methods` with `compare`)."""
  if not config.compare:
    return run_method(config, workdir, config.method)
  table = {}
  for m in config.methods:
    s = run_method(config, os.path.join(workdir, m), m)
    table[m] = {k: s[k] for k in det_eval.COMPARED}
  det_eval.print_compare_table(
    table,
    title=f'{config.dataset}: {config.num_steps} steps of {config.batch_size} images each',
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
