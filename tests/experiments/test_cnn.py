import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import cnn  # noqa: E402

from ..figures import assert_readable, describe, record  # noqa: E402
from ..processes import default_run  # noqa: E402

PICTURES = ('confusion.png', 'kernels.png', 'feature_maps.png', 'curves.png')


def test_smoke_preset_trains_and_writes_every_picture(tmp_path, monkeypatch):
  figures = record(monkeypatch)
  cnn.main(cnn.get_config('smoke'), str(tmp_path))
  summary = json.loads((tmp_path / 'summary.json').read_text())
  cm = np.array(summary['confusion_matrix'])
  assert cm.shape == (10, 10) and cm.sum() == 360  # every test digit once
  assert summary['test_accuracy_from_predictions'] == pytest.approx(
    summary['eval']['accuracy']
  )
  for name in PICTURES:
    assert (tmp_path / name).stat().st_size > 1000, name
  for d in figures.values():
    assert_readable(d, run=tmp_path.name)
  assert figures['kernels.png']['colorbars'] == ['weight']
  assert 'first-layer 5x5 kernels' in figures['kernels.png']['suptitle']
  # The first test image's label, named in the feature maps' title.
  from nkjax.data import digits

  label = digits.load('test')['label'][0]
  assert (
    f'test image 0, a {label} (predicted' in figures['feature_maps.png']['suptitle']
  )
  rows = [t for a in figures['feature_maps.png']['axes'] for t in a['texts']]
  assert rows[-1].endswith('8 of 16 maps')  # LeNet's second convolution


def test_main_job_lenet5_reaches_98_percent_on_the_embedded_digits(tmp_path):
  # The README's main command as a user runs it, through the launcher.
  summary = default_run('cnn', tmp_path)
  assert summary['config']['model'] == 'lenet5'
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


def test_regularization_figure_labels_bars_and_names_the_run():
  rows = {
    v: {'train_accuracy': 1.0, 'test_accuracy': 0.9, 'gap': 0.1} for v in ('none', 'l2')
  }
  d = describe(cnn.regularization_figure(rows, title='cnn-regularization: lenet5'))
  assert_readable(d, run='cnn-regularization')
  (ax,) = d['axes']
  assert ax['legend'] == ['train', 'test'] and ax['xlabel'] == 'regularizer'


def test_small_training_set_overfits_without_regularization(tmp_path):
  config = cnn.get_config('regularization')
  config.variants = ('none',)
  config.num_steps = 100  # 200 digits: train 99.5%, test 90.6% (gap 0.089) by then
  results = cnn.main(config, str(tmp_path))['results']
  assert results['none']['train_accuracy'] - results['none']['test_accuracy'] > 0.03
  assert (tmp_path / 'regularization.png').exists()


def test_gaussian_filter_smooths_the_photo_and_keeps_its_brightness(
  tmp_path, monkeypatch
):
  figures = record(monkeypatch)
  summary = cnn.main(cnn.get_config('gaussian'), str(tmp_path))
  assert_readable(figures['gaussian.png'], run=tmp_path.name)
  assert figures['gaussian.png']['colorbars'] == ['weight']
  assert figures['gaussian.png']['axes'][0]['xlabel'] == 'x offset (pixels)'
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


def test_cifar_resnet20_recipe_runs_on_mocked_cifar10(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  config = cnn.get_config('cifar_resnet20')
  # The recipe as is (ResNet-20, crop and flip, momentum, step schedule), a few steps.
  config.update(
    {'num_steps': 2, 'batch_size': 16, 'eval_batch_size': 32, 'log_every': 1,
     'eval_every': 2, 'checkpoint_every': 2},
  )  # fmt: skip
  figures = record(monkeypatch)
  with tfds.testing.mock_data(num_examples=32):
    cnn.main(config, str(tmp_path))
  summary = json.loads((tmp_path / 'summary.json').read_text())
  cm = np.array(summary['confusion_matrix'])
  assert cm.shape == (10, 10) and cm.sum() == 32  # every mocked test image once
  assert summary['params'] == 269_722  # ResNet-20's published count
  for name in PICTURES:
    assert (tmp_path / name).stat().st_size > 1000, name
  for d in figures.values():
    assert_readable(d, run=tmp_path.name)
  # Colour kernels: no one scale, so each is stretched, and the title says so.
  assert figures['kernels.png']['colorbars'] == []
  assert 'first-layer 3x3 kernels (each stretched' in figures['kernels.png']['suptitle']
