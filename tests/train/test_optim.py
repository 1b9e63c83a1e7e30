import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nkjax.errors import UserError
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


def _rates(schedule, steps):
  return [float(schedule(s)) for s in steps]


def _sgd_updates(tx, params, grads, n):
  """The updates of `n` steps of `tx` on the same gradients, params fixed."""
  state, out = tx.init(params), []
  for _ in range(n):
    updates, state = tx.update(grads, state, params)
    out.append(updates)
  return out


def test_decay_steps_are_absolute_update_numbers_after_any_warmup():
  # lr 1, x0.5 from update 3 and again from update 7 (counting from 0).
  step = optim.make_schedule(
    name='step', learning_rate=1.0, num_steps=10, decay_steps=(3, 7), decay_factor=0.5
  )
  assert _rates(step, range(10)) == pytest.approx(
    [1, 1, 1, 0.5, 0.5, 0.5, 0.5] + [0.25] * 3
  )
  # A 2-update warm-up (s / 2 below 2) does not move them.
  warm = optim.make_schedule(
    name='step', learning_rate=1.0, num_steps=10, warmup_steps=2, decay_steps=(3, 7),
    decay_factor=0.5,
  )  # fmt: skip
  assert _rates(warm, range(10)) == pytest.approx(
    [0, 0.5, 1, 0.5, 0.5, 0.5, 0.5] + [0.25] * 3
  )
  # Fractions count after the warm-up: 0.5 of 10 -> update 2 + 5.
  frac = optim.make_schedule(
    name='step',
    learning_rate=1.0,
    num_steps=10,
    warmup_steps=2,
    decay_boundaries=(0.5,),
  )
  assert _rates(frac, range(2, 10)) == pytest.approx([1] * 5 + [0.1] * 3)


@pytest.mark.parametrize(
  'kwargs, message',
  [
    ({'decay_steps': (5,), 'decay_boundaries': (0.5,)}, 'both place'),
    ({'decay_steps': (6, 4)}, 'increasing integers'),
    ({'decay_steps': (4, 4)}, 'increasing integers'),
    ({'decay_steps': (2.5,)}, 'increasing integers'),
    ({'decay_steps': (0,)}, r'in \(warmup_steps, num_steps\) = \(0, 10\)'),
    ({'decay_steps': (10,)}, r'in \(warmup_steps, num_steps\) = \(0, 10\)'),
    ({'decay_steps': (3,), 'warmup_steps': 3}, r'= \(3, 10\)'),
    ({'decay_boundaries': (0.75, 0.5)}, 'increasing fractions'),
    ({'decay_boundaries': (1.0,)}, 'increasing fractions'),
  ],
)
def test_bad_decays_are_user_errors_naming_the_field(kwargs, message):
  with pytest.raises(UserError, match=message):
    optim.make_schedule(name='step', learning_rate=0.1, num_steps=10, **kwargs)


def test_decay_steps_replace_the_default_fractions_and_empty_fractions_mean_none():
  lr = optim.build_schedule(
    optimizer='sgd', learning_rate=1.0, num_steps=10, schedule='step', decay_steps=(5,)
  )
  assert _rates(lr, (4, 5, 8)) == pytest.approx([1, 0.1, 0.1])  # not also at 7
  lr = optim.build_schedule(
    learning_rate=1.0, num_steps=10, schedule='step', decay_boundaries=()
  )
  assert _rates(lr, (0, 9)) == pytest.approx([1, 1])
  with pytest.raises(TypeError, match='unexpected keyword'):
    optim.build_schedule(learning_rate=1.0, num_steps=10, optimiser='sgd')


def test_build_schedule_is_the_rate_builds_optimizer_runs():
  # Plain SGD on a unit gradient: each update is -lr(step).
  f = dict(
    optimizer='sgd', learning_rate=0.2, num_steps=12, schedule='step', warmup_steps=3,
    decay_steps=(6, 9),
  )  # fmt: skip
  w = {'w': jnp.zeros(())}
  ups = _sgd_updates(optim.build(**f), w, {'w': jnp.ones(())}, 12)
  lr = optim.build_schedule(**f)
  assert [-float(u['w']) for u in ups] == pytest.approx(_rates(lr, range(12)))


def test_clip_by_lr_bounds_each_gradient_by_theta_over_the_warmed_up_rate():
  # 'constant' at 1.0 after a 4-update warm-up: lr(s) = s / 4 below 4, then 1.
  theta, g = 0.3, 1.0
  tx = optim.build(
    optimizer='sgd', learning_rate=1.0, num_steps=8, warmup_steps=4, clip_by_lr=theta
  )
  ups = _sgd_updates(tx, {'w': jnp.zeros(())}, {'w': jnp.full((), g)}, 8)
  lr = [s / 4 if s < 4 else 1.0 for s in range(8)]
  # SGD's update is -lr(s) * clip(g, theta / lr(s)) = -min(lr(s) * g, theta):
  # clipped (bound theta / lr(s) < g) from update 2 on; at update 0 lr = 0.
  assert [-float(u['w']) for u in ups] == pytest.approx([min(r * g, theta) for r in lr])
  # The clipped gradient itself, update / -lr: theta / lr(s) where it binds.
  for s in (2, 3, 5, 7):
    assert -float(ups[s]['w']) / lr[s] == pytest.approx(theta / lr[s])


