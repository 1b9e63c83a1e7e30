"""Generative adversarial nets: GAN, DCGAN, conditional GAN, WGAN and WGAN-GP.

  python experiments/gan.py                                  # cgan on the embedded digits
  python experiments/gan.py --config=experiments/gan.py:dcgan
  python experiments/gan.py --config=experiments/gan.py:wgan --config.k=5
  python experiments/gan.py --config=experiments/gan.py:compare   # every variant, side by side
  python experiments/gan.py --config=experiments/gan.py:dcgan --config.dataset=celeb_a
  python experiments/gan.py --config.dataset=celeb_a --config.attribute=Smiling  # cGAN

Every variant trains by the course's Algorithm 6.5.1 (k discriminator updates on m
real and m generated images, then one generator update), writes sample grids
from a fixed noise batch (samples/step_*.png; a row per class for the cGAN),
D and G loss curves (curves.png) and its quality figures (summary.json): a
Frechet distance on the features of a classifier nkjax trains on the same
dataset (not Inception FID), beside the real-vs-real floor, the class histogram
of the samples and, for the cGAN, the share classified as their condition.
The datasets: the embedded digits, or MNIST, Fashion-MNIST, CIFAR-10 and CelebA
(64x64 centre crops, labelled by one binary attribute) through TFDS."""

import functools
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax

from nkjax import backprop, launch, metrics, validate, viz
from nkjax.data import batching, images
from nkjax.errors import choose
from nkjax.models import gan as gan_models
from nkjax.train import gan, loop, optim, scan, sharding, steps, writers
from nkjax.train import state as state_lib

VARIANTS = ('gan', 'dcgan', 'cgan', 'wgan', 'wgan_gp')
PRESETS = ('default', *VARIANTS, 'compare', 'smoke')  # default: the cgan variant
CHECKS = {
  **validate.TRAINING,
  'latent_dim': validate.count,
  'm': validate.count,
  'k': validate.count,
  'b1': validate.fraction,
  'b2': validate.fraction,
  'clip': validate.optional(validate.positive_number()),
  'gp_weight': validate.non_negative,
  'num_rounds': validate.count,
  'eval_samples': validate.count,
  'feature_steps': validate.count,
  'feature_examples': validate.count,
}

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  **optim.DESCRIPTIONS,
  'variant': f'the GAN: {", ".join(VARIANTS)}',
  'compare': 'train every variant of variants and compare them',
  'variants': 'compare: the variants trained',
  'dataset': 'digits (embedded), or mnist, fashion_mnist, cifar10, celeb_a (TFDS)',
  'data_dir': 'where TFDS keeps its datasets; None: its default',
  'image_size': 'resize images to this side (celeb_a: 64); None: native',
  'attribute': "celeb_a: the attribute that is the cGAN's label; None: Male",
  'latent_dim': "the noise vector z's size",
  'm': 'real and noise samples per discriminator update',
  'k': 'discriminator (critic) updates per generator update',
  'saturating': 'True: the minimax generator loss log(1 - D(G(z)))',
  'clip': "wgan: clip the critic's weights to +-clip; None: off",
  'gp_weight': 'wgan_gp: the gradient-penalty weight lambda',
  'ema': 'sample from an exponential moving average of the generator',
  'dtype': 'compute dtype: float32 or bfloat16 (parameters stay float32)',
  'num_rounds': 'training rounds (k discriminator updates and one generator update)',
  'log_every': 'rounds between training-metric lines',
  'eval_every': 'rounds between evaluations (samples, Frechet distance of classifier features)',
  'eval_samples': 'generated images per evaluation',
  'feature_steps': "training steps of the evaluation's feature classifier",
  'feature_examples': 'real images the feature classifier trains on, and real test images',
  'seed': 'the root random seed: same seed, same run',
  'divergence_factor': 'stop when d_loss passes this multiple of its first value; 0: never',
}


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.variant = {'default': 'cgan', 'compare': 'gan', 'smoke': 'cgan'}.get(preset, preset)
  c.compare = preset == 'compare'
  c.dataset = 'digits'  # or mnist, fashion_mnist, cifar10, celeb_a (TFDS)
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.image_size = ml_collections.config_dict.placeholder(int)  # resize (celeb_a: 64)
  # celeb_a's label for the cGAN and the class histogram (default Male).
  c.attribute = ml_collections.config_dict.placeholder(str)
  c.latent_dim = 32
  c.m = 64  # real and noise samples per discriminator update
  c.k = 1  # discriminator updates per generator update
  c.saturating = False  # True: the minimax generator loss log(1 - D(G(z)))
  c.dtype = 'float32'  # 'bfloat16': bfloat16 compute, float32 parameters and losses
  c.update(optim.default_fields(optimizer='adam', learning_rate=2e-4, b1=0.5))
  c.clip = ml_collections.config_dict.placeholder(float)
  c.gp_weight = 10.0
  c.ema = True
  c.num_rounds = 10_000
  c.log_every = 500
  c.eval_every = 2500
  c.eval_samples = 1000
  c.feature_steps = 2000  # training steps of the feature classifier
  c.feature_examples = 10_000  # real images it trains on, and real test images
  c.seed = 0
  # Stop when d_loss passes this x its first value; 0: never. Off for the
  # Wasserstein critics, whose losses are signed and unbounded by design.
  c.divergence_factor = 0.0 if c.variant in ('wgan', 'wgan_gp') else 1000.0
  if c.variant == 'wgan':
    c.k, c.optimizer, c.learning_rate, c.clip, c.num_rounds = (
      5,
      'rmsprop',
      5e-5,
      0.01,
      2000,
    )
  elif c.variant == 'wgan_gp':
    c.k, c.learning_rate, c.b1, c.b2, c.num_rounds = 5, 1e-4, 0.5, 0.9, 2000
  if preset == 'compare':
    c.variants = VARIANTS
    c.num_rounds = 1500
    c.eval_every = 1500
  elif preset == 'smoke':
    c.num_rounds = 6
    c.log_every = 3
    c.eval_every = 6
    c.eval_samples = 200
    c.feature_steps = 200
  return c


