import io
import logging

import pytest

from nkjax.train import writers


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_draws_a_bar_with_rate_on_a_terminal():
  stream = _Terminal()
  progress = writers.Progress(total=10, initial=0, stream=stream)
  progress.update(5)
  progress.log('step 5: train/loss=1')
  progress.close()
  out = stream.getvalue()
  assert '5/10' in out and 'step/s' in out and 'step 5: train/loss=1' in out


def test_progress_logs_rate_and_eta_when_not_a_terminal(caplog):
  stream = io.StringIO()
  progress = writers.Progress(total=10, initial=2, stream=stream)
  progress.update(6)
  with caplog.at_level(logging.INFO):
    progress.log('step 6: train/loss=1')
  progress.close()
  assert stream.getvalue() == ''  # no bar
  assert any(
    'step 6: train/loss=1' in r.getMessage() and 'steps/s, ETA' in r.getMessage()
    for r in caplog.records
  )


def test_summary_is_replaced_atomically(tmp_path):
  writers.write_summary(str(tmp_path), {'a': 1})
  writers.write_summary(str(tmp_path), {'a': 2})
  assert (tmp_path / 'summary.json').read_text().count('"a": 2') == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ['summary.json']


def test_summary_is_strict_json_with_null_for_missing_figures(tmp_path):
  import json
  import math

  import numpy as np

  writers.write_summary(
    str(tmp_path),
    {
      'examples_per_second': math.nan,
      'eval': {'loss': math.inf, 'accuracy': np.float32(0.5)},
      'hidden': (4, 4),
      'steps': np.int64(3),
    },
  )
  text = (tmp_path / 'summary.json').read_text()
  assert 'NaN' not in text and 'Infinity' not in text
  parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f'not JSON: {c}'))
  assert parsed == {
    'examples_per_second': None,
    'eval': {'loss': None, 'accuracy': 0.5},
    'hidden': [4, 4],
    'steps': 3,
  }


def test_a_resumed_writer_drops_rows_logged_after_the_checkpoint(tmp_path):
  w = writers.MetricWriter(str(tmp_path), console=lambda _: None)
  for step in (5, 10, 15):
    w.write(step, {'train/loss': float(step)})
  w.close()
  # A kill mid-write leaves a torn last line.
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 20, "train/lo')
  w = writers.MetricWriter(str(tmp_path), console=lambda _: None, resume_step=10)
  for step in (15, 20):
    w.write(step, {'train/loss': -float(step)})
  w.close()
  rows = writers.read_metrics(str(tmp_path))
  assert rows == [
    {'step': 5, 'train/loss': 5.0},
    {'step': 10, 'train/loss': 10.0},
    {'step': 15, 'train/loss': -15.0},
    {'step': 20, 'train/loss': -20.0},
  ]


_WRITE_WITHOUT_TORCH = """
import glob, struct, sys
from nkjax.train import writers
w = writers.MetricWriter(sys.argv[1], console=lambda _: None)
for step in (1, 2):
  w.write(step, {'train/loss': 0.5 * step})
w.close()
assert 'torch' not in sys.modules, 'tensorboardX imported torch'
import torch  # still importable afterwards
from tensorboardX.proto import event_pb2
values = []
for path in glob.glob(sys.argv[1] + '/tensorboard/events.*'):
  data = open(path, 'rb').read()
  at = 0
  while at < len(data):  # TFRecord: length, its CRC, the record, its CRC
    (n,) = struct.unpack('<Q', data[at : at + 8])
    event = event_pb2.Event.FromString(data[at + 12 : at + 12 + n])
    values += [(event.step, v.simple_value) for v in event.summary.value]
    at += 12 + n + 4
print(sorted(values))
"""


def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
  pytest.importorskip('torch')
  import subprocess
  import sys

  out = subprocess.run(
    [sys.executable, '-c', _WRITE_WITHOUT_TORCH, str(tmp_path)],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert out.strip() == '[(1, 0.5), (2, 1.0)]'
