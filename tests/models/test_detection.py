import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.models import cnn
from nkjax.models import detection as det


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _shapes(module, *args, **kwargs):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))


@pytest.mark.parametrize(
  'name, stride',
  [
    ('small', 16),
    ('small_s8', 8),
    ('small_tiny', 16),
    ('vgg_tiny', 16),
    ('resnet_tiny', 16),
  ],
)
def test_backbone_output_size_is_the_input_over_its_stride(name, stride):
  # small_s8 (the faster_rcnn preset's backbone) drops the last pool: stride 8.
  backbone = det.make_backbone(name)
  x = jnp.zeros((2, 64, 96, 3))
  out = jax.eval_shape(
    lambda: backbone.apply(
      backbone.init(jax.random.key(0), x, train=False), x, train=False
    )
  )
  assert out.shape[:3] == (2, 64 // stride, 96 // stride)
  assert det.backbone_stride(name) == stride


def test_vgg16_backbone_is_vgg16s_thirteen_convolutions():
  # VGG-16 has 138,357,544 parameters, 14,714,688 of them in its 13 convolutions.
  shapes = _shapes(det.make_backbone('vgg16'), jnp.zeros((1, 32, 32, 3)), train=False)
  assert _count(shapes['params']) == 14_714_688
  assert len(shapes['params']) == 13


@pytest.mark.parametrize('name', ['vgg16', 'resnet18', 'resnet50'])
def test_backbone_parameters_are_a_named_subset_of_the_classifiers(name):
  # So ImageNet weights of the CNN chapter's classifier load unchanged.
  mine = _shapes(det.make_backbone(name), jnp.zeros((1, 32, 32, 3)), train=False)
  theirs = _shapes(cnn.create(name), jnp.zeros((1, 32, 32, 3)), train=False)
  for collection in mine:
    for key, sub in mine[collection].items():
      assert jax.tree.map(lambda a: a.shape, sub) == jax.tree.map(
        lambda a: a.shape, theirs[collection][key]
      ), key
  # ResNet-18 (11,689,512) without its fourth stage (8,393,728) and fc (513,000).
  if name == 'resnet18':
    assert _count(mine['params']) == 11_689_512 - 8_393_728 - 513_000


def _faster(**kw):
  return det.FasterRCNN(
    num_classes=3, backbone='small_tiny', rpn_width=8, fc=(16, 16), roi_size=3,
    pre_nms_top_n=50, post_nms_top_n=12, max_detections=7, **kw,
  )  # fmt: skip


def test_faster_rcnn_shapes_and_rpn_layout():
  model = _faster()
  # 56 px: the pools floor 7 -> 3 cells, one fewer than ceil(56 / 16).
  images = jax.random.uniform(jax.random.key(0), (2, 64, 56, 3))
  variables = jax.jit(model.init)(jax.random.key(1), images)
  feats = model.apply(variables, images, method='features')
  assert feats.shape == (2, 4, 3, 8)
  obj, deltas = model.apply(variables, feats, method='rpn')
  anchors = det.faster_rcnn_anchors(model, 4, 3)
  assert obj.shape == (2, 4 * 3 * 9) and deltas.shape == (2, 4 * 3 * 9, 4)
  assert anchors.shape == (4 * 3 * 9, 4)
  out = jax.jit(model.apply)(variables, images)
  assert out['boxes'].shape == (2, 7, 4) and out['labels'].shape == (2, 7)
  assert out['proposals'].shape == (2, 12, 4)
  b = np.asarray(out['boxes'])
  assert (
    (b[..., [0, 2]] <= 56).all() and (b[..., [1, 3]] <= 64).all() and (b >= 0).all()
  )
  logits, box = model.apply(variables, feats, out['proposals'], method='head')
  assert logits.shape == (2, 12, 4) and box.shape == (2, 12, 3, 4)


def _greedy_nms(boxes, scores, thr):
  order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
  keep = []
  for i in order:
    if all(_iou(boxes[i], boxes[j]) <= thr for j in keep):
      keep.append(i)
  return keep


def _iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def test_propose_equals_decode_clip_topk_and_greedy_nms_in_numpy():
  rng = np.random.default_rng(0)
  n = 60
  anchors = np.concatenate([rng.uniform(0, 50, (n, 2)), np.zeros((n, 2))], 1)
  anchors[:, 2:] = anchors[:, :2] + rng.uniform(4, 30, (n, 2))
  deltas = rng.normal(0, 0.3, (n, 4)).astype(np.float32)
  obj = rng.normal(size=n).astype(np.float32)
  boxes, scores, valid = det.propose(
    jnp.asarray(obj), jnp.asarray(deltas), jnp.asarray(anchors, jnp.float32),
    height=48, width=40, pre_nms_top_n=30, post_nms_top_n=25, nms_threshold=0.5,
    min_size=6.0,
  )  # fmt: skip
  # Reference: decode (unit weights), clip, min size, top 30, greedy NMS 0.5.
  aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
  cx, cy = (
    anchors[:, 0] + aw / 2 + deltas[:, 0] * aw,
    anchors[:, 1] + ah / 2 + deltas[:, 1] * ah,
  )
  w, h = aw * np.exp(deltas[:, 2]), ah * np.exp(deltas[:, 3])
  ref = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
  ref = np.clip(ref, 0, [40, 48, 40, 48])
  ok = ((ref[:, 2] - ref[:, 0]) >= 6) & ((ref[:, 3] - ref[:, 1]) >= 6)
  cand = [i for i in np.argsort(-obj, kind='stable') if ok[i]][:30]
  kept = [cand[k] for k in _greedy_nms(ref[cand], obj[cand], 0.5)][:25]
  assert int(valid.sum()) == len(kept)
  np.testing.assert_allclose(np.asarray(boxes)[: len(kept)], ref[kept], atol=1e-4)
  np.testing.assert_allclose(np.asarray(scores)[: len(kept)], obj[kept], atol=1e-6)
  assert not np.asarray(valid)[len(kept) :].any()


def test_postprocess_hand_made_and_padded_rois_are_inert():
  rois = jnp.asarray([[10, 10, 30, 30], [50, 50, 70, 90], [0, 0, 5, 5]], jnp.float32)
  logits = jnp.asarray([[0, 10, 0], [0, 0, 10], [10, 0, 0]], jnp.float32)
  deltas = jnp.zeros((3, 2, 4))
  valid = jnp.asarray([True, True, False])
  out = det.postprocess(
    logits, deltas, rois, valid, height=100, width=100, max_detections=4
  )
  got = {(int(lb), tuple(np.asarray(b).round(3))) for lb, b, v in zip(
    out['labels'], out['boxes'], out['valid'], strict=True) if v}  # fmt: skip
  # Each RoI gives a box per class; the confident ones first, then the others.
  assert (0, (10.0, 10.0, 30.0, 30.0)) in got and (1, (50.0, 50.0, 70.0, 90.0)) in got
  assert float(out['scores'][0]) == pytest.approx(np.exp(10) / (np.exp(10) + 2), 1e-5)
  # The padded RoI: any contents, same detections.
  out2 = det.postprocess(
    logits.at[2].set(jnp.asarray([-5.0, 30.0, 30.0])), deltas.at[2].set(3.0),
    rois.at[2].set(jnp.asarray([20.0, 20.0, 40.0, 40.0])), valid, height=100,
    width=100, max_detections=4,
  )  # fmt: skip
  for k in out:
    np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(out2[k]))


