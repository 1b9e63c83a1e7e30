"""A detector trained from a weights file takes that file's input convention
(torchvision: RGB minus the mean over the std; Keras / Caffe: BGR in [0, 255]
minus the mean; nkjax's own: RGB in [0, 1]), records it in the run, and is
rebuilt with it by `restore_run` (detect, svd) and on resume."""

import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import weights
from nkjax.models import backbones

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import detection  # noqa: E402

from ..test_weights import _torch_modules  # noqa: E402

TORCHVISION_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCHVISION_STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def _backbone_input(state, rgb):
  """What the detector in `state` feeds its backbone's first convolution."""
  seen = []

  def grab(call, args, kwargs, context):
    if context.method_name == '__call__' and context.module.path == (
      'backbone_net',
      'Conv_0',
    ):
      seen.append(args[0])
    return call(*args, **kwargs)

  with nn.intercept_methods(grab):
    state.apply_fn({'params': state.params}, rgb, method='features')
  assert len(seen) == 1
  return np.asarray(seen[0])


def _rgb(side):
  return np.random.default_rng(3).uniform(0, 1, (1, side, side, 3)).astype(np.float32)


def _random_tree(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize('kind', ['none', 'caffe'])
def test_a_run_from_an_npz_feeds_its_backbone_what_the_file_expects(tmp_path, kind):
  # An .npz nkjax wrote without a kind keeps RGB in [0, 1]; one recording
  # 'caffe' (a converted Keras file) gets BGR in [0, 255] minus the mean.
  shapes = jax.eval_shape(
    lambda: backbones.make_backbone('vgg_tiny').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
    )
  )['params']
  npz = weights.write_npz(
    str(tmp_path / 'vgg_tiny.npz'),
    _random_tree(shapes),
    **({} if kind == 'none' else {'preprocess': kind}),
  )
  config = detection.get_config('smoke')
  config.backbone, config.backbone_weights = 'vgg_tiny', npz
  config.num_pictures, config.timing_images = 0, 1
  workdir = tmp_path / 'run'
  detection.main(config, str(workdir))
  recorded = json.loads((workdir / 'summary.json').read_text())['config']
  assert recorded['preprocess'] == kind
  rgb = _rgb(config.image_size)
  want = rgb if kind == 'none' else rgb[..., ::-1] * 255.0 - CAFFE_MEAN_BGR
  _, _, state = detection.restore_run(str(workdir))  # as detect and svd build it
  np.testing.assert_allclose(_backbone_input(state, rgb), want, rtol=1e-6, atol=1e-4)


def test_voc07_starts_from_a_torchvision_vgg16_file_with_one_flag(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  VGG = _torch_modules(torch)[0]
  # VGG-16's 13 convolutions at their real widths (the voc07 backbone); fc6
  # and fc7 narrowed to 16 (the head's fc is narrowed to match below).
  net = VGG((2, 2, 3, 3, 3), (64, 128, 256, 512, 512), (16, 16), 10)
  pth = tmp_path / 'vgg16.pth'
  torch.save(net.state_dict(), pth)
  config = detection.get_config('voc07')
  config.backbone_weights = str(pth)  # the one flag
  # Tiny sizes on generated data (the preset's recipe otherwise); batches of
  # 2, one image for each of the 2 devices the tests fake.
  config.dataset, config.image_size, config.num_train, config.num_test = (
    'shapes',
    64,
    2,
    2,
  )
  config.batch_size = config.eval_batch_size = 2
  config.fc, config.anchor_scales = (16, 16), (16.0, 32.0, 64.0)
  config.num_steps, config.decay_steps, config.log_every = 2, (1,), 1
  config.checkpoint_every, config.num_pictures, config.timing_images = 2, 0, 1
  workdir = tmp_path / 'run'
  detection.main(config, str(workdir))
  recorded = json.loads((workdir / 'summary.json').read_text())['config']
  assert (recorded['backbone'], recorded['preprocess']) == ('vgg16', 'torchvision')
  rgb = _rgb(64)
  _, _, state = detection.restore_run(str(workdir))
  np.testing.assert_allclose(
    _backbone_input(state, rgb),
    (rgb - TORCHVISION_MEAN) / TORCHVISION_STD,
    rtol=1e-6,
    atol=1e-5,
  )
  # The file's fc6 / fc7 went into the head (before the 2 steps moved them a
  # little): fc6 flattens H, W, C in nkjax and C, H, W in torchvision.
  fc6 = net.classifier[0].weight.detach().numpy()  # [16, 512 * 7 * 7]
  want = fc6.reshape(16, 512, 7, 7).transpose(2, 3, 1, 0).reshape(-1, 16)
  got = np.asarray(state.params['box_head']['fc_0']['kernel'])
  assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
