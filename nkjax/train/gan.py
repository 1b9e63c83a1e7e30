"""One round of adversarial training (the course's Algorithm 6.5.1) as one jitted step.

Each round: k discriminator (or critic) updates, each on m real images and m
generated ones from fresh noise; then one generator update on m fresh noise
samples. The batch holds the round's k * m real images. The state carries both
networks and, optionally, an exponential moving average of the generator.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from nkjax import losses
from nkjax.errors import choose
from nkjax.ops import cpu_dispatch
from nkjax.train.state import TrainState
from nkjax.train.steps import model_variables, step_key

OBJECTIVES = ('minimax', 'wgan', 'wgan_gp')


class GANState(flax.struct.PyTreeNode):
  """Both networks; `step` counts rounds. `ema` is None when no EMA is kept."""

  step: jax.Array
  g: TrainState
  d: TrainState
  ema: Any = None


def create(g: TrainState, d: TrainState, *, ema: bool) -> GANState:
  # The EMA starts as a copy of the generator's weights, not the same buffers.
  ema_params = jax.tree.map(jnp.copy, g.params) if ema else None
  return GANState(step=jnp.zeros((), jnp.int32), g=g, d=d, ema=ema_params)


def _apply(ts: TrainState, params, *args, train: bool):
  """Runs a network; returns (output, new batch stats or None)."""
  variables = model_variables(ts, params)
  if ts.batch_stats is None or not train:
    return ts.apply_fn(variables, *args, train=train), None
  out, updates = ts.apply_fn(variables, *args, train=True, mutable=['batch_stats'])
  return out, updates['batch_stats']


def _update(ts: TrainState, grads, batch_stats) -> TrainState:
  ts = ts.apply_gradients(grads=grads)
  return ts if batch_stats is None else ts.replace(batch_stats=batch_stats)


# Public names of the two helpers, for the other adversarial steps
# (`nkjax.train.sr.srgan_train_step`).
apply_model = _apply
apply_updates = _update


def _discriminator_update(
  d, real, real_cond, fake, fake_cond, *, objective, gp_weight, clip, key
):
  """One update of D (or the critic) on m real and m generated images."""

  def loss_fn(params):
    real_out, stats = _apply(d, params, real, *real_cond, train=True)
    # Real and fake batches are normalised separately, as in DCGAN.
    d_real = d if stats is None else d.replace(batch_stats=stats)
    fake_out, stats = _apply(d_real, params, fake, *fake_cond, train=True)
    if objective == 'minimax':
      return losses.discriminator_loss(real_logits=real_out, fake_logits=fake_out), (
        stats,
        real_out,
        fake_out,
      )
    loss = losses.wasserstein_critic_loss(real_scores=real_out, fake_scores=fake_out)
    if objective == 'wgan_gp':
      score = lambda x: _apply(d, params, x, *real_cond, train=False)[0]  # noqa: E731
      loss += gp_weight * losses.gradient_penalty(score, real, fake, key)
    return loss, (stats, real_out, fake_out)

  (loss, (stats, real_out, fake_out)), grads = jax.value_and_grad(
    loss_fn, has_aux=True
  )(d.params)
  d = _update(d, grads, stats)
  if clip is not None:
    # WGAN's Lipschitz constraint by weight clipping (Arjovsky et al., 2017).
    d = d.replace(params=jax.tree.map(lambda p: jnp.clip(p, -clip, clip), d.params))
  return d, loss, real_out, fake_out


def _repeat(d_update, d, k, images, labels):
  """`lax.scan(d_update, d, (arange(k), images, labels))`, as a Python loop in a
  program compiled for a CPU (`cpu_dispatch.on_cpu`).

  XLA:CPU (jaxlib 0.10.2) left the discriminator's gradient convolutions (4x4,
  stride 2) in a loop body (a `while`, which `lax.scan` emits even with
  `unroll=True` or one iteration) in the layouts their transposition gave them
  (`f01b_i01o->01bf` weight gradients, reversed `01oi` kernels), which its
  generic convolution runs, not the Eigen kernel that the canonical
  `b01f_01io->b01f` form gets outside a loop (`profile.convolution_forms`;
  ResNet-20's steps in `loop.jit_train_steps` kept the canonical form). The
  DCGAN round (k = 1, batch 128 of 32x32x3, 2 cores, jax 0.10.2, alternating
  runs on a busy machine) took 51-79 s in the scan against 2.4-4.2 s as this
  loop (`python -m nkjax.bench dcgan` prints the round beside its parts).
  Elsewhere the scan keeps one D update in the program whatever k is.
  """

  def scan(d, images, labels):
    return jax.lax.scan(d_update, d, (jnp.arange(k), images, labels))

  def loop(d, images, labels):
    outs = []
    for i in range(k):
      d, out = d_update(d, (jnp.asarray(i), images[i], labels[i]))
      outs.append(out)
    return d, tuple(jnp.stack(v) for v in zip(*outs, strict=True))

  return cpu_dispatch.on_cpu(loop, scan, d, images, labels)


def gan_round(
  state: GANState,
  batch,
  rng,
  *,
  k: int,
  latent_dim: int,
  objective: str = 'minimax',
  saturating: bool = False,
  conditional: bool = False,
  num_classes: int = 10,
  clip: float | None = None,
  gp_weight: float = 10.0,
  ema_decay: float = 0.999,
):
  """k discriminator updates then one generator update.

  Args:
    batch: `{'image': [k * m, h, w, c] in [-1, 1], 'label': [k * m]}`.
    objective: 'minimax' (Goodfellow et al.: D ascends V; G descends V, or its
      non-saturating form unless `saturating`), 'wgan' (critic, weight
      clipping to [-clip, clip]) or 'wgan_gp' (critic, gradient penalty).
    conditional: both networks read the label (fakes get uniform random labels).

  Returns:
    `(state, metrics)`: `(sum, count)` pairs of `d_loss` (mean over the k
    updates), `g_loss`, `d_real` and `d_fake` (mean D(x), D(G(z)); critic
    scores for WGANs).
  """
  choose('objective', objective, OBJECTIVES)
  images = batch['image'].reshape(k, -1, *batch['image'].shape[1:])
  labels = batch['label'].reshape(k, -1)
  m = images.shape[1]
  critic = objective != 'minimax'

  def noise(i):
    key = step_key(rng, state.step * (k + 1) + i, 'noise')
    kz, ky = jax.random.split(key)
    z = jax.random.normal(kz, (m, latent_dim))
    # Drawn alone, the noise is replicated over the devices, and so is all that
    # follows from it: every device ran G (and D on the fakes) on the whole
    # batch. Added to a zero of the real images' layout, it takes their split
    # along the batch (XLA propagates an operand's sharding; 0 * x is not
    # simplified away for floats).
    z = z + 0.0 * images[0, :, :1, 0, 0]
    return z, jax.random.randint(ky, (m,), 0, num_classes)

  cond = lambda y: (y,) if conditional else ()  # noqa: E731
  squash = (lambda s: s) if critic else jax.nn.sigmoid
  g = state.g

  def d_update(d, xs):
    i, real, real_labels = xs
    z, fake_labels = noise(i)
    # G's statistics move only in its own update.
    fake, _ = _apply(g, g.params, z, *cond(fake_labels), train=True)
    key = step_key(rng, state.step * (k + 1) + i, 'penalty')
    d, loss, real_out, fake_out = _discriminator_update(
      d, real, cond(real_labels), jax.lax.stop_gradient(fake), cond(fake_labels),
      objective=objective, gp_weight=gp_weight, clip=clip, key=key,
    )  # fmt: skip
    return d, (loss, jnp.mean(squash(real_out)), jnp.mean(squash(fake_out)))

  d, (d_losses, d_real, d_fake) = _repeat(d_update, state.d, k, images, labels)

  z, fake_labels = noise(k)

  def g_loss_fn(params):
    fake, stats = _apply(g, params, z, *cond(fake_labels), train=True)
    out, _ = _apply(d, d.params, fake, *cond(fake_labels), train=True)
    if critic:
      return losses.wasserstein_generator_loss(fake_scores=out), stats
    return losses.generator_loss(fake_logits=out, saturating=saturating), stats

  (g_loss, stats), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g.params)
  g = _update(g, grads, stats)
  # The average warms up: decay (1 + t) / (10 + t) until it reaches ema_decay, so
  # that a short run's average is not mostly the initial weights.
  decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
  ema = (
    None
    if state.ema is None
    else optax.incremental_update(g.params, state.ema, 1.0 - decay)
  )
  one = jnp.ones(())
  metrics = {
    'd_loss': (jnp.mean(d_losses), one),
    'g_loss': (g_loss, one),
    'd_real': (jnp.mean(d_real), one),
    'd_fake': (jnp.mean(d_fake), one),
  }
  return GANState(step=state.step + 1, g=g, d=d, ema=ema), metrics
