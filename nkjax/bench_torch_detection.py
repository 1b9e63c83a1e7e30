"""The eager PyTorch equivalent of the offline Faster R-CNN train step
(`nkjax.bench`'s `faster_rcnn`), for `nkjax.bench --torch`.

The same layers, sizes and parameter count as `nkjax.models.detection.FasterRCNN`
of a `nkjax.train.detection_presets` recipe (the tests check the count), and
the same work as `nkjax.train.detection.faster_rcnn_train_step`: RPN targets
(IoU matching, 256 anchors sampled per image), proposals (decode, clip, top
`rpn_pre_nms_train`, NMS at 0.7, `rpn_post_nms_train` kept), 64 RoIs sampled
per image with the ground truth appended, RoIAlign, the two heads' losses, one
momentum-SGD update. Without torchvision, as a minimal PyTorch program has
them: RoIAlign is `F.grid_sample`'s bilinear samples (2x2 a bin, aligned)
averaged, and NMS a greedy pass over the IoU matrix on the host. Eager PyTorch
has dynamic shapes, so the sampled anchors and RoIs are gathered, not masked.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RATIOS = (0.5, 1.0, 2.0)
_MAX_LOG = float(np.log(1000.0 / 16))  # the decoded size's clamp, as torchvision's


def small_backbone(
  backbone: str, widths=(16, 32, 64, 128), convs=(1, 1, 1, 2)
) -> nn.Sequential:
  """`nkjax.models.backbones.SmallBackbone`: 'small' (stride 16) or 'small_s8'
  (no last pool, stride 8)."""
  last_pool = {'small': True, 'small_s8': False}[backbone]
  layers, cin = [], 3
  for i, (width, n) in enumerate(zip(widths, convs, strict=True)):
    for j in range(n):
      layers += [nn.Conv2d(cin, width, 3, 2 if i == j == 0 else 1, 1), nn.ReLU()]
      cin = width
    if 0 < i < len(widths) - 1 or (i > 0 and last_pool):
      layers.append(nn.MaxPool2d(2))
  return nn.Sequential(*layers)


def anchors(height: int, width: int, stride: int, scales) -> torch.Tensor:
  """`nkjax.ops.anchors.anchors`: `[height * width * A, 4]`, ordered (y, x, a)."""
  s, r = np.asarray(scales, np.float64), np.asarray(RATIOS, np.float64)
  w = (s[None, :] / np.sqrt(r)[:, None]).reshape(-1)
  h = (s[None, :] * np.sqrt(r)[:, None]).reshape(-1)
  base = np.stack([-w / 2, -h / 2, w / 2, h / 2], -1)
  cx, cy = np.meshgrid(
    (np.arange(width) + 0.5) * stride, (np.arange(height) + 0.5) * stride
  )
  shifts = np.stack([cx, cy, cx, cy], -1)[:, :, None, :]
  return torch.from_numpy((shifts + base).reshape(-1, 4).astype(np.float32))


class FasterRCNN(nn.Module):
  """Backbone, RPN head (3x3 convolution, 1x1 objectness and deltas), RoIAlign
  and the box head (fc layers, K + 1 class logits, K x 4 deltas)."""

  def __init__(self, preset: dict, num_classes: int = 20):
    super().__init__()
    if preset['roi_op'] != 'align':
      raise ValueError(f'only RoIAlign is written here, not {preset["roi_op"]!r}')
    self.backbone = small_backbone(preset['backbone'])
    self.stride = 8 if preset['backbone'] == 'small_s8' else 16
    self.scales, self.roi_size = preset['anchor_scales'], preset['roi_size']
    a, c, width = len(self.scales) * len(RATIOS), 128, preset['rpn_width']
    self.rpn_conv = nn.Conv2d(c, width, 3, padding=1)
    self.rpn_objectness = nn.Conv2d(width, a, 1)
    self.rpn_deltas = nn.Conv2d(width, 4 * a, 1)
    fc, layers, d = preset['fc'], [], c * self.roi_size**2
    for f in fc:
      layers += [nn.Linear(d, f), nn.ReLU()]
      d = f
    self.fc = nn.Sequential(*layers)
    self.cls = nn.Linear(d, num_classes + 1)
    self.box = nn.Linear(d, 4 * num_classes)

  def rpn(self, features):
    x = torch.relu(self.rpn_conv(features))
    b = x.shape[0]
    objectness = self.rpn_objectness(x).permute(0, 2, 3, 1).reshape(b, -1)
    return objectness, self.rpn_deltas(x).permute(0, 2, 3, 1).reshape(b, -1, 4)

  def head(self, pooled):
    """RoIAlign's `[R, C, size, size]` -> (logits `[R, K + 1]`, deltas `[R, K, 4]`)."""
    x = self.fc(pooled.reshape(pooled.shape[0], -1))
    return self.cls(x), self.box(x).reshape(x.shape[0], -1, 4)


