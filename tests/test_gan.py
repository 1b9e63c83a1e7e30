import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from jax import export

from nkjax import bench, losses, metrics, profile
from nkjax.models import gan as gan_models
from nkjax.train import gan, loop, optim, sharding
from nkjax.train import state as state_lib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'experiments'))
import gan as gan_experiment  # noqa: E402

from .figures import assert_readable, describe, record  # noqa: E402


def test_value_is_minus_two_log_two_when_d_is_one_half_everywhere():
  half = jnp.zeros(16)  # logit 0: D = 1/2
  assert float(losses.gan_value(real_logits=half, fake_logits=half)) == pytest.approx(
    -2 * math.log(2)
  )
  assert float(
    losses.discriminator_loss(real_logits=half, fake_logits=half)
  ) == pytest.approx(2 * math.log(2))


def test_saturating_generator_gradient_vanishes_when_d_rejects_fakes():
  logit = -10.0  # D(G(z)) = sigmoid(-10) ~ 4.5e-5: confidently fake
  sat = jax.grad(
    lambda z: losses.generator_loss(fake_logits=jnp.array([z]), saturating=True)
  )(logit)
  non = jax.grad(lambda z: losses.generator_loss(fake_logits=jnp.array([z])))(logit)
  d = 1 / (1 + math.exp(10))
  assert float(sat) == pytest.approx(-d, rel=1e-4)  # d/dl log(1 - s(l)) = -s(l)
  assert float(non) == pytest.approx(-(1 - d), rel=1e-4)  # d/dl -log s(l) = -(1 - s(l))
  assert abs(float(non)) > 10_000 * abs(float(sat))


def test_wasserstein_losses_are_differences_of_means():
  real, fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0, 1.0])
  assert float(
    losses.wasserstein_critic_loss(real_scores=real, fake_scores=fake)
  ) == pytest.approx(-(2.0 - 0.0))
  assert float(losses.wasserstein_generator_loss(fake_scores=fake)) == pytest.approx(
    0.0
  )


def test_gradient_penalty_matches_finite_differences():
  key = jax.random.key(0)
  real = jax.random.normal(jax.random.key(1), (3, 2, 2, 1))
  fake = jax.random.normal(jax.random.key(2), (3, 2, 2, 1))
  critic = lambda x: jnp.sum(jnp.sin(2 * x) + x**2, axis=(1, 2, 3))  # noqa: E731
  got = float(losses.gradient_penalty(critic, real, fake, key))
  eps = np.asarray(jax.random.uniform(key, (3, 1, 1, 1)), np.float64)
  x_hat = eps * np.asarray(real, np.float64) + (1 - eps) * np.asarray(fake, np.float64)
  f = lambda x: np.sum(np.sin(2 * x) + x**2, axis=(1, 2, 3))  # noqa: E731
  h = 1e-6
  grads = np.zeros_like(x_hat)
  for idx in np.ndindex(*x_hat.shape[1:]):
    e = np.zeros_like(x_hat)
    e[(slice(None), *idx)] = h
    grads[(slice(None), *idx)] = (f(x_hat + e) - f(x_hat - e)) / (2 * h)
  expected = np.mean((np.linalg.norm(grads.reshape(3, -1), axis=1) - 1) ** 2)
  assert got == pytest.approx(expected, rel=1e-4)


def test_frechet_distance_closed_forms():
  a = np.random.default_rng(0).normal(size=(500, 3))
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  many = np.random.default_rng(1).normal(size=(50, 40))  # rank-deficient covariance
  # Singular covariances: sqrtm rounds, but the distance of a set to itself stays ~0.
  assert metrics.frechet_distance(many, many) == pytest.approx(0.0, abs=1e-4)
  shift = np.array([1.0, -2.0, 0.5])  # equal covariances: the distance is ||shift||^2
  assert metrics.frechet_distance(a, a + shift) == pytest.approx(
    np.sum(shift**2), rel=1e-6
  )
  # Scaled by 2: ||mu||^2 + Tr(S + 4S - 2 (4 S^2)^(1/2)) = ||mu||^2 + Tr(S).
  expected = np.sum(a.mean(0) ** 2) + np.trace(np.cov(a, rowvar=False))
  assert metrics.frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)
  # Two different sets of fewer examples than features (singular covariances, as
  # the GAN tests' small feature sets): the trace of the root from the
  # eigenvalues of S_a S_b themselves, an independent route.
  x, y = (np.random.default_rng(s).normal(size=(48, 64)) for s in (2, 3))
  s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  eig = np.clip(np.linalg.eigvals(s_x @ s_y).real, 0, None)
  expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s_x + s_y)
  expected -= 2 * np.sum(np.sqrt(eig))
  assert expected > 0
  assert metrics.frechet_distance(x, y) == pytest.approx(expected, rel=1e-4)


