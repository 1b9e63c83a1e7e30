"""Generators and discriminators: the 2014 MLP GAN, DCGAN, their conditional
versions and the WGAN critic (a discriminator without the sigmoid).

Images are `[batch, h, w, c]` in [-1, 1] (the generator ends in tanh);
discriminators return one logit per image (D(x) = sigmoid(logit)); a critic's
output is used as is. A conditional network reads the label as a one-hot
vector: concatenated to the noise (G) and to the input (D), as in Mirza &
Osindero (2014).

`dtype` is the compute dtype (bfloat16 on a TPU or GPU); parameters stay
float32, batch norm's statistics are kept in float32, and every network
returns float32, so losses are computed in float32.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nkjax.errors import UserError
from nkjax.models.layers import Conv, ConvTranspose, batch_norm


def _condition(x, labels, num_classes):
  if labels is None:
    return x
  onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
  if x.ndim == 2:
    return jnp.concatenate([x, onehot], -1)
  # Images: the one-hot as extra constant channels.
  planes = jnp.broadcast_to(onehot[:, None, None, :], (*x.shape[:3], num_classes))
  return jnp.concatenate([x, planes], -1)


def dcgan_widths(size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(generator widths, discriminator widths) for square images of side `size`.

  As many stride-2 stages as halve `size` exactly down to a 4x4 map (2x2 for
  sides of 8 or less), widths doubling towards the small map as in DCGAN:
  64 -> (512, 256, 128, 64) and (64, 128, 256, 512); 32 -> three stages; 28 and
  8 -> two.
  """
  floor = min(4, size // 4)
  n = 0
  while size % 2 ** (n + 1) == 0 and size // 2 ** (n + 1) >= max(floor, 1):
    n += 1
  if n == 0:
    raise UserError(f'a DCGAN needs an even image side of at least 4; got {size}')
  widths = tuple(64 * 2**i for i in range(n))
  return widths[::-1], widths


class MLPGenerator(nn.Module):
  """z (and a label) -> Dense/relu layers -> tanh image (Goodfellow et al., 2014)."""

  image_shape: Sequence[int] = (8, 8, 1)
  hidden: Sequence[int] = (128, 256)
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool):
    del train
    x = _condition(z.astype(self.dtype), labels, self.num_classes)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    size = 1
    for d in self.image_shape:
      size *= d
    x = jnp.tanh(nn.Dense(size, dtype=self.dtype)(x).astype(jnp.float32))
    return x.reshape(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
  """Image (and a label) -> Dense/leaky-relu layers -> one logit."""

  hidden: Sequence[int] = (256, 128)
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool):
    del train
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    x = _condition(x, labels, self.num_classes)
    for width in self.hidden:
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype)(x), 0.2)
    return nn.Dense(1, dtype=self.dtype)(x)[:, 0].astype(jnp.float32)


class DCGANGenerator(nn.Module):
  """Radford et al. (2016): project z to a small map, then stride-2 transposed
  convolutions with batch norm and relu, doubling the size, tanh at the end.

  Attributes:
    image_shape: output `[h, w, c]`; h and w divisible by 2 ** len(widths).
    widths: channels of the projected map and of each upsampling but the last.
  """

  image_shape: Sequence[int] = (8, 8, 1)
  widths: Sequence[int] = (128, 64)
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, labels=None, *, train: bool):
    h, w, c = self.image_shape
    scale = 2 ** len(self.widths)
    x = _condition(z.astype(self.dtype), labels, self.num_classes)
    x = nn.Dense(
      (h // scale) * (w // scale) * self.widths[0], use_bias=False, dtype=self.dtype
    )(x)
    x = nn.relu(batch_norm(train, self.dtype)(x)).reshape(
      z.shape[0], h // scale, w // scale, self.widths[0]
    )
    for width in self.widths[1:]:
      x = ConvTranspose(
        width, (4, 4), (2, 2), padding='SAME', use_bias=False, dtype=self.dtype
      )(x)
      x = nn.relu(batch_norm(train, self.dtype)(x))
    x = ConvTranspose(c, (4, 4), (2, 2), padding='SAME', dtype=self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """Stride-2 convolutions with leaky relu (0.2), batch norm after the first,
  then one logit. `norm=False` for a WGAN-GP critic: the penalty is per example,
  which batch norm would couple across the batch (Gulrajani et al., 2017)."""

  widths: Sequence[int] = (64, 128)
  num_classes: int = 10
  norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, labels=None, *, train: bool):
    x = _condition(x.astype(self.dtype), labels, self.num_classes)
    for i, width in enumerate(self.widths):
      x = Conv(width, (4, 4), (2, 2), padding='SAME', dtype=self.dtype)(x)
      if i > 0 and self.norm:
        x = batch_norm(train, self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Dense(1, dtype=self.dtype)(x.reshape(x.shape[0], -1))
    return x[:, 0].astype(jnp.float32)
