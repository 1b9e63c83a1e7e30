"""Per-op time tables of a benchmark's step (`nkjax.profile`), and PyTorch's."""

import statistics

from nkjax.bench.measure import _mesh, _prepare, time_runs
from nkjax.bench.pytorch import torch_steps
from nkjax.bench.registry import BENCHMARKS


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
  # With PyTorch, the untraced step times are taken interleaved, as `--torch`'s.
  runs = (run_steps,)
  if with_torch:
    run_torch_steps = torch_steps(name, batch_size)
    runs += (run_torch_steps,)
  seconds = time_runs(*runs, **timing)
  step_ms = 1e3 * statistics.median(seconds[0]) / steps
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

    torch_ms = 1e3 * statistics.median(seconds[1]) / steps
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
