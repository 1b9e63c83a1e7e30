"""Super-resolution: SRCNN, VDSR, SRResNet and SRGAN, scored as the papers score them.

  python experiments/sr.py                                       # default: srresnet, runs/sr-srresnet
  python experiments/sr.py --config=experiments/sr.py:srcnn      # x2, x3, x4 on Y
  python experiments/sr.py --config=experiments/sr.py:vdsr
  python experiments/sr.py --config=experiments/sr.py:srresnet   # x4, RGB
  python experiments/sr.py --config=experiments/sr.py:srgan      # warm-starts from runs/sr-srresnet
  python experiments/sr.py --config=experiments/sr.py:srgan --config.vgg19_weights=vgg19.h5
  python experiments/sr.py --config=experiments/sr.py:compare    # bicubic and every trained run
  python experiments/sr.py --config=experiments/sr.py:upscale \\
      --config.checkpoint=runs/sr-srresnet --config.image=photo.png --config.scale=4
  python experiments/sr.py --config=experiments/sr.py:srresnet --config.test_dir=Set5/

The CPU presets (srcnn, vdsr, srresnet, srgan) are reduced so that they finish in
minutes on two cores; `*_paper` presets are the papers' recipes (step counts for
an accelerator). LR inputs are MATLAB-bicubic downscalings (nkjax.ops.resize),
scores are PSNR and SSIM on the Y channel after shaving `scale` pixels, plus RGB
PSNR (nkjax.metrics.image); `round_y` (default True) scores as MATLAB's uint8
path does. Each run writes, beside the usual files: `sr/x{s}/<image>.png` (the
model's RGB output) and, for the Y networks, `sr/x{s}/<image>_y.png` (the Y
that was scored; their `<image>.png` is a colour view), `figures/x{s}_<image>.png`
(LR, bicubic, model, HR and a zoomed crop) and the per-image and mean table in
summary.json.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nkjax import launch, validate, viz, weights
from nkjax.data import sr as sr_data
from nkjax.errors import UserError, choose
from nkjax.losses import PIXEL_LOSSES
from nkjax.models import sr as sr_models
from nkjax.train import (
  checkpoint,
  gan,
  loop,
  optim,
  restore,
  sharding,
  sr_eval,
  writers,
)
from nkjax.train import state as state_lib
from nkjax.train.sr import pixel_train_step, predict_step, srgan_train_step

MODELS = ('srcnn', 'vdsr', 'srresnet', 'srgan')
PAPER = tuple(f'{m}_paper' for m in MODELS)
# `default` is the `srresnet` preset, and its run is that preset's (DEFAULT_WORKDIRS),
# the one `srgan` warm-starts from and `compare` and `upscale` read.
PRESETS = ('default', *MODELS, *PAPER, 'compare', 'smoke', 'upscale')
DEFAULT_WORKDIRS = {'default': 'runs/sr-srresnet'}
Y_MODELS = ('srcnn', 'vdsr')  # on the Y channel of the bicubic-upscaled image
SCALES = (2, 3, 4)
ONE_SCALE_MODELS = ('srresnet', 'srgan')  # on LR input: one scale, a power of two
CHECKS = {
  **validate.TRAINING,
  'scales': validate.Rule(
    lambda v: (
      isinstance(v, tuple | list) and len(v) >= 1 and all(s in SCALES for s in v)
    ),
    'a tuple of scales among 2, 3, 4',
  ),
  'scale': validate.one_of(*SCALES),
  'patch': validate.count,
  'crop': validate.optional(validate.count),
  'max_test_images': validate.optional(validate.count),
  'figure_crop': validate.count,
  'srcnn_f2': validate.count,
  'padding': validate.one_of('SAME', 'VALID'),
  'depth': validate.count,
  'features': validate.count,
  'blocks': validate.cadence,
  'last_layer_lr_factor': validate.positive_number(),
  'clip_theta': validate.optional(validate.positive_number()),
  'adversarial_weight': validate.non_negative,
  'd_learning_rate': validate.learning_rate,
  'd_widths': validate.each(validate.count),
  'max_pixels': validate.count,
  ('model', 'scales'): validate.Rule(
    lambda v: v[0] not in ONE_SCALE_MODELS or tuple(v[1]) in ((2,), (4,)),
    'srresnet and srgan train at one scale and upscale by powers of two: '
    'give --config.scales=(2,) or (4,)',
  ),
  ('model', 'pixel_loss'): validate.Rule(
    lambda v: v[0] != 'srgan' or v[1] == 'mse',
    "srgan's content loss is VGG19's or the pixel MSE: leave pixel_loss='mse'",
  ),
}
PIXEL_LOSS_NOTE = (
  'pixel MSE + 1e-3 adversarial (no VGG19 weights given: not the paper content loss)'
)

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  **optim.DESCRIPTIONS,
  'task': 'train, compare (the runs of models) or upscale (an image through a run)',
  'model': f'the network: {", ".join(MODELS)}',
  'models': 'compare: the models whose runs are compared',
  'dataset': 'photos (offline), or div2k/bicubic_x2|x3|x4 (TFDS)',
  'test_dir': 'a folder of test PNGs (Set5, Set14, ...); None: the offline photos',
  'data_dir': 'where TFDS keeps its datasets; None: its default',
  'crop': 'centre-crop the photos to this side (tests); None: whole',
  'max_test_images': 'evaluate on the first N test images only; None: all',
  'scales': 'upscaling factors trained (SRResNet, SRGAN: one, a power of two)',
  'patch': 'training patch side: HR for srcnn and vdsr, LR for srresnet and srgan',
  'batch_size': 'training patches per step, over all devices',
  'num_steps': 'training steps',
  'log_every': 'steps between training-metric lines',
  'checkpoint_every': 'steps between checkpoints; 0: only at the end',
  'keep_checkpoints': 'how many of the latest checkpoints to keep',
  'divergence_factor': 'stop when the loss passes this multiple of its first value; 0: never',
  'round_y': "MATLAB's uint8 path for PSNR-Y: 8-bit output, integer Y",
  'seed': 'the root random seed: same seed, same run',
  'figure_crop': 'HR side of the zoomed crop in the figures, pixels',
  'srcnn_f2': "SRCNN: the middle layer's kernel side (1: 9-1-5, 5: 9-5-5)",
  'padding': "SRCNN: SAME, or VALID (the paper's)",
  'depth': 'VDSR: convolution layers',
  'features': 'VDSR, SRResNet: channels per convolution',
  'blocks': 'SRResNet: residual blocks',
  'norm': 'SRResNet: batch norm in the residual blocks',
  'icnr': 'SRResNet: ICNR-initialised sub-pixel convolutions',
  'bicubic_skip': "SRResNet: add the bicubic upscaling of the input (not the paper's)",
  'pixel_loss': 'the pixel loss: mse, or l1 (EDSR)',
  'dtype': 'compute dtype: float32 or bfloat16 (parameters stay float32)',
  'vgg19_weights': 'SRGAN: a VGG-19 weights file (.h5, .npz) for the VGG content loss; None: pixel loss',
  'adversarial_weight': "SRGAN: the adversarial loss's weight beside the content loss",
  'd_learning_rate': "SRGAN: the discriminator's learning rate",
  'd_widths': "SRGAN: the discriminator's widths, two convolutions each",
  'srresnet_workdir': 'SRGAN: the SRResNet run it starts from',
  'warm_start': 'SRGAN: start the generator from srresnet_workdir',
  'runs': 'compare: the folder holding the runs (runs/sr-<model>)',
  'checkpoint': 'upscale: the workdir of the run whose network upscales',
  'image': 'upscale: the image file to upscale',
  'scale': 'upscale: the factor',
  'output': 'upscale: the output file; None: <image>_x<scale>.png in --workdir',
  'max_pixels': 'upscale: the largest input taken in one piece; larger goes in tiles',
}


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  base = 'srresnet' if preset == 'default' else preset.removesuffix('_paper')
  c.task = {'compare': 'compare', 'upscale': 'upscale'}.get(preset, 'train')
  c.model = base if base in MODELS else 'srcnn'
  c.dataset = 'photos'  # or div2k/bicubic_x2|x3|x4 (TFDS)
  c.test_dir = ml_collections.config_dict.placeholder(str)  # Set5/Set14/... PNGs
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.crop = ml_collections.config_dict.placeholder(int)  # centre-crop photos (tests)
  c.max_test_images = ml_collections.config_dict.placeholder(int)
  c.scales = (2, 3, 4)
  c.patch = 33  # HR side for Y models, LR side for SRResNet / SRGAN
  c.batch_size = 16
  c.num_steps = 2000
  c.log_every = 100
  c.checkpoint_every = 0
  c.keep_checkpoints = 2
  c.divergence_factor = 1000.0  # stop when the loss passes this x its first; 0: never
  c.round_y = True  # MATLAB's uint8 path: 8-bit output, integer Y
  c.seed = 0
  c.dtype = 'float32'  # 'bfloat16': bfloat16 compute, float32 parameters and losses
  c.figure_crop = 48  # HR side of the zoomed crop in the figures
  # Networks.
  c.srcnn_f2 = 1  # 9-1-5; 5 for 9-5-5
  c.padding = 'SAME'  # SRCNN: 'VALID' is the paper's
  c.depth = 20  # VDSR
  c.features = 64
  c.blocks = 16  # SRResNet
  c.norm = True
  c.icnr = False  # SRResNet: ICNR-initialised sub-pixel convolutions
  c.bicubic_skip = False  # SRResNet: + bicubic(LR) at the output (not the paper's)
  c.pixel_loss = 'mse'  # or 'l1' (EDSR); SRCNN, VDSR, SRResNet
  # Optimisation (nkjax.train.optim.build's fields).
  # SRCNN paper: lr_multipliers={'conv3': 0.1}; VDSR paper: clip_by_lr=theta.
  c.update(optim.default_fields(optimizer='adam', learning_rate=1e-3))
  # SRGAN.
  c.vgg19_weights = ml_collections.config_dict.placeholder(str)
  c.adversarial_weight = 1e-3
  c.d_learning_rate = 1e-4
  c.d_widths = (64, 128, 256, 512)  # the discriminator's, two convolutions each
  c.srresnet_workdir = 'runs/sr-srresnet'  # the warm start
  c.warm_start = True
  # compare / upscale.
  c.runs = 'runs'  # compare reads runs/sr-<model>
  c.checkpoint = ml_collections.config_dict.placeholder(str)  # a run's workdir
  c.image = ml_collections.config_dict.placeholder(str)
  c.scale = 4
  c.output = ml_collections.config_dict.placeholder(str)
  # upscale: the largest input (pixels) taken in one piece; a larger one is
  # upscaled in tiles that overlap by the network's receptive field.
  c.max_pixels = 250_000

  if base == 'srcnn':
    # CPU: the paper's 9-1-5 with valid convolutions (33x33 in, 21x21 out) on
    # x2, x3 and x4 mixed, Adam instead of SGD. With 'SAME' padding and 1500
    # steps it trailed bicubic at x2 (-0.31 dB; +0.36 at x3, +0.24 at x4).
    c.batch_size, c.num_steps, c.schedule, c.padding = 32, 2500, 'cosine', 'VALID'
    if preset.endswith('_paper'):
      # Dong et al. (2014): 9-1-5 on 33x33 sub-images with 21x21 labels, SGD,
      # 1e-4 (layers 1, 2) and 1e-5 (layer 3), N(0, 0.001^2) weights, x3.
      c.scales, c.optimizer, c.momentum = (3,), 'momentum', 0.9
      c.learning_rate, c.lr_multipliers, c.batch_size = 1e-4, {'conv3': 0.1}, 128
      c.num_steps = 1_000_000
  elif base == 'vdsr':
    # CPU: 10 layers of 32 (the paper's 20 of 64 is ~60x the compute of SRCNN).
    c.patch, c.num_steps, c.depth, c.features, c.grad_clip_norm = 41, 800, 10, 32, 1.0
    c.schedule = 'cosine'
    if preset.endswith('_paper'):
      # Kim et al. (2016): 20 layers, SGD momentum 0.9, weight decay 1e-4, lr 0.1
      # /10 every 20 of 80 epochs, gradients clipped to [-theta/lr, theta/lr],
      # multi-scale 41x41 patches, batch 64.
      c.depth, c.features, c.optimizer, c.momentum = 20, 64, 'momentum', 0.9
      c.weight_decay, c.learning_rate, c.grad_clip_norm = 1e-4, 0.1, None
      c.clip_by_lr, c.schedule, c.decay_boundaries = 0.01, 'step', (0.25, 0.5, 0.75)
      c.batch_size, c.num_steps = 64, 80_000
  elif base in ('srresnet', 'srgan'):
    # CPU: 4 blocks of 32 without batch norm, 12x12 LR patches, ICNR sub-pixel
    # convolutions, L1 loss, Adam 2e-3 (100 warm-up steps, cosine), a
    # discriminator of half the widths, and the bicubic upsampling of the input
    # added to the output (VDSR's global residual; not Ledig et al.'s). Measured
    # at x4 on the offline test photographs, 2,000 steps (PSNR-Y, round_y):
    # 28.93 dB, +0.66 over bicubic, +0.30 over the vdsr preset; without the
    # bicubic skip the same recipe scored 28.17 (RGB 0.35 dB under bicubic's:
    # the colour cast of a net that must learn the whole image). With batch
    # norm, 2,000 steps scored 1.0 dB under bicubic (EDSR, Lim et al. 2017,
    # drops it too). The paper: 16 blocks of 64 with BN, 24x24 (96x96 HR),
    # batch 16, Adam 1e-4, 10^6 updates (SRGAN: 10^5 at 1e-4, 10^5 at 1e-5).
    c.scales, c.patch, c.blocks, c.features = (4,), 12, 4, 32
    c.norm, c.icnr, c.bicubic_skip = False, True, True
    c.learning_rate = 2e-3
    c.schedule, c.warmup_steps, c.pixel_loss = 'warmup_cosine', 100, 'l1'
    c.d_widths = (32, 64, 128, 256)
    if base == 'srgan':
      c.num_steps, c.learning_rate, c.schedule = 200, 1e-4, 'constant'
      c.warmup_steps, c.pixel_loss = 0, 'mse'
    if preset.endswith('_paper'):
      c.patch, c.blocks, c.features, c.learning_rate = 24, 16, 64, 1e-4
      c.norm, c.icnr, c.bicubic_skip, c.pixel_loss = True, False, False, 'mse'
      c.warmup_steps = 0
      c.schedule, c.d_widths = 'constant', (64, 128, 256, 512)
      c.num_steps = 1_000_000 if base == 'srresnet' else 200_000
      c.srresnet_workdir = 'runs/sr-srresnet_paper'
      if base == 'srgan':
        c.schedule, c.decay_boundaries = 'step', (0.5,)
  if preset == 'smoke':
    c.model, c.scales, c.patch, c.batch_size = 'srcnn', (2, 3), 16, 8
    c.num_steps, c.log_every, c.crop, c.max_test_images = 4, 2, 72, 2
    c.features = 8
  elif preset == 'compare':
    c.models = MODELS
  return c


# ---------------------------------------------------------------- models


def build_model(c, scale: int | None = None):
  """The network of config (or run config dict) `c`; `scale` for SRResNet."""
  m = c['model']
  choose('model', m, MODELS)
  dtype = {'dtype': jnp.dtype(c.get('dtype', 'float32'))}  # absent from older runs
  if m == 'srcnn':
    return sr_models.SRCNN(f2=c['srcnn_f2'], padding=c['padding'], **dtype)
  if m == 'vdsr':
    return sr_models.VDSR(depth=c['depth'], features=c['features'], **dtype)
  return sr_models.SRResNet(
    blocks=c['blocks'], features=c['features'], scale=scale or c['scales'][0],
    norm=c['norm'], icnr=c.get('icnr', False),  # absent from older runs' configs
    bicubic_skip=c.get('bicubic_skip', False), **dtype,
  )  # fmt: skip


def _example_input(c):
  p = c['patch']
  return jnp.zeros((1, p, p, 1 if c['model'] in Y_MODELS else 3))


def _optimizer(c, *, learning_rate=None):
  """The generator's optimizer, or with `learning_rate` the discriminator's
  (the same recipe without `lr_multipliers`, whose paths name the generator's
  layers)."""
  fields = optim.fields(c)
  if learning_rate is not None:
    fields.update(learning_rate=learning_rate, lr_multipliers={})
  return optim.build(num_steps=c['num_steps'], **fields)


# ---------------------------------------------------------------- runs


def _load_data(c, mesh):
  sharding.check_batch_size(c.batch_size, mesh)
  return sr_data.load(
    c.dataset, scales=c.scales, patch=c.patch,
    input_kind='bicubic' if c.model in Y_MODELS else 'lr', batch_size=c.batch_size,
    seed=c.seed, test_dir=c.test_dir, data_dir=c.data_dir, crop=c.crop,
    max_test_images=c.max_test_images, process_index=jax.process_index(),
    process_count=jax.process_count(),
  )  # fmt: skip


def train(c, workdir: str) -> dict:
  rf = sr_models.receptive_field(build_model(c))
  if c.model == 'srcnn' and c.padding == 'VALID' and c.patch < rf:
    # Valid convolutions leave nothing of a patch under the receptive field.
    raise UserError(
      f'--config.patch={c.patch} is smaller than the receptive field of SRCNN with '
      f'valid convolutions ({rf} pixels): give --config.patch={rf} or more, or '
      "--config.padding='SAME'"
    )
  vgg_params = None
  if c.model == 'srgan':
    if c.vgg19_weights is not None:
      vgg_params, vgg_input = weights.load_vgg19(c.vgg19_weights)  # UserError if bad
    if c.warm_start and not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      if not os.path.isdir(os.path.join(c.srresnet_workdir, 'checkpoints')):
        raise UserError(
          f'SRGAN warm-starts from the SRResNet run in {c.srresnet_workdir}, which has '
          'no checkpoint: run the srresnet preset first, or --config.warm_start=False'
        )
  mesh = sharding.data_mesh()
  data = _load_data(c, mesh)
  y_channel = c.model in Y_MODELS
  model = build_model(c)
  k_model, k_d, rng = jax.random.split(jax.random.key(c.seed), 3)
  inputs = (_example_input(c),)
  frozen, note = None, ''
  if c.model == 'srgan':
    g = state_lib.create(model=model, tx=_optimizer(c), rng=k_model, inputs=inputs)
    hr_side = c.patch * c.scales[0]
    d = state_lib.create(
      model=sr_models.SRGANDiscriminator(widths=tuple(c.d_widths)),
      tx=_optimizer(c, learning_rate=c.d_learning_rate),
      rng=k_d, inputs=(jnp.zeros((1, hr_side, hr_side, 3)),),
    )  # fmt: skip
    state = gan.GANState(step=jnp.zeros((), jnp.int32), g=g, d=d, ema=None)
    vgg = sr_models.VGG19Features(preprocess=vgg_input) if vgg_params else None
    frozen = vgg_params
    if vgg is None:
      note = PIXEL_LOSS_NOTE
      print(f'\nSRGAN WITHOUT VGG19 WEIGHTS: content loss is {note}.\n'
            '  Give --config.vgg19_weights=PATH (Keras vgg19 .h5 or converted .npz) '
            'for the paper loss.\n')  # fmt: skip
    else:
      note = 'VGG19 phi_5,4 content loss (features / 12.75) + 1e-3 adversarial'
    step_fn = functools.partial(
      srgan_train_step, adversarial_weight=c.adversarial_weight, vgg=vgg
    )
    if vgg is None:
      step_fn = functools.partial(_no_frozen, step_fn)
    warm = None
    if c.warm_start:
      src = c.srresnet_workdir

      def warm(s):
        s = checkpoint.warm_start(
          s, source_workdir=src, source='params', target='g.params'
        )
        if s.g.batch_stats is not None:
          s = checkpoint.warm_start(
            s, source_workdir=src, source='batch_stats', target='g.batch_stats'
          )
        return s
  else:
    state = state_lib.create(model=model, tx=_optimizer(c), rng=k_model, inputs=inputs)
    step_fn = functools.partial(
      pixel_train_step, model=model, y_channel=y_channel, loss=c.pixel_loss
    )
    warm = None

  predict = loop.make_predictor(
    functools.partial(predict_step, model=model, y_channel=y_channel),
    mesh=mesh, split_batch=False,
  )  # fmt: skip
  label = c.model

  def summarize(state):
    result = sr_eval.evaluate(predict, state, data, workdir=workdir, label=label,
                              round_y=c.round_y, crop=c.figure_crop, note=note)  # fmt: skip
    sr_eval.print_table(result['per_image'], result['mean'],
                f'{label} on {data.name} ({"Y rounded, MATLAB uint8 path" if c.round_y else "Y unrounded"})'
                + (f' [{note}]' if note else ''))  # fmt: skip
    out = {
      'model': c.model,
      'scores': result['per_image'],
      'mean_scores': result['mean'],
      'y_rounded': bool(c.round_y),
      'num_params': state_lib.num_params(
        state.g.params if isinstance(state, gan.GANState) else state.params
      ),
      'test_images': list(data.test_names),
    }
    if c.model == 'srgan':
      out['content_loss'] = note
    # The test PSNR-Y beside the training patches' PSNR in curves.png.
    test = writers.MetricWriter(workdir, console=lambda line: None,
                                resume_step=int(state.step))  # fmt: skip
    test.write(int(state.step), {
      f'test/psnr_y_{scale}': row[label]['psnr_y'] for scale, row in result['mean'].items()
    })  # fmt: skip
    test.close()
    return out

  result = loop.fit(
    state=state, train_step=step_fn, train_batches=data.train_batches,
    num_steps=c.num_steps, workdir=workdir, rng=rng, mesh=mesh,
    examples_per_step=c.batch_size, log_every=c.log_every,
    checkpoint_every=c.checkpoint_every, keep_checkpoints=c.keep_checkpoints,
    loss_key='g_loss' if c.model == 'srgan' else 'loss', config=c.to_dict(),
    frozen=frozen, warm_start=warm, summarize=summarize,
    divergence_factor=c.divergence_factor, loss_unit=_loss_unit(c),
  )  # fmt: skip
  return result.summary


def _loss_unit(c) -> str:
  if c.model == 'srgan':
    return 'generator: content + 1e-3 adversarial'
  return {'mse': 'squared intensity, MSE on [0, 1]', 'l1': 'intensity, L1 on [0, 1]'}[
    c.pixel_loss
  ]


def _no_frozen(step_fn, state, batch, rng):
  return step_fn(state, batch, rng, None)


def restore_run(
  run_dir: str, *, scale: int | None = None, option: str = '--config.checkpoint'
):
  """`(model, run_config, state)` of the finished SR run in `run_dir`: its
  generator's variables in a state without an optimizer (`nkjax.train.restore`)."""
  rc = restore.run_config(run_dir, experiment='sr', option=option)
  run = restore.restore(
    run_dir, experiment='sr', option=option,
    under='g' if rc['model'] == 'srgan' else None,
  )  # fmt: skip
  model = build_model(rc, scale)
  return model, rc, restore.inference_state(model, run, inputs=(_example_input(rc),))


