"""JAX against eager PyTorch: the same train step, timed interleaved in one run.

`python -m nkjax.bench NAMES --torch` prints `header_lines` (the machine, the
versions, the commit, the load average), one JSON row per benchmark from
`compare`, then `format_compare`'s table and the load average after.
"""

import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable

from nkjax import launch
from nkjax.bench.measure import _random_batch, _setup, run
from nkjax.bench.registry import BENCHMARKS


def torch_steps(name: str, batch_size: int) -> Callable[[int], None]:
  """`run_steps(n)`: n train steps of benchmark `name`'s eager PyTorch equivalent
  (`Benchmark.torch_step`) on the CPU, a thread per core this process may use,
  on a host batch of the same shapes as the JAX step's."""
  import torch

  from nkjax.errors import UserError

  bench = BENCHMARKS[name]
  if bench.torch_step is None:
    with_torch = ', '.join(n for n, b in BENCHMARKS.items() if b.torch_step)
    raise UserError(
      f'benchmark {name} has no PyTorch equivalent; those with one: {with_torch}'
    )
  torch.set_num_threads(launch.cpu_cores())
  torch.manual_seed(0)
  if bench.setup is None:
    batch = _random_batch(bench, batch_size)
  else:
    batch = _setup(name, batch_size=batch_size, dtype='float32', image_size=None)[2]
  step = bench.torch_step(batch)

  def run_steps(n):
    for _ in range(n):
      step()

  return run_steps


def _git_commit() -> str:
  here = os.path.dirname(os.path.abspath(__file__))

  def git(*args):
    return subprocess.run(
      ['git', *args], cwd=here, capture_output=True, text=True, check=False
    ).stdout.strip()

  commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
  # Tracked files only: a figure from a modified tree says so.
  return commit + (' (modified)' if git('status', '--porcelain', '-uno') else '')


def _cpu_model(cpuinfo: str) -> str:
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _version(package: str) -> str:
  from importlib import metadata

  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return 'not installed'


CPUINFO = '/proc/cpuinfo'


def load_average() -> list[float]:
  """The machine's 1, 5 and 15-minute load averages."""
  return [round(x, 2) for x in os.getloadavg()]


def environment() -> dict:
  """What a timing depends on, read before it: the CPU model (`CPUINFO`'s first
  `model name`), the machine's cores and those this process may use, the
  versions of Python, jax, jaxlib and torch, the UTC date, the git commit of
  this checkout and the 1, 5 and 15-minute load averages."""
  return {
    'cpu': _cpu_model(CPUINFO),
    'cores': os.cpu_count(),
    'cores_used': launch.cpu_cores(),
    'versions': {
      'python': platform.python_version(),
      **{p: _version(p) for p in ('jax', 'jaxlib', 'torch')},
    },
    'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC'),
    'commit': _git_commit(),
    'load_before': load_average(),
  }


def header_lines(env: dict) -> list[str]:
  """`environment(...)` as the lines printed before a comparison."""
  return [
    f'# cpu: {env["cpu"]}, {env["cores"]} cores ({env["cores_used"]} used)',
    '# ' + ', '.join(f'{p} {v}' for p, v in env['versions'].items()),
    f'# date: {env["date"]}, commit {env["commit"]}',
    '# loadavg before (1, 5, 15 min): ' + ' '.join(str(x) for x in env['load_before']),
  ]


def compare(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
  **run_kwargs,
) -> dict:
  """Benchmark `name`'s JAX step (`measure.run`) and its eager PyTorch
  equivalent (`torch_steps`), timed interleaved: both warmed up, then per
  repeat one run of `steps` steps of JAX, then one of PyTorch.

  Returns:
    `run`'s figures plus `torch_step_ms_median`, `jax_over_torch` (the median
    of the per-repeat ratios of JAX's time to PyTorch's) and
    `jax_over_torch_min_max`, and `torch_framework`, `torch_threads`.
  """
  batch_size = batch_size or BENCHMARKS[name].batch_size
  torch_run = torch_steps(name, batch_size)
  row = run(
    name,
    batch_size=batch_size,
    steps=steps,
    repeats=repeats,
    warmup=warmup,
    beside=torch_run,
    **run_kwargs,
  )
  jax_s, torch_s = row.pop('run_seconds'), row.pop('beside_run_seconds')
  steps_per_run = steps * row['steps_per_call']
  ratios = [j / t for j, t in zip(jax_s, torch_s, strict=True)]
  return {
    **row,
    'torch_framework': f'torch {_version("torch")} eager',
    'torch_threads': launch.cpu_cores(),  # torch_steps' setting
    'torch_step_ms_median': round(1e3 * statistics.median(torch_s) / steps_per_run, 3),
    'jax_over_torch': round(statistics.median(ratios), 3),
    'jax_over_torch_min_max': [round(min(ratios), 3), round(max(ratios), 3)],
  }


def format_compare(rows: list[dict]) -> str:
  """Rows of `compare` as a markdown table: ms a step, and JAX's time over
  PyTorch's (the median of the repeats' ratios, their min-max)."""
  lines = [
    '| benchmark (batch) | jax ms/step | PyTorch ms/step | jax / PyTorch (min-max) |',
    '| --- | ---: | ---: | ---: |',
  ]
  for r in rows:
    lo, hi = r['jax_over_torch_min_max']
    lines.append(
      f'| {r["benchmark"]} ({r["batch_size"]}) | {r["step_ms_median"]:.1f} '
      f'| {r["torch_step_ms_median"]:.1f} | {r["jax_over_torch"]:.2f} ({lo:.2f}-{hi:.2f}) |'
    )
  return '\n'.join(lines)
