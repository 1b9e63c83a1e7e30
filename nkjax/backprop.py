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

The chapter's worked examples (`experiments/bp.py`) are here too: the 3-2-3
exercise network with its chain rule written factor by factor
(`chain_rule_by_hand`), Rosenblatt's perceptron on XOR (`perceptron_xor`), the
hidden units' symmetry (`hidden_unit_spread`) and the gradient norm per layer
at initialisation (`layer_gradient_norms`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError, choose
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


# ---------------------------------------------------------------- the course's exercises
# The chapter's worked examples, in float64 NumPy: an implementation independent
# of JAX, written out as the course derives them.


def exercise_network(w):
  """The course's 3-2-3 network as weight matrices: W1[i, j] joins x_i to h_j."""
  w = np.asarray(w, np.float64)
  if w.shape != (12,):
    raise UserError(f'--config.w needs 12 weights w1..w12, got {w.size}')
  w1 = np.array(
    [[w[0], w[1]], [w[2], w[3]], [w[4], w[5]]]
  )  # In_h1 = w1 x1 + w3 x2 + w5 x3
  w2 = np.array(
    [[w[6], w[7], w[8]], [w[9], w[10], w[11]]]
  )  # In_o1 = w7 Out_h1 + w10 Out_h2
  return w1, w2


def _np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def exercise_loss(w, x, y, loss):
  """The exercise's loss in float64 NumPy: an implementation independent of JAX."""
  w1, w2 = exercise_network(w)
  out_o = _np_sigmoid(_np_sigmoid(x @ w1) @ w2)
  if loss == 'mse':
    return 0.5 * np.sum((y - out_o) ** 2)
  return -np.sum(y * np.log(out_o) + (1 - y) * np.log(1 - out_o))


def chain_rule_by_hand(w, x, y, loss):
  """dL/dw1..w12 of the exercise, written out factor by factor.

  Returns the twelve gradients and, for w6 and w12, the named factors whose
  product each is.
  """
  w1, w2 = exercise_network(w)
  out_h = _np_sigmoid(x @ w1)  # Out_h1, Out_h2
  out_o = _np_sigmoid(out_h @ w2)  # Out_o1..3 = yhat
  if loss == 'mse':
    dl_dout_o = out_o - y  # d/dyhat of 1/2 (y - yhat)^2
  else:
    dl_dout_o = (out_o - y) / (out_o * (1 - out_o))  # d/dyhat of the cross-entropy
  dout_din_o = out_o * (1 - out_o)  # sigmoid'(In_o) = Out_o (1 - Out_o)
  delta_o = dl_dout_o * dout_din_o  # dL/dIn_o
  dl_dout_h = w2 @ delta_o  # sum_k dL/dIn_ok * dIn_ok/dOut_h
  dout_din_h = out_h * (1 - out_h)
  delta_h = dl_dout_h * dout_din_h  # dL/dIn_h
  grads = np.concatenate(
    [np.outer(x, delta_h).ravel(), np.outer(out_h, delta_o).ravel()]
  )
  factors = {
    'w12': [
      ('dL/dOut_o3', dl_dout_o[2]),
      ('dOut_o3/dIn_o3 = Out_o3(1-Out_o3)', dout_din_o[2]),
      ('dIn_o3/dw12 = Out_h2', out_h[1]),
    ],
    'w6': [
      (
        'dL/dOut_h2 = sum_k dL/dIn_ok * w(h2->ok) = dL/dIn_o1*w10 + dL/dIn_o2*w11 + dL/dIn_o3*w12',
        dl_dout_h[1],
      ),
      ('dOut_h2/dIn_h2 = Out_h2(1-Out_h2)', dout_din_h[1]),
      ('dIn_h2/dw6 = x3', x[2]),
    ],
  }
  return grads, factors, {'Out_h': out_h, 'Out_o': out_o}


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.float32)


def perceptron_xor(*, lr: float, epochs: int, seed: int):
  """Rosenblatt's rule w += lr (y - yhat) [x, 1] on XOR, one example at a time.

  Each epoch presents the four examples in a fresh seeded order. Returns the
  most accurate weights visited, the accuracy of the weights after every update, the number of
  mistakes in every epoch, and how many distinct weight vectors were visited:
  the weights stay on a small finite set, revisiting it for ever, because no
  line separates XOR (so every epoch makes a mistake).
  """
  rng = np.random.default_rng(seed)
  xb = np.hstack([XOR_X, np.ones((4, 1))])
  w = np.zeros(3)
  accuracies, mistakes, visited = [], [], set()
  best = w
  for _ in range(epochs):
    errors = 0
    for i in rng.permutation(4):
      error = XOR_Y[i] - float(xb[i] @ w > 0)
      w = w + lr * error * xb[i]
      errors += int(error != 0)
      accuracies.append(float(np.mean((xb @ w > 0) == XOR_Y)))
      visited.add(tuple(w))
      if accuracies[-1] == max(accuracies):
        best = w
    mistakes.append(errors)
  return best, accuracies, mistakes, len(visited)


def best_linear_accuracy_on_xor() -> float:
  """The best accuracy of any line on XOR, by search over a grid of (w1, w2, b)."""
  g = np.linspace(-2, 2, 41)
  w = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)
  xb = np.hstack([XOR_X, np.ones((4, 1))])
  return float(np.max(np.mean((w @ xb.T > 0) == XOR_Y, axis=1)))


def hidden_unit_spread(params) -> float:
  """The largest difference between any two hidden units' weights, in and out.

  Unit j of the first hidden layer owns column j of W1, b1[j] and row j of W2.
  """
  w1, b1, w2 = (np.asarray(a) for a in (params[0]['w'], params[0]['b'], params[1]['w']))
  units = np.concatenate([w1.T, b1[:, None], w2], axis=1)  # one row per unit
  return float(np.max(units.max(axis=0) - units.min(axis=0)))


def layer_gradient_norms(
  *, activation: str, depth: int, width: int, x, y, seed: int
) -> np.ndarray:
  """Frobenius norm of dL/dW_l for each layer of a fresh deep network.

  Weights are LeCun-scaled (std 1/sqrt(fan_in)) for sigmoid and tanh and
  He-scaled (sqrt(2/fan_in)) for relu, the usual initialisation of each.
  """
  sizes = [x.shape[1]] + [width] * depth + [y.shape[1]]
  params = init(jax.random.key(seed), sizes)
  if activation == 'relu':
    params = [dict(p, w=p['w'] * np.sqrt(2.0)) for p in params]
  _, grads = loss_and_grads(params, x, y, activation=activation, loss='softmax_ce')
  return np.array([float(jnp.linalg.norm(g['w'])) for g in grads])