def compare(c, workdir: str) -> dict:
  """Bicubic and every trained run (runs/sr-<model>) on the same test images."""
  found = {}
  for m in c.models:
    run_dir = os.path.join(c.runs, f'sr-{m}')
    if os.path.isfile(os.path.join(run_dir, 'summary.json')):
      found[m] = run_dir
    else:
      print(f'compare: no finished run in {run_dir}; {m} left out')
  if not found:
    raise UserError(
      f'no finished SR runs under {c.runs}/sr-<model>: train a preset first'
    )
  mesh = sharding.data_mesh()
  data = sr_data.load(
    c.dataset, scales=c.scales, patch=8, input_kind='bicubic', batch_size=mesh.size,
    seed=c.seed, test_dir=c.test_dir, data_dir=c.data_dir, crop=c.crop,
    max_test_images=c.max_test_images,
  )  # fmt: skip
  per_image, notes, outputs = {}, {}, {}
  for m, run_dir in found.items():
    with open(os.path.join(run_dir, 'summary.json')) as f:
      notes[m] = json.load(f).get('content_loss', '')
    model, rc, state = restore_run(run_dir, option='--config.runs')
    trained = tuple(rc['scales'])
    predict = loop.make_predictor(
      functools.partial(predict_step, model=model, y_channel=rc['model'] in Y_MODELS),
      mesh=mesh, split_batch=False,
    )  # fmt: skip
    res = sr_eval.evaluate(predict, state, data, workdir=workdir, label=m,
                           round_y=c.round_y, crop=c.figure_crop, write=False,
                           scales=trained)  # fmt: skip
    outputs[m] = res['outputs']
    for scale, images in res['per_image'].items():
      for name, methods in images.items():
        per_image.setdefault(scale, {}).setdefault(name, {}).update(methods)
  means = sr_eval.means(per_image)
  sr_eval.print_table(per_image, means, f'compare on {data.name}')
  sr_eval.save_compare_figures(
    data, outputs=outputs, per_image=per_image, workdir=workdir, crop=c.figure_crop,
    notes=notes,
  )  # fmt: skip
  summary = {'task': 'compare', 'runs': found, 'scores': per_image, 'mean_scores': means,
             'y_rounded': bool(c.round_y), 'content_loss': notes}  # fmt: skip
  writers.write_summary(workdir, summary)
  return summary


