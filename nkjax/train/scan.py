"""Whole training runs as one compiled `lax.scan`, for problems that fit in memory.

The course's small experiments (XOR, initialisation, gradient-descent variants,
width studies on the digits) take thousands of tiny updates. Dispatching each
from Python would cost more than computing it; scanning over a precomputed
schedule of batch indices compiles the run once and keeps it on the device.
Runs that need checkpoints, eval cadences and sharding use `nkjax.train.loop`.
"""

import functools
import itertools
from collections.abc import Callable, Mapping

import jax
import numpy as np
import optax

from nkjax.data import batching


def index_schedule(n: int, *, batch_size: int, seed: int, num_steps: int) -> np.ndarray:
  """`[num_steps, batch_size]` example indices, the batches `train_batches` draws."""
  stream = batching.train_batches({'i': np.arange(n)}, batch_size=batch_size, seed=seed)
  return np.stack([b['i'] for b in itertools.islice(stream, num_steps)])


def train(
  *,
  value_and_grad: Callable,
  params,
  tx: optax.GradientTransformation,
  data: Mapping[str, np.ndarray],
  batch_size: int,
  num_steps: int,
  seed: int = 0,
  track: Callable | None = None,
):
  """Runs `num_steps` updates of `tx` on shuffled mini-batches of `data`.

  Args:
    value_and_grad: `(params, batch) -> (loss, grads)`, e.g. `jax.value_and_grad`
      of a loss, or a manual backward pass.
    data: equal-length arrays; batch s holds the rows `index_schedule` gives.
    batch_size: 1 for stochastic, `len(data)` for full-batch gradient descent.
    track: optional `params -> dict of scalars`, evaluated after every update
      (e.g. the loss on the whole training set).

  Returns:
    `(params, history)`: history maps 'loss' (each update's batch loss, before
    the update) and every `track` key to a `[num_steps]` array.
  """
  n = len(next(iter(data.values())))
  idx = index_schedule(n, batch_size=batch_size, seed=seed, num_steps=num_steps)
  return _run(
    params, dict(data), idx, value_and_grad=value_and_grad, tx=tx, track=track
  )


# Static function arguments are keyed by identity: calling `train` again with the
# same functions (e.g. to time a run) reuses the compiled scan.
@functools.partial(jax.jit, static_argnames=('value_and_grad', 'tx', 'track'))
def _run(params, data, idx, *, value_and_grad, tx, track):
  def update(carry, rows):
    params, opt_state = carry
    batch = jax.tree.map(lambda a: a[rows], data)
    loss, grads = value_and_grad(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), {'loss': loss, **(track(params) if track else {})}

  (params, _), history = jax.lax.scan(update, (params, tx.init(params)), idx)
  return params, history
