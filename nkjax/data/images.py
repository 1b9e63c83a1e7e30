"""Image classification datasets by name: the embedded digits or TFDS.

Every dataset comes out as a `Dataset` whose batches are `image` float32
`[b, h, w, c]` in [0, 1], `label` int32 `[b]`, and for eval a `mask` over padded
examples; `example_shape` is `(h, w, c)`. `read_image` reads one image file
(a photograph to upscale or to detect objects in) the same way.
"""

import dataclasses

import numpy as np

from nkjax.data import batching, digits, tfds_loader
from nkjax.data.dataset import Dataset
from nkjax.errors import UserError, choose


@dataclasses.dataclass(frozen=True)
class TFDSImages:
  """How a TFDS image dataset becomes (image, label) examples.

  Attributes:
    square_size: centre-crop to a square and resize to this side unless the
      caller names a size (CelebA's 218x178 faces become 64x64, as DCGAN's are).
    attribute: the default binary attribute used as the label, for datasets
      whose examples have `attributes` instead of a `label` (CelebA).
  """

  tfds_name: str
  train: str = 'train'
  test: str = 'test'
  square_size: int | None = None
  attribute: str | None = None


# None: the embedded digits.
DATASETS = {
  'digits': None,
  'mnist': TFDSImages('mnist'),
  'fashion_mnist': TFDSImages('fashion_mnist'),
  'cifar10': TFDSImages('cifar10'),
  'celeb_a': TFDSImages('celeb_a', square_size=64, attribute='Male'),
}

OFFLINE_HINT = 'the embedded default --config.dataset=digits works offline'


def load(
  name: str,
  *,
  batch_size: int,
  eval_batch_size: int,
  seed: int,
  image_size: int | None = None,
  train_subset: int | None = None,
  data_dir: str | None = None,
  attribute: str | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> Dataset:
  """Loads `name` (one of `DATASETS`), images resized to `image_size` if given.

  Global batch sizes; each process gets its rows of every batch.
  `train_subset` keeps only the first n training examples (the order is
  already random: the digits split is shuffled, TFDS splits are stored shuffled).
  `attribute` picks the label of a dataset labelled by attributes (CelebA:
  any of its 40, such as 'Male' or 'Smiling'; the label is 1 where it holds).
  """
  if train_subset is not None and train_subset < 1:
    raise UserError(
      f'train_subset must be a positive number of examples, got {train_subset}'
    )
  choose('dataset', name, DATASETS)
  shard = {'process_index': process_index, 'process_count': process_count}
  if name == 'digits':
    train, test = (digits.load(s, image_size=image_size) for s in ('train', 'test'))
    train = {k: v[:train_subset] for k, v in train.items()}
    return batching.from_arrays(
      name, train, test, batch_size=batch_size, eval_batch_size=eval_batch_size,
      seed=seed, num_classes=digits.NUM_CLASSES,
      example_shape=train['image'].shape[1:], **shard,
    )  # fmt: skip

  source = DATASETS[name]
  train_split, test_split = source.train, source.test
  if train_subset is not None:
    train_split = f'{train_split}[:{train_subset}]'
  b = tfds_loader.builder(
    source.tfds_name, data_dir=data_dir, offline_hint=OFFLINE_HINT
  )
  tf = tfds_loader.import_tf()
  h, w, c = b.info.features['image'].shape
  crop = min(h, w) if source.square_size else None
  size = image_size or source.square_size
  if size is not None:
    h = w = size
  if source.attribute:
    attribute = attribute or source.attribute
    choose('attribute', attribute, b.info.features['attributes'].keys())
    num_classes = 2
  elif attribute is not None:
    raise UserError(f'dataset {name!r} has labels, not attributes; drop attribute')
  else:
    num_classes = b.info.features['label'].num_classes

  def preprocess(example):
    image = tf.cast(example['image'], tf.float32) / 255.0
    if crop is not None:
      image = tf.image.resize_with_crop_or_pad(image, crop, crop)
    if size is not None:
      image = tf.image.resize(image, (h, w), antialias=True)
    label = example['attributes'][attribute] if source.attribute else example['label']
    return {'image': image, 'label': tf.cast(label, tf.int32)}

  def stream(split, size, train, start=0):
    return tfds_loader.batches(
      b, split=split, batch_size=size, preprocess=preprocess, train=train,
      seed=seed, start_step=start, **shard,
    )  # fmt: skip

  return Dataset(
    name=name,
    num_classes=num_classes,
    example_shape=(h, w, c),
    num_train=tfds_loader.num_examples(b, train_split),
    num_test=tfds_loader.num_examples(b, test_split),
    train_batches=lambda start: stream(train_split, batch_size, True, start),
    eval_batches=lambda: stream(test_split, eval_batch_size, False),
    train_eval_batches=lambda: stream(train_split, eval_batch_size, False),
  )


# PIL's modes of 16-bit grey PNGs: 'I;16' (Pillow >= 10), 'I' before it.
_SIXTEEN_BIT = ('I;16', 'I;16B', 'I;16L')


def read_image(path: str, *, drop_alpha: bool = False) -> np.ndarray:
  """An image file as `[h, w, 3]` float32 in [0, 1]; grey is stacked to RGB.

  Read at the file's depth: 8-bit values are divided by 255, a 16-bit grey
  PNG's by 65,535 (PIL's `convert('RGB')` would clip it to white). PIL reads
  a 16-bit RGB PNG at 8 bits (the high byte of each value).

  Args:
    path: a PNG, JPEG or any file PIL reads.
    drop_alpha: composite nothing, just drop an alpha channel (for drawing
      on the image); False refuses such an image (its colours under the
      transparency are not the picture's).

  Raises:
    UserError: the file is missing or unreadable, has an alpha channel (unless
      `drop_alpha`), or holds 32-bit values.
  """
  from PIL import Image, UnidentifiedImageError

  try:
    with Image.open(path) as im:
      if im.mode in ('RGBA', 'LA', 'PA') or 'transparency' in im.info:
        if not drop_alpha:
          raise UserError(
            f'{path} has an alpha channel; save it as RGB or grey (e.g. '
            "PIL's Image.convert('RGB')) and try again"
          )
        im = im.convert('RGB')
      if im.mode in _SIXTEEN_BIT or (im.mode == 'I' and im.format == 'PNG'):
        x = np.asarray(im).astype(np.float32) / 65535.0
      elif im.mode in ('I', 'F'):
        raise UserError(
          f'{path} holds 32-bit values (PIL mode {im.mode}); save it as an 8- or '
          '16-bit PNG'
        )
      else:
        x = np.asarray(im if im.mode in ('L', 'RGB') else im.convert('RGB'))
        x = x.astype(np.float32) / 255.0
  except (FileNotFoundError, IsADirectoryError) as e:
    raise UserError(f'cannot read image {path}: no such file') from e
  except (UnidentifiedImageError, OSError) as e:
    raise UserError(f'cannot read image {path}: not an image file PIL knows') from e
  if x.ndim == 2:
    x = np.repeat(x[..., None], 3, axis=-1)
  return x
