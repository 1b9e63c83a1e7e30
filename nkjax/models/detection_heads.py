"""The heads of the R-CNN detectors: the region proposal network's, Fast
R-CNN's box head, and its truncated-SVD compression (Girshick 2015, 3.1).

`pool_rois` gives the head its input: RoI pooling or RoIAlign over a batch.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError
from nkjax.models.layers import Conv
from nkjax.ops import roi as roi_ops


class RPNHead(nn.Module):
  """A 3x3 convolution shared by every position, then 1x1 convolutions to one
  objectness logit and four box deltas per anchor.

  One sigmoid logit per anchor is the paper's two-way softmax with one logit
  fixed at zero (the same family of classifiers, half the outputs).

  Returns `(objectness [b, h * w * A], deltas [b, h * w * A, 4])` in the
  (y, x, anchor) order of `nkjax.ops.anchors.anchors`.
  """

  num_anchors: int
  width: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features):
    init = nn.initializers.normal(0.01)
    x = nn.relu(
      Conv(self.width, (3, 3), padding=1, kernel_init=init, dtype=self.dtype)(features)
    )
    logits = Conv(self.num_anchors, (1, 1), kernel_init=init, dtype=self.dtype)(x)
    deltas = Conv(4 * self.num_anchors, (1, 1), kernel_init=init, dtype=self.dtype)(x)
    b = features.shape[0]
    return (
      logits.reshape(b, -1).astype(jnp.float32),
      deltas.reshape(b, -1, 4).astype(jnp.float32),
    )


class FactoredDense(nn.Module):
  """A fully connected layer of rank `rank`: two layers with no nonlinearity
  between, `x @ sv` (`[d_in, rank]`, no bias) then `@ u` (`[rank, features]`)
  plus the bias: Fast R-CNN's truncated SVD (Girshick 2015, section 3.1), with
  `rank * (d_in + features) + features` parameters instead of
  `(d_in + 1) * features`. `truncated_svd` fills it from a trained layer."""

  features: int
  rank: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.rank, use_bias=False, dtype=self.dtype, name='sv')(x)
    return nn.Dense(self.features, dtype=self.dtype, name='u')(x)


class BoxHead(nn.Module):
  """Fast R-CNN's head: pooled RoI features -> fc layers -> class logits
  (background at 0) and per-class box deltas.

  `svd_rank` (test time only) makes every fc layer a `FactoredDense` of that
  rank, whose parameters `factor_box_head` computes from the trained ones;
  the class and box layers stay whole (the paper compresses fc6 and fc7).

  Input `[..., oh, ow, c]`; returns `(logits [..., K + 1], deltas [..., K, 4])`.
  """

  num_classes: int
  fc: Sequence[int] = (256, 256)
  dropout_rate: float = 0.0
  svd_rank: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled, *, train: bool = False):
    lead = pooled.shape[:-3]
    x = pooled.reshape(*lead, -1).astype(self.dtype)
    for i, width in enumerate(self.fc):
      name = f'fc_{i}'
      if self.svd_rank is None:
        layer = nn.Dense(width, dtype=self.dtype, name=name)
      else:
        layer = FactoredDense(width, self.svd_rank, dtype=self.dtype, name=name)
      x = nn.relu(layer(x))
      if self.dropout_rate:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(
      self.num_classes + 1,
      kernel_init=nn.initializers.normal(0.01),
      dtype=self.dtype,
      name='cls',
    )(x)
    deltas = nn.Dense(
      4 * self.num_classes,
      kernel_init=nn.initializers.normal(0.001),
      dtype=self.dtype,
      name='box',
    )(x)
    return (
      logits.astype(jnp.float32),
      deltas.reshape(*lead, self.num_classes, 4).astype(jnp.float32),
    )


def check_svd_rank(head_params: dict, rank: int) -> None:
  """Raises a one-line `UserError` unless `1 <= rank <= min(u, v)` for every
  fc layer `fc_i` (kernel `[u, v]`) of a `BoxHead`'s parameters."""
  for name in sorted(k for k in head_params if k.startswith('fc_')):
    u, v = np.shape(head_params[name]['kernel'])
    if not 1 <= rank <= min(u, v):
      raise UserError(
        f"--config.svd_rank={rank} is outside 1..{min(u, v)} for the box head's "
        f'{name} ({u}x{v}); give a rank in that range, or None for no SVD'
      )


def truncated_svd(kernel, rank: int) -> tuple[np.ndarray, np.ndarray]:
  """The best rank-`rank` factors of a Dense kernel `[d_in, d_out]` (Eckart-
  Young: the error `kernel - sv @ u` has the discarded singular values, so
  Frobenius norm `sqrt(sum s_i^2, i > rank)` and spectral norm `s_rank+1`).

  The paper writes the layer as `W ~ U_t S_t V_t^T` with `W = kernel^T`: here
  `sv = V_t S_t` `[d_in, rank]` and `u = U_t^T` `[rank, d_out]`. Computed in
  float64 on the host.
  """
  a, s, bt = np.linalg.svd(np.asarray(kernel, np.float64), full_matrices=False)
  dtype = np.asarray(kernel).dtype
  return (a[:, :rank] * s[:rank]).astype(dtype), bt[:rank].astype(dtype)


def factor_box_head(head_params: dict, rank: int) -> dict:
  """A `BoxHead`'s parameters for `BoxHead(svd_rank=rank)`: each `fc_i`
  replaced by its truncated SVD (`{'sv': {'kernel'}, 'u': {'kernel',
  'bias'}}`, the bias unchanged), the class and box layers as they are.

  Raises:
    UserError: a rank outside 1..min(u, v) of some fc layer.
  """
  check_svd_rank(head_params, rank)
  out = dict(head_params)
  for name in (k for k in head_params if k.startswith('fc_')):
    sv, u = truncated_svd(head_params[name]['kernel'], rank)
    out[name] = {
      'sv': {'kernel': jnp.asarray(sv)},
      'u': {'kernel': jnp.asarray(u), 'bias': jnp.asarray(head_params[name]['bias'])},
    }
  return out


def pool_rois(
  features: jax.Array,
  rois: jax.Array,
  *,
  stride: int,
  output_size: tuple[int, int],
  roi_op: str,
) -> jax.Array:
  """RoI features of a batch: features `[b, h, w, c]`, rois `[b, R, 4]` in image
  pixels -> `[b, R, oh, ow, c]`; `roi_op` 'pool' (Fast R-CNN's quantised max
  pooling) or 'align' (RoIAlign, sampling ratio 2, aligned)."""
  if roi_op == 'pool':
    fn = functools.partial(
      roi_ops.roi_pool, output_size=output_size, spatial_scale=1.0 / stride
    )
  else:
    fn = functools.partial(
      roi_ops.roi_align,
      output_size=output_size,
      spatial_scale=1.0 / stride,
      sampling_ratio=2,
      aligned=True,
    )
  return jax.vmap(fn)(features, rois)
