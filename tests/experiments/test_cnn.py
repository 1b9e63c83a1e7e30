import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import cnn  # noqa: E402

PICTURES = ('confusion.png', 'kernels.png', 'feature_maps.png', 'curves.png')


def test_smoke_preset_trains_and_writes_every_picture(tmp_path):
  cnn.main(cnn.get_config('smoke'), str(tmp_path))
  summary = json.loads((tmp_path / 'summary.json').read_text())
  cm = np.array(summary['confusion_matrix'])
  assert cm.shape == (10, 10) and cm.sum() == 360  # every test digit once
  assert summary['test_accuracy_from_predictions'] == pytest.approx(
    summary['eval']['accuracy']
  )
  for name in PICTURES:
    assert (tmp_path / name).stat().st_size > 1000, name


def test_main_job_lenet5_reaches_98_percent_on_the_embedded_digits(tmp_path):
  summary = cnn.main(cnn.get_config(), str(tmp_path))
  assert summary['eval']['accuracy'] >= 0.98


def test_resnet_with_augmentation_and_bfloat16_runs(tmp_path):
  config = cnn.get_config('smoke')
  config.update(
    {
      'model': 'resnet_tiny',
      'image_size': 16,
      'augment': 'crop_flip',
      'dtype': 'bfloat16',
      'optimizer': 'momentum',
      'schedule': 'step',
    }
  )
  summary = cnn.main(config, str(tmp_path))
  assert np.isfinite(summary['train']['loss'])


def test_small_training_set_overfits_without_regularization(tmp_path):
  config = cnn.get_config('regularization')
  config.variants = ('none',)
  config.num_steps = 300
  results = cnn.main(config, str(tmp_path))['results']
  assert results['none']['train_accuracy'] - results['none']['test_accuracy'] > 0.03
  assert (tmp_path / 'regularization.png').exists()


def test_gaussian_filter_smooths_the_photo_and_keeps_its_brightness(tmp_path):
  summary = cnn.main(cnn.get_config('gaussian'), str(tmp_path))
  assert summary['kernel_sum'] == pytest.approx(1.0, abs=1e-6)
  assert summary['roughness_after'] < 0.1 * summary['roughness_before']
  assert summary['mean_after'] == pytest.approx(summary['mean_before'], rel=1e-3)
  assert (tmp_path / 'gaussian.png').stat().st_size > 10_000


@pytest.mark.parametrize(
  'overrides, message',
  [
    ({'model': 'resnet20', 'dropout_rate': 0.5}, 'model resnet20 has no dropout'),
    ({'model': 'resnet20', 'norm': True}, 'ResNets always use batch norm'),
    ({'model': 'resnet5'}, 'unknown model .resnet5.; valid choices: alexnet, lenet5'),
    ({'augment': 'mixup'}, 'valid choices: crop_flip, none'),
  ],
)
def test_bad_model_options_are_clear_errors_before_anything_is_written(
  tmp_path, overrides, message
):
  config = cnn.get_config('smoke')
  config.update(overrides)
  with pytest.raises(ValueError, match=message):
    cnn.main(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_cifar_resnet20_recipe_runs_on_mocked_cifar10(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  config = cnn.get_config('cifar_resnet20')
  # The recipe as is (ResNet-20, crop and flip, momentum, step schedule), a few steps.
  config.update(
    {'num_steps': 2, 'batch_size': 16, 'eval_batch_size': 32, 'log_every': 1,
     'eval_every': 2, 'checkpoint_every': 2},
  )  # fmt: skip
  with tfds.testing.mock_data(num_examples=32):
    cnn.main(config, str(tmp_path))
  summary = json.loads((tmp_path / 'summary.json').read_text())
  cm = np.array(summary['confusion_matrix'])
  assert cm.shape == (10, 10) and cm.sum() == 32  # every mocked test image once
  assert summary['params'] == 269_722  # ResNet-20's published count
  for name in PICTURES:
    assert (tmp_path / name).stat().st_size > 1000, name
