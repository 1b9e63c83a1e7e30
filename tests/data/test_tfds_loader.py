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
  assert data.num_classes == 10 and data.image_shape == shape
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


def test_unfetchable_dataset_names_the_offline_options(tmp_path, monkeypatch):
  def no_network(self, *args, **kwargs):
    raise ConnectionError('no route to host')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', no_network)
  with pytest.raises(
    ValueError,
    match=r"'mnist' is not prepared .* could not be fetched \(ConnectionError\); the embedded default --config.dataset=digits works offline.*--config.data_dir=DIR",
  ) as e:
    images.load(
      'mnist', batch_size=8, eval_batch_size=8, seed=0, data_dir=str(tmp_path)
    )
  assert '\n' not in str(e.value)


def test_tensorflow_sees_no_gpu():
  assert tfds_loader.import_tf().config.get_visible_devices('GPU') == []