def roi_align(features, rois, size: int, scale: float, ratio: int = 2):
  """RoIAlign (aligned, `ratio` x `ratio` samples a bin) of one image's
  features `[C, H, W]` at rois `[R, 4]` pixels -> `[R, C, size, size]`."""
  c, h, w = features.shape
  r = rois.shape[0]
  boxes = rois * scale - 0.5
  n = size * ratio
  t = (torch.arange(n, dtype=torch.float32) + 0.5) / n  # sample centres in [0, 1]
  xs = boxes[:, 0:1] + t * (boxes[:, 2:3] - boxes[:, 0:1])
  ys = boxes[:, 1:2] + t * (boxes[:, 3:4] - boxes[:, 1:2])
  grid = torch.stack(
    [
      (xs[:, None, :] * 2 / max(w - 1, 1) - 1).expand(r, n, n),
      (ys[:, :, None] * 2 / max(h - 1, 1) - 1).expand(r, n, n),
    ],
    -1,
  )
  samples = F.grid_sample(
    features[None], grid.reshape(1, r * n, n, 2), align_corners=True
  )  # [1, C, R n, n]
  samples = samples.reshape(c, r, n, n).permute(1, 0, 2, 3)
  return F.avg_pool2d(samples, ratio)


def iou(a, b):
  """`[n, 4]`, `[m, 4]` -> `[n, m]`."""
  area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
  area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
  lt = torch.maximum(a[:, None, :2], b[None, :, :2])
  rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = (rb - lt).clamp(min=0).prod(-1)
  return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def _centres(boxes):
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


def encode(gt, ref, weights):
  gx, gy, gw, gh = _centres(gt)
  rx, ry, rw, rh = _centres(ref)
  wx, wy, ww, wh = weights
  return torch.stack(
    [wx * (gx - rx) / rw, wy * (gy - ry) / rh, ww * torch.log(gw / rw),
     wh * torch.log(gh / rh)], -1,
  )  # fmt: skip


def decode(deltas, ref, weights):
  rx, ry, rw, rh = _centres(ref)
  wx, wy, ww, wh = weights
  x, y = rx + deltas[:, 0] / wx * rw, ry + deltas[:, 1] / wy * rh
  w = rw * torch.exp((deltas[:, 2] / ww).clamp(max=_MAX_LOG))
  h = rh * torch.exp((deltas[:, 3] / wh).clamp(max=_MAX_LOG))
  return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)


def match(boxes, gt, *, positive, negative, negative_low=0.0, low_quality=False):
  """`nkjax.ops.matching.match`: (matched gt index `[n]`, labels `[n]`: 1
  positive, 0 negative, -1 ignored)."""
  overlaps = iou(boxes, gt)
  best, matched = overlaps.max(1)
  labels = torch.full_like(matched, -1)
  labels[(best < negative) & (best >= negative_low)] = 0
  labels[best >= positive] = 1
  if low_quality:  # each ground-truth box's best anchors are positive
    labels[(overlaps == overlaps.max(0, keepdim=True).values).any(1)] = 1
  return matched, labels


def sample(labels, num_samples: int, fraction: float):
  """`nkjax.ops.matching.sample`: (positive indices, negative indices)."""
  pos = torch.nonzero(labels == 1)[:, 0]
  neg = torch.nonzero(labels == 0)[:, 0]
  pos = pos[torch.randperm(len(pos))[: min(len(pos), int(num_samples * fraction))]]
  neg = neg[torch.randperm(len(neg))[: min(len(neg), num_samples - len(pos))]]
  return pos, neg


