"""Train and predict steps of R-CNN, Fast R-CNN and Faster R-CNN.

Pure functions of arrays for `nkjax.train.loop.fit` (which jits them):
`train_step(state, batch, rng, frozen=None, *, static...) -> (state, metrics)`;
static options are keyword-only, bound with `functools.partial`. A batch holds
`image` `[b, h, w, 3]` in [0, 1], ground truth `boxes` `[b, G, 4]` (pixels),
`labels` int32 `[b, G]` (0..K-1) and `box_mask` bool `[b, G]`; Fast R-CNN and
R-CNN batches also hold `proposals` `[b, P, 4]` and `proposal_mask` `[b, P]`.
Padded ground truth and padded proposals never match, never count in a loss.

Metrics are `(sum, count)` pairs: the loss terms `rpn_cls_loss`,
`rpn_box_loss` (Faster R-CNN), `cls_loss`, `box_loss` and their sum `loss`
(each the batch's value, count 1, so the host averages them over steps), and
`fg_rois` (foreground share of the sampled RoIs).

`frozen`, when given, is a dict of top-level parameter subtrees (e.g.
`{'backbone_net': ...}`) used in place of the state's own and never
differentiated: the core loop passes it replicated and never checkpoints it.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from nkjax.losses import smooth_l1
from nkjax.models import detection as det
from nkjax.ops import boxes as box_ops
from nkjax.ops import matching
from nkjax.train.steps import model_variables, step_key


def _merge(params, frozen):
  return params if frozen is None else {**params, **frozen}


# ---------------------------------------------------------------- targets


def rpn_targets(
  rng: jax.Array,
  anchors: jax.Array,
  gt_boxes: jax.Array,
  gt_mask: jax.Array,
  *,
  num_samples: int = 256,
  positive_fraction: float = 0.5,
  positive_iou: float = 0.7,
  negative_iou: float = 0.3,
):
  """The RPN's targets for one image (Ren et al. 2015, section 3.1.2).

  Positives: IoU >= `positive_iou` with some ground-truth box, or the best anchor
  of a ground-truth box; negatives: IoU < `negative_iou` with every one; then
  `num_samples` anchors at random, at most `positive_fraction` positive.

  Args:
    anchors: `[N, 4]`; gt_boxes `[G, 4]`; gt_mask bool `[G]`.

  Returns:
    `(positive bool [N], negative bool [N], deltas [N, 4])`: the sampled
    anchors and the encoded box of each anchor's ground truth (unit weights).
  """
  matched, labels = matching.match(
    anchors,
    gt_boxes,
    gt_mask,
    positive_iou=positive_iou,
    negative_iou=negative_iou,
    allow_low_quality=True,
  )
  positive, negative = matching.sample(
    rng, labels, num_samples=num_samples, positive_fraction=positive_fraction
  )
  deltas = box_ops.encode(gt_boxes[matched], anchors, weights=det.RPN_WEIGHTS)
  return positive, negative, deltas


def sample_rois(
  rng: jax.Array,
  rois: jax.Array,
  roi_valid: jax.Array,
  gt_boxes: jax.Array,
  gt_labels: jax.Array,
  gt_mask: jax.Array,
  *,
  num_samples: int = 64,
  fg_fraction: float = 0.25,
  fg_iou: float = 0.5,
  bg_iou_low: float = 0.1,
  box_iou: float | None = None,
):
  """RoIs of one image for the classification head, with their targets.

  Foreground: IoU >= `fg_iou` with a ground-truth box; background: IoU in
  [`bg_iou_low`, `fg_iou`) (Fast R-CNN: 0.5 and [0.1, 0.5), 25% foreground of
  64 RoIs per image). Ground-truth boxes are appended to the candidates first
  (as the papers' code does), so every object has a foreground RoI.

  Args:
    rois: `[R, 4]` candidate boxes; roi_valid bool `[R]`.
    gt_boxes: `[G, 4]`; gt_labels int32 `[G]` in 0..K-1; gt_mask bool `[G]`.
    box_iou: regress boxes only of foreground RoIs with IoU >= this (R-CNN:
      0.6); None: every foreground RoI (Fast R-CNN).

  Returns:
    `(rois [S, 4], classes int32 [S] (0 background, c + 1 object class c),
    deltas [S, 4] (head weights 10, 10, 5, 5), sampled bool [S], regress bool
    [S])` with S = num_samples; unsampled rows are padding.
  """
  cand = jnp.concatenate([rois, gt_boxes.astype(rois.dtype)], axis=0)
  cand_valid = jnp.concatenate([roi_valid, gt_mask], axis=0)
  matched, labels = matching.match(
    cand,
    gt_boxes,
    gt_mask,
    positive_iou=fg_iou,
    negative_iou=fg_iou,
    negative_iou_low=bg_iou_low,
    allow_low_quality=False,
  )
  labels = jnp.where(cand_valid, labels, -1)
  positive, negative = matching.sample(
    rng, labels, num_samples=num_samples, positive_fraction=fg_fraction
  )
  chosen = positive | negative
  idx = jnp.nonzero(chosen, size=num_samples, fill_value=0)[0]
  sampled = jnp.arange(num_samples) < jnp.sum(chosen)
  fg = positive[idx] & sampled
  out_rois = jnp.where(sampled[:, None], cand[idx], 0.0)
  gt_idx = matched[idx]
  classes = jnp.where(fg, gt_labels[gt_idx] + 1, 0).astype(jnp.int32)
  deltas = box_ops.encode(gt_boxes[gt_idx], out_rois, weights=det.HEAD_WEIGHTS)
  deltas = jnp.where(fg[:, None], deltas, 0.0)
  regress = fg
  if box_iou is not None:
    iou = box_ops.pairwise_iou(out_rois, gt_boxes)
    best = jnp.max(jnp.where(gt_mask[None, :], iou, 0.0), axis=1)
    regress = fg & (best >= box_iou)
  return out_rois, classes, deltas, sampled, regress


# ---------------------------------------------------------------- losses


def rpn_losses(objectness, deltas, positive, negative, targets, *, beta: float = 1 / 9):
  """The RPN's two loss terms over a batch, each normalised by the number of
  sampled anchors (as torchvision; the paper's N_reg ~ 2400 locations with
  lambda = 10 weighs the box term about the same).

  Args:
    objectness: `[b, N]` logits; deltas, targets `[b, N, 4]`; positive, negative
      bool `[b, N]`.

  Returns:
    `(cls_loss, box_loss)` scalars.
  """
  sampled = positive | negative
  count = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(objectness, positive.astype(jnp.float32))
  cls_loss = jnp.sum(jnp.where(sampled, bce, 0.0)) / count
  l1 = jnp.sum(smooth_l1(deltas, jax.lax.stop_gradient(targets), beta=beta), axis=-1)
  box_loss = jnp.sum(jnp.where(positive, l1, 0.0)) / count
  return cls_loss, box_loss


def head_losses(
  logits, deltas, classes, targets, sampled, regress, *, beta: float = 1.0
):
  """Fast R-CNN's multi-task loss (lambda = 1): softmax cross-entropy over the
  sampled RoIs plus smooth L1 on the true class's box of the regressed ones,
  both divided by the number of sampled RoIs.

  Args:
    logits: `[..., K + 1]`; deltas `[..., K, 4]`; classes int32 `[...]` (0
    background); targets `[..., 4]`; sampled, regress bool `[...]`.

  Returns:
    `(cls_loss, box_loss)` scalars.
  """
  count = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, classes)
  cls_loss = jnp.sum(jnp.where(sampled, ce, 0.0)) / count
  k = jnp.clip(classes - 1, 0, deltas.shape[-2] - 1)
  pred = jnp.take_along_axis(deltas, k[..., None, None], axis=-2)[..., 0, :]
  l1 = jnp.sum(smooth_l1(pred, targets, beta=beta), axis=-1)
  box_loss = jnp.sum(jnp.where(regress, l1, 0.0)) / count
  return cls_loss, box_loss


def _pair(x):
  return x, jnp.ones((), jnp.float32)


def _fg_share(classes, sampled):
  return jnp.sum((classes > 0) & sampled).astype(jnp.float32), jnp.sum(sampled).astype(
    jnp.float32
  )


def _descend(state, loss_fn):
  """One gradient step on `loss_fn(params) -> (loss, metrics)`:
  `(state, metrics)`."""
  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
  return state.apply_gradients(grads=grads), metrics


def _sample_batch(rng, rois, roi_valid, batch, **options):
  """`sample_rois` of every image: rois `[b, R, 4]`, roi_valid `[b, R]` and
  the batch's ground truth -> `(rois, classes, deltas, sampled, regress)`,
  each with a leading batch axis; one key per image split from `rng`."""
  return jax.vmap(functools.partial(sample_rois, **options))(
    jax.random.split(rng, rois.shape[0]), rois, roi_valid, batch['boxes'],
    batch['labels'], batch['box_mask'],
  )  # fmt: skip


def _head_terms(logits, deltas, classes, targets, sampled, regress):
  """The head's loss terms and their metrics: `(cls_loss, box_loss, metrics)`
  with `cls_loss`, `box_loss` and `fg_rois` as `(sum, count)` pairs."""
  cls, box = head_losses(logits, deltas, classes, targets, sampled, regress)
  metrics = {
    'cls_loss': _pair(cls),
    'box_loss': _pair(box),
    'fg_rois': _fg_share(classes, sampled),
  }
  return cls, box, metrics


def _head_only(logits, deltas, samples):
  """Fast R-CNN's and R-CNN's objective: the head's two terms, and `loss`."""
  cls, box, metrics = _head_terms(logits, deltas, *samples[1:])
  return cls + box, {**metrics, 'loss': _pair(cls + box)}


# ---------------------------------------------------------------- train steps


def faster_rcnn_train_step(
  state,
  batch,
  rng,
  frozen=None,
  *,
  model: det.FasterRCNN,
  rpn_batch: int = 256,
  rpn_positive_fraction: float = 0.5,
  rpn_positive_iou: float = 0.7,
  rpn_negative_iou: float = 0.3,
  pre_nms_top_n: int = 2000,
  post_nms_top_n: int = 128,
  rois_per_image: int = 64,
  fg_fraction: float = 0.25,
  fg_iou: float = 0.5,
  bg_iou_low: float = 0.1,
  train_rpn: bool = True,
  train_head: bool = True,
  proposer: bool = False,
):
  """One update of Faster R-CNN by approximate joint training: the RPN's loss
  and the head's loss are added and back-propagated into the shared backbone,
  with the proposals treated as constants (no gradient through their
  coordinates; Ren et al. 2015, section 3.2).

  `train_rpn=False` or `train_head=False` drop that part's loss (the steps of
  the paper's alternating training; freeze the shared layers with
  `optim.freeze`). Proposals use the training counts `pre_nms_top_n`,
  `post_nms_top_n` (the paper: 12000 and 2000).

  `proposer=True`: `frozen` is instead the whole parameter tree of another
  Faster R-CNN of the same shape whose backbone and RPN make the proposals
  (step 2 of the alternating training: a detector on step 1's proposals); the
  state's own RPN then gives only the (dropped or kept) RPN loss.
  """
  images = batch['image']
  b, h, w = images.shape[:3]
  k_rpn, k_roi, k_drop = (
    step_key(rng, state.step, s) for s in ('rpn', 'roi', 'dropout')
  )

  source = None
  if proposer:
    apply_p = functools.partial(state.apply_fn, model_variables(state, frozen))
    source = apply_p(apply_p(images, train=False, method='features'), method='rpn')

  def loss_fn(params):
    variables = model_variables(state, params if proposer else _merge(params, frozen))
    apply = functools.partial(state.apply_fn, variables)
    feats = apply(images, train=True, method='features')
    obj, deltas = apply(feats, method='rpn')
    src_obj, src_deltas = (obj, deltas) if source is None else source
    # Anchors from the map's static shape; targets do not depend on params.
    anchors = jnp.asarray(det.faster_rcnn_anchors(model, *feats.shape[1:3]))
    positive, negative, rpn_t = jax.vmap(
      functools.partial(
        rpn_targets,
        anchors=anchors,
        num_samples=rpn_batch,
        positive_fraction=rpn_positive_fraction,
        positive_iou=rpn_positive_iou,
        negative_iou=rpn_negative_iou,
      )  # fmt: skip
    )(jax.random.split(k_rpn, b), gt_boxes=batch['boxes'], gt_mask=batch['box_mask'])
    rpn_cls, rpn_box = rpn_losses(obj, deltas, positive, negative, rpn_t)
    props, _, pvalid = det.batch_proposals(
      model, jax.lax.stop_gradient(src_obj), jax.lax.stop_gradient(src_deltas),
      feature_shape=feats.shape[1:3], height=h, width=w, pre_nms_top_n=pre_nms_top_n,
      post_nms_top_n=post_nms_top_n,
    )  # fmt: skip
    rois, *samples = _sample_batch(
      k_roi, props, pvalid, batch, num_samples=rois_per_image,
      fg_fraction=fg_fraction, fg_iou=fg_iou, bg_iou_low=bg_iou_low,
    )  # fmt: skip
    logits, box_deltas = apply(
      feats, rois, train=True, method='head', rngs={'dropout': k_drop}
    )
    cls, box, head_metrics = _head_terms(logits, box_deltas, *samples)
    total = 0.0
    if train_rpn:
      total += rpn_cls + rpn_box
    if train_head:
      total += cls + box
    aux = {
      'rpn_cls_loss': _pair(rpn_cls),
      'rpn_box_loss': _pair(rpn_box),
      **head_metrics,
      'loss': _pair(total),
      'proposals': (jnp.sum(pvalid).astype(jnp.float32), jnp.float32(b)),
    }
    return total, aux

  return _descend(state, loss_fn)


def fast_rcnn_train_step(
  state,
  batch,
  rng,
  frozen=None,
  *,
  rois_per_image: int = 64,
  fg_fraction: float = 0.25,
  fg_iou: float = 0.5,
  bg_iou_low: float = 0.1,
):
  """One update of Fast R-CNN on `batch['proposals']` (Girshick 2015, section
  2.3): `rois_per_image` RoIs per image, `fg_fraction` foreground, the
  multi-task loss."""
  k_roi, k_drop = step_key(rng, state.step, 'roi'), step_key(rng, state.step, 'dropout')
  samples = _sample_batch(
    k_roi, batch['proposals'], batch['proposal_mask'], batch,
    num_samples=rois_per_image, fg_fraction=fg_fraction, fg_iou=fg_iou,
    bg_iou_low=bg_iou_low,
  )  # fmt: skip

  def loss_fn(params):
    apply = functools.partial(
      state.apply_fn, model_variables(state, _merge(params, frozen))
    )
    feats = apply(batch['image'], train=True, method='features')
    logits, deltas = apply(
      feats, samples[0], train=True, method='head', rngs={'dropout': k_drop}
    )
    return _head_only(logits, deltas, samples)

  return _descend(state, loss_fn)


def rcnn_train_step(
  state,
  batch,
  rng,
  frozen=None,
  *,
  warp_size: int = 32,
  context: int = 4,
  crops_per_image: int = 32,
  fg_fraction: float = 0.25,
  fg_iou: float = 0.5,
  box_iou: float = 0.6,
):
  """One update of R-CNN's per-proposal network (Girshick et al. 2014):
  `crops_per_image` proposals per image (foreground IoU >= `fg_iou`, every
  other proposal background; the paper's 32 of 128 per batch), each warped
  with context, classified with softmax over K + 1 and its box regressed
  when its IoU is >= `box_iou`."""
  images = batch['image']
  b = images.shape[0]
  samples = _sample_batch(
    step_key(rng, state.step, 'roi'), batch['proposals'], batch['proposal_mask'],
    batch, num_samples=crops_per_image, fg_fraction=fg_fraction, fg_iou=fg_iou,
    bg_iou_low=0.0, box_iou=box_iou,
  )  # fmt: skip
  crops = jax.vmap(
    functools.partial(det.warp_proposals, size=warp_size, context=context)
  )(images, samples[0])
  crops = crops.reshape(b * crops_per_image, *crops.shape[2:])

  def loss_fn(params):
    logits, deltas = state.apply_fn(
      model_variables(state, _merge(params, frozen)), crops, train=True
    )
    logits = logits.reshape(b, crops_per_image, -1)
    deltas = deltas.reshape(b, crops_per_image, *deltas.shape[1:])
    return _head_only(logits, deltas, samples)

  return _descend(state, loss_fn)


# ---------------------------------------------------------------- predict steps

_OUT = ('boxes', 'scores', 'labels', 'valid')


def _named(out):
  # `det_` keeps the detections apart from the batch's ground-truth `boxes`
  # and `labels` when a predictor returns both.
  return {f'det_{k}': out[k] for k in _OUT}


def faster_rcnn_predict_step(state, batch):
  """Detections of `batch['image']` `[b, h, w, 3]`: `det_boxes [b, D, 4]`,
  `det_scores [b, D]`, `det_labels [b, D]` (0..K-1), `det_valid [b, D]`."""
  out = state.apply_fn(
    model_variables(state, state.params), batch['image'], train=False
  )
  return _named(out)


def fast_rcnn_predict_step(state, batch):
  """As `faster_rcnn_predict_step`, on `batch['proposals']` and `proposal_mask`."""
  out = state.apply_fn(
    model_variables(state, state.params),
    batch['image'],
    batch['proposals'],
    batch['proposal_mask'],
    train=False,
  )
  return _named(out)


def rcnn_predict_step(
  state,
  batch,
  *,
  warp_size: int = 32,
  context: int = 4,
  score_threshold: float = 0.05,
  nms_threshold: float = 0.3,
  max_detections: int = 100,
):
  """R-CNN at test time: every proposal warped and classified, per-class box
  regression, per-class NMS at `nms_threshold` (the paper's 0.3)."""
  images, props, pmask = batch['image'], batch['proposals'], batch['proposal_mask']
  b, p = props.shape[:2]
  h, w = images.shape[1:3]
  crops = jax.vmap(
    functools.partial(det.warp_proposals, size=warp_size, context=context)
  )(images, props)
  logits, deltas = state.apply_fn(
    model_variables(state, state.params),
    crops.reshape(b * p, *crops.shape[2:]),
    train=False,
  )
  out = jax.vmap(
    functools.partial(
      det.postprocess,
      height=h,
      width=w,
      score_threshold=score_threshold,
      nms_threshold=nms_threshold,
      max_detections=max_detections,
    )  # fmt: skip
  )(logits.reshape(b, p, -1), deltas.reshape(b, p, *deltas.shape[1:]), props, pmask)
  return _named(out)


def detections(out: dict) -> list[dict]:
  """Per-image detections from a predict step's padded outputs (on the host):
  `{'boxes': [k, 4], 'scores': [k], 'labels': [k]}` of the valid rows, the
  form `nkjax.metrics.detection.voc_evaluate` and `nkjax.viz` read."""
  return [
    {
      'boxes': out['det_boxes'][i][out['det_valid'][i]],
      'scores': out['det_scores'][i][out['det_valid'][i]],
      'labels': out['det_labels'][i][out['det_valid'][i]],
    }
    for i in range(len(out['det_valid']))
  ]