def _networks(variant: str, image_shape, num_classes: int, dtype: str = 'float32'):
  dtype = jnp.dtype(dtype)
  if variant in ('gan', 'cgan'):
    return gan_models.MLPGenerator(
      image_shape=image_shape, num_classes=num_classes, dtype=dtype
    ), gan_models.MLPDiscriminator(num_classes=num_classes, dtype=dtype)
  g_widths, d_widths = gan_models.dcgan_widths(image_shape[0])
  # The gradient penalty is per example: no batch norm in that critic.
  norm = variant != 'wgan_gp'
  return gan_models.DCGANGenerator(
    image_shape=image_shape, widths=g_widths, num_classes=num_classes, dtype=dtype
  ), gan_models.DCGANDiscriminator(
    widths=d_widths, num_classes=num_classes, norm=norm, dtype=dtype
  )


def _objective(variant: str) -> str:
  return {'wgan': 'wgan', 'wgan_gp': 'wgan_gp'}.get(variant, 'minimax')


def feature_classifier(
  train, *, num_classes: int, rng: jax.Array, seed: int, steps: int
):
  """A pixels-128-64-classes relu MLP trained on real training images; its last
  hidden layer gives the features for the Frechet distance.

  Returns `features_and_classes(images in [0, 1]) -> (features, predicted classes)`.
  """
  data = backprop.flat_onehot(train, num_classes=num_classes)
  x = data['x']
  params = backprop.init(rng, [x.shape[1], 128, 64, num_classes])
  params, _ = scan.train(
    value_and_grad=backprop.softmax_value_and_grad('relu'),
    params=params,
    tx=optax.adam(1e-3),
    data=data,
    batch_size=min(64, len(x)),
    num_steps=steps,
    seed=seed,
  )

  @jax.jit
  def features_and_classes(images):
    out, cache = backprop.forward(
      params, images.reshape(images.shape[0], -1), activation='relu', loss='softmax_ce'
    )
    return cache[-1][0], jnp.argmax(out, -1)  # the last layer's input: hidden features

  return features_and_classes


