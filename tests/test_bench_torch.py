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


@pytest.mark.parametrize('name', ['dcgan', 'srresnet_cpu', 'vdsr', 'faster_rcnn'])
def test_each_step_updates_every_trained_network(name, monkeypatch, mesh):
  # Record the optimisers the step builds, then check one step moves each one's
  # parameters.
  optimizers = []

  def recording(cls):
    def build(params, **kwargs):
      optimizers.append(cls(params, **kwargs))
      return optimizers[-1]

    return build

  for cls in (torch.optim.Adam, torch.optim.SGD):
    monkeypatch.setattr(torch.optim, cls.__name__, recording(cls))
  _, _, batch = _setup(name)
  torch.manual_seed(0)
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


def test_faster_rcnn_has_the_jax_count(mesh):
  state, _, _ = _setup('faster_rcnn')
  model = bench_torch.MODELS['faster_rcnn']()
  assert sum(p.numel() for p in model.parameters()) == _count(state.params)


def test_torch_nms_keeps_what_nkjax_s_nms_keeps():
  import numpy as np

  from nkjax.bench_torch_detection import nms
  from nkjax.ops import boxes as box_ops

  rng = np.random.default_rng(0)
  xy = rng.uniform(0, 100, (300, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], -1).astype(np.float32)
  scores = np.sort(rng.uniform(size=300))[::-1].copy()
  idx, keep = box_ops.nms(boxes, scores, iou_threshold=0.5, max_output=40)
  expected = np.asarray(idx)[np.asarray(keep)]
  assert nms(torch.from_numpy(boxes), 0.5, 40).tolist() == expected.tolist()


def test_torch_roi_align_matches_nkjax_s_inside_the_map():
  import numpy as np

  from nkjax.bench_torch_detection import roi_align
  from nkjax.ops import roi

  rng = np.random.default_rng(0)
  features = rng.normal(size=(16, 16, 5)).astype(np.float32)
  rois = np.array([[20, 24, 90, 70], [8.5, 10, 40, 100]], np.float32)
  expected = roi.roi_align(
    features, rois, output_size=(7, 7), spatial_scale=1 / 8, sampling_ratio=2
  )
  out = roi_align(
    torch.from_numpy(features).permute(2, 0, 1), torch.from_numpy(rois), 7, 1 / 8
  )
  np.testing.assert_allclose(
    out.permute(0, 2, 3, 1).numpy(), np.asarray(expected), rtol=1e-5, atol=1e-5
  )