def test_clip_bound_rises_as_the_step_schedule_decays():
  # lr 0.1 then 0.01 from update 2; theta 0.01: bound 0.1, then 1.0.
  tx = optim.build(
    optimizer='sgd', learning_rate=0.1, num_steps=4, schedule='step', decay_steps=(2,),
    clip_by_lr=0.01,
  )  # fmt: skip
  g = jnp.array([0.05, 0.5, 5.0])
  ups = _sgd_updates(tx, {'w': jnp.zeros(3)}, {'w': g}, 4)
  np.testing.assert_allclose(ups[0]['w'], -0.1 * np.minimum(g, 0.1), rtol=1e-6)
  np.testing.assert_allclose(ups[3]['w'], -0.01 * np.minimum(g, 1.0), rtol=1e-6)


@pytest.mark.parametrize('optimizer', ['sgd', 'momentum', 'adam'])
def test_a_multiplied_layer_moves_multiplier_times_the_plain_update(optimizer):
  f = dict(
    optimizer=optimizer, learning_rate=0.1, num_steps=6, schedule='step',
    warmup_steps=2, decay_steps=(4,),
  )  # fmt: skip
  params = {
    'body': {'w': jnp.zeros(3)},
    'head': {'w': jnp.zeros(3), 'b': jnp.zeros(2)},
  }
  grads = {
    'body': {'w': jnp.array([1.0, -2.0, 0.5])},
    'head': {'w': jnp.array([0.3, 4.0, -1.0]), 'b': jnp.array([2.0, -0.1])},
  }
  plain = _sgd_updates(optim.build(**f), params, grads, 6)
  slow = _sgd_updates(
    optim.build(**f, lr_multipliers={'head': 0.1, 'head/b': 3.0}), params, grads, 6
  )
  for p, s in zip(plain, slow, strict=True):
    # (Adam in a multi_transform rounds 1 ulp apart from Adam alone.)
    np.testing.assert_allclose(s['body']['w'], p['body']['w'], rtol=1e-6)
    np.testing.assert_allclose(s['head']['w'], 0.1 * p['head']['w'], rtol=1e-6)
    # 'head/b' is under both prefixes: the longest, 'head/b', gives its rate.
    np.testing.assert_allclose(s['head']['b'], 3.0 * p['head']['b'], rtol=1e-6)
  assert float(jnp.abs(plain[-1]['head']['w']).sum()) > 0


def test_multiplied_clip_bound_is_theta_over_the_layers_rate_and_frozen_wins():
  params = {
    'a': {'w': jnp.zeros(())},
    'b': {'w': jnp.zeros(())},
    'c': {'w': jnp.zeros(())},
  }
  grads = jax.tree.map(lambda _: jnp.full((), 10.0), params)
  tx = optim.build(
    optimizer='sgd', learning_rate=0.1, num_steps=4, clip_by_lr=0.01,
    lr_multipliers={'b': 0.5, 'c': 0.5}, frozen=['c'],
  )  # fmt: skip
  (u,) = _sgd_updates(tx, params, grads, 1)
  # Each layer moves by theta at most: a at rate 0.1, b at 0.05; c not at all.
  assert [float(u[k]['w']) for k in 'abc'] == pytest.approx([-0.01, -0.01, 0.0])


def test_prefixes_that_name_no_parameter_and_bad_multipliers_are_user_errors():
  params = {'conv1': {'kernel': jnp.zeros(2)}, 'conv3': {'kernel': jnp.zeros(2)}}
  f = dict(optimizer='sgd', learning_rate=0.1, num_steps=4)
  with pytest.raises(UserError, match="lr_multipliers: 'conv4' names no parameter"):
    optim.build(**f, lr_multipliers={'conv4': 0.1}).init(params)
  with pytest.raises(UserError, match="frozen: 'conv' names no parameter"):
    optim.build(**f, frozen=['conv']).init(params)  # a prefix of names, not a path
  with pytest.raises(UserError, match='finite numbers > 0'):
    optim.build(**f, lr_multipliers={'conv1': 0.0})
  with pytest.raises(UserError, match='clip_by_lr=-1.0 must be a number > 0'):
    optim.build(**f, clip_by_lr=-1.0)


def test_new_fields_default_to_off_and_leave_the_optimizer_state_as_before():
  d = optim.default_fields()
  assert d['decay_steps'].get() is None and d['clip_by_lr'].get() is None
  assert d['lr_multipliers'] == {} and d['decay_boundaries'] == (0.5, 0.75)
  # Off, they add nothing to the state (checkpoints of earlier runs restore).
  params = {'w': jnp.zeros(2)}
  a = optim.build(optimizer='adam', learning_rate=0.1, num_steps=4, lr_multipliers={})
  b = optim.make_optimizer(name='adam', learning_rate=optim.make_schedule(
    name='constant', learning_rate=0.1, num_steps=4))  # fmt: skip
  assert jax.tree.structure(a.init(params)) == jax.tree.structure(b.init(params))
