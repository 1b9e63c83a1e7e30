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
  'default',  # the chain_rule task
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

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  'task': 'the exercise: ' + ', '.join(PRESETS[1:]),
  'seed': 'the root random seed: same seed, same run',
  'x': 'chain_rule: the input, 3 values',
  'y': 'chain_rule: the targets, 3 values',
  'w': "chain_rule: the network's weights w1..w12",
  'loss': 'chain_rule: mse, or bce (binary cross-entropy on the sigmoid outputs)',
  'eps': 'chain_rule: the central finite-difference step (float64)',
  'perceptron_lr': "xor: the perceptron's learning rate",
  'perceptron_epochs': "xor: the perceptron's passes over the four points",
  'hidden_activation': "xor: the hidden layer's nonlinearity",
  'learning_rate': 'the learning rate of gradient descent',
  'num_steps': 'training steps',
  'activation': "init_symmetry: the hidden layer's nonlinearity",
  'batch_size': 'training examples per step',
  'constant': 'init_symmetry: the value every weight starts at in the symmetric network',
  'hidden': 'width of the hidden layer',
  'depth': 'sigmoid_saturation: the number of hidden layers',
  'width': 'sigmoid_saturation: the width of each hidden layer',
  'batch_sizes': 'gd_variants: full batch, mini-batch and stochastic batch sizes',
  'num_updates': 'gd_variants: updates of each variant',
  'depths': 'mlp: hidden-layer counts compared',
  'widths': 'mlp: hidden-layer widths compared',
}


def resumable(config) -> bool:
  """No task here keeps checkpoints: each reruns in seconds."""
  return False


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.task = 'chain_rule' if preset == 'default' else preset
  c.seed = 0
  if c.task == 'chain_rule':
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


def run_chain_rule(config, workdir):
  x, y = np.asarray(config.x, np.float64), np.asarray(config.y, np.float64)
  if x.shape != (3,) or y.shape != (3,):
    raise UserError('--config.x and --config.y need 3 values each')
  choose('loss', config.loss, ('mse', 'bce'))
  hand, factors, acts = backprop.chain_rule_by_hand(config.w, x, y, config.loss)

  w1, w2 = backprop.exercise_network(config.w)
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
    (backprop.exercise_loss(w + config.eps * e, x, y, config.loss) - backprop.exercise_loss(w - config.eps * e, x, y, config.loss)) / (2 * config.eps)
    for e in np.eye(12)
  ])  # fmt: skip
  table = {
    'hand': hand,
    'layer_by_layer': flat(layered),
    'jax_grad': flat(autodiff),
    'finite_diff': finite_diff,
  }

  print(
    f'Out_h = {acts["Out_h"]}, Out_o = yhat = {acts["Out_o"]}, loss ({config.loss}) = {backprop.exercise_loss(w, x, y, config.loss):.6g}'
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


def run_xor(config, workdir):
  w, accuracies, mistakes, visited = backprop.perceptron_xor(
    lr=config.perceptron_lr, epochs=config.perceptron_epochs, seed=config.seed
  )
  best_line = backprop.best_linear_accuracy_on_xor()
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
    data={'x': backprop.XOR_X, 'y': backprop.XOR_Y[:, None]}, batch_size=4, num_steps=config.num_steps, seed=config.seed,
  )  # fmt: skip
  out, _ = backprop.forward(params, jnp.asarray(backprop.XOR_X), **kw)
  mlp_accuracy = float(np.mean((np.asarray(out[:, 0]) > 0.5) == backprop.XOR_Y))
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
    ax.scatter(
      backprop.XOR_X[:, 0],
      backprop.XOR_X[:, 1],
      c=backprop.XOR_Y,
      cmap='RdBu_r',
      edgecolors='k',
      s=120,
    )
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
      'max_hidden_unit_difference': backprop.hidden_unit_spread(params),
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
    a: backprop.layer_gradient_norms(
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
