"""RoI pooling and RoIAlign against loop references written from the definitions:
Fast R-CNN's quantised RoI max pooling (as its Caffe layer computes it) and
RoIAlign as torchvision's kernel computes it, one sample point at a time."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nkjax.errors import UserError
from nkjax.ops import roi


def round_half_away(v):
  return math.copysign(math.floor(abs(v) + 0.5), v)


def roi_pool_reference(features, rois, output_size, scale, grad_out=None):
  """Pooled [R, oh, ow, C] and, given grad_out, d sum(pooled * grad_out) / d features."""
  h, w, c = features.shape
  oh, ow = output_size
  out = np.zeros((len(rois), oh, ow, c))
  grad = np.zeros_like(features, dtype=np.float64)
  for r, box in enumerate(rois):
    x1, y1, x2, y2 = (int(round_half_away(float(v) * scale)) for v in box)
    rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
    for i in range(oh):
      h0 = min(max(math.floor(Fraction(i * rh, oh)) + y1, 0), h)
      h1 = min(max(math.ceil(Fraction((i + 1) * rh, oh)) + y1, 0), h)
      for j in range(ow):
        w0 = min(max(math.floor(Fraction(j * rw, ow)) + x1, 0), w)
        w1 = min(max(math.ceil(Fraction((j + 1) * rw, ow)) + x1, 0), w)
        if h1 <= h0 or w1 <= w0:
          continue  # an empty bin pools to 0
        for k in range(c):
          window = features[h0:h1, w0:w1, k]
          out[r, i, j, k] = window.max()
          if grad_out is not None:
            a, b = np.unravel_index(np.argmax(window), window.shape)
            grad[h0 + a, w0 + b, k] += grad_out[r, i, j, k]
  return out, grad


def bilinear(features, y, x):
  """torchvision's bilinear_interpolate for one point, all channels."""
  h, w = features.shape[:2]
  if y < -1.0 or y > h or x < -1.0 or x > w:
    return np.zeros(features.shape[2])
  y, x = max(y, 0.0), max(x, 0.0)
  y0, x0 = int(y), int(x)
  if y0 >= h - 1:
    y0 = y1 = h - 1
    y = float(y0)
  else:
    y1 = y0 + 1
  if x0 >= w - 1:
    x0 = x1 = w - 1
    x = float(x0)
  else:
    x1 = x0 + 1
  ly, lx = y - y0, x - x0
  hy, hx = 1 - ly, 1 - lx
  return (
    hy * hx * features[y0, x0]
    + hy * lx * features[y0, x1]
    + ly * hx * features[y1, x0]
    + ly * lx * features[y1, x1]
  )


def roi_align_reference(features, rois, output_size, scale, sampling_ratio, aligned):
  oh, ow = output_size
  offset = 0.5 if aligned else 0.0
  out = np.zeros((len(rois), oh, ow, features.shape[2]))
  for r, box in enumerate(rois.astype(np.float64)):
    x1, y1, x2, y2 = box * scale - offset
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
      rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / oh, rw / ow
    g = sampling_ratio
    for i in range(oh):
      for j in range(ow):
        total = 0.0
        for iy in range(g):
          y = y1 + i * bh + (iy + 0.5) * bh / g
          for ix in range(g):
            x = x1 + j * bw + (ix + 0.5) * bw / g
            total = total + bilinear(features, y, x)
        out[r, i, j] = total / (g * g)
  return out


@pytest.fixture(params=['products', 'gather'])
def align_form(request, monkeypatch):
  """Runs a RoIAlign test with each of its two forms, whatever the map's size
  would pick: the dense products and the gather of taps."""
  dense = request.param == 'products'
  monkeypatch.setattr(roi, '_dense_is_cheaper', lambda *_: dense)
  return request.param


def test_roi_pool_hand_case_on_a_ramp():
  f = np.arange(36.0, dtype=np.float32).reshape(6, 6, 1)
  # (0, 0, 3, 3) covers cells 0..3 inclusive: bins of 2 x 2 cells, each peaking
  # at its bottom-right cell.
  got = roi.roi_pool(
    f, np.array([[0, 0, 3, 3.0]]), output_size=(2, 2), spatial_scale=1.0
  )
  np.testing.assert_array_equal(got[0, ..., 0], [[7, 9], [19, 21]])
  # Wholly outside the map: every bin is empty and gives 0.
  out = roi.roi_pool(
    f, np.array([[20, 20, 30, 30.0]]), output_size=(2, 2), spatial_scale=1.0
  )
  np.testing.assert_array_equal(out, 0)


