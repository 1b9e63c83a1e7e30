import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nkjax.models import detection as det
from nkjax.train import detection as steps
from nkjax.train import state as state_lib


def _smooth_l1(x, beta):
  x = np.abs(x)
  return np.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


def test_rpn_losses_on_a_hand_made_case():
  obj = jnp.asarray([[2.0, -1.0, 0.5, 3.0]])
  deltas = jnp.asarray(
    [[[0.1, 0.0, 0.0, 0.0], [1, 1, 1, 1], [0.0, 0.5, 0.0, 0.0], [9, 9, 9, 9]]]
  )
  targets = jnp.zeros((1, 4, 4))
  positive = jnp.asarray([[True, False, True, False]])
  negative = jnp.asarray([[False, True, False, False]])  # anchor 3 is not sampled
  cls, box = steps.rpn_losses(obj, deltas, positive, negative, targets, beta=1 / 9)
  sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  want_cls = -(np.log(sig(2.0)) + np.log(1 - sig(-1.0)) + np.log(sig(0.5))) / 3
  want_box = (_smooth_l1(0.1, 1 / 9) + _smooth_l1(0.5, 1 / 9)) / 3
  assert float(cls) == pytest.approx(want_cls, rel=1e-5)
  assert float(box) == pytest.approx(want_box, rel=1e-5)


def test_head_losses_use_the_true_class_box_and_skip_background():
  logits = jnp.asarray([[1.0, 2.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 3.0]])
  deltas = jnp.zeros((3, 2, 4)).at[0, 0].set(jnp.asarray([0.5, 0, 0, 0]))
  deltas = (
    deltas.at[0, 1].set(50.0).at[1].set(7.0).at[2, 1].set(jnp.asarray([0, 2.0, 0, 0]))
  )
  classes = jnp.asarray([1, 0, 2])  # object class 0, background, object class 1
  targets = jnp.zeros((3, 4))
  sampled = jnp.asarray([True, True, True])
  regress = jnp.asarray([True, False, True])
  cls, box = steps.head_losses(logits, deltas, classes, targets, sampled, regress)
  lse = lambda v: np.log(np.sum(np.exp(v)))  # noqa: E731
  want_cls = (
    (lse([1, 2, 0]) - 2) + (lse([0.5, 0, 0]) - 0.5) + (lse([0, 0, 3]) - 3)
  ) / 3
  want_box = (_smooth_l1(0.5, 1.0) + _smooth_l1(2.0, 1.0)) / 3
  assert float(cls) == pytest.approx(want_cls, rel=1e-5)
  assert float(box) == pytest.approx(want_box, rel=1e-5)


def test_sample_rois_follows_fast_rcnn_and_padded_entries_are_inert():
  rng = np.random.default_rng(0)
  gt = jnp.asarray([[10, 10, 40, 40], [60, 60, 100, 90], [0, 0, 0, 0]], jnp.float32)
  labels = jnp.asarray([2, 0, 0])
  mask = jnp.asarray([True, True, False])
  xy = rng.uniform(0, 100, (300, 2))
  rois = jnp.asarray(
    np.concatenate([xy, xy + rng.uniform(5, 50, (300, 2))], 1), jnp.float32
  )
  valid = jnp.asarray(np.arange(300) < 250)
  fn = jax.jit(functools.partial(steps.sample_rois, num_samples=64))
  out = fn(jax.random.key(0), rois, valid, gt, labels, mask)
  r, classes, deltas, sampled, regress = map(np.asarray, out)
  iou = np.asarray(det.box_ops.pairwise_iou(r, gt[:2])).max(1)
  fg = sampled & (classes > 0)
  assert (
    fg.sum() <= 16 and fg.sum() >= 2
  )  # 25% of 64 at most; both gt boxes are candidates
  assert (iou[fg] >= 0.5).all()
  bg = sampled & (classes == 0)
  assert ((iou[bg] >= 0.1) & (iou[bg] < 0.5)).all()
  assert (regress == fg).all()
  # Sampled RoIs come from the valid proposals or the valid ground truth.
  cands = np.concatenate([np.asarray(rois)[:250], np.asarray(gt)[:2]])
  for box in r[sampled]:
    assert np.isclose(cands, box).all(1).any()
  # Padded proposals and padded ground truth: any contents, the same sample.
  rois2 = rois.at[250:].set(gt[0])  # padded proposals on top of an object
  gt2 = gt.at[2].set(jnp.asarray([10.0, 10.0, 40.0, 40.0]))
  out2 = fn(jax.random.key(0), rois2, valid, gt2, labels.at[2].set(1), mask)
  for a, b in zip(out, out2, strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _batch(b=2, g=3, size=64, seed=0):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, size - 30, (b, g, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(12, 28, (b, g, 2))], -1)
  mask = np.ones((b, g), bool)
  mask[0, 2] = False
  mask[1] = False  # an image with no objects at all
  return {
    'image': jnp.asarray(rng.uniform(size=(b, size, size, 3)), jnp.float32),
    'boxes': jnp.asarray(boxes * mask[..., None], jnp.float32),
    'labels': jnp.asarray(rng.integers(0, 3, (b, g)) * mask, jnp.int32),
    'box_mask': jnp.asarray(mask),
  }


