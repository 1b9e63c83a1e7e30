"""The super-resolution losses of nkjax.losses against closed forms."""

import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import losses


def test_pixel_losses_are_per_example_means_of_squares_and_magnitudes():
  # Example 0 is off by 0.5 everywhere, example 1 by -2 on one pixel of 2 x 3 x 1.
  label = jnp.zeros((2, 2, 3, 1))
  out = label.at[0].set(0.5).at[1, 1, 2, 0].set(-2.0)
  np.testing.assert_allclose(losses.mse(out, label), [0.25, 4.0 / 6], rtol=1e-6)
  np.testing.assert_allclose(losses.mae(out, label), [0.5, 2.0 / 6], rtol=1e-6)
  assert losses.PIXEL_LOSSES == {'mse': losses.mse, 'l1': losses.mae}


@pytest.mark.parametrize('name', ['mse', 'l1'])
def test_pixel_losses_vanish_exactly_on_equal_images(name):
  x = jnp.linspace(0, 1, 2 * 4 * 4 * 3).reshape(2, 4, 4, 3)
  np.testing.assert_array_equal(losses.PIXEL_LOSSES[name](x, x), [0.0, 0.0])
