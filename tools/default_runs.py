"""Each chapter's default command, timed as a user waits for it.

    python tools/default_runs.py [CHAPTER ...] [--preset NAME] [--warm] [--out FILE]

Runs `python experiments/<chapter>.py --workdir=<a temporary folder>` for each
chapter (default: cnn sr detection rnn gan), one after another, each a process
of its own: JAX's start, compilation, training, evaluation and pictures, as a
user runs it. Prints the machine header of `python -m nkjax.bench --torch` (CPU,
cores, versions, date, commit, load average), then a markdown table: the
chapter, the whole process's seconds, the run's own training seconds and its
headline figures (the lines `nkjax.launch` closes a run with), and the
1-minute load average after the run. `--out` also writes the rows as JSON.
`--preset` runs that preset of each chapter instead of its default.

Each row starts with an empty compilation cache of its own (the launcher keeps
compiled programs across runs, `nkjax.launch.use_compilation_cache`): a first
run on a fresh machine. `--warm` runs each chapter once untimed to fill its
cache, then times a second run: what a rerun at the same shapes costs.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nkjax import launch  # noqa: E402
from nkjax.bench import pytorch  # noqa: E402

CHAPTERS = ('cnn', 'sr', 'detection', 'rnn', 'gan')


def run_one(
  chapter: str, workdir: str, preset: str | None = None, *, cache_dir: str = ''
) -> dict:
  """`experiments/<chapter>.py` in a process of its own, compiled programs
  kept in `cache_dir` ('': none kept): its wall seconds, its summary's
  training seconds and headline lines."""
  script = os.path.join(ROOT, 'experiments', f'{chapter}.py')
  if not os.path.exists(script):
    names = sorted(
      f[:-3] for f in os.listdir(os.path.dirname(script)) if f.endswith('.py')
    )
    raise SystemExit(
      f'error: no experiment {chapter!r}; valid choices: {", ".join(names)}'
    )
  relative = f'experiments/{chapter}.py'
  command = [sys.executable, relative, f'--workdir={os.path.abspath(workdir)}']
  if preset:
    command.append(f'--config={relative}:{preset}')
  env = dict(
    os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])
  )
  env[launch.CACHE_DIR_VARIABLE] = cache_dir
  start = time.perf_counter()
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    raise SystemExit(f'error: {chapter} failed:\n{done.stderr[-3000:]}')
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  lines = launch.closing_lines(workdir)[1:]  # less the folder listing
  return {
    'chapter': chapter,
    'command': ' '.join(['python', *command[1:]]),
    'seconds': round(seconds, 1),
    'train_seconds': summary.get('wall_seconds'),
    'figures': [line for line in lines if not line.startswith('curves:')],
    'load_after': pytorch.load_average()[0],
  }


def table(rows: list[dict]) -> str:
  out = [
    '| chapter | whole process (s) | its training (s) | figures | load after |',
    '| --- | ---: | ---: | --- | ---: |',
  ]
  for r in rows:
    train = '' if r['train_seconds'] is None else f'{r["train_seconds"]:.1f}'
    out.append(
      f'| {r["chapter"]} | {r["seconds"]:.1f} | {train} | '
      f'{"; ".join(r["figures"])} | {r["load_after"]} |'
    )
  return '\n'.join(out)


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('chapters', nargs='*', default=list(CHAPTERS))
  parser.add_argument('--preset', default=None)
  parser.add_argument('--warm', action='store_true')
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)
  print('\n'.join(pytorch.header_lines(pytorch.environment())), flush=True)
  print(f'# compilation cache: {"warm" if args.warm else "cold"}', flush=True)
  rows = []
  with tempfile.TemporaryDirectory(prefix='nkjax-default-runs-') as tmp:
    for chapter in args.chapters:
      # Folders a row: a chapter named twice is run twice, not resumed.
      row = os.path.join(tmp, f'{len(rows)}-{chapter}')
      cache = os.path.join(row, 'xla-cache')
      if args.warm:
        run_one(chapter, os.path.join(row, 'first'), args.preset, cache_dir=cache)
      rows.append(
        run_one(chapter, os.path.join(row, 'run'), args.preset, cache_dir=cache)
      )
      print(f'{chapter}: {rows[-1]["seconds"]:.1f} s', flush=True)
  print(table(rows), flush=True)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)
  return rows


if __name__ == '__main__':
  main()
