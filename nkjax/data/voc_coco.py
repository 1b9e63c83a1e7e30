"""PASCAL VOC and COCO through TFDS, as padded detection batches (the schema of
`nkjax.data.detection`): images resized as Fast R-CNN does (shorter side to
`min_size`, longer side at most `max_size`) on a `max_size` square canvas.
"""

import dataclasses

from nkjax.data import tfds_loader
from nkjax.data.box_targets import check_max_boxes
from nkjax.data.dataset import Dataset
from nkjax.errors import UserError

OFFLINE_HINT = 'the generated default --config.dataset=shapes works offline'


@dataclasses.dataclass(frozen=True)
class TFDSDetection:
  """How a TFDS detection dataset becomes padded box targets.

  Attributes:
    train, test: the splits the papers train and test on (VOC 2007: trainval
      and test; COCO 2017: train and val).
    max_boxes: the default padding. `load` counts the objects of the
      biggest image of both splits first and raises `UserError` when they do
      not fit: no object is ever dropped.
  """

  tfds_name: str
  train: str
  test: str
  max_boxes: int


VOC2007 = TFDSDetection('voc/2007', 'train+validation', 'test', 64)
COCO2017 = TFDSDetection('coco/2017', 'train', 'validation', 128)


def _tfds_preprocess(
  tf, *, one_based: bool, min_size: int, max_size: int, max_boxes: int
):
  """A tf function from one TFDS detection example to one padded nkjax example.

  TFDS stores boxes as `[ymin, xmin, ymax, xmax]` divided by the image's
  height and width. COCO's come from `[x, y, w, h]` in continuous pixels;
  VOC's from the devkit's 1-based inclusive pixel indices (`xmin = 1` is the
  first column, `xmax` the last one covered), so `(xmin - 1, xmax)` is the
  same extent in continuous coordinates. The image is resized so that its
  shorter side is `min_size` unless that makes the longer side exceed
  `max_size` (Fast R-CNN: 600 and 1000), keeping its aspect ratio, and padded
  at the bottom and right to a `max_size` square.
  """

  def preprocess(example):
    image = tf.cast(example['image'], tf.float32) / 255.0
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = tf.minimum(min_size / tf.reduce_min(hw), max_size / tf.reduce_max(hw))
    new_hw = tf.minimum(tf.round(hw * factor), max_size)
    image = tf.image.resize(image, tf.cast(new_hw, tf.int32), antialias=True)
    image = tf.image.pad_to_bounding_box(image, 0, 0, max_size, max_size)
    image = tf.clip_by_value(image, 0.0, 1.0)
    objects = example['objects']
    ymin, xmin, ymax, xmax = tf.unstack(
      tf.cast(objects['bbox'], tf.float32), 4, axis=-1
    )
    h, w = hw[0], hw[1]
    shift = 1.0 if one_based else 0.0
    boxes = tf.stack([xmin * w - shift, ymin * h - shift, xmax * w, ymax * h], -1)
    # Each axis scales by its own rounded factor, as the resize did.
    sy, sx = new_hw[0] / h, new_hw[1] / w
    boxes = boxes * tf.stack([sx, sy, sx, sy])
    boxes = tf.clip_by_value(boxes, 0.0, tf.stack([new_hw[1], new_hw[0]] * 2))
    ignored = objects['is_crowd'] if 'is_crowd' in objects else objects['is_difficult']
    labels = tf.cast(objects['label'], tf.int32)
    n = tf.shape(labels)[0]
    # `load_tfds` checked every image against max_boxes: this guards the
    # invariant (an error, never a silent cut).
    with tf.control_dependencies([
      tf.debugging.assert_less_equal(n, max_boxes, message='objects > max_boxes')
    ]):  # fmt: skip
      pad = max_boxes - n

    def fit(x):
      return tf.pad(x, [[0, pad]] + [[0, 0]] * (len(x.shape) - 1))

    boxes, labels, ignored = fit(boxes), fit(labels), fit(tf.cast(ignored, tf.bool))
    real = tf.range(max_boxes) < n
    # Boxes with no area (a few COCO annotations) are no training target.
    has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {
      'image': image,
      'boxes': tf.ensure_shape(boxes, (max_boxes, 4)),
      'labels': tf.ensure_shape(labels, (max_boxes,)),
      'box_mask': real & ~ignored & has_area,
      'difficult': real & ignored,
      'image_size': tf.cast(new_hw, tf.int32),
      'scale': tf.stack([sy, sx]),
    }

  return preprocess


_MAX_OBJECTS_CACHE: dict[tuple[str, str], int] = {}


def _max_objects(b, split: str) -> int:
  """The most objects (difficult and crowd ones included: the evaluation needs
  them) of one image of `split`, read from the annotations without decoding
  an image; cached per builder folder and split."""
  key = (str(b.data_dir), split)
  if key not in _MAX_OBJECTS_CACHE:
    tf = tfds_loader.import_tf()
    import tensorflow_datasets as tfds

    ds = b.as_dataset(split=split, decoders={'image': tfds.decode.SkipDecoding()})
    counts = ds.map(
      lambda ex: tf.shape(ex['objects']['label'])[0],
      num_parallel_calls=tf.data.AUTOTUNE,
    ).reduce(tf.constant(0, tf.int32), tf.maximum)
    _MAX_OBJECTS_CACHE[key] = int(counts)
  return _MAX_OBJECTS_CACHE[key]


def load_tfds(
  name, source, *, batch_size, eval_batch_size, seed, min_size, max_size, max_boxes,
  data_dir, shard,
) -> Dataset:  # fmt: skip
  """VOC or COCO through TFDS; see `nkjax.data.detection.load`."""
  if max_size is None:
    max_size = round(min_size * 1000 / 600)
  if max_size < min_size:
    raise UserError(f'max_size {max_size} must be at least image_size {min_size}')
  b = tfds_loader.builder(
    source.tfds_name, data_dir=data_dir, offline_hint=OFFLINE_HINT
  )
  tf = tfds_loader.import_tf()
  for split in (source.train, source.test):
    check_max_boxes(
      max_boxes, needed=_max_objects(b, split), where=f'an image of {name} {split}'
    )
  preprocess = _tfds_preprocess(
    tf, one_based=name.startswith('voc'), min_size=min_size, max_size=max_size,
    max_boxes=max_boxes,
  )  # fmt: skip

  def stream(split, size, train, start=0):
    return tfds_loader.batches(
      b, split=split, batch_size=size, preprocess=preprocess, train=train,
      seed=seed, start_step=start, **shard,
    )  # fmt: skip

  names = tuple(b.info.features['objects']['label'].names)
  return Dataset(
    name=name,
    train_batches=lambda start: stream(source.train, batch_size, True, start),
    eval_batches=lambda: stream(source.test, eval_batch_size, False),
    train_eval_batches=lambda: stream(source.train, eval_batch_size, False),
    num_train=tfds_loader.num_examples(b, source.train),
    num_test=tfds_loader.num_examples(b, source.test),
    num_classes=len(names),
    class_names=names,
    example_shape=(max_size, max_size, 3),
  )