def test_roi_pool_matches_reference_values_and_gradients():
  rng = np.random.default_rng(0)
  h, w, c, scale = 7, 9, 3, 0.5
  # Distinct values, so every bin has one argmax and the gradient is unambiguous.
  f = rng.permutation(h * w * c).reshape(h, w, c).astype(np.float32) - 50
  rois = rng.uniform(-6, 22, (12, 4))
  rois[:, 2:] = rois[:, :2] + rng.uniform(0, 14, (12, 2))
  rois = np.round(rois * 4) / 4  # quarter pixels: x * 0.5 is exact, with halves
  rois[0] = [1, 1, 1, 1]  # 0.5 rounds away from zero to cell 1, not to even 0
  rois[1] = [-1, -1, 3, 3]  # -0.5 rounds to -1
  rois[2] = [30, 2, 40, 8]  # outside: empty bins
  rois = rois.astype(np.float32)
  g = rng.normal(size=(12, 3, 2, c))
  want, want_grad = roi_pool_reference(f, rois, (3, 2), scale, g)
  fn = jax.jit(lambda f: roi.roi_pool(f, rois, output_size=(3, 2), spatial_scale=scale))
  np.testing.assert_array_equal(fn(f), want)
  grad = jax.grad(lambda f: jnp.sum(fn(f) * g))(f)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  'aligned,sampling_ratio,output_size,scale',
  [
    (True, 2, (3, 2), 0.5),
    (False, 2, (2, 3), 0.5),
    (True, 1, (2, 2), 1.0),
    (False, 3, (7, 7), 1 / 16),
  ],
)
def test_roi_align_matches_torchvision_semantics(
  aligned, sampling_ratio, output_size, scale, align_form
):
  rng = np.random.default_rng(1)
  h, w, c = 6, 8, 2
  f = rng.normal(size=(h, w, c)).astype(np.float32)
  size = np.array([w, h, w, h]) / scale
  rois = rng.uniform(-0.2, 1.0, (10, 4)) * size
  rois[:, 2:] = rois[:, :2] + rng.uniform(0, 0.7, (10, 2)) * size[:2]
  rois[0] = [0.1, 0.1, 0.3, 0.2]  # thinner than a cell: widened when not aligned
  rois[1] = size * [1.2, 1.2, 1.5, 1.5]  # beyond the -1 / H margin: reads 0
  rois = rois.astype(np.float32)
  want = roi_align_reference(f, rois, output_size, scale, sampling_ratio, aligned)
  got = jax.jit(
    lambda f: roi.roi_align(
      f,
      rois,
      output_size=output_size,
      spatial_scale=scale,
      sampling_ratio=sampling_ratio,
      aligned=aligned,
    )
  )(f)
  assert got.shape == (10, *output_size, c)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got[1], 0)


def test_roi_align_reads_the_edge_at_exactly_h_and_minus_one_and_zero_beyond(
  align_form,
):
  rng = np.random.default_rng(4)
  f = rng.normal(size=(6, 8, 1)).astype(np.float32)
  # aligned=False, one sample per bin at the RoI's centre: y = 6 = H, y = -1, y = 6.2.
  rois = np.array([[0, 5, 8, 7], [0, -2, 8, 0], [0, 5.2, 8, 7.2]], np.float32)
  out = roi.roi_align(
    f, rois, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=1, aligned=False
  )
  np.testing.assert_allclose(out[:, 0, 0, 0], [f[5, 4, 0], f[0, 4, 0], 0.0])
  want = roi_align_reference(f, rois, (1, 1), 1.0, 1, False)
  np.testing.assert_allclose(out, want, rtol=1e-6)


def test_roi_align_is_exact_on_a_linear_ramp(align_form):
  """Bilinear interpolation reproduces a linear function, so inside the map each
  bin's output is the ramp at the bin's centre, shifted half a cell when aligned."""
  h, w = 10, 12
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  f = (2.0 * yy + 0.5 * xx + 1.0)[..., None].astype(np.float32)
  box = np.array([[2.5, 1.75, 9.0, 7.25]], np.float32)  # x1, y1, x2, y2 in cells
  out = roi.roi_align(f, box, output_size=(2, 3), spatial_scale=1.0, aligned=True)
  cy = 1.75 + (np.arange(2) + 0.5) * (7.25 - 1.75) / 2 - 0.5
  cx = 2.5 + (np.arange(3) + 0.5) * (9.0 - 2.5) / 3 - 0.5
  np.testing.assert_allclose(
    out[0, ..., 0], 2 * cy[:, None] + 0.5 * cx[None, :] + 1, rtol=1e-6
  )


