"""MATLAB-compatible bicubic `imresize`, in JAX, with static shapes.

Super-resolution papers (SRCNN, VDSR, SRGAN and the benchmarks since) make low-
resolution inputs and the bicubic baseline with MATLAB's `imresize(x, scale,
'bicubic')`. Its definition (MATLAB's `contributions()`):

* output size `ceil(scale * n)` along each axis;
* output pixel `x` (1-based) samples the input at `u = x / scale + (1 - 1 / scale) / 2`;
* Keys' cubic kernel with a = -0.5, stretched by `1 / scale` when downscaling
  (antialiasing), `k_s(t) = scale * k(scale * t)`;
* the weights of each output pixel are normalised to sum to one;
* taps that fall outside the image are mirrored with the edge pixel repeated
  (`[1..n, n..1]`, numpy's 'symmetric' padding).

`jax.image.scale_and_translate` computes the same kernel and sample positions but
renormalises over the in-range taps at the border instead of mirroring; padding
the image symmetrically first (by the kernel's reach) and translating the
sampling grid by the padding makes it exact everywhere.

Works on float images in any range; MATLAB's uint8 path also rounds after each
axis, which this float version does not (differences of at most 1/255 there).
"""

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError


def output_size(n: int, scale: float) -> int:
  """MATLAB's output length `ceil(scale * n)`; a hair of tolerance so that, say,
  `n * (1 / 3)` rounding up to 100.00000000000001 still gives 100."""
  return int(math.ceil(scale * n - 1e-9))


def _reach(scale: float) -> int:
  """How far (in input pixels) the kernel reaches from a sample position: 2 taps
  either side for Keys' kernel, stretched by 1 / scale when downscaling."""
  return int(math.ceil(2.0 / min(scale, 1.0))) + 1


def imresize(
  images: jax.Array,
  *,
  scale: float | Sequence[float],
) -> jax.Array:
  """Resizes like MATLAB's `imresize(images, scale, 'bicubic')` (float path).

  Args:
    images: float `[h, w, c]` or `[n, h, w, c]` (any value range; values are
      not clipped, since cubic interpolation over- and undershoots).
    scale: one factor for both axes (`1 / 4` downscales by 4, `3` upscales by
      3) or a `(scale_h, scale_w)` pair; static.

  Returns:
    `[..., ceil(scale_h * h), ceil(scale_w * w), c]`, in `images`' float dtype.

  >>> imresize(jnp.ones((1, 9, 7, 3)), scale=1 / 2).shape
  (1, 5, 4, 3)
  """
  scales = (scale, scale) if isinstance(scale, int | float) else tuple(scale)
  if len(scales) != 2 or min(scales) <= 0:
    raise UserError(f'imresize scale must be positive (one or two), got {scale!r}')
  if images.ndim not in (3, 4):
    raise UserError(
      f'imresize takes [h, w, c] or [n, h, w, c] images, got shape {images.shape}'
    )
  if not jnp.issubdtype(images.dtype, jnp.floating):
    images = images.astype(jnp.float32)
  return _imresize(images, scales=tuple(float(s) for s in scales))


# Jitted as one program: run op by op, the padding and weight construction cost
# seconds of compilation per shape on CPU.
@functools.partial(jax.jit, static_argnames='scales')
def _imresize(images: jax.Array, *, scales: tuple[float, float]) -> jax.Array:
  h_axis, w_axis = images.ndim - 3, images.ndim - 2
  out_shape = list(images.shape)
  pads = [(0, 0)] * images.ndim
  translation = []
  for axis, s in zip((h_axis, w_axis), scales, strict=True):
    n = images.shape[axis]
    out_shape[axis] = output_size(n, s)
    p = _reach(s)
    # Mirroring [1..n, n..1] repeats: pad in whole reflections when p > n.
    pads[axis] = (p, p)
    # Sample position in the padded image: (x + 0.5) / s - 0.5 + p, which is
    # scale_and_translate's (x + 0.5 - t) / s - 0.5 at t = -p s.
    translation.append(-p * s)
  padded = _symmetric_pad(images, pads)
  return jax.image.scale_and_translate(
    padded,
    tuple(out_shape),
    (h_axis, w_axis),
    jnp.asarray(scales, jnp.float32),
    jnp.asarray(translation, jnp.float32),
    method='cubic',
    antialias=True,
  ).astype(images.dtype)


def _symmetric_pad(x: jax.Array, pads) -> jax.Array:
  """numpy 'symmetric' padding that may exceed the axis length (MATLAB's
  periodic mirror `[1..n, n..1, 1..n, ...]`), by indexing."""
  for axis, (before, after) in enumerate(pads):
    if not before and not after:
      continue
    n = x.shape[axis]
    i = jnp.arange(-before, n + after) % (2 * n)
    i = jnp.where(i < n, i, 2 * n - 1 - i)
    x = jnp.take(x, i, axis=axis)
  return x


# ---------------------------------------------------------------- host side


def _keys_cubic(x: np.ndarray) -> np.ndarray:
  ax = np.abs(x)
  return (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1) + (
    -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
  ) * ((ax > 1) & (ax <= 2))


def contributions(n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
  """MATLAB's `contributions()`: for each of the `ceil(scale n)` output pixels,
  its input taps `[out, taps]` (0-based, mirrored into range) and their
  normalised float64 weights `[out, taps]`."""
  out = output_size(n, scale)
  kernel_scale = min(scale, 1.0)  # antialiasing: stretch the kernel when shrinking
  width = 4.0 / kernel_scale
  u = np.arange(1, out + 1) / scale + 0.5 * (1 - 1 / scale)
  left = np.floor(u - width / 2).astype(int)
  taps = left[:, None] + np.arange(int(math.ceil(width)) + 2)[None, :]
  w = kernel_scale * _keys_cubic(kernel_scale * (u[:, None] - taps))
  w /= w.sum(axis=1, keepdims=True)
  period = np.concatenate([np.arange(n), np.arange(n)[::-1]])
  return period[(taps - 1) % (2 * n)], w


def _resize_axis0(x: np.ndarray, scale: float) -> np.ndarray:
  idx, w = contributions(x.shape[0], scale)
  w = w.astype(np.float32)
  out = np.zeros((idx.shape[0], *x.shape[1:]), np.float32)
  # One gathered row block per tap: memory of one output, not [out, taps, ...].
  for t in range(idx.shape[1]):
    out += w[:, t, None, None] * x[idx[:, t]]
  return out


def imresize_np(image: np.ndarray, *, scale: float) -> np.ndarray:
  """`imresize` on the host in NumPy float32, for data preparation: `[h, w, c]`
  -> `[ceil(scale h), ceil(scale w), c]`. Same definition (`contributions`), no
  compilation per image size."""
  x = np.asarray(image, np.float32)
  x = _resize_axis0(x, scale)
  return np.ascontiguousarray(
    _resize_axis0(x.transpose(1, 0, 2), scale).transpose(1, 0, 2)
  )
