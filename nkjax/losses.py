"""Per-example losses with a documented shape contract.

Each function maps a batch to one loss per example, shape `[batch]`; the train
step reduces them (with a mask where the batch is padded).
"""

import jax
import jax.numpy as jnp
import optax

from nkjax.errors import UserError


def softmax_cross_entropy(*, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy between softmax(logits) and integer class labels.

  Args:
    logits: `[batch, num_classes]` unnormalised log-probabilities.
    labels: `[batch]` integer classes in `[0, num_classes)`.

  Returns:
    `[batch]` losses in nats.

  Equal logits over 4 classes give ln 4 whatever the label; a logit 2 above
  the others gives ln(1 + 3 / e^2) for its class:

  >>> import math
  >>> logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
  >>> loss = softmax_cross_entropy(logits=logits, labels=jnp.array([3, 0]))
  >>> bool(jnp.allclose(loss, jnp.array([math.log(4), math.log(1 + 3 / math.e**2)])))
  True
  """
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def l2_penalty(params) -> jax.Array:
  """Half the sum of squared weights, 0.5 * sum(w**2), over every leaf."""
  return 0.5 * sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))


def l1_penalty(params) -> jax.Array:
  """Sum of absolute weights, sum(|w|), over every leaf."""
  return sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))


# ---------------------------------------------------------------- GANs
#
# D(x) = sigmoid(logit). Written with log_sigmoid so that confident
# discriminators (|logit| of 20 or more) give exact, finite values:
# log D = log_sigmoid(l), log(1 - D) = log_sigmoid(-l).


def gan_value(*, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]: D ascends it, G descends it."""
  return jnp.mean(jax.nn.log_sigmoid(real_logits)) + jnp.mean(
    jax.nn.log_sigmoid(-fake_logits)
  )


def discriminator_loss(*, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """-V(D, G): minimising it is the discriminator's ascent of V."""
  return -gan_value(real_logits=real_logits, fake_logits=fake_logits)


def generator_loss(*, fake_logits: jax.Array, saturating: bool = False) -> jax.Array:
  """The generator's loss on `fake_logits = logit D(G(z))`, `[batch]` -> scalar.

  saturating=True is the minimax game's E[log(1 - D(G(z)))], whose gradient
  vanishes when D rejects the fakes confidently (D(G(z)) -> 0, early in
  training); False is the non-saturating -E[log D(G(z))] that the course
  recommends instead, with the same fixed point and strong gradients there.
  """
  if saturating:
    return jnp.mean(jax.nn.log_sigmoid(-fake_logits))
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def wasserstein_critic_loss(
  *, real_scores: jax.Array, fake_scores: jax.Array
) -> jax.Array:
  """-(E[D(x)] - E[D(G(z))]): the critic maximises the difference (no sigmoid, no log)."""
  return -(jnp.mean(real_scores) - jnp.mean(fake_scores))


def wasserstein_generator_loss(*, fake_scores: jax.Array) -> jax.Array:
  """-E[D(G(z))]."""
  return -jnp.mean(fake_scores)


def gradient_penalty(
  critic, real: jax.Array, fake: jax.Array, key: jax.Array
) -> jax.Array:
  """E[(||grad_x critic(x_hat)||_2 - 1)^2] at x_hat = e x + (1 - e) G(z), e ~ U[0, 1]
  per example (Gulrajani et al., 2017). `critic` maps one batch to `[batch]` scores."""
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
  x_hat = eps * real + (1 - eps) * fake
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


# ---------------------------------------------------------------- super-resolution


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean squared error per example: `[b, ...]` pairs -> `[b]` (SRCNN, VDSR,
  SRResNet's pixel loss; in [0, 1] units for images in [0, 1])."""
  d = jnp.asarray(predictions) - jnp.asarray(targets)
  return jnp.mean(d * d, axis=tuple(range(1, d.ndim)))


def mae(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean absolute error per example: `[b, ...]` pairs -> `[b]` (EDSR's L1,
  Lim et al. 2017, and BasicSR's default pixel loss)."""
  d = jnp.asarray(predictions) - jnp.asarray(targets)
  return jnp.mean(jnp.abs(d), axis=tuple(range(1, d.ndim)))


# Per-example pixel losses of super-resolution by name, `(out, label)` -> `[b]`.
PIXEL_LOSSES = {'mse': mse, 'l1': mae}

# SRGAN rescales the VGG feature maps by 1/12.75 so that the content loss is of a
# size comparable to the pixel MSE.
VGG_FEATURE_SCALE = 1.0 / 12.75


def vgg_content_loss(
  features_fn, sr: jax.Array, hr: jax.Array, *, scale: float = VGG_FEATURE_SCALE
) -> jax.Array:
  """SRGAN's VGG loss: the mean squared difference of phi_5,4 feature maps
  (scaled by `scale`) of SR and HR images `[n, h, w, 3]` in [0, 1]; `[n]`.

  `features_fn` maps images to features (`nkjax.models.sr.VGG19Features`
  applied with its weights)."""
  d = (features_fn(sr) - features_fn(hr)) * scale
  return jnp.mean(d * d, axis=(1, 2, 3))


# ---------------------------------------------------------------- detection


def smooth_l1(predictions: jax.Array, targets: jax.Array, *, beta: float = 1.0):
  """Elementwise smooth L1 (Fast R-CNN eq. 3, with a transition point `beta`).

  With x = predictions - targets: 0.5 x^2 / beta where |x| < beta, else
  |x| - 0.5 beta; the two pieces meet with equal value and slope at |x| = beta.
  beta = 1 is Fast R-CNN's; beta = 0 is plain L1 (|x|). Same shape as the inputs;
  the caller sums over the four coordinates and masks and normalises.
  """
  x = jnp.asarray(predictions) - jnp.asarray(targets)
  if beta < 0:
    raise UserError(f'smooth_l1 beta must be >= 0 (0 is plain L1); got {beta}')
  if beta == 0:
    return jnp.abs(x)
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)
