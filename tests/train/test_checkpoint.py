import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.models.mlp import MLP
from nkjax.train import checkpoint, optim
from nkjax.train import state as state_lib


def _state(width):
  tx = optim.make_optimizer(name='adam', learning_rate=1e-3)
  model = MLP(hidden=(width,), num_outputs=3)
  return state_lib.create(
    model=model, tx=tx, rng=jax.random.key(0), inputs=(jnp.zeros((1, 4)),)
  )


@pytest.mark.parametrize('mode, best', [('max', 2), ('min', 3)])
def test_keeps_last_n_and_the_best(tmp_path, mode, best):
  ckpt = checkpoint.Checkpointer(
    str(tmp_path), keep=2, best_metric='acc', best_mode=mode
  )
  state = _state(4)
  for step, acc in zip(range(1, 7), [0.5, 0.9, 0.1, 0.6, 0.7, 0.8], strict=True):
    ckpt.save(step, state, metrics={'acc': acc})
  ckpt.wait()
  assert ckpt.all_steps() == sorted({5, 6, best})


def test_round_trip_is_exact(tmp_path):
  state = _state(4)
  state = state.replace(step=7, params=jax.tree.map(lambda p: p + 0.123, state.params))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(7, state)
  ckpt.wait()
  restored = checkpoint.Checkpointer(str(tmp_path)).restore(_state(4))
  assert int(restored.step) == 7
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(a, b)


def test_restoring_into_another_model_is_a_clear_error(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(4))
  ckpt.wait()
  with pytest.raises(
    ValueError, match='does not fit this run.s model.*another --workdir'
  ):
    checkpoint.Checkpointer(str(tmp_path)).restore(_state(5))
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [1]


def test_missing_best_metric_is_a_clear_error(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), best_metric='accuracy')
  with pytest.raises(
    ValueError, match="'accuracy' is not among the eval metrics: loss"
  ):
    ckpt.save(1, _state(4), metrics={'loss': 1.0})


def _array_files(step_dir):
  # The OCDBT data files that hold the arrays (not the manifests or metadata).
  return sorted(p for p in step_dir.rglob('*') if p.is_file() and p.parent.name == 'd')


def _truncate(step_dir):
  for p in _array_files(step_dir):
    with open(p, 'r+b') as f:
      f.truncate(p.stat().st_size // 2)


def _zero(step_dir):
  for p in _array_files(step_dir):
    p.write_bytes(bytes(p.stat().st_size))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  step_dir.mkdir()


DAMAGES = {
  'truncated arrays': (_truncate, r'unreadable \(ValueError: OUT_OF_RANGE'),
  'zeroed arrays': (_zero, r'unreadable \(\w+: '),
  'no _METADATA': (
    lambda d: (d / 'default' / '_METADATA').unlink(),
    r'default/_METADATA missing',
  ),
  'no manifest': (
    lambda d: (d / 'default' / 'manifest.ocdbt').unlink(),
    r'default/manifest.ocdbt missing',
  ),
  'no commit_success.txt': (
    lambda d: (d / 'commit_success.txt').unlink(),
    r'commit_success.txt missing',
  ),
  'empty step folder': (_empty, r'the step folder is empty'),
}


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """Checkpoints of steps 1 and 2 (different parameters), saved once."""
  directory = tmp_path_factory.mktemp('saved') / 'ckpt'
  ckpt = checkpoint.Checkpointer(str(directory))
  states = {}
  for step in (1, 2):
    states[step] = _state(4).replace(
      step=step, params=jax.tree.map(lambda p, s=step: p + s, _state(4).params)
    )
    ckpt.save(step, states[step])
  ckpt.wait()
  ckpt.close()
  return directory, states


def _two_checkpoints(saved, directory):
  shutil.copytree(saved[0], directory)
  return saved[1]


def _tree_bytes(root):
  return {
    str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()
  }


@pytest.mark.parametrize('damage', list(DAMAGES))
def test_a_damaged_checkpoint_is_named_and_the_previous_one_restored(
  tmp_path, damage, caplog, saved
):
  states = _two_checkpoints(saved, tmp_path / 'ckpt')
  harm, why = DAMAGES[damage]
  harm(tmp_path / 'ckpt' / '2')
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'ckpt'))
  with caplog.at_level('WARNING'):
    restored = ckpt.restore(_state(4))
  lines = [
    r.getMessage()
    for r in caplog.records
    if r.getMessage().startswith('Checkpoint step')
  ]
  assert len(lines) == 1 and '\n' not in lines[0], lines
  assert re.search(
    rf'Checkpoint step 2 in {tmp_path}/ckpt is damaged \(.*{why}.*moved to '
    rf'{tmp_path}/ckpt-damaged/2, falling back to step 1',
    lines[0],
  ), lines[0]
  assert int(restored.step) == 1
  for a, b in zip(jax.tree.leaves(states[1]), jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(a, b)
  # The damaged folder is out of the way, so the resumed run can save step 2 again.
  assert ckpt.all_steps() == [1]
  assert (tmp_path / 'ckpt-damaged' / '2').is_dir()
  ckpt.save(2, states[2])
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2]


