"""Train-step benchmarks: examples/s, compile time and peak memory.

  python -m nkjax.bench mlp
  python -m nkjax.bench mlp --batch-size 1024 --repeats 10

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
  'mlp': Benchmark(_mlp, (28, 28, 1), 10, 256, _torch('mlp')),
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
  'lstm_lm': Benchmark(_lstm_lm, (128,), 100, 64, seq_len=128),
  # A DCGAN round (k = 1) on 32x32x3 images; examples/s counts real images.
  'dcgan': Benchmark(None, (32, 32, 3), 0, 128, setup=_dcgan_round),
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


def _peak_memory_bytes(devices) -> tuple[int, str]:
  stats = [d.memory_stats() for d in devices]
  if all(s and 'peak_bytes_in_use' in s for s in stats):
    return max(
      s['peak_bytes_in_use'] for s in stats
    ), 'device peak bytes in use (max over devices)'
  return resource.getrusage(
    resource.RUSAGE_SELF
  ).ru_maxrss * 1024, 'host peak RSS (whole process)'


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


def _random_batch(bench: Benchmark, batch_size: int) -> dict:
  import numpy as np

  if bench.seq_len:
    return {
      'tokens': np.random.default_rng(1)
      .integers(0, bench.num_classes, (batch_size, bench.seq_len + 1))
      .astype(np.int32)
    }
  return {
    'image': np.random.default_rng(1)
    .uniform(size=(batch_size, *bench.input_shape))
    .astype(np.float32),
    'label': np.random.default_rng(2)
    .integers(0, bench.num_classes, batch_size)
    .astype(np.int32),
  }


def run(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
  dtype: str = 'float32',
) -> dict:
  """Measures one benchmark's jitted, data-parallel train step (Adam); returns its figures."""
  import jax
  import jax.numpy as jnp

  from nkjax.errors import UserError, choose
  from nkjax.train import loop, optim, sharding
  from nkjax.train import state as state_lib
  from nkjax.train import steps as steps_lib

  choose('benchmark', name, BENCHMARKS)
  choose('dtype', dtype, ('float32', 'bfloat16'))
  bench = BENCHMARKS[name]
  batch_size = batch_size or bench.batch_size
  mesh = sharding.data_mesh()
  sharding.check_batch_size(batch_size, mesh)
  if bench.setup is not None:
    if dtype != 'float32':
      raise UserError(f'benchmark {name} has no bfloat16 variant')
    state, train_step, host_batch = bench.setup(batch_size)
  else:
    model = bench.model()
    if dtype == 'bfloat16':
      if not hasattr(model, 'dtype'):
        raise UserError(
          f'benchmark {name} has no bfloat16 variant; those with one: lenet5, vgg11, resnet20, resnet50'
        )
      model = model.clone(dtype=jnp.bfloat16)
    tx = optim.make_optimizer(name='adam', learning_rate=1e-3)
    example = jnp.zeros(
      (1, *bench.input_shape), jnp.int32 if bench.seq_len else jnp.float32
    )
    state = state_lib.create(
      model=model, tx=tx, rng=jax.random.key(0), inputs=(example,)
    )
    train_step = (
      steps_lib.lm_train_step if bench.seq_len else steps_lib.classifier_train_step
    )
    host_batch = _random_batch(bench, batch_size)
  state = sharding.replicate(state, mesh)
  batch = sharding.shard_batch(host_batch, mesh)
  rng = sharding.replicate(jax.random.key(0), mesh)

  t0 = time.perf_counter()
  compiled = loop.jit_train_step(train_step, mesh).lower(state, batch, rng).compile()
  compile_seconds = time.perf_counter() - t0

  def run_steps(n):
    nonlocal state
    for _ in range(n):
      state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))

  times = _time(run_steps, steps=steps, repeats=repeats, warmup=warmup)
  memory, memory_kind = _peak_memory_bytes(mesh.devices.flat)
  return {
    'benchmark': name,
    'framework': f'jax {jax.__version__}',
    'batch_size': batch_size,
    'dtype': dtype,
    'platform': jax.default_backend(),
    'devices': int(mesh.devices.size),
    'device_kind': jax.devices()[0].device_kind,
    'compile_seconds': round(compile_seconds, 3),
    **_throughput(times, steps, batch_size, bench.seq_len),
    'peak_memory_mb': round(memory / 2**20, 1),
    'peak_memory_kind': memory_kind,
    'timing': f'median of {repeats} runs of {steps} steps after {warmup} warm-up steps',
  }


def run_torch(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
) -> dict:
  """The same step in eager PyTorch on the CPU (all cores), for comparison."""
  import os

  import torch

  from nkjax.errors import UserError

  bench = BENCHMARKS[name]
  if bench.torch_model is None:
    raise UserError(
      f'benchmark {name} has no PyTorch equivalent; those with one: {", ".join(n for n, b in BENCHMARKS.items() if b.torch_model)}'
    )
  batch_size = batch_size or bench.batch_size
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  model = bench.torch_model()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  data = _random_batch(bench, batch_size)
  x = (
    torch.from_numpy(data['image']).permute(0, 3, 1, 2).contiguous()
  )  # NCHW, PyTorch's fast layout
  y = torch.from_numpy(data['label']).long()

  def run_steps(n):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      torch.nn.functional.cross_entropy(model(x), y).backward()
      opt.step()

  times = _time(run_steps, steps=steps, repeats=repeats, warmup=warmup)
  return {
    'benchmark': name,
    'framework': f'torch {torch.__version__} eager',
    'batch_size': batch_size,
    'threads': torch.get_num_threads(),
    **_throughput(times, steps, batch_size),
    'timing': f'median of {repeats} runs of {steps} steps after {warmup} warm-up steps',
  }


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    prog='python -m nkjax.bench', description=__doc__.split('\n')[0]
  )
  parser.add_argument('names', nargs='+', help=f'benchmarks: {", ".join(BENCHMARKS)}')
  parser.add_argument(
    '--batch-size',
    type=int,
    default=None,
    help='global batch size (default: per benchmark)',
  )
  parser.add_argument('--steps', type=int, default=10, help='steps per timed run')
  parser.add_argument(
    '--repeats', type=int, default=5, help='timed runs; the median is reported'
  )
  parser.add_argument(
    '--dtype',
    default='float32',
    help='float32, or bfloat16 compute with float32 parameters',
  )
  parser.add_argument(
    '--torch',
    action='store_true',
    help='also time the eager PyTorch equivalent (needs torch)',
  )
  args = parser.parse_args(argv)
  launch.use_all_cpu_cores()
  from nkjax.errors import UserError

  timing = {'batch_size': args.batch_size, 'steps': args.steps, 'repeats': args.repeats}
  for name in args.names:
    try:
      print(json.dumps(run(name, dtype=args.dtype, **timing)), flush=True)
      if args.torch:
        print(json.dumps(run_torch(name, **timing)), flush=True)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)


if __name__ == '__main__':
  main()
