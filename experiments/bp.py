"""Backpropagation: the feed-forward chapter's claims, each shown with numbers.

  python experiments/bp.py                                          # chain_rule
  python experiments/bp.py --config=experiments/bp.py:xor
  python experiments/bp.py --config=experiments/bp.py:init_symmetry
  python experiments/bp.py --config=experiments/bp.py:sigmoid_saturation
  python experiments/bp.py --config=experiments/bp.py:gd_variants
  python experiments/bp.py --config=experiments/bp.py:mlp
  python experiments/bp.py --config=experiments/bp.py:chain_rule --config.loss=bce \
      --config.x='(1.0, 0.5, -1.0)'

Each task prints its figures, writes them to summary.json and its pictures next to
it in --workdir (default runs/bp-<task>).
"""

import itertools
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax

from nkjax import backprop, launch, validate, viz
from nkjax.data import digits
from nkjax.errors import UserError, choose
from nkjax.train import scan, writers

PRESETS = (
  'chain_rule',
  'xor',
  'init_symmetry',
  'sigmoid_saturation',
  'gd_variants',
  'mlp',
)
CHECKS = {
  **validate.TRAINING,
  'perceptron_lr': validate.positive_number(),
  'perceptron_epochs': validate.count,
  'hidden': validate.count,
  'depth': validate.count,
  'width': validate.count,
  'num_updates': validate.count,
  'batch_sizes': validate.each(validate.count),
  'depths': validate.each(validate.cadence),
  'widths': validate.each(validate.count),
  'eps': validate.positive_number(),
}


def resumable(config) -> bool:
  """No task here keeps checkpoints: each reruns in seconds."""
  return False


def get_config(preset: str = 'chain_rule') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.task = preset
  c.seed = 0
  if preset == 'chain_rule':
    c.x = (1.0, 4.0, 5.0)
    c.y = (0.1, 0.05, 0.9)
    c.w = tuple(round(0.1 * i, 1) for i in range(1, 13))  # w1..w12
    c.loss = 'mse'  # or 'bce' (binary cross-entropy on the sigmoid outputs)
    c.eps = 1e-6  # central finite-difference step, in float64
  elif preset == 'xor':
    c.perceptron_lr = 1.0
    c.perceptron_epochs = 100
    c.hidden_activation = 'sigmoid'
    c.learning_rate = 2.0
    c.num_steps = 5000
  elif preset == 'init_symmetry':
    c.hidden = 32
    c.activation = 'sigmoid'
    c.constant = 0.1
    c.learning_rate = 0.5
    c.batch_size = 128
    c.num_steps = 1500
  elif preset == 'sigmoid_saturation':
    c.depth = 10
    c.width = 64
    c.batch_size = 256
  elif preset == 'gd_variants':
    c.hidden = 32
    c.learning_rate = 0.05
    c.num_updates = 400
    c.batch_sizes = (1437, 32, 1)  # full batch, mini-batch, stochastic
  elif preset == 'mlp':
    c.depths = (0, 1, 2, 3)
    c.widths = (16, 64, 256)
    c.learning_rate = 1e-3
    c.batch_size = 64
    c.num_steps = 1500
  return c


# ---------------------------------------------------------------- chain rule


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


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _exercise_loss(w, x, y, loss):
  """The exercise's loss in float64 NumPy: an implementation independent of JAX."""
  w1, w2 = exercise_network(w)
  out_o = _sigmoid(_sigmoid(x @ w1) @ w2)
  if loss == 'mse':
    return 0.5 * np.sum((y - out_o) ** 2)
  return -np.sum(y * np.log(out_o) + (1 - y) * np.log(1 - out_o))


def chain_rule_by_hand(w, x, y, loss):
  """dL/dw1..w12 of the exercise, written out factor by factor.

  Returns the twelve gradients and, for w6 and w12, the named factors whose
  product each is.
  """
  w1, w2 = exercise_network(w)
  out_h = _sigmoid(x @ w1)  # Out_h1, Out_h2
  out_o = _sigmoid(out_h @ w2)  # Out_o1..3 = yhat
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


