"""Object detectors of the R-CNN family: R-CNN, Fast R-CNN and Faster R-CNN.

Boxes are `(x1, y1, x2, y2)` float32 pixels in continuous coordinates (the
toolkit's convention, `nkjax.ops.boxes`); object classes are 0..K-1 and the
detectors' heads put background at index 0, so head class `c + 1` is object
class `c`. Every shape is static: proposals and detections are padded to fixed
counts with a boolean mask beside them.

* `FasterRCNN` (Ren et al. 2015): backbone -> region proposal network on the
  shared feature map -> `propose` (decode, clip, min size, pre-NMS top-n, NMS,
  post-NMS top-n) -> RoI pooling or RoIAlign -> `BoxHead` (fc layers, class
  logits with background, per-class box deltas). It extends `FastRCNN` by the
  RPN.
* `FastRCNN` (Girshick 2015): the same backbone and head on proposals given as
  input (`nkjax.data.proposals`: selective search, or `sliding_windows`).
* `RCNNClassifier` (Girshick et al. 2014): a CNN on each proposal warped to a
  fixed size with context (`warp_proposals`), with a softmax head (not the
  paper's per-class SVMs) and per-class box regression.

The backbones (`BACKBONES`, `make_backbone`) live in `nkjax.models.backbones`,
the heads and their SVD (`RPNHead`, `BoxHead`, `factor_box_head`) in
`nkjax.models.detection_heads`; both are re-exported here.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError, choose
from nkjax.models.backbones import (  # noqa: F401 (re-exported)
  BACKBONES,
  ResNetBackbone,
  SmallBackbone,
  VGGBackbone,
  backbone_stride,
  make_backbone,
)
from nkjax.models.detection_heads import (  # noqa: F401 (re-exported)
  BoxHead,
  FactoredDense,
  RPNHead,
  check_svd_rank,
  factor_box_head,
  pool_rois,
  truncated_svd,
)
from nkjax.models.layers import Conv
from nkjax.ops import anchors as anchor_ops
from nkjax.ops import boxes as box_ops
from nkjax.ops import conv as conv_ops
from nkjax.ops import roi as roi_ops

# The box-delta normalisation of the Fast R-CNN head (torchvision's default) and
# of the RPN (unit weights, as torchvision's RPN).
HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


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


class FastRCNN(nn.Module):
  """Fast R-CNN: backbone and box head on proposals given as input.

  Attributes:
    num_classes: K object classes (the head adds background).
    backbone: a name in `BACKBONES`.
    preprocess: the input convention of the backbone's weights
      (`backbones.PREPROCESS`; `nkjax.weights.load_detector_weights` gives it).
    fc: widths of the head's fc layers (VGG-16: 4096, 4096).
    roi_op: 'align' (RoIAlign) or 'pool' (RoI max pooling, the papers').
    roi_size: the pooled grid (7x7 for VGG-16).
    score_threshold, nms_threshold, max_detections: the test-time post-processing
      (0.05, 0.3 and 100 as in the papers' code).
    dropout_rate: dropout after each fc layer of the head (training only).
    svd_rank: None, or the rank of the head's fc layers at test time (truncated
      SVD, `factor_box_head`).
  """

  num_classes: int
  backbone: str = 'small'
  preprocess: str = 'none'
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
    self.backbone_net = make_backbone(
      self.backbone, preprocess=self.preprocess, dtype=self.dtype
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

  def detect(self, features, rois, roi_valid, *, height, width, train=False):
    """The head on RoIs `[b, R, 4]` (mask `[b, R]`), then `postprocess` of each
    image of `height` x `width` pixels: the dict of `postprocess`, batched."""
    logits, deltas = self.head(features, rois, train=train)
    return jax.vmap(
      functools.partial(
        postprocess,
        height=height,
        width=width,
        score_threshold=self.score_threshold,
        nms_threshold=self.nms_threshold,
        max_detections=self.max_detections,
      )
    )(logits, deltas, rois, roi_valid)

  def __call__(self, images, proposals, proposal_valid, *, train: bool = False):
    """Detections (the dict of `postprocess` with a batch axis) of images
    `[b, h, w, 3]` with proposals `[b, P, 4]` and mask `proposal_valid [b, P]`."""
    h, w = images.shape[1:3]
    feats = self.features(images, train=train)
    return self.detect(feats, proposals, proposal_valid, height=h, width=w, train=train)


class FasterRCNN(FastRCNN):
  """Faster R-CNN: `FastRCNN` whose proposals come from its own region proposal
  network on the shared feature map.

  Attributes (beyond `FastRCNN`'s):
    anchor_scales, anchor_ratios: anchor sides in pixels and height/width ratios
      (the paper: 128/256/512 and 0.5/1/2 at stride 16).
    rpn_width: channels of the RPN's 3x3 convolution (256 for ZF, 512 for VGG).
    pre_nms_top_n, post_nms_top_n: proposal counts at test time (the paper:
      6000 and 300); training values are arguments of `batch_proposals`.
    rpn_nms_threshold, min_size: the proposal NMS threshold and smallest side.
  """

  anchor_scales: Sequence[float] = (16.0, 32.0, 64.0)
  anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  rpn_width: int = 128
  pre_nms_top_n: int = 1000
  post_nms_top_n: int = 100
  rpn_nms_threshold: float = 0.7
  min_size: float = 0.0

  def setup(self):
    super().setup()
    self.rpn_head = RPNHead(
      num_anchors=len(self.anchor_scales) * len(self.anchor_ratios),
      width=self.rpn_width,
      dtype=self.dtype,
    )

  def rpn(self, features):
    """-> `(objectness [b, N], deltas [b, N, 4])`, N = h' * w' * A."""
    return self.rpn_head(features)

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
    out = self.detect(feats, rois, valid, height=h, width=w, train=train)
    return {**out, 'proposals': rois, 'proposal_valid': valid}


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
