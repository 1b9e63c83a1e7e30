import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