def run_chain_rule(config, workdir):
  x, y = np.asarray(config.x, np.float64), np.asarray(config.y, np.float64)
  if x.shape != (3,) or y.shape != (3,):
    raise UserError('--config.x and --config.y need 3 values each')
  choose('loss', config.loss, ('mse', 'bce'))
  hand, factors, acts = chain_rule_by_hand(config.w, x, y, config.loss)

  w1, w2 = exercise_network(config.w)
  params = [
    {'w': jnp.asarray(w1, jnp.float32), 'b': jnp.zeros(2)},
    {'w': jnp.asarray(w2, jnp.float32), 'b': jnp.zeros(3)},
  ]
  # The course's loss is a sum over outputs for one example: a batch of one.
  kw = {'activation': 'sigmoid', 'loss': config.loss, 'output_activation': 'sigmoid'}
  xb, yb = jnp.asarray(x[None], jnp.float32), jnp.asarray(y[None], jnp.float32)
  _, layered = backprop.loss_and_grads(params, xb, yb, **kw)
  autodiff = jax.grad(backprop.objective)(params, xb, yb, **kw)
  flat = lambda g: np.concatenate(
    [np.asarray(g[0]['w']).ravel(), np.asarray(g[1]['w']).ravel()]
  )  # noqa: E731
  w = np.asarray(config.w, np.float64)
  finite_diff = np.array([
    (_exercise_loss(w + config.eps * e, x, y, config.loss) - _exercise_loss(w - config.eps * e, x, y, config.loss)) / (2 * config.eps)
    for e in np.eye(12)
  ])  # fmt: skip
  table = {
    'hand': hand,
    'layer_by_layer': flat(layered),
    'jax_grad': flat(autodiff),
    'finite_diff': finite_diff,
  }

  print(
    f'Out_h = {acts["Out_h"]}, Out_o = yhat = {acts["Out_o"]}, loss ({config.loss}) = {_exercise_loss(w, x, y, config.loss):.6g}'
  )
  for name in ('w12', 'w6'):
    product = np.prod([v for _, v in factors[name]])
    print(f'\ndL/d{name} = ' + ' x '.join(f'[{label}]' for label, _ in factors[name]))
    print(
      '        = '
      + ' x '.join(f'{v:.6g}' for _, v in factors[name])
      + f' = {product:.6g}'
    )
  print(f'\n{"":>5} ' + ' '.join(f'{k:>15}' for k in table))
  for i in range(12):
    print(f'{"w" + str(i + 1):>5} ' + ' '.join(f'{table[k][i]:15.8f}' for k in table))
  errors = {k: float(np.max(np.abs(v - hand))) for k, v in table.items() if k != 'hand'}
  print(f'\nlargest |difference| from the hand derivation: {errors}')
  return {
    'loss': config.loss,
    'gradients': {k: v.tolist() for k, v in table.items()},
    'factors': {n: [[label, float(v)] for label, v in f] for n, f in factors.items()},
    'max_abs_difference_from_hand': errors,
  }


# ---------------------------------------------------------------- XOR

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


