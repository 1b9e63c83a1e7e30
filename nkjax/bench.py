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
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable

from nkjax import launch


def _mlp(batch_size: int):
  import jax
  import jax.numpy as jnp

  from nkjax.models.mlp import MLP
  from nkjax.train import optim, steps
  from nkjax.train import state as state_lib

  # The default experiment's model on 28x28 inputs (MNIST-sized).
  model = MLP(hidden=(256, 256), num_outputs=10, dropout_rate=0.1)
  batch = {
    'image': jax.random.uniform(jax.random.key(1), (batch_size, 28, 28, 1)),
    'label': jax.random.randint(jax.random.key(2), (batch_size,), 0, 10),
  }
  tx = optim.make_optimizer(name='adam', learning_rate=1e-3)
  state = state_lib.create(
    model=model, tx=tx, rng=jax.random.key(0), inputs=jnp.zeros((1, 28, 28, 1))
  )
  return state, steps.classifier_train_step, batch


# name -> (default batch size, batch_size -> (state, train_step, batch))
BENCHMARKS: dict[str, tuple[int, Callable]] = {
  'mlp': (256, _mlp),
}


def _peak_memory_bytes(devices) -> tuple[int, str]:
  stats = [d.memory_stats() for d in devices]
  if all(s and 'peak_bytes_in_use' in s for s in stats):
    return max(
      s['peak_bytes_in_use'] for s in stats
    ), 'device peak bytes in use (max over devices)'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'host peak RSS'


def run(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
) -> dict:
  """Measures one benchmark; returns its figures as a dict."""
  import jax

  from nkjax.errors import choose
  from nkjax.train import loop, sharding

  choose('benchmark', name, BENCHMARKS)
  default_batch, build = BENCHMARKS[name]
  batch_size = batch_size or default_batch
  mesh = sharding.data_mesh()
  sharding.check_batch_size(batch_size, mesh)
  state, train_step, batch = build(batch_size)
  state = sharding.replicate(state, mesh)
  batch = sharding.shard_batch(jax.device_get(batch), mesh)
  rng = sharding.replicate(jax.random.key(0), mesh)

  t0 = time.perf_counter()
  compiled = loop.jit_train_step(train_step, mesh).lower(state, batch, rng).compile()
  compile_seconds = time.perf_counter() - t0

  def run_steps(state, n):
    for _ in range(n):
      state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))
    return state

  state = run_steps(state, warmup)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state = run_steps(state, steps)
    times.append(time.perf_counter() - t0)
  median = statistics.median(times)
  memory, memory_kind = _peak_memory_bytes(mesh.devices.flat)
  return {
    'benchmark': name,
    'batch_size': batch_size,
    'platform': jax.default_backend(),
    'devices': int(mesh.devices.size),
    'device_kind': jax.devices()[0].device_kind,
    'compile_seconds': round(compile_seconds, 3),
    'step_ms_median': round(1e3 * median / steps, 3),
    'examples_per_second': round(steps * batch_size / median, 1),
    'examples_per_second_min_max': [
      round(steps * batch_size / t, 1) for t in (max(times), min(times))
    ],
    'peak_memory_mb': round(memory / 2**20, 1),
    'peak_memory_kind': memory_kind,
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
  args = parser.parse_args(argv)
  launch.use_all_cpu_cores()
  from nkjax.errors import UserError

  for name in args.names:
    try:
      figures = run(
        name, batch_size=args.batch_size, steps=args.steps, repeats=args.repeats
      )
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)
    print(json.dumps(figures))


if __name__ == '__main__':
  main()
