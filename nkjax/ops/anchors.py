"""Anchors (placeholder written by det-model until det-ops lands)."""

import numpy as np


def anchors(*, feature_height, feature_width, stride, scales=(128.0, 256.0, 512.0), ratios=(0.5, 1.0, 2.0)):
  base = []
  for s in scales:
    for r in ratios:
      w, h = s / np.sqrt(r), s * np.sqrt(r)
      base.append([-w / 2, -h / 2, w / 2, h / 2])
  base = np.asarray(base, np.float32)
  ys, xs = np.meshgrid(
    (np.arange(feature_height) + 0.5) * stride, (np.arange(feature_width) + 0.5) * stride, indexing='ij'
  )
  centres = np.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4)
  return (centres + base[None]).reshape(-1, 4).astype(np.float32)