def run_xor(config, workdir):
  w, accuracies, mistakes, visited = perceptron_xor(
    lr=config.perceptron_lr, epochs=config.perceptron_epochs, seed=config.seed
  )
  best_line = best_linear_accuracy_on_xor()
  print(
    f'perceptron rule, {config.perceptron_epochs} epochs: best accuracy {max(accuracies):.2f} '
    f'(any line at best {best_line:.2f}); mistakes in every epoch (min {min(mistakes)}); '
    f'the weights cycle through {visited} distinct values; best (w1, w2, b) = {w.tolist()}'
  )

  kw = {'activation': config.hidden_activation, 'loss': 'bce'}
  params = backprop.init(jax.random.key(config.seed), [2, 2, 1], scale=1.0)
  vg = lambda p, b: backprop.loss_and_grads(p, b['x'], b['y'], **kw)  # noqa: E731
  params, history = scan.train(
    value_and_grad=vg, params=params, tx=optax.sgd(config.learning_rate),
    data={'x': XOR_X, 'y': XOR_Y[:, None]}, batch_size=4, num_steps=config.num_steps, seed=config.seed,
  )  # fmt: skip
  out, _ = backprop.forward(params, jnp.asarray(XOR_X), **kw)
  mlp_accuracy = float(np.mean((np.asarray(out[:, 0]) > 0.5) == XOR_Y))
  print(
    f'2-2-1 {config.hidden_activation} network: accuracy {mlp_accuracy:.2f}, final loss {float(history["loss"][-1]):.4f}, outputs {np.round(np.asarray(out[:, 0]), 3)}'
  )
  for i, layer in enumerate(params):
    print(
      f'  layer {i + 1}: W = {np.round(np.asarray(layer["w"], np.float64), 3).tolist()}, b = {np.round(np.asarray(layer["b"], np.float64), 3).tolist()}'
    )

  grid = np.stack(
    np.meshgrid(np.linspace(-0.5, 1.5, 201), np.linspace(-0.5, 1.5, 201)), -1
  ).reshape(-1, 2)
  panels = {
    f'perceptron, best weights visited (accuracy {max(accuracies):.2f})': (
      grid @ w[:2] + w[2] > 0
    ).astype(float),
    f'2-2-1 network (accuracy {mlp_accuracy:.2f})': np.asarray(
      backprop.forward(params, jnp.asarray(grid, jnp.float32), **kw)[0][:, 0]
    ),
  }
  fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
  for ax, (title, z) in zip(axes, panels.items(), strict=True):
    ax.contourf(
      grid[:, 0].reshape(201, 201),
      grid[:, 1].reshape(201, 201),
      z.reshape(201, 201),
      levels=20,
      cmap='RdBu_r',
      alpha=0.7,
    )
    ax.contour(
      grid[:, 0].reshape(201, 201),
      grid[:, 1].reshape(201, 201),
      z.reshape(201, 201),
      levels=[0.5],
      colors='k',
    )
    ax.scatter(XOR_X[:, 0], XOR_X[:, 1], c=XOR_Y, cmap='RdBu_r', edgecolors='k', s=120)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('x1 (input)')
    ax.set_ylabel('x2 (input)')
  fig.suptitle(
    f'{viz.run_name(workdir)}: XOR decision boundaries (black: output 0.5; '
    'points red = 1, blue = 0)',
    fontsize=10,
  )
  viz.save_figure(fig, os.path.join(workdir, 'xor_boundaries.png'))
  return {
    'perceptron': {
      'best_accuracy': max(accuracies),
      'best_linear_accuracy': best_line,
      'min_mistakes_per_epoch': min(mistakes),
      'distinct_weights_visited': visited,
      'weights': w.tolist(),
    },
    'mlp': {
      'accuracy': mlp_accuracy,
      'final_loss': float(history['loss'][-1]),
      'params': jax.tree.map(lambda a: np.asarray(a).tolist(), params),
    },
  }


# ---------------------------------------------------------------- shared


def _digits_onehot():
  return (
    backprop.flat_onehot(digits.load(s), num_classes=10) for s in ('train', 'test')
  )


# ---------------------------------------------------------------- initialisation


def hidden_unit_spread(params) -> float:
  """The largest difference between any two hidden units' weights, in and out.

  Unit j of the first hidden layer owns column j of W1, b1[j] and row j of W2.
  """
  w1, b1, w2 = (np.asarray(a) for a in (params[0]['w'], params[0]['b'], params[1]['w']))
  units = np.concatenate([w1.T, b1[:, None], w2], axis=1)  # one row per unit
  return float(np.max(units.max(axis=0) - units.min(axis=0)))