def test_no_readable_checkpoint_is_one_line_and_moves_nothing(tmp_path, saved):
  _two_checkpoints(saved, tmp_path / 'ckpt')
  _truncate(tmp_path / 'ckpt' / '2')
  (tmp_path / 'ckpt' / '1' / 'commit_success.txt').unlink()
  before = _tree_bytes(tmp_path)
  with pytest.raises(UserError) as e:
    checkpoint.Checkpointer(str(tmp_path / 'ckpt')).restore(_state(4))
  message = str(e.value)
  assert '\n' not in message
  assert re.match(
    rf'no readable checkpoint in {tmp_path}/ckpt \(step 2: unreadable .*; '
    r'step 1: commit_success.txt missing.*\); use another --workdir',
    message,
  ), message
  assert _tree_bytes(tmp_path) == before


def test_a_checkpoint_of_another_model_still_does_not_fit(tmp_path, saved):
  _two_checkpoints(saved, tmp_path / 'ckpt')
  before = _tree_bytes(tmp_path)
  with pytest.raises(UserError, match="step 2 .* does not fit this run's model"):
    checkpoint.Checkpointer(str(tmp_path / 'ckpt')).restore(_state(5))
  assert _tree_bytes(tmp_path) == before  # not mistaken for damage: nothing moved


def test_a_damaged_checkpoint_is_one_line_without_asyncio_tracebacks(tmp_path):
  # In a fresh interpreter, as a person meets it: the reads that the failed
  # restore abandons (a state of many arrays, as a network's) complete after
  # orbax's event loop closed.
  import subprocess
  import sys

  ckpt = checkpoint.Checkpointer(str(tmp_path / 'ckpt'))
  many = {f'layer_{i}': np.full((3, 5), i, np.float32) for i in range(64)}
  for step in (1, 2):
    ckpt.save(step, many)
  ckpt.wait()
  ckpt.close()
  _truncate(tmp_path / 'ckpt' / '2')
  _truncate(tmp_path / 'ckpt' / '1')
  script = (
    'import time\n'
    'from nkjax.train import checkpoint\n'
    f'c = checkpoint.Checkpointer({str(tmp_path / "ckpt")!r})\n'
    'for s in c.all_steps():\n'
    '  print(s, c.damage(s))\n'
    'time.sleep(1.0)\n'
    'c.close()\n'
  )
  proc = subprocess.run(
    [sys.executable, '-c', script], capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.count('unreadable') == 2, proc.stdout
  assert 'Event loop is closed' not in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]


def test_an_abandoned_read_error_is_not_logged_and_another_task_error_is(caplog):
  # What a failed restore leaves when its event loop is still open: asyncio
  # logs each abandoned read's tensorstore error as never retrieved.
  import asyncio
  import gc

  async def fail(message):
    raise ValueError(message)

  def abandon(message):
    loop = asyncio.new_event_loop()
    task = loop.create_task(fail(message))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
    del task
    gc.collect()
    loop.close()

  checkpoint._quiet_abandoned_reads()
  with caplog.at_level('ERROR', logger='asyncio'):
    abandon("OUT_OF_RANGE: Error reading [tensorstore_spec='{}']")
    assert not caplog.records
    abandon('some other failure')
  (record,) = caplog.records
  assert record.getMessage().startswith('Task exception was never retrieved')
  assert str(record.exc_info[1]) == 'some other failure'
