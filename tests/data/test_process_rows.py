"""Every loader gives each process its own rows of each global batch: the
processes' rows, stacked in process order, are the one-process batch."""

import itertools

import numpy as np
import pytest

from nkjax.data import batching, images, text


def _loaders(process_index, process_count):
  shard = {'process_index': process_index, 'process_count': process_count}
  tokens = np.arange(5000) % 97
  arrays = {'tokens': np.arange(300).reshape(100, 3), 'label': np.arange(100) % 2}
  return {
    'digits (mlp, cnn, gan, seq_digits)': images.load(
      'digits', batch_size=8, eval_batch_size=16, seed=3, **shard
    ),
    'char_lm windows': text.windows(
      'corpus',
      tokens[:4000],
      tokens[4000:],
      seq_len=10,
      batch_size=8,
      eval_batch_size=16,
      seed=3,
      vocab_size=97,
      **shard,
    ),  # fmt: skip
    'sentiment arrays': batching.from_arrays(
      'reviews',
      arrays,
      arrays,
      batch_size=8,
      eval_batch_size=16,
      seed=3,
      num_classes=2,
      **shard,
    ),  # fmt: skip
  }


def _first(iterator, n):
  return list(itertools.islice(iterator, n))


@pytest.mark.parametrize('name', list(_loaders(0, 1)))
def test_two_processes_split_every_batch_into_their_own_rows(name):
  whole = _loaders(0, 1)[name]
  parts = [_loaders(i, 2)[name] for i in range(2)]
  for kind in ('train', 'eval'):
    if kind == 'train':
      want = _first(whole.train_batches(5), 3)  # resumed at step 5, three batches
      got = [_first(p.train_batches(5), 3) for p in parts]
    else:
      want = list(whole.eval_batches())
      got = [list(p.eval_batches()) for p in parts]
    assert len(got[0]) == len(got[1]) == len(want)
    for w, a, b in zip(want, *got, strict=True):
      assert set(a) == set(w)
      for key in w:
        assert len(a[key]) == len(w[key]) // 2
        np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), w[key])


def test_a_batch_that_does_not_split_over_the_processes_is_one_line():
  with pytest.raises(ValueError, match='batch size 9 is not divisible by the 2'):
    next(images.load('digits', batch_size=9, eval_batch_size=16, seed=0,
                     process_index=0, process_count=2).train_batches(0))  # fmt: skip
