"""Train-step benchmarks: examples/s, compile time, memory, FLOP/s and MFU.

  python -m nkjax.bench mlp
  python -m nkjax.bench mlp --batch-size 1024 --repeats 10
  python -m nkjax.bench --suite accelerator     # every model, sized for the device
  python -m nkjax.bench lenet5 dcgan --torch    # JAX and PyTorch interleaved, a header

FLOPs per step are XLA's cost analysis of the compiled step (its count of the
multiply-adds and elementwise ops, 2 per multiply-add), over every device; MFU
divides FLOP/s by the devices' dense peak for the compute dtype (`PEAKS`), and
is left out for a device the table does not know (or pass --peak-tflops).

Each figure is the median of `--repeats` timed runs of `--steps` steps, after
a warm-up, on a data-parallel mesh over every device (on a CPU, one fake
device per core, as the experiments use). Peak memory is the accelerator's peak
bytes in use; on a CPU it is the process's peak resident memory, which includes
the Python runtime.

The package, one idea a module: `registry` (the benchmarks), `measure` (timing
a step, its FLOPs, memory, MFU), `pytorch` (JAX against the eager PyTorch
equivalents, timed interleaved), `profiling` (per-op tables), `suites` and
`cli` (`python -m nkjax.bench`).
"""

from nkjax.bench.cli import main
from nkjax.bench.measure import (
  PEAKS,
  _prepare,
  _setup,
  compiled_flops,
  peak_flops,
  run,
  several_steps,
  step_flops,
  time_parts,
  time_runs,
)
from nkjax.bench.profiling import format_profile, profile
from nkjax.bench.pytorch import (
  compare,
  environment,
  format_compare,
  header_lines,
  torch_steps,
)
from nkjax.bench.registry import BENCHMARKS, Benchmark
from nkjax.bench.suites import (
  ACCELERATOR_SUITE,
  CPU_SUITE,
  SUITES,
  SuiteEntry,
  format_table,
  suite_entries,
)

__all__ = [
  'ACCELERATOR_SUITE',
  'BENCHMARKS',
  'CPU_SUITE',
  'PEAKS',
  'SUITES',
  'Benchmark',
  'SuiteEntry',
  '_prepare',
  '_setup',
  'compare',
  'compiled_flops',
  'environment',
  'format_compare',
  'format_profile',
  'header_lines',
  'format_table',
  'main',
  'peak_flops',
  'profile',
  'run',
  'several_steps',
  'step_flops',
  'suite_entries',
  'time_parts',
  'time_runs',
  'torch_steps',
]
