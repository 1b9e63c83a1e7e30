"""`python -m nkjax.bench`: the command line."""

import argparse
import json
import sys
import time

from nkjax import launch
from nkjax.bench.measure import run
from nkjax.bench.profiling import format_profile, profile
from nkjax.bench.pytorch import (
  compare,
  environment,
  format_compare,
  header_lines,
  load_average,
)
from nkjax.bench.registry import BENCHMARKS
from nkjax.bench.suites import format_table, suite_entries


def main(argv: list[str] | None = None) -> None:
  import nkjax.bench as package

  parser = argparse.ArgumentParser(
    prog='python -m nkjax.bench', description=package.__doc__.split('\n')[0]
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
    help='time the eager PyTorch equivalent interleaved with the JAX step, '
    'after a header of the machine, versions, commit and load (needs torch)',
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
    if args.torch:
      with_torch = [n for n, b in BENCHMARKS.items() if b.torch_step is not None]
      for r in runs if args.suite is None else ():
        choose('benchmark with a PyTorch equivalent', r['name'], with_torch)
      print('\n'.join(header_lines(environment())), flush=True)
    rows, compared = [], []
    for r in runs:
      if args.torch and BENCHMARKS[r['name']].torch_step is not None:
        rows.append(compare(**r, **timing, peak_tflops=args.peak_tflops))
        compared.append(rows[-1])
      else:
        rows.append(run(**r, **timing, peak_tflops=args.peak_tflops))
      print(json.dumps(rows[-1]), flush=True)
    if args.suite is not None:
      r = rows[0]
      print(
        f'\n{r["framework"]} on {r["devices"]} x {r["device_kind"]} ({r["platform"]}), '
        f'{time.strftime("%Y-%m-%d")}\n{format_table(rows)}',
        flush=True,
      )
    if compared:
      r = compared[0]
      print(
        f'\n{r["framework"]} ({r["devices"]} x {r["device_kind"]}) against '
        f'{r["torch_framework"]} ({r["torch_threads"]} threads), interleaved, '
        f'{r["timing"]}\n{format_compare(compared)}\n'
        '# loadavg after (1, 5, 15 min): ' + ' '.join(map(str, load_average())),
        flush=True,
      )
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