def _faster_state():
  model = det.FasterRCNN(
    num_classes=3, backbone='small_tiny', rpn_width=8, fc=(16, 16), roi_size=3,
    pre_nms_top_n=40, post_nms_top_n=10,
  )  # fmt: skip
  state = state_lib.create(
    model=model,
    tx=optax.sgd(0.1),
    rng=jax.random.key(0),
    inputs=(jnp.zeros((1, 64, 64, 3)),),
  )
  return model, state


def _changed_padding(batch):
  # New contents for every padded ground-truth entry (mask False).
  m = batch['box_mask']
  return {
    **batch,
    'boxes': jnp.where(
      m[..., None], batch['boxes'], jnp.asarray([5.0, 5.0, 40.0, 40.0])
    ),
    'labels': jnp.where(m, batch['labels'], 2),
  }


def test_faster_rcnn_step_trains_on_an_image_without_boxes_and_padding_is_inert():
  model, state = _faster_state()
  step = jax.jit(
    functools.partial(
      steps.faster_rcnn_train_step,
      model=model,
      rpn_batch=32,
      pre_nms_top_n=40,
      post_nms_top_n=10,
      rois_per_image=8,
    )  # fmt: skip
  )
  batch = _batch()
  new, metrics = step(state, batch, jax.random.key(1))
  names = {'rpn_cls_loss', 'rpn_box_loss', 'cls_loss', 'box_loss', 'loss'}
  assert names <= set(metrics)
  for k in names:
    assert np.isfinite(float(metrics[k][0])) and float(metrics[k][1]) == 1.0
  total = sum(float(metrics[k][0]) for k in names - {'loss'})
  assert float(metrics['loss'][0]) == pytest.approx(total, rel=1e-5)
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params, state.params
  )
  assert max(jax.tree.leaves(moved)) > 0
  new2, metrics2 = step(state, _changed_padding(batch), jax.random.key(1))
  for k in metrics:
    np.testing.assert_array_equal(np.asarray(metrics[k][0]), np.asarray(metrics2[k][0]))
  jax.tree.map(np.testing.assert_array_equal, new.params, new2.params)
  # A batch with no object at all trains too: only background, no box terms.
  empty = {**batch, 'box_mask': jnp.zeros_like(batch['box_mask'])}
  _, m = step(state, empty, jax.random.key(1))
  assert float(m['box_loss'][0]) == 0 and float(m['rpn_box_loss'][0]) == 0
  assert np.isfinite(float(m['loss'][0])) and float(m['fg_rois'][0]) == 0


