"""kill -9 as a test: a run killed at any point resumes to the very same result."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from nkjax.train import writers

from . import killable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(kind, workdir, num_steps, kill_at, out):
  # The same environment as this process: the same 2 fake devices, so the
  # same sharded programs and the same bits.
  return subprocess.run(
    [sys.executable, '-m', 'tests.train.killable', kind, str(workdir), str(num_steps),
     str(kill_at), str(out)],
    cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True, text=True,
    timeout=300,
  )  # fmt: skip


def _checkpoint_folders(workdir):
  path = workdir / 'checkpoints'
  return sorted(os.listdir(path)) if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize(
  'kind, num_steps, kills',
  [
    # Before the first checkpoint; as the save of step 5 is being written
    # (asynchronously) when step 6's batch is fetched; after the saves of 5 and
    # 10, with the save of 15 most likely still in flight.
    ('mlp', 20, (3, 6, 17)),
    ('gan', 10, (6,)),
  ],
)
def test_killed_runs_resume_to_the_uninterrupted_result_bitwise(
  mesh, tmp_path, kind, num_steps, kills
):
  workdir, out = tmp_path / 'killed', tmp_path / 'final.npz'
  seen = []
  for kill_at in kills:
    proc = _run(kind, workdir, num_steps, kill_at, out)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not out.exists()
    seen.append(_checkpoint_folders(workdir))
  # The kill before the first save leaves no checkpoint; the kill during the
  # save of step 5 leaves no complete step 5 (only orbax's temporary folder,
  # if any); the last kill leaves the saves before it.
  if kind == 'mlp':
    assert seen[0] == []
    assert '5' not in seen[1], seen
    assert {'5', '10'} <= set(seen[2]), seen
  proc = _run(kind, workdir, num_steps, 0, out)
  assert proc.returncode == 0, proc.stderr[-3000:]

  straight = killable.run(kind, str(tmp_path / 'straight'), num_steps)
  resumed = np.load(out)
  expected = killable.leaves(straight.state)
  assert len(resumed.files) == len(expected)
  for i, leaf in enumerate(expected):
    np.testing.assert_array_equal(resumed[f'arr_{i}'], leaf)
  # Each logged step once, with the uninterrupted run's values.
  assert writers.read_metrics(str(workdir)) == writers.read_metrics(
    str(tmp_path / 'straight')
  )
