"""Anchor boxes: every scale x aspect ratio at every position of a feature map.

Boxes follow `nkjax.ops.boxes`' continuous pixel convention. An anchor of scale
s and ratio r (= height / width) has area s^2 exactly: width s / sqrt(r) and
height s sqrt(r), centred on its feature cell's centre ((x + 0.5) stride,
(y + 0.5) stride) in image pixels. (The original Faster R-CNN code rounds the
widths and heights to whole pixels under its +1 convention, so its 128 x 0.5
anchor is 184 x 96 rather than 181.02 x 90.51; nkjax keeps the exact sizes.)
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError


def base_anchors(
  *,
  scales: Sequence[float] = (128.0, 256.0, 512.0),
  ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> np.ndarray:
  """The `[A, 4]` anchors centred on (0, 0), A = len(ratios) * len(scales).

  Ordered ratio-major, scale-minor (anchor a = ratio index * len(scales) + scale
  index), as the original Faster R-CNN code and torchvision order them.
  """
  scales = np.asarray(scales, np.float64)
  ratios = np.asarray(ratios, np.float64)
  if scales.ndim != 1 or ratios.ndim != 1 or not scales.size or not ratios.size:
    raise UserError('scales and ratios must be non-empty sequences of numbers')
  if np.any(scales <= 0) or np.any(ratios <= 0):
    raise UserError(f'scales and ratios must be positive; got {scales}, {ratios}')
  w = (scales[None, :] / np.sqrt(ratios)[:, None]).reshape(-1)
  h = (scales[None, :] * np.sqrt(ratios)[:, None]).reshape(-1)
  return np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=-1).astype(np.float32)


def anchors(
  *,
  feature_height: int,
  feature_width: int,
  stride: float,
  scales: Sequence[float] = (128.0, 256.0, 512.0),
  ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> jax.Array:
  """All anchors of a `feature_height x feature_width` map, `[H * W * A, 4]` float32.

  Ordered (y, x, a), so that an RPN head's output `[H, W, A * k]` reshaped to
  `[H * W * A, k]` lines up row for row; `a` runs as in `base_anchors`. Computed
  in NumPy from static sizes, so under `jit` it is a constant.

  Args:
    feature_height, feature_width: the feature map's size in cells.
    stride: image pixels per feature cell (16 for VGG-16's conv5_3).
    scales: anchor sides sqrt(area) in image pixels (Faster R-CNN: 128, 256, 512).
    ratios: height / width (Faster R-CNN: 0.5, 1, 2).
  """
  if feature_height < 1 or feature_width < 1 or stride <= 0:
    raise UserError(
      'feature_height and feature_width must be >= 1 and stride > 0; got '
      f'{feature_height}, {feature_width}, {stride}'
    )
  base = base_anchors(scales=scales, ratios=ratios).astype(np.float64)
  cy = (np.arange(feature_height) + 0.5) * stride
  cx = (np.arange(feature_width) + 0.5) * stride
  centres = np.stack(np.meshgrid(cx, cy, indexing='xy'), axis=-1)  # [H, W, 2] (x, y)
  shifts = np.concatenate([centres, centres], axis=-1)[:, :, None, :]
  return jnp.asarray((shifts + base[None, None]).reshape(-1, 4), jnp.float32)
