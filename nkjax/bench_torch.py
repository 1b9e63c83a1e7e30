"""Eager PyTorch equivalents of the benchmarked steps, for `nkjax.bench --torch`.

Only for timing comparisons: same layers, widths and parameter counts as the
flax models (the tests check the counts); PyTorch is not a dependency of nkjax.
`STEPS[name](batch)` takes the JAX benchmark's host batch (numpy, NHWC images)
and returns `step()`, which runs one train step (forward, backward, the
optimizer's update) of the same kind as the JAX one.
"""

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nkjax import bench_torch_detection
from nkjax.train import detection_presets


def mlp() -> nn.Module:
  return nn.Sequential(
    nn.Flatten(),
    nn.Linear(784, 256),
    nn.ReLU(),
    nn.Linear(256, 256),
    nn.ReLU(),
    nn.Linear(256, 10),
  )


def lenet5() -> nn.Module:
  return nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
  )  # fmt: skip


def vgg11() -> nn.Module:
  layers, cin = [], 3
  for n, width in zip((1, 1, 2, 2, 2), (64, 128, 256, 512, 512), strict=True):
    for _ in range(n):
      layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
      cin = width
    layers.append(nn.MaxPool2d(2))
  return nn.Sequential(
    *layers, nn.Flatten(), nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.5),
    nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10),
  )  # fmt: skip


class _Block(nn.Module):
  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x[:, :, :: self.stride, :: self.stride]
    if self.extra:  # option A: zero-padded channels, no parameters
      shortcut = nn.functional.pad(
        shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2)
      )
    return torch.relu(y + shortcut)


def resnet20() -> nn.Module:
  layers = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
  cin = 16
  for i, width in enumerate((16, 32, 64)):
    for j in range(3):
      layers.append(_Block(cin, width, 2 if i > 0 and j == 0 else 1))
      cin = width
  return nn.Sequential(
    *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)
  )


class CharLM(nn.Module):
  """`nkjax.models.rnn.CharLM`: embedding, one LSTM layer, a linear readout.
  `nn.LSTM` has two bias vectors per gate where flax's cell has one, so it
  holds 4 * features more parameters."""

  def __init__(self, vocab_size=100, embed=64, features=256):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, embed)
    self.lstm = nn.LSTM(embed, features, batch_first=True)
    self.readout = nn.Linear(features, vocab_size)

  def forward(self, tokens):
    return self.readout(self.lstm(self.embed(tokens))[0])


def _nchw(images: np.ndarray) -> torch.Tensor:
  # NCHW: PyTorch's fast layout on a CPU.
  return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def classifier_step(model_fn, batch: dict) -> callable:
  """Adam on the cross-entropy of `model_fn()` on `batch['image']`, `['label']`."""
  model = model_fn()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  x, y = _nchw(batch['image']), torch.from_numpy(batch['label']).long()

  def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()

  return step


def lm_step(model_fn, batch: dict) -> callable:
  """Adam on next-token prediction over every position of `batch['tokens']`."""
  model = model_fn()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  tokens = torch.from_numpy(batch['tokens']).long()
  x, y = tokens[:, :-1], tokens[:, 1:].reshape(-1)

  def step():
    opt.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y).backward()
    opt.step()

  return step


# ---------------------------------------------------------------- DCGAN


class DCGANGenerator(nn.Module):
  """`nkjax.models.gan.DCGANGenerator`, unconditional: z -> a linear map to a
  4x4 map (batch norm over its features, relu), stride-2 4x4 transposed
  convolutions with batch norm and relu, tanh."""

  def __init__(self, latent_dim=100, widths=(256, 128, 64), channels=3):
    super().__init__()
    self.width = widths[0]
    self.project = nn.Linear(latent_dim, 16 * widths[0], bias=False)
    self.norm = nn.BatchNorm1d(16 * widths[0])
    layers = []
    for cin, cout in zip(widths, widths[1:], strict=False):
      layers += [
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
      ]
    self.up = nn.Sequential(*layers, nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))

  def forward(self, z):
    x = torch.relu(self.norm(self.project(z))).reshape(-1, self.width, 4, 4)
    return torch.tanh(self.up(x))


def dcgan_discriminator(widths=(64, 128, 256), channels=3, size=32) -> nn.Module:
  """`nkjax.models.gan.DCGANDiscriminator`: stride-2 4x4 convolutions, leaky
  relu (0.2), batch norm after all but the first, one logit."""
  layers, cin = [], channels
  for i, width in enumerate(widths):
    layers.append(nn.Conv2d(cin, width, 4, 2, 1))
    if i > 0:
      layers.append(nn.BatchNorm2d(width))
    layers.append(nn.LeakyReLU(0.2))
    cin = width
  side = size // 2 ** len(widths)
  return nn.Sequential(*layers, nn.Flatten(), nn.Linear(side * side * cin, 1))


