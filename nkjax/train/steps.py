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


def model_variables(state, params=None) -> dict:
  """The variables to apply `state`'s model with: `params` (default the
  state's own), and the state's batch stats if it has any."""
  params = state.params if params is None else params
  if state.batch_stats is None:
    return {'params': params}
  return {'params': params, 'batch_stats': state.batch_stats}


def classifier_train_step(
  state,
  batch,
  rng,
  *,
  l1: float = 0.0,
  l2: float = 0.0,
  augment=None,
  inputs: tuple[str, ...] = ('image',),
):
  """One update of a classifier on `batch` = `{'image', 'label'}`.

  The model is called with `batch[k] for k in inputs`: ('image',) for images,
  ('tokens', 'length') for padded token sequences.

  Minimises mean softmax cross-entropy + l1 * sum|w| + l2 * 0.5 * sum(w^2)
  (over every parameter); updates batch-norm statistics when the state has
  them; `augment(rng, images)`, if given, transforms the images first.

  Returns:
    `(state, metrics)` with `(sum, count)` pairs for `loss` (the data term)
    and `accuracy`, measured on the batch before the update.
  """
  mutable = ['batch_stats'] if state.batch_stats is not None else False
  rngs = {'dropout': step_key(rng, state.step, 'dropout')}
  args = [batch[k] for k in inputs]
  if augment is not None:
    args[0] = augment(step_key(rng, state.step, 'augment'), args[0])

  def loss_fn(params):
    out = state.apply_fn(
      model_variables(state, params), *args, train=True, rngs=rngs, mutable=mutable
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


def classifier_eval_step(state, batch, *, inputs: tuple[str, ...] = ('image',)):
  """Loss and accuracy `(sum, count)` pairs on a padded batch with a `mask`."""
  logits = state.apply_fn(
    model_variables(state, state.params), *[batch[k] for k in inputs], train=False
  )
  per_example = losses.softmax_cross_entropy(logits=logits, labels=batch['label'])
  return {
    'loss': metrics_lib.mean(per_example, batch['mask']),
    'accuracy': metrics_lib.accuracy(
      logits=logits, labels=batch['label'], mask=batch['mask']
    ),
  }


def _lm_outputs(state, batch):
  # Teacher forcing: the model reads tokens[:, :-1] and predicts tokens[:, 1:].
  tokens = batch['tokens']
  logits, _ = state.apply_fn({'params': state.params}, tokens[:, :-1], train=False)
  return logits, tokens[:, 1:]


def lm_train_step(state, batch, rng):
  """One update of a language model on `batch['tokens'] [batch, time + 1]`.

  Returns `(sum, count)` pairs over every predicted token: `loss` in nats
  (perplexity = exp(loss), bits per token = loss / ln 2) and `accuracy`.
  """
  del rng  # no dropout in the language models

  def loss_fn(params):
    logits, targets = _lm_outputs(state.replace(params=params), batch)
    per_token = losses.softmax_cross_entropy(logits=logits, labels=targets)
    return jnp.mean(per_token), (per_token, logits, targets)

  grads, (per_token, logits, targets) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  return state, _lm_metrics(per_token, logits, targets)


def lm_eval_step(state, batch):
  """Per-token loss and accuracy pairs; `batch['mask']` `[batch]` drops padding rows."""
  logits, targets = _lm_outputs(state, batch)
  per_token = losses.softmax_cross_entropy(logits=logits, labels=targets)
  return _lm_metrics(per_token, logits, targets, batch['mask'])


def _lm_metrics(per_token, logits, targets, mask=None):
  if mask is not None:
    mask = jnp.broadcast_to(mask[:, None], targets.shape).reshape(-1)
  return {
    'loss': metrics_lib.mean(per_token.reshape(-1), mask),
    'accuracy': metrics_lib.accuracy(
      logits=logits.reshape(-1, logits.shape[-1]), labels=targets.reshape(-1), mask=mask
    ),
  }


def gather_batch(train_step):
  """`train_step` for a training set kept on the device: the step's batch is
  `{'index': [b]}` and its fourth argument the whole training arrays (the
  loop's `frozen`, replicated on every device), whose rows it gathers.

  >>> import jax.numpy as jnp
  >>> seen = gather_batch(lambda state, batch, rng: (state, batch))
  >>> arrays = {'x': jnp.arange(10.0) * 10}
  >>> seen(0, {'index': jnp.array([3, 1])}, None, arrays)[1]['x'].tolist()
  [30.0, 10.0]
  """

  def step(state, batch, rng, arrays):
    return train_step(state, {k: v[batch['index']] for k, v in arrays.items()}, rng)

  return step
