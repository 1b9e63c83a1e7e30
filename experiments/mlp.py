"""An MLP classifier on the embedded digits (default), MNIST or Fashion-MNIST.

  python experiments/mlp.py                                  # digits, ~97.5% in ~10 s
  python experiments/mlp.py --config=experiments/mlp.py:smoke
  python experiments/mlp.py --config.dataset=mnist --config.num_steps=5000

Writes checkpoints, metrics.jsonl, TensorBoard events, summary.json and
curves.png into --workdir (default runs/mlp); rerunning resumes.
"""

import jax
import ml_collections

from nkjax import launch, validate
from nkjax.data import images
from nkjax.errors import choose
from nkjax.models.mlp import MLP
from nkjax.train import classify, loop, optim, sharding

PRESETS = ('default', 'smoke')
CHECKS = {**validate.TRAINING, 'hidden': validate.each(validate.count, min_len=0)}

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  **classify.DESCRIPTIONS,
  'hidden': 'widths of the hidden layers; () for a linear classifier',
  'activation': "the hidden layers' nonlinearity, e.g. relu, tanh, sigmoid",
  'dropout_rate': 'dropout probability after each hidden layer (not the keep rate)',
}


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.update(classify.default_fields())
  c.hidden = (512, 512)
  c.activation = 'relu'
  c.dropout_rate = 0.2
  if preset == 'smoke':
    c.hidden = (32,)
    c.num_steps = 20
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint_every = 10
  return c


def main(config: ml_collections.ConfigDict, workdir: str) -> loop.FitResult:
  mesh = sharding.data_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh)
  data = images.load(
    config.dataset,
    batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    seed=config.seed,
    image_size=config.image_size,
    train_subset=config.train_subset,
    data_dir=config.data_dir,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  model = MLP(
    hidden=tuple(config.hidden),
    num_outputs=data.num_classes,
    activation=config.activation,
    dropout_rate=config.dropout_rate,
  )
  tx = optim.build(num_steps=config.num_steps, **optim.fields(config))
  return classify.fit(
    model=model,
    data=data,
    tx=tx,
    mesh=mesh,
    workdir=workdir,
    num_steps=config.num_steps,
    batch_size=config.batch_size,
    seed=config.seed,
    l1=config.l1,
    l2=config.l2,
    log_every=config.log_every,
    eval_every=config.eval_every,
    checkpoint_every=config.checkpoint_every,
    keep_checkpoints=config.keep_checkpoints,
    config=config.to_dict(),
    jit=not config.debug,
    divergence_factor=config.divergence_factor,
    steps_per_call=config.steps_per_call,
    data_on_device=config.data_on_device,
  )


if __name__ == '__main__':
  launch.run(main)