def _state(discriminator, *, image_shape=(8, 8, 1), lr=1e-3, name='adam'):
  tx = optim.make_optimizer(name=name, learning_rate=lr)
  g = state_lib.create(
    model=gan_models.DCGANGenerator(image_shape=image_shape),
    tx=tx,
    rng=jax.random.key(0),
    inputs=(jnp.zeros((1, 16)),),
  )
  d = state_lib.create(
    model=discriminator,
    tx=tx,
    rng=jax.random.key(1),
    inputs=(jnp.zeros((1, *image_shape)),),
  )
  return gan.create(g, d, ema=True)


@pytest.mark.parametrize(
  'objective, clip', [('minimax', None), ('wgan', 0.01), ('wgan_gp', None)]
)
def test_a_round_is_k_discriminator_updates_then_one_generator_update(objective, clip):
  k, m = 2, 4
  state = _state(
    gan_models.DCGANDiscriminator(norm=objective != 'wgan_gp'),
    name='rmsprop' if clip else 'adam',
  )
  batch = {
    'image': jax.random.uniform(
      jax.random.key(3), (k * m, 8, 8, 1), minval=-1, maxval=1
    ),
    'label': jnp.zeros(k * m, jnp.int32),
  }
  step = jax.jit(
    functools.partial(gan.gan_round, k=k, latent_dim=16, objective=objective, clip=clip)
  )
  new, out = step(state, batch, jax.random.key(4))
  assert int(new.step) == 1 and int(new.d.step) == k and int(new.g.step) == 1
  assert all(np.isfinite(float(v[0])) for v in out.values())
  if clip:
    assert (
      max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(new.d.params)) <= clip
    )
  # After round 0 the warm-up decay is (1 + 0) / (10 + 0) = 0.1:
  # ema = 0.1 * old generator + 0.9 * new generator.
  for e, old, g in zip(
    jax.tree.leaves(new.ema), jax.tree.leaves(state.g.params),
    jax.tree.leaves(new.g.params), strict=True,
  ):  # fmt: skip
    np.testing.assert_allclose(e, 0.1 * old + 0.9 * g, rtol=1e-5, atol=1e-6)
    assert not np.allclose(g, old)


@pytest.mark.parametrize('preset', ['smoke'])
def test_gan_experiment_smoke_writes_samples_curves_and_quality(
  tmp_path, preset, monkeypatch
):
  figures = record(monkeypatch)
  config = gan_experiment.get_config(preset)
  summary = gan_experiment.main(config, str(tmp_path))
  for d in figures.values():
    assert_readable(d, run=tmp_path.name)
  samples = figures[f'step_{config.num_rounds:06d}.png']['suptitle']
  assert 'cgan samples' in samples and '(row = class)' in samples
  curves = [a for a in figures['curves.png']['axes'] if a['plots']]
  assert curves[0]['legend'] == ['train d_loss', 'train g_loss']
  # The smoke run evaluates once: its single-point eval series are left out.
  assert not any('frechet' in a['title'] for a in curves)
  assert 0 < summary['real_vs_real_frechet_floor'] < summary['eval']['frechet']
  assert sum(summary['class_histogram']) == config.eval_samples
  assert (tmp_path / 'samples' / f'step_{config.num_rounds:06d}.png').exists()
  assert (tmp_path / 'curves.png').exists()
  # The smoke preset is a cGAN: a share of the eval samples.
  hits = summary['eval']['condition_accuracy'] * config.eval_samples
  assert hits == pytest.approx(round(hits), abs=1e-6)