def test_faster_rcnn_step_takes_proposals_from_a_given_network():
  model, state = _faster_state()
  kwargs = dict(model=model, rpn_batch=32, pre_nms_top_n=40, post_nms_top_n=10,
                rois_per_image=8, train_rpn=False)  # fmt: skip
  plain = jax.jit(functools.partial(steps.faster_rcnn_train_step, **kwargs))
  given = jax.jit(
    functools.partial(steps.faster_rcnn_train_step, proposer=True, **kwargs)
  )
  batch, key = _batch(), jax.random.key(1)
  want, m_want = plain(state, batch, key)
  # The state's own network as the proposer: the very same update.
  got, m_got = given(state, batch, key, state.params)
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
    got.params, want.params,
  )  # fmt: skip
  # Another network's proposals (its RPN's deltas shifted): other head losses,
  # the state's own RPN losses.
  other = jax.tree.map(lambda x: x, state.params)
  rpn = dict(other['rpn_head'])
  rpn['Conv_2'] = {**rpn['Conv_2'], 'bias': rpn['Conv_2']['bias'] + 0.5}
  other = {**other, 'rpn_head': rpn}
  _, m_other = given(state, batch, key, other)
  assert float(m_other['cls_loss'][0]) != float(m_want['cls_loss'][0])
  np.testing.assert_allclose(m_other['rpn_cls_loss'][0], m_want['rpn_cls_loss'][0])


def _with_proposals(batch, p=12, valid=9, seed=1):
  rng = np.random.default_rng(seed)
  b = batch['image'].shape[0]
  xy = rng.uniform(0, 40, (b, p, 2))
  props = np.concatenate([xy, xy + rng.uniform(8, 24, (b, p, 2))], -1)
  return {
    **batch,
    'proposals': jnp.asarray(props, jnp.float32),
    'proposal_mask': jnp.asarray(np.broadcast_to(np.arange(p) < valid, (b, p))),
  }


@pytest.mark.parametrize('method', ['fast_rcnn', 'rcnn'])
def test_proposal_steps_train_and_padded_proposals_and_gt_are_inert(method):
  if method == 'fast_rcnn':
    model = det.FastRCNN(num_classes=3, backbone='small_tiny', fc=(16, 16), roi_size=3)
    inputs = (jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 4, 4)), jnp.ones((1, 4), bool))
    fn = functools.partial(steps.fast_rcnn_train_step, rois_per_image=8)
  else:
    model = det.RCNNClassifier(num_classes=3, widths=(4,), fc=(8,))
    inputs = (jnp.zeros((1, 16, 16, 3)),)
    fn = functools.partial(
      steps.rcnn_train_step, warp_size=16, context=2, crops_per_image=8
    )
  state = state_lib.create(
    model=model, tx=optax.sgd(0.1), rng=jax.random.key(0), inputs=inputs
  )
  step = jax.jit(fn)
  batch = _with_proposals(_batch())
  new, metrics = step(state, batch, jax.random.key(2))
  assert {'cls_loss', 'box_loss', 'loss'} <= set(metrics)
  assert np.isfinite(float(metrics['loss'][0]))
  changed = _changed_padding(batch)
  changed['proposals'] = changed['proposals'].at[:, 9:].set(batch['boxes'][:, :1])
  new2, metrics2 = step(state, changed, jax.random.key(2))
  for k in metrics:
    np.testing.assert_array_equal(np.asarray(metrics[k][0]), np.asarray(metrics2[k][0]))
  jax.tree.map(np.testing.assert_array_equal, new.params, new2.params)


def test_predict_steps_return_detections_per_image():
  model, state = _faster_state()
  out = jax.jit(steps.faster_rcnn_predict_step)(
    state, {'image': jnp.zeros((2, 64, 64, 3))}
  )
  assert set(out) == {'det_boxes', 'det_scores', 'det_labels', 'det_valid'}
  assert out['det_boxes'].shape == (2, 100, 4) and out['det_valid'].dtype == jnp.bool_
  rc = det.RCNNClassifier(num_classes=3, widths=(4,), fc=(8,))
  rstate = state_lib.create(model=rc, tx=optax.sgd(0.1), rng=jax.random.key(0),
                            inputs=(jnp.zeros((1, 16, 16, 3)),))  # fmt: skip
  pred = jax.jit(functools.partial(steps.rcnn_predict_step, warp_size=16, context=2,
                                   max_detections=5))  # fmt: skip
  out = pred(rstate, _with_proposals(_batch()))
  assert out['det_boxes'].shape == (2, 5, 4)
