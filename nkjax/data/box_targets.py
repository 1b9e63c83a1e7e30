"""Padded box targets: the static-shape form of a detection batch's ground truth.

Every image's objects fill the first rows of `boxes [max_boxes, 4]`, `labels`,
`box_mask` and `difficult` `[max_boxes]`; the rest is zeros with both masks
False (see `nkjax.data.detection` for the whole schema). Boxes are never
dropped to fit: too few slots is a one-line `UserError`.
"""

import numpy as np

from nkjax.errors import UserError


def check_max_boxes(max_boxes: int, *, needed: int, where: str) -> None:
  """Raises a one-line `UserError` naming `--config.max_boxes` when `needed`
  boxes (the most that `where` holds) do not fit in `max_boxes` slots: boxes
  are never dropped to fit the padding."""
  if max_boxes < needed:
    raise UserError(
      f'--config.max_boxes={max_boxes} is under the {needed} ground-truth boxes of '
      f'{where}; give --config.max_boxes={needed} or more (boxes are never dropped)'
    )


def pad_targets(boxes, labels, present, *, max_boxes):
  """Host arrays `boxes [n, k, 4]`, `labels`, `present` `[n, k]` padded to
  `max_boxes` slots: the batch keys `boxes`, `labels`, `box_mask` (= present)
  and `difficult` (all False)."""
  n, k = labels.shape
  pad = max_boxes - k
  if pad < 0:  # callers check first; never cut boxes silently
    raise ValueError(f'{k} box slots do not fit in max_boxes={max_boxes}')
  return {
    'boxes': np.pad(boxes * present[..., None], ((0, 0), (0, pad), (0, 0))).astype(
      np.float32
    ),
    'labels': np.pad(labels, ((0, 0), (0, pad))).astype(np.int32),
    'box_mask': np.pad(present, ((0, 0), (0, pad))),
    'difficult': np.zeros((n, max_boxes), bool),
  }


def ground_truths(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
  """Per-image ground truth for `nkjax.metrics.detection` from batch arrays.

  Keeps the entries where `box_mask | difficult` (training targets, and the
  difficult or crowd objects that the evaluation must see in order to ignore
  them). Returns one `{'boxes': [g, 4], 'labels': [g], 'difficult': [g]}` per
  image.
  """
  keep = arrays['box_mask'] | arrays['difficult']
  return [
    {
      'boxes': arrays['boxes'][i][keep[i]],
      'labels': arrays['labels'][i][keep[i]],
      'difficult': arrays['difficult'][i][keep[i]],
    }
    for i in range(len(keep))
  ]
