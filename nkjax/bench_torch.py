"""Eager PyTorch equivalents of the benchmarked models, for `nkjax.bench --torch`.

Only for timing comparisons: same layers, widths and parameter counts as the
flax models (the test checks the counts); PyTorch is not a dependency of nkjax.
"""

import torch
from torch import nn


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


MODELS = {
  'mlp': mlp,
  'lenet5': lenet5,
  'vgg11': vgg11,
  'resnet20': resnet20,
  'lstm_lm': CharLM,
}
