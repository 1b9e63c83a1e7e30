"""Per-example losses with a documented shape contract.

Each function maps a batch to one loss per example, shape `[batch]`; the train
step reduces them (with a mask where the batch is padded).
"""

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(*, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy between softmax(logits) and integer class labels.

  Args:
    logits: `[batch, num_classes]` unnormalised log-probabilities.
    labels: `[batch]` integer classes in `[0, num_classes)`.

  Returns:
    `[batch]` losses in nats.
  """
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def l2_penalty(params) -> jax.Array:
  """Half the sum of squared weights, 0.5 * sum(w**2), over every leaf."""
  return 0.5 * sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))


def l1_penalty(params) -> jax.Array:
  """Sum of absolute weights, sum(|w|), over every leaf."""
  return sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))
