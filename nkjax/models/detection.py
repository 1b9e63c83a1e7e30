"""Object detectors of the R-CNN family: R-CNN, Fast R-CNN and Faster R-CNN.

Boxes are `(x1, y1, x2, y2)` float32 pixels in continuous coordinates (the
toolkit's convention, `nkjax.ops.boxes`); object classes are 0..K-1 and the
detectors' heads put background at index 0, so head class `c + 1` is object
class `c`. Every shape is static: proposals and detections are padded to fixed
counts with a boolean mask beside them.

* `FasterRCNN` (Ren et al. 2015): backbone -> region proposal network on the
  shared feature map -> `propose` (decode, clip, min size, pre-NMS top-n, NMS,
  post-NMS top-n) -> RoI pooling or RoIAlign -> `BoxHead` (fc layers, class
  logits with background, per-class box deltas).
* `FastRCNN` (Girshick 2015): the same backbone and head on proposals given as
  input (selective search, or the fallback `sliding_windows`).
* `RCNNClassifier` (Girshick et al. 2014): a CNN on each proposal warped to a
  fixed size with context (`warp_proposals`), with a softmax head (not the
  paper's per-class SVMs) and per-class box regression.

Backbones (`BACKBONES`): `small` (trains from scratch on a CPU), `vgg16` (the
13 convolutions of VGG-16 without the last pool: stride 16, 512 channels) and
`resnet18/34/50` (stem and the first three stages: stride 16). Their parameter
names are those of `nkjax.models.cnn.VGG` / `ResNet`, so a classifier's
parameters load into them unchanged (`load_backbone_params`).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError, choose
from nkjax.models import cnn
from nkjax.models.layers import Conv, batch_norm
from nkjax.ops import anchors as anchor_ops
from nkjax.ops import boxes as box_ops
from nkjax.ops import conv as conv_ops
from nkjax.ops import roi as roi_ops

# The box-delta normalisation of the Fast R-CNN head (torchvision's default) and
# of the RPN (unit weights, as torchvision's RPN).
HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


# ---------------------------------------------------------------- backbones


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
  dtype: Any = jnp.float32

  @property
  def stride(self) -> int:
    return 16 if self.last_pool else 8

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = x.astype(self.dtype)
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

  Parameter names `Conv_0` .. `Conv_12` are those of `cnn.VGG`.
  """

  convs_per_stage: Sequence[int] = cnn.VGG_STAGES[16]
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  dtype: Any = jnp.float32

  stride = 16

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = x.astype(self.dtype)
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
  `cnn.ResNet`.
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: Any = cnn.BasicBlock
  num_filters: int = 64
  dtype: Any = jnp.float32

  stride = 16

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = x.astype(self.dtype)
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


def load_backbone_params(params: dict, classifier_params: dict) -> dict:
  """`params` with every backbone (and matching fc) parameter replaced by the one
  of the same name in `classifier_params` (a `cnn.VGG` / `cnn.ResNet` parameter
  tree, e.g. ImageNet weights converted by the user).

  The backbone's `Conv_*`, `BatchNorm_*` and block parameters keep their names;
  VGG's `Dense_0`, `Dense_1` (fc6, fc7) initialise the box head's two fc layers
  when their shapes agree (the Fast R-CNN recipe). Raises `UserError` naming the
  first parameter whose shape differs.
  """
  params = jax.tree.map(lambda x: x, dict(params))
  backbone = dict(params['backbone'])
  for name, value in backbone.items():
    if name not in classifier_params:
      raise UserError(
        f'backbone weights lack {name!r} (they have {", ".join(sorted(classifier_params))}); '
        'give the weights of the same architecture as --config.backbone'
      )
    got = jax.tree.map(np.shape, classifier_params[name])
    want = jax.tree.map(np.shape, value)
    if got != want:
      raise UserError(
        f'backbone weight {name!r} has shape {got}, the model needs {want}'
      )
    backbone[name] = jax.tree.map(jnp.asarray, classifier_params[name])
  params['backbone'] = backbone
  head = dict(params['head'])
  for mine, theirs in (('fc_0', 'Dense_0'), ('fc_1', 'Dense_1')):
    if theirs in classifier_params and jax.tree.map(
      np.shape, classifier_params[theirs]
    ) == jax.tree.map(np.shape, head[mine]):
      head[mine] = jax.tree.map(jnp.asarray, classifier_params[theirs])
  params['head'] = head
  return params


# ---------------------------------------------------------------- heads


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


# ---------------------------------------------------------------- proposals


