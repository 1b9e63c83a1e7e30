"""Where metrics go: the console, TensorBoard, `metrics.jsonl` and `summary.json`.

Only process 0 writes files; every process may log to its console.
"""

import json
import math
import os
import sys
import time
from collections.abc import Mapping

import tqdm
from absl import logging


def _summary_writer(logdir: str, **kwargs):
  """tensorboardX's SummaryWriter, imported without PyTorch where PyTorch is
  installed but not yet imported: tensorboardX imports it only to accept torch
  tensors, which nkjax never passes, and that import alone took 1.4 s of an
  experiment's start-up (`python -X importtime`)."""
  if 'torch' in sys.modules:
    from tensorboardX import SummaryWriter
  else:
    sys.modules['torch'] = None  # `import torch` raises ImportError meanwhile
    try:
      from tensorboardX import SummaryWriter
    finally:
      del sys.modules['torch']
  return SummaryWriter(logdir, **kwargs)


def _fmt(scalars: Mapping[str, float]) -> str:
  return ', '.join(f'{k}={v:.4g}' for k, v in scalars.items())


class MetricWriter:
  """Writes scalars at a step to the console, TensorBoard and `metrics.jsonl`.

  Args:
    workdir: the run's folder; TensorBoard event files go to `workdir/tensorboard`.
    write_files: False on every process but the first of a multi-host run.
    console: a callable that prints one line (the progress bar's, so that lines
      and bar do not garble each other).
    resume_step: the step the run resumes from. Rows logged after it by a run
      that was killed before its next checkpoint are dropped from
      `metrics.jsonl` and purged from TensorBoard, so each step appears once.
  """

  def __init__(
    self,
    workdir: str,
    *,
    write_files: bool = True,
    console=logging.info,
    resume_step: int = 0,
  ):
    self.workdir = workdir
    self._console = console
    self._tb = None
    self._jsonl = None
    if write_files:
      os.makedirs(workdir, exist_ok=True)
      drop_rows_after(workdir, resume_step)
      self._tb = _summary_writer(
        os.path.join(workdir, 'tensorboard'), purge_step=resume_step + 1
      )
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    self._console(f'step {step}: {_fmt(scalars)}')
    if self._jsonl is None:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
    self._jsonl.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._tb.close()
      self._jsonl.close()


def strict_json(value):
  """`value` with every non-finite float replaced by None, so that it is strict
  JSON (`NaN` and `Infinity` are not JSON; `null` says the figure does not exist).
  Tuples become lists and numpy scalars Python numbers."""
  if isinstance(value, Mapping):
    return {str(k): strict_json(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [strict_json(v) for v in value]
  if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:
    value = value.item()  # a numpy or JAX scalar
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_summary(workdir: str, summary: Mapping) -> str:
  """Writes `summary.json` atomically (write a temporary file, then rename), as
  strict JSON: a non-finite figure is written as `null`."""
  path = os.path.join(workdir, 'summary.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(
      strict_json(summary), f, indent=2, sort_keys=True, default=str, allow_nan=False
    )
  os.replace(tmp, path)
  return path


def drop_rows_after(workdir: str, step: int) -> int:
  """Drops the rows of `metrics.jsonl` logged after `step` (and a torn last line
  from a kill mid-write); returns how many were dropped."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if row.get('step', 0) <= step:
      kept.append(line if line.endswith('\n') else line + '\n')
  if len(kept) != len(lines) or any(not ln.endswith('\n') for ln in lines):
    with open(path + '.tmp', 'w') as f:
      f.writelines(kept)
    os.replace(path + '.tmp', path)
  return len(lines) - len(kept)


def read_metrics(workdir: str) -> list[dict]:
  """The rows of `metrics.jsonl`, in order; empty if there is none."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """A bar with rate and ETA on a terminal; otherwise plain periodic lines.

  `update(step)` moves the bar; `log(line)` prints a line above the bar, or a
  plain log line (with steps/s and ETA) when stderr is not a terminal.
  """

  def __init__(self, *, total: int, initial: int, enabled: bool = True, stream=None):
    stream = sys.stderr if stream is None else stream
    self._stream = stream
    self._tty = enabled and stream.isatty()
    self._bar = (
      tqdm.tqdm(
        total=total, initial=initial, unit='step', dynamic_ncols=True, file=stream
      )
      if self._tty
      else None
    )
    self._total = total
    self._start_step = initial
    self._step = initial
    self._t0 = time.perf_counter()

  def update(self, step: int) -> None:
    if self._bar is not None:
      self._bar.update(step - self._step)
    self._step = step

  def rate(self) -> float:
    """Steps per second since this progress began."""
    dt = time.perf_counter() - self._t0
    return (self._step - self._start_step) / dt if dt > 0 else math.nan

  def log(self, line: str) -> None:
    if self._bar is not None:
      self._bar.write(line, file=self._stream)
      return
    rate = self.rate()
    eta = (self._total - self._step) / rate if rate > 0 else math.nan
    logging.info('%s [%.1f steps/s, ETA %.0fs]', line, rate, eta)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