def upscale(c, workdir: str) -> dict:
  """Super-resolves `c.image` with the run in `c.checkpoint`; writes the output
  PNG and, beside it, `<output>_vs_bicubic.png`: the image, bicubic and the
  model side by side, with a zoomed crop."""
  if c.checkpoint is None or c.image is None:
    raise UserError('upscale needs --config.checkpoint=RUN_DIR and --config.image=FILE')
  image = sr_data.read_image(c.image)  # UserError: unreadable, RGBA
  rc = restore.run_config(c.checkpoint, experiment='sr', option='--config.checkpoint')
  trained = tuple(rc['scales'])
  if c.scale not in trained:
    raise UserError(
      f'the run in {c.checkpoint} was trained for x{", x".join(map(str, trained))}, '
      f'not x{c.scale}: set --config.scale to one of those'
    )
  model = build_model(rc, c.scale)
  rf = sr_models.receptive_field(model)
  # Receptive field in input pixels: HR pixels for Y networks, LR for SRResNet.
  need = -(-rf // c.scale) if rc['model'] in Y_MODELS else rf
  if min(image.shape[:2]) < need:
    raise UserError(
      f'{c.image} is {image.shape[0]}x{image.shape[1]}, smaller than the '
      f"network's receptive field ({need} pixels at x{c.scale})"
    )
  # Windows of at most max_pixels network inputs, overlapping by the receptive
  # field (and the bicubic skip's 2 LR pixels), so memory stays bounded.
  halo = rf // 2 + 2
  tile = max(math.isqrt(c.max_pixels), 2 * halo + 1)
  out = c.output or os.path.join(
    workdir, f'{os.path.splitext(os.path.basename(c.image))[0]}_x{c.scale}.png'
  )
  model, rc, state = restore_run(c.checkpoint, scale=c.scale)
  mesh = sharding.data_mesh()
  y_channel = rc['model'] in Y_MODELS
  predict = loop.make_predictor(
    functools.partial(predict_step, model=model, y_channel=y_channel),
    mesh=mesh, split_batch=False,
  )  # fmt: skip
  key = 'bicubic' if y_channel else 'lr'

  def network(x):
    return predict(state, [{key: x[None], 'mask': np.ones(1, np.float32)}])['sr'][0]

  bicubic = sr_data.make_bicubic(image, c.scale)
  sr, tiles = sr_data.apply_in_tiles(
    network, bicubic if y_channel else image, tile=tile, halo=halo,
    scale=1 if y_channel else c.scale,
  )  # fmt: skip
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  sr_data.write_png(out, sr)
  side_by_side = f'{os.path.splitext(out)[0]}_vs_bicubic.png'
  name = os.path.basename(c.image)
  viz.save_sr_figure(
    side_by_side, lr=image, bicubic=bicubic, sr=sr, hr=None,
    titles=(f'{name} (x{c.scale} nearest)', f'bicubic x{c.scale}', rc['model']),
    crop=c.figure_crop,
    suptitle=f'{viz.run_name(workdir)}: {name} x{c.scale}, {rc["model"]} beside '
    'bicubic (no ground truth: no PSNR)',
  )  # fmt: skip
  print(
    f'wrote {out}: {sr.shape[0]}x{sr.shape[1]} from {image.shape[0]}x{image.shape[1]}'
    + (f' ({tiles} overlapping tiles of at most {tile}x{tile})' if tiles > 1 else '')
    + f', by the checkpoint at step {int(state.step)} of {c.checkpoint}; '
    f'beside bicubic: {side_by_side}'
  )
  return {'output': out, 'side_by_side': side_by_side, 'shape': list(sr.shape)}


def resumable(config) -> bool:
  """Whether the task trains (and so resumes); compare and upscale read runs."""
  return config.task == 'train'


TASKS = {'train': train, 'compare': compare, 'upscale': upscale}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  choose('task', config.task, TASKS)
  choose('model', config.model, MODELS)
  choose('pixel loss', config.pixel_loss, PIXEL_LOSSES)
  return TASKS[config.task](config, workdir)


if __name__ == '__main__':
  launch.run(main)