def propose(
  objectness: jax.Array,
  deltas: jax.Array,
  anchors: jax.Array,
  *,
  height: int,
  width: int,
  pre_nms_top_n: int,
  post_nms_top_n: int,
  nms_threshold: float = 0.7,
  min_size: float = 0.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Region proposals of one image from the RPN's outputs (static shapes).

  Decode every anchor's deltas, clip to the image, drop boxes with a side under
  `min_size` (by mask), keep the `pre_nms_top_n` best scores, NMS at
  `nms_threshold`, keep the `post_nms_top_n` best survivors.

  Args:
    objectness: `[N]` logits; deltas `[N, 4]`; anchors `[N, 4]`.

  Returns:
    `(boxes [post_nms_top_n, 4], scores [post_nms_top_n], valid bool
    [post_nms_top_n])`, best first; invalid rows are padding.
  """
  n = objectness.shape[0]
  boxes = box_ops.decode(deltas, anchors, weights=RPN_WEIGHTS)
  boxes = box_ops.clip_to_image(boxes, height=height, width=width)
  valid = box_ops.min_size_mask(boxes, min_size=min_size)
  scores = jnp.where(valid, objectness, -jnp.inf)
  k = min(pre_nms_top_n, n)
  top_scores, top = jax.lax.top_k(scores, k)
  top_boxes, top_valid = boxes[top], valid[top]
  idx, keep = box_ops.nms(
    top_boxes,
    top_scores,
    iou_threshold=nms_threshold,
    max_output=post_nms_top_n,
    valid=top_valid,
  )
  keep = keep & top_valid[idx]
  return (
    jnp.where(keep[:, None], top_boxes[idx], 0.0),
    jnp.where(keep, top_scores[idx], -jnp.inf),
    keep,
  )


def postprocess(
  logits: jax.Array,
  deltas: jax.Array,
  rois: jax.Array,
  roi_valid: jax.Array,
  *,
  height: int,
  width: int,
  score_threshold: float = 0.05,
  nms_threshold: float = 0.3,
  max_detections: int = 100,
  pre_nms_top_n: int = 1000,
) -> dict[str, jax.Array]:
  """Detections of one image from a head's outputs: per-class boxes and
  softmax scores, score threshold, per-class NMS, the best `max_detections`.

  Args:
    logits: `[R, K + 1]` (background at 0); deltas `[R, K, 4]`;
    rois: `[R, 4]` pixels; roi_valid: bool `[R]`.

  Returns:
    `{'boxes' [D, 4], 'scores' [D], 'labels' int32 [D] (0..K-1), 'valid' bool
    [D]}` with D = max_detections, best first.
  """
  r, k = deltas.shape[:2]
  probs = jax.nn.softmax(logits, axis=-1)[:, 1:]
  boxes = box_ops.decode(deltas, rois[:, None, :], weights=HEAD_WEIGHTS)
  boxes = box_ops.clip_to_image(boxes, height=height, width=width).reshape(-1, 4)
  scores = probs.reshape(-1)
  classes = jnp.tile(jnp.arange(k, dtype=jnp.int32), r)
  valid = (
    jnp.repeat(roi_valid, k)
    & (scores > score_threshold)
    & box_ops.min_size_mask(boxes, min_size=1e-3)
  )
  # Most candidates are background: NMS only on the best few, which is exact
  # whenever fewer than pre_nms_top_n candidates pass the threshold.
  m = min(pre_nms_top_n, r * k)
  top_scores, top = jax.lax.top_k(jnp.where(valid, scores, -jnp.inf), m)
  idx, keep = box_ops.batched_nms(
    boxes[top],
    top_scores,
    classes[top],
    iou_threshold=nms_threshold,
    max_output=max_detections,
    valid=valid[top],
  )
  sel = top[idx]
  keep = keep & valid[sel]
  return {
    'boxes': jnp.where(keep[:, None], boxes[sel], 0.0),
    'scores': jnp.where(keep, scores[sel], 0.0),
    'labels': jnp.where(keep, classes[sel], 0),
    'valid': keep,
  }


# ---------------------------------------------------------------- detectors


class FasterRCNN(nn.Module):
  """Faster R-CNN: backbone, RPN, proposals, RoI pooling, box head.

  Attributes:
    num_classes: K object classes (the head adds background).
    backbone: a name in `BACKBONES`.
    anchor_scales, anchor_ratios: anchor sides in pixels and height/width ratios
      (the paper: 128/256/512 and 0.5/1/2 at stride 16).
    rpn_width: channels of the RPN's 3x3 convolution (256 for ZF, 512 for VGG).
    fc: widths of the head's fc layers (VGG-16: 4096, 4096).
    roi_op: 'align' (RoIAlign) or 'pool' (RoI max pooling, the papers').
    roi_size: the pooled grid (7x7 for VGG-16).
    pre_nms_top_n, post_nms_top_n: proposal counts at test time (the paper:
      6000 and 300); training values are arguments of `proposals`.
    rpn_nms_threshold, min_size: the proposal NMS threshold and smallest side.
    score_threshold, nms_threshold, max_detections: the test-time post-processing
      (0.05, 0.3 and 100 as in the papers' code).
    svd_rank: None, or the rank of the head's fc layers at test time (truncated
      SVD, `factor_box_head`).
  """

  num_classes: int
  backbone: str = 'small'
  anchor_scales: Sequence[float] = (16.0, 32.0, 64.0)
  anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  rpn_width: int = 128
  fc: Sequence[int] = (256, 256)
  roi_op: str = 'align'
  roi_size: int = 7
  pre_nms_top_n: int = 1000
  post_nms_top_n: int = 100
  rpn_nms_threshold: float = 0.7
  min_size: float = 0.0
  score_threshold: float = 0.05
  nms_threshold: float = 0.3
  max_detections: int = 100
  dropout_rate: float = 0.0
  svd_rank: int | None = None
  dtype: Any = jnp.float32

  def setup(self):
    choose('roi_op', self.roi_op, ('align', 'pool'))
    self.backbone_net = make_backbone(self.backbone, dtype=self.dtype)
    self.rpn_head = RPNHead(
      num_anchors=len(self.anchor_scales) * len(self.anchor_ratios),
      width=self.rpn_width,
      dtype=self.dtype,
    )
    self.box_head = BoxHead(
      num_classes=self.num_classes,
      fc=self.fc,
      dropout_rate=self.dropout_rate,
      svd_rank=self.svd_rank,
      dtype=self.dtype,
    )

  @property
  def stride(self) -> int:
    return backbone_stride(self.backbone)

  def features(self, images, *, train: bool = False):
    """images `[b, h, w, 3]` in [0, 1] -> the shared map `[b, h/16, w/16, c]`."""
    return self.backbone_net(images, train=train)

  def rpn(self, features):
    """-> `(objectness [b, N], deltas [b, N, 4])`, N = h' * w' * A."""
    return self.rpn_head(features)

  def head(self, features, rois, *, train: bool = False):
    """RoIs `[b, R, 4]` (pixels) -> `(logits [b, R, K + 1], deltas [b, R, K, 4])`."""
    pooled = pool_rois(
      features,
      rois,
      stride=self.stride,
      output_size=(self.roi_size, self.roi_size),
      roi_op=self.roi_op,
    )
    return self.box_head(pooled, train=train)

  def __call__(self, images, *, train: bool = False):
    """Detections of a batch `[b, h, w, 3]`: the dict of `postprocess`, each
    entry with a leading batch axis, plus the `proposals` `[b, P, 4]` and
    `proposal_valid`."""
    h, w = images.shape[1:3]
    feats = self.features(images, train=train)
    obj, deltas = self.rpn(feats)
    rois, _, valid = batch_proposals(
      self, obj, deltas, feature_shape=feats.shape[1:3], height=h, width=w,
      pre_nms_top_n=self.pre_nms_top_n,
      post_nms_top_n=self.post_nms_top_n,
    )  # fmt: skip
    rois = jax.lax.stop_gradient(rois)
    logits, box_deltas = self.head(feats, rois, train=train)
    out = jax.vmap(
      functools.partial(
        postprocess,
        height=h,
        width=w,
        score_threshold=self.score_threshold,
        nms_threshold=self.nms_threshold,
        max_detections=self.max_detections,
      )
    )(logits, box_deltas, rois, valid)
    return {**out, 'proposals': rois, 'proposal_valid': valid}


def backbone_stride(backbone: str) -> int:
  """The feature stride of backbone `backbone`: 16, or 8 for `small_s8`."""
  choose('backbone', backbone, BACKBONES)
  return 8 if backbone == 'small_s8' else 16


def faster_rcnn_anchors(
  model: FasterRCNN, feature_height: int, feature_width: int
) -> np.ndarray:
  """Anchors `[feature_height * feature_width * A, 4]` (pixels) of `model` on a
  feature map of that size, in the order of the RPN's outputs. Taken from the
  map's own shape, since pooling floors odd sizes (a 171-px side gives 10
  cells at stride 16, not ceil(171 / 16) = 11)."""
  return anchor_ops.anchors(
    feature_height=feature_height,
    feature_width=feature_width,
    stride=backbone_stride(model.backbone),
    scales=tuple(model.anchor_scales),
    ratios=tuple(model.anchor_ratios),
  )


def batch_proposals(
  model: FasterRCNN,
  objectness,
  deltas,
  *,
  feature_shape,
  height,
  width,
  pre_nms_top_n,
  post_nms_top_n,
):
  """`propose` over a batch with `model`'s anchors on a map of `feature_shape`
  `(h', w')`, its NMS threshold and min size: objectness `[b, N]`, deltas
  `[b, N, 4]` -> `(boxes [b, P, 4], scores [b, P], valid [b, P])`, P =
  post_nms_top_n"""
  fn = functools.partial(
    propose,
    anchors=jnp.asarray(faster_rcnn_anchors(model, *feature_shape)),
    height=height,
    width=width,
    pre_nms_top_n=pre_nms_top_n,
    post_nms_top_n=post_nms_top_n,
    nms_threshold=model.rpn_nms_threshold,
    min_size=model.min_size,
  )
  return jax.vmap(fn)(objectness, deltas)


class FastRCNN(nn.Module):
  """Fast R-CNN: backbone and box head on proposals given as input.

  Attributes as `FasterRCNN` (without the RPN's).
  """

  num_classes: int
  backbone: str = 'small'
  fc: Sequence[int] = (256, 256)
  roi_op: str = 'align'
  roi_size: int = 7
  score_threshold: float = 0.05
  nms_threshold: float = 0.3
  max_detections: int = 100
  dropout_rate: float = 0.0
  svd_rank: int | None = None
  dtype: Any = jnp.float32

  def setup(self):
    choose('roi_op', self.roi_op, ('align', 'pool'))
    self.backbone_net = make_backbone(self.backbone, dtype=self.dtype)
    self.box_head = BoxHead(
      num_classes=self.num_classes,
      fc=self.fc,
      dropout_rate=self.dropout_rate,
      svd_rank=self.svd_rank,
      dtype=self.dtype,
    )

  @property
  def stride(self) -> int:
    return backbone_stride(self.backbone)

  def features(self, images, *, train: bool = False):
    return self.backbone_net(images, train=train)

  def head(self, features, rois, *, train: bool = False):
    pooled = pool_rois(
      features,
      rois,
      stride=self.stride,
      output_size=(self.roi_size, self.roi_size),
      roi_op=self.roi_op,
    )
    return self.box_head(pooled, train=train)

  def __call__(self, images, proposals, proposal_valid, *, train: bool = False):
    """Detections (the dict of `postprocess` with a batch axis) of images
    `[b, h, w, 3]` with proposals `[b, P, 4]` and mask `proposal_valid [b, P]`."""
    h, w = images.shape[1:3]
    logits, deltas = self.head(
      self.features(images, train=train), proposals, train=train
    )
    return jax.vmap(
      functools.partial(
        postprocess,
        height=h,
        width=w,
        score_threshold=self.score_threshold,
        nms_threshold=self.nms_threshold,
        max_detections=self.max_detections,
      )
    )(logits, deltas, proposals, proposal_valid)


class RCNNClassifier(nn.Module):
  """R-CNN's per-proposal network: a CNN on warped crops `[n, s, s, 3]` ->
  `(logits [n, K + 1], deltas [n, K, 4])`.

  The paper fine-tunes AlexNet on warped proposals, then trains per-class linear
  SVMs on its fc7 features (positives: ground truth only; negatives: IoU < 0.3,
  with hard-negative mining) and a separate ridge regression from pool5
  features to the box. Here one network is trained with a softmax over K + 1
  classes (the fine-tuning objective itself, which the paper reports at 50.9
  against the SVMs' 54.2 mAP on VOC07) and the box regression is a second
  output trained jointly on proposals with IoU >= 0.6.

  Attributes:
    widths: channels of the 3x3 convolution stages, each followed by a 2x2 max
      pool.
    fc: the fc layers after them.
  """

  num_classes: int
  widths: Sequence[int] = (16, 32, 64)
  fc: Sequence[int] = (256,)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, crops, *, train: bool = False):
    x = crops.astype(self.dtype)
    for width in self.widths:
      x = nn.relu(Conv(width, (3, 3), padding=1, dtype=self.dtype)(x))
      x = conv_ops.max_pool(x, (2, 2), (2, 2))
    return BoxHead(num_classes=self.num_classes, fc=self.fc, dtype=self.dtype)(x)


def warp_proposals(
  image: jax.Array, boxes: jax.Array, *, size: int, context: int
) -> jax.Array:
  """R-CNN's input: each box of one image dilated so that, once warped to
  `size x size`, it is surrounded by `context` pixels of image on every side
  (the paper: 16 at 227), then bilinearly resampled (anisotropic scaling).

  Parts outside the image are zero (the paper fills them with the mean image,
  which is zero after its mean subtraction).

  Args:
    image: `[h, w, c]`; boxes: `[n, 4]` pixels.

  Returns:
    `[n, size, size, c]`.
  """
  if 2 * context >= size:
    raise UserError(
      f'R-CNN context ({context} px) must be under half the warp size ({size})'
    )
  scale = size / (size - 2 * context)
  cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
  hw = jnp.maximum(boxes[:, 2] - boxes[:, 0], 1.0) * scale / 2
  hh = jnp.maximum(boxes[:, 3] - boxes[:, 1], 1.0) * scale / 2
  dilated = jnp.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=-1)
  return roi_ops.roi_align(
    image,
    dilated,
    output_size=(size, size),
    spatial_scale=1.0,
    sampling_ratio=1,
    aligned=True,
  )


# ---------------------------------------------------------------- proposal sources (host)


def sliding_windows(
  *,
  height: int,
  width: int,
  sizes: Sequence[float] = (16.0, 32.0, 64.0),
  ratios: Sequence[float] = (0.5, 1.0, 2.0),
  overlap: float = 0.5,
) -> np.ndarray:
  """The fallback proposal source when selective search is not installed: the
  same dense windows for every image, each size at each ratio (height/width)
  on a grid whose step is `(1 - overlap)` of the window's side.

  Unlike selective search it does not look at the image, so proposals fit
  objects less tightly and the detectors that use them lean on box regression.

  Returns:
    `[n, 4]` float32 boxes inside the image.
  """
  out = []
  for s in sizes:
    for r in ratios:
      bw, bh = min(s / np.sqrt(r), width), min(s * np.sqrt(r), height)
      sx, sy = max(bw * (1 - overlap), 1.0), max(bh * (1 - overlap), 1.0)
      xs = np.arange(0.0, width - bw + 1e-3, sx)
      ys = np.arange(0.0, height - bh + 1e-3, sy)
      xx, yy = np.meshgrid(xs, ys)
      out.append(np.stack([xx, yy, xx + bw, yy + bh], -1).reshape(-1, 4))
  return np.concatenate(out).astype(np.float32)


def selective_search_available() -> bool:
  """Whether OpenCV's contrib `ximgproc` (the `[rcnn]` extra) is installed."""
  try:
    import cv2

    return hasattr(cv2, 'ximgproc')
  except ImportError:
    return False


def selective_search(
  image: np.ndarray, *, max_proposals: int, mode: str = 'fast'
) -> np.ndarray:
  """Selective search (Uijlings et al. 2013) by OpenCV's contrib `ximgproc`.

  Args:
    image: `[h, w, 3]` floats in [0, 1] or uint8, RGB.
    max_proposals: keep the first this many, in OpenCV's ranking.
    mode: 'fast' or 'quality' (the R-CNN paper's 'fast' mode).

  Returns:
    `[n, 4]` float32 pixel boxes, n <= max_proposals.

  Raises:
    UserError: when OpenCV's contrib modules are not installed.
  """
  if not selective_search_available():
    raise UserError(
      "selective search needs OpenCV's contrib modules: pip install -e '.[rcnn]' "
      '(opencv-contrib-python-headless), or --config.proposals=sliding_windows'
    )
  import cv2

  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
  cv2.setNumThreads(1)
  ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
  ss.setBaseImage(np.ascontiguousarray(image[..., ::-1]))
  if mode == 'fast':
    ss.switchToSelectiveSearchFast()
  else:
    ss.switchToSelectiveSearchQuality()
  rects = ss.process()[:max_proposals].astype(np.float32)
  if len(rects) == 0:
    return np.zeros((0, 4), np.float32)
  return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)


def pad_proposals(boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """`boxes [n, 4]` padded (or cut) to `[size, 4]` with a bool mask `[size]`."""
  out = np.zeros((size, 4), np.float32)
  n = min(len(boxes), size)
  out[:n] = boxes[:n]
  return out, np.arange(size) < n
