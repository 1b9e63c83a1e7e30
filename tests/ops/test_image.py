import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.ops import image


def test_gaussian_kernel_is_normalised_symmetric_and_peaks_in_the_middle():
  k = image.gaussian_kernel(7, 1.5)
  assert k.shape == (7, 7)
  assert float(k.sum()) == pytest.approx(1.0)
  np.testing.assert_allclose(k, k.T)
  np.testing.assert_allclose(k, k[::-1, ::-1])
  assert np.unravel_index(np.argmax(k), k.shape) == (3, 3)
  # Separable: the outer product of the 1-D Gaussian exp(-r^2 / 2 sigma^2).
  g = np.exp(-((np.arange(7) - 3.0) ** 2) / (2 * 1.5**2))
  np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), rtol=1e-6)


def test_filter_keeps_constants_and_lowers_variance():
  flat = jnp.full((1, 16, 16, 3), 0.7)
  np.testing.assert_allclose(
    image.filter2d(flat, image.gaussian_kernel()), flat, rtol=1e-6
  )
  noise = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
  blurred = image.filter2d(noise, image.gaussian_kernel())
  assert blurred.shape == noise.shape
  assert float(blurred.std()) < 0.5 * float(noise.std())


def test_random_crop_flip_is_a_shifted_possibly_mirrored_window():
  x = jnp.arange(2 * 8 * 8, dtype=jnp.float32).reshape(2, 8, 8, 1) + 1
  y = image.random_crop_flip(jax.random.key(3), x, pad=2)
  assert y.shape == x.shape
  padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(2):
    windows = [padded[i, a : a + 8, b : b + 8] for a in range(5) for b in range(5)]
    candidates = windows + [w[:, ::-1] for w in windows]
    assert any(np.array_equal(np.asarray(y[i]), w) for w in candidates)
