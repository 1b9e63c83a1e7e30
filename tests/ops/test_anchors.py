import math

import numpy as np
import pytest

from nkjax.errors import UserError
from nkjax.ops import anchors as anchor_ops


def test_faster_rcnn_base_anchors_by_closed_form():
  base = anchor_ops.base_anchors()  # 3 scales x 3 ratios, ratio-major
  assert base.shape == (9, 4) and base.dtype == np.float32
  w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
  for a, (ratio, scale) in enumerate(
    (r, s) for r in (0.5, 1.0, 2.0) for s in (128.0, 256.0, 512.0)
  ):
    assert w[a] * h[a] == pytest.approx(scale**2, rel=1e-6)  # area s^2
    assert h[a] / w[a] == pytest.approx(ratio, rel=1e-6)  # ratio = height / width
    assert w[a] == pytest.approx(scale / math.sqrt(ratio), rel=1e-6)
  np.testing.assert_allclose(base[:, :2] + base[:, 2:], 0, atol=1e-4)  # centred
  # The smallest wide anchor: 128 / sqrt(0.5) = 181.02 wide, 90.51 high.
  np.testing.assert_allclose([w[0], h[0]], [181.019336, 90.509668], rtol=1e-6)


def test_anchor_layout_lines_up_with_an_rpn_head_output():
  fh, fw, stride = 3, 5, 16
  anchors = np.asarray(
    anchor_ops.anchors(feature_height=fh, feature_width=fw, stride=stride)
  )
  assert anchors.shape == (fh * fw * 9, 4) and anchors.dtype == np.float32
  # A head output [H, W, A * k] whose entries say where they came from, k = 3.
  head = np.zeros((fh, fw, 9, 3))
  head[..., 0] = np.arange(fh)[:, None, None]
  head[..., 1] = np.arange(fw)[None, :, None]
  head[..., 2] = np.arange(9)[None, None, :]
  rows = head.reshape(fh, fw, 9 * 3).reshape(fh * fw * 9, 3)
  base = anchor_ops.base_anchors()
  for anchor, (y, x, a) in zip(anchors, rows.astype(int), strict=True):
    centre = (anchor[:2] + anchor[2:]) / 2
    np.testing.assert_allclose(
      centre, [(x + 0.5) * stride, (y + 0.5) * stride], atol=1e-3
    )
    np.testing.assert_allclose(
      anchor[2:] - anchor[:2], base[a, 2:] - base[a, :2], rtol=1e-6
    )


def test_anchor_count_for_a_typical_image_and_small_image_settings():
  # Faster R-CNN, section 3.3: a ~1000 x 600 image has ~60 x 40 x 9 ~ 20000 anchors.
  a = anchor_ops.anchors(feature_height=40, feature_width=60, stride=16)
  assert a.shape == (21600, 4)
  small = anchor_ops.anchors(
    feature_height=8, feature_width=8, stride=16, scales=(16.0, 32.0), ratios=(1.0,)
  )
  assert small.shape == (128, 4)
  np.testing.assert_allclose(small[:2], [[0, 0, 16, 16], [-8, -8, 24, 24]])


def test_bad_anchor_settings_raise_user_error():
  with pytest.raises(UserError, match='positive'):
    anchor_ops.base_anchors(scales=(0.0,))
  with pytest.raises(UserError, match='stride'):
    anchor_ops.anchors(feature_height=0, feature_width=2, stride=16)
