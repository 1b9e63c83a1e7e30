import numpy as np
import pytest

from nkjax.data import digits


def test_fixed_stratified_split_of_all_1797_images():
  train, test = digits.load('train'), digits.load('test')
  assert train['image'].shape == (1437, 8, 8, 1) and test['image'].shape == (
    360,
    8,
    8,
    1,
  )
  assert train['image'].dtype == np.float32 and train['label'].dtype == np.int32
  assert train['image'].min() == 0.0 and train['image'].max() == 1.0
  # Stratified: each class's share of the test split is within one image of 36.
  assert np.all(np.abs(np.bincount(test['label'], minlength=10) - 36) <= 1)
  # The two splits partition the source's 1,797 images.
  from sklearn.datasets import load_digits

  rows = lambda a: sorted(x.tobytes() for x in a.reshape(len(a), -1).astype(np.float32))  # noqa: E731
  source = (load_digits().images / 16.0).astype(np.float32)
  assert rows(np.concatenate([train['image'], test['image']])) == rows(source)
  np.testing.assert_array_equal(digits.load('test')['label'], test['label'])  # fixed


def test_the_file_read_and_the_stored_split_are_scikit_learns():
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  source = load_digits()
  pixels, target = digits.raw()
  np.testing.assert_array_equal(pixels, source.images)
  np.testing.assert_array_equal(target, source.target)
  images = (source.images / 16.0).astype(np.float32)[..., None]
  labels = source.target.astype(np.int32)
  x_tr, x_te, y_tr, y_te = train_test_split(
    images, labels, test_size=360, stratify=labels, random_state=0
  )
  for split, (x, y) in {'train': (x_tr, y_tr), 'test': (x_te, y_te)}.items():
    got = digits.load(split)
    np.testing.assert_array_equal(got['image'], x)  # same images, same order
    np.testing.assert_array_equal(got['label'], y)


def test_resize_keeps_labels_and_range():
  small, big = digits.load('test'), digits.load('test', image_size=28)
  assert big['image'].shape == (360, 28, 28, 1)
  np.testing.assert_array_equal(big['label'], small['label'])
  assert 0.0 <= big['image'].min() and big['image'].max() <= 1.0
  # Downsampling back by averaging 28/8 is not exact, but the mean brightness is kept.
  np.testing.assert_allclose(big['image'].mean(), small['image'].mean(), rtol=0.05)


def test_unknown_split_names_the_valid_ones():
  with pytest.raises(ValueError, match='valid choices: test, train'):
    digits.load('validation')
