import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.ops import resize


def _cubic(x):
  """Keys (1981), a = -0.5, as MATLAB's imresize writes it."""
  ax = np.abs(x)
  return (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1) + (
    -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
  ) * ((ax > 1) & (ax <= 2))


def _contributions(n_in, n_out, scale):
  """MATLAB's contributions(): for each output pixel, 1-based input indices and
  normalised weights, out-of-range indices mirrored by aux = [1..n, n..1]."""
  if scale < 1:
    h = lambda x: scale * _cubic(scale * x)
    width = 4.0 / scale
  else:
    h, width = _cubic, 4.0
  rows = []
  for x in range(1, n_out + 1):
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = math.floor(u - width / 2)
    taps = [left + j for j in range(math.ceil(width) + 2)]
    weights = np.array([h(u - t) for t in taps], np.float64)
    weights /= weights.sum()
    aux = list(range(1, n_in + 1)) + list(range(n_in, 0, -1))
    mirrored = [aux[(t - 1) % len(aux)] for t in taps]
    rows.append(list(zip(mirrored, weights, strict=True)))
  return rows


def _reference(image, scale):
  """Resizes axis 0 then axis 1 of [h, w, c] with explicit loops over taps."""
  out = np.asarray(image, np.float64)
  for axis in (0, 1):
    n_in = out.shape[axis]
    n_out = math.ceil(scale * n_in - 1e-9)
    moved = np.moveaxis(out, axis, 0)
    result = np.zeros((n_out, *moved.shape[1:]))
    for x, taps in enumerate(_contributions(n_in, n_out, scale)):
      for index, weight in taps:
        result[x] += weight * moved[index - 1]
    out = np.moveaxis(result, 0, axis)
  return out


@pytest.mark.parametrize(
  'shape, scale',
  [
    ((13, 11), 1 / 2),
    ((12, 17), 1 / 3),
    ((16, 19), 1 / 4),
    ((7, 9), 2.0),
    ((5, 8), 3.0),
    ((6, 5), 4.0),
  ],
)
def test_imresize_matches_matlab_contributions_down_and_up_odd_sizes(shape, scale):
  image = np.random.default_rng(0).uniform(0, 1, (*shape, 3)).astype(np.float32)
  got = np.asarray(resize.imresize(jnp.asarray(image), scale=scale))
  want = _reference(image, scale)
  assert (
    got.shape
    == want.shape
    == (
      math.ceil(scale * shape[0] - 1e-9),
      math.ceil(scale * shape[1] - 1e-9),
      3,
    )
  )
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_mirrored_taps_beyond_a_tiny_image_and_batched_input_under_jit():
  # x4 downscaling reaches 8 pixels either side: more than a 3-pixel image has.
  images = np.random.default_rng(1).uniform(0, 1, (2, 3, 6, 1)).astype(np.float32)
  got = jax.jit(lambda x: resize.imresize(x, scale=1 / 4))(jnp.asarray(images))
  assert got.shape == (2, 1, 2, 1)
  for i in range(2):
    np.testing.assert_allclose(got[i], _reference(images[i], 1 / 4), atol=2e-5)


def test_constants_are_kept_and_integer_upscaling_interpolates_the_samples():
  flat = jnp.full((9, 7, 2), 0.3)
  np.testing.assert_allclose(resize.imresize(flat, scale=1 / 3), 0.3, atol=1e-6)
  # Keys' kernel is interpolating: at odd factors every factor-th output pixel
  # sits exactly on an input pixel (u integer when (x - (k + 1) / 2) % k == 0).
  image = np.random.default_rng(2).uniform(0, 1, (6, 5, 1)).astype(np.float32)
  up = np.asarray(resize.imresize(jnp.asarray(image), scale=3.0))
  np.testing.assert_allclose(up[1::3, 1::3], image, atol=1e-6)


def test_bad_scale_is_a_user_error():
  with pytest.raises(UserError, match='scale must be positive'):
    resize.imresize(jnp.zeros((4, 4, 1)), scale=0)
  with pytest.raises(UserError, match=r'\[h, w, c\]'):
    resize.imresize(jnp.zeros((4, 4)), scale=2.0)


@pytest.mark.parametrize(
  'shape, scale', [((13, 11), 1 / 3), ((7, 9), 4.0), ((3, 5), 0.25)]
)
def test_host_numpy_resize_matches_the_loops_and_the_jax_version(shape, scale):
  image = np.random.default_rng(3).uniform(0, 1, (*shape, 2)).astype(np.float32)
  got = resize.imresize_np(image, scale=scale)
  np.testing.assert_allclose(got, _reference(image, scale), atol=1e-6)
  np.testing.assert_allclose(
    got, resize.imresize(jnp.asarray(image), scale=scale), atol=2e-5
  )
