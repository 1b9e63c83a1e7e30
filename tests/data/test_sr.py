"""SR data: the offline photographs, a folder of PNGs, DIV2K through mocked TFDS."""

import numpy as np
import pytest
from PIL import Image

from nkjax.data import sr
from nkjax.errors import UserError
from nkjax.ops.resize import imresize_np


def test_photos_full_test_images_are_cropped_to_12_and_paired_by_matlab_bicubic():
  data = sr.load(scales=(2, 3, 4), patch=24, input_kind='bicubic', batch_size=4, seed=0)
  assert data.test_names == sr.TEST_PHOTOS and data.num_test == 15
  assert data.num_train == len(sr.TRAIN_PHOTOS) + 1  # both stereo views
  evals = list(data.eval_batches())
  assert [int(b['scale'][0]) for b in evals] == [2] * 5 + [3] * 5 + [4] * 5
  coins = next(b for b in evals if b['index'][0] == 4 and b['scale'][0] == 3)
  assert coins['hr'].shape == (1, 300, 384, 3)  # 303x384 cropped to a multiple of 12
  hr_sizes = {int(b['index'][0]): b['hr'].shape for b in evals}
  for b in evals:
    s, hr = int(b['scale'][0]), b['hr'][0]
    assert b['hr'].shape == hr_sizes[int(b['index'][0])]  # one HR for every scale
    assert hr.shape[0] % 12 == 0 and hr.shape[1] % 12 == 0
    lr = np.round(np.clip(imresize_np(hr, scale=1 / s), 0, 1) * 255) / 255
    np.testing.assert_allclose(b['lr'][0], lr, atol=1e-6)
    np.testing.assert_allclose(b['bicubic'][0], imresize_np(lr, scale=s), atol=1e-5)
    assert b['mask'].tolist() == [1.0]
  camera = next(b for b in evals if b['index'][0] == 3)['hr'][0]
  np.testing.assert_array_equal(camera[..., 0], camera[..., 2])  # grey as RGB


def test_training_patches_are_aligned_seeded_and_split_over_processes():
  kwargs = dict(scales=(3,), patch=10, input_kind='lr', seed=1, crop=96)
  data = sr.load(batch_size=8, **kwargs)
  b = next(data.train_batches(5))
  assert b['input'].shape == (8, 10, 10, 3) and b['hr'].shape == (8, 30, 30, 3)
  assert b['scale'].tolist() == [3] * 8
  # The LR patch is the MATLAB downscale of the HR patch, away from the border
  # where the 12-tap x3 kernel would reach outside the patch.
  for lr, hr in zip(b['input'], b['hr'], strict=True):
    down = np.round(np.clip(imresize_np(hr, scale=1 / 3), 0, 1) * 255) / 255
    np.testing.assert_allclose(down[2:-2, 2:-2], lr[2:-2, 2:-2], atol=1e-6)
  again = next(data.train_batches(5))
  np.testing.assert_array_equal(again['input'], b['input'])
  assert not np.array_equal(next(data.train_batches(6))['input'], b['input'])
  second = sr.load(batch_size=8, process_index=1, process_count=2, **kwargs)
  half = next(second.train_batches(5))
  np.testing.assert_array_equal(half['hr'], b['hr'][4:])


def test_multiscale_bicubic_patches_mix_scales_at_one_hr_size():
  data = sr.load(
    scales=(2, 3, 4), patch=41, input_kind='bicubic', batch_size=32, seed=0, crop=96
  )
  b = next(data.train_batches(0))
  assert b['input'].shape == b['hr'].shape == (32, 41, 41, 3)
  assert set(b['scale'].tolist()) == {2, 3, 4}
  # A bicubic upscaling of an LR image is close to, not equal to, the HR one.
  err = np.abs(b['input'] - b['hr']).mean()
  assert 0 < err < 0.1


def _write(path, array, mode=None):
  Image.fromarray(array, mode).save(path)


