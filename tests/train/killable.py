"""A small run that a test can kill with SIGKILL at a chosen step.

    python -m tests.train.killable KIND WORKDIR NUM_STEPS KILL_AT OUT

KIND is `mlp` (a classifier) or `gan` (an EMA'd MLP GAN, k = 2); the process
kills itself with SIGKILL when it is about to fetch the batch of step KILL_AT
(0: never), which is right after the asynchronous save of step KILL_AT - 1
begins when that step saves. A run that completes writes its final state's
leaves to OUT (.npz). `run` is imported by the test for the uninterrupted run.
"""

import functools
import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.data import images
from nkjax.models import gan as gan_models
from nkjax.models.mlp import MLP
from nkjax.train import gan, loop, optim, sharding, steps
from nkjax.train import state as state_lib

CHECKPOINT_EVERY = 5


def run(kind: str, workdir: str, num_steps: int, kill_at: int = 0):
  mesh = sharding.data_mesh()
  data = images.load('digits', batch_size=16, eval_batch_size=64, seed=0)
  rng = jax.random.key(0)
  if kind == 'mlp':
    state = state_lib.create(
      model=MLP(hidden=(16,), num_outputs=10, dropout_rate=0.1),
      tx=optim.make_optimizer(name='adam', learning_rate=1e-2),
      rng=rng,
      inputs=(jnp.zeros((1, 8, 8, 1)),),
    )
    train_step = steps.classifier_train_step
  else:
    k_g, k_d = jax.random.split(rng)

    def tx():
      return optim.make_optimizer(name='adam', learning_rate=2e-4, b1=0.5)

    g = state_lib.create(
      model=gan_models.MLPGenerator(hidden=(16,)), tx=tx(), rng=k_g,
      inputs=(jnp.zeros((1, 4)),),
    )  # fmt: skip
    d = state_lib.create(
      model=gan_models.MLPDiscriminator(hidden=(16,)), tx=tx(), rng=k_d,
      inputs=(jnp.zeros((1, 8, 8, 1)),),
    )  # fmt: skip
    state = gan.create(g, d, ema=True)
    train_step = functools.partial(gan.gan_round, k=2, latent_dim=4)

  def batches(start):
    for step, batch in enumerate(data.train_batches(start), start=start + 1):
      if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
      if kind == 'gan':  # k = 2 updates of 8 real images each
        batch = {'image': batch['image'] * 2.0 - 1.0, 'label': batch['label']}
      yield batch

  return loop.fit(
    state=state, train_step=train_step, train_batches=batches, num_steps=num_steps,
    workdir=workdir, rng=rng, mesh=mesh, examples_per_step=16, log_every=5,
    checkpoint_every=CHECKPOINT_EVERY, loss_key='loss' if kind == 'mlp' else 'd_loss',
  )  # fmt: skip


def leaves(state) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


if __name__ == '__main__':
  kind, workdir, num_steps, kill_at, out = sys.argv[1:]
  result = run(kind, workdir, int(num_steps), int(kill_at))
  np.savez(out, *leaves(result.state))
