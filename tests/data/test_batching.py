import itertools

import numpy as np
import pytest

from nkjax.data import batching

ARRAYS = {'x': np.arange(50), 'y': np.arange(50) * 10}


def test_a_resumed_stream_continues_the_uninterrupted_one():
  straight = list(
    itertools.islice(batching.train_batches(ARRAYS, batch_size=8, seed=3), 20)
  )
  resumed = list(
    itertools.islice(
      batching.train_batches(ARRAYS, batch_size=8, seed=3, start_step=13), 7
    )
  )
  for a, b in zip(straight[13:], resumed, strict=True):
    np.testing.assert_array_equal(a['x'], b['x'])


def test_each_epoch_is_a_permutation_without_repeats_and_epochs_differ():
  # 50 examples, batch 8: 6 batches an epoch, the last 2 examples dropped.
  stream = batching.train_batches(ARRAYS, batch_size=8, seed=0)
  epochs = [np.concatenate([next(stream)['x'] for _ in range(6)]) for _ in range(2)]
  for e in epochs:
    assert len(set(e.tolist())) == 48
  assert not np.array_equal(epochs[0], epochs[1])
  b = next(batching.train_batches(ARRAYS, batch_size=8, seed=0))
  np.testing.assert_array_equal(b['y'], b['x'] * 10)  # rows stay aligned


def test_process_rows_partition_the_global_batch():
  global_batch = next(batching.train_batches(ARRAYS, batch_size=8, seed=1))['x']
  parts = [
    next(
      batching.train_batches(
        ARRAYS, batch_size=8, seed=1, process_index=i, process_count=4
      )
    )['x']
    for i in range(4)
  ]
  np.testing.assert_array_equal(np.concatenate(parts), global_batch)


def test_eval_batches_cover_every_example_once_with_a_mask():
  batches = list(batching.eval_batches(ARRAYS, batch_size=16))
  assert all(len(b['x']) == 16 for b in batches)
  real = np.concatenate([b['x'][b['mask'] == 1] for b in batches])
  np.testing.assert_array_equal(real, ARRAYS['x'])
  assert sum(b['mask'].sum() for b in batches) == 50


def test_bad_batch_sizes_are_clear_errors():
  with pytest.raises(ValueError, match='between 1 and the 50 training examples'):
    next(batching.train_batches(ARRAYS, batch_size=64, seed=0))
  with pytest.raises(ValueError, match='not divisible by the 3 processes'):
    next(batching.train_batches(ARRAYS, batch_size=8, seed=0, process_count=3))


def test_collect_keeps_the_first_real_examples_in_order():
  got = batching.collect(batching.eval_batches(ARRAYS, batch_size=16), limit=20)
  np.testing.assert_array_equal(got['x'], ARRAYS['x'][:20])
  np.testing.assert_array_equal(got['y'], ARRAYS['y'][:20])
  assert 'mask' not in got
  # A limit past the end gives every example once: the padding is dropped.
  whole = batching.collect(batching.eval_batches(ARRAYS, batch_size=16), limit=999)
  np.testing.assert_array_equal(whole['x'], ARRAYS['x'])
