"""Train-step benchmarks: examples/s, compile time, memory, FLOP/s and MFU.

  python -m nkjax.bench mlp
  python -m nkjax.bench mlp --batch-size 1024 --repeats 10
  python -m nkjax.bench --suite accelerator     # every model, sized for the device

FLOPs per step are XLA's cost analysis of the compiled step (its count of the
multiply-adds and elementwise ops, 2 per multiply-add), over every device; MFU
divides FLOP/s by the devices' dense peak for the compute dtype (`PEAKS`), and
is left out for a device the table does not know (or pass --peak-tflops).

Each figure is the median of `--repeats` timed runs of `--steps` steps, after
a warm-up, on a data-parallel mesh over every device (on a CPU, one fake
device per core, as the experiments use). Peak memory is the accelerator's peak
bytes in use; on a CPU it is the process's peak resident memory, which includes
the Python runtime.
"""

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable

from nkjax import launch


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A model's train step on random data of one shape.

  Attributes:
    model: `() -> flax module` (imported lazily, after the launcher sets devices).
    input_shape: one example's `[h, w, c]` (images) or `[seq_len]` (tokens).
    batch_size: the default global batch size.
    torch_model: `() -> torch.nn.Module`, the eager PyTorch equivalent, if any.
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
  torch_model: Callable | None = None
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
  def build():
    from nkjax import bench_torch

    return bench_torch.MODELS[name]()

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


def _faster_rcnn_step(
  *, backbone, size, anchor_scales, fc, roi_op, roi_size, rpn_width, post_nms_train
):
  """A Faster R-CNN train step (approximate joint training) on random images of
  `size` with three random boxes each; see experiments/detection.py."""

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
      num_classes=20, backbone=backbone, anchor_scales=anchor_scales, fc=fc,
      roi_op=roi_op, roi_size=roi_size, rpn_width=rpn_width,
    )  # fmt: skip
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
      det_steps.faster_rcnn_train_step, model=model, post_nms_top_n=post_nms_train
    )
    return state, step, batch

  return setup


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
    }[name]
    y = name != 'srresnet'
    if infer:
      hr, lr = 512, 128
    else:
      hr = {'srcnn': 33, 'vdsr': 41, 'srresnet': 96}[name]
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
      step = functools.partial(sr_steps.pixel_train_step, model=model, y_channel=y)
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
  'dcgan': Benchmark(None, (32, 32, 3), 0, 128, setup=_dcgan_round, parts=_dcgan_parts),
  # Faster R-CNN train steps: the offline preset (small backbone, 128x128, batch
  # 4) and the VOC07 recipe (VGG-16, 600x1000, batch 2, 2000 training proposals).
  'faster_rcnn': Benchmark(
    None,
    (128, 128, 3),
    0,
    4,
    setup=_faster_rcnn_step(
      backbone='small',
      size=(128, 128),
      anchor_scales=(16.0, 32.0, 64.0),
      fc=(256, 256),
      roi_op='align',
      roi_size=5,
      rpn_width=128,
      post_nms_train=128,
    ),
  ),  # fmt: skip
  'faster_rcnn_voc': Benchmark(
    None,
    (600, 1000, 3),
    0,
    2,
    setup=_faster_rcnn_step(
      backbone='vgg16',
      size=(600, 1000),
      anchor_scales=(128.0, 256.0, 512.0),
      fc=(4096, 4096),
      roi_op='pool',
      roi_size=7,
      rpn_width=512,
      post_nms_train=2000,
    ),
  ),  # fmt: skip
  # Super-resolution train steps at the papers' patch and batch sizes, and a
  # full 512x512 x4 image through VDSR and SRResNet (examples/s: images/s).
  'srcnn': Benchmark(None, (33, 33, 1), 0, 128, setup=_sr('srcnn')),
  'vdsr': Benchmark(None, (41, 41, 1), 0, 64, setup=_sr('vdsr')),
  'srresnet': Benchmark(None, (24, 24, 3), 0, 16, setup=_sr('srresnet')),
  'vdsr_x4_512': Benchmark(None, (512, 512, 1), 0, 8, setup=_sr('vdsr', infer=True)),
  'srresnet_x4_512': Benchmark(
    None, (128, 128, 3), 0, 8, setup=_sr('srresnet', infer=True)
  ),
}


