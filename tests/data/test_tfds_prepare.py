"""TFDS for real, without the network: prepare a tiny dataset, then read it.

The mocked tests (`tfds.testing.mock_data`) skip preparation, and so once hid
that preparing any dataset defined in a package (every built-in one, such as
mnist) imports `importlib_resources`, which TFDS does not declare.
"""

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')
pytest.importorskip('tensorflow')

from nkjax.data import tfds_loader  # noqa: E402
from nkjax.errors import UserError  # noqa: E402

IMAGES = np.arange(12 * 16, dtype=np.uint8).reshape(12, 4, 4, 1)


class TinyDigits(tfds.core.GeneratorBasedBuilder):
  """12 4x4 images, labels 0-2: train is the first 9, test the last 3."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(4, 4, 1)),
          'label': tfds.features.ClassLabel(num_classes=3),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {
      'train': self._generate_examples(range(9)),
      'test': self._generate_examples(range(9, 12)),
    }

  def _generate_examples(self, indices):
    for i in indices:
      yield i, {'image': IMAGES[i], 'label': i % 3}


def test_every_module_that_preparing_a_builtin_dataset_needs_imports(tmp_path):
  import importlib_resources  # noqa: F401 - the one TFDS forgets to declare

  b = tfds.builder('mnist', data_dir=str(tmp_path))
  # Where the checksums of its downloads live: the path that imports it.
  assert b.code_path.name == 'mnist.py' or b.code_path.name.startswith('mnist')
  assert any('mnist' in url for url in b.url_infos)


def test_a_dataset_in_a_package_prepares_and_reads_back(tmp_path):
  assert TinyDigits.__module__.count('.') >= 1  # the packaged-dataset code path
  b = TinyDigits(data_dir=str(tmp_path))
  b.download_and_prepare()
  assert b.info.splits['train'].num_examples == 9
  prepared = tfds.builder('tiny_digits', data_dir=str(tmp_path))
  assert prepared.is_prepared()

  def preprocess(example):
    return {'image': example['image'], 'label': example['label']}

  batches = list(
    tfds_loader.batches(
      b, split='test', batch_size=2, preprocess=preprocess, train=False
    )
  )
  got = np.concatenate([x['image'][x['mask'] > 0] for x in batches])
  np.testing.assert_array_equal(got, IMAGES[9:])
  np.testing.assert_array_equal(
    np.concatenate([x['label'][x['mask'] > 0] for x in batches]), [0, 1, 2]
  )


def test_a_missing_module_is_named_not_reported_as_a_network_failure(
  tmp_path, monkeypatch
):
  def fails(self, *args, **kwargs):
    raise ModuleNotFoundError("No module named 'importlib_resources'")

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', fails)
  with pytest.raises(UserError) as e:
    tfds_loader.builder('mnist', data_dir=str(tmp_path), offline_hint='use digits')
  message = str(e.value)
  assert "(ModuleNotFoundError: No module named 'importlib_resources')" in message
  assert "pip install -e '.[tfds]'" in message and 'fetched' not in message


def test_a_failed_download_names_its_cause(tmp_path, monkeypatch):
  def fails(self, *args, **kwargs):
    raise ConnectionError('Failed to resolve host storage.googleapis.com\nmore')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', fails)
  with pytest.raises(UserError) as e:
    tfds_loader.builder('mnist', data_dir=str(tmp_path), offline_hint='use digits')
  assert (
    'could not be fetched (ConnectionError: Failed to resolve host '
    'storage.googleapis.com); use digits'
  ) in str(e.value)
