"""The eager PyTorch equivalents of the chapters' benchmarks (`nkjax.bench_torch`):
the same parameter counts as the flax models, and a step that trains."""

import jax
import pytest

from nkjax.bench import measure

torch = pytest.importorskip('torch')
from nkjax import bench_torch  # noqa: E402


def _count(tree) -> int:
  return sum(p.size for p in jax.tree.leaves(tree))


def _setup(name):
  return measure._setup(name, batch_size=2, dtype='float32', image_size=None)


def test_dcgan_generator_and_discriminator_have_the_jax_counts(mesh):
  state, _, _ = _setup('dcgan')
  g, d = bench_torch.MODELS['dcgan_g'](), bench_torch.MODELS['dcgan_d']()
  assert sum(p.numel() for p in g.parameters()) == _count(state.g.params)
  assert sum(p.numel() for p in d.parameters()) == _count(state.d.params)
  # 32x32x3 images out of G, one logit out of D.
  fake = g.eval()(torch.zeros(2, 100))
  assert tuple(fake.shape) == (2, 3, 32, 32)
  assert tuple(d.eval()(fake).shape) == (2, 1)


@pytest.mark.parametrize('name', ['srresnet_cpu', 'vdsr'])
def test_sr_equivalents_have_the_jax_counts(name, mesh):
  state, _, _ = _setup(name)
  model = bench_torch.MODELS[name]()
  assert sum(p.numel() for p in model.parameters()) == _count(state.params)


def test_srresnet_cpu_upscales_by_four():
  out = bench_torch.MODELS['srresnet_cpu']()(torch.zeros(1, 3, 12, 12))
  assert tuple(out.shape) == (1, 3, 48, 48)


@pytest.mark.parametrize('name', ['dcgan', 'srresnet_cpu', 'vdsr'])
def test_each_step_updates_every_trained_network(name, monkeypatch, mesh):
  # Record the optimisers the step builds, then check one step moves each one's
  # parameters.
  optimizers = []
  adam = torch.optim.Adam

  def recording_adam(params, **kwargs):
    optimizers.append(adam(params, **kwargs))
    return optimizers[-1]

  monkeypatch.setattr(torch.optim, 'Adam', recording_adam)
  _, _, batch = _setup(name)
  step = bench_torch.STEPS[name](batch)
  before = [
    [p.detach().clone() for g in opt.param_groups for p in g['params']]
    for opt in optimizers
  ]
  step()
  assert len(optimizers) == (2 if name == 'dcgan' else 1)
  for opt, old in zip(optimizers, before, strict=True):
    new = [p for g in opt.param_groups for p in g['params']]
    assert all(not torch.equal(a, b) for a, b in zip(old, new, strict=True))
