"""Text data: an offline character corpus, vocabularies, windows and padded sequences.

The default corpus ships with every Python: the English text of the
documentation topics in the standard library's `pydoc_data` (about 465,000
characters), joined in the order of their names. TFDS `tiny_shakespeare` and
`imdb_reviews` load when named.
"""

import collections
import json
import re
from collections.abc import Iterable, Iterator

import numpy as np

from nkjax.data import batching, tfds_loader
from nkjax.data.dataset import Dataset
from nkjax.errors import UserError

OFFLINE_HINT = 'the embedded default --config.corpus=pydoc works offline'


def pydoc_corpus() -> str:
  """The standard library's documentation topics as one string."""
  from pydoc_data.topics import topics

  return '\n'.join(topics[name] for name in sorted(topics))


def tfds_text(name: str, split: str, *, data_dir: str | None) -> str:
  """All the `text` of a TFDS split (tiny_shakespeare keeps each split in one example)."""
  import tensorflow_datasets as tfds

  b = tfds_loader.builder(name, data_dir=data_dir, offline_hint=OFFLINE_HINT)
  ds = b.as_dataset(split=split, shuffle_files=False)
  return ''.join(ex['text'].decode('utf-8') for ex in tfds.as_numpy(ds))


class CharVocab:
  """Characters to ids and back; ids follow the sorted characters."""

  def __init__(self, chars: Iterable[str]):
    self.chars = sorted(set(chars))
    self._ids = {c: i for i, c in enumerate(self.chars)}

  def __len__(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    unknown = sorted(set(text) - set(self._ids))
    if unknown:
      raise UserError(
        f'characters not in the vocabulary: {"".join(unknown)!r}; use only characters of the training corpus'
      )
    return np.fromiter((self._ids[c] for c in text), np.int32, len(text))

  def decode(self, ids: Iterable[int]) -> str:
    return ''.join(self.chars[int(i)] for i in ids)

  def save(self, path: str) -> None:
    with open(path, 'w') as f:
      json.dump({'chars': self.chars}, f)

  @classmethod
  def load(cls, path: str) -> 'CharVocab':
    with open(path) as f:
      return cls(json.load(f)['chars'])


def random_windows(
  tokens: np.ndarray,
  *,
  seq_len: int,
  batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict]:
  """Endless batches of `seq_len + 1` consecutive tokens from random offsets.

  Batch `s` depends only on `(seed, s)`, so a resumed run sees the same batches;
  `batch_size` is global and each process gets its rows of every batch.
  """
  if len(tokens) <= seq_len + 1:
    raise UserError(
      f'the text ({len(tokens)} tokens) is shorter than one window of {seq_len + 1}'
    )
  rows = batching.local_rows(batch_size, process_index, process_count)
  step = start_step
  while True:
    starts = np.random.default_rng([seed, step]).integers(
      0, len(tokens) - seq_len - 1, batch_size
    )[rows]
    yield {'tokens': np.stack([tokens[s : s + seq_len + 1] for s in starts])}
    step += 1


def consecutive_windows(
  tokens: np.ndarray,
  *,
  seq_len: int,
  batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict]:
  """One pass of non-overlapping windows (each predicts `seq_len` tokens), padded
  with a mask; each process gets its rows of every global batch."""
  n = (len(tokens) - 1) // seq_len
  windows = np.stack(
    [tokens[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)]
  )
  yield from batching.eval_batches(
    {'tokens': windows},
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )


def windows(
  name: str,
  train: np.ndarray,
  test: np.ndarray,
  *,
  seq_len: int,
  batch_size: int,
  eval_batch_size: int,
  seed: int,
  vocab_size: int,
  process_index: int = 0,
  process_count: int = 1,
) -> Dataset:
  """A language-modelling `Dataset` of token ids: random training windows and
  one pass of consecutive test windows, `{'tokens': [b, seq_len + 1]}`."""
  shard = {'process_index': process_index, 'process_count': process_count}
  return Dataset(
    name=name,
    train_batches=lambda start: random_windows(
      train,
      seq_len=seq_len,
      batch_size=batch_size,
      seed=seed,
      start_step=start,
      **shard,
    ),  # fmt: skip
    eval_batches=lambda: consecutive_windows(
      test, seq_len=seq_len, batch_size=eval_batch_size, **shard
    ),
    num_train=len(train),
    num_test=len(test),
    num_classes=vocab_size,
    example_shape=(seq_len + 1,),
  )


_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
  """Lower-case words: runs of letters, digits and apostrophes (HTML tags split)."""
  return _WORD.findall(text.lower().replace('<br />', ' '))


class WordVocab:
  """The `size` most frequent training words; id 0 pads, id 1 is any other word."""

  PAD, UNK = 0, 1

  def __init__(self, texts: Iterable[str], *, size: int):
    counts = collections.Counter(w for t in texts for w in words(t))
    self.words = ['<pad>', '<unk>'] + [w for w, _ in counts.most_common(size - 2)]
    self._ids = {w: i for i, w in enumerate(self.words)}

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, texts: Iterable[str], *, max_len: int) -> dict[str, np.ndarray]:
    """`{'tokens': [n, max_len] int32 padded with 0, 'length': [n] int32}`, cut at max_len."""
    rows = [[self._ids.get(w, self.UNK) for w in words(t)][:max_len] for t in texts]
    tokens = np.zeros((len(rows), max_len), np.int32)
    for i, r in enumerate(rows):
      tokens[i, : len(r)] = r
    # An empty text still has length 1 (one pad token), so every sequence has a last step.
    return {
      'tokens': tokens,
      'length': np.maximum([len(r) for r in rows], 1).astype(np.int32),
    }
