"""Super-resolution networks: SRCNN, VDSR, SRResNet, the SRGAN discriminator, and
the VGG19 feature extractor of SRGAN's content loss.

Images are NHWC floats in [0, 1] (Y-channel networks: Y / 255, i.e. [16, 235] / 255).

* `SRCNN` (Dong et al., 2014): f1-f2-f3 convolutions with n1 = 64, n2 = 32
  filters on the bicubic-upscaled image; 'VALID' as in the paper (a 33x33
  sub-image gives a 21x21 output for 9-1-5) or 'SAME'.
* `VDSR` (Kim et al., 2016): 20 3x3 convolutions of 64 filters on the bicubic-
  upscaled image, predicting the residual that is added back.
* `SRResNet` (Ledig et al., 2017): on the LR image; a 9x9 convolution, 16
  residual blocks (conv-BN-PReLU-conv-BN), a convolution and BN with a long skip,
  log2(scale) sub-pixel x2 upsamplers (conv to 4x channels, pixel shuffle,
  PReLU) and a 9x9 output convolution. Output is linear in [0, 1] (the paper
  maps HR to [-1, 1]; the scale does not change what is learned).
* `SRGANDiscriminator`: 8 convolutions (64, 64, 128, 128, 256, 256, 512, 512
  filters, stride 2 at every second), leaky ReLU 0.2, BN after all but the
  first, then dense 1024, leaky ReLU, dense 1: a logit.
* `VGG19Features`: VGG19's 16 convolutions up to phi_5,4 (conv5_4 after its
  ReLU, before the fifth pool), with the input convention of its weights
  (Keras' / Caffe's or torchvision's); weights come from a file
  (`nkjax.weights.load_vgg19`), since none can be downloaded here.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nkjax.errors import UserError
from nkjax.losses import VGG_FEATURE_SCALE, vgg_content_loss  # noqa: F401 (moved)
from nkjax.models import backbones, cnn
from nkjax.models.layers import Conv, batch_norm
from nkjax.ops import conv as conv_ops
from nkjax.ops import resize


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
  """Sub-pixel rearrangement (Shi et al., 2016), PyTorch's channel order:
  `[n, h, w, c r^2] -> [n, h r, w r, c]` with
  `out[n, h r + i, w r + j, c] = x[n, h, w, c r^2 + i r + j]`."""
  n, h, w, crr = x.shape
  c = crr // (r * r)
  x = x.reshape(n, h, w, c, r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(n, h * r, w * r, c)


def icnr(r: int, base: nn.initializers.Initializer | None = None):
  """ICNR (Aitken et al., 2017): a kernel initializer for a convolution that
  `pixel_shuffle(., r)` follows. `base` (LeCun normal by default) draws a
  `[kh, kw, in, out / r^2]` kernel and each of its output channels is repeated
  r^2 times (channels `c r^2 .. c r^2 + r^2 - 1` share channel c's kernel), so
  with zero biases `pixel_shuffle(conv(x), r)` starts as the nearest-neighbour
  upsampling of one convolution: no sub-pixel checkerboard at initialisation.

  >>> k = icnr(2)(jax.random.key(0), (3, 3, 8, 12))
  >>> bool((k[..., 0] == k[..., 3]).all() and (k[..., 3] != k[..., 4]).any())
  True
  """
  base = base or nn.initializers.lecun_normal()

  def init(key, shape, dtype=jnp.float32):
    *window, out = shape
    if out % (r * r):
      raise ValueError(
        f'ICNR at x{r} needs output channels divisible by {r * r}, got {out}'
      )
    return jnp.repeat(base(key, (*window, out // (r * r)), dtype), r * r, axis=-1)

  return init


class SRCNN(nn.Module):
  """Dong et al. (2014): patch extraction (f1, n1), non-linear mapping (f2, n2),
  reconstruction (f3, channels). Input: the bicubic-upscaled image `[n, h, w, c]`;
  output `[n, h - f1 - f2 - f3 + 3, ...]` ('VALID') or `[n, h, w, c]` ('SAME')."""

  f1: int = 9
  f2: int = 1
  f3: int = 5
  n1: int = 64
  n2: int = 32
  channels: int = 1
  padding: str = 'VALID'
  # The paper draws weights from N(0, 0.001^2); None keeps flax's LeCun normal.
  init_std: float | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    init = (
      nn.initializers.normal(self.init_std)
      if self.init_std
      else nn.initializers.lecun_normal()
    )
    conv = functools.partial(
      Conv, padding=self.padding, kernel_init=init, dtype=self.dtype
    )
    x = nn.relu(conv(self.n1, (self.f1, self.f1), name='conv1')(x.astype(self.dtype)))
    x = nn.relu(conv(self.n2, (self.f2, self.f2), name='conv2')(x))
    return conv(self.channels, (self.f3, self.f3), name='conv3')(x).astype(jnp.float32)


class VDSR(nn.Module):
  """Kim et al. (2016): `depth` 3x3 convolutions ('SAME'), ReLU between, the last
  predicting the residual: output = input + residual, `[n, h, w, c]` both."""

  depth: int = 20
  features: int = 64
  channels: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train
    # He et al.'s initialisation, as the paper uses for its deep ReLU stack.
    conv = functools.partial(
      Conv, kernel_size=(3, 3), padding='SAME', kernel_init=nn.initializers.he_normal(),
      dtype=self.dtype,
    )  # fmt: skip
    y = x.astype(self.dtype)
    for _ in range(self.depth - 1):
      y = nn.relu(conv(self.features)(y))
    # The residual is added to the float32 input: the output keeps its precision.
    return x + conv(self.channels)(y).astype(jnp.float32)


def _prelu():
  # One slope per layer, initialised at 0.25 (He et al., 2015).
  return nn.PReLU(negative_slope_init=0.25)


class ResidualBlock(nn.Module):
  features: int = 64
  norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    bn = functools.partial(batch_norm, train, self.dtype)
    y = Conv(self.features, (3, 3), padding='SAME', dtype=self.dtype)(x)
    y = _prelu()(bn()(y) if self.norm else y)
    y = Conv(self.features, (3, 3), padding='SAME', dtype=self.dtype)(y)
    return x + (bn()(y) if self.norm else y)


class SRResNet(nn.Module):
  """Ledig et al. (2017): LR `[n, h, w, c]` in [0, 1] -> `[n, scale h, scale w, c]`.

  Attributes:
    blocks: residual blocks (16 in the paper).
    scale: a power of two; one sub-pixel x2 stage per factor of 2.
    norm: batch norm in the blocks (the paper's; EDSR later dropped it).
    icnr: ICNR initialisation of the sub-pixel convolutions (`icnr`; the paper
      predates it and draws them like every other layer).
    bicubic_skip: add the MATLAB-bicubic upsampling of the input to the output,
      so the network learns the residual over bicubic as VDSR does (a departure
      from Ledig et al.; with a zero output convolution it outputs bicubic).
    dtype: the compute dtype (parameters stay float32; the output and the
      bicubic skip are float32).
  """

  blocks: int = 16
  features: int = 64
  scale: int = 4
  channels: int = 3
  norm: bool = True
  icnr: bool = False
  bicubic_skip: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    lr = x
    stages = int(round(math.log2(self.scale)))
    if 2**stages != self.scale:
      raise UserError(f'SRResNet scales by powers of two, not {self.scale}')
    conv = functools.partial(Conv, padding='SAME', dtype=self.dtype)
    x = _prelu()(conv(self.features, (9, 9))(x.astype(self.dtype)))
    y = x
    for _ in range(self.blocks):
      y = ResidualBlock(self.features, self.norm, self.dtype)(y, train=train)
    y = conv(self.features, (3, 3))(y)
    y = x + (batch_norm(train, self.dtype)(y) if self.norm else y)
    init = {'kernel_init': icnr(2)} if self.icnr else {}
    for _ in range(stages):
      y = conv(4 * self.features, (3, 3), **init)(y)
      y = _prelu()(pixel_shuffle(y, 2))
    y = conv(self.channels, (9, 9))(y).astype(jnp.float32)
    return y + resize.imresize(lr, scale=float(self.scale)) if self.bicubic_skip else y


class SRGANDiscriminator(nn.Module):
  """Ledig et al. (2017), figure 4: `[n, h, w, c]` in [0, 1] -> `[n]` logits.

  `widths` and `dense` are smaller in the tiny test variant.
  """

  widths: tuple[int, ...] = (64, 128, 256, 512)
  dense: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    act = functools.partial(nn.leaky_relu, negative_slope=0.2)
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      for stride in (1, 2):
        x = Conv(width, (3, 3), (stride, stride), padding='SAME', dtype=self.dtype)(x)
        if i or stride == 2:  # no batch norm after the first convolution
          x = batch_norm(train, self.dtype)(x)
        x = act(x)
    x = act(nn.Dense(self.dense, dtype=self.dtype)(x.reshape(x.shape[0], -1)))
    return nn.Dense(1, dtype=self.dtype)(x)[:, 0].astype(jnp.float32)


# ---------------------------------------------------------------- VGG19 features

# Keras' VGG19 ('caffe' preprocessing): BGR, minus the ImageNet mean, in [0, 255].
VGG_MEAN_BGR = backbones.CAFFE_MEAN_BGR
VGG19_CONVS = cnn.VGG_STAGES[19]  # (2, 2, 4, 4, 4): phi_5,4 is the 16th convolution
VGG19_WIDTHS = (64, 128, 256, 512, 512)


class VGG19Features(nn.Module):
  """VGG19 (configuration E) up to phi_5,4: `[n, h, w, 3]` RGB in [0, 1] ->
  `[n, h / 16, w / 16, 512]` (conv5_4 after ReLU, four max pools before it).

  The convolutions are named `Conv_0` .. `Conv_15` as in `nkjax.models.cnn.VGG`
  (`vgg19`), so a VGG19 trained there loads as is (without its dense layers).
  `preprocess` (`nkjax.models.backbones.PREPROCESS`) is the input convention of
  the weights: Keras' 'caffe' by default, 'torchvision' for torchvision's
  (`nkjax.weights.load_vgg19` gives it with the params).
  """

  convs_per_stage: tuple[int, ...] = VGG19_CONVS
  widths: tuple[int, ...] = VGG19_WIDTHS
  preprocess: str = 'caffe'

  @nn.compact
  def __call__(self, rgb, *, train: bool = False):
    del train
    x = backbones.preprocess(rgb, self.preprocess)
    last = len(self.widths) - 1
    for stage, (n, width) in enumerate(
      zip(self.convs_per_stage, self.widths, strict=True)
    ):
      for _ in range(n):
        x = nn.relu(Conv(width, (3, 3), padding=1)(x))
      if stage < last:
        x = conv_ops.max_pool(x, (2, 2), (2, 2))
    return x


# ---------------------------------------------------------------- geometry


def receptive_field(model: nn.Module) -> int:
  """The receptive field of an SR network in its input's pixels (HR pixels for
  SRCNN and VDSR, LR pixels for SRResNet): inputs smaller than this are rejected."""
  if isinstance(model, SRCNN):
    return model.f1 + model.f2 + model.f3 - 2
  if isinstance(model, VDSR):
    return 2 * model.depth + 1
  if isinstance(model, SRResNet):
    # In LR pixels: the 9x9 head (radius 4), two 3x3 per block, the 3x3 after
    # them and the first upsampler's conv (radius 1 each), then the second
    # stage's convs at 2x (radius 1/2 each) and the 9x9 tail at `scale` x.
    stages = int(round(math.log2(model.scale)))
    radius = 4 + 2 * model.blocks + 1 + sum(1 / 2**s for s in range(stages))
    radius += 4 / model.scale
    return 2 * math.ceil(radius) + 1
  raise TypeError(f'no receptive field for {type(model).__name__}')
