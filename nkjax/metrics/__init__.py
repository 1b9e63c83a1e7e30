"""Mergeable metrics: jitted steps return `(sum, count)` pairs, the host averages.

A metrics dict maps a name to a pair of scalars `(sum, count)`. Pairs from
several steps, several devices or several eval batches are merged by adding them,
so a mean over any number of batches is exact whatever their sizes (padding
examples carry zero weight). Metrics that are not means of per-example values
(mAP, a Frechet distance) are computed on the host by the experiment's own eval
function and reported beside these (`nkjax.metrics.detection`: VOC and COCO
AP).
"""

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nkjax import _lazy

__all__ = ['Metrics', 'accuracy', 'compute', 'frechet_distance', 'mean', 'merge']
_SUBMODULES = ('detection', 'image')

Metrics = dict[str, tuple[jax.Array, jax.Array]]


# Submodules load on first use: detection's pycocotools is not needed here.
__getattr__, __dir__ = _lazy.submodules(__name__, _SUBMODULES)


def mean(
  values: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """The `(sum, count)` pair of per-example `values` `[batch]`, masked where given.

  `mask` is `[batch]`, 1 for a real example and 0 for padding. Returns two
  float32 scalars.

  >>> import jax.numpy as jnp
  >>> total, count = mean(jnp.array([1.0, 2.0, 3.0, 99.0]), jnp.array([1, 1, 1, 0]))
  >>> float(total), float(count)
  (6.0, 3.0)
  """
  values = values.astype(jnp.float32)
  if mask is None:
    return jnp.sum(values), jnp.asarray(values.shape[0], jnp.float32)
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask), jnp.sum(mask)


def accuracy(*, logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None):
  """The `(correct, count)` pair of top-1 accuracy; logits `[batch, classes]`,
  integer labels `[batch]`.

  >>> import jax.numpy as jnp
  >>> logits = jnp.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
  >>> [float(v) for v in accuracy(logits=logits, labels=jnp.array([0, 0, 0]))]
  [2.0, 3.0]
  """
  return mean(jnp.argmax(logits, axis=-1) == labels, mask)


def merge(metrics: Iterable[Mapping]) -> dict[str, tuple[float, float]]:
  """Adds `(sum, count)` pairs name by name, in float64 on the host.

  Two batches of 3 and 1 examples: the merged mean weights each example once
  (2.5), where the mean of the two batch means would be 3.0.

  >>> merged = merge([{'loss': (6.0, 3.0)}, {'loss': (4.0, 1.0)}])
  >>> merged
  {'loss': (10.0, 4.0)}
  >>> compute(merged)
  {'loss': 2.5}
  """
  total: dict[str, list[float]] = {}
  for m in jax.device_get(list(metrics)):
    for name, (s, c) in m.items():
      acc = total.setdefault(name, [0.0, 0.0])
      acc[0] += float(np.asarray(s, np.float64))
      acc[1] += float(np.asarray(c, np.float64))
  return {name: (s, c) for name, (s, c) in total.items()}


def compute(merged: Mapping[str, tuple[float, float]]) -> dict[str, float]:
  """Means from merged pairs; a metric with zero count is NaN.

  >>> compute({'accuracy': (9.0, 10.0), 'empty': (0.0, 0.0)})
  {'accuracy': 0.9, 'empty': nan}
  """
  return {name: (s / c if c else float('nan')) for name, (s, c) in merged.items()}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to feature sets `[n, d]` and `[m, d]`.

  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al., 2017, with
  whatever features are given: this is FID only on Inception features).

  Sets that differ by a shift only have equal covariances, so the distance is
  the squared shift, |(3, 4)|^2 = 25:

  >>> import numpy as np
  >>> a = np.random.default_rng(0).normal(size=(500, 2))
  >>> round(frechet_distance(a, a + [3.0, 4.0]), 6)
  25.0
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  # Tr (S_a S_b)^(1/2) is the sum of the square roots of the eigenvalues of the
  # symmetric S_a^(1/2) S_b S_a^(1/2), which has the same ones: stable when
  # there are fewer examples than features and the covariances are singular,
  # where scipy's sqrtm of the product is not (scipy 1.18 gave a negative
  # distance on two sets of 48 examples).
  w, v = np.linalg.eigh(s_a)
  half_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  m = half_a @ s_b @ half_a
  trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
  distance = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * trace_root
  return max(float(distance), 0.0)  # identical sets can round to -1e-8
