import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import losses, metrics


def test_masked_mean_pairs_merge_to_the_mean_of_real_examples():
  rng = np.random.default_rng(0)
  values = rng.normal(size=23).astype(np.float32)
  # Split into uneven padded batches of 8; padding rows carry garbage.
  pairs = []
  for start in range(0, 23, 8):
    chunk = values[start : start + 8]
    padded = np.concatenate([chunk, np.full(8 - len(chunk), 1e6, np.float32)])
    mask = (np.arange(8) < len(chunk)).astype(np.float32)
    s, c = metrics.mean(jnp.asarray(padded), jnp.asarray(mask))
    pairs.append({'x': (s, c)})
  merged = metrics.merge(pairs)
  assert merged['x'][1] == 23
  assert metrics.compute(merged)['x'] == pytest.approx(values.mean(), rel=1e-6)


def test_accuracy_counts_argmax_matches():
  logits = jnp.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 1.0]])
  labels = jnp.array([1, 0, 1, 0])
  correct, count = metrics.accuracy(logits=logits, labels=labels)
  assert (float(correct), float(count)) == (2.0, 4.0)
  correct, count = metrics.accuracy(
    logits=logits, labels=labels, mask=jnp.array([1, 1, 1, 0])
  )
  assert (float(correct), float(count)) == (2.0, 3.0)


def test_zero_count_is_nan():
  assert np.isnan(metrics.compute({'x': (0.0, 0.0)})['x'])


def test_softmax_cross_entropy_matches_numpy_log_softmax():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(5, 7)) * 3
  labels = rng.integers(0, 7, size=5)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  expected = -log_probs[np.arange(5), labels]
  got = losses.softmax_cross_entropy(
    logits=jnp.asarray(logits), labels=jnp.asarray(labels)
  )
  assert got.shape == (5,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_penalties_are_the_textbook_sums():
  params = {'a': jnp.array([1.0, -2.0]), 'b': {'c': jnp.array([[3.0]])}}
  assert float(losses.l2_penalty(params)) == pytest.approx(0.5 * (1 + 4 + 9))
  assert float(losses.l1_penalty(params)) == pytest.approx(1 + 2 + 3)
