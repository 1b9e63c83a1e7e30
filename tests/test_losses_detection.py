import jax
import numpy as np
import pytest

from nkjax import losses


@pytest.mark.parametrize('beta', [1.0, 1 / 9, 2.5])
def test_smooth_l1_against_the_piecewise_definition(beta):
  x = np.linspace(-4, 4, 161).astype(np.float32)
  t = np.float32(0.25)
  d = x - t
  want = np.where(np.abs(d) < beta, 0.5 * d**2 / beta, np.abs(d) - 0.5 * beta)
  np.testing.assert_allclose(
    losses.smooth_l1(x, t, beta=beta), want, rtol=1e-6, atol=1e-7
  )
  # Continuous value and slope at |x| = beta: the slope is clip(x / beta, -1, 1).
  grad = jax.vmap(jax.grad(lambda p: losses.smooth_l1(p, 0.0, beta=beta)))(x)
  np.testing.assert_allclose(grad, np.clip(x / beta, -1, 1), atol=1e-5)


def test_smooth_l1_beta_zero_is_l1_and_shapes_are_elementwise():
  x = np.array([[-2.0, 0.0, 0.5]], np.float32)
  np.testing.assert_allclose(losses.smooth_l1(x, np.zeros_like(x), beta=0.0), np.abs(x))
  assert losses.smooth_l1(np.zeros((2, 3, 4)), np.zeros((2, 3, 4))).shape == (2, 3, 4)
  assert float(losses.smooth_l1(np.float32(1.0), 0.0)) == 0.5  # the two pieces meet
