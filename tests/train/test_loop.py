import json
import math
import os
import re

import jax
import numpy as np
import pytest

from nkjax.train import checkpoint, guard, writers

from .helpers import tiny_run


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


def test_resume_to_2n_equals_2n_uninterrupted_bitwise(mesh, tmp_path):
  n = 10
  straight = tiny_run(mesh, tmp_path / 'straight', num_steps=2 * n)
  tiny_run(mesh, tmp_path / 'resumed', num_steps=n)
  resumed = tiny_run(mesh, tmp_path / 'resumed', num_steps=2 * n)
  assert resumed.summary['resumed_from_step'] == n
  assert int(resumed.state.step) == 2 * n
  for a, b in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(a, b)
  assert straight.summary['eval'] == resumed.summary['eval']


def test_same_seed_same_metrics_and_other_seed_differs(mesh, tmp_path):
  a = tiny_run(mesh, tmp_path / 'a', num_steps=10)
  b = tiny_run(mesh, tmp_path / 'b', num_steps=10)
  c = tiny_run(mesh, tmp_path / 'c', num_steps=10, seed=1)
  rows = {d: writers.read_metrics(str(tmp_path / d)) for d in 'abc'}
  assert rows['a'] == rows['b'] and a.summary['eval'] == b.summary['eval']
  assert rows['a'] != rows['c'] and a.summary['eval'] != c.summary['eval']


def test_run_writes_metrics_summary_curves_and_keeps_checkpoints(mesh, tmp_path):
  result = tiny_run(
    mesh,
    tmp_path,
    num_steps=30,
    keep_checkpoints=2,
    eval_every=5,
    best_metric='accuracy',
  )
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['steps'] == 30 and summary['devices'] == mesh.devices.size
  assert summary['eval']['accuracy'] == pytest.approx(
    result.summary['eval']['accuracy']
  )
  assert summary['examples_per_second'] > 0
  rows = writers.read_metrics(str(tmp_path))
  assert [r['step'] for r in rows if 'train/loss' in r] == [5, 10, 15, 20, 25, 30]
  assert (tmp_path / 'curves.png').stat().st_size > 1000
  assert os.listdir(tmp_path / 'tensorboard')
  # The last two, plus the best by eval accuracy if it is older.
  evals = {r['step']: r['eval/accuracy'] for r in rows if 'eval/accuracy' in r}
  best = max(sorted(evals), key=lambda s: evals[s])
  steps = checkpoint.Checkpointer(str(tmp_path / 'checkpoints')).all_steps()
  assert set(steps) == {25, 30} | {best}


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
  mesh, tmp_path
):
  tiny_run(mesh, tmp_path, num_steps=10)
  ckpt_dir = tmp_path / 'checkpoints'
  before = sorted(os.listdir(ckpt_dir))
  # A learning rate of 1e30 makes the weights overflow within a few steps.
  with pytest.raises(
    FloatingPointError,
    match=r'non-finite loss .* at step 1[1-9]; last good checkpoint: step 10 in',
  ) as e:
    tiny_run(mesh, tmp_path, num_steps=40, learning_rate=1e30, checkpoint_every=20)
  assert 'left intact' in str(e.value)
  assert sorted(os.listdir(ckpt_dir)) == before
  restored = checkpoint.Checkpointer(str(ckpt_dir)).latest_step()
  assert restored == 10


def test_many_sharded_steps_do_not_hang(mesh, tmp_path):
  # 150 steps on 8 fake devices with logging only at the end: the loop's
  # periodic sync must keep XLA's CPU all-reduce from hanging.
  result = tiny_run(
    mesh, tmp_path, num_steps=150, log_every=0, checkpoint_every=0, eval_fn=None
  )
  assert int(result.state.step) == 150


def test_arrays_shared_within_the_state_are_copied_before_donation():
  from nkjax.train import loop

  a = jax.numpy.arange(3.0)
  tree = {'params': a, 'ema': a, 'other': jax.numpy.ones(2)}
  out = loop._unaliased(tree)
  # One of the two keeps the original buffer, the other gets an equal copy.
  assert (out['params'] is a) != (out['ema'] is a)
  assert out['params'] is not out['ema']
  np.testing.assert_array_equal(out['ema'], out['params'])
  assert out['other'] is tree['other']


def _files(root):
  return {
    str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()
  }


def test_rerunning_a_finished_run_writes_nothing(mesh, tmp_path):
  first = tiny_run(mesh, tmp_path, num_steps=10)
  before = _files(tmp_path)
  again = tiny_run(mesh, tmp_path, num_steps=10)
  assert _files(tmp_path) == before  # no new TensorBoard file, summary, rows
  assert again.summary == json.loads((tmp_path / 'summary.json').read_text())
  assert again.summary['eval'] == pytest.approx(first.summary['eval'])
  assert int(again.state.step) == 10


