"""Region proposals computed on the host, for Fast R-CNN and R-CNN: selective
search (OpenCV's contrib `ximgproc`, the `[rcnn]` extra) or, without it, dense
sliding windows; `pad_proposals` gives them the static shape of a batch.

Faster R-CNN proposes regions inside the network. `ProposalSource.add(batch)`
adds host proposals to a batch as padded, masked arrays, as the static-shape
rule asks; selective search is cached per image, since training sees each
image many times.
"""

import hashlib
import time
from collections.abc import Sequence

import numpy as np

from nkjax.errors import UserError


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
      kind = 'selective_search' if selective_search_available() else 'sliding_windows'
    self.kind = kind
    self.size = max_proposals
    self.cache: dict[bytes, np.ndarray] = {}
    self.seconds = 0.0
    self.images = 0
    if kind == 'sliding_windows':
      h, w = image_shape[:2]
      windows = sliding_windows(height=h, width=w, sizes=tuple(window_sizes))
      self.windows = pad_proposals(windows, self.size)
    else:
      selective_search(np.zeros((8, 8, 3), np.uint8), max_proposals=1)  # installed?

  def one(
    self, image: np.ndarray, cached: bool = True
  ) -> tuple[np.ndarray, np.ndarray]:
    """`(proposals [P, 4], mask [P])` of one image `[h, w, 3]`; `cached=False`
    runs selective search afresh (to time it)."""
    t = time.perf_counter()
    if self.kind == 'sliding_windows':
      out = self.windows
    elif not cached:
      out = pad_proposals(selective_search(image, max_proposals=self.size), self.size)
    else:
      key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
      if key not in self.cache:
        self.cache[key] = selective_search(image, max_proposals=self.size)
      out = pad_proposals(self.cache[key], self.size)
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
