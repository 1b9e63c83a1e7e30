"""TFDS through `tfds.testing.mock_data`: no network, no prepared files."""

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')
pytest.importorskip('tensorflow')

from nkjax.data import images, tfds_loader  # noqa: E402


@pytest.mark.parametrize(
  'name, shape', [('mnist', (28, 28, 1)), ('cifar10', (32, 32, 3))]
)
def test_mocked_dataset_gives_float_batches_of_the_declared_shape(name, shape):
  with tfds.testing.mock_data(num_examples=40):
    data = images.load(name, batch_size=8, eval_batch_size=16, seed=0)
    batch = next(data.train_batches(0))
    evals = list(data.eval_batches())
  assert data.num_classes == 10 and data.example_shape == shape
  assert batch['image'].shape == (8, *shape) and batch['image'].dtype == np.float32
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['label'].dtype == np.int32
  assert all(b['image'].shape == (16, *shape) for b in evals)
  assert sum(b['mask'].sum() for b in evals) == 40  # every mocked example once


def test_resize_and_process_split():
  with tfds.testing.mock_data(num_examples=40):
    data = images.load(
      'mnist',
      batch_size=8,
      eval_batch_size=8,
      seed=0,
      image_size=32,
      process_index=1,
      process_count=2,
    )
    batch = next(data.train_batches(0))
  assert batch['image'].shape == (4, 32, 32, 1)  # this process's half of the batch


def test_celeb_a_is_a_centre_square_labelled_by_one_attribute():
  with tfds.testing.mock_data(num_examples=6):
    raw = list(tfds.builder('celeb_a').as_dataset(split='test').as_numpy_iterator())
    default = images.load('celeb_a', batch_size=2, eval_batch_size=6, seed=0)
    smiling = images.load(
      'celeb_a', batch_size=2, eval_batch_size=6, seed=0, attribute='Smiling',
      image_size=178,
    )  # fmt: skip
    first, full = next(default.eval_batches()), next(smiling.eval_batches())
  assert default.example_shape == (64, 64, 3) and default.num_classes == 2
  assert first['image'].shape == (6, 64, 64, 3)
  # Labels are the attribute, in the stored order: Male by default, or the one named.
  np.testing.assert_array_equal(first['label'], [e['attributes']['Male'] for e in raw])
  np.testing.assert_array_equal(
    full['label'], [e['attributes']['Smiling'] for e in raw]
  )
  # At the crop's own size the image is the 178x178 centre of the 218x178 face.
  np.testing.assert_allclose(
    full['image'], np.stack([e['image'][20:198] for e in raw]) / 255.0, atol=1e-5
  )


def test_attribute_errors_name_the_choices():
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(ValueError, match="unknown attribute 'Happy'.*Smiling"):
      images.load('celeb_a', batch_size=2, eval_batch_size=2, seed=0, attribute='Happy')
    with pytest.raises(ValueError, match="'mnist' has labels, not attributes"):
      images.load('mnist', batch_size=2, eval_batch_size=2, seed=0, attribute='Male')


def test_unfetchable_dataset_names_the_offline_options(tmp_path, monkeypatch):
  def no_network(self, *args, **kwargs):
    raise ConnectionError('no route to host')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', no_network)
  with pytest.raises(
    ValueError,
    match=r"'mnist' is not prepared .* could not be fetched \(ConnectionError: no route to host\); the embedded default --config.dataset=digits works offline.*--config.data_dir=DIR",
  ) as e:
    images.load(
      'mnist', batch_size=8, eval_batch_size=8, seed=0, data_dir=str(tmp_path)
    )
  assert '\n' not in str(e.value)


def test_tensorflow_sees_no_gpu():
  assert tfds_loader.import_tf().config.get_visible_devices('GPU') == []
