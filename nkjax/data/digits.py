"""The embedded default dataset: scikit-learn's handwritten digits.

1,797 real 8x8 grey images of the digits 0-9 (UCI "Optical Recognition of
Handwritten Digits", the test part), shipped inside scikit-learn, so the default
runs need no network. Pixel values 0..16 are scaled to [0, 1].

The split is fixed: `sklearn.model_selection.train_test_split` with
`test_size=360`, `stratify=labels`, `random_state=0`, giving 1,437 train and 360
test images with every class in the same proportion in both.
"""

import functools

import jax
import numpy as np

from nkjax.errors import UserError

NUM_CLASSES = 10
NUM_TRAIN, NUM_TEST = 1437, 360


@functools.cache
def _split() -> dict[str, dict[str, np.ndarray]]:
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(
    images, labels, test_size=NUM_TEST, stratify=labels, random_state=0
  )
  return {
    'train': {'image': x_tr, 'label': y_tr},
    'test': {'image': x_te, 'label': y_te},
  }


def load(split: str, *, image_size: int | None = None) -> dict[str, np.ndarray]:
  """The digits of `split` as `{'image': [n, s, s, 1] float32 in [0, 1], 'label': [n] int32}`.

  Args:
    split: 'train' (1,437 images) or 'test' (360 images).
    image_size: side length to resize to (bilinear), e.g. 28 for LeNet-5;
      default 8, the native size.
  """
  if split not in ('train', 'test'):
    raise UserError(f'unknown digits split {split!r}; valid choices: test, train')
  data = _split()[split]
  if image_size in (None, 8):
    return dict(data)
  if image_size < 1:
    raise UserError(f'image_size must be positive, got {image_size}')
  images = data['image']
  resized = jax.image.resize(images, (len(images), image_size, image_size, 1), 'linear')
  return {'image': np.clip(np.asarray(resized), 0.0, 1.0), 'label': data['label']}
