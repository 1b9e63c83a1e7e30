"""Train and eval steps shared by the classifiers (MLP, CNN, RNN).

Pure functions of arrays; `nkjax.train.loop` jits them with their shardings.
Static options are keyword-only, bound with `functools.partial`.
"""

import zlib

import jax
import jax.numpy as jnp

from nkjax import losses
from nkjax import metrics as metrics_lib


def step_key(rng: jax.Array, step: jax.Array, stream: str) -> jax.Array:
  """The key of a named stream ('dropout', 'noise') at `step`; never reused.

  Derived from the root key by folding in the stream and the step, so a resumed
  run draws exactly the keys an uninterrupted one does.
  """
  # crc32 is a stable id per name; Python's hash() is salted per process.
  stream_id = zlib.crc32(stream.encode()) & 0x7FFFFFFF
  return jax.random.fold_in(jax.random.fold_in(rng, stream_id), step)


def model_variables(state, params) -> dict:
  """The variables to apply the model with: params, and batch stats if any."""
  if state.batch_stats is None:
    return {'params': params}
  return {'params': params, 'batch_stats': state.batch_stats}


def classifier_train_step(
  state, batch, rng, *, l1: float = 0.0, l2: float = 0.0, augment=None
):
  """One update of a classifier on `batch` = `{'image', 'label'}`.

  Minimises mean softmax cross-entropy + l1 * sum|w| + l2 * 0.5 * sum(w^2)
  (over every parameter); updates batch-norm statistics when the state has
  them; `augment(rng, images)`, if given, transforms the images first.

  Returns:
    `(state, metrics)` with `(sum, count)` pairs for `loss` (the data term)
    and `accuracy`, measured on the batch before the update.
  """
  mutable = ['batch_stats'] if state.batch_stats is not None else False
  rngs = {'dropout': step_key(rng, state.step, 'dropout')}
  images = (
    batch['image']
    if augment is None
    else augment(step_key(rng, state.step, 'augment'), batch['image'])
  )

  def loss_fn(params):
    out = state.apply_fn(
      model_variables(state, params), images, train=True, rngs=rngs, mutable=mutable
    )
    logits, updates = out if mutable else (out, {})
    per_example = losses.softmax_cross_entropy(logits=logits, labels=batch['label'])
    loss = jnp.mean(per_example)
    if l1:
      loss += l1 * losses.l1_penalty(params)
    if l2:
      loss += l2 * losses.l2_penalty(params)
    return loss, (per_example, logits, updates)

  grads, (per_example, logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  if mutable:
    state = state.replace(batch_stats=updates['batch_stats'])
  metrics = {
    'loss': metrics_lib.mean(per_example),
    'accuracy': metrics_lib.accuracy(logits=logits, labels=batch['label']),
  }
  return state, metrics


def classifier_eval_step(state, batch):
  """Loss and accuracy `(sum, count)` pairs on a padded batch with a `mask`."""
  logits = state.apply_fn(
    model_variables(state, state.params), batch['image'], train=False
  )
  per_example = losses.softmax_cross_entropy(logits=logits, labels=batch['label'])
  return {
    'loss': metrics_lib.mean(per_example, batch['mask']),
    'accuracy': metrics_lib.accuracy(
      logits=logits, labels=batch['label'], mask=batch['mask']
    ),
  }
