"""Super-resolution data: HR photographs, LR versions by MATLAB's bicubic, patches.

Three sources, each returned as a `nkjax.data.dataset.Dataset`:

* `photos` (default, offline): scikit-image's bundled photographs, split once and
  for all into `TRAIN_PHOTOS` and `TEST_PHOTOS`; grey ones are stacked to RGB.
  Test images are cropped (top-left) to a multiple of 12, so x2, x3 and x4
  share one HR image.
* `div2k/bicubic_x2` (`_x3`, `_x4`) through TFDS: its own LR images (made with
  MATLAB's imresize), train patches from `train`, evaluation on `validation`.
* a folder of HR PNGs (`test_dir`: Set5, Set14, BSD100, Urban100 as usually
  distributed): the test set instead of the photographs' test split, each
  image cropped to a multiple of the scale (MATLAB's `modcrop`).

LR images are made as the papers' MATLAB code makes them: `imresize(HR, 1 /
scale, 'bicubic')` stored as 8-bit (`round`); the bicubic baseline is
`imresize(LR, scale, 'bicubic')`, unrounded. All arrays are float32 in [0, 1].

Batches (this process's rows of each global batch):

* train: `input` `[b, p, p, 3]` (the LR patch, `input_kind='lr'`) or `[b, P, P,
  3]` (the bicubic-upscaled patch at HR size, `input_kind='bicubic'`), `hr`
  `[b, P, P, 3]`, `scale` int32 `[b]`; each row draws its image (by area), its
  scale (from `scales`) and its position from `(seed, step)`, so a resumed run
  sees the same patches. Multi-scale batches need `input_kind='bicubic'`.
* eval: one full test image per batch (batch 1, shapes differ from image to
  image, so each is evaluated on its own): `lr`, `bicubic`, `hr` `[1, h, w, 3]`,
  `scale`, `index` (into `test_names`) `[1]` and `mask` `[1]`; every
  (scale, image) pair once, scale by scale.
"""

import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence

import numpy as np

from nkjax.data import images, tfds_loader
from nkjax.data.dataset import Dataset
from nkjax.errors import UserError
from nkjax.ops.resize import imresize_np

# scikit-image's photographs (`skimage.data.<name>()`); stereo_motorcycle gives
# both views of the pair.
TRAIN_PHOTOS = (
  'astronaut', 'hubble_deep_field', 'immunohistochemistry', 'retina',
  'stereo_motorcycle', 'moon', 'brick', 'grass', 'gravel', 'clock',
)  # fmt: skip
TEST_PHOTOS = ('chelsea', 'coffee', 'rocket', 'camera', 'coins')
TEST_MULTIPLE = 12  # lcm(2, 3, 4)
DIV2K = {f'div2k/bicubic_x{s}': s for s in (2, 3, 4)}
INPUT_KINDS = ('lr', 'bicubic')
SOURCES = ('photos', *DIV2K)


def as_rgb(image: np.ndarray, *, name: str) -> np.ndarray:
  """`[h, w]` grey, `[h, w, 1]` or `[h, w, 3]` uint8 or float -> `[h, w, 3]` float32
  in [0, 1]. RGBA and other channel counts are rejected."""
  x = np.asarray(image)
  if x.dtype == bool:
    x = x.astype(np.float32)
  elif np.issubdtype(x.dtype, np.integer):
    x = x.astype(np.float32) / np.iinfo(x.dtype).max
  x = x.astype(np.float32)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3):
    raise UserError(
      f'{name}: an image must be grey or RGB, got shape {x.shape} '
      '(drop the alpha channel of an RGBA image first)'
    )
  return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
  """The top-left `[h - h % m, w - w % m]` of `[h, w, c]` (MATLAB's `modcrop`)."""
  h, w = image.shape[:2]
  return image[: h - h % multiple, : w - w % multiple]


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
  """`[h, w, 3]` HR (h, w multiples of `scale`) -> its 8-bit MATLAB-bicubic LR
  `[h / scale, w / scale, 3]` float32 in [0, 1]."""
  lr = imresize_np(hr, scale=1.0 / scale)
  return (np.round(np.clip(lr, 0, 1) * 255) / 255).astype(np.float32)


def make_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
  """The bicubic baseline `imresize(lr, scale)`, unrounded and unclipped."""
  return imresize_np(lr, scale=float(scale))


