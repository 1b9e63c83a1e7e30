"""The embedded default dataset: scikit-learn's handwritten digits.

1,797 real 8x8 grey images of the digits 0-9 (UCI "Optical Recognition of
Handwritten Digits", the test part), shipped inside scikit-learn, so the default
runs need no network. Pixel values 0..16 are scaled to [0, 1].

The split is fixed: `sklearn.model_selection.train_test_split` with
`test_size=360`, `stratify=labels`, `random_state=0`, giving 1,437 train and 360
test images with every class in the same proportion in both. Its order is
stored beside this module (`digits_split.npy`: the train indices, then the
test ones; tests/data/test_digits.py checks it against scikit-learn), and the
images are read from scikit-learn's data file without importing scikit-learn,
whose import took 1.3 s of every run's start.
"""

import functools
import importlib.util
import os

import jax
import numpy as np

from nkjax.errors import UserError

NUM_CLASSES = 10
NUM_TRAIN, NUM_TEST = 1437, 360


SPLIT_FILE = os.path.join(os.path.dirname(__file__), 'digits_split.npy')


def raw() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 digits in scikit-learn's order: `([n, 8, 8] float64 in 0..16,
  [n] int labels)`, as `sklearn.datasets.load_digits()` gives `images` and
  `target`, read from the CSV file it reads."""
  (package,) = importlib.util.find_spec('sklearn').submodule_search_locations
  table = np.loadtxt(
    os.path.join(package, 'datasets', 'data', 'digits.csv.gz'), delimiter=','
  )
  return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


@functools.cache
def _split() -> dict[str, dict[str, np.ndarray]]:
  pixels, target = raw()
  images = (pixels / 16.0).astype(np.float32)[..., None]
  labels = target.astype(np.int32)
  order = np.load(SPLIT_FILE).astype(np.intp)
  train, test = order[:NUM_TRAIN], order[NUM_TRAIN:]
  return {
    'train': {'image': images[train], 'label': labels[train]},
    'test': {'image': images[test], 'label': labels[test]},
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