def sample_images(state, z, labels, *, conditional: bool):
  """The generator's images for noise `z` `[n, latent_dim]` (and class
  `labels` `[n]`, used when `conditional`): `[n, h, w, c]` in [-1, 1], from the
  EMA parameters where the state keeps them. The experiment's predict step."""
  params = state.ema if state.ema is not None else state.g.params
  return state.g.apply_fn(
    steps.model_variables(state.g, params), z, *((labels,) if conditional else ()),
    train=False,
  )  # fmt: skip


def run_variant(config, workdir, variant: str) -> dict:
  choose('variant', variant, VARIANTS)
  mesh = sharding.data_mesh()
  round_batch = config.k * config.m
  sharding.check_batch_size(round_batch, mesh)
  data = images.load(
    config.dataset,
    batch_size=round_batch,
    eval_batch_size=config.m,
    seed=config.seed,
    image_size=config.image_size,
    data_dir=config.data_dir,
    attribute=config.attribute,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  conditional = variant == 'cgan'
  g_model, d_model = _networks(
    variant, data.example_shape, data.num_classes, config.dtype
  )

  def make_tx():
    return optim.build(num_steps=config.num_rounds, **optim.fields(config))

  # Named streams from the one root key, each used once.
  k_g, k_d, rng, k_eval, k_grid, k_features = jax.random.split(
    jax.random.key(config.seed), 6
  )
  labels = (jnp.zeros((1,), jnp.int32),) if conditional else ()
  g = state_lib.create(
    model=g_model,
    tx=make_tx(),
    rng=k_g,
    inputs=(jnp.zeros((1, config.latent_dim)), *labels),
  )
  d = state_lib.create(
    model=d_model,
    tx=make_tx(),
    rng=k_d,
    inputs=(jnp.zeros((1, *data.example_shape)), *labels),
  )
  state = gan.create(g, d, ema=config.ema)

  # Quality: features of a classifier trained on real images of the same dataset.
  num_classes = data.num_classes
  real_train = batching.collect(data.train_eval_batches(), config.feature_examples)
  real_test = batching.collect(data.eval_batches(), config.feature_examples)
  features = feature_classifier(
    real_train,
    num_classes=num_classes,
    rng=k_features,
    seed=config.seed,
    steps=config.feature_steps,
  )
  # Real-image features, computed once: the floor and every eval compare against them.
  real_test_feats, real_test_classes = map(np.asarray, features(real_test['image']))
  floor = metrics.frechet_distance(
    np.asarray(features(real_train['image'])[0]), real_test_feats
  )
  feature_accuracy = float(np.mean(real_test_classes == real_test['label']))
  # One fixed batch of noise and labels for the quality figures of every eval.
  k_eval_z, k_eval_y = jax.random.split(k_eval)
  eval_z = jax.random.normal(k_eval_z, (config.eval_samples, config.latent_dim))
  eval_y = jax.random.randint(k_eval_y, (config.eval_samples,), 0, num_classes)
  last_histogram = {}

  # The sample grid: 10 columns; for the cGAN one row per class (at most 10).
  rows = min(num_classes, 10) if conditional else 10
  fixed_z = jax.random.normal(k_grid, (10 * rows, config.latent_dim))
  fixed_labels = jnp.repeat(jnp.arange(rows), 10)

  generate = jax.jit(functools.partial(sample_images, conditional=conditional))

  def evaluate(state) -> dict:
    grid = (np.asarray(generate(state, fixed_z, fixed_labels)) + 1) / 2
    step = int(state.step)
    if jax.process_index() == 0:
      os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
      title = (
        f'{viz.run_name(workdir)}: {variant} samples of a fixed noise batch, '
        f'round {step}' + (' (row = class)' if conditional else '')
      )
      viz.save_images(
        grid,
        os.path.join(workdir, 'samples', f'step_{step:06d}.png'),
        cols=10,
        suptitle=title,
      )
    feats, classes = features((generate(state, eval_z, eval_y) + 1) / 2)
    classes = np.asarray(classes)
    counts = np.bincount(classes, minlength=num_classes)
    last_histogram['counts'] = counts.tolist()
    hist = counts / config.eval_samples
    out = {
      'frechet': metrics.frechet_distance(np.asarray(feats), real_test_feats),
      'classes_covered': float(np.sum(hist > 0.02)),
      'class_share_max': float(hist.max()),
    }
    if conditional:
      out['condition_accuracy'] = float(np.mean(classes == np.asarray(eval_y)))
    return out

  def batches(start):
    for b in data.train_batches(start):
      yield {'image': b['image'] * 2.0 - 1.0, 'label': b['label']}

  step_fn = functools.partial(
    gan.gan_round, k=config.k, latent_dim=config.latent_dim, objective=_objective(variant),
    saturating=config.saturating, conditional=conditional, num_classes=data.num_classes,
    clip=config.clip if variant == 'wgan' else None, gp_weight=config.gp_weight,
  )  # fmt: skip
  result = loop.fit(
    state=state, train_step=step_fn, train_batches=batches, num_steps=config.num_rounds,
    workdir=workdir, rng=rng, mesh=mesh, examples_per_step=round_batch, eval_fn=evaluate,
    eval_every=config.eval_every, log_every=config.log_every, checkpoint_every=config.eval_every,
    loss_key='d_loss', divergence_factor=config.divergence_factor,
    config={**config.to_dict(), 'variant': variant},
    summarize=lambda state: {
      'variant': variant, 'real_vs_real_frechet_floor': floor,
      'feature_classifier_test_accuracy': feature_accuracy,
      # fit always evaluates the final state before summarizing
      'class_histogram': last_histogram.get('counts'),
    },
  )  # fmt: skip
  return result.summary


def compare_figure(grids: dict, table: dict, *, title: str):
  """Each variant's final sample grid (a PNG path per variant), side by side."""
  cols = min(3, len(grids))
  rows = -(-len(grids) // cols)
  fig, axes = plt.subplots(
    rows, cols, figsize=(3.4 * cols, 3.6 * rows + 0.4), squeeze=False
  )
  for ax in axes.flat:
    ax.axis('off')
  for ax, (v, path) in zip(axes.flat, grids.items(), strict=False):
    ax.imshow(plt.imread(path))
    ax.set_title(f'{v}: Frechet {table[v]["frechet"]:.2f}', fontsize=9)
  fig.suptitle(title, fontsize=10)
  return fig


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  if not config.compare:
    return run_variant(config, workdir, config.variant)
  for v in config.variants:
    choose('variant', v, VARIANTS)
  table, grids = {}, {}
  for v in config.variants:
    c = get_config(v)
    c.update(
      {
        'num_rounds': config.num_rounds,
        'eval_every': config.eval_every,
        'seed': config.seed,
        'dataset': config.dataset,
      }
    )
    s = run_variant(c, os.path.join(workdir, v), v)
    table[v] = {
      'frechet': s['eval'].get('frechet'),
      'floor': s['real_vs_real_frechet_floor'],
      'condition_accuracy': s['eval'].get('condition_accuracy'),
      'class_histogram': s.get('class_histogram'),
    }
    grids[v] = os.path.join(workdir, v, 'samples', f'step_{config.num_rounds:06d}.png')
  print(f'\n{"variant":>8} {"Frechet":>9} {"floor":>7} {"cond acc":>9}')
  for v, r in table.items():
    ca = '' if r['condition_accuracy'] is None else f'{r["condition_accuracy"]:.3f}'
    print(f'{v:>8} {r["frechet"]:9.3f} {r["floor"]:7.3f} {ca:>9}')
  viz.save_figure(
    compare_figure(
      grids, table,
      title=f'{viz.run_name(workdir)}: samples of each variant after '
      f'{config.num_rounds} rounds (lower Frechet is closer to the data)',
    ),
    os.path.join(workdir, 'compare.png'), dpi=110,
  )  # fmt: skip
  summary = {'task': 'compare', 'results': table}
  writers.write_summary(workdir, summary)
  return summary


if __name__ == '__main__':
  launch.run(main)
