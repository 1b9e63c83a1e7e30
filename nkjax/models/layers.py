"""Building blocks that every model family shares: activations by name, the
convolutions with XLA:CPU's slow cases avoided, and batch norm as torchvision has it.

CNNs, GANs, SR networks and detectors import them from here, so a fix to one
(a faster convolution, a batch-norm default) reaches them all.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nkjax.errors import choose
from nkjax.ops import cpu_dispatch

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'relu': nn.relu,
  'tanh': jnp.tanh,
  'sigmoid': nn.sigmoid,
  'gelu': nn.gelu,
  'leaky_relu': nn.leaky_relu,
  'identity': lambda x: x,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function called `name`, one of `ACTIVATIONS`."""
  choose('activation', name, ACTIVATIONS)
  return ACTIVATIONS[name]


# flax's Conv with XLA:CPU's slow case for tiny maps avoided (see cpu_dispatch).
Conv = functools.partial(
  nn.Conv, conv_general_dilated=cpu_dispatch.conv_general_dilated
)


class ConvTranspose(nn.Module):
  """`flax.linen.ConvTranspose` (NHWC, kernel not flipped): the same parameters,
  names and result, computed by `cpu_dispatch.conv_transpose`, whose gradient avoids
  XLA:CPU's slow path for input-dilated convolutions."""

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Any = 'SAME'
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
      'kernel',
      nn.initializers.lecun_normal(),
      (*self.kernel_size, x.shape[-1], self.features),
    )
    bias = (
      self.param('bias', nn.initializers.zeros, (self.features,))
      if self.use_bias
      else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = cpu_dispatch.conv_transpose(x, kernel, self.strides, self.padding)
    return y if bias is None else y + bias


def batch_norm(train: bool, dtype, **kwargs) -> nn.BatchNorm:
  """Batch norm as torchvision has it: running averages with momentum 0.9
  (PyTorch's 0.1), epsilon 1e-5; batch statistics in training, running ones in eval."""
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, **kwargs
  )
