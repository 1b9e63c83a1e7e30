"""Batches from arrays in memory: seeded, resumable, per-process, padded for eval."""

from collections.abc import Iterator, Mapping

import numpy as np

from nkjax.data.dataset import Dataset
from nkjax.errors import UserError


def local_rows(batch_size: int, process_index: int, process_count: int) -> slice:
  """This process's rows of a global batch: the `process_index`-th of
  `process_count` equal, consecutive parts."""
  if batch_size % process_count:
    raise UserError(
      f'batch size {batch_size} is not divisible by the {process_count} processes'
    )
  local = batch_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


def train_indices(
  n: int,
  *,
  batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[np.ndarray]:
  """The example indices of this process's rows of each training batch, endless.

  Each epoch is a fresh permutation of the `n` examples drawn from `(seed,
  epoch)`; the last partial batch of an epoch is dropped. Batch `s` depends
  only on `(seed, s)`, so a run resumed at `start_step` sees exactly the
  batches an uninterrupted run does.
  """
  if not 0 < batch_size <= n:
    raise UserError(
      f'batch size {batch_size} must be between 1 and the {n} training examples'
    )
  rows = local_rows(batch_size, process_index, process_count)
  per_epoch = n // batch_size
  epoch, perm = -1, None
  step = start_step
  while True:
    e, i = divmod(step, per_epoch)
    if e != epoch:
      epoch, perm = e, np.random.default_rng([seed, e]).permutation(n)
    yield perm[i * batch_size : (i + 1) * batch_size][rows]
    step += 1


def train_batches(
  arrays: Mapping[str, np.ndarray],
  *,
  batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """An endless stream of shuffled batches of `arrays` (equal-length arrays,
  e.g. `{'image': ..., 'label': ...}`), in the order of `train_indices`.

  `batch_size` is the global batch size; this process yields its rows only.
  """
  n = len(next(iter(arrays.values())))
  for idx in train_indices(
    n, batch_size=batch_size, seed=seed, start_step=start_step,
    process_index=process_index, process_count=process_count,
  ):  # fmt: skip
    yield {k: v[idx] for k, v in arrays.items()}


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """Pads every array along axis 0 to `size` with zeros and adds `mask` (1 real, 0 pad)."""
  n = len(next(iter(batch.values())))
  out = {
    k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
    for k, v in batch.items()
  }
  out['mask'] = (np.arange(size) < n).astype(np.float32)
  return out


def eval_batches(
  arrays: Mapping[str, np.ndarray],
  *,
  batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """One ordered pass over every example, each batch padded to `batch_size` with a mask."""
  n = len(next(iter(arrays.values())))
  rows = local_rows(batch_size, process_index, process_count)
  for start in range(0, n, batch_size):
    batch = pad_batch(
      {k: v[start : start + batch_size] for k, v in arrays.items()}, batch_size
    )
    yield {k: v[rows] for k, v in batch.items()}


def collect(
  batches: Iterator[Mapping[str, np.ndarray]], limit: int | None = None
) -> dict[str, np.ndarray]:
  """The real examples of a padded pass (`eval_batches` or a TFDS eval stream) as
  whole arrays, without `mask`: all of them, or the first `limit`."""
  parts, n = [], 0
  for batch in batches:
    keep = batch['mask'].astype(bool)
    parts.append({k: v[keep] for k, v in batch.items() if k != 'mask'})
    n += int(keep.sum())
    if limit is not None and n >= limit:
      break
  if not parts:
    raise UserError('no examples to collect: the split is empty')
  return {k: np.concatenate([p[k] for p in parts])[:limit] for k in parts[0]}


def from_arrays(
  name: str,
  train: Mapping[str, np.ndarray],
  test: Mapping[str, np.ndarray],
  *,
  batch_size: int,
  eval_batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
  **info,
) -> Dataset:
  """A `Dataset` over equal-length arrays in memory (the digits, an encoded corpus).

  `info` fills the record's remaining fields (`num_classes`, `example_shape`,
  `class_names`); batch sizes are global, each process gets its rows.
  """
  shard = {'process_index': process_index, 'process_count': process_count}
  n = len(next(iter(train.values())))
  return Dataset(
    name=name,
    train_batches=lambda start: train_batches(
      train, batch_size=batch_size, seed=seed, start_step=start, **shard
    ),
    eval_batches=lambda: eval_batches(test, batch_size=eval_batch_size, **shard),
    train_eval_batches=lambda: eval_batches(train, batch_size=eval_batch_size, **shard),
    train_arrays=dict(train),
    train_indices=lambda start: train_indices(
      n, batch_size=batch_size, seed=seed, start_step=start, **shard
    ),
    num_train=n,
    num_test=len(next(iter(test.values()))),
    **info,
  )