def run_init_symmetry(config, workdir):
  train, test = _digits_onehot()
  sizes = [64, config.hidden, 10]
  rows = {}
  for kind in ('zeros', 'constant', 'normal'):
    params = backprop.init(
      jax.random.key(config.seed),
      sizes,
      kind=kind,
      scale=config.constant if kind == 'constant' else None,
    )
    params, history = scan.train(
      value_and_grad=backprop.softmax_value_and_grad(config.activation), params=params,
      tx=optax.sgd(config.learning_rate), data=train, batch_size=config.batch_size,
      num_steps=config.num_steps, seed=config.seed,
    )  # fmt: skip
    rows[kind] = {
      'max_hidden_unit_difference': hidden_unit_spread(params),
      'train_accuracy': backprop.accuracy(params, train, activation=config.activation),
      'test_accuracy': backprop.accuracy(params, test, activation=config.activation),
      'final_loss': float(history['loss'][-100:].mean()),
    }
  print(
    f'{config.hidden} {config.activation} hidden units, {config.num_steps} SGD steps on the digits'
  )
  print(
    f'{"init":>10} {"max |unit i - unit j|":>22} {"train acc":>10} {"test acc":>9} {"loss":>7}'
  )
  for kind, r in rows.items():
    print(
      f'{kind:>10} {r["max_hidden_unit_difference"]:22.6g} {r["train_accuracy"]:10.4f} {r["test_accuracy"]:9.4f} {r["final_loss"]:7.4f}'
    )
  return {'hidden': config.hidden, 'activation': config.activation, 'results': rows}


# ---------------------------------------------------------------- saturation


def layer_gradient_norms(
  *, activation: str, depth: int, width: int, x, y, seed: int
) -> np.ndarray:
  """Frobenius norm of dL/dW_l for each layer of a fresh deep network.

  Weights are LeCun-scaled (std 1/sqrt(fan_in)) for sigmoid and tanh and
  He-scaled (sqrt(2/fan_in)) for relu, the usual initialisation of each.
  """
  sizes = [x.shape[1]] + [width] * depth + [y.shape[1]]
  params = backprop.init(jax.random.key(seed), sizes)
  if activation == 'relu':
    params = [dict(p, w=p['w'] * np.sqrt(2.0)) for p in params]
  _, grads = backprop.loss_and_grads(
    params, x, y, activation=activation, loss='softmax_ce'
  )
  return np.array([float(jnp.linalg.norm(g['w'])) for g in grads])


def run_sigmoid_saturation(config, workdir):
  z = np.linspace(-10, 10, 2001)
  slope = np.asarray(backprop.ACTIVATIONS['sigmoid'][1](jnp.asarray(z)))
  print(
    f"max sigmoid'(x) on [-10, 10] = {slope.max():.6f} at x = {z[slope.argmax()]:.3f} (closed form: 1/4 at 0)"
  )
  at = {
    str(v): float(backprop.ACTIVATIONS['sigmoid'][1](jnp.float32(v)))
    for v in (0, 2, 5, 10)
  }
  print(
    "sigmoid'(x) at x = "
    + ', '.join(f'{k}: {v:.3g}' for k, v in at.items())
    + '  (~ e^-|x| for large |x|)'
  )

  train, _ = _digits_onehot()
  x, y = (
    jnp.asarray(train['x'][: config.batch_size]),
    jnp.asarray(train['y'][: config.batch_size]),
  )
  norms = {
    a: layer_gradient_norms(
      activation=a, depth=config.depth, width=config.width, x=x, y=y, seed=config.seed
    )
    for a in ('sigmoid', 'tanh', 'relu')
  }
  print(
    f'\n||dL/dW_l|| per layer, {config.depth} hidden layers of {config.width} (layer 1 is next to the input):'
  )
  for a, n in norms.items():
    print(
      f'{a:>8}: '
      + ' '.join(f'{v:.1e}' for v in n)
      + f'   first/last = {n[0] / n[-1]:.1e}'
    )

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  ax1.plot(z, slope, label="sigmoid'(x)")
  ax1.axhline(0.25, ls='--', c='gray', label='1/4')
  ax1.set_title("sigmoid'(x) <= 1/4")
  ax1.set_xlabel('x (pre-activation)')
  ax1.set_ylabel("sigmoid'(x)")
  ax1.legend()
  for a, n in norms.items():
    ax2.semilogy(np.arange(1, len(n) + 1), n, marker='o', label=a)
  ax2.set_title('gradient norm per layer at initialisation')
  ax2.set_xlabel('layer (1 = input side)')
  ax2.set_ylabel('||dL/dW||')
  ax2.legend(title='activation')
  fig.suptitle(
    f'{viz.run_name(workdir)}: sigmoid saturation, {config.depth} hidden layers '
    f'of {config.width}',
    fontsize=10,
  )
  viz.save_figure(fig, os.path.join(workdir, 'sigmoid_saturation.png'))
  return {
    'sigmoid_grad_max': float(slope.max()),
    'sigmoid_grad_at': at,
    'layer_gradient_norms': {a: n.tolist() for a, n in norms.items()},
    'first_over_last': {a: float(n[0] / n[-1]) for a, n in norms.items()},
  }


