"""Every paper preset at its real sizes, by shape only (`jax.eval_shape`: no
compute): the parameters of its networks against the closed forms of the
papers' architectures, and one training step's outputs.

The parameter counts are derived here from each paper's layer list (kernel
sides, channels, one bias per output channel), not read from nkjax's modules.
"""

import functools
import itertools
import os
import sys

import jax
import jax.numpy as jnp
import pytest

from nkjax.models import detection as det
from nkjax.models import sr as sr_models
from nkjax.train import gan
from nkjax.train import state as state_lib
from nkjax.train.sr import pixel_train_step, srgan_train_step

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import detection  # noqa: E402
import sr  # noqa: E402

F32 = jnp.float32
KEY = jax.random.key(0)


def _sds(shape, dtype=F32):
  return jax.ShapeDtypeStruct(shape, dtype)


def _count(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))


def _conv(k, cin, cout) -> int:
  """A k x k convolution with a bias per output channel."""
  return k * k * cin * cout + cout


def _dense(din, dout) -> int:
  return din * dout + dout


def _chain(k, widths) -> int:
  """k x k convolutions through `widths` (input channels first)."""
  return sum(_conv(k, a, b) for a, b in itertools.pairwise(widths))


def _state(model, tx, inputs):
  return jax.eval_shape(
    lambda: state_lib.create(model=model, tx=tx, rng=KEY, inputs=inputs)
  )


def _same_shapes(a, b):
  sa = jax.tree.map(lambda x: (x.shape, x.dtype), a)
  sb = jax.tree.map(lambda x: (x.shape, x.dtype), b)
  assert sa == sb


