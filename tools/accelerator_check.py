"""The device check: what an accelerator run needs, in one call of under 8 minutes.

    python tools/accelerator_check.py OUT_DIR [--reduced]

Runs, each in its own process (a fresh backend and XLA_FLAGS each time):

1. `python -m nkjax.bench --suite accelerator`: examples/s, compile time,
   memory and MFU against the card's peak (nkjax.bench.PEAKS names the
   variant: H100 SXM 989 bf16 TFLOP/s dense, PCIe 756), ResNet-50 bf16 at
   batch 256 first;
2. the SR and detection train steps (`srresnet`, `faster_rcnn`), the detection
   step timed with and without `--xla_gpu_deterministic_ops` (the cost of the
   launcher's deterministic default on a GPU);
3. a kill -9 resume: a short run killed mid-way and resumed against the same
   run uninterrupted, final states compared bitwise.

Writes OUT_DIR/accelerator_check.json and OUT_DIR/accelerator_check.md (one
table). `--reduced` (the default on a CPU) runs small sizes, for testing the
script itself: the benchmarks at batch 2, one timed call, no ResNet-50.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETERMINISTIC = '--xla_gpu_deterministic_ops'


def _env(xla_flags: str | None = None) -> dict:
  env = dict(
    os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])
  )
  if xla_flags is not None:
    env['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {xla_flags}'.strip()
  return env


def _bench(
  args: list[str], *, xla_flags: str | None = None, timeout: float
) -> list[dict]:
  """The JSON rows that `python -m nkjax.bench ARGS` prints."""
  cmd = [sys.executable, '-m', 'nkjax.bench', *args]
  out = subprocess.run(
    cmd, cwd=ROOT, env=_env(xla_flags), capture_output=True, text=True, timeout=timeout
  )
  if out.returncode:
    return [
      {'command': ' '.join(cmd[1:]), 'error': out.stderr.strip().splitlines()[-1:]}
    ]
  rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
  for r in rows:
    r['command'] = ' '.join(cmd[2:]) + (
      f' (XLA_FLAGS+={xla_flags})' if xla_flags else ''
    )
  return rows


def _platform() -> str:
  out = subprocess.run(
    [sys.executable, '-c', 'import jax; print(jax.default_backend())'],
    cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  return out.stdout.strip() or 'unknown'


def _resume_bitwise(tmp: str, *, num_steps: int, kill_at: int) -> dict:
  """tests.train.killable: an uninterrupted run against one killed with
  SIGKILL before step `kill_at` and rerun in the same workdir."""
  import numpy as np

  def killable(workdir, kill, out):
    cmd = [sys.executable, '-m', 'tests.train.killable', 'mlp', workdir,
           str(num_steps), str(kill), out]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, timeout=300)

  whole, resumed = os.path.join(tmp, 'whole.npz'), os.path.join(tmp, 'resumed.npz')
  killable(os.path.join(tmp, 'a'), 0, whole)
  first = killable(os.path.join(tmp, 'b'), kill_at, resumed)
  killable(os.path.join(tmp, 'b'), 0, resumed)
  a, b = np.load(whole), np.load(resumed)
  equal = sorted(a.files) == sorted(b.files) and all(
    np.array_equal(a[k], b[k]) for k in a.files
  )
  return {
    'name': 'kill -9 resume (mlp)',
    'killed': first.returncode == -9,
    'steps': num_steps,
    'kill_at': kill_at,
    'bitwise_equal': bool(equal),
  }


def passed(resume: dict) -> bool:
  """Whether the resume row shows a run really killed and resumed bitwise."""
  return resume['killed'] and resume['bitwise_equal']


def table(rows: list[dict]) -> str:
  head = '| check | batch | dtype | examples/s | compile s | memory MiB | MFU | note |'
  lines = [head, '|' + '---|' * 8]
  for r in rows:
    if 'bitwise_equal' in r:
      note = (
        f'killed at {r["kill_at"]} of {r["steps"]}: '
        + ('bitwise equal' if r['bitwise_equal'] else 'DIFFERS')
        if r['killed']
        else 'the run was not killed: no resume tested'
      )
      lines.append(f'| {r["name"]} | | | | | | | {note} |')
      continue
    if 'error' in r:
      lines.append(f'| {r["command"]} | | | | | | | error: {" ".join(r["error"])} |')
      continue
    mem = r.get('peak_memory_mb')
    mfu = r.get('mfu')
    note = ', '.join(x for x in (r.get('device_kind'), r.get('note')) if x)
    lines.append(
      f'| {r.get("benchmark")} | {r.get("batch_size", "")} | {r.get("dtype", "")} '
      f'| {r.get("examples_per_second", "")} | {r.get("compile_seconds", "")} '
      f'| {mem if mem is not None else ""} | {f"{100 * mfu:.1f}%" if mfu else ""} '
      f'| {note} |'
    )
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('out_dir')
  parser.add_argument('--reduced', action='store_true', default=None)
  args = parser.parse_args(argv)
  os.makedirs(args.out_dir, exist_ok=True)
  t0 = time.time()
  platform = _platform()
  reduced = args.reduced if args.reduced is not None else platform == 'cpu'
  small = ['--batch-size', '2', '--steps', '1', '--repeats', '1'] if reduced else []
  rows = []
  if reduced:
    rows += _bench(['--suite', 'accelerator', 'mlp', 'lenet5', *small], timeout=300)
  else:
    rows += _bench(['--suite', 'accelerator'], timeout=300)
  for deterministic in (True, False):
    flags = f'{DETERMINISTIC}={str(deterministic).lower()}'
    extra = [] if not deterministic else ['srresnet']
    for r in _bench(['faster_rcnn', *extra, *small], xla_flags=flags, timeout=200):
      r['note'] = f'deterministic ops {"on" if deterministic else "off"}'
      rows.append(r)
  with tempfile.TemporaryDirectory() as tmp:
    rows.append(
      _resume_bitwise(
        tmp, num_steps=12 if reduced else 30, kill_at=8 if reduced else 18
      )
    )
  result = {
    'platform': platform,
    'reduced': reduced,
    'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
    'wall_seconds': round(time.time() - t0, 1),
    'rows': rows,
  }
  with open(os.path.join(args.out_dir, 'accelerator_check.json'), 'w') as f:
    json.dump(result, f, indent=1)
  title = (
    f'Device check on {platform}{" (reduced sizes)" if reduced else ""}, '
    f'{result["date"]}, {result["wall_seconds"]} s'
  )
  with open(os.path.join(args.out_dir, 'accelerator_check.md'), 'w') as f:
    f.write(f'{title}\n\n{table(rows)}\n')
  print(f'{title}\n\n{table(rows)}')
  ok = all('error' not in r for r in rows) and passed(rows[-1])
  return 0 if ok else 1


if __name__ == '__main__':
  sys.exit(main())
