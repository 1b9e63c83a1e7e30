"""Image ops: Gaussian filtering, the CIFAR augmentation, MATLAB's YCbCr."""

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


# ---------------------------------------------------------------- colour
#
# MATLAB's rgb2ycbcr (ITU-R BT.601, studio range) for RGB in [0, 1]: Y in
# [16, 235], Cb and Cr in [16, 240], in units of 1/255. SR papers score the Y
# channel of this transform.
_YCBCR = (
  (65.481, 128.553, 24.966),
  (-37.797, -74.203, 112.0),
  (112.0, -93.786, -18.214),
)
_YCBCR_OFFSET = (16.0, 128.0, 128.0)


def rgb_to_ycbcr(rgb: jax.Array) -> jax.Array:
  """MATLAB's `rgb2ycbcr`: `[..., 3]` RGB in [0, 1] -> `[..., 3]` YCbCr in [0, 255]
  units (Y in [16, 235]), unrounded (MATLAB's double path)."""
  m = jnp.asarray(_YCBCR, jnp.float32)
  return jnp.asarray(rgb, jnp.float32) @ m.T + jnp.asarray(_YCBCR_OFFSET)


def ycbcr_to_rgb(ycbcr: jax.Array) -> jax.Array:
  """The inverse of `rgb_to_ycbcr`: YCbCr in [0, 255] units -> RGB near [0, 1]
  (not clipped)."""
  m = jnp.linalg.inv(jnp.asarray(_YCBCR, jnp.float32))
  return (jnp.asarray(ycbcr, jnp.float32) - jnp.asarray(_YCBCR_OFFSET)) @ m.T


def rgb_to_y(rgb: jax.Array, *, round: bool = False) -> jax.Array:
  """Y of MATLAB's `rgb2ycbcr`: `[..., 3]` RGB in [0, 1] -> `[...]` Y in [16, 235].

  Y = 16 + 65.481 R + 128.553 G + 24.966 B. `round=True` rounds to integers as
  MATLAB's uint8 path does (`rgb2ycbcr` of a uint8 image returns uint8); the
  default keeps the exact values (MATLAB's double path).
  """
  rgb = jnp.asarray(rgb, jnp.float32)
  y = 16.0 + rgb @ jnp.asarray(_YCBCR[0], jnp.float32)
  return jnp.round(y) if round else y