def test_a_folder_of_pngs_is_the_test_set_modcropped_per_scale(tmp_path):
  rng = np.random.default_rng(0)
  _write(tmp_path / 'b_grey.png', rng.integers(0, 256, (20, 22), dtype=np.uint8))
  rgb = rng.integers(0, 256, (25, 31, 3), dtype=np.uint8)
  _write(tmp_path / 'a_rgb.png', rgb)
  (tmp_path / 'notes.txt').write_text('not an image')
  data = sr.load(
    scales=(3,), patch=8, input_kind='lr', batch_size=2, seed=0, crop=48,
    test_dir=str(tmp_path),
  )  # fmt: skip
  assert data.test_names == ('a_rgb', 'b_grey')
  evals = list(data.eval_batches())
  assert evals[0]['hr'].shape == (1, 24, 30, 3) and evals[0]['lr'].shape == (
    1,
    8,
    10,
    3,
  )
  np.testing.assert_allclose(evals[0]['hr'][0] * 255, rgb[:24, :30], atol=1e-4)
  assert evals[1]['hr'].shape == (1, 18, 21, 3)


def test_bad_images_and_options_are_one_line_errors(tmp_path):
  rgba = np.zeros((16, 16, 4), np.uint8)
  _write(tmp_path / 'alpha.png', rgba, 'RGBA')
  with pytest.raises(UserError, match='alpha channel'):
    sr.read_image(str(tmp_path / 'alpha.png'))
  (tmp_path / 'broken.png').write_bytes(b'not a png')
  with pytest.raises(UserError, match='not an image file'):
    sr.read_image(str(tmp_path / 'broken.png'))
  with pytest.raises(UserError, match='no such file'):
    sr.read_image(str(tmp_path / 'missing.png'))
  base = dict(patch=8, input_kind='lr', batch_size=2, seed=0, crop=48)
  with pytest.raises(UserError, match='valid choices: photos, div2k/bicubic_x2'):
    sr.load('set5', scales=(4,), **base)
  with pytest.raises(UserError, match='train at one scale'):
    sr.load(scales=(2, 4), **base)
  with pytest.raises(UserError, match='holds no .png'):
    sr.load(scales=(4,), test_dir=str(tmp_path / 'empty'), **base) if (
      tmp_path / 'empty'
    ).mkdir() is None else None
  with pytest.raises(UserError, match='smaller than the 400-pixel HR patches'):
    sr.load(scales=(4,), **{**base, 'patch': 100})


def test_div2k_through_mocked_tfds_gives_its_own_lr_pairs():
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  with tfds.testing.mock_data(num_examples=3):
    data = sr.load(
      'div2k/bicubic_x4', scales=(4,), patch=4, input_kind='lr', batch_size=2, seed=0
    )
    b = next(data.train_batches(0))
    evals = list(data.eval_batches())
  assert b['input'].shape == (2, 4, 4, 3) and b['hr'].shape == (2, 16, 16, 3)
  assert len(evals) == 3 and data.test_names[0] == 'validation_0000'
  for e in evals:
    assert e['hr'].shape[1] == 4 * e['lr'].shape[1]
    assert e['hr'].shape[2] == 4 * e['lr'].shape[2]
  with pytest.raises(UserError, match='holds x4 pairs only'):
    sr.load(
      'div2k/bicubic_x4', scales=(2,), patch=4, input_kind='lr', batch_size=2, seed=0
    )


