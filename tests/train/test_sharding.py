import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.data import digits
from nkjax.models.mlp import MLP
from nkjax.train import loop, optim, sharding, steps
from nkjax.train import state as state_lib


def _state():
  tx = optim.make_optimizer(name='momentum', learning_rate=0.1)
  model = MLP(hidden=(32,), num_outputs=10)  # no dropout: the two runs draw no keys
  return state_lib.create(
    model=model, tx=tx, rng=jax.random.key(0), inputs=(jnp.zeros((1, 8, 8, 1)),)
  )


def _run(mesh, batches):
  step = loop.jit_train_step(steps.classifier_train_step, mesh)
  state = sharding.replicate(_state(), mesh)
  rng = sharding.replicate(jax.random.key(1), mesh)
  for batch in batches:
    state, metrics = step(state, sharding.shard_batch(batch, mesh), rng)
  return jax.device_get(state.params), jax.device_get(metrics)


def test_sharded_step_equals_single_device_step(mesh):
  data = digits.load('train')
  batches = [{k: v[i * 64 : (i + 1) * 64] for k, v in data.items()} for i in range(3)]
  one_params, one_metrics = _run(sharding.data_mesh(jax.devices()[:1]), batches)
  eight_params, eight_metrics = _run(mesh, batches)
  for a, b in zip(
    jax.tree.leaves(one_params), jax.tree.leaves(eight_params), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(one_metrics['loss'], eight_metrics['loss'], rtol=1e-5)


def test_sharded_batch_lives_on_every_device(mesh):
  n = mesh.devices.size
  x = sharding.shard_batch({'x': np.arange(16.0).reshape(16, 1)}, mesh)['x']
  assert len(x.addressable_shards) == n
  assert [s.data.shape for s in x.addressable_shards] == [(16 // n, 1)] * n
  np.testing.assert_array_equal(np.asarray(x), np.arange(16.0).reshape(16, 1))


def test_indivisible_batch_size_is_a_clear_error(mesh):
  n = mesh.devices.size
  with pytest.raises(
    ValueError,
    match=f'batch size {n + 1} is not divisible by the {n} devices.*multiple of {n}',
  ):
    sharding.check_batch_size(n + 1, mesh)
  sharding.check_batch_size(2 * n, mesh)