# Dense peak FLOP/s of one JAX device: (pattern matched in `device_kind`,
# bfloat16, float32). By JAX's default precision float32 matrix products and
# convolutions run as TF32 on the tensor cores of Ampere and later GPUs and as
# one bfloat16 pass on TPUs, so those float32 peaks are the TF32 and bfloat16
# ones. A TPU v2 or v3 chip is two JAX devices (its cores), hence half the chip's
# figure; from v4 on one device is one chip. The T4 has no bfloat16 tensor cores.
# Vendor data sheets; sparsity figures halved where a sheet quotes them.
PEAKS: tuple[tuple[str, float | None, float | None], ...] = (
  (r'h100.*pcie', 756e12, 378e12),
  (r'h100', 989e12, 495e12),  # SXM
  (r'h200', 989e12, 495e12),  # SXM
  (r'a100', 312e12, 156e12),
  (r'\bl4\b', 121e12, 60e12),
  (r'\bt4\b', None, 8.1e12),
  (r'tpu v2\b', 22.5e12, 22.5e12),
  (r'tpu v3\b', 61.5e12, 61.5e12),
  (r'tpu v4\b', 275e12, 275e12),
  (r'tpu v5 ?(lite|e)\b', 197e12, 197e12),
  (r'tpu v5p?$', 459e12, 459e12),
  (r'tpu v6 ?(lite|e)\b', 918e12, 918e12),
)


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """One device's dense peak FLOP/s for `dtype` ('bfloat16' or 'float32'), or
  None for a device (or a dtype on it) the table does not know.

  >>> peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16')
  989000000000000.0
  """
  import re

  for pattern, bf16, fp32 in PEAKS:
    if re.search(pattern, device_kind.lower()):
      return bf16 if dtype == 'bfloat16' else fp32
  return None


def _peak_memory_bytes(devices) -> tuple[int, str]:
  stats = [d.memory_stats() for d in devices]
  if all(s and 'peak_bytes_in_use' in s for s in stats):
    return max(
      s['peak_bytes_in_use'] for s in stats
    ), 'device peak bytes in use (max over devices, whole process so far)'
  return resource.getrusage(
    resource.RUSAGE_SELF
  ).ru_maxrss * 1024, 'host peak RSS (whole process)'