def test_per_class_nms_at_0_3_keeps_overlapping_boxes_of_other_classes():
  rois = jnp.asarray([[0, 0, 20, 20], [2, 0, 22, 20]], jnp.float32)  # IoU 0.818
  logits = jnp.asarray([[0, 5, 0], [0, 4, 0]], jnp.float32)  # both class 0
  deltas = jnp.zeros((2, 2, 4))
  valid = jnp.ones(2, bool)
  out = det.postprocess(
    logits, deltas, rois, valid, height=40, width=40, score_threshold=0.3
  )
  assert int(out['valid'].sum()) == 1
  logits = jnp.asarray([[0, 5, 0], [0, 0, 5]], jnp.float32)  # classes 0 and 1
  out = det.postprocess(
    logits, deltas, rois, valid, height=40, width=40, score_threshold=0.3
  )
  assert int(out['valid'].sum()) == 2


def test_warp_adds_context_and_resamples_bilinearly():
  # A ramp image: value = x + 100 y at pixel (y, x), whose centre is (x + .5, y + .5).
  h, w = 40, 50
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  image = jnp.asarray(np.stack([xs, ys, xs + 100 * ys], -1))
  box = jnp.asarray([[10.0, 8.0, 30.0, 24.0]])
  size, context = 16, 4
  crop = np.asarray(det.warp_proposals(image, box, size=size, context=context))[0]
  # The box fills the central size - 2 * context pixels: dilated by 16 / 8 = 2.
  x1, x2 = 20 - 20, 20 + 20
  y1, y2 = 16 - 16, 16 + 16
  j = np.arange(size)
  want_x = x1 + (j + 0.5) * (x2 - x1) / size - 0.5
  want_y = y1 + (j + 0.5) * (y2 - y1) / size - 0.5
  np.testing.assert_allclose(crop[5, :, 0], want_x, atol=1e-4)
  np.testing.assert_allclose(crop[:, 5, 1], want_y, atol=1e-4)
  with pytest.raises(UserError, match='context'):
    det.warp_proposals(image, box, size=8, context=4)


def test_rcnn_classifier_shapes():
  model = det.RCNNClassifier(num_classes=4, widths=(4, 8), fc=(16,))
  x = jnp.zeros((5, 32, 32, 3))
  logits, deltas = model.apply(model.init(jax.random.key(0), x), x)
  assert logits.shape == (5, 5) and deltas.shape == (5, 4, 4)


