"""Convolutional classifiers: LeNet-5, AlexNet, VGG, ResNet (ImageNet and CIFAR stems).

All take NHWC images and `train: bool` at call time, and return logits. Layer
shapes follow the papers and torchvision, so parameter counts at 224x224x3 with
1000 classes equal the published ones (tests pin them). `dtype` sets the
computation type (bfloat16 on accelerators); parameters stay float32.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nkjax.errors import choose
from nkjax.models.layers import Conv, activation, batch_norm
from nkjax.ops import conv as conv_ops
from nkjax.ops import cpu_dispatch
from nkjax.ops.conv import adaptive_avg_pool

POOLS = ('max', 'avg')
STEMS = ('imagenet', 'cifar')
SHORTCUTS = ('A', 'B')


class LeNet5(nn.Module):
  """LeCun et al. (1998): C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84, output.

  The first convolution pads its input by `padding`: 2 takes MNIST's 28x28 to
  the paper's 32x32, so the layer sizes (and the 61,706 parameters at 10
  classes) are the paper's; use 0 for inputs that are 32x32 already. `pool`
  'avg' is the paper's subsampling; 'max' trains faster.

  Attributes:
    padding: zero padding of C1's input on each side, in pixels.
    pool: 'max' or 'avg'.
    norm: add batch norm after each convolution and hidden dense layer.
    dropout_rate: dropout before each dense layer (not the keep rate).
  """

  num_classes: int = 10
  activation: str = 'relu'
  pool: str = 'max'
  padding: int = 2
  dropout_rate: float = 0.0
  norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    act = activation(self.activation)
    choose('pool', self.pool, POOLS)
    pool = conv_ops.max_pool if self.pool == 'max' else nn.avg_pool
    norm = lambda y: batch_norm(train, self.dtype)(y) if self.norm else y  # noqa: E731
    x = x.astype(self.dtype)
    c1 = Conv(6, (5, 5), padding=self.padding, dtype=self.dtype)
    x = pool(act(norm(c1(x))), (2, 2), (2, 2))
    x = pool(
      act(norm(Conv(16, (5, 5), padding='VALID', dtype=self.dtype)(x))),
      (2, 2),
      (2, 2),
    )
    x = x.reshape(x.shape[0], -1)
    for width in (120, 84):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = act(norm(nn.Dense(width, dtype=self.dtype)(x)))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class AlexNet(nn.Module):
  """Krizhevsky et al. (2012) as torchvision builds it (single tower, 61,100,840
  parameters at 224x224 and 1000 classes)."""

  num_classes: int = 1000
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(Conv, dtype=self.dtype)
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2))  # noqa: E731
    x = x.astype(self.dtype)
    x = pool(nn.relu(conv(64, (11, 11), (4, 4), padding=2)(x)))
    x = pool(nn.relu(conv(192, (5, 5), padding=2)(x)))
    x = nn.relu(conv(384, (3, 3), padding=1)(x))
    x = nn.relu(conv(256, (3, 3), padding=1)(x))
    x = pool(nn.relu(conv(256, (3, 3), padding=1)(x)))
    x = adaptive_avg_pool(x, (6, 6)).reshape(x.shape[0], -1)
    for _ in range(2):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(4096, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


VGG_STAGES = {
  11: (1, 1, 2, 2, 2),
  13: (2, 2, 2, 2, 2),
  16: (2, 2, 3, 3, 3),
  19: (2, 2, 4, 4, 4),
}


class VGG(nn.Module):
  """Simonyan & Zisserman (2015), configurations A, B, D, E (VGG-11/13/16/19).

  Five stages of 3x3 convolutions (widths 64..512) each ended by a 2x2 max pool,
  an adaptive 7x7 average pool, then `classifier` dense layers with dropout.

  Attributes:
    convs_per_stage: from `VGG_STAGES`.
    widths: channels per stage; smaller for the tiny test variant.
    classifier: hidden dense widths; (4096, 4096) as in the paper.
    norm: batch norm after every convolution (torchvision's vgg*_bn).
  """

  convs_per_stage: Sequence[int] = VGG_STAGES[16]
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  classifier: Sequence[int] = (4096, 4096)
  num_classes: int = 1000
  dropout_rate: float = 0.5
  norm: bool = False
  pool_to: int = 7
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = x.astype(self.dtype)
    for n, width in zip(self.convs_per_stage, self.widths, strict=True):
      for _ in range(n):
        x = Conv(width, (3, 3), padding=1, use_bias=not self.norm, dtype=self.dtype)(x)
        if self.norm:
          x = batch_norm(train, self.dtype)(x)
        x = nn.relu(x)
      x = conv_ops.max_pool(x, (2, 2), (2, 2))
    x = adaptive_avg_pool(x, (self.pool_to, self.pool_to)).reshape(x.shape[0], -1)
    for width in self.classifier:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with batch norm and an identity or projected shortcut.

  `shortcut`: 'B' projects with a strided 1x1 convolution and batch norm where
  the shape changes (torchvision); 'A' subsamples and pads channels with zeros,
  adding no parameters (the CIFAR ResNets of He et al., 2016).
  """

  filters: int
  strides: int = 1
  shortcut: str = 'B'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    bn = functools.partial(batch_norm, train, self.dtype)
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    y = nn.relu(bn()(conv(self.filters, (3, 3), self.strides, padding=1)(x)))
    y = cpu_dispatch.cpu_fusion_boundary(y)
    # The last norm of a block starts at zero scale, so each block starts as the identity.
    y = bn(scale_init=nn.initializers.zeros)(conv(self.filters, (3, 3), padding=1)(y))
    return cpu_dispatch.cpu_fusion_boundary(
      nn.relu(
        y + _shortcut(x, self.filters, self.strides, self.shortcut, train, self.dtype)
      )
    )


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided, as in torchvision's v1.5), 1x1 expand by 4."""

  filters: int
  strides: int = 1
  shortcut: str = 'B'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    bn = functools.partial(batch_norm, train, self.dtype)
    conv = functools.partial(Conv, use_bias=False, dtype=self.dtype)
    y = nn.relu(bn()(conv(self.filters, (1, 1))(x)))
    y = nn.relu(bn()(conv(self.filters, (3, 3), self.strides, padding=1)(y)))
    y = bn(scale_init=nn.initializers.zeros)(conv(4 * self.filters, (1, 1))(y))
    return nn.relu(
      y + _shortcut(x, 4 * self.filters, self.strides, self.shortcut, train, self.dtype)
    )


def _shortcut(x, filters, strides, kind, train, dtype):
  choose('shortcut', kind, SHORTCUTS)
  if x.shape[-1] == filters and strides == 1:
    return x
  if kind == 'A':
    x = x[:, ::strides, ::strides, :]
    extra = filters - x.shape[-1]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
  x = Conv(filters, (1, 1), strides, use_bias=False, dtype=dtype)(x)
  return batch_norm(train, dtype)(x)


class ResNet(nn.Module):
  """He et al. (2016). `stem` 'imagenet': 7x7/2 conv and 3x3/2 max pool, stages
  of 64..512 filters; 'cifar': one 3x3 conv, stages of 16, 32, 64 filters.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block: `BasicBlock` or `Bottleneck`.
    num_filters: filters of the first stage; doubled at each next stage.
    shortcut: 'B' (projection) for ImageNet, 'A' (zero padding) for CIFAR.
    frozen_batch_norm: batch norm uses (and keeps) its stored statistics in
      training too, as detection backbones fine-tuned on small batches do.
  """

  stage_sizes: Sequence[int]
  block: Callable = BasicBlock
  num_filters: int = 64
  stem: str = 'imagenet'
  shortcut: str = 'B'
  num_classes: int = 1000
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    choose('stem', self.stem, STEMS)
    # `train` reaches only batch norm below (no dropout in a ResNet).
    train = train and not self.frozen_batch_norm
    x = x.astype(self.dtype)
    if self.stem == 'imagenet':
      x = Conv(
        self.num_filters, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype
      )(x)
      x = nn.relu(batch_norm(train, self.dtype)(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    else:
      x = Conv(self.num_filters, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
      x = nn.relu(batch_norm(train, self.dtype)(x))
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        strides = 2 if i > 0 and j == 0 else 1
        x = self.block(self.num_filters * 2**i, strides, self.shortcut, self.dtype)(
          x, train=train
        )
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


_CIFAR = dict(stem='cifar', num_filters=16, shortcut='A')

# The published configurations by name (attributes may still be overridden:
# `VGG16(num_classes=10)`).
VGG11 = functools.partial(VGG, convs_per_stage=VGG_STAGES[11])
VGG13 = functools.partial(VGG, convs_per_stage=VGG_STAGES[13])
VGG16 = functools.partial(VGG, convs_per_stage=VGG_STAGES[16])
VGG19 = functools.partial(VGG, convs_per_stage=VGG_STAGES[19])
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
ResNet20 = functools.partial(ResNet, stage_sizes=(3, 3, 3), **_CIFAR)
ResNet32 = functools.partial(ResNet, stage_sizes=(5, 5, 5), **_CIFAR)
ResNet56 = functools.partial(ResNet, stage_sizes=(9, 9, 9), **_CIFAR)

MODELS: dict[str, Callable[..., nn.Module]] = {
  'lenet5': LeNet5,
  'alexnet': AlexNet,
  'vgg11': VGG11,
  'vgg13': VGG13,
  'vgg16': VGG16,
  'vgg19': VGG19,
  'resnet18': ResNet18,
  'resnet34': ResNet34,
  'resnet50': ResNet50,
  'resnet20': ResNet20,
  'resnet32': ResNet32,
  'resnet56': ResNet56,
  # Tiny variants, for tests only.
  'vgg_tiny': functools.partial(
    VGG, convs_per_stage=(1, 1), widths=(4, 8), classifier=(16,), pool_to=2
  ),
  'resnet_tiny': functools.partial(
    ResNet, stage_sizes=(1, 1), **{**_CIFAR, 'num_filters': 4}
  ),
  'resnet_tiny_bottleneck': functools.partial(
    ResNet, stage_sizes=(1, 1), num_filters=4, block=Bottleneck
  ),
}


def create(name: str, **kwargs) -> nn.Module:
  """The model called `name` (one of `MODELS`), with attributes `kwargs`.

  Every model maps NHWC images `[batch, h, w, c]` (float32) to logits
  `[batch, num_classes]` (float32) and takes `train: bool` at call time.

  >>> import jax, jax.numpy as jnp
  >>> model = create('resnet20', num_classes=10)
  >>> model.stage_sizes, model.stem, model.shortcut
  ((3, 3, 3), 'cifar', 'A')
  >>> logits, variables = jax.eval_shape(  # shapes only, nothing computed
  ...   lambda x: model.init_with_output(jax.random.key(0), x, train=False),
  ...   jnp.zeros((2, 32, 32, 3)),
  ... )
  >>> logits.shape, sorted(variables)
  ((2, 10), ['batch_stats', 'params'])
  >>> create('resnet21')
  Traceback (most recent call last):
  ...
  nkjax.errors.UserError: unknown model 'resnet21'; valid choices: alexnet, lenet5, ...
  """
  choose('model', name, MODELS)
  return MODELS[name](**kwargs)


def count_params(model: nn.Module, input_shape: Sequence[int]) -> int:
  """Trainable parameters of `model` on inputs `[1, *input_shape]`, without
  allocating them (batch-norm statistics are not parameters).

  LeNet-5 on 28x28 digits (padded to the paper's 32x32) has the paper's 61,706
  parameters, ResNet-20 on CIFAR's 32x32x3 the paper's 0.27M:

  >>> count_params(LeNet5(num_classes=10), (28, 28, 1))
  61706
  >>> count_params(ResNet20(num_classes=10), (32, 32, 3))
  269722
  """
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape)), train=False)
  )
  # Shapes only: jnp.size of a ShapeDtypeStruct is deprecated since JAX 0.12.
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))