def _program_memory_bytes(compiled) -> int | None:
  """One device's memory for the compiled program: arguments, outputs and
  temporaries, less the outputs that reuse donated arguments."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return (
    m.argument_size_in_bytes
    + m.output_size_in_bytes
    + m.temp_size_in_bytes
    - m.alias_size_in_bytes
  )


def compiled_flops(compiled) -> float | None:
  """FLOPs of one run of a compiled program on one device, by XLA's cost analysis.

  Under SPMD each device runs the partitioned program, so the whole step is
  this times the device count. XLA counts a loop's body once, whatever its
  trip count (see `step_flops`).
  """
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jaxlibs: one dict per program
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def _time(
  run_steps: Callable[[int], None], *, steps: int, repeats: int, warmup: int
) -> list[float]:
  """Seconds of each of `repeats` timed calls of `run_steps(steps)`, after a warm-up.

  `run_steps` must block until its steps are done.
  """
  run_steps(warmup)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run_steps(steps)
    times.append(time.perf_counter() - t0)
  return times


def _throughput(
  times: list[float], steps: int, batch_size: int, seq_len: int = 0
) -> dict:
  median = statistics.median(times)
  tokens = (
    {'tokens_per_second': round(steps * batch_size * seq_len / median, 1)}
    if seq_len
    else {}
  )
  return {
    **tokens,
    'step_ms_median': round(1e3 * median / steps, 3),
    'examples_per_second': round(steps * batch_size / median, 1),
    'examples_per_second_min_max': [
      round(steps * batch_size / t, 1) for t in (max(times), min(times))
    ],
  }


def _random_batch(bench: Benchmark, batch_size: int, input_shape=None) -> dict:
  import numpy as np

  if bench.seq_len:
    return {
      'tokens': np.random.default_rng(1)
      .integers(0, bench.num_classes, (batch_size, bench.seq_len + 1))
      .astype(np.int32)
    }
  return {
    'image': np.random.default_rng(1)
    .uniform(size=(batch_size, *(input_shape or bench.input_shape)))
    .astype(np.float32),
    'label': np.random.default_rng(2)
    .integers(0, bench.num_classes, batch_size)
    .astype(np.int32),
  }


def _input_shape(bench: Benchmark, image_size: int | None) -> tuple[int, ...]:
  if image_size is None or bench.seq_len:
    return bench.input_shape
  return (image_size, image_size, *bench.input_shape[2:])


def _setup(name: str, *, batch_size: int, dtype: str, image_size, unroll: int = 1):
  """(state, train_step, host batch) of benchmark `name`, on the host."""
  import jax
  import jax.numpy as jnp

  from nkjax.errors import UserError
  from nkjax.train import optim
  from nkjax.train import state as state_lib
  from nkjax.train import steps as steps_lib

  bench = BENCHMARKS[name]
  if bench.setup is not None:
    if dtype != 'float32':
      raise UserError(f'benchmark {name} has no bfloat16 variant')
    return bench.setup(batch_size)
  model = bench.model()
  if dtype == 'bfloat16':
    if not hasattr(model, 'dtype'):
      raise UserError(
        f'benchmark {name} has no bfloat16 variant; those with one: lenet5, vgg11, resnet20, resnet50'
      )
    model = model.clone(dtype=jnp.bfloat16)
  if unroll != 1:
    model = model.clone(unroll=unroll)
  tx = optim.make_optimizer(name='adam', learning_rate=1e-3)
  shape = _input_shape(bench, image_size)
  example = jnp.zeros((1, *shape), jnp.int32 if bench.seq_len else jnp.float32)
  state = state_lib.create(model=model, tx=tx, rng=jax.random.key(0), inputs=(example,))
  train_step = (
    steps_lib.lm_train_step if bench.seq_len else steps_lib.classifier_train_step
  )
  return state, train_step, _random_batch(bench, batch_size, shape)


def several_steps(train_step: Callable, steps_per_call: int) -> Callable:
  """`train_step` run `steps_per_call` times on the same batch in one compiled
  call (a `lax.scan`), for models whose one step is too small to keep a device
  busy between the host's dispatches; returns the last step's metrics.

  Unrolled on a CPU, as `loop.jit_train_steps` is: XLA:CPU ran LeNet-5's step
  inside a rolled loop 6x slower (77 against 13 ms a step, batch 256, 2 cores,
  jax 0.10.2); on a GPU or TPU the rolled loop compiles once and runs at speed.
  """
  import jax

  def run(state, batch, rng):
    state, metrics = jax.lax.scan(
      lambda s, _: train_step(s, batch, rng),
      state,
      length=steps_per_call,
      unroll=jax.default_backend() == 'cpu',
    )
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return run


def _compile(train_step, state, batch, rng, mesh):
  from nkjax.train import loop

  return loop.jit_train_step(train_step, mesh).lower(state, batch, rng).compile()


def _prepare(
  name, *, batch_size, mesh, dtype='float32', image_size=None, steps_per_call=1
):
  """Benchmark `name`'s step compiled on `mesh`: (compiled, compile seconds,
  `run_steps(n)`, which runs it n times from the last state and blocks)."""
  import jax

  from nkjax.train import sharding

  state, train_step, host_batch = _setup(
    name, batch_size=batch_size, dtype=dtype, image_size=image_size
  )
  state = sharding.replicate(state, mesh)
  batch = sharding.shard_batch(host_batch, mesh)
  rng = sharding.replicate(jax.random.key(0), mesh)
  t0 = time.perf_counter()
  step = (
    train_step if steps_per_call == 1 else several_steps(train_step, steps_per_call)
  )
  compiled = _compile(step, state, batch, rng, mesh)
  compile_seconds = time.perf_counter() - t0

  def run_steps(n):
    nonlocal state
    for _ in range(n):
      state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))

  return compiled, compile_seconds, run_steps


def step_flops(
  name: str,
  *,
  batch_size: int,
  dtype: str = 'float32',
  image_size=None,
  mesh=None,
  counted: float | None = None,
) -> float | None:
  """FLOPs of one train step of benchmark `name` over every device (XLA's count).

  A recurrent model's time loop is compiled as a loop whose body XLA counts
  once, so it is counted at unroll factors 1 and 2: the difference is one time
  step, and the step is the first count plus (seq_len - 1) more time steps.
  `counted`: the count of the one-step program at unroll 1, if already known.
  """
  import jax

  from nkjax.train import sharding

  mesh = mesh or sharding.data_mesh()

  def count(unroll):
    state, train_step, host_batch = _setup(
      name, batch_size=batch_size, dtype=dtype, image_size=image_size, unroll=unroll
    )
    args = (
      sharding.replicate(state, mesh),
      sharding.shard_batch(host_batch, mesh),
      sharding.replicate(jax.random.key(0), mesh),
    )
    flops = compiled_flops(_compile(train_step, *args, mesh))
    return None if flops is None else flops * mesh.devices.size

  flops = count(1) if counted is None else counted
  seq_len = BENCHMARKS[name].seq_len
  if flops is None or not seq_len:
    return flops
  return flops + (seq_len - 1) * (count(2) - flops)


def _mesh(bench: Benchmark):
  """The data mesh a benchmark runs on: every device, or see `one_cpu_device`."""
  import jax

  from nkjax.train import sharding

  if bench.one_cpu_device and jax.default_backend() == 'cpu':
    return sharding.data_mesh(jax.devices()[:1])
  return sharding.data_mesh()


def time_parts(
  name: str, *, batch_size: int, mesh, steps: int, repeats: int, warmup: int
) -> dict:
  """Benchmark `name`'s parts (`Benchmark.parts`), each jitted alone on `mesh`.

  Returns:
    `{'parts_ms': {part: ms a call}, 'parts_sum_ms': the sum weighted by each
    part's calls per step, 'parts_tflops': that sum's FLOPs}`.
  """
  import jax

  from nkjax.train import sharding

  state, _, host_batch = _setup(
    name, batch_size=batch_size, dtype='float32', image_size=None
  )
  times, total_ms, flops = {}, 0.0, 0.0
  for part, (count, fn, params, data) in (
    BENCHMARKS[name].parts(state, host_batch).items()
  ):
    args = (sharding.replicate(params, mesh), sharding.shard_batch(data, mesh))
    compiled = jax.jit(fn).lower(*args).compile()

    def run_steps(n, compiled=compiled, args=args):
      for _ in range(n):
        out = compiled(*args)
      jax.block_until_ready(out)

    seconds = statistics.median(
      _time(run_steps, steps=steps, repeats=repeats, warmup=warmup)
    )
    times[part] = round(1e3 * seconds / steps, 3)
    total_ms += count * times[part]
    counted = compiled_flops(compiled)
    flops = None if counted is None or flops is None else flops + count * counted
  return {
    'parts_ms': times,
    'parts_sum_ms': round(total_ms, 3),
    'parts_tflops': None if flops is None else flops * mesh.devices.size / 1e12,
  }


def run(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
  dtype: str = 'float32',
  steps_per_call: int = 1,
  image_size: int | None = None,
  peak_tflops: float | None = None,
) -> dict:
  """Measures one benchmark's jitted, data-parallel train step (Adam); returns its figures.

  Args:
    name: a key of `BENCHMARKS`.
    batch_size: global batch (default: the benchmark's).
    steps: compiled calls per timed run; `repeats` timed runs, after `warmup` calls.
    dtype: 'float32', or 'bfloat16' compute with float32 parameters.
    steps_per_call: train steps per compiled call (`several_steps`).
    image_size: square images of this size instead of the benchmark's.
    peak_tflops: one device's peak in TFLOP/s, for a device `PEAKS` lacks.

  Returns:
    A dict of JSON-ready figures: `examples_per_second` (and `tokens_per_second`
    for a language model), `compile_seconds`, memory in MB, `tflops_per_step`
    (all devices), `tflop_per_second` and `mfu` (None without a peak).
  """
  import jax

  from nkjax.errors import UserError, choose
  from nkjax.train import sharding

  choose('benchmark', name, BENCHMARKS)
  choose('dtype', dtype, ('float32', 'bfloat16'))
  if steps_per_call < 1:
    raise UserError(f'steps per call must be at least 1, got {steps_per_call}')
  bench = BENCHMARKS[name]
  batch_size = batch_size or bench.batch_size
  mesh = _mesh(bench)
  sharding.check_batch_size(batch_size, mesh)
  compiled, compile_seconds, run_steps = _prepare(
    name,
    batch_size=batch_size,
    dtype=dtype,
    image_size=image_size,
    steps_per_call=steps_per_call,
    mesh=mesh,
  )
  program_memory = _program_memory_bytes(compiled)
  counted = None
  if steps_per_call == 1:
    counted = compiled_flops(compiled)
    counted = None if counted is None else counted * mesh.devices.size
  # Several steps per call is a loop that XLA counts once: count one step.
  flops = (
    counted
    if steps_per_call == 1 and not bench.seq_len
    else step_flops(
      name,
      batch_size=batch_size,
      dtype=dtype,
      image_size=image_size,
      mesh=mesh,
      counted=counted,
    )
  )

  times = _time(run_steps, steps=steps, repeats=repeats, warmup=warmup)
  memory, memory_kind = _peak_memory_bytes(mesh.devices.flat)
  figures = _throughput(times, steps * steps_per_call, batch_size, bench.seq_len)
  if bench.parts is not None:
    parts = time_parts(
      name, batch_size=batch_size, mesh=mesh, steps=steps, repeats=repeats,
      warmup=warmup,
    )  # fmt: skip
    # A step much slower than its parts is a defect of the program around them.
    parts['round_over_parts'] = round(
      figures['step_ms_median'] / parts['parts_sum_ms'], 2
    )
    parts['round_over_parts_flops'] = (
      None
      if flops is None or parts['parts_tflops'] is None
      else round(flops / 1e12 / parts['parts_tflops'], 2)
    )
    figures.update(parts)
  device_kind = jax.devices()[0].device_kind
  peak = peak_tflops * 1e12 if peak_tflops else peak_flops(device_kind, dtype)
  flops_per_second = (
    None if flops is None else flops / (1e-3 * figures['step_ms_median'])
  )
  return {
    'benchmark': name,
    'framework': f'jax {jax.__version__}',
    'batch_size': batch_size,
    'input_shape': list(_input_shape(bench, image_size)),
    'dtype': dtype,
    'platform': jax.default_backend(),
    'devices': int(mesh.devices.size),
    'device_kind': device_kind,
    'steps_per_call': steps_per_call,
    'compile_seconds': round(compile_seconds, 3),
    **figures,
    'peak_memory_mb': round(memory / 2**20, 1),
    'peak_memory_kind': memory_kind,
    'program_memory_mb': None
    if program_memory is None
    else round(program_memory / 2**20, 1),
    'tflops_per_step': None if flops is None else flops / 1e12,
    'tflop_per_second': None
    if flops_per_second is None
    else float(f'{flops_per_second / 1e12:.4g}'),
    'peak_tflop_per_second_per_device': None if peak is None else peak / 1e12,
    'mfu': None
    if peak is None or flops_per_second is None
    else float(f'{flops_per_second / (peak * mesh.devices.size):.4g}'),
    'timing': f'median of {repeats} runs of {steps} calls of {steps_per_call} '
    f'steps after {warmup} warm-up calls',
  }


def _torch_steps(name: str, batch_size: int) -> Callable[[int], None]:
  """`run_steps(n)`: n Adam steps of benchmark `name`'s eager PyTorch equivalent
  on the CPU, a thread per core this process may use."""
  import torch

  from nkjax.errors import UserError

  bench = BENCHMARKS[name]
  if bench.torch_model is None:
    raise UserError(
      f'benchmark {name} has no PyTorch equivalent; those with one: {", ".join(n for n, b in BENCHMARKS.items() if b.torch_model)}'
    )
  torch.set_num_threads(launch.cpu_cores())
  torch.manual_seed(0)
  model = bench.torch_model()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  data = _random_batch(bench, batch_size)
  if bench.seq_len:  # next-token prediction over every position
    tokens = torch.from_numpy(data['tokens']).long()
    x, y = tokens[:, :-1], tokens[:, 1:].reshape(-1)
  else:
    x = (
      torch.from_numpy(data['image']).permute(0, 3, 1, 2).contiguous()
    )  # NCHW, PyTorch's fast layout
    y = torch.from_numpy(data['label']).long()

  def run_steps(n):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      logits = model(x)
      logits = logits.reshape(-1, logits.shape[-1])
      torch.nn.functional.cross_entropy(logits, y).backward()
      opt.step()

  return run_steps


def run_torch(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
) -> dict:
  """The same step in eager PyTorch on the CPU (a thread per core this process
  may use), for comparison."""
  import torch

  batch_size = batch_size or BENCHMARKS[name].batch_size
  run_steps = _torch_steps(name, batch_size)
  times = _time(run_steps, steps=steps, repeats=repeats, warmup=warmup)
  return {
    'benchmark': name,
    'framework': f'torch {torch.__version__} eager',
    'batch_size': batch_size,
    'threads': torch.get_num_threads(),
    **_throughput(times, steps, batch_size, BENCHMARKS[name].seq_len),
    'timing': f'median of {repeats} runs of {steps} steps after {warmup} warm-up steps',
  }


def profile(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
  with_torch: bool = False,
) -> dict:
  """Where one train step of benchmark `name` spends its time (`nkjax.profile`).

  The step is timed untraced (median of `repeats` runs of `steps` steps), then
  `steps` steps are traced; with `with_torch`, the same for eager PyTorch.

  Returns:
    `{'jax': {'step_ms', 'tables'}, 'torch': ...}`, tables of `nkjax.profile.Row`.
  """
  import jax

  from nkjax import profile as profile_lib
  from nkjax.errors import choose
  from nkjax.train import sharding

  choose('benchmark', name, BENCHMARKS)
  batch_size = batch_size or BENCHMARKS[name].batch_size
  mesh = _mesh(BENCHMARKS[name])
  sharding.check_batch_size(batch_size, mesh)
  compiled, _, run_steps = _prepare(name, batch_size=batch_size, mesh=mesh)
  timing = dict(steps=steps, repeats=repeats, warmup=warmup)
  step_ms = 1e3 * statistics.median(_time(run_steps, **timing)) / steps
  result = {
    'jax': {
      'framework': f'jax {jax.__version__}, {mesh.devices.size} device(s)',
      'step_ms': step_ms,
      'tables': profile_lib.jax_tables(
        compiled, run_steps, steps=steps, step_ms=step_ms
      ),
    }
  }
  if with_torch:
    import torch

    run_torch_steps = _torch_steps(name, batch_size)
    torch_ms = 1e3 * statistics.median(_time(run_torch_steps, **timing)) / steps
    times = profile_lib.torch_op_times(lambda: run_torch_steps(steps))
    result['torch'] = {
      'framework': f'torch {torch.__version__} eager, {torch.get_num_threads()} thread(s)',
      'step_ms': torch_ms,
      'tables': profile_lib.torch_tables(times, step_ms=torch_ms),
    }
  return result


def format_profile(name: str, batch_size: int, result: dict, limit: int = 12) -> str:
  """`profile`'s result as Markdown tables, JAX's then PyTorch's."""
  from nkjax import profile as profile_lib

  out = []
  for side, layer_key, headers in (
    ('jax', 'layer', ('layer', 'pass', 'family')),
    ('torch', 'op', ('aten op', 'family')),
  ):
    if side not in result:
      continue
    r = result[side]
    t = r['tables']
    out += [
      f'### {name} (batch {batch_size}): {r["framework"]}, {r["step_ms"]:.2f} ms a step',
      '',
      profile_lib.format_rows(t['family'], ('family',)),
      '',
    ]
    if 'family_pass' in t:
      out += [profile_lib.format_rows(t['family_pass'], ('family', 'pass')), '']
    out += [profile_lib.format_rows(t[layer_key], headers, limit=limit), '']
  return '\n'.join(out)


@dataclasses.dataclass(frozen=True)
class SuiteEntry:
  """One benchmark of a suite: `run`'s arguments for it."""

  name: str
  batch_size: int
  dtype: str = 'float32'
  steps_per_call: int = 1
  image_size: int | None = None


# On a GPU or TPU: bfloat16 where the model has it; several steps per call for
# models whose one step leaves the device idle between dispatches.
ACCELERATOR_SUITE = (
  SuiteEntry('resnet50', 256, 'bfloat16'),
  SuiteEntry('resnet20', 128, 'bfloat16', steps_per_call=10),
  SuiteEntry('lenet5', 256, 'bfloat16', steps_per_call=50),
  SuiteEntry('mlp', 256, steps_per_call=50),
  SuiteEntry('lstm_lm', 64, steps_per_call=5),
  SuiteEntry('dcgan', 128, steps_per_call=10),
)
# The same models sized for a few CPU cores, without ResNet-50: its set-up and
# compilation alone took minutes on 2 cores (`python -m nkjax.bench resnet50`
# times it on its own).
CPU_SUITE = (
  SuiteEntry('resnet20', 32),
  SuiteEntry('lenet5', 128),
  SuiteEntry('mlp', 256),
  SuiteEntry('lstm_lm', 16),
  SuiteEntry('dcgan', 32),
)
SUITES = ('accelerator',)


def suite_entries(suite: str, platform: str) -> tuple[SuiteEntry, ...]:
  """The entries of `suite` for a JAX platform ('cpu', 'gpu', 'tpu')."""
  from nkjax.errors import choose

  choose('suite', suite, SUITES)
  return CPU_SUITE if platform == 'cpu' else ACCELERATOR_SUITE


def format_table(rows: list[dict]) -> str:
  """The suite's figures as a Markdown table, one row per benchmark."""

  def num(value, digits=1):
    return '' if value is None else f'{value:,.{digits}f}'

  lines = [
    '| benchmark | batch | dtype | steps/call | examples/s | tokens/s | compile s '
    '| program MB | TFLOP/s | MFU |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for r in rows:
    shape = 'x'.join(map(str, r['input_shape'][:2]))
    name = (
      f'{r["benchmark"]} ({shape})' if len(r['input_shape']) == 3 else r['benchmark']
    )
    mfu = '' if r['mfu'] is None else f'{100 * r["mfu"]:.3g}%'
    rate = '' if r['tflop_per_second'] is None else f'{r["tflop_per_second"]:.4g}'
    lines.append(
      f'| {name} | {r["batch_size"]} | {r["dtype"]} | {r["steps_per_call"]} '
      f'| {num(r["examples_per_second"])} | {num(r.get("tokens_per_second"), 0)} '
      f'| {num(r["compile_seconds"])} | {num(r["program_memory_mb"])} '
      f'| {rate} | {mfu} |'
    )
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    prog='python -m nkjax.bench', description=__doc__.split('\n')[0]
  )
  parser.add_argument(
    'names',
    nargs='*',
    help=f'benchmarks: {", ".join(BENCHMARKS)} (with --suite: only these of it)',
  )
  parser.add_argument(
    '--suite',
    default=None,
    help='run a suite: accelerator (on a CPU, a reduced one); prints a table',
  )
  parser.add_argument(
    '--batch-size',
    type=int,
    default=None,
    help='global batch size (default: per benchmark or suite entry)',
  )
  parser.add_argument(
    '--steps', type=int, default=None, help='compiled calls per timed run (default 10)'
  )
  parser.add_argument(
    '--repeats', type=int, default=None, help='timed runs; the median is reported'
  )
  parser.add_argument(
    '--dtype',
    default='float32',
    help='float32, or bfloat16 compute with float32 parameters',
  )
  parser.add_argument(
    '--steps-per-call', type=int, default=1, help='train steps per compiled call'
  )
  parser.add_argument(
    '--peak-tflops',
    type=float,
    default=None,
    help="one device's peak TFLOP/s, for MFU on a device the table lacks",
  )
  parser.add_argument(
    '--profile',
    action='store_true',
    help="per-op time tables of the step (nkjax.profile); with --torch, PyTorch's too",
  )
  parser.add_argument(
    '--torch',
    action='store_true',
    help='also time the eager PyTorch equivalent (needs torch)',
  )
  args = parser.parse_args(argv)
  launch.use_all_cpu_cores()
  from nkjax.errors import UserError, choose

  try:
    if args.suite is not None:
      import jax

      platform = jax.default_backend()
      entries = suite_entries(args.suite, platform)
      for name in args.names:
        choose('benchmark of the suite', name, [e.name for e in entries])
      entries = [e for e in entries if not args.names or e.name in args.names]
      # A CPU run is kept short: fewer calls, fewer repeats.
      steps, repeats = (2, 3) if platform == 'cpu' else (10, 5)
      timing = {
        'steps': args.steps or steps,
        'repeats': args.repeats or repeats,
        'warmup': 1 if platform == 'cpu' else 3,
      }
      runs = [
        dict(
          name=e.name,
          batch_size=args.batch_size or e.batch_size,
          dtype=e.dtype,
          steps_per_call=e.steps_per_call,
          image_size=e.image_size,
        )
        for e in entries
      ]
    else:
      if not args.names:
        raise UserError(
          'name a benchmark or a --suite; benchmarks: ' + ', '.join(BENCHMARKS)
        )
      timing = {'steps': args.steps or 10, 'repeats': args.repeats or 5}
      runs = [
        dict(
          name=name,
          batch_size=args.batch_size,
          dtype=args.dtype,
          steps_per_call=args.steps_per_call,
        )
        for name in args.names
      ]
    if args.profile:
      for r in runs:
        batch_size = r['batch_size'] or BENCHMARKS[r['name']].batch_size
        result = profile(
          r['name'], batch_size=batch_size, **timing, with_torch=args.torch
        )
        print(format_profile(r['name'], batch_size, result), flush=True)
      return
    rows = []
    for r in runs:
      rows.append(run(**r, **timing, peak_tflops=args.peak_tflops))
      print(json.dumps(rows[-1]), flush=True)
      if args.torch and (
        args.suite is None or BENCHMARKS[r['name']].torch_model is not None
      ):
        print(
          json.dumps(run_torch(r['name'], batch_size=r['batch_size'], **timing)),
          flush=True,
        )
    if args.suite is not None:
      r = rows[0]
      print(
        f'\n{r["framework"]} on {r["devices"]} x {r["device_kind"]} ({r["platform"]}), '
        f'{time.strftime("%Y-%m-%d")}\n{format_table(rows)}',
        flush=True,
      )
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  main()
