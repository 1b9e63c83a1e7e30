"""The train state: parameters, optimizer state, step, and optional batch statistics."""

from typing import Any

import flax.linen as nn
import jax
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax's TrainState plus the `batch_stats` collection of batch-norm models.

  `batch_stats` is None for models without batch norm. Any pytree with an integer
  `step` field can stand in for it in `nkjax.train.loop.fit` (a GAN keeps two).
  """

  batch_stats: Any = None


def create(
  *, model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, inputs: tuple
) -> TrainState:
  """Initialises `model` on example `inputs` and wraps it with optimizer `tx`.

  Args:
    model: a linen module whose `__call__(inputs, train=...)` takes `train`.
    tx: the optimizer.
    rng: the `params` key.
    inputs: the model's positional inputs for an example batch (only their
      shapes and dtypes matter), e.g. `(images,)` or `(tokens, lengths)`.

  An MLP from 8x8 images through 16 hidden units to 3 classes has
  (64 + 1) * 16 + (16 + 1) * 3 = 1,091 parameters, and no batch statistics:

  >>> import jax, jax.numpy as jnp, optax
  >>> from nkjax.models import MLP
  >>> s = create(
  ...   model=MLP(hidden=(16,), num_outputs=3),
  ...   tx=optax.sgd(0.1),
  ...   rng=jax.random.key(0),
  ...   inputs=(jnp.zeros((1, 8, 8, 1)),),
  ... )
  >>> int(s.step), num_params(s.params), s.batch_stats is None
  (0, 1091, True)
  """
  variables = jax.jit(lambda r, xs: model.init(r, *xs, train=False))(rng, tuple(inputs))
  return TrainState.create(
    apply_fn=model.apply,
    params=variables['params'],
    tx=tx,
    batch_stats=variables.get('batch_stats'),
  )


def num_params(params) -> int:
  """Number of scalars in a parameter tree."""
  return sum(int(p.size) for p in jax.tree.leaves(params))


def param_path(key_path) -> str:
  """A tree path (`jax.tree_util` keys) as the '/'-joined names of the params
  tree, e.g. 'Dense_0/kernel': how `optim.freeze` and `checkpoint.warm_start`
  name a parameter."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in key_path)