def nms(boxes, threshold: float, max_output: int) -> torch.Tensor:
  """Greedy NMS of boxes sorted by score: indices of the first `max_output` kept.
  Each kept box's IoU with the boxes after it, on the host, as torchvision's
  CPU kernel visits them (no IoU matrix of all pairs)."""
  b = boxes.numpy()
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  alive, keep = np.ones(len(b), bool), []
  for i in range(len(b)):
    if not alive[i]:
      continue
    keep.append(i)
    if len(keep) == max_output:
      break
    rest = b[i + 1 :]
    iw = np.minimum(b[i, 2], rest[:, 2]) - np.maximum(b[i, 0], rest[:, 0])
    ih = np.minimum(b[i, 3], rest[:, 3]) - np.maximum(b[i, 1], rest[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = np.maximum(area[i] + area[i + 1 :] - inter, 1e-9)
    alive[i + 1 :] &= inter / union <= threshold
  return torch.as_tensor(keep, dtype=torch.long)


def faster_rcnn_step(batch: dict, preset: dict) -> callable:
  """One approximate-joint-training update on `batch` (`image` `[b, h, w, 3]`,
  `boxes` `[b, G, 4]`, `labels` `[b, G]`, `box_mask` `[b, G]`): the RPN's and
  the head's losses added; momentum SGD (0.9), 1e-3, as the JAX benchmark."""
  model = FasterRCNN(preset)
  opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
  images = torch.from_numpy(batch['image']).permute(0, 3, 1, 2).contiguous()
  h, w = images.shape[2:]
  gts = [
    (torch.from_numpy(b[m]), torch.from_numpy(lab[m]).long())
    for b, lab, m in zip(
      batch['boxes'], batch['labels'], batch['box_mask'], strict=True
    )
  ]
  with torch.no_grad():
    fh, fw = model.backbone(images[:1]).shape[2:]
  grid = anchors(fh, fw, model.stride, model.scales)

  def step():
    opt.zero_grad(set_to_none=True)
    features = model.backbone(images)
    objectness, deltas = model.rpn(features)
    rpn_logits, rpn_labels, rpn_pred, rpn_target = [], [], [], []
    pooled, head_classes, head_target = [], [], []
    for i, (gt, gt_labels) in enumerate(gts):
      matched, labels = match(grid, gt, positive=0.7, negative=0.3, low_quality=True)
      pos, neg = sample(labels, 256, 0.5)
      rpn_logits.append(objectness[i, torch.cat([pos, neg])])
      rpn_labels.append(torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]))
      rpn_pred.append(deltas[i, pos])
      rpn_target.append(encode(gt[matched[pos]], grid[pos], RPN_WEIGHTS))
      with torch.no_grad():  # proposals are constants (approximate joint training)
        boxes = decode(deltas[i], grid, RPN_WEIGHTS)
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], -1)  # fmt: skip
        top = objectness[i].topk(min(preset['rpn_pre_nms_train'], len(boxes))).indices
        props = boxes[top][nms(boxes[top], 0.7, preset['rpn_post_nms_train'])]
        cand = torch.cat([props, gt])
        matched, labels = match(cand, gt, positive=0.5, negative=0.5, negative_low=0.1)
        pos, neg = sample(labels, 64, 0.25)
      rois = cand[torch.cat([pos, neg])]
      pooled.append(roi_align(features[i], rois, model.roi_size, 1.0 / model.stride))
      head_classes.append(
        torch.cat(
          [gt_labels[matched[pos]] + 1, torch.zeros(len(neg), dtype=torch.long)]
        )
      )
      head_target.append(encode(gt[matched[pos]], rois[: len(pos)], HEAD_WEIGHTS))
    # The box head once on every image's RoIs, as the JAX step's.
    head_logits, box_deltas = model.head(torch.cat(pooled))
    classes = torch.cat(head_classes)
    fg = classes > 0
    head_pred = box_deltas[fg, classes[fg] - 1]
    rpn_count = max(sum(len(x) for x in rpn_logits), 1)
    head_count = max(len(classes), 1)
    loss = (
      F.binary_cross_entropy_with_logits(
        torch.cat(rpn_logits), torch.cat(rpn_labels), reduction='sum'
      )
      + F.smooth_l1_loss(
        torch.cat(rpn_pred), torch.cat(rpn_target), beta=1 / 9, reduction='sum'
      )
    ) / rpn_count + (
      F.cross_entropy(head_logits, classes, reduction='sum')
      + F.smooth_l1_loss(head_pred, torch.cat(head_target), beta=1.0, reduction='sum')
    ) / head_count
    loss.backward()
    opt.step()

  return step
