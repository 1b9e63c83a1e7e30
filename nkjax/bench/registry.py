"""The benchmarked train steps: each model on random data of one shape
(`BENCHMARKS`), and the set-ups of the steps other than a classifier's."""

import dataclasses
from collections.abc import Callable

from nkjax.train import detection_presets


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A model's train step on random data of one shape.

  Attributes:
    model: `() -> flax module` (imported lazily, after the launcher sets devices).
    input_shape: one example's `[h, w, c]` (images) or `[seq_len]` (tokens).
    batch_size: the default global batch size.
    torch_step: the eager PyTorch equivalent, if any: `(host batch) -> step()`,
      which builds the model and optimizer (`nkjax.bench_torch.STEPS`) and
      returns a function running one train step on that batch.
    one_cpu_device: on a CPU, run on one of the launcher's per-core devices
      (XLA's matrix products use every core's thread from one device): for a
      model of matrix products only, which the split over devices slows (the
      MLP on 2 cores, alternating runs: 2.0 ms a step on one device against
      2.6-3.3 ms on two).
  """

  model: Callable
  input_shape: tuple[int, ...]
  num_classes: int
  batch_size: int
  torch_step: Callable | None = None
  # > 0: a language model on [batch, seq_len + 1] tokens of num_classes.
  seq_len: int = 0
  # batch_size -> (state, train_step, host batch), for steps other than a classifier's.
  setup: Callable | None = None
  one_cpu_device: bool = False
  # (state, host batch) -> {part: (times per step, fn, replicated args, batch args)}:
  # the step's parts, timed alone beside it (`run`'s `parts`).
  parts: Callable | None = None


def _cnn(name, **kwargs):
  def build():
    from nkjax.models import cnn

    return cnn.create(name, **kwargs)

  return build


def _mlp():
  from nkjax.models.mlp import MLP

  return MLP(hidden=(256, 256), num_outputs=10)


def _torch(name):
  def build(batch):
    from nkjax import bench_torch

    return bench_torch.STEPS[name](batch)

  return build


def _lstm_lm():
  from nkjax.models.rnn import CharLM

  return CharLM(vocab_size=100, embed=64, cell='lstm', features=256)


def _dcgan_round(batch_size: int):
  """One DCGAN round, k = 1: a discriminator update on m real and m generated
  32x32x3 images, then a generator update; m = batch_size."""
  import functools

  import jax
  import jax.numpy as jnp
  import numpy as np

  from nkjax.models import gan as gan_models
  from nkjax.train import gan, optim
  from nkjax.train import state as state_lib

  tx = optim.make_optimizer(name='adam', learning_rate=2e-4, b1=0.5)
  g_model = gan_models.DCGANGenerator(image_shape=(32, 32, 3), widths=(256, 128, 64))
  d_model = gan_models.DCGANDiscriminator(widths=(64, 128, 256))
  g = state_lib.create(
    model=g_model, tx=tx, rng=jax.random.key(0), inputs=(jnp.zeros((1, 100)),)
  )
  d = state_lib.create(
    model=d_model, tx=tx, rng=jax.random.key(1), inputs=(jnp.zeros((1, 32, 32, 3)),)
  )
  batch = {
    'image': np.random.default_rng(1)
    .uniform(-1, 1, (batch_size, 32, 32, 3))
    .astype(np.float32),
    'label': np.zeros(batch_size, np.int32),
  }
  return (
    gan.create(g, d, ema=False),
    functools.partial(gan.gan_round, k=1, latent_dim=100),
    batch,
  )


def _dcgan_parts(state, batch):
  """The DCGAN round's parts, each a jitted program alone: G's forward, G's
  forward and backward (to its parameters), D's forward and backward (to its
  parameters and its input) on m images. A round (k = 1) runs G forward and D
  forward and backward twice (real, fake) in D's update, then G and D forward
  and backward in G's."""
  import jax
  import jax.numpy as jnp

  g, d = state.g, state.d
  m = batch['image'].shape[0]

  def run(ts, params, x):
    variables = {'params': params, 'batch_stats': ts.batch_stats}
    return ts.apply_fn(variables, x, train=True, mutable=['batch_stats'])[0]

  z = {'z': jnp.zeros((m, 100)), 'x': jnp.asarray(batch['image'])}
  g_sum = lambda p, b: jnp.sum(run(g, p, b['z']))  # noqa: E731
  d_sum = lambda p, b: jnp.sum(run(d, p, b['x']))  # noqa: E731
  return {
    'g_forward': (1, lambda p, b: run(g, p, b['z']), g.params, z),
    'g_fwd_bwd': (1, jax.grad(g_sum), g.params, z),
    'd_fwd_bwd': (3, jax.grad(d_sum, argnums=(0, 1)), d.params, z),
  }


