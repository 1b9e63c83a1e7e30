import numpy as np
import pytest

from nkjax.data import proposals
from nkjax.errors import UserError
from nkjax.ops.boxes import host_iou


def test_sliding_windows_cover_the_image_at_each_size_and_ratio():
  boxes = proposals.sliding_windows(
    height=64, width=64, sizes=(16.0, 32.0), ratios=(0.5, 1.0, 2.0)
  )
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  assert (boxes >= 0).all() and (boxes[:, 2:] <= 64 + 1e-4).all()
  np.testing.assert_allclose(np.sort(np.unique(np.round(w * h))), [256, 1024], atol=2)
  assert set(np.round(h / w, 3)) == {0.5, 1.0, 2.0}
  # Every 16x16 window position steps by half a window.
  sq = boxes[(np.round(w) == 16) & (np.round(h) == 16)]
  assert len(sq) == 7 * 7


def test_selective_search_finds_a_drawn_square_or_says_how_to_install_it(monkeypatch):
  image = np.full((64, 64, 3), 0.2, np.float32)
  image[16:40, 20:44] = (0.9, 0.1, 0.1)
  if proposals.selective_search_available():
    boxes = proposals.selective_search(image, max_proposals=200)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and 0 < len(boxes) <= 200
    assert (boxes[:, 2:] <= 64).all() and (boxes[:, :2] >= 0).all()
    best = host_iou(boxes, np.array([20.0, 16.0, 44.0, 40.0])).max()
    assert best > 0.9
  monkeypatch.setattr(proposals, 'selective_search_available', lambda: False)
  with pytest.raises(UserError, match=r"pip install -e '.\[rcnn\]'"):
    proposals.selective_search(image, max_proposals=10)


def test_pad_proposals_pads_or_cuts_to_the_static_size():
  boxes = np.arange(12, dtype=np.float32).reshape(3, 4)
  out, mask = proposals.pad_proposals(boxes, 5)
  np.testing.assert_array_equal(out[:3], boxes)
  assert (out[3:] == 0).all() and mask.tolist() == [True] * 3 + [False] * 2
  out, mask = proposals.pad_proposals(boxes, 2)
  np.testing.assert_array_equal(out, boxes[:2])
  assert mask.all()
