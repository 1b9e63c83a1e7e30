import numpy as np
import pytest
import skimage.color
import skimage.metrics

from nkjax.metrics import image as image_metrics
from nkjax.ops import image as image_ops


def _pair(shape=(40, 37, 3), noise=0.05, seed=0):
  rng = np.random.default_rng(seed)
  hr = rng.uniform(0, 1, shape)
  # Over- and undershoots beyond [0, 1] that the scores must clip.
  sr = hr + rng.normal(0, noise, shape)
  return sr, hr


def test_y_channel_is_matlabs_rgb2ycbcr_as_scikit_image_has_it():
  rgb = np.random.default_rng(1).uniform(0, 1, (5, 6, 3))
  want = skimage.color.rgb2ycbcr(rgb)
  np.testing.assert_allclose(image_ops.rgb_to_y(rgb), want[..., 0], atol=1e-4)
  np.testing.assert_allclose(image_ops.rgb_to_ycbcr(rgb), want, atol=1e-4)
  np.testing.assert_allclose(
    image_ops.ycbcr_to_rgb(image_ops.rgb_to_ycbcr(rgb)), rgb, atol=1e-5
  )
  np.testing.assert_allclose(image_metrics.to_y(rgb), want[..., 0], atol=1e-9)
  assert float(image_ops.rgb_to_y(np.ones(3))) == pytest.approx(235.0, abs=1e-4)
  assert float(image_ops.rgb_to_y(np.zeros(3))) == 16.0
  rounded = image_ops.rgb_to_y(rgb, round=True)
  np.testing.assert_array_equal(rounded, np.round(want[..., 0]))


def test_ssim_matches_scikit_image_with_wangs_settings():
  rng = np.random.default_rng(2)
  a = rng.uniform(0, 255, (45, 52))
  b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
  want = skimage.metrics.structural_similarity(
    a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255,
  )  # fmt: skip
  assert image_metrics.ssim(a, b) == pytest.approx(want, abs=1e-9)
  assert image_metrics.ssim(a, a) == pytest.approx(1.0)
  assert image_metrics.ssim(a, b) < 0.99
  assert image_metrics.ssim(a, 255 - a) < 0


def test_psnr_is_the_direct_formula_after_shaving_and_clipping():
  sr, hr = _pair()
  scores = image_metrics.sr_scores(sr=sr, hr=hr, border=3)
  c = np.clip(sr, 0, 1)[3:-3, 3:-3]
  h = hr[3:-3, 3:-3]
  y_sr = 16 + c @ [65.481, 128.553, 24.966]
  y_hr = 16 + h @ [65.481, 128.553, 24.966]
  assert scores['psnr_y'] == pytest.approx(
    10 * np.log10(255**2 / np.mean((y_sr - y_hr) ** 2))
  )
  assert scores['psnr_rgb'] == pytest.approx(10 * np.log10(1 / np.mean((c - h) ** 2)))
  want_ssim = skimage.metrics.structural_similarity(
    y_sr, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255,
  )  # fmt: skip
  assert scores['ssim_y'] == pytest.approx(want_ssim, abs=1e-9)


def test_shaved_border_does_not_count_and_clipping_only_helps():
  sr, hr = _pair(noise=0.02)
  ruined = sr.copy()
  ruined[:2] = 5.0  # far out of range, and inside the shaved border
  a = image_metrics.sr_scores(sr=sr, hr=hr, border=2)
  b = image_metrics.sr_scores(sr=ruined, hr=hr, border=2)
  assert a == b
  unclipped = 10 * np.log10(1 / np.mean((sr[2:-2, 2:-2] - hr[2:-2, 2:-2]) ** 2))
  assert a['psnr_rgb'] > unclipped


def test_rounded_y_follows_matlabs_uint8_path_and_model_y_is_scored_directly():
  sr, hr = _pair(noise=0.03, seed=4)
  hr = np.round(hr * 255) / 255  # real HR images are 8-bit
  got = image_metrics.sr_scores(sr=sr, hr=hr, border=4, round_y=True)
  sr8 = np.round(np.clip(sr, 0, 1) * 255).astype(np.uint8)
  hr8 = np.round(hr * 255).astype(np.uint8)
  # MATLAB: imwrite the output as uint8, then rgb2ycbcr on uint8 (rounded Y).
  y_sr = np.round(skimage.color.rgb2ycbcr(sr8)[..., 0])[4:-4, 4:-4]
  y_hr = np.round(skimage.color.rgb2ycbcr(hr8)[..., 0])[4:-4, 4:-4]
  assert got['psnr_y'] == pytest.approx(
    10 * np.log10(255**2 / np.mean((y_sr - y_hr) ** 2)), abs=1e-9
  )
  assert got['psnr_y'] != image_metrics.sr_scores(sr=sr, hr=hr, border=4)['psnr_y']
  # A Y-only network's own Y, 1 grey level off everywhere: PSNR 48.13 dB.
  model_y = 16 + hr @ [65.481, 128.553, 24.966] + 1.0
  scores = image_metrics.sr_scores(sr=sr, hr=hr, border=4, sr_y=model_y)
  assert scores['psnr_y'] == pytest.approx(10 * np.log10(255**2 / 1.0))


def test_psnr_of_identical_images_is_infinite_and_ssim_needs_11_pixels():
  x = np.zeros((12, 12))
  assert image_metrics.psnr(x, x) == float('inf')
  with pytest.raises(ValueError, match='at least 11x11'):
    image_metrics.ssim(np.zeros((10, 30)), np.zeros((10, 30)))