def dcgan_step(batch: dict, latent_dim: int = 100) -> callable:
  """`nkjax.train.gan.gan_round` with k = 1: D's update on m real and m generated
  images (D run on each), then G's non-saturating update through D; Adam 2e-4,
  beta1 0.5. D's weights take no gradient in G's update, as in the JAX step."""
  g, d = DCGANGenerator(latent_dim), dcgan_discriminator()
  opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
  real = _nchw(batch['image'])
  m = real.shape[0]
  ones, zeros = torch.ones(m), torch.zeros(m)
  bce = F.binary_cross_entropy_with_logits

  def step():
    with torch.no_grad():
      fake = g(torch.randn(m, latent_dim))
    opt_d.zero_grad(set_to_none=True)
    (bce(d(real)[:, 0], ones) + bce(d(fake)[:, 0], zeros)).backward()
    opt_d.step()
    d.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    bce(d(g(torch.randn(m, latent_dim)))[:, 0], ones).backward()
    opt_g.step()
    d.requires_grad_(True)

  return step


# ---------------------------------------------------------------- super-resolution


def vdsr(depth=20, features=64) -> nn.Module:
  """`nkjax.models.sr.VDSR`'s layers: `depth` 3x3 convolutions, relu between
  (the residual added in `sr_step`)."""
  layers, cin = [], 1
  for _ in range(depth - 1):
    layers += [nn.Conv2d(cin, features, 3, padding=1), nn.ReLU()]
    cin = features
  return nn.Sequential(*layers, nn.Conv2d(features, 1, 3, padding=1))


class SRResNet(nn.Module):
  """`nkjax.models.sr.SRResNet` without batch norm (the CPU preset's): a 9x9
  convolution and PReLU, residual blocks (conv, PReLU, conv), a 3x3 convolution
  with a long skip, x2 sub-pixel stages, a 9x9 convolution; plus the bicubic
  upsampling of the input (PyTorch's bicubic, a = -0.75, where nkjax has
  MATLAB's a = -0.5: the same work)."""

  def __init__(self, blocks=4, features=32, scale=4, channels=3):
    super().__init__()
    f, self.scale = features, scale
    self.head = nn.Sequential(nn.Conv2d(channels, f, 9, padding=4), nn.PReLU())
    self.blocks = nn.Sequential(*[
      nn.Sequential(
        nn.Conv2d(f, f, 3, padding=1), nn.PReLU(), nn.Conv2d(f, f, 3, padding=1)
      )
      for _ in range(blocks)
    ])  # fmt: skip
    self.body = nn.Conv2d(f, f, 3, padding=1)
    up = []
    for _ in range(scale.bit_length() - 1):
      up += [nn.Conv2d(f, 4 * f, 3, padding=1), nn.PixelShuffle(2), nn.PReLU()]
    self.up = nn.Sequential(*up, nn.Conv2d(f, channels, 9, padding=4))

  def forward(self, lr):
    x = self.head(lr)
    y = x
    for block in self.blocks:
      y = y + block(y)
    y = self.up(x + self.body(y))
    bicubic = F.interpolate(lr, scale_factor=self.scale, mode='bicubic')
    return y + bicubic


def _y(rgb: torch.Tensor) -> torch.Tensor:
  # `nkjax.ops.image.rgb_to_y` / 255: MATLAB's Y of [0, 1] RGB, NCHW.
  w = torch.tensor([65.481, 128.553, 24.966]).reshape(1, 3, 1, 1)
  return ((rgb * w).sum(1, keepdim=True) + 16.0) / 255.0


def sr_step(batch: dict, *, model_fn, y_channel: bool, loss: str) -> callable:
  """`nkjax.train.sr.pixel_train_step`: Adam 1e-4 on the pixel loss ('mse' or
  'l1') of the model's output on `batch['input']` against `batch['hr']`; a
  Y-channel model (VDSR) adds its output to its input and reads both images' Y."""
  model = model_fn()
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)
  x, hr = _nchw(batch['input']), _nchw(batch['hr'])
  if y_channel:
    x, hr = _y(x), _y(hr)
  pixel_loss = {'mse': F.mse_loss, 'l1': F.l1_loss}[loss]

  def step():
    opt.zero_grad(set_to_none=True)
    out = model(x)
    pixel_loss(x + out if y_channel else out, hr).backward()
    opt.step()

  return step


MODELS = {
  'mlp': mlp,
  'lenet5': lenet5,
  'vgg11': vgg11,
  'resnet20': resnet20,
  'lstm_lm': CharLM,
  'dcgan_g': DCGANGenerator,
  'dcgan_d': dcgan_discriminator,
  'srresnet_cpu': SRResNet,
  'vdsr': vdsr,
  'faster_rcnn': functools.partial(
    bench_torch_detection.FasterRCNN, detection_presets.OFFLINE
  ),
}

STEPS = {
  **{
    name: functools.partial(classifier_step, MODELS[name])
    for name in ('mlp', 'lenet5', 'vgg11', 'resnet20')
  },
  'lstm_lm': functools.partial(lm_step, CharLM),
  'dcgan': dcgan_step,
  'srresnet_cpu': functools.partial(
    sr_step, model_fn=SRResNet, y_channel=False, loss='l1'
  ),
  'vdsr': functools.partial(sr_step, model_fn=vdsr, y_channel=True, loss='mse'),
  'faster_rcnn': functools.partial(
    bench_torch_detection.faster_rcnn_step, preset=detection_presets.OFFLINE
  ),
}
