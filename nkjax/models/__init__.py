"""The course's networks as pure `flax.linen` modules, by name.

Every module is a small dataclass: configure it by attributes, pass
`train: bool` at call time, initialise with `model.init(key, *inputs,
train=False)`. Image models take NHWC float arrays `[batch, h, w, c]`.

* feed-forward: `MLP`;
* convolutional classifiers (`nkjax.models.cnn`): `LeNet5`, `AlexNet`,
  `VGG` and `VGG11`/`VGG13`/`VGG16`/`VGG19`, `ResNet` and `ResNet18`/`34`/`50`
  (ImageNet stem), `ResNet20`/`32`/`56` (CIFAR stem); `create(name, **attrs)`
  builds any of them from its lower-case name (`MODELS`);
* recurrent (`nkjax.models.rnn`): the cells `ElmanCell`, `LSTMCell`, `GRUCell`;
  the stacked (bidirectional, masked) layer `Recurrent`; `CharLM`,
  `SequenceClassifier`;
* GANs (`nkjax.models.gan`): `MLPGenerator`, `MLPDiscriminator`,
  `DCGANGenerator`, `DCGANDiscriminator` (conditional when given labels);
* super-resolution (`nkjax.models.sr`): `SRCNN`, `VDSR`, `SRResNet`,
  `SRGANDiscriminator`, `VGG19Features` (SRGAN's content loss);
* detection (`nkjax.models.detection`): `FasterRCNN`, `FastRCNN`,
  `RCNNClassifier`; their backbones (`nkjax.models.backbones`,
  `make_backbone`) and heads (`nkjax.models.detection_heads`: `RPNHead`,
  `BoxHead` and its truncated SVD);
* shared layers (`nkjax.models.layers`): `Conv`, `ConvTranspose`, `batch_norm`,
  `activation`.

>>> import jax, jax.numpy as jnp
>>> from nkjax.models import LeNet5
>>> model = LeNet5(num_classes=10)
>>> variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
>>> model.apply(variables, jnp.zeros((4, 28, 28, 1)), train=False).shape
(4, 10)
>>> cell = LSTMCell(features=3)
>>> x = jnp.ones((2, 5))
>>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
>>> (c, h), y = cell.apply(cell.init(jax.random.key(1), carry, x), carry, x)
>>> h.shape, bool((y == h).all())
((2, 3), True)
"""

from nkjax.models import (
  backbones,
  cnn,
  detection,
  detection_heads,
  gan,
  layers,
  mlp,
  rnn,
  sr,
)
from nkjax.models.cnn import (
  MODELS,
  VGG,
  VGG11,
  VGG13,
  VGG16,
  VGG19,
  AlexNet,
  BasicBlock,
  Bottleneck,
  LeNet5,
  ResNet,
  ResNet18,
  ResNet20,
  ResNet32,
  ResNet34,
  ResNet50,
  ResNet56,
  count_params,
  create,
)
from nkjax.models.detection import (
  BoxHead,
  FasterRCNN,
  FastRCNN,
  RCNNClassifier,
  RPNHead,
  make_backbone,
)
from nkjax.models.gan import (
  DCGANDiscriminator,
  DCGANGenerator,
  MLPDiscriminator,
  MLPGenerator,
  dcgan_widths,
)
from nkjax.models.layers import Conv, ConvTranspose, activation, batch_norm
from nkjax.models.mlp import MLP
from nkjax.models.rnn import (
  CharLM,
  ElmanCell,
  GRUCell,
  LSTMCell,
  Recurrent,
  SequenceClassifier,
)
from nkjax.models.sr import SRCNN, VDSR, SRGANDiscriminator, SRResNet, VGG19Features

__all__ = [
  # submodules
  'backbones',
  'cnn',
  'detection',
  'detection_heads',
  'gan',
  'layers',
  'mlp',
  'rnn',
  'sr',
  # super-resolution and detection
  'SRCNN',
  'VDSR',
  'SRResNet',
  'SRGANDiscriminator',
  'VGG19Features',
  'FasterRCNN',
  'FastRCNN',
  'RCNNClassifier',
  'RPNHead',
  'BoxHead',
  'make_backbone',
  # feed-forward
  'MLP',
  # convolutional
  'LeNet5',
  'AlexNet',
  'VGG',
  'VGG11',
  'VGG13',
  'VGG16',
  'VGG19',
  'ResNet',
  'ResNet18',
  'ResNet34',
  'ResNet50',
  'ResNet20',
  'ResNet32',
  'ResNet56',
  'BasicBlock',
  'Bottleneck',
  'MODELS',
  'create',
  'count_params',
  # recurrent
  'ElmanCell',
  'LSTMCell',
  'GRUCell',
  'Recurrent',
  'CharLM',
  'SequenceClassifier',
  # GANs
  'MLPGenerator',
  'MLPDiscriminator',
  'DCGANGenerator',
  'DCGANDiscriminator',
  'dcgan_widths',
  # layers
  'Conv',
  'ConvTranspose',
  'activation',
  'batch_norm',
]