def test_roi_align_gradient_is_the_reference_jacobian_transposed(align_form):
  rng = np.random.default_rng(2)
  h, w = 5, 6
  f = rng.normal(size=(h, w, 1)).astype(np.float32)
  rois = np.array(
    [[0.3, 0.2, 4.1, 3.6], [-1.0, 2.0, 5.5, 6.2], [2, 1, 2.5, 1.2]], np.float32
  )
  kw = dict(output_size=(3, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
  # The reference is linear in the features: its Jacobian, one basis map at a time.
  jac = np.stack(
    [
      roi_align_reference(
        np.eye(h * w)[k].reshape(h, w, 1), rois, (3, 2), 1.0, 2, True
      ).ravel()
      for k in range(h * w)
    ],
    axis=1,
  )
  g = rng.normal(size=(3, 3, 2, 1))
  grad = jax.grad(lambda f: jnp.sum(roi.roi_align(f, rois, **kw) * g))(f)
  np.testing.assert_allclose(grad.ravel(), jac.T @ g.ravel(), rtol=1e-5, atol=1e-6)
  check_grads(
    lambda f: roi.roi_align(f, rois, **kw), (f,), order=1, modes=['rev'], eps=1e-2
  )


def test_roi_ops_vmap_over_a_batch_and_reject_bad_input(align_form):
  rng = np.random.default_rng(3)
  f = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  rois = np.tile(np.array([[[0, 0, 32, 32], [16, 16, 64, 48]]], np.float32), (2, 1, 1))
  for op in (roi.roi_align, roi.roi_pool):
    one = lambda f, r, op=op: op(f, r, output_size=(2, 2), spatial_scale=1 / 16)
    out = jax.vmap(one)(f, rois)
    assert out.shape == (2, 2, 2, 2, 3)
    np.testing.assert_allclose(out[1], one(f[1], rois[1]))
  # roi_pool's hand-written gradient, through vmap, is the per-image gradient.
  loss = lambda f, r: jnp.sum(
    roi.roi_pool(f, r, output_size=(2, 2), spatial_scale=1 / 16) ** 2
  )
  batched = jax.jit(jax.grad(lambda f: jnp.sum(jax.vmap(loss)(f, rois))))(f)
  np.testing.assert_allclose(batched[1], jax.grad(loss)(f[1], rois[1]), rtol=1e-6)
  with pytest.raises(UserError, match='sampling_ratio'):
    roi.roi_align(f[0], rois[0], spatial_scale=1.0, sampling_ratio=0)
  with pytest.raises(UserError, match=r'\[H, W, C\]'):
    roi.roi_pool(f, rois[0], spatial_scale=1.0)


def test_roi_ops_handle_no_rois_and_a_one_cell_map():
  f = np.array([[[3.0, -1.0]]], np.float32)  # [1, 1, 2]
  rois = np.array([[0, 0, 1, 1], [-0.4, -0.4, 0.2, 0.3]], np.float32)
  got = roi.roi_pool(f, rois, output_size=(2, 2), spatial_scale=1.0)
  want, _ = roi_pool_reference(f, rois, (2, 2), 1.0)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(
    got[0, 0, 0], [3, -1]
  )  # cells 0..1: bin (0, 0) is cell 0
  np.testing.assert_array_equal(got[0, 1, 1], [0, 0])  # beyond the map: empty
  got = roi.roi_align(f, rois, output_size=(2, 2), spatial_scale=1.0)
  np.testing.assert_allclose(
    got, roi_align_reference(f, rois, (2, 2), 1.0, 2, True), rtol=1e-6
  )
  for op in (roi.roi_pool, roi.roi_align):
    none = op(f, np.zeros((0, 4), np.float32), spatial_scale=1.0)
    assert none.shape == (0, 7, 7, 2)


def _float32_edges(length, bins):
  """Caffe's and torchvision's bin edges: float32 `floor(i * (length / bins))`
  and `ceil((i + 1) * (length / bins))`."""
  size = np.float32(length) / np.float32(bins)
  i = np.arange(bins, dtype=np.float32)
  return np.floor(i * size).astype(int), np.ceil((i + 1) * size).astype(int)


def test_roi_pool_bins_are_exact_where_float32_edges_are_not():
  # The (length, bins) pairs up to 64 cells where the float32 edges differ
  # from the exact ones, as roi_pool's docstring lists them.
  differ = set()
  for length in range(1, 65):
    for bins in range(1, 15):
      i = np.arange(bins)
      exact = (i * length // bins, -(-(i + 1) * length // bins))
      floats = _float32_edges(length, bins)
      if any((a != b).any() for a, b in zip(exact, floats, strict=True)):
        differ.add((length, bins))
  assert differ == {
    (7, 13), (14, 13), (28, 13), (29, 11), (47, 11), (56, 13), (57, 7), (57, 14),
    (58, 11), (62, 14),
  }  # fmt: skip
  # roi_pool keeps the exact edges: on a ramp (cell value = its column), the
  # last of 7 bins of a 57-cell RoI ends at the RoI's last cell, 56, where the
  # float32 edge would read column 57.
  ramp = jnp.broadcast_to(jnp.arange(64.0)[None, :, None], (4, 64, 1))
  out = roi.roi_pool(
    ramp, jnp.array([[0.0, 0.0, 56.0, 3.0]]), output_size=(1, 7), spatial_scale=1.0
  )
  exact_hi = -(-np.arange(1, 8) * 57 // 7)
  np.testing.assert_array_equal(out[0, 0, :, 0], exact_hi - 1)
  assert _float32_edges(57, 7)[1][-1] - 1 == 57