def test_a_16_bit_png_reads_as_its_8_bit_copy_and_scores_the_same(tmp_path):
  import skimage.data

  from nkjax.metrics import image as image_metrics

  photo = skimage.data.camera()[:96, :120]  # 8-bit grey
  Image.fromarray(photo).save(tmp_path / 'eight.png')
  Image.fromarray(photo.astype(np.uint16) * 257).save(tmp_path / 'sixteen.png')
  assert Image.open(tmp_path / 'sixteen.png').mode.startswith('I')
  eight, sixteen = (
    sr.read_image(str(tmp_path / f)) for f in ('eight.png', 'sixteen.png')
  )
  assert sixteen.shape == eight.shape == (96, 120, 3)
  assert sixteen.max() < 1.0  # not clipped to white
  np.testing.assert_allclose(sixteen, eight, atol=1e-7)  # v * 257 / 65535 = v / 255
  scores = []
  for hr in (eight, sixteen):
    lr = sr.make_lr(hr, 4)
    scores.append(
      image_metrics.sr_scores(sr=sr.make_bicubic(lr, 4), hr=hr, border=4, round_y=True)
    )
  assert np.isfinite(scores[0]['psnr_y']) and scores[0]['ssim_y'] < 1.0
  for k in scores[0]:
    assert scores[1][k] == pytest.approx(scores[0][k], abs=1e-6), k
  # In a test folder too: the same table either way.
  for name in ('eight', 'sixteen'):
    (tmp_path / name).mkdir()
    (tmp_path / f'{name}.png').rename(tmp_path / name / 'camera.png')
  base = dict(scales=(4,), patch=8, input_kind='lr', batch_size=2, seed=0, crop=48)
  hrs = [
    next(sr.load(test_dir=str(tmp_path / n), **base).eval_batches())['hr']
    for n in ('eight', 'sixteen')
  ]
  np.testing.assert_allclose(hrs[1], hrs[0], atol=1e-7)


def test_a_32_bit_image_is_refused_in_one_line(tmp_path):
  Image.fromarray(np.full((16, 16), 70000, np.int32), 'I').save(tmp_path / 'i.tif')
  with pytest.raises(UserError, match='32-bit values'):
    sr.read_image(str(tmp_path / 'i.tif'))


@pytest.mark.parametrize(
  'side, scale, ok',
  [
    (10, 2, False),
    (3, 2, False),
    (15, 2, False),
    (16, 2, True),
    (19, 4, False),
    (20, 4, True),
  ],
)
def test_test_images_too_small_to_score_are_refused_before_training(side, scale, ok):
  image = np.zeros((side, side + 5, 3), np.float32)
  check = lambda: sr.check_test_sizes(  # noqa: E731
    ['tiny'], [image], scales=(scale,), multiple=None, fix='--config.test_dir=DIR'
  )
  if ok:  # SSIM's 11 pixels left after the border of `scale` on each side
    check()
    return
  with pytest.raises(
    UserError, match=rf'tiny is {side}x{side + 5}: scoring at x{scale}'
  ):
    check()


@pytest.mark.parametrize('name', ['srresnet', 'vdsr', 'srcnn_valid'])
def test_a_network_in_overlapping_tiles_gives_its_untiled_output(name):
  import jax
  import jax.numpy as jnp

  from nkjax.models import sr as sr_models
  from nkjax.train.sr import predict_step  # noqa: F401  (the upscale path's step)

  if name == 'srresnet':
    model = sr_models.SRResNet(
      blocks=1, features=8, scale=2, norm=True, bicubic_skip=True
    )
    scale, image = 2, np.random.default_rng(0).random((37, 29, 3), np.float32)
  elif name == 'vdsr':
    model, scale = sr_models.VDSR(depth=3, features=8), 1
    image = np.random.default_rng(1).random((40, 33, 1), np.float32)
  else:
    model, scale = sr_models.SRCNN(f2=1, padding='VALID'), 1
    image = np.random.default_rng(2).random((40, 33, 1), np.float32)
  variables = model.init(jax.random.key(0), jnp.asarray(image[None]), train=False)
  b = (sr_models.receptive_field(model) - 1) // 2 if name == 'srcnn_valid' else 0

  @jax.jit
  def network(x):
    # SRCNN's valid convolutions see the image padded by its edge, as predict_step does.
    x = jnp.pad(x, ((b, b), (b, b), (0, 0)), mode='edge')
    return model.apply(variables, x[None], train=False)[0]

  whole = np.asarray(network(image))
  halo = sr_models.receptive_field(model) // 2 + 2
  tiled, n = sr.apply_in_tiles(
    network, image, tile=2 * halo + 3, halo=halo, scale=scale
  )
  assert n > 1 and tiled.shape == whole.shape
  np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
  # The overlap is what makes it so: without it, the cuts show.
  cut, _ = sr.apply_in_tiles(network, image, tile=2 * halo + 3, halo=0, scale=scale)
  assert np.abs(cut - whole).max() > 1e-3
