"""Region proposals of Fast R-CNN and R-CNN for host batches.

Faster R-CNN proposes regions inside the network; Fast R-CNN and R-CNN take
them from the host: selective search (OpenCV contrib, the `[rcnn]` extra),
cached per image since training sees each image many times, or the fixed
sliding windows, the fallback that needs nothing (the same dense windows for
every image). `ProposalSource.add(batch)` adds them to a batch as padded,
masked arrays, as the static-shape rule asks.
"""

import hashlib
import time
from collections.abc import Sequence

import numpy as np

from nkjax.models import detection as det

KINDS = ('auto', 'selective_search', 'sliding_windows')


class ProposalSource:
  """Proposals for host batches, and their measured cost.

  Args:
    kind: 'selective_search', 'sliding_windows', or 'auto' (selective search
      when OpenCV contrib is installed, else sliding windows).
    max_proposals: P, the proposals kept (and padded to) per image.
    window_sizes: the sliding windows' sides, pixels.
    image_shape: `[h, w, ...]` of the images (the sliding windows' frame).

  Attributes:
    kind: the source in use ('auto' resolved).
    seconds, images: time spent proposing and the images proposed for.

  Raises:
    UserError: selective search asked for and OpenCV contrib missing.

  >>> source = ProposalSource(kind='sliding_windows', max_proposals=4,
  ...                         window_sizes=(8.0,), image_shape=(16, 16, 3))
  >>> batch = source.add({'image': np.zeros((2, 16, 16, 3), np.float32)})
  >>> batch['proposals'].shape, batch['proposal_mask'].shape
  ((2, 4, 4), (2, 4))
  """

  def __init__(
    self,
    *,
    kind: str,
    max_proposals: int,
    window_sizes: Sequence[float],
    image_shape: Sequence[int],
  ):
    if kind == 'auto':
      kind = (
        'selective_search' if det.selective_search_available() else 'sliding_windows'
      )
    self.kind = kind
    self.size = max_proposals
    self.cache: dict[bytes, np.ndarray] = {}
    self.seconds = 0.0
    self.images = 0
    if kind == 'sliding_windows':
      h, w = image_shape[:2]
      windows = det.sliding_windows(height=h, width=w, sizes=tuple(window_sizes))
      self.windows = det.pad_proposals(windows, self.size)
    else:
      det.selective_search(np.zeros((8, 8, 3), np.uint8), max_proposals=1)  # installed?

  def one(
    self, image: np.ndarray, cached: bool = True
  ) -> tuple[np.ndarray, np.ndarray]:
    """`(proposals [P, 4], mask [P])` of one image `[h, w, 3]`; `cached=False`
    runs selective search afresh (to time it)."""
    t = time.perf_counter()
    if self.kind == 'sliding_windows':
      out = self.windows
    elif not cached:
      out = det.pad_proposals(
        det.selective_search(image, max_proposals=self.size), self.size
      )
    else:
      key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
      if key not in self.cache:
        self.cache[key] = det.selective_search(image, max_proposals=self.size)
      out = det.pad_proposals(self.cache[key], self.size)
    self.seconds += time.perf_counter() - t
    self.images += 1
    return out

  def add(self, batch: dict, cached: bool = True) -> dict:
    """`batch` with `proposals [b, P, 4]` and `proposal_mask [b, P]` added."""
    props = [self.one(im, cached) for im in batch['image']]
    return {
      **batch,
      'proposals': np.stack([p for p, _ in props]),
      'proposal_mask': np.stack([m for _, m in props]),
    }
