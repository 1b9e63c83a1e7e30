"""A tiny classifier set-up on the embedded digits, shared by the train tests."""

import functools

import jax
import jax.numpy as jnp

from nkjax.data import images
from nkjax.models.mlp import MLP
from nkjax.train import loop, optim, steps
from nkjax.train import state as state_lib


def tiny_run(
  mesh, workdir, *, num_steps, batch_size=16, seed=0, learning_rate=1e-2, **fit_kwargs
):
  data = images.load('digits', batch_size=batch_size, eval_batch_size=64, seed=seed)
  model = MLP(hidden=(16,), num_outputs=10, dropout_rate=0.1)
  tx = optim.make_optimizer(name='adam', learning_rate=learning_rate)
  rng = jax.random.key(seed)
  state = state_lib.create(
    model=model, tx=tx, rng=rng, inputs=(jnp.zeros((1, 8, 8, 1)),)
  )
  kwargs = dict(
    state=state,
    train_step=functools.partial(steps.classifier_train_step),
    train_batches=data.train_batches,
    num_steps=num_steps,
    workdir=str(workdir),
    rng=rng,
    mesh=mesh,
    examples_per_step=batch_size,
    eval_fn=loop.make_evaluator(
      steps.classifier_eval_step, data.eval_batches, mesh=mesh
    ),
    log_every=5,
    checkpoint_every=5,
  )
  kwargs.update(fit_kwargs)
  return loop.fit(**kwargs)
