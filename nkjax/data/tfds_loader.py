"""Streaming TFDS datasets through tf.data, as numpy batches.

Why tf.data: preparing a TFDS dataset needs TensorFlow anyway, and tf.data gives
parallel decoding, shuffling and prefetching on the host while JAX owns the
accelerator. TensorFlow is imported only here, only when a TFDS dataset is
named, so the embedded default runs never pay its ~6 s import; it is told to
see no GPU, so it never takes accelerator memory from JAX.
"""

import functools
from collections.abc import Callable, Iterator

import numpy as np

from nkjax.data.batching import pad_batch
from nkjax.errors import UserError


@functools.cache
def import_tf():
  """TensorFlow with its GPUs hidden, or a one-line error naming the extra."""
  try:
    import tensorflow as tf
  except ImportError as e:
    raise UserError(
      "TFDS datasets need TensorFlow: pip install -e '.[tfds]' (the embedded "
      'default, --config.dataset=digits, does not)'
    ) from e
  tf.config.set_visible_devices([], 'GPU')
  return tf


def cause(error: BaseException) -> str:
  """The error's type and the first line of its message, for a one-line report."""
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0][:200]}' if lines else type(error).__name__


def builder(name: str, *, data_dir: str | None, offline_hint: str):
  """A prepared TFDS builder; downloads and prepares it first if it must.

  Args:
    offline_hint: what to use instead, quoted when it cannot be fetched.
  """
  import_tf()
  import tensorflow_datasets as tfds

  b = tfds.builder(name, data_dir=data_dir)
  if not b.is_prepared():
    try:
      b.download_and_prepare()
    except ImportError as e:
      # A missing module is an install problem, not a network one: say which.
      raise UserError(
        f'preparing TFDS dataset {name!r} needs a module that is not installed '
        f"({type(e).__name__}: {e}); pip install -e '.[tfds]'"
      ) from e
    except Exception as e:  # noqa: BLE001 - any failure to fetch means the same to the user
      raise UserError(
        f'TFDS dataset {name!r} is not prepared in {b.data_dir} and could not be '
        f'fetched ({cause(e)}); {offline_hint}, or prepare it on a machine '
        'with network and pass --config.data_dir=DIR'
      ) from e
  return b


def num_examples(b, split: str) -> int | None:
  """Examples in `split` per the dataset's metadata; None where it has none."""
  try:
    return b.info.splits[split].num_examples
  except KeyError:
    return None


def batches(
  b,
  *,
  split: str,
  batch_size: int,
  preprocess: Callable,
  train: bool,
  seed: int = 0,
  start_step: int = 0,
  shuffle_buffer: int = 10_000,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """This process's part of each global batch of `split`, as numpy dicts.

  Args:
    b: a builder from `builder()`.
    split: a TFDS split; each process reads an even share of it.
    batch_size: the global batch size.
    preprocess: a tf function from one example dict to one example dict.
    train: shuffled, repeated, remainder dropped; otherwise one ordered pass
      with the last batch padded and a `mask` added (see `pad_batch`).
    seed: shuffle seed; mixed with `start_step` so a resumed run reshuffles
      (tf.data streams do not resume mid-epoch).
  """
  tf = import_tf()
  import tensorflow_datasets as tfds

  if batch_size % process_count:
    raise UserError(
      f'batch size {batch_size} is not divisible by the {process_count} processes'
    )
  local = batch_size // process_count
  split = tfds.even_splits(split, n=process_count)[process_index]
  read_config = tfds.ReadConfig(shuffle_seed=seed + start_step)
  ds = b.as_dataset(split=split, shuffle_files=train, read_config=read_config)
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  if train:
    # Shuffle, then repeat: each epoch is a permutation, and a small split never
    # fills the buffer with copies of itself (48 mocked faces took 28 s that way).
    ds = ds.shuffle(shuffle_buffer, seed=seed + start_step).repeat()
  ds = ds.batch(local, drop_remainder=train).prefetch(tf.data.AUTOTUNE)
  for batch in tfds.as_numpy(ds):
    yield batch if train else pad_batch(batch, local)