def test_metrics_have_each_step_once_after_an_interrupted_run(mesh, tmp_path):
  from nkjax.data import images

  data = images.load('digits', batch_size=16, eval_batch_size=64, seed=0)

  def dies_at_step_18(start):
    for i, batch in enumerate(data.train_batches(start), start=start + 1):
      if i == 18:
        raise KeyboardInterrupt  # after rows at 5, 10, 15; the checkpoint at 10
      yield batch

  with pytest.raises(KeyboardInterrupt):
    tiny_run(
      mesh, tmp_path, num_steps=20, checkpoint_every=10, train_batches=dies_at_step_18
    )
  logged = [r['step'] for r in writers.read_metrics(str(tmp_path)) if 'train/loss' in r]
  assert logged == [5, 10, 15]
  resumed = tiny_run(mesh, tmp_path, num_steps=20, checkpoint_every=10)
  assert resumed.summary['resumed_from_step'] == 10
  rows = writers.read_metrics(str(tmp_path))
  assert [r['step'] for r in rows if 'train/loss' in r] == [5, 10, 15, 20]
  straight = tiny_run(mesh, tmp_path / 'straight', num_steps=20, checkpoint_every=10)
  assert rows == writers.read_metrics(str(tmp_path / 'straight'))
  assert resumed.summary['examples_per_second'] is None or math.isfinite(
    resumed.summary['examples_per_second']
  )
  assert straight.summary['eval'] == resumed.summary['eval']


def test_a_diverging_loss_stops_naming_the_step_and_the_checkpoint(mesh, tmp_path):
  tiny_run(mesh, tmp_path, num_steps=10)
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  # SGD-sized steps with Adam at lr 50: the loss grows far past 10x its first
  # value but stays finite for a while.
  with pytest.raises(guard.DivergedError) as e:
    tiny_run(
      mesh, tmp_path, num_steps=40, learning_rate=50.0, divergence_factor=10.0,
      checkpoint_every=20,
    )  # fmt: skip
  message = str(e.value)
  assert re.match(
    r'loss diverged: \S+ at step 1[1-9] is over 10x its first value \S+ \(step 1\); '
    rf'last good checkpoint: step 10 in {tmp_path}/checkpoints, left intact',
    message,
  ), message
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before


def test_summary_of_a_run_with_one_window_has_no_throughput(mesh, tmp_path):
  # One window holds the compilation: there is no steady rate to report.
  tiny_run(mesh, tmp_path, num_steps=5, log_every=5)
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['examples_per_second'] is None


# Bitwise with the fusion emitters a user's XLA uses (see tests/conftest.py).
@pytest.mark.default_emitters
def test_several_steps_per_call_equal_single_steps_bitwise_at_exact_cadences(
  mesh, tmp_path
):
  # Cadences that do not divide by 4, and a resume in the middle of a call.
  kwargs = dict(num_steps=23, log_every=6, eval_every=10, checkpoint_every=9)
  runs = {}
  for name, per_call in (('single', 1), ('several', 4)):
    first = {**kwargs, 'num_steps': 9}
    tiny_run(mesh, tmp_path / name, steps_per_call=per_call, **first)
    runs[name] = tiny_run(mesh, tmp_path / name, steps_per_call=per_call, **kwargs)
  single, several = runs['single'], runs['several']
  assert several.summary['resumed_from_step'] == 9
  for a, b in zip(_leaves(single.state), _leaves(several.state), strict=True):
    np.testing.assert_array_equal(a, b)
  rows = [writers.read_metrics(str(tmp_path / d)) for d in ('single', 'several')]
  assert rows[0] == rows[1]
  assert [r['step'] for r in rows[0] if 'train/loss' in r] == [6, 9, 12, 18, 23]
  assert [r['step'] for r in rows[0] if 'eval/accuracy' in r] == [9, 10, 20, 23]
  steps = checkpoint.Checkpointer(str(tmp_path / 'several' / 'checkpoints')).all_steps()
  assert set(steps) >= {18, 23} and set(steps) <= {9, 18, 23}


@pytest.mark.parametrize(
  'step, expected', [(0, 4), (4, 2), (6, 4), (9, 1), (10, 2), (20, 3)]
)
def test_a_call_ends_at_the_next_cadence(step, expected):
  from nkjax.train import loop

  got = loop._steps_this_call(step, steps_per_call=4, num_steps=23, cadences=(6, 10, 0))
  assert got == expected


def test_a_run_killed_before_its_summary_keeps_its_train_metrics(mesh, tmp_path):
  # kill -9 after the final checkpoint, before summary.json is written.
  first = tiny_run(mesh, tmp_path, num_steps=10)
  assert first.summary['train']
  (tmp_path / 'summary.json').unlink()
  again = tiny_run(mesh, tmp_path, num_steps=10)
  assert again.summary['resumed_from_step'] == 10
  assert again.summary['train'] == pytest.approx(first.summary['train'])
  saved = json.loads((tmp_path / 'summary.json').read_text())
  assert saved['train'] == pytest.approx(first.summary['train'])
