"""Backbones of the detectors: the shared feature map of stride 16 (or 8).

`BACKBONES` by name: `small` (trains from scratch on a CPU), `vgg16` (the 13
convolutions of VGG-16 without the last pool: stride 16, 512 channels) and
`resnet18/34/50` (stem and the first three stages: stride 16). Their parameter
names are those of `nkjax.models.cnn.VGG` / `ResNet`, so a classifier's
parameters load into them unchanged (`nkjax.weights.load_backbone_params`).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nkjax.errors import choose
from nkjax.models import cnn
from nkjax.models.layers import Conv, batch_norm
from nkjax.ops import conv as conv_ops

# The input each source of ImageNet weights was trained on, made from RGB in
# [0, 1] by `preprocess`: 'torchvision' RGB minus the mean over the std;
# 'caffe' (Keras' and Caffe's VGG) BGR in [0, 255] minus the mean; 'none' as is
# (weights nkjax trains). `nkjax.weights` records each file's kind.
PREPROCESS = ('none', 'torchvision', 'caffe')
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess(rgb: jax.Array, kind: str) -> jax.Array:
  """`[..., 3]` RGB in [0, 1] as the weights of `kind` (one of `PREPROCESS`)
  expect their input: same shape.

  >>> preprocess(jnp.array(TORCHVISION_MEAN_RGB), 'torchvision').tolist()
  [0.0, 0.0, 0.0]
  >>> caffe = preprocess(jnp.array([0.0, 0.0, 1.0]), 'caffe')  # blue: B first
  >>> bool(jnp.allclose(caffe, jnp.array([255 - 103.939, -116.779, -123.68])))
  True
  """
  choose('preprocess', kind, PREPROCESS)
  if kind == 'torchvision':
    mean = jnp.asarray(TORCHVISION_MEAN_RGB, rgb.dtype)
    return (rgb - mean) / jnp.asarray(TORCHVISION_STD_RGB, rgb.dtype)
  if kind == 'caffe':
    return rgb[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, rgb.dtype)
  return rgb


class SmallBackbone(nn.Module):
  """A strided 3x3 convolution, then stages of 3x3 convolutions each ended by
  a 2x2 max pool: stride 16.

  Widths (16, 32, 64, 128) with (1, 1, 1, 2) convolutions: about 60 MFLOPs for a
  128x128 image, so it trains from scratch on a CPU in minutes. No
  normalisation (it is shallow).

  Returns features `[b, h / 16, w / 16, widths[-1]]`.
  """

  widths: Sequence[int] = (16, 32, 64, 128)
  convs: Sequence[int] = (1, 1, 1, 2)
  last_pool: bool = True
  preprocess: str = 'none'
  dtype: Any = jnp.float32

  @property
  def stride(self) -> int:
    return 16 if self.last_pool else 8

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = preprocess(x, self.preprocess).astype(self.dtype)
    for i, (width, n) in enumerate(zip(self.widths, self.convs, strict=True)):
      for j in range(n):
        # The first convolution is strided: full-resolution maps are the
        # costliest part of a CPU step, and they need no pooling.
        strides = 2 if i == j == 0 else 1
        x = nn.relu(Conv(width, (3, 3), strides, padding=1, dtype=self.dtype)(x))
      if 0 < i < len(self.widths) - 1 or (i > 0 and self.last_pool):
        x = conv_ops.max_pool(x, (2, 2), (2, 2))
    return x


class VGGBackbone(nn.Module):
  """VGG-16's 13 convolutions (conv1_1 .. conv5_3) and its first four pools:
  stride 16, 512 channels, as the Fast and Faster R-CNN papers use it.

  Parameter names `Conv_0` .. `Conv_12` are those of `cnn.VGG`; `preprocess`
  (`PREPROCESS`) maps the RGB [0, 1] input to what the loaded weights expect.
  """

  convs_per_stage: Sequence[int] = cnn.VGG_STAGES[16]
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  preprocess: str = 'none'
  dtype: Any = jnp.float32

  stride = 16

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = preprocess(x, self.preprocess).astype(self.dtype)
    last = len(self.widths) - 1
    for i, (n, width) in enumerate(zip(self.convs_per_stage, self.widths, strict=True)):
      for _ in range(n):
        x = nn.relu(Conv(width, (3, 3), padding=1, dtype=self.dtype)(x))
      if i < last:  # conv5_3 is the shared map: no fifth pool
        x = conv_ops.max_pool(x, (2, 2), (2, 2))
    return x


class ResNetBackbone(nn.Module):
  """A ResNet's 7x7/2 stem, 3x3/2 max pool and first three stages: stride 16
  (256 channels for ResNet-18/34, 1024 for ResNet-50), as in the ResNet paper's
  Faster R-CNN (which puts the fourth stage in the RoI head; here the head is
  fully connected for every backbone).

  Batch norm always uses its running statistics ("frozen" batch norm, as
  detection with two images per batch does); parameter names are those of
  `cnn.ResNet`; `preprocess` as `VGGBackbone`'s.
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: Any = cnn.BasicBlock
  num_filters: int = 64
  preprocess: str = 'none'
  dtype: Any = jnp.float32

  stride = 16

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = preprocess(x, self.preprocess).astype(self.dtype)
    x = Conv(
      self.num_filters, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype
    )(x)
    x = nn.relu(batch_norm(False, self.dtype)(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for i, n in enumerate(self.stage_sizes[:3]):
      for j in range(n):
        strides = 2 if i > 0 and j == 0 else 1
        x = self.block(self.num_filters * 2**i, strides, 'B', self.dtype)(
          x, train=False
        )
    return x


BACKBONES = {
  'small': SmallBackbone,
  # Stride 8 (no last pool): a 16x16 map for a 128x128 image, for objects of 12 px.
  'small_s8': functools.partial(SmallBackbone, last_pool=False),
  'vgg16': VGGBackbone,
  'resnet18': functools.partial(ResNetBackbone, stage_sizes=(2, 2, 2, 2)),
  'resnet34': functools.partial(ResNetBackbone, stage_sizes=(3, 4, 6, 3)),
  'resnet50': functools.partial(
    ResNetBackbone, stage_sizes=(3, 4, 6, 3), block=cnn.Bottleneck
  ),
  # Tiny variants, for tests only.
  'small_tiny': functools.partial(
    SmallBackbone, widths=(4, 4, 8, 8), convs=(1, 1, 1, 1)
  ),
  'vgg_tiny': functools.partial(
    VGGBackbone, convs_per_stage=(1, 1, 1, 1, 1), widths=(4, 4, 8, 8, 8)
  ),
  'resnet_tiny': functools.partial(
    ResNetBackbone, stage_sizes=(1, 1, 1), num_filters=4
  ),
}


def make_backbone(name: str, **kwargs) -> nn.Module:
  """The backbone called `name` (one of `BACKBONES`)."""
  choose('backbone', name, BACKBONES)
  return BACKBONES[name](**kwargs)


def backbone_stride(backbone: str) -> int:
  """The feature stride of backbone `backbone`: 16, or 8 for `small_s8`."""
  choose('backbone', backbone, BACKBONES)
  return 8 if backbone == 'small_s8' else 16