# VGG-16's 13 convolutions (Simonyan & Zisserman, configuration D) and VGG-19's
# 16 up to conv5_4.
VGG16_WIDTHS = (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG19_WIDTHS = (3, 64, 64, 128, 128, *(256,) * 4, *(512,) * 8)


def test_the_closed_forms_match_the_published_figures():
  assert _chain(3, VGG16_WIDTHS) == 14_714_688  # VGG-16 without its fc layers
  assert _chain(3, VGG19_WIDTHS) == 20_024_384  # VGG-19's convolutions
  # SRCNN 9-1-5 (Dong et al. 2014, section 4.1): 8,032 weights.
  assert 9 * 9 * 64 + 64 * 32 + 5 * 5 * 32 == 8_032


# ---------------------------------------------------------------- detection


def test_voc07_faster_rcnn_at_its_real_sizes():
  c = detection.get_config('voc07')
  # VOC images: shorter side 600, longer at most 1000, padded at the bottom and
  # right to a 1000 x 1000 canvas (nkjax.data.voc_coco); 2 images a step.
  assert (c.image_size, c.batch_size, c.rois_per_image) == (600, 2, 64)
  assert (c.rpn_pre_nms_train, c.rpn_post_nms_train) == (12_000, 2_000)
  side, b, k, boxes = round(c.image_size * 1000 / 600), c.batch_size, 20, 42
  model = detection.build_model(c, 'faster_rcnn', k)
  state = _state(model, detection.make_tx(c), (jnp.zeros((1, side, side, 3)),))
  p = state.params
  assert set(p) == {'backbone_net', 'rpn_head', 'box_head'}
  assert state.batch_stats is None
  assert _count(p['backbone_net']) == _chain(3, VGG16_WIDTHS) == 14_714_688
  a = len(c.anchor_scales) * len(c.anchor_ratios)  # 9 anchors a position
  # RPN: a 3x3 convolution of 512, then 1x1 to one objectness logit and 4
  # deltas per anchor.
  assert _count(p['rpn_head']) == _conv(3, 512, 512) + _conv(1, 512, a) + _conv(
    1, 512, 4 * a
  )
  # fc6 on the 7x7x512 pooled RoI, fc7, K + 1 scores, 4 deltas per class.
  assert _count(p['box_head']) == (
    _dense(7 * 7 * 512, 4096) + _dense(4096, 4096) + _dense(4096, k + 1)
    + _dense(4096, 4 * k)
  )  # fmt: skip

  images = _sds((b, side, side, 3))

  def apply(method):
    return lambda params, *xs: model.apply({'params': params}, *xs, method=method)

  feats = jax.eval_shape(apply('features'), p, images)
  assert feats.shape == (b, 62, 62, 512)  # four 2x2 pools: 1000 -> 62
  obj, deltas = jax.eval_shape(apply('rpn'), p, feats)
  assert (obj.shape, deltas.shape) == ((b, 62 * 62 * a), (b, 62 * 62 * a, 4))
  props, _, valid = jax.eval_shape(
    functools.partial(
      det.batch_proposals,
      model,
      feature_shape=(62, 62),
      height=side,
      width=side,
      pre_nms_top_n=c.rpn_pre_nms_train,
      post_nms_top_n=c.rpn_post_nms_train,
    ),  # fmt: skip
    obj,
    deltas,
  )
  assert (props.shape, valid.shape) == ((b, 2_000, 4), (b, 2_000))
  logits, box = jax.eval_shape(apply('head'), p, feats, _sds((b, c.rois_per_image, 4)))
  assert (logits.shape, box.shape) == ((b, 64, k + 1), (b, 64, k, 4))

  batch = {
    'image': images, 'boxes': _sds((b, boxes, 4)), 'labels': _sds((b, boxes), jnp.int32),
    'box_mask': _sds((b, boxes), bool), 'difficult': _sds((b, boxes), bool),
    'image_size': _sds((b, 2), jnp.int32), 'scale': _sds((b, 2)),
  }  # fmt: skip
  step = detection.make_train_step(c, 'faster_rcnn', model)
  new, metrics = jax.eval_shape(step, state, batch, KEY)
  _same_shapes(new.params, p)
  _same_shapes(new.opt_state, state.opt_state)
  for name in ('loss', 'rpn_cls_loss', 'rpn_box_loss', 'proposals'):
    assert [(x.shape, x.dtype) for x in metrics[name]] == [((), F32)] * 2


# ---------------------------------------------------------------- SR


def _pixel_step(c, model, inputs, hr):
  state = _state(model, sr._optimizer(c), (sr._example_input(c),))
  y = c.model in sr.Y_MODELS
  step = functools.partial(
    pixel_train_step, model=model, y_channel=y, loss=c.pixel_loss
  )
  batch = {'input': _sds(inputs.shape), 'hr': _sds(hr)}
  new, metrics = jax.eval_shape(step, state, batch, KEY)
  _same_shapes(new.params, state.params)
  assert metrics['loss'][0].shape == ()
  return state


def test_srcnn_paper_at_its_real_sizes():
  c = sr.get_config('srcnn_paper')
  # 9-1-5, 33 x 33 sub-images with 21 x 21 labels (valid convolutions), x3.
  assert (c.patch, c.batch_size, tuple(c.scales), c.padding) == (33, 128, (3,), 'VALID')
  model = sr.build_model(c)
  bicubic = jnp.zeros((c.batch_size, 33, 33, 3))  # the network sees its Y
  state = _pixel_step(c, model, bicubic, (c.batch_size, 33, 33, 3))
  weights = 9 * 9 * 1 * 64 + 1 * 1 * 64 * 32 + 5 * 5 * 32 * 1
  assert _count(state.params) == weights + 64 + 32 + 1 == 8_129
  out = jax.eval_shape(model.apply, {'params': state.params}, _sds((128, 33, 33, 1)))
  assert out.shape == (128, 21, 21, 1)


def test_vdsr_paper_at_its_real_sizes():
  c = sr.get_config('vdsr_paper')
  # 20 layers of 3x3 convolutions, 64 filters, 41 x 41 patches, batch 64.
  assert (c.depth, c.features, c.patch, c.batch_size) == (20, 64, 41, 64)
  model = sr.build_model(c)
  state = _pixel_step(c, model, jnp.zeros((64, 41, 41, 3)), (64, 41, 41, 3))
  weights = 3 * 3 * (1 * 64 + 18 * 64 * 64 + 64 * 1)
  assert weights == 664_704
  assert _count(state.params) == weights + 19 * 64 + 1 == 665_921


def _srresnet_closed_form(blocks=16, f=64, upsamplers=2):
  """Ledig et al. 2017, figure 4 (generator): params and batch statistics."""
  block = 2 * _conv(3, f, f) + 2 * 2 * f + 1  # conv-BN-PReLU-conv-BN
  params = (
    _conv(9, 3, f) + 1  # 9x9 conv, PReLU (one slope, as PyTorch's default)
    + blocks * block
    + _conv(3, f, f) + 2 * f  # conv, BN before the long skip
    + upsamplers * (_conv(3, f, 4 * f) + 1)  # conv to 256, pixel shuffle x2, PReLU
    + _conv(9, f, 3)
  )  # fmt: skip
  stats = (2 * blocks + 1) * 2 * f  # mean and variance of each BN
  return params, stats


def test_srresnet_paper_at_its_real_sizes():
  c = sr.get_config('srresnet_paper')
  # 16 blocks of 64, x4, 24 x 24 LR (96 x 96 HR) patches, batch 16.
  assert (c.blocks, c.features, tuple(c.scales), c.patch, c.batch_size) == (
    16, 64, (4,), 24, 16
  )  # fmt: skip
  model = sr.build_model(c)
  state = _pixel_step(c, model, jnp.zeros((16, 24, 24, 3)), (16, 96, 96, 3))
  params, stats = _srresnet_closed_form()
  assert (_count(state.params), _count(state.batch_stats)) == (params, stats)
  assert params == 1_549_462  # the ~1.5M of the paper's SRResNet
  out = jax.eval_shape(
    functools.partial(model.apply, train=False),
    {'params': state.params, 'batch_stats': state.batch_stats},
    _sds((16, 24, 24, 3)),
  )
  assert out.shape == (16, 96, 96, 3)


def test_srgan_paper_at_its_real_sizes():
  c = sr.get_config('srgan_paper')
  assert (c.blocks, c.features, c.patch, c.batch_size) == (16, 64, 24, 16)
  hr = c.patch * 4
  g = _state(sr.build_model(c), sr._optimizer(c), (jnp.zeros((1, 24, 24, 3)),))
  d = _state(
    sr_models.SRGANDiscriminator(widths=tuple(c.d_widths)),
    sr._optimizer(c, learning_rate=c.d_learning_rate),
    (jnp.zeros((1, hr, hr, 3)),),
  )
  assert _count(g.params) == _srresnet_closed_form()[0]
  # Discriminator (figure 4): 3x3 convolutions 64, 64/2, 128, 128/2, 256,
  # 256/2, 512, 512/2, BN after all but the first; dense 1024, dense 1 on the
  # 6 x 6 x 512 map of a 96 x 96 image.
  widths = (3, 64, 64, 128, 128, 256, 256, 512, 512)
  d_params = _chain(3, widths) + 2 * sum(widths[2:]) + _dense(6 * 6 * 512, 1024)
  assert _count(d.params) == d_params + _dense(1024, 1)
  vgg = sr_models.VGG19Features(preprocess='caffe')
  frozen = jax.eval_shape(lambda: vgg.init(KEY, jnp.zeros((1, hr, hr, 3)))['params'])
  assert _count(frozen) == _chain(3, VGG19_WIDTHS) == 20_024_384
  state = gan.GANState(step=_sds((), jnp.int32), g=g, d=d, ema=None)
  batch = {'input': _sds((16, 24, 24, 3)), 'hr': _sds((16, hr, hr, 3))}
  step = functools.partial(
    srgan_train_step, adversarial_weight=c.adversarial_weight, vgg=vgg
  )
  new, metrics = jax.eval_shape(step, state, batch, KEY, frozen)
  _same_shapes(new.g.params, g.params)
  _same_shapes(new.d.params, d.params)
  _same_shapes(new.g.batch_stats, g.batch_stats)
  assert {'g_loss', 'd_loss'} <= set(metrics)


@pytest.mark.parametrize('preset', sr.PAPER)
def test_every_sr_paper_preset_is_checked_here(preset):
  assert f'test_{preset}_at_its_real_sizes' in globals()