@pytest.mark.parametrize('size, stages', [(8, 2), (28, 2), (32, 3), (64, 4)])
def test_dcgan_widths_make_networks_of_the_image_size(size, stages):
  g_widths, d_widths = gan_models.dcgan_widths(size)
  assert len(g_widths) == len(d_widths) == stages
  assert g_widths == d_widths[::-1] and g_widths[-1] == 64  # doubling per stage
  g = gan_models.DCGANGenerator(image_shape=(size, size, 3), widths=g_widths)
  d = gan_models.DCGANDiscriminator(widths=d_widths)
  z = jnp.zeros((2, 8))
  images = jax.eval_shape(
    lambda z: g.init_with_output(jax.random.key(0), z, train=False)[0], z
  )
  logits = jax.eval_shape(
    lambda x: d.init_with_output(jax.random.key(0), x, train=False)[0], images
  )
  assert images.shape == (2, size, size, 3) and logits.shape == (2,)
  with pytest.raises(ValueError, match='even image side'):
    gan_models.dcgan_widths(7)


@pytest.mark.parametrize(
  'dataset, variant, classes', [('mnist', 'gan', 10), ('celeb_a', 'cgan', 2)]
)
def test_gan_experiment_on_mocked_tfds_datasets(tmp_path, dataset, variant, classes):
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  config = gan_experiment.get_config('smoke')
  config.update(
    {'dataset': dataset, 'variant': variant, 'num_rounds': 2, 'log_every': 1,
     'eval_every': 2, 'm': 16, 'eval_samples': 64, 'feature_steps': 20,
     'feature_examples': 48},
  )  # fmt: skip
  with tfds.testing.mock_data(num_examples=48):
    summary = gan_experiment.main(config, str(tmp_path))
  # The quality figures come from a classifier of this dataset's own classes.
  assert len(summary['class_histogram']) == classes
  assert sum(summary['class_histogram']) == config.eval_samples
  # (The real-vs-real floor is not checked here: mocked splits can be one set.)
  assert summary['eval']['frechet'] > 0
  grid = plt.imread(tmp_path / 'samples' / 'step_000002.png')
  assert grid.ndim == 3 and grid.shape[0] > 0
  assert (tmp_path / 'curves.png').exists()


def test_off_a_cpu_the_k_discriminator_updates_compile_to_one_loop_body():
  # Off a CPU the k updates are a scan: the program's size does not grow with k
  # (an unrolled Python loop makes it k times larger).
  state = _state(gan_models.DCGANDiscriminator())
  sizes = {}
  for k in (1, 5):
    batch = {
      'image': jnp.zeros((k * 4, 8, 8, 1)),
      'label': jnp.zeros(k * 4, jnp.int32),
    }
    step = functools.partial(gan.gan_round, k=k, latent_dim=16)
    exported = export.export(jax.jit(step), platforms=['tpu'])(
      state, batch, jax.random.key(0)
    )
    sizes[k] = len(exported.mlir_module())
  assert sizes[5] < 1.05 * sizes[1]


