"""Fully connected classifiers (the feed-forward chapter)."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from nkjax.models.layers import activation


class MLP(nn.Module):
  """Flatten, then `Dense -> activation -> dropout` per hidden layer, then `Dense`.

  Attributes:
    hidden: widths of the hidden layers; `()` is multinomial logistic regression.
    num_outputs: width of the output layer (classes, for a classifier).
    activation: a name from `nkjax.models.layers.ACTIVATIONS`.
    dropout_rate: the probability of dropping a hidden unit (not the keep rate).
  """

  hidden: Sequence[int] = (256, 256)
  num_outputs: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps inputs `[batch, ...]` to outputs `[batch, num_outputs]` (logits)."""
    act = activation(self.activation)
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = act(nn.Dense(width)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)