# ---------------------------------------------------------------- GD variants


def run_gd_variants(config, workdir):
  train, _ = _digits_onehot()
  params0 = backprop.init(jax.random.key(config.seed), [64, config.hidden, 10])
  vg = backprop.softmax_value_and_grad('tanh')
  full = {k: jnp.asarray(v) for k, v in train.items()}
  track = lambda p: {
    'train_loss': backprop.objective(
      p, full['x'], full['y'], activation='tanh', loss='softmax_ce'
    )
  }  # noqa: E731
  results = {}
  for bs in config.batch_sizes:
    common = dict(
      value_and_grad=vg,
      params=params0,
      tx=optax.sgd(config.learning_rate),
      data=train,
      batch_size=bs,
      num_steps=config.num_updates,
      seed=config.seed,
    )
    _, history = scan.train(**common, track=track)
    # Cost per update: the same run without tracking, compiled, then timed.
    jax.block_until_ready(scan.train(**common))
    times = []
    for _ in range(3):
      t0 = time.perf_counter()
      jax.block_until_ready(scan.train(**common))
      times.append(time.perf_counter() - t0)
    results[bs] = {
      'train_loss': np.asarray(history['train_loss']),
      'seconds_per_update': float(np.median(times)) / config.num_updates,
    }

  name = lambda bs: (
    'full batch'
    if bs == len(train['x'])
    else ('stochastic (1)' if bs == 1 else f'mini-batch ({bs})')
  )  # noqa: E731
  print(
    f'{config.num_updates} updates of SGD, learning rate {config.learning_rate}, on the digits ({len(train["x"])} examples)'
  )
  print(f'{"variant":>18} {"us/update":>10} {"final loss":>11} {"epochs seen":>12}')
  for bs, r in results.items():
    print(
      f'{name(bs):>18} {1e6 * r["seconds_per_update"]:10.1f} {r["train_loss"][-1]:11.4f} {config.num_updates * bs / len(train["x"]):12.2f}'
    )

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  for bs, r in results.items():
    updates = np.arange(1, config.num_updates + 1)
    ax1.plot(updates, r['train_loss'], label=name(bs))
    ax2.plot(updates * r['seconds_per_update'] * 1e3, r['train_loss'], label=name(bs))
  for ax, xlabel in ((ax1, 'updates'), (ax2, 'wall time (ms, compiled)')):
    ax.set_xlabel(xlabel)
    ax.set_ylabel('loss on the whole training set (nats)')
    ax.set_yscale('log')
    ax.legend()
  ax1.set_title('loss per update', fontsize=9)
  ax2.set_title('loss per unit of time', fontsize=9)
  fig.suptitle(
    f'{viz.run_name(workdir)}: full-batch, mini-batch and stochastic gradient '
    f'descent, learning rate {config.learning_rate}',
    fontsize=10,
  )
  viz.save_figure(fig, os.path.join(workdir, 'gd_variants.png'))
  return {
    name(bs): {
      'batch_size': bs,
      'seconds_per_update': r['seconds_per_update'],
      'final_train_loss': float(r['train_loss'][-1]),
      'train_loss': r['train_loss'].tolist(),
    }
    for bs, r in results.items()
  }