def test_the_cpu_loop_and_the_scan_compute_the_same_round(monkeypatch):
  k, m = 3, 4
  state = _state(gan_models.DCGANDiscriminator())
  batch = {
    'image': jax.random.uniform(jax.random.key(3), (k * m, 8, 8, 1), minval=-1),
    'label': jnp.zeros(k * m, jnp.int32),
  }
  step = functools.partial(gan.gan_round, k=k, latent_dim=16)
  rounds = {}
  for scan in (True, False):
    # The scan is what runs off a CPU; the layers keep their CPU forms either way.
    # (Patching on_cpu turns the layers' CPU forms off too for the scan: the
    # same convolutions, so the same round within float32 error.)
    monkeypatch.setattr(
      gan.cpu_dispatch, 'on_cpu', lambda cpu, xla, *a, s=scan: (xla if s else cpu)(*a)
    )
    rounds[scan] = jax.jit(step)(state, batch, jax.random.key(4))
  for a, b in zip(
    jax.tree.leaves(rounds[True]), jax.tree.leaves(rounds[False]), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
  jax.default_backend() != 'cpu', reason="XLA:CPU's convolution forms"
)
def test_a_round_compiles_its_convolutions_in_the_forms_its_parts_get_alone():
  # XLA:CPU left the gradient convolutions of a loop body (lax.scan) in forms
  # that its generic kernel runs (f01b_i01o->01bf), 30x slower than the parts
  # jitted alone; the DCGAN round took 17 s against 0.6 s for its parts.
  k, m = 2, 4
  state = _state(gan_models.DCGANDiscriminator())
  g, d = state.g, state.d
  batch = {'image': jnp.zeros((k * m, 8, 8, 1)), 'label': jnp.zeros(k * m, jnp.int32)}

  def forms(f, *args):
    return set(profile.convolution_forms(jax.jit(f).lower(*args).compile().as_text()))

  def g_out(params, z):
    variables = {'params': params, 'batch_stats': g.batch_stats}
    return g.apply_fn(variables, z, train=True, mutable=['batch_stats'])[0]

  def d_out(params, x):
    variables = {'params': params, 'batch_stats': d.batch_stats}
    return d.apply_fn(variables, x, train=True, mutable=['batch_stats'])[0]

  z, x = jnp.zeros((m, 16)), jnp.zeros((m, 8, 8, 1))
  parts = forms(jax.grad(lambda p, z: jnp.sum(g_out(p, z))), g.params, z) | forms(
    jax.grad(lambda p, x: jnp.sum(d_out(p, x)), argnums=(0, 1)), d.params, x
  )
  step = functools.partial(gan.gan_round, k=k, latent_dim=16)
  whole = forms(step, state, batch, jax.random.key(0))
  assert whole and whole <= parts, whole - parts


def test_a_sharded_round_does_the_flops_of_its_parts_once():
  # The noise drawn in the step was replicated, and with it G's forward and
  # backward and D's pass on the fakes: every device did the whole batch's.
  k, m = 1, 16
  state = _state(gan_models.DCGANDiscriminator())
  g, d = state.g, state.d
  batch = {'image': jnp.zeros((k * m, 8, 8, 1)), 'label': jnp.zeros(k * m, jnp.int32)}

  def flops(f, *args, mesh=None):
    jitted = jax.jit(f) if mesh is None else loop.jit_train_step(f, mesh)
    return bench.compiled_flops(jitted.lower(*args).compile())

  def out(ts, params, x):
    variables = {'params': params, 'batch_stats': ts.batch_stats}
    return ts.apply_fn(variables, x, train=True, mutable=['batch_stats'])[0]

  z, x = jnp.zeros((m, 16)), jnp.zeros((m, 8, 8, 1))
  # A round: G forward and D forward and backward twice in D's update, then G
  # and D forward and backward in G's.
  parts = (
    flops(lambda p: out(g, p, z), g.params)
    + flops(jax.grad(lambda p: jnp.sum(out(g, p, z))), g.params)
    + 3 * flops(jax.grad(lambda p, x: jnp.sum(out(d, p, x)), (0, 1)), d.params, x)
  )
  mesh = sharding.data_mesh()
  assert mesh.devices.size > 1
  args = (
    sharding.replicate(state, mesh),
    sharding.shard_batch(batch, mesh),
    sharding.replicate(jax.random.key(0), mesh),
  )
  step = functools.partial(gan.gan_round, k=k, latent_dim=16)
  whole = flops(step, *args, mesh=mesh) * mesh.devices.size
  # Beyond the parts: the optimizers' updates, run on every device (1.4x here;
  # 6x with the noise replicated over the 8 devices).
  assert 0.7 * parts < whole < 1.6 * parts


def test_compare_figure_titles_each_variant_and_the_run(tmp_path):
  grids, table = {}, {}
  for i, v in enumerate(('gan', 'dcgan', 'cgan', 'wgan')):
    grids[v] = str(tmp_path / f'{v}.png')
    plt.imsave(grids[v], np.full((8, 8, 3), i / 4))
    table[v] = {'frechet': float(i)}
  fig = gan_experiment.compare_figure(grids, table, title='gan-compare: samples')
  d = describe(fig)
  geometry = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
  plt.close(fig)
  assert_readable(d, run='gan-compare')
  assert geometry == {(2, 3)}  # a grid, not one long row
  assert [a['title'] for a in d['axes'] if a['images']] == [
    'gan: Frechet 0.00', 'dcgan: Frechet 1.00', 'cgan: Frechet 2.00', 'wgan: Frechet 3.00'
  ]  # fmt: skip
