"""Backpropagation by hand for fully connected networks, as the chain rule states it.

A network is a list of layers `{'w': [fan_in, fan_out], 'b': [fan_out]}`; layer
l computes z_l = a_{l-1} @ W_l + b_l and a_l = f(z_l), with the hidden
activation f on every layer but the last, whose output depends on the loss:

* 'mse':        a_L = out(z_L),  L = 1/2 sum_k (y_k - a_k)^2
* 'bce':        a_L = sigmoid(z_L), L = -sum_k [y_k log a_k + (1 - y_k) log(1 - a_k)]
* 'softmax_ce': a_L = softmax(z_L), L = -sum_k y_k log a_k  (y one-hot)

Losses are averaged over the batch. `forward` keeps what `backward` needs (each
layer's input a_{l-1} and pre-activation z_l); `backward` walks the layers from
the output down:

    delta_L = dL/dz_L
    dL/dW_l = a_{l-1}^T delta_l,   dL/db_l = sum_batch delta_l
    delta_{l-1} = (delta_l W_l^T) * f'(z_{l-1})

`jax.grad` of `objective` gives the same numbers; the tests check it.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import choose
from nkjax.models import layers

Params = list[dict[str, jax.Array]]


def _sigmoid_grad(z):
  # s(z)(1 - s(z)) written as s(z)s(-z): 1 - s(z) cancels catastrophically in
  # float32 for large z (a 5e-4 relative error at z = 10); s(-z) does not.
  return jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)


# name -> (f, f'), f' by hand as a function of the pre-activation z; f is the
# one every model uses (`nkjax.models.layers`).
ACTIVATIONS = {
  name: (layers.ACTIVATIONS[name], derivative)
  for name, derivative in {
    'sigmoid': _sigmoid_grad,
    'tanh': lambda z: 1.0 - jnp.tanh(z) ** 2,
    'relu': lambda z: (z > 0).astype(z.dtype),
    'identity': jnp.ones_like,
  }.items()
}
LOSSES = ('mse', 'bce', 'softmax_ce')
INITS = ('normal', 'zeros', 'constant')


def init(
  key: jax.Array,
  sizes: Sequence[int],
  *,
  kind: str = 'normal',
  scale: float | None = None,
) -> Params:
  """Weights for layer widths `sizes` = (inputs, hidden..., outputs).

  Args:
    kind: 'normal' draws W ~ N(0, scale^2) with scale default 1/sqrt(fan_in)
      (LeCun); 'zeros' sets every weight to 0; 'constant' sets every weight to
      `scale` (default 0.5). Biases start at 0 (all-zero in every case).
  """
  choose('initialisation', kind, INITS)
  params = []
  keys = jax.random.split(key, len(sizes) - 1)
  for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
    if kind == 'normal':
      std = 1.0 / jnp.sqrt(fan_in) if scale is None else scale
      w = std * jax.random.normal(k, (fan_in, fan_out))
    elif kind == 'zeros':
      w = jnp.zeros((fan_in, fan_out))
    else:
      w = jnp.full((fan_in, fan_out), 0.5 if scale is None else scale)
    params.append({'w': w, 'b': jnp.zeros(fan_out)})
  return params


def _output(z: jax.Array, loss: str, output_activation: str) -> jax.Array:
  if loss == 'softmax_ce':
    return jax.nn.softmax(z, axis=-1)
  if loss == 'bce':
    return jax.nn.sigmoid(z)
  return ACTIVATIONS[output_activation][0](z)


def forward(
  params: Params,
  x: jax.Array,
  *,
  activation: str,
  loss: str = 'mse',
  output_activation: str = 'identity',
) -> tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
  """The network's output `[batch, outputs]` and a cache of (a_{l-1}, z_l) per layer.

  `output_activation` applies to 'mse' only; the other losses fix it. A 1-2-1
  relu network on x = 2: z_1 = (2, -2), a_1 = (2, 0), output 3 * 2 + 5 * 0 = 6.

  >>> import jax.numpy as jnp
  >>> params = [
  ...   {'w': jnp.array([[1.0, -1.0]]), 'b': jnp.zeros(2)},
  ...   {'w': jnp.array([[3.0], [5.0]]), 'b': jnp.zeros(1)},
  ... ]
  >>> y_hat, cache = forward(params, jnp.array([[2.0]]), activation='relu')
  >>> y_hat.tolist(), cache[1][0].tolist()
  ([[6.0]], [[2.0, 0.0]])
  """
  choose('activation', activation, ACTIVATIONS)
  choose('activation', output_activation, ACTIVATIONS)
  choose('loss', loss, LOSSES)
  f = ACTIVATIONS[activation][0]
  cache = []
  a = x
  for i, layer in enumerate(params):
    z = a @ layer['w'] + layer['b']
    cache.append((a, z))
    a = f(z) if i < len(params) - 1 else _output(z, loss, output_activation)
  return a, cache


def loss_value(y_hat: jax.Array, y: jax.Array, *, loss: str) -> jax.Array:
  """The batch mean of the per-example loss (see the module docstring)."""
  if loss == 'mse':
    per_example = 0.5 * jnp.sum((y - y_hat) ** 2, axis=-1)
  elif loss == 'bce':
    per_example = -jnp.sum(y * jnp.log(y_hat) + (1 - y) * jnp.log1p(-y_hat), axis=-1)
  else:
    per_example = -jnp.sum(y * jnp.log(y_hat), axis=-1)
  return jnp.mean(per_example)


def objective(
  params: Params,
  x,
  y,
  *,
  activation: str,
  loss: str = 'mse',
  output_activation: str = 'identity',
):
  """Forward pass and loss, for `jax.grad` to differentiate."""
  y_hat, _ = forward(
    params, x, activation=activation, loss=loss, output_activation=output_activation
  )
  return loss_value(y_hat, y, loss=loss)


def backward(
  params: Params,
  cache,
  y_hat: jax.Array,
  y: jax.Array,
  *,
  activation: str,
  loss: str = 'mse',
  output_activation: str = 'identity',
) -> tuple[Params, list[jax.Array]]:
  """Gradients of the batch-mean loss, layer by layer from the output down.

  Returns:
    `(grads, deltas)`: grads shaped like params; deltas[l] = dL/dz_l, `[batch, width]`.

  The 1-2-1 relu network of `forward` with target y = 1: delta_2 = 6 - 1 = 5,
  dL/dW_2 = a_1^T delta_2 = (10, 0); delta_1 = 5 * (3, 5) * relu'(2, -2) =
  (15, 0), so dL/dW_1 = x^T delta_1 = (30, 0): the dead unit gets no gradient.

  >>> import jax.numpy as jnp
  >>> params = [
  ...   {'w': jnp.array([[1.0, -1.0]]), 'b': jnp.zeros(2)},
  ...   {'w': jnp.array([[3.0], [5.0]]), 'b': jnp.zeros(1)},
  ... ]
  >>> x, y = jnp.array([[2.0]]), jnp.array([[1.0]])
  >>> y_hat, cache = forward(params, x, activation='relu')
  >>> grads, deltas = backward(params, cache, y_hat, y, activation='relu')
  >>> [d.tolist() for d in deltas]
  [[[15.0, 0.0]], [[5.0]]]
  >>> grads[0]['w'].tolist(), grads[1]['w'].tolist()
  ([[30.0, 0.0]], [[10.0], [0.0]])
  """
  n = y.shape[0]
  _, z_out = cache[-1]
  if loss == 'mse':
    # dL/da_L = (a_L - y), times the output activation's slope.
    delta = (y_hat - y) * ACTIVATIONS[output_activation][1](z_out) / n
  else:
    # Sigmoid with binary and softmax with categorical cross-entropy: the
    # activation's Jacobian cancels the loss's 1/a, leaving a_L - y.
    delta = (y_hat - y) / n
  f_prime = ACTIVATIONS[activation][1]
  grads, deltas = [], []
  for layer, (a_in, _) in zip(reversed(params), reversed(cache), strict=True):
    grads.append({'w': a_in.T @ delta, 'b': jnp.sum(delta, axis=0)})
    deltas.append(delta)
    if len(deltas) < len(params):
      z_in = cache[len(params) - len(deltas) - 1][1]
      delta = (delta @ layer['w'].T) * f_prime(z_in)
  return grads[::-1], deltas[::-1]


def loss_and_grads(
  params: Params,
  x,
  y,
  *,
  activation: str,
  loss: str = 'mse',
  output_activation: str = 'identity',
):
  """`(loss, grads)` by the manual forward and backward passes.

  They equal `jax.grad` of `objective`, here for a 4-3-2 tanh network with
  binary cross-entropy:

  >>> import jax
  >>> params = init(jax.random.key(0), [4, 3, 2])
  >>> x = jax.random.normal(jax.random.key(1), (5, 4))
  >>> y = (jax.random.uniform(jax.random.key(2), (5, 2)) > 0.5).astype(float)
  >>> loss, grads = loss_and_grads(params, x, y, activation='tanh', loss='bce')
  >>> auto = jax.grad(objective)(params, x, y, activation='tanh', loss='bce')
  >>> all(jax.tree.leaves(jax.tree.map(
  ...   lambda a, b: bool(jax.numpy.allclose(a, b, atol=1e-6)), grads, auto)))
  True
  """
  kw = {'activation': activation, 'loss': loss, 'output_activation': output_activation}
  y_hat, cache = forward(params, x, **kw)
  grads, _ = backward(params, cache, y_hat, y, **kw)
  return loss_value(y_hat, y, loss=loss), grads


def flat_onehot(data: dict, *, num_classes: int) -> dict[str, np.ndarray]:
  """`{'image' [n, ...], 'label' [n]}` as `{'x': [n, pixels], 'y': one-hot [n, classes]}`,
  the form the functions here take."""
  return {
    'x': np.asarray(data['image']).reshape(len(data['image']), -1),
    'y': np.eye(num_classes, dtype=np.float32)[data['label']],
  }


def accuracy(params: Params, data: dict, *, activation: str) -> float:
  """Top-1 accuracy of a softmax network on `flat_onehot` data."""
  out, _ = forward(
    params, jnp.asarray(data['x']), activation=activation, loss='softmax_ce'
  )
  return float(np.mean(np.argmax(out, -1) == np.argmax(data['y'], -1)))


def softmax_value_and_grad(activation: str):
  """`(params, batch) -> (loss, grads)` of softmax cross-entropy by hand, for
  `nkjax.train.scan.train` on `flat_onehot` batches."""
  return lambda p, b: loss_and_grads(
    p, b['x'], b['y'], activation=activation, loss='softmax_ce'
  )