# --- truncated SVD of the box head (Fast R-CNN section 3.1) ------------------


def _head_and_params(fc=(12, 12), d_in=(3, 3, 4)):
  head = det.BoxHead(num_classes=3, fc=fc)
  pooled = jax.random.normal(jax.random.key(1), (2, 5, *d_in))
  params = head.init(jax.random.key(0), pooled)['params']
  # Random init is near-isotropic; biases nonzero so that the test sees them.
  params = jax.tree.map(lambda x: x + 0.1, params)
  return head, params, pooled


def test_full_rank_svd_head_reproduces_the_head():
  head, params, pooled = _head_and_params()  # fc_0 36x12, fc_1 12x12: full rank 12
  factored = det.factor_box_head(params, 12)
  svd_head = det.BoxHead(num_classes=3, fc=(12, 12), svd_rank=12)
  want = head.apply({'params': params}, pooled)
  got = svd_head.apply({'params': factored}, pooled)
  for w, g in zip(want, got, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_rank_t_head_is_the_rank_t_layers_in_numpy_and_counts_t_u_plus_v():
  head, params, pooled = _head_and_params()
  t = 3
  factored = det.factor_box_head(params, t)
  out = det.BoxHead(num_classes=3, fc=(12, 12), svd_rank=t).apply(
    {'params': factored}, pooled
  )
  # Independent forward pass: each fc layer's best rank-t kernel in float64.
  x = np.asarray(pooled, np.float64).reshape(2, 5, -1)
  for name in ('fc_0', 'fc_1'):
    k, b = (np.asarray(params[name][p], np.float64) for p in ('kernel', 'bias'))
    a, s, bt = np.linalg.svd(k, full_matrices=False)
    x = np.maximum(x @ (a[:, :t] * s[:t] @ bt[:t]) + b, 0)
    u, v = k.shape
    assert _count(factored[name]) == t * (u + v) + v
  logits = x @ np.asarray(params['cls']['kernel']) + np.asarray(params['cls']['bias'])
  np.testing.assert_allclose(out[0], logits, rtol=1e-4, atol=1e-5)
  assert factored['cls'] is params['cls'] and factored['box'] is params['box']


@pytest.mark.parametrize('t', [1, 4, 9])
def test_truncated_svd_error_is_the_discarded_singular_values(t):
  w = np.asarray(jax.random.normal(jax.random.key(t), (20, 9)), np.float32)
  sv, u = det.truncated_svd(w, t)
  assert sv.shape == (20, t) and u.shape == (t, 9) and sv.dtype == np.float32
  err = w.astype(np.float64) - sv.astype(np.float64) @ u.astype(np.float64)
  s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
  # Eckart-Young: Frobenius error sqrt(sum of the discarded s^2), spectral s_t+1.
  np.testing.assert_allclose(
    np.linalg.norm(err), np.sqrt(np.sum(s[t:] ** 2)), rtol=1e-4, atol=1e-5
  )
  np.testing.assert_allclose(
    np.linalg.norm(err, 2), s[t] if t < 9 else 0.0, rtol=1e-4, atol=1e-5
  )
  assert np.linalg.matrix_rank(sv @ u, tol=1e-4) == t


@pytest.mark.parametrize('rank', [0, 13, -1])
def test_a_bad_svd_rank_is_one_line_naming_the_range(rank):
  _, params, _ = _head_and_params()
  with pytest.raises(UserError, match=rf'svd_rank={rank} is outside 1\.\.12') as e:
    det.factor_box_head(params, rank)
  assert '\n' not in str(e.value)


def test_faster_rcnn_is_fast_rcnn_plus_exactly_the_rpn():
  """FasterRCNN extends FastRCNN: the same backbone and head parameters, and
  the RPN's 3x3 convolution and two 1x1 convolutions (closed-form shapes)."""
  kw = dict(num_classes=3, backbone='small_tiny', fc=(16, 16), roi_size=3)
  x = jnp.zeros((1, 64, 64, 3))
  fast = _shapes(det.FastRCNN(**kw), x, jnp.zeros((1, 5, 4)), jnp.ones((1, 5), bool))
  faster = _shapes(det.FasterRCNN(rpn_width=8, **kw), x)['params']
  assert issubclass(det.FasterRCNN, det.FastRCNN)
  shapes = lambda t: jax.tree.map(lambda a: a.shape, t)  # noqa: E731
  rpn = faster.pop('rpn_head')
  assert shapes(faster) == shapes(fast['params'])
  a, c = 9, 8  # anchors per position; the backbone's output channels
  assert shapes(rpn) == {
    'Conv_0': {'kernel': (3, 3, c, 8), 'bias': (8,)},
    'Conv_1': {'kernel': (1, 1, 8, a), 'bias': (a,)},
    'Conv_2': {'kernel': (1, 1, 8, 4 * a), 'bias': (4 * a,)},
  }
