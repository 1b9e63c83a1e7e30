"""`nkjax.train.loop.fit` with your own step: label smoothing on the digits.

  python examples/fit_custom_step.py [WORKDIR]

The loop brings resume, evaluation, checkpoints, metrics.jsonl, TensorBoard,
summary.json and curves.png; the step is yours. It returns `(sum, count)`
pairs, which the loop adds over steps and devices before dividing. Rerun with
the same WORKDIR and it resumes from the last checkpoint.
"""

import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nkjax import metrics
from nkjax.data import images
from nkjax.models import MLP
from nkjax.train import loop, sharding, state, steps

SMOOTHING = 0.1


def smoothed_step(s, batch, rng):
  """One Adam update on cross-entropy against labels smoothed by `SMOOTHING`."""
  del rng  # no randomness in this step; `steps.step_key(rng, s.step, 'dropout')` if any

  def loss_fn(params):
    logits = s.apply_fn({'params': params}, batch['image'], train=False)
    targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], 10), SMOOTHING)
    per_example = optax.losses.softmax_cross_entropy(logits, targets)
    return per_example.mean(), (per_example, logits)

  grads, (per_example, logits) = jax.grad(loss_fn, has_aux=True)(s.params)
  return s.apply_gradients(grads=grads), {
    'loss': metrics.mean(per_example),
    'accuracy': metrics.accuracy(logits=logits, labels=batch['label']),
  }


def main(workdir: str) -> dict:
  mesh = sharding.data_mesh()  # every device; the batch is split over them
  data = images.load('digits', batch_size=64, eval_batch_size=120, seed=0)
  s = state.create(
    model=MLP(hidden=(64,)), tx=optax.adam(3e-3), rng=jax.random.key(0),
    inputs=(jnp.zeros((1, *data.example_shape)),),
  )  # fmt: skip
  result = loop.fit(
    state=s, train_step=smoothed_step, train_batches=data.train_batches,
    num_steps=200, workdir=workdir, rng=jax.random.key(1), mesh=mesh,
    examples_per_step=64, log_every=50, eval_every=100,
    eval_fn=loop.make_evaluator(steps.classifier_eval_step, data.eval_batches, mesh=mesh),
  )  # fmt: skip
  # Every test digit's prediction, padding dropped, for a confusion matrix.
  predict = loop.make_predictor(
    lambda st, b: {'pred': jnp.argmax(st.apply_fn({'params': st.params}, b['image'], train=False), -1)},
    mesh=mesh,
  )  # fmt: skip
  out = predict(result.state, data.eval_batches())
  confusion = np.zeros((10, 10), int)
  np.add.at(confusion, (out['label'], out['pred']), 1)
  print(
    f'eval accuracy {result.summary["eval"]["accuracy"]:.3f}; confusion diagonal {np.diag(confusion)}'
  )
  return {'summary': result.summary, 'confusion': confusion}


if __name__ == '__main__':
  got = main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
  assert got['confusion'].sum() == 360  # every test digit once
  assert (
    abs(np.trace(got['confusion']) / 360 - got['summary']['eval']['accuracy']) < 1e-9
  )
  assert got['summary']['eval']['accuracy'] > 0.9
