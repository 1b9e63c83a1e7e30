"""Object detection datasets: two generated offline sets, PASCAL VOC and COCO.

Every name gives the same batches (the one `nkjax.data.dataset.Dataset` record):

- `image` float32 `[b, h, w, 3]` in [0, 1];
- `boxes` float32 `[b, max_boxes, 4]`: `(x1, y1, x2, y2)` in pixels of `image`,
  continuous coordinates as torchvision and COCO use (pixel `i` covers
  `[i, i + 1)`, width = `x2 - x1`, no +1);
- `labels` int32 `[b, max_boxes]`: object classes 0..C-1 (no background class);
- `box_mask` bool `[b, max_boxes]`: True for a training target;
- `difficult` bool `[b, max_boxes]`: True for an object the evaluation ignores
  (VOC's "difficult" objects, COCO's crowd regions). These have `box_mask`
  False: like py-faster-rcnn (`use_diff=False`) and Detectron2 they are not
  training targets, and a padded entry is both False. Evaluate on the entries
  where `box_mask | difficult` (see `ground_truths`);
- `image_size` int32 `[b, 2]`: the `(height, width)` of the image inside the
  canvas (VOC and COCO are padded at the bottom and right to a square canvas);
- `scale` float32 `[b, 2]`: resized / original pixels along y and x (1 for the
  generated sets): divide boxes by it for the original image's pixels;
- eval batches also `mask` float32 `[b]` (1 real example, 0 padding).

Padded box entries are zeros with label 0, so gathers stay in range.

The sets (`DATASETS`): `shapes` and `digits_canvas`, generated offline
(`nkjax.data.shapes`), and VOC 2007 and COCO 2017 through TFDS
(`nkjax.data.voc_coco`). With `augment=True` the training batches are flipped
and scale-jittered with their boxes (`nkjax.data.box_augment`).
"""

import dataclasses
import functools
from collections.abc import Iterator

import jax
import numpy as np

from nkjax.data import batching, box_augment, voc_coco
from nkjax.data.box_augment import flip_horizontal, rescale  # noqa: F401
from nkjax.data.box_targets import check_max_boxes, ground_truths  # noqa: F401
from nkjax.data.dataset import Dataset
from nkjax.data.shapes import (  # noqa: F401 (re-exported)
  DIGIT_NAMES,
  MAX_OBJECTS,
  OFFLINE_DEFAULT_MAX_BOXES,
  SHAPE_NAMES,
  generate,
)
from nkjax.data.voc_coco import OFFLINE_HINT, TFDSDetection  # noqa: F401
from nkjax.errors import choose

# Re-exported: the batch transform itself, for use inside a train step.
augment = box_augment.augment

DATASETS = {
  'shapes': None,
  'digits_canvas': None,
  'voc/2007': voc_coco.VOC2007,
  'coco/2017': voc_coco.COCO2017,
}


def _as_float(batches: Iterator[dict]) -> Iterator[dict]:
  for b in batches:
    yield {**b, 'image': b['image'].astype(np.float32) / 255.0}


def load(
  name: str = 'shapes',
  *,
  batch_size: int,
  eval_batch_size: int,
  seed: int,
  image_size: int = 128,
  max_boxes: int | None = None,
  num_train: int = 2048,
  num_test: int = 256,
  data_dir: str | None = None,
  process_index: int = 0,
  process_count: int = 1,
  data_seed: int = 0,
  max_size: int | None = None,
  augment: bool = False,
) -> Dataset:
  """A detection dataset by name: `shapes` (default), `digits_canvas`, `voc/2007`, `coco/2017`.

  Args:
    batch_size, eval_batch_size: global batch sizes; each process gets its rows.
    seed: shuffling seed (training batch `s` depends only on `seed` and `s`).
    image_size: generated sets: the side of the square images. VOC and COCO:
      the shorter side after resizing (the papers use 600).
    max_boxes: padding of the box arrays; default 8 for the generated sets, 64
      for VOC 2007 and 128 for COCO 2017. Fewer than the objects of the
      biggest image raise `UserError` before any batch is made (VOC and COCO
      are scanned for it, annotations only).
    num_train, num_test: sizes of the generated sets (ignored for TFDS).
    data_dir: the TFDS data folder.
    data_seed: the seed the generated sets are drawn from.
    max_size: VOC and COCO: the longer side is capped at this (the papers: 1000
      for 600), and images are padded to a `max_size` square canvas; default
      `round(image_size * 1000 / 600)`.
    augment: flip each training image left to right with probability 1/2 and
      scale it by a factor in [0.8, 1.25] with a random shift, its boxes moved
      with it (`nkjax.data.box_augment.augment`); batch `s` of process `p`
      depends only on `(seed, s, p)`. Eval batches are never augmented.
  """
  choose('dataset', name, DATASETS)
  shard = {'process_index': process_index, 'process_count': process_count}
  source = DATASETS[name]
  if source is not None:
    data = voc_coco.load_tfds(
      name, source, batch_size=batch_size, eval_batch_size=eval_batch_size,
      seed=seed, min_size=image_size, max_size=max_size,
      max_boxes=max_boxes or source.max_boxes, data_dir=data_dir, shard=shard,
    )  # fmt: skip
    return (
      _with_augment(data, seed=seed, process_index=process_index) if augment else data
    )
  max_boxes = max_boxes or OFFLINE_DEFAULT_MAX_BOXES
  gen = functools.partial(
    generate, name, image_size=image_size, max_boxes=max_boxes, data_seed=data_seed
  )
  train = gen(num_examples=num_train, split='train')
  test = gen(num_examples=num_test, split='test')
  data = Dataset(
    name=name,
    train_batches=lambda start: _as_float(
      batching.train_batches(
        train, batch_size=batch_size, seed=seed, start_step=start, **shard
      )
    ),
    eval_batches=lambda: _as_float(
      batching.eval_batches(test, batch_size=eval_batch_size, **shard)
    ),
    train_eval_batches=lambda: _as_float(
      batching.eval_batches(train, batch_size=eval_batch_size, **shard)
    ),
    num_train=num_train,
    num_test=num_test,
    num_classes=len(SHAPE_NAMES) if name == 'shapes' else 10,
    class_names=SHAPE_NAMES if name == 'shapes' else DIGIT_NAMES,
    example_shape=(image_size, image_size, 3),
  )
  return (
    _with_augment(data, seed=seed, process_index=process_index) if augment else data
  )


def _with_augment(data: Dataset, *, seed: int, process_index: int) -> Dataset:
  """`data` whose training batches go through `box_augment.augment`, with the
  key of step `s` folded from `seed`, the process and `s` (so a resumed run
  draws what an uninterrupted one does)."""
  root = jax.random.fold_in(jax.random.key(seed), process_index)
  fn = jax.jit(box_augment.augment)

  def train_batches(start):
    for step, batch in enumerate(data.train_batches(start), start):
      out = fn(jax.random.fold_in(root, step), batch)
      yield {k: np.asarray(v) for k, v in out.items()}

  return dataclasses.replace(data, train_batches=train_batches)