def _faster_rcnn_step(preset: dict, size: tuple[int, int]):
  """A Faster R-CNN train step (approximate joint training) of a recipe of
  `nkjax.train.detection_presets` on random images of `size` with three random
  boxes each; see experiments/detection.py."""

  def setup(batch_size: int):
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    from nkjax.models import detection as det
    from nkjax.train import detection as det_steps
    from nkjax.train import optim
    from nkjax.train import state as state_lib

    model = det.FasterRCNN(
      num_classes=20,
      **{k: preset[k] for k in FASTER_RCNN_MODEL_FIELDS},
    )
    h, w = size
    state = state_lib.create(
      model=model, tx=optim.make_optimizer(name='momentum', learning_rate=1e-3),
      rng=jax.random.key(0), inputs=(jnp.zeros((1, h, w, 3)),),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, min(h, w) / 2, (batch_size, 3, 2))
    boxes = np.concatenate(
      [xy, xy + rng.uniform(16, min(h, w) / 2, (batch_size, 3, 2))], -1
    )
    batch = {
      'image': rng.uniform(size=(batch_size, h, w, 3)).astype(np.float32),
      'boxes': boxes.astype(np.float32),
      'labels': rng.integers(0, 20, (batch_size, 3)).astype(np.int32),
      'box_mask': np.ones((batch_size, 3), bool),
    }
    step = functools.partial(
      det_steps.faster_rcnn_train_step,
      model=model,
      pre_nms_top_n=preset['rpn_pre_nms_train'],
      post_nms_top_n=preset['rpn_post_nms_train'],
    )
    return state, step, batch

  return setup


# The fields of a detection preset that are `FasterRCNN`'s attributes.
FASTER_RCNN_MODEL_FIELDS = (
  'backbone', 'anchor_scales', 'fc', 'roi_op', 'roi_size', 'rpn_width',
)  # fmt: skip


def _faster_rcnn(
  preset: dict, size: tuple[int, int] | None = None, torch_step=None
) -> Benchmark:
  """The Faster R-CNN benchmark of a detection preset, on square images of its
  `image_size` or of `size` (h, w): its input shape and its step's set-up both
  from that one size."""
  size = size or (preset['image_size'],) * 2
  return Benchmark(
    None, (*size, 3), 0, preset['batch_size'], torch_step,
    setup=_faster_rcnn_step(preset, size),
  )  # fmt: skip


def _sr(name: str, *, infer: bool = False):
  """Super-resolution: a train step on patches (the papers' sizes: SRCNN 33x33 Y
  sub-images, VDSR 41x41 Y, SRResNet 24x24 LR -> 96x96 HR) or, `infer`, a full
  512x512 x4 image per example (VDSR on the bicubic Y, SRResNet on 128x128 LR)."""

  def setup(batch_size: int):
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    from nkjax.models import sr as sr_models
    from nkjax.train import optim
    from nkjax.train import sr as sr_steps
    from nkjax.train import state as state_lib

    model = {
      'srcnn': sr_models.SRCNN(),
      'vdsr': sr_models.VDSR(),
      'srresnet': sr_models.SRResNet(),
      # experiments/sr.py's srresnet preset (for CPUs): 4 blocks of 32, no batch
      # norm, ICNR, the bicubic skip; 12x12 LR patches, the L1 loss.
      'srresnet_cpu': sr_models.SRResNet(
        blocks=4, features=32, norm=False, icnr=True, bicubic_skip=True
      ),
    }[name]
    y = not name.startswith('srresnet')
    if infer:
      hr, lr = 512, 128
    else:
      hr = {'srcnn': 33, 'vdsr': 41, 'srresnet': 96, 'srresnet_cpu': 48}[name]
      lr = hr // 4
    side = hr if y else lr
    state = state_lib.create(
      model=model,
      tx=optim.make_optimizer(name='adam', learning_rate=1e-4),
      rng=jax.random.key(0),
      # The networks are fully convolutional: a small input gives the same params.
      inputs=(jnp.zeros((1, 16, 16, 1 if y else 3)),),
    )
    rng = np.random.default_rng(0)
    batch = {
      'input': rng.uniform(0, 1, (batch_size, side, side, 3)).astype(np.float32),
      'hr': rng.uniform(0, 1, (batch_size, hr, hr, 3)).astype(np.float32),
    }
    if not infer:
      step = functools.partial(
        sr_steps.pixel_train_step, model=model, y_channel=y,
        loss='l1' if name == 'srresnet_cpu' else 'mse',
      )  # fmt: skip
      return state, step, batch

    def infer_step(state, batch, rng):
      del rng
      x = sr_steps.y_channel_of(batch['input']) if y else batch['input']
      out = state.apply_fn(sr_steps.variables(state), x, train=False)
      return state, {
        'loss': (jnp.sum(out.mean((1, 2, 3))), jnp.asarray(out.shape[0], jnp.float32))
      }

    return state, infer_step, batch

  return setup


