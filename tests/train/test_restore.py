import importlib.util
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.models.mlp import MLP
from nkjax.train import checkpoint, optim, restore
from nkjax.train import state as state_lib
from tests.train.helpers import tiny_run

EXPERIMENTS = pathlib.Path(__file__).parents[2] / 'experiments'
# A config as experiments/sr.py and experiments/detection.py record them (the
# fields the readers look at; the rest of the config does not matter here).
SR_CONFIG = {'model': 'srcnn', 'scales': [2], 'patch': 12}
DETECTION_CONFIG = {'method': 'rcnn', 'anchor_scales': [32], 'num_classes': 2}


@pytest.fixture(scope='module')
def trained(mesh, tmp_path_factory):
  """A finished 10-step run (checkpoints at steps 5 and 10) with the SR config."""
  workdir = tmp_path_factory.mktemp('run') / 'run'
  result = tiny_run(mesh, workdir, num_steps=10, config=SR_CONFIG)
  return workdir, jax.device_get(result.state)


def _copy(trained, tmp_path):
  shutil.copytree(trained[0], tmp_path / 'run')
  return tmp_path / 'run'


def _listing(root):
  """Every path under `root` with its modification time and size."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      st = os.lstat(path)
      out[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
  return out


def _one_line(e):
  assert '\n' not in str(e.value), str(e.value)
  return str(e.value)


def test_restored_params_are_bitwise_the_saved_state(trained):
  workdir, state = trained
  run = restore.restore(str(workdir), experiment='sr', option='--config.checkpoint')
  assert run.step == int(state.step) == 10
  assert run.config == SR_CONFIG
  # An MLP has no batch statistics: only params come back, the same tree.
  assert set(run.variables) == {'params'}
  want, got = state.params, run.variables['params']
  assert jax.tree.structure(want) == jax.tree.structure(got)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_restore_leaves_the_run_as_it_was_and_skips_a_damaged_step(
  trained, tmp_path, caplog
):
  run_dir = _copy(trained, tmp_path)
  # The newest save never finished: restore names it, reads step 5 and moves
  # nothing (Checkpointer.restore, which resumes a run, would move it aside).
  os.remove(run_dir / 'checkpoints' / '10' / 'commit_success.txt')
  before = _listing(run_dir)
  variables, step = restore.variables(str(run_dir))
  assert step == 5
  assert 'step 10' in caplog.text and 'left in place' in caplog.text
  assert _listing(run_dir) == before
  assert not os.path.exists(f'{run_dir}/checkpoints-damaged')
  # Step 5's params differ from step 10's: it is the older state that was read.
  last = jax.tree.leaves(trained[1].params)
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(last, jax.tree.leaves(variables['params']), strict=True)
  )


def test_an_intact_restore_changes_nothing_either(trained, tmp_path):
  run_dir = _copy(trained, tmp_path)
  before = _listing(run_dir)
  restore.restore(str(run_dir), experiment='sr', option='--config.checkpoint')
  assert _listing(run_dir) == before


def test_bad_runs_are_one_line_each(trained, tmp_path):
  option = '--config.checkpoint'
  with pytest.raises(UserError) as e:
    restore.restore(str(tmp_path / 'nowhere'), experiment='sr', option=option)
  assert 'no such folder' in _one_line(e)
  # Checkpoints but no summary.json: the run did not finish.
  run_dir = _copy(trained, tmp_path)
  os.remove(run_dir / 'summary.json')
  with pytest.raises(UserError) as e:
    restore.restore(str(run_dir), experiment='sr', option=option)
  assert 'no finished run' in _one_line(e) and option in str(e.value)
  # A summary but no checkpoint.
  shutil.copy(trained[0] / 'summary.json', run_dir / 'summary.json')
  shutil.rmtree(run_dir / 'checkpoints')
  with pytest.raises(UserError) as e:
    restore.restore(str(run_dir), experiment='sr', option=option)
  assert 'no checkpoint' in _one_line(e)


def test_every_checkpoint_damaged_is_one_line_and_moves_nothing(trained, tmp_path):
  run_dir = _copy(trained, tmp_path)
  for step in (5, 10):
    os.remove(run_dir / 'checkpoints' / str(step) / 'default' / 'manifest.ocdbt')
  before = _listing(run_dir)
  with pytest.raises(UserError) as e:
    restore.variables(str(run_dir))
  assert 'step 10' in _one_line(e) and 'step 5' in str(e.value)
  assert _listing(run_dir) == before


def test_a_run_of_another_experiment_is_named(mesh, tmp_path):
  workdir = tmp_path / 'det'
  tiny_run(mesh, workdir, num_steps=5, config=DETECTION_CONFIG)
  with pytest.raises(UserError) as e:
    restore.restore(str(workdir), experiment='sr', option='--config.checkpoint')
  assert 'is a detection run (experiments/detection.py), not an sr run' in _one_line(e)
  # The SR experiment's own reader says so too, before it looks at 'scales'.
  sr = _load('sr')
  config = sr.get_config('upscale')
  config.checkpoint, config.image = str(workdir), str(tmp_path / 'missing.png')
  from PIL import Image

  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(config.image)
  with pytest.raises(UserError) as e:
    sr.upscale(config, str(tmp_path / 'out'))
  assert 'is a detection run' in _one_line(e)


def test_a_generator_is_read_from_under_its_name(tmp_path):
  """A GAN's state keeps its networks under 'g' and 'd'; `under` picks one."""
  make = lambda w: state_lib.create(  # noqa: E731
    model=MLP(hidden=(w,), num_outputs=3),
    tx=optim.make_optimizer(name='adam', learning_rate=1e-3),
    rng=jax.random.key(w),
    inputs=(jnp.zeros((1, 4)),),
  )
  state = {'step': jnp.int32(3), 'g': make(4), 'd': make(5)}
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
  ckpt.save(3, state)
  ckpt.wait()
  ckpt.close()
  variables, step = restore.variables(str(tmp_path), under='g')
  assert step == 3
  for a, b in zip(
    jax.tree.leaves(state['g'].params),
    jax.tree.leaves(variables['params']),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(UserError) as e:
    restore.variables(str(tmp_path), under='generator')
  assert "no 'generator'" in _one_line(e)


def _load(name):
  spec = importlib.util.spec_from_file_location(
    f'_experiment_{name}', EXPERIMENTS / f'{name}.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name', ['bp', 'cnn', 'detection', 'gan', 'mlp', 'rnn', 'sr'])
def test_each_experiments_configs_are_recognised_as_its_own(name):
  module = _load(name)
  want = name if name in restore.SIGNATURES else None
  for preset in module.PRESETS:
    config = module.get_config(preset).to_dict()
    assert restore.experiment_of(config) == want, preset


def test_the_state_for_inference_predicts_as_the_trained_one_and_checks_the_fit(
  trained,
):
  workdir, state = trained
  run = restore.restore(str(workdir), experiment='sr', option='--config.checkpoint')
  inputs = (jnp.zeros((1, 8, 8, 1)),)
  model = MLP(hidden=(16,), num_outputs=10, dropout_rate=0.1)
  inference = restore.inference_state(model, run, inputs=inputs)
  assert inference.tx is None and inference.opt_state is None
  x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  want = model.apply({'params': state.params}, x, train=False)
  got = inference.apply_fn({'params': inference.params}, x, train=False)
  np.testing.assert_array_equal(want, got)
  # Another width: the first variable that differs is named, in one line.
  with pytest.raises(UserError) as e:
    restore.inference_state(MLP(hidden=(32,), num_outputs=10), run, inputs=inputs)
  assert 'does not fit' in _one_line(e) and 'params/Dense_0/bias is (32,)' in str(
    e.value
  )