# ---------------------------------------------------------------- width and depth


def run_mlp(config, workdir):
  train, test = _digits_onehot()
  table = {}
  for depth, width in itertools.product(config.depths, config.widths):
    if depth == 0 and width != config.widths[0]:
      continue  # no hidden layer: width does not apply
    sizes = [64] + [width] * depth + [10]
    params = backprop.init(jax.random.key(config.seed), sizes)
    vg = lambda p, b: jax.value_and_grad(backprop.objective)(
      p, b['x'], b['y'], activation='relu', loss='softmax_ce'
    )  # noqa: E731
    params, _ = scan.train(
      value_and_grad=vg,
      params=params,
      tx=optax.adam(config.learning_rate),
      data=train,
      batch_size=config.batch_size,
      num_steps=config.num_steps,
      seed=config.seed,
    )
    table[(depth, 0 if depth == 0 else width)] = {
      'params': int(sum(a.size for a in jax.tree.leaves(params))),
      'train_accuracy': backprop.accuracy(params, train, activation='relu'),
      'test_accuracy': backprop.accuracy(params, test, activation='relu'),
    }
  print(
    f'relu MLPs on the digits, Adam {config.learning_rate}, {config.num_steps} steps of {config.batch_size}'
  )
  print(
    f'{"hidden layers":>13} {"width":>6} {"params":>8} {"train acc":>10} {"test acc":>9}'
  )
  for (depth, width), r in table.items():
    print(
      f'{depth:>13} {width:>6} {r["params"]:>8} {r["train_accuracy"]:10.4f} {r["test_accuracy"]:9.4f}'
    )

  fig, ax = plt.subplots(figsize=(6, 4))
  for depth in config.depths:
    points = sorted(
      (w, r['test_accuracy']) for (d, w), r in table.items() if d == depth
    )
    if depth == 0:
      ax.axhline(points[0][1], ls='--', c='gray', label='no hidden layer')
    else:
      ax.plot(*zip(*points, strict=True), marker='o', label=f'{depth} hidden layer(s)')
  ax.set_xscale('log', base=2)
  ax.set_xlabel('hidden width (units per layer)')
  ax.set_ylabel('test accuracy (fraction correct)')
  ax.set_title(
    f'{viz.run_name(workdir)}: relu MLPs on the digits, {config.num_steps} Adam steps',
    fontsize=10,
  )
  ax.legend()
  viz.save_figure(fig, os.path.join(workdir, 'mlp_width_depth.png'))
  return {
    'results': [{'hidden_layers': d, 'width': w, **r} for (d, w), r in table.items()]
  }


TASKS = {
  'chain_rule': run_chain_rule,
  'xor': run_xor,
  'init_symmetry': run_init_symmetry,
  'sigmoid_saturation': run_sigmoid_saturation,
  'gd_variants': run_gd_variants,
  'mlp': run_mlp,
}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  choose('task', config.task, TASKS)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.perf_counter()
  figures = TASKS[config.task](config, workdir)
  summary = {
    'task': config.task,
    'wall_seconds': time.perf_counter() - t0,
    'config': config.to_dict(),
    **figures,
  }
  print(f'\nwrote {writers.write_summary(workdir, summary)}')
  return summary


# XLA:CPU's multi-threaded matrix products may split one product differently
# across threads, so two identical hidden units can come out 1 ulp apart; the
# symmetric saddle of `init_symmetry` amplifies that to a visible difference.
# One thread per product keeps identical units bitwise identical (and these
# problems are too small to gain from threads); XLA's own products, not
# oneDNN's, which the launcher otherwise picks on jaxlib 0.12+.
DETERMINISTIC_DOTS = (
  '--xla_cpu_multi_thread_eigen=false',
  '--xla_cpu_experimental_onednn_custom_call=false',
)

if __name__ == '__main__':
  launch.run(main, xla_flags=DETERMINISTIC_DOTS)
