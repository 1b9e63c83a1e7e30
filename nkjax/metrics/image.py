"""Super-resolution scores as the papers compute them: PSNR and SSIM on Y.

The protocol of SRCNN, VDSR, SRGAN and the benchmarks since (their MATLAB code):
the SR output is clipped to the valid range, both images go to the Y channel of
MATLAB's `rgb2ycbcr` (in [0, 255] units), `scale` pixels are shaved off every
border (the upscaler cannot know what lies beyond the image), then

* PSNR = 10 log10(255^2 / MSE);
* SSIM as Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, L = 255, 'valid' filtering (no padding), the mean of the SSIM map.

RGB PSNR (all three channels, same shave) is reported beside it, labelled.
`round_y=True` follows MATLAB's uint8 path: the SR output is rounded to 8 bits (as
a saved PNG is) and Y is rounded to integers; the default scores the exact values.
Host-side NumPy in float64: full images of any size, one at a time.
"""

import numpy as np

_SSIM_WINDOW, _SSIM_SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03
# MATLAB rgb2ycbcr's Y row, for RGB in [0, 1] (see nkjax.ops.image).
_Y = np.array([65.481, 128.553, 24.966])


def shave(image: np.ndarray, border: int) -> np.ndarray:
  """`[h, w, ...]` without `border` pixels on each side."""
  if border == 0:
    return image
  return image[border:-border, border:-border]


def to_y(rgb: np.ndarray, *, round_y: bool = False) -> np.ndarray:
  """`[h, w, 3]` RGB in [0, 1] (clipped here) -> `[h, w]` float64 Y in [16, 235].

  `round_y`: round the RGB to 8 bits and Y to integers (MATLAB's uint8 path).
  """
  rgb = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
  if round_y:
    rgb = np.round(rgb * 255.0) / 255.0
  y = 16.0 + rgb @ _Y
  return np.round(y) if round_y else y


def psnr(a: np.ndarray, b: np.ndarray, *, max_value: float = 255.0) -> float:
  """10 log10(max_value^2 / mean((a - b)^2)) over every element; inf if equal.

  An error of 25.5 grey levels everywhere is a tenth of the 255 range: 20 dB.

  >>> a = np.zeros((4, 4))
  >>> psnr(a, a + 25.5)
  20.0
  >>> psnr(a, a)
  inf
  """
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return float('inf') if mse == 0 else float(10.0 * np.log10(max_value**2 / mse))


def _gaussian_window() -> np.ndarray:
  r = np.arange(_SSIM_WINDOW) - (_SSIM_WINDOW - 1) / 2
  g = np.exp(-(r**2) / (2 * _SSIM_SIGMA**2))
  return g / g.sum()  # the 2-D window is outer(g, g), normalised as fspecial's


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
  """Separable 'valid' filtering of `[h, w]` by outer(g, g)."""
  win = np.lib.stride_tricks.sliding_window_view
  x = win(x, len(g), axis=0) @ g
  return win(x, len(g), axis=1) @ g


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 255.0) -> float:
  """Mean SSIM of two grey images `[h, w]` (h, w >= 11), Wang et al.'s definition.

  SSIM = (2 mu_a mu_b + C1)(2 cov + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))
  with Gaussian-weighted local means, variances and covariance (population form),
  C1 = (0.01 L)^2, C2 = (0.03 L)^2, averaged over the valid positions.

  An image is perfectly similar to itself; a uniform brightness shift changes
  only the luminance term, (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1):

  >>> x = np.full((16, 16), 100.0)
  >>> ssim(x, x)
  1.0
  >>> c1 = (0.01 * 255) ** 2
  >>> round(ssim(x, x + 50), 6) == round((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), 6)
  True
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 2 or min(a.shape) < _SSIM_WINDOW:
    raise ValueError(
      f'ssim takes two equal grey images of at least 11x11, got {a.shape} and {b.shape}'
    )
  g = _gaussian_window()
  mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
  var_a = _filter_valid(a * a, g) - mu_a**2
  var_b = _filter_valid(b * b, g) - mu_b**2
  cov = _filter_valid(a * b, g) - mu_a * mu_b
  c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
  num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
  den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
  return float(np.mean(num / den))


def sr_scores(
  *,
  sr: np.ndarray,
  hr: np.ndarray,
  border: int,
  sr_y: np.ndarray | None = None,
  round_y: bool = False,
) -> dict[str, float]:
  """PSNR on Y, SSIM on Y and PSNR on RGB of one super-resolved image.

  Args:
    sr: `[h, w, 3]` RGB output in [0, 1] (clipped here; cubic filters and
      networks over- and undershoot).
    hr: `[h, w, 3]` RGB ground truth in [0, 1].
    border: pixels shaved off each side before scoring (the scale factor).
    sr_y: the model's own Y in [0, 255] units `[h, w]`, for networks that
      predict Y only (SRCNN, VDSR): scored instead of the Y of `sr` (which then
      carries the bicubic colour), clipped to [0, 255].
    round_y: MATLAB's uint8 path (see the module docstring).

  Returns:
    `{'psnr_y': dB, 'ssim_y': in [-1, 1], 'psnr_rgb': dB}`.
  """
  sr = np.clip(np.asarray(sr, np.float64), 0.0, 1.0)
  hr = np.asarray(hr, np.float64)
  if sr.shape != hr.shape:
    raise ValueError(f'SR and HR shapes differ: {sr.shape} vs {hr.shape}')
  hr_y = to_y(hr, round_y=round_y)
  if sr_y is None:
    y = to_y(sr, round_y=round_y)
  else:
    y = np.clip(np.asarray(sr_y, np.float64), 0.0, 255.0)
    y = np.round(y) if round_y else y
  if round_y:
    sr = np.round(sr * 255.0) / 255.0
  y, hr_y = shave(y, border), shave(hr_y, border)
  return {
    'psnr_y': psnr(y, hr_y),
    'ssim_y': ssim(y, hr_y),
    'psnr_rgb': psnr(shave(sr, border), shave(hr, border), max_value=1.0),
  }
