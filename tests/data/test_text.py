import itertools

import numpy as np
import pytest

from nkjax.data import text


def test_pydoc_corpus_ships_offline_and_is_english_prose():
  corpus = text.pydoc_corpus()
  assert len(corpus) > 400_000
  assert 'The "for" statement' in corpus or 'for statement' in corpus


def test_char_vocab_round_trips_and_rejects_unknown_characters(tmp_path):
  vocab = text.CharVocab('hello world')
  assert vocab.decode(vocab.encode('hello')) == 'hello'
  assert len(vocab) == len(set('hello world'))
  vocab.save(str(tmp_path / 'v.json'))
  assert text.CharVocab.load(str(tmp_path / 'v.json')).chars == vocab.chars
  with pytest.raises(ValueError, match="characters not in the vocabulary: 'xz'"):
    vocab.encode('xz')


def test_word_vocab_pads_cuts_and_maps_rare_words_to_unknown():
  vocab = text.WordVocab(['a a a b b c', 'a b'], size=4)  # <pad>, <unk>, a, b
  assert vocab.words == ['<pad>', '<unk>', 'a', 'b']
  out = vocab.encode(['b a c', 'a a a a a a', ''], max_len=4)
  np.testing.assert_array_equal(
    out['tokens'], [[3, 2, 1, 0], [2, 2, 2, 2], [0, 0, 0, 0]]
  )
  np.testing.assert_array_equal(out['length'], [3, 4, 1])
  assert text.words("It<br />was GOOD, isn't it?") == [
    'it',
    'was',
    'good',
    "isn't",
    'it',
  ]


def test_windows_are_consecutive_tokens_and_resumable():
  tokens = np.arange(1000, dtype=np.int32)
  a = list(
    itertools.islice(text.random_windows(tokens, seq_len=16, batch_size=4, seed=1), 6)
  )
  b = list(
    itertools.islice(
      text.random_windows(tokens, seq_len=16, batch_size=4, seed=1, start_step=4), 2
    )
  )
  for x, y in zip(a[4:], b, strict=True):
    np.testing.assert_array_equal(x['tokens'], y['tokens'])
  assert a[0]['tokens'].shape == (4, 17)
  assert np.all(np.diff(a[0]['tokens'], axis=1) == 1)  # consecutive
  evals = list(text.consecutive_windows(tokens, seq_len=100, batch_size=4))
  real = np.concatenate([e['tokens'][e['mask'] > 0] for e in evals])
  assert len(real) == 9  # (1000 - 1) // 100 windows of 101, overlapping by one token
  np.testing.assert_array_equal(real[:, :-1].reshape(-1), tokens[:900])