def _center_crop(image: np.ndarray, side: int | None) -> np.ndarray:
  if side is None:
    return image
  h, w = image.shape[:2]
  top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
  return image[top : top + side, left : left + side]


@functools.cache
def photo(name: str) -> tuple[np.ndarray, ...]:
  """scikit-image's photograph `name` as `[h, w, 3]` float32 images (the stereo
  pair gives two)."""
  import skimage.data

  x = getattr(skimage.data, name)()
  views = list(x[:2]) if name == 'stereo_motorcycle' else [x]
  return tuple(as_rgb(v, name=name) for v in views)


def read_image(path: str) -> np.ndarray:
  """An image file as `[h, w, 3]` float32 in [0, 1], at its depth (8 or 16
  bits); grey is stacked to RGB (`nkjax.data.images.read_image`).

  Raises:
    UserError: the file is missing or unreadable, or is RGBA.
  """
  return images.read_image(path)


def _windows(size: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
  # (start, stop) of each window along one axis, every one `tile` long (the
  # last moved back to end at `size`), and the (keep_from, keep_to) that it
  # contributes: its part at least `halo` from any cut.
  if size <= tile:
    return [(0, size, 0, size)]
  step = tile - 2 * halo
  starts = list(range(0, size - tile, step)) + [size - tile]
  out, kept = [], 0
  for a in starts:
    stop = a + tile
    keep_to = size if stop == size else stop - halo
    out.append((a, stop, kept, keep_to))
    kept = keep_to
  return out


def apply_in_tiles(fn, image: np.ndarray, *, tile: int, halo: int, scale: int):
  """`fn` over `image` in overlapping windows, as if over the whole of it.

  For a network whose output pixel depends on the input within `halo` pixels
  (the radius of its receptive field): each window is `tile` x `tile` (or the
  whole side where the image is smaller), windows overlap by `2 * halo`, and
  each keeps only the output at least `halo` input pixels from a cut, so the
  result is the untiled one (to float rounding) while the network sees at
  most `tile * tile` pixels at a time. Every window has one shape: one
  compilation.

  Args:
    fn: `[h, w, c]` -> `[h * scale, w * scale, c']`, e.g. a network's output
      on one image.
    image: `[H, W, c]`.
    tile: the window's side in `image` pixels; more than `2 * halo`.
    halo: the receptive field's radius in `image` pixels.
    scale: output pixels per input pixel.

  Returns:
    `[H * scale, W * scale, c']`, as `fn(image)`; and the number of windows.
  """
  if tile <= 2 * halo:
    raise ValueError(f'tile {tile} must exceed twice the halo {halo}')
  rows = _windows(image.shape[0], tile, halo)
  cols = _windows(image.shape[1], tile, halo)
  out = None
  for r0, r1, keep_r0, keep_r1 in rows:
    for c0, c1, keep_c0, keep_c1 in cols:
      y = np.asarray(fn(image[r0:r1, c0:c1]))
      if out is None:
        h, w = image.shape[:2]
        out = np.zeros((h * scale, w * scale, y.shape[-1]), y.dtype)
      out[keep_r0 * scale : keep_r1 * scale, keep_c0 * scale : keep_c1 * scale] = y[
        (keep_r0 - r0) * scale : (keep_r1 - r0) * scale,
        (keep_c0 - c0) * scale : (keep_c1 - c0) * scale,
      ]
  return out, len(rows) * len(cols)


def write_png(path: str, image: np.ndarray) -> None:
  """Writes `[h, w, 3]` in [0, 1] (clipped) as an 8-bit RGB PNG; makes the folder."""
  from PIL import Image

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  x = np.round(np.clip(np.asarray(image, np.float64), 0, 1) * 255).astype(np.uint8)
  Image.fromarray(x).save(path)


def write_y_png(path: str, y: np.ndarray) -> None:
  """Writes a Y channel `[h, w]` in [0, 255] units as an 8-bit grey PNG, clipped
  and rounded as `nkjax.metrics.image.sr_scores(sr_y=..., round_y=True)`
  quantises it before scoring: the file holds exactly the Y that was scored."""
  from PIL import Image

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  x = np.round(np.clip(np.asarray(y, np.float64), 0, 255)).astype(np.uint8)
  Image.fromarray(x).save(path)  # 2-D uint8: 8-bit grey


def read_folder(test_dir: str) -> tuple[list[str], list[np.ndarray]]:
  """Every `.png` in `test_dir` (sorted by name) as HR images."""
  if not os.path.isdir(test_dir):
    raise UserError(f'test_dir {test_dir!r} is not a folder of PNG images')
  files = sorted(f for f in os.listdir(test_dir) if f.lower().endswith('.png'))
  if not files:
    raise UserError(
      f'test_dir {test_dir!r} holds no .png files (Set5, Set14, BSD100, Urban100 HR)'
    )
  return [os.path.splitext(f)[0] for f in files], [
    read_image(os.path.join(test_dir, f)) for f in files
  ]


@dataclasses.dataclass(frozen=True)
class _Pairs:
  """Per scale: HR images (cropped to a multiple of the scale) and their LR."""

  hr: dict[int, list[np.ndarray]]
  lr: dict[int, list[np.ndarray]]
  # Bicubic upscalings of the LR images, made once per (scale, image) on first
  # use: the paper's sub-images are cut from these.
  _bicubic: dict = dataclasses.field(default_factory=dict)

  def bicubic(self, s: int, k: int) -> np.ndarray:
    if (s, k) not in self._bicubic:
      self._bicubic[(s, k)] = make_bicubic(self.lr[s][k], s)
    return self._bicubic[(s, k)]


def _pairs(images: Sequence[np.ndarray], scales: Sequence[int], multiple) -> _Pairs:
  hr, lr = {}, {}
  for s in scales:
    m = multiple or s
    hr[s] = [crop_to_multiple(x, m) for x in images]
    lr[s] = [make_lr(x, s) for x in hr[s]]
  return _Pairs(hr=hr, lr=lr)


def _check_sizes(names, images, *, scales, min_hr: int, what: str):
  for name, x in zip(names, images, strict=True):
    if min(x.shape[:2]) < min_hr:
      raise UserError(
        f'{what} image {name} is {x.shape[0]}x{x.shape[1]}, smaller than the '
        f'{min_hr}-pixel HR patches at scales {tuple(scales)}'
      )


SSIM_WINDOW = 11  # nkjax.metrics.image.ssim's Gaussian window


def check_test_sizes(names, images, *, scales, multiple: int | None, fix: str):
  """Raises `UserError` for the first test image too small to score.

  Scores are taken on the HR image cropped to a multiple of the scale (of
  `multiple` when given) with `scale` pixels shaved off each side, and SSIM
  needs 11x11 of what is left.

  Args:
    fix: the option the message tells the person to change.
  """
  for name, x in zip(names, images, strict=True):
    for s in scales:
      m = multiple or s
      side = min(x.shape[0] - x.shape[0] % m, x.shape[1] - x.shape[1] % m)
      if side - 2 * s < SSIM_WINDOW:
        need = -(-(SSIM_WINDOW + 2 * s) // m) * m
        raise UserError(
          f'test image {name} is {x.shape[0]}x{x.shape[1]}: scoring at x{s} needs '
          f"at least {need}x{need} (SSIM's {SSIM_WINDOW} pixels and the {s}-pixel "
          f'border on each side, after cropping to a multiple of {m}); change {fix}'
        )


def patch_batches(
  pairs: _Pairs,
  start_step: int = 0,
  *,
  scales: Sequence[int],
  patch: int,
  input_kind: str,
  batch_size: int,
  seed: int,
  process_index: int,
  process_count: int,
) -> Iterator[dict[str, np.ndarray]]:
  """Random aligned patches; see the module docstring. `patch` is the LR side for
  `input_kind='lr'` (HR side `patch * scale`), the HR side for 'bicubic'."""
  local = batch_size // process_count
  rows = slice(process_index * local, (process_index + 1) * local)
  n_images = len(next(iter(pairs.hr.values())))
  area = np.array([x.shape[0] * x.shape[1] for x in pairs.hr[scales[0]]], np.float64)
  step = start_step
  while True:
    rng = np.random.default_rng([seed, step])
    which = rng.choice(n_images, size=batch_size, p=area / area.sum())
    scale = rng.choice(np.asarray(scales), size=batch_size)
    pos = rng.uniform(size=(batch_size, 2))
    inputs, hrs = [], []
    for i in range(batch_size)[rows]:
      s, k = int(scale[i]), int(which[i])
      lr, hr = pairs.lr[s][k], pairs.hr[s][k]
      if input_kind == 'lr':
        top = int(pos[i, 0] * (lr.shape[0] - patch + 1))
        left = int(pos[i, 1] * (lr.shape[1] - patch + 1))
        inputs.append(lr[top : top + patch, left : left + patch])
        hrs.append(hr[s * top : s * (top + patch), s * left : s * (left + patch)])
      else:
        top = int(pos[i, 0] * (hr.shape[0] - patch + 1))
        left = int(pos[i, 1] * (hr.shape[1] - patch + 1))
        bic = pairs.bicubic(s, k)
        inputs.append(bic[top : top + patch, left : left + patch])
        hrs.append(hr[top : top + patch, left : left + patch])
    yield {
      'input': np.stack(inputs),
      'hr': np.stack(hrs),
      'scale': scale[rows].astype(np.int32),
    }
    step += 1


def _eval_batches(names, pairs: _Pairs, scales) -> Iterator[dict[str, np.ndarray]]:
  for s in scales:
    for k in range(len(names)):
      lr, hr = pairs.lr[s][k], pairs.hr[s][k]
      yield {
        'lr': lr[None],
        'bicubic': make_bicubic(lr, s)[None],
        'hr': hr[None],
        'scale': np.array([s], np.int32),
        'index': np.array([k], np.int32),
        'mask': np.ones((1,), np.float32),
      }


@dataclasses.dataclass(frozen=True)
class SRDataset(Dataset):
  """A `Dataset` with the test images' names (the `index` of eval batches)."""

  test_names: tuple[str, ...] = ()
  scales: tuple[int, ...] = ()


def load(
  name: str = 'photos',
  *,
  scales: Sequence[int],
  patch: int,
  input_kind: str,
  batch_size: int,
  seed: int,
  test_dir: str | None = None,
  data_dir: str | None = None,
  crop: int | None = None,
  max_test_images: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> SRDataset:
  """The SR dataset `name` (`photos` or `div2k/bicubic_x{2,3,4}`).

  Args:
    scales: upscaling factors to train and evaluate at, among 2, 3 and 4
      (DIV2K: its own only); the experiment's config rules check them.
    patch: training patch side (LR pixels for 'lr' input, HR for 'bicubic').
    input_kind: 'lr' (SRResNet) or 'bicubic' (SRCNN, VDSR).
    batch_size: the global training batch.
    test_dir: a folder of HR PNGs to evaluate on instead (Set5, Set14, ...).
    crop: centre-crop every photograph to at most `crop` x `crop` first (for
      tests and smoke runs).
    max_test_images: evaluate on the first this many test images only.

  Raises:
    UserError: an unknown source, several scales on LR input, a training
      image under the patch, or a test image too small to score
      (`check_test_sizes`), before any patch is cut.
  """
  if name not in SOURCES:
    raise UserError(
      f'unknown SR dataset {name!r}; valid choices: {", ".join(SOURCES)} '
      '(Set5, Set14, BSD100, Urban100: --config.test_dir=FOLDER of HR PNGs)'
    )
  if input_kind not in INPUT_KINDS:
    raise UserError(f'input_kind must be one of {INPUT_KINDS}, got {input_kind!r}')
  scales = tuple(int(s) for s in scales)
  if input_kind == 'lr' and len(scales) > 1:
    raise UserError(
      'networks on LR input (SRResNet) train at one scale; got scales '
      f'{scales}: give one, e.g. --config.scales=(4,)'
    )
  if batch_size % process_count:
    raise UserError(
      f'batch size {batch_size} is not divisible by the {process_count} processes'
    )
  if name in DIV2K:
    return _load_div2k(
      name, scales=scales, patch=patch, input_kind=input_kind, batch_size=batch_size,
      seed=seed, test_dir=test_dir, data_dir=data_dir,
      max_test_images=max_test_images, process_index=process_index,
      process_count=process_count,
    )  # fmt: skip
  named = [(f'{n}_{i}', x) for n in TRAIN_PHOTOS for i, x in enumerate(photo(n))]
  train_names = [n for n, _ in named]
  train = [_center_crop(x, crop) for _, x in named]
  if test_dir is None:
    test_names = list(TEST_PHOTOS)
    test = [_center_crop(photo(n)[0], crop) for n in TEST_PHOTOS]
    multiple = TEST_MULTIPLE
  else:
    test_names, test = read_folder(test_dir)
    multiple = None  # modcrop by each scale, as the benchmarks do
  test_names, test = test_names[:max_test_images], test[:max_test_images]
  check_test_sizes(
    test_names, test, scales=scales, multiple=multiple,
    fix='--config.crop' if test_dir is None else f'--config.test_dir={test_dir}',
  )  # fmt: skip
  min_hr = max(patch * s for s in scales) if input_kind == 'lr' else patch
  _check_sizes(train_names, train, scales=scales, min_hr=min_hr, what='training')
  train_pairs = _pairs(train, scales, None)
  test_pairs = _pairs(test, scales, multiple)
  return _dataset(
    name if test_dir is None else f'{name}+{os.path.basename(test_dir)}',
    train_pairs=train_pairs, test_names=test_names, test_pairs=test_pairs,
    scales=scales, patch=patch, input_kind=input_kind, batch_size=batch_size,
    seed=seed, process_index=process_index, process_count=process_count,
    num_train=len(train), num_test=len(test) * len(scales),
  )  # fmt: skip


def _dataset(
  name, *, train_pairs, test_names, test_pairs, scales, patch, input_kind,
  batch_size, seed, process_index, process_count, num_train, num_test,
) -> SRDataset:  # fmt: skip
  """The one construction of an `SRDataset` from its HR/LR pairs."""
  return SRDataset(
    name=name,
    train_batches=functools.partial(
      patch_batches,
      train_pairs,
      scales=scales,
      patch=patch,
      input_kind=input_kind,
      batch_size=batch_size,
      seed=seed,
      process_index=process_index,
      process_count=process_count,
    ),  # fmt: skip
    eval_batches=functools.partial(_eval_batches, test_names, test_pairs, scales),
    num_train=num_train,
    num_test=num_test,
    example_shape=(patch, patch, 3),
    test_names=tuple(test_names),
    scales=scales,
  )


def _load_div2k(
  name, *, scales, patch, input_kind, batch_size, seed, test_dir, data_dir,
  max_test_images, process_index, process_count,
):  # fmt: skip
  """DIV2K through TFDS: training patches from a pool of decoded `train` images
  (`hr`, `lr`), evaluation on `validation` (or `test_dir`)."""
  own = DIV2K[name]
  if scales != (own,):
    raise UserError(f'{name} holds x{own} pairs only; set --config.scales=({own},)')
  b = tfds_loader.builder(
    name,
    data_dir=data_dir,
    offline_hint='the default --config.dataset=photos works offline',
  )
  tfds_loader.import_tf()
  import tensorflow_datasets as tfds

  def read(split, limit):
    names, hrs, lrs = [], [], []
    ds = b.as_dataset(split=split, shuffle_files=False)
    for i, ex in enumerate(tfds.as_numpy(ds)):
      if limit is not None and i >= limit:
        break
      lr = as_rgb(ex['lr'], name=f'{name} {split} {i}')
      # The LR image defines the size; the HR is cropped to match it exactly.
      hr = as_rgb(ex['hr'], name=f'{name} {split} {i}')
      hr = hr[: lr.shape[0] * own, : lr.shape[1] * own]
      lr = lr[: hr.shape[0] // own, : hr.shape[1] // own]
      hr = hr[: lr.shape[0] * own, : lr.shape[1] * own]
      names.append(f'{split}_{i:04d}')
      hrs.append(hr)
      lrs.append(lr)
    return names, _Pairs(hr={own: hrs}, lr={own: lrs})

  # Each process keeps a pool of training images in memory (DIV2K's 800 2K
  # images do not fit on every host): its share of the split, up to 100.
  names, train_pairs = read(
    tfds.even_splits('train', n=process_count)[process_index], 100
  )
  if test_dir is None:
    test_names, test_pairs = read('validation', max_test_images)
  else:
    test_names, test = read_folder(test_dir)
    test_names, test = test_names[:max_test_images], test[:max_test_images]
    check_test_sizes(
      test_names, test, scales=scales, multiple=None,
      fix=f'--config.test_dir={test_dir}',
    )  # fmt: skip
    test_pairs = _pairs(test, scales, None)
  min_hr = patch * own if input_kind == 'lr' else patch
  _check_sizes(
    names, train_pairs.hr[own], scales=scales, min_hr=min_hr, what='training'
  )
  return _dataset(
    name, train_pairs=train_pairs, test_names=test_names, test_pairs=test_pairs,
    scales=scales, patch=patch, input_kind=input_kind, batch_size=batch_size,
    seed=seed, process_index=process_index, process_count=process_count,
    num_train=tfds_loader.num_examples(b, 'train'), num_test=len(test_names),
  )  # fmt: skip
