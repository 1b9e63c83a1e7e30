import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import backprop

CASES = list(
  itertools.product(
    [1, 2, 4], ['sigmoid', 'tanh', 'relu'], ['mse', 'bce', 'softmax_ce']
  )
)


@pytest.mark.parametrize('depth, activation, loss', CASES)
def test_manual_backprop_matches_autodiff(depth, activation, loss):
  key = jax.random.key(depth * 100 + len(activation) * 10 + len(loss))
  k_net, k_x, k_y = jax.random.split(key, 3)
  sizes = [5] + [7] * (depth - 1) + [4]
  params = backprop.init(k_net, sizes)
  # Non-zero biases, so their gradients are checked at a generic point.
  params = [
    dict(layer, b=0.1 * jnp.arange(layer['b'].size, dtype=jnp.float32))
    for layer in params
  ]
  x = jax.random.normal(k_x, (6, 5))
  if loss == 'softmax_ce':
    y = jax.nn.one_hot(jax.random.randint(k_y, (6,), 0, 4), 4)
  else:
    y = jax.random.uniform(k_y, (6, 4))
  kw = {'activation': activation, 'loss': loss, 'output_activation': 'sigmoid'}
  value, grads = backprop.loss_and_grads(params, x, y, **kw)
  auto_value, auto_grads = jax.value_and_grad(backprop.objective)(params, x, y, **kw)
  np.testing.assert_allclose(value, auto_value, rtol=1e-6)
  for g, a in zip(jax.tree.leaves(grads), jax.tree.leaves(auto_grads), strict=True):
    np.testing.assert_allclose(g, a, rtol=2e-5, atol=1e-7)


def test_single_sigmoid_unit_gradient_has_its_closed_form():
  # L = 1/2 (y - s(wx + b))^2  =>  dL/dw = (s - y) s (1 - s) x.
  w, b, x, y = 0.7, -0.2, 1.5, 0.3
  params = [{'w': jnp.array([[w]]), 'b': jnp.array([b])}]
  _, grads = backprop.loss_and_grads(
    params,
    jnp.array([[x]]),
    jnp.array([[y]]),
    activation='relu',
    output_activation='sigmoid',
  )
  s = 1 / (1 + np.exp(-(w * x + b)))
  assert float(grads[0]['w'][0, 0]) == pytest.approx(
    (s - y) * s * (1 - s) * x, rel=1e-6
  )
  assert float(grads[0]['b'][0]) == pytest.approx((s - y) * s * (1 - s), rel=1e-6)


def test_unknown_names_list_the_valid_ones():
  params = backprop.init(jax.random.key(0), [2, 2])
  with pytest.raises(
    ValueError,
    match='unknown activation .swish.; valid choices: identity, relu, sigmoid, tanh',
  ):
    backprop.forward(params, jnp.ones((1, 2)), activation='swish')
  with pytest.raises(ValueError, match='valid choices: constant, normal, zeros'):
    backprop.init(jax.random.key(0), [2, 2], kind='xavier')
