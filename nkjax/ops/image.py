"""Image ops: Gaussian filtering and the standard CIFAR augmentation."""

import jax
import jax.numpy as jnp

from nkjax.ops.conv import conv2d


def gaussian_kernel(size: int = 7, sigma: float = 1.5) -> jax.Array:
  """A normalised `[size, size]` Gaussian: exp(-(x^2 + y^2) / (2 sigma^2)) / Z."""
  r = jnp.arange(size) - (size - 1) / 2
  g = jnp.exp(-(r**2) / (2 * sigma**2))
  k = jnp.outer(g, g)
  return k / jnp.sum(k)


def filter2d(images: jax.Array, kernel: jax.Array) -> jax.Array:
  """Applies a `[k, k]` kernel to every channel of `[n, h, w, c]` images.

  Same size out: edges are padded by reflection, so the border is not darkened.
  """
  k = kernel.shape[0]
  c = images.shape[-1]
  pad = (k - 1) // 2
  x = jnp.pad(
    images, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)), mode='reflect'
  )
  # Channel c reads only input channel c: a diagonal [k, k, c, c] kernel.
  w = kernel[:, :, None, None] * jnp.eye(c)[None, None]
  return conv2d(x, w.astype(images.dtype))


def random_crop_flip(rng: jax.Array, images: jax.Array, *, pad: int = 4) -> jax.Array:
  """Pads by `pad` with zeros, crops back to size at a random offset and flips
  left-right with probability 1/2, independently per image (He et al., 2016)."""
  n, h, w, _ = images.shape
  k_crop, k_flip = jax.random.split(rng)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)
  crop = lambda img, o: jax.lax.dynamic_slice(
    img, (o[0], o[1], 0), (h, w, img.shape[-1])
  )  # noqa: E731
  out = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
  return jnp.where(flip, out[:, :, ::-1, :], out)
