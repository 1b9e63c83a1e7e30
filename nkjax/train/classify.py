"""Training a classifier end to end: the part the MLP and CNN experiments share."""

import functools
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from nkjax.errors import UserError
from nkjax.train import loop, optim, steps
from nkjax.train import state as state_lib


def default_fields(**overrides) -> dict:
  """The config fields every classifier experiment shares (data, optimizer,
  loop cadences, seed) with their defaults, `overrides` applied; each
  experiment adds its model's own fields."""
  fields = {
    'dataset': 'digits',
    'data_dir': ml_collections.config_dict.placeholder(str),
    'image_size': ml_collections.config_dict.placeholder(int),  # None: native
    'train_subset': ml_collections.config_dict.placeholder(int),
    **optim.default_fields(optimizer='adam', learning_rate=1e-3, schedule='cosine'),
    'l1': 0.0,
    'l2': 0.0,
    'batch_size': 64,
    'eval_batch_size': 512,
    'num_steps': 1500,
    'log_every': 100,
    'eval_every': 250,
    'checkpoint_every': 500,
    'keep_checkpoints': 2,
    'seed': 0,
    'debug': False,  # True: run the steps without jit
    # Train steps per compiled call (loop.fit); results are those of single steps.
    'steps_per_call': 1,
    # Keep an in-memory training set (the digits) on the device and gather
    # each batch inside the step: no host-to-device copy per step. None: where
    # the training set is in memory and at most DEVICE_DATA_BYTES.
    'data_on_device': ml_collections.config_dict.placeholder(bool),
    # Stop when the loss passes this multiple of its first value; 0: never.
    'divergence_factor': 1000.0,
  }
  fields.update(overrides)
  return fields


# What each field of `default_fields()` means, for the launcher's --help.
DESCRIPTIONS = {
  **optim.DESCRIPTIONS,
  'dataset': 'the data: digits (embedded), or mnist, fashion_mnist, cifar10, celeb_a (TFDS)',
  'data_dir': 'where TFDS keeps its datasets; None: its default',
  'image_size': 'resize images to this side; None: the native size',
  'train_subset': 'train on the first N training examples only; None: all',
  'l1': 'L1 penalty on the weights, added to the loss',
  'l2': 'L2 penalty on the weights, added to the loss',
  'batch_size': 'training examples per step, over all devices',
  'eval_batch_size': 'examples per evaluation batch',
  'num_steps': 'training steps',
  'log_every': 'steps between training-metric lines',
  'eval_every': 'steps between evaluations on the test set; 0: only at the end',
  'checkpoint_every': 'steps between checkpoints; 0: only at the end',
  'keep_checkpoints': 'how many of the latest checkpoints to keep',
  'seed': 'the root random seed: same seed, same run',
  'debug': 'True: run the steps without jit',
  'steps_per_call': 'training steps per compiled call (same results as single steps)',
  'data_on_device': 'keep the training set on the device; None: if in memory and small',
  'divergence_factor': 'stop when the loss passes this multiple of its first value; 0: never',
}


# The largest in-memory training set `fit` keeps on the device unasked: the
# embedded digits (5 MB at 28x28) are; a TFDS set loaded into memory at
# ImageNet scale is not.
DEVICE_DATA_BYTES = 256 * 2**20


def fits_on_device(data) -> bool:
  """Whether `fit(data_on_device=None)` keeps `data`'s training set on the device."""
  if data.train_arrays is None:
    return False
  return (
    sum(np.asarray(a).nbytes for a in data.train_arrays.values()) <= DEVICE_DATA_BYTES
  )


def fit(
  *,
  model: nn.Module,
  data,
  tx: optax.GradientTransformation,
  mesh: Mesh,
  workdir: str,
  num_steps: int,
  batch_size: int,
  seed: int,
  l1: float = 0.0,
  l2: float = 0.0,
  augment: Callable | None = None,
  inputs: tuple[str, ...] = ('image',),
  log_every: int = 100,
  eval_every: int = 0,
  checkpoint_every: int = 0,
  keep_checkpoints: int = 2,
  config: Mapping | None = None,
  jit: bool = True,
  summarize: Callable | None = None,
  divergence_factor: float | None = 1000.0,
  steps_per_call: int = 1,
  data_on_device: bool | None = None,
) -> loop.FitResult:
  """Initialises `model` from `seed` and trains it on `data` with `loop.fit`.

  Keeps the best checkpoint by test accuracy; `augment(rng, images)` runs
  inside the jitted step. See `steps.classifier_train_step` for `l1`, `l2`
  and `inputs`; `data` is a `Dataset`. `steps_per_call` goes to `loop.fit`;
  `data_on_device` keeps `data.train_arrays` on the device for the whole run
  and feeds the step only each batch's indices (`steps.gather_batch`); None
  does so where `data.train_arrays` exists and holds at most
  `DEVICE_DATA_BYTES` (the results are the host path's either way).
  """
  if data_on_device is None:
    data_on_device = fits_on_device(data)
  if data_on_device and data.train_arrays is None:
    raise UserError(
      f'data_on_device keeps an in-memory training set on the device, and '
      f'{data.name!r} is streamed from TFDS; drop --config.data_on_device'
    )
  params_rng, rng = jax.random.split(jax.random.key(seed))
  example = next(iter(data.eval_batches()))
  state = state_lib.create(
    model=model, tx=tx, rng=params_rng, inputs=tuple(example[k][:1] for k in inputs)
  )
  train_step = functools.partial(
    steps.classifier_train_step, l1=l1, l2=l2, augment=augment, inputs=inputs
  )
  train_batches, frozen = data.train_batches, None
  if data_on_device:
    train_step = steps.gather_batch(train_step)
    frozen = data.train_arrays
    train_batches = lambda start: ({'index': i} for i in data.train_indices(start))  # noqa: E731
  return loop.fit(
    state=state,
    loss_unit='nats, cross-entropy',
    train_step=train_step,
    frozen=frozen,
    steps_per_call=steps_per_call,
    train_batches=train_batches,
    num_steps=num_steps,
    workdir=workdir,
    rng=rng,
    mesh=mesh,
    examples_per_step=batch_size,
    eval_fn=loop.make_evaluator(
      functools.partial(steps.classifier_eval_step, inputs=inputs),
      data.eval_batches,
      mesh=mesh,
      jit=jit,
    ),
    eval_every=eval_every,
    log_every=log_every,
    checkpoint_every=checkpoint_every,
    keep_checkpoints=keep_checkpoints,
    best_metric='accuracy',
    config=config,
    jit=jit,
    summarize=summarize,
    divergence_factor=divergence_factor,
  )


def _classes(state, batch, *, inputs: tuple[str, ...] = ('image',)):
  logits = state.apply_fn(
    steps.model_variables(state, state.params), *[batch[k] for k in inputs], train=False
  )
  return {'pred': jnp.argmax(logits, axis=-1)}


def predict(state, batches, *, mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(labels, predicted classes, images)` over one padded pass of `batches`,
  padding dropped (`loop.make_predictor`)."""
  got = loop.make_predictor(_classes, mesh=mesh)(state, batches)
  return got['label'], got['pred'], got['image']


def confusion_matrix(
  labels: np.ndarray, preds: np.ndarray, num_classes: int
) -> np.ndarray:
  """`[true, predicted]` counts."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, preds), 1)
  return cm
