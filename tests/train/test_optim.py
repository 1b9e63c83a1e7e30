import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nkjax.train import optim


def _one_update(tx, w, g):
  updates, _ = tx.update(g, tx.init(w), w)
  return optax.apply_updates(w, updates)


def test_sgd_step_is_w_minus_lr_g_and_weight_decay_adds_wd_w():
  w, g = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25])
  np.testing.assert_allclose(
    _one_update(optim.make_optimizer(name='sgd', learning_rate=0.1), w, g), w - 0.1 * g
  )
  tx = optim.make_optimizer(name='sgd', learning_rate=0.1, weight_decay=0.01)
  np.testing.assert_allclose(_one_update(tx, w, g), w - 0.1 * (g + 0.01 * w), rtol=1e-6)


def test_gradient_clipping_bounds_the_global_norm():
  w, g = jnp.zeros(2), jnp.array([3.0, 4.0])  # norm 5
  tx = optim.make_optimizer(name='sgd', learning_rate=1.0, grad_clip_norm=1.0)
  np.testing.assert_allclose(_one_update(tx, w, g), -g / 5.0, rtol=1e-6)


@pytest.mark.parametrize('name', optim.OPTIMIZERS)
def test_every_optimizer_descends_a_quadratic(name):
  tx = optim.make_optimizer(name=name, learning_rate=0.05)
  w = jnp.array([3.0, -2.0])
  state = tx.init(w)
  loss = lambda w: jnp.sum(w**2)  # noqa: E731
  for _ in range(50):
    updates, state = tx.update(jax.grad(loss)(w), state, w)
    w = optax.apply_updates(w, updates)
  assert loss(w) < 0.5 * 13.0


def test_schedules_have_their_closed_forms():
  step = optim.make_schedule(
    name='step', learning_rate=1.0, num_steps=100, decay_boundaries=(0.5, 0.75)
  )
  assert [float(step(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
    [1, 1, 0.1, 0.1, 0.01, 0.01]
  )
  cosine = optim.make_schedule(name='cosine', learning_rate=2.0, num_steps=100)
  assert float(cosine(50)) == pytest.approx(1.0)  # 2 * (1 + cos(pi/2)) / 2
  assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
  warm = optim.make_schedule(
    name='warmup_cosine', learning_rate=1.0, num_steps=100, warmup_steps=10
  )
  assert float(warm(5)) == pytest.approx(0.5)
  assert float(warm(10)) == pytest.approx(1.0)
  const = optim.make_schedule(
    name='constant', learning_rate=0.3, num_steps=100, warmup_steps=4
  )
  assert [float(const(s)) for s in (0, 2, 4, 90)] == pytest.approx([0, 0.15, 0.3, 0.3])


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(
    ValueError, match='unknown optimizer .adamx.; valid choices: adam, adamw, momentum'
  ):
    optim.make_optimizer(name='adamx', learning_rate=0.1)
  with pytest.raises(
    ValueError, match='valid choices: constant, cosine, step, warmup_cosine'
  ):
    optim.make_schedule(name='linear', learning_rate=0.1, num_steps=10)
  with pytest.raises(ValueError, match='must be > 0'):
    optim.make_schedule(name='constant', learning_rate=-1.0, num_steps=10)