BENCHMARKS: dict[str, Benchmark] = {
  'mlp': Benchmark(_mlp, (28, 28, 1), 10, 256, _torch('mlp'), one_cpu_device=True),
  'lenet5': Benchmark(_cnn('lenet5'), (28, 28, 1), 10, 256, _torch('lenet5')),
  # VGG-11 for 32x32 inputs: 1x1 final map, a 512-512 classifier (as CIFAR VGGs do).
  'vgg11': Benchmark(
    _cnn('vgg11', num_classes=10, pool_to=1, classifier=(512, 512)),
    (32, 32, 3),
    10,
    128,
    _torch('vgg11'),
  ),
  'resnet20': Benchmark(
    _cnn('resnet20', num_classes=10), (32, 32, 3), 10, 128, _torch('resnet20')
  ),
  'resnet50': Benchmark(_cnn('resnet50', num_classes=1000), (224, 224, 3), 1000, 64),
  # The char_lm experiment's model: 100 characters, one LSTM layer of 256, 128 steps.
  'lstm_lm': Benchmark(_lstm_lm, (128,), 100, 64, _torch('lstm_lm'), seq_len=128),
  # A DCGAN round (k = 1) on 32x32x3 images; examples/s counts real images.
  # Its row also times the round's parts alone (`parts_ms`, `round_over_parts`).
  'dcgan': Benchmark(
    None, (32, 32, 3), 0, 128, _torch('dcgan'), setup=_dcgan_round, parts=_dcgan_parts
  ),
  # Faster R-CNN train steps: the offline recipe (small stride-8 backbone,
  # 128x128, batch 4) and the VOC07 one (VGG-16, batch 2, 2000 training
  # proposals) on 600x1000 images, VOC's usual landscape shape at its scale.
  'faster_rcnn': _faster_rcnn(
    detection_presets.OFFLINE, torch_step=_torch('faster_rcnn')
  ),
  'faster_rcnn_voc': _faster_rcnn(detection_presets.VOC07, (600, 1000)),
  # Super-resolution train steps at the papers' patch and batch sizes (and
  # srresnet_cpu: the CPU preset's), and a full 512x512 x4 image through VDSR
  # and SRResNet (examples/s: images/s).
  'srcnn': Benchmark(None, (33, 33, 1), 0, 128, setup=_sr('srcnn')),
  'vdsr': Benchmark(None, (41, 41, 1), 0, 64, _torch('vdsr'), setup=_sr('vdsr')),
  'srresnet': Benchmark(None, (24, 24, 3), 0, 16, setup=_sr('srresnet')),
  'srresnet_cpu': Benchmark(
    None, (12, 12, 3), 0, 16, _torch('srresnet_cpu'), setup=_sr('srresnet_cpu')
  ),
  'vdsr_x4_512': Benchmark(None, (512, 512, 1), 0, 8, setup=_sr('vdsr', infer=True)),
  'srresnet_x4_512': Benchmark(
    None, (128, 128, 3), 0, 8, setup=_sr('srresnet', infer=True)
  ),
}
