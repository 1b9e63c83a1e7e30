"""Super-resolution steps: pixel-loss updates, the SRGAN update, full-image prediction.

Pure functions of arrays, jitted by `nkjax.train.loop` (`fit`, `make_predictor`);
static options are keyword-only. Images are NHWC floats in [0, 1]. Networks on
the Y channel (SRCNN, VDSR) read and predict MATLAB's Y / 255 of the bicubic-
upscaled image; SRResNet reads the LR RGB image. The SRGAN update reuses the GAN
chapter's losses and its apply/update helpers (`nkjax.train.gan`).
"""

import jax
import jax.numpy as jnp

from nkjax import losses
from nkjax.models import sr as sr_models
from nkjax.ops import image as image_ops
from nkjax.train import gan
from nkjax.train.steps import model_variables


def y_channel_of(rgb):
  """RGB in [0, 1] -> `[..., 1]` Y / 255 (MATLAB's Y in [16, 235], scaled)."""
  return image_ops.rgb_to_y(rgb)[..., None] / 255.0


# `variables(state)`: the state's params and BN statistics, for `apply`
# (`nkjax.bench` reads it by this name).
variables = model_variables


def _label_crop(model, label):
  """SRCNN's 'VALID' output is smaller by its receptive field - 1: crop the label."""
  if isinstance(model, sr_models.SRCNN) and model.padding == 'VALID':
    b = (sr_models.receptive_field(model) - 1) // 2
    return label[:, b:-b, b:-b]
  return label


def _psnr_per_example(mse):
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


def pixel_train_step(state, batch, rng, *, model, y_channel: bool, loss: str = 'mse'):
  """One update on the pixel loss `loss` (a key of `losses.PIXEL_LOSSES`); metrics
  `loss` (that loss in [0, 1] units) and `psnr` (patch dB, from the MSE)."""
  del rng
  x = y_channel_of(batch['input']) if y_channel else batch['input']
  label = _label_crop(model, y_channel_of(batch['hr']) if y_channel else batch['hr'])
  per_example = losses.PIXEL_LOSSES[loss]

  def loss_fn(params):
    out, stats = gan.apply_model(state, params, x, train=True)
    value = per_example(out, label)
    mse = losses.mse(out, label)  # for the PSNR metric; XLA computes it once
    return jnp.mean(value), (value, mse, stats)

  grads, (value, mse, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = gan.apply_updates(state, grads, stats)
  n = jnp.asarray(mse.shape[0], jnp.float32)
  return state, {'loss': (jnp.sum(value), n),
                 'psnr': (jnp.sum(_psnr_per_example(mse)), n)}  # fmt: skip


def srgan_train_step(state, batch, rng, frozen=None, *, adversarial_weight, vgg):
  """One discriminator update on real HR and generated SR patches, then one
  generator update on content loss + `adversarial_weight` x -log D(G(LR))
  (the GAN chapter's non-saturating loss). Content: SRGAN's VGG19 phi_5,4 MSE
  (`frozen` holds VGG19's params) or, without weights, the pixel MSE."""
  del rng
  lr, hr = batch['input'], batch['hr']
  g, d = state.g, state.d
  fake, _ = gan.apply_model(g, g.params, lr, train=True)
  fake = jax.lax.stop_gradient(fake)

  def d_loss_fn(params):
    real_out, stats = gan.apply_model(d, params, hr, train=True)
    d_real = d if stats is None else d.replace(batch_stats=stats)
    fake_out, stats = gan.apply_model(d_real, params, fake, train=True)
    loss = losses.discriminator_loss(real_logits=real_out, fake_logits=fake_out)
    return loss, (stats, real_out, fake_out)

  (d_loss, (stats, real_out, fake_out)), grads = jax.value_and_grad(
    d_loss_fn, has_aux=True
  )(d.params)
  d = gan.apply_updates(d, grads, stats)

  def g_loss_fn(params):
    sr, stats = gan.apply_model(g, params, lr, train=True)
    logits, _ = gan.apply_model(d, d.params, sr, train=True)
    if vgg is not None:
      feats = lambda x: vgg.apply({'params': frozen}, x)
      content = jnp.mean(losses.vgg_content_loss(feats, sr, hr))
    else:
      content = jnp.mean(losses.mse(sr, hr))
    adv = losses.generator_loss(fake_logits=logits)
    return content + adversarial_weight * adv, (stats, content, adv, sr)

  (g_loss, (stats, content, adv, sr)), grads = jax.value_and_grad(
    g_loss_fn, has_aux=True
  )(g.params)
  g = gan.apply_updates(g, grads, stats)
  mse = losses.mse(sr, hr)
  one = jnp.ones(())
  metrics = {
    'd_loss': (d_loss, one), 'g_loss': (g_loss, one), 'content_loss': (content, one),
    'adversarial_loss': (adv, one),
    'd_real': (jnp.mean(jax.nn.sigmoid(real_out)), one),
    'd_fake': (jnp.mean(jax.nn.sigmoid(fake_out)), one),
    'psnr': (jnp.sum(_psnr_per_example(mse)), jnp.asarray(mse.shape[0], jnp.float32)),
  }  # fmt: skip
  return gan.GANState(step=state.step + 1, g=g, d=d, ema=None), metrics


def predict_step(state, batch, *, model, y_channel: bool):
  """Full-image super-resolution of an eval batch: `sr` RGB `[1, H, W, 3]`
  (unclipped) and, for Y networks, their own `sr_y` in [0, 255] units."""
  g = state.g if isinstance(state, gan.GANState) else state
  if not y_channel:
    sr, _ = gan.apply_model(g, g.params, batch['lr'], train=False)
    return {'sr': sr}
  bicubic = batch['bicubic']
  x = y_channel_of(bicubic)
  if isinstance(model, sr_models.SRCNN) and model.padding == 'VALID':
    # Pad by the receptive field's radius (edge pixels repeated) so the valid
    # output covers the whole image.
    b = (sr_models.receptive_field(model) - 1) // 2
    x = jnp.pad(x, ((0, 0), (b, b), (b, b), (0, 0)), mode='edge')
  y, _ = gan.apply_model(g, g.params, x, train=False)
  y = y[..., 0] * 255.0
  ycbcr = image_ops.rgb_to_ycbcr(bicubic)
  sr = image_ops.ycbcr_to_rgb(jnp.stack([y, ycbcr[..., 1], ycbcr[..., 2]], -1))
  return {'sr': sr, 'sr_y': y}
