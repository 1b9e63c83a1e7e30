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

The offline sets are generated with numpy from a fixed `data_seed`, chunk by
chunk, so the first n examples are the same whatever `num_train` is and the
training `seed` (which only shuffles) never changes the data:

- `shapes`: circles, squares, triangles, diamonds and crosses, 12 to 60 px
  across in a 128x128 image (scaled with `image_size`), in random colours on
  noisy two-colour gradients; the box encloses exactly the pixels of the drawn
  shape (before smaller shapes, drawn later, cover part of it).
- `digits_canvas`: the embedded scikit-learn handwritten digits (the train split
  for training images, the test split for test images), each 8x8 digit scaled to
  20-56 px and drawn in a random colour; the box encloses exactly the pixels
  of its ink (bilinear ink above 0.2).
Both place 1 to 6 objects per image, rejecting positions whose box overlaps an
earlier one by IoU above 0.35 (shapes) or 0.15 (digits): partly overlapping,
never hidden.
"""

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.data import batching, digits, tfds_loader
from nkjax.data.dataset import Dataset
from nkjax.errors import UserError, choose
from nkjax.ops import boxes as boxes_lib

SHAPE_NAMES = ('circle', 'square', 'triangle', 'diamond', 'cross')
DIGIT_NAMES = tuple(str(d) for d in range(10))
# Object sizes (px) for a 128x128 image; other image sizes scale them.
SHAPE_SIZES = (12.0, 60.0)
DIGIT_SIZES = (20.0, 56.0)
MAX_OBJECTS = 6
_CHUNK = 64  # examples generated per random stream: the prefix property
_TRIES = 12  # candidate positions per object before it is left out


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


DATASETS = {
  'shapes': None,
  'digits_canvas': None,
  'voc/2007': TFDSDetection('voc/2007', 'train+validation', 'test', 64),
  'coco/2017': TFDSDetection('coco/2017', 'train', 'validation', 128),
}
OFFLINE_DEFAULT_MAX_BOXES = 8
OFFLINE_HINT = 'the generated default --config.dataset=shapes works offline'


def _layout(rng, n, *, image_size, sizes, max_objects, max_iou, margin=1.0):
  """Sizes, centres and presence of up to `max_objects` objects per image.

  Slots are sorted by size, largest first, so that drawing them in slot order
  puts small objects on top of large ones. Returns `(size [n, k], cx, cy
  [n, k], present bool [n, k])`; sizes and centres are continuous pixels, and
  every object's square `centre +- margin * size / 2` lies inside the image.
  """
  k = max_objects
  lo, hi = sizes
  size = np.exp(rng.uniform(np.log(lo), np.log(hi), (n, k)))  # more small ones
  size = -np.sort(-size, axis=1)
  count = rng.integers(1, k + 1, n)
  wanted = np.arange(k) < count[:, None]
  u = rng.uniform(0, 1, (n, k, _TRIES, 2))
  extent = margin * size[:, :, None, None]
  centres = extent / 2 + u * (image_size - extent)
  cand = np.concatenate(
    [centres - extent / 2, centres + extent / 2], -1
  )  # [n, k, tries, 4]
  placed = np.zeros((n, k, 4))
  present = np.zeros((n, k), bool)
  for j in range(k):
    iou = boxes_lib.host_iou(
      cand[:, j, :, None, :], placed[:, None, :j, :]
    )  # [n, tries, j]
    iou = np.where(present[:, None, :j], iou, 0.0).max(-1, initial=0.0)
    ok = iou <= max_iou
    first = np.argmax(ok, axis=1)
    placed[:, j] = cand[np.arange(n), j, first]
    present[:, j] = wanted[:, j] & ok.any(1)
  centre = (placed[..., :2] + placed[..., 2:]) / 2
  return size, centre[..., 0], centre[..., 1], present


def _patch_grid(cx, cy, patch):
  """Patch origins `[m]` and the continuous centres `[m, patch]` of its pixels."""
  ox = np.floor(cx).astype(np.int64) - patch // 2
  oy = np.floor(cy).astype(np.int64) - patch // 2
  xs = ox[:, None] + np.arange(patch) + 0.5
  ys = oy[:, None] + np.arange(patch) + 0.5
  return ox, oy, xs, ys


def _shape_alpha(kind, size, cx, cy, patch):
  """Binary masks `[m, patch, patch]` of shapes of class `kind` `[m]`."""
  ox, oy, xs, ys = _patch_grid(cx, cy, patch)
  r = (size / 2)[:, None, None]
  u = ((xs - cx[:, None])[:, None, :] / r).astype(np.float32)  # [m, 1, p]
  v = ((ys - cy[:, None])[:, :, None] / r).astype(np.float32)  # [m, p, 1]
  au, av = np.abs(u), np.abs(v)
  kind = kind[:, None, None]
  mask = np.select(
    [kind == 0, kind == 1, kind == 2, kind == 3],
    [
      u * u + v * v <= 1,
      (au <= 1) & (av <= 1),
      (v <= 1) & (2 * au <= v + 1),  # apex at the top, base at the bottom
      au + av <= 1,
    ],
    ((au <= 1) & (av <= 0.3)) | ((au <= 0.3) & (av <= 1)),
  )
  return mask.astype(np.float32), ox, oy


@functools.cache
def _digit_split(split: str):
  d = digits.load(split)
  return d['image'][..., 0], d['label']


def _digit_alpha(glyphs, size, cx, cy, patch):
  """Ink `[m, patch, patch]` in [0, 1] of 8x8 `glyphs` scaled to `size` px cells."""
  ox, oy, xs, ys = _patch_grid(cx, cy, patch)
  cell = (size / 8)[:, None]
  # Continuous glyph coordinates of each pixel centre; glyph pixel centres sit
  # at integers, so bilinear weights are the fractional parts.
  gx = (xs - (cx - size / 2)[:, None]) / cell - 0.5
  gy = (ys - (cy - size / 2)[:, None]) / cell - 0.5
  x0, y0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
  fx, fy = (gx - x0).astype(np.float32), (gy - y0).astype(np.float32)
  padded = np.pad(glyphs, ((0, 0), (1, 1), (1, 1)))  # zero ink outside the glyph
  m = np.arange(len(glyphs))[:, None, None]

  def at(yi, xi):
    yi = np.clip(yi + 1, 0, 9)[:, :, None]
    xi = np.clip(xi + 1, 0, 9)[:, None, :]
    return padded[m, yi, xi]

  ink = (
    at(y0, x0) * (1 - fy)[:, :, None] * (1 - fx)[:, None, :]
    + at(y0, x0 + 1) * (1 - fy)[:, :, None] * fx[:, None, :]
    + at(y0 + 1, x0) * fy[:, :, None] * (1 - fx)[:, None, :]
    + at(y0 + 1, x0 + 1) * fy[:, :, None] * fx[:, None, :]
  )
  return np.clip(2 * ink - 0.4, 0, 1).astype(np.float32), ox, oy


def _background(rng, n, image_size):
  """Two-colour linear gradients in a random direction, `[n, s, s, 3]`, and colours."""
  c0 = rng.uniform(0.1, 0.9, (n, 1, 1, 3)).astype(np.float32)
  c1 = rng.uniform(0.1, 0.9, (n, 1, 1, 3)).astype(np.float32)
  theta = rng.uniform(0, 2 * np.pi, n)
  grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size - 0.5
  t = (
    np.cos(theta)[:, None, None] * grid[None, None, :]
    + np.sin(theta)[:, None, None] * grid[None, :, None]
  ) / np.sqrt(2) + 0.5  # in [0, 1] over the image
  t = t.astype(np.float32)[..., None]
  return c0 + (c1 - c0) * t, c0[:, 0, 0], c1[:, 0, 0], theta


def _object_colours(rng, bg_at_centre):
  """Of 8 random colours, the one farthest from the background under the object."""
  cand = rng.uniform(0, 1, (*bg_at_centre.shape[:-1], 8, 3))
  dist = np.sum((cand - bg_at_centre[..., None, :]) ** 2, -1)
  pick = np.argmax(dist, -1)
  return np.take_along_axis(cand, pick[..., None, None], -2)[..., 0, :]


def _generate(
  kind: str,
  rng: np.random.Generator,
  n: int,
  *,
  image_size: int,
  max_boxes: int,
  split: str = 'train',
  noise: float = 0.03,
  return_alpha: bool = False,
) -> dict[str, np.ndarray]:
  """`n` images of `kind` ('shapes' or 'digits_canvas') drawn from `rng`.

  Returns the batch arrays with `image` uint8 `[n, s, s, 3]` (the loader
  scales it to [0, 1]); with `return_alpha` also `alpha` float32
  `[n, k, s, s]`, each object's own coverage before anything is drawn over it
  (for tests).
  """
  s = image_size
  scale = s / 128
  check_max_boxes(max_boxes, needed=MAX_OBJECTS, where=f'an image of {kind}')
  k = MAX_OBJECTS
  if kind == 'shapes':
    sizes, max_iou = (SHAPE_SIZES[0] * scale, SHAPE_SIZES[1] * scale), 0.35
  else:
    sizes, max_iou = (DIGIT_SIZES[0] * scale, DIGIT_SIZES[1] * scale), 0.15
  # Bilinear ink reaches half a glyph pixel past the 8x8 cell: a 9/8 margin
  # keeps it inside the image.
  margin = 1.0 if kind == 'shapes' else 9 / 8
  size, cx, cy, present = _layout(
    rng, n, image_size=s, sizes=sizes, max_objects=k, max_iou=max_iou, margin=margin
  )
  image, c0, c1, theta = _background(rng, n, s)
  # The gradient's value under each object's centre, to pick a visible colour.
  t = (
    np.cos(theta)[:, None] * (cx / s - 0.5) + np.sin(theta)[:, None] * (cy / s - 0.5)
  ) / np.sqrt(2) + 0.5
  colour = _object_colours(rng, c0[:, None] + (c1 - c0)[:, None] * t[..., None])
  if kind == 'shapes':
    labels = rng.integers(0, len(SHAPE_NAMES), (n, k))
  else:
    glyphs, glyph_labels = _digit_split(split)
    pick = rng.integers(0, len(glyphs), (n, k))
    labels = glyph_labels[pick]

  patch = int(np.ceil(sizes[1] * margin)) + 4
  flat = present.reshape(-1)
  idx = np.flatnonzero(flat)
  if kind == 'shapes':
    alpha, ox, oy = _shape_alpha(
      labels.reshape(-1)[idx], size.reshape(-1)[idx], cx.reshape(-1)[idx],
      cy.reshape(-1)[idx], patch,
    )  # fmt: skip
  else:
    alpha, ox, oy = _digit_alpha(
      glyphs[pick.reshape(-1)[idx]], size.reshape(-1)[idx], cx.reshape(-1)[idx],
      cy.reshape(-1)[idx], patch,
    )  # fmt: skip
  # The box is the extent of the drawn pixels, in continuous coordinates.
  cols, rows = alpha.max(1) > 0, alpha.max(2) > 0
  x1 = ox + np.argmax(cols, 1)
  x2 = ox + patch - np.argmax(cols[:, ::-1], 1)
  y1 = oy + np.argmax(rows, 1)
  y2 = oy + patch - np.argmax(rows[:, ::-1], 1)
  boxes = np.zeros((n * k, 4), np.float32)
  boxes[idx] = np.stack([x1, y1, x2, y2], -1)

  # Paste patches slot by slot (largest first) into a canvas padded by a patch,
  # so every patch lies inside it whatever its origin. Rows of the flattened
  # canvas are gathered and scattered by one flat index: numpy's fancy indexing
  # is several times faster that way than with three broadcast index arrays.
  side = s + 2 * patch
  canvas = np.zeros((n, side, side, 3), np.float32)
  canvas[:, patch:-patch, patch:-patch] = image
  canvas = canvas.reshape(-1, 3)
  full_alpha = np.zeros((n, k, side * side), np.float32) if return_alpha else None
  img_of, slot_of = np.divmod(idx, k)
  ar = np.arange(patch)
  flat_colour = colour.reshape(-1, 3)[idx].astype(np.float32)
  for j in range(k):
    sel = np.flatnonzero(slot_of == j)
    if not len(sel):
      continue
    within = ((oy[sel] + patch)[:, None] + ar) * side  # [m, patch] row offsets
    within = within[:, :, None] + ((ox[sel] + patch)[:, None] + ar)[:, None, :]
    flat = (img_of[sel][:, None, None] * side * side + within).reshape(-1)
    a = alpha[sel].reshape(-1, 1)
    col = np.repeat(flat_colour[sel], patch * patch, axis=0)
    canvas[flat] = canvas[flat] * (1 - a) + col * a
    if return_alpha:
      rows = np.arange(len(sel))[:, None]
      fa = np.zeros((len(sel), side * side), np.float32)
      fa[rows, within.reshape(len(sel), -1)] = alpha[sel].reshape(len(sel), -1)
      full_alpha[img_of[sel], j] = fa
  canvas = canvas.reshape(n, side, side, 3)
  if return_alpha:
    full_alpha = full_alpha.reshape(n, k, side, side)[..., patch:-patch, patch:-patch]
  image = canvas[:, patch:-patch, patch:-patch]
  if noise:
    # Triangular noise (the sum of two uniforms) with standard deviation
    # `noise`: about three times cheaper to draw than numpy's Gaussian.
    tri = rng.random(image.shape, np.float32) + rng.random(image.shape, np.float32)
    image = image + np.float32(noise * np.sqrt(6)) * (tri - 1)
  out = _pad_targets(
    boxes.reshape(n, k, 4),
    np.where(present, labels, 0).astype(np.int32),
    present,
    max_boxes=max_boxes,
  )
  out['image'] = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
  out['image_size'] = np.full((n, 2), s, np.int32)
  out['scale'] = np.ones((n, 2), np.float32)
  if return_alpha:
    out['alpha'] = full_alpha
  return out


def check_max_boxes(max_boxes: int, *, needed: int, where: str) -> None:
  """Raises a one-line `UserError` naming `--config.max_boxes` when `needed`
  boxes (the most that `where` holds) do not fit in `max_boxes` slots: boxes
  are never dropped to fit the padding."""
  if max_boxes < needed:
    raise UserError(
      f'--config.max_boxes={max_boxes} is under the {needed} ground-truth boxes of '
      f'{where}; give --config.max_boxes={needed} or more (boxes are never dropped)'
    )


def _pad_targets(boxes, labels, present, *, max_boxes):
  n, k = labels.shape
  pad = max_boxes - k
  if pad < 0:  # callers check first; never cut boxes silently
    raise ValueError(f'{k} box slots do not fit in max_boxes={max_boxes}')
  return {
    'boxes': np.pad(boxes * present[..., None], ((0, 0), (0, pad), (0, 0))).astype(
      np.float32
    ),
    'labels': np.pad(labels, ((0, 0), (0, pad))).astype(np.int32),
    'box_mask': np.pad(present, ((0, 0), (0, pad))),
    'difficult': np.zeros((n, max_boxes), bool),
  }


def generate(
  kind: str,
  *,
  num_examples: int,
  split: str,
  image_size: int = 128,
  max_boxes: int = OFFLINE_DEFAULT_MAX_BOXES,
  data_seed: int = 0,
) -> dict[str, np.ndarray]:
  """The first `num_examples` images of a generated set, as whole arrays.

  Args:
    kind: 'shapes' or 'digits_canvas'.
    split: 'train' or 'test': different random streams (and, for digits,
      different handwritten digits).
    max_boxes: padding, at least `MAX_OBJECTS` (6, the most objects an image
      holds; fewer raise `UserError`).
    data_seed: the seed of the data itself (not of the shuffling).

  Returns:
    The batch arrays described in the module docstring, `image` as uint8
    `[n, s, s, 3]`; example i depends only on `(kind, split, data_seed, i)`.
  """
  choose('generated dataset', kind, ('shapes', 'digits_canvas'))
  choose('split', split, ('train', 'test'))
  if image_size < 32:
    raise UserError(f'image_size must be at least 32 for {kind}, got {image_size}')
  if max_boxes < 1:
    raise UserError(f'max_boxes must be positive, got {max_boxes}')
  if num_examples < 1:
    raise UserError(f'{kind} needs at least one example per split, got {num_examples}')
  parts = []
  for c in range(-(-num_examples // _CHUNK)):
    rng = np.random.default_rng([data_seed, split == 'test', c, kind == 'shapes'])
    parts.append(
      _generate(
        kind, rng, _CHUNK, image_size=image_size, max_boxes=max_boxes, split=split
      )
    )
  return {k: np.concatenate([p[k] for p in parts])[:num_examples] for k in parts[0]}


def _as_float(batches: Iterator[dict]) -> Iterator[dict]:
  for b in batches:
    yield {**b, 'image': b['image'].astype(np.float32) / 255.0}


def flip_horizontal(image, boxes, valid, *, width=None):
  """Mirrors one image left to right with its boxes; pure and jit-able.

  Args:
    image: `[h, w, c]` (a canvas; its content may fill only the top left).
    boxes: `[k, 4]` `(x1, y1, x2, y2)` pixels; `valid` bool `[k]` marks the
      entries to move (padded ones stay zero).
    width: the content's width inside the canvas (may be traced); default the
      canvas width. The content is mirrored in place: `x -> width - x`.

  Returns:
    `(image, boxes)` of the same shapes and dtypes.
  """
  canvas = image.shape[1]
  width = canvas if width is None else width
  # Mirroring the whole canvas puts the content at the right; rolling it back
  # left by the padding moves the (zero) padding back to the right.
  image = jnp.roll(jnp.flip(image, axis=1), -(canvas - width), axis=1)
  x1, y1, x2, y2 = jnp.moveaxis(jnp.asarray(boxes), -1, 0)
  flipped = jnp.stack([width - x2, y1, width - x1, y2], axis=-1).astype(boxes.dtype)
  return image, jnp.where(valid[:, None], flipped, 0)


def rescale(image, boxes, valid, *, scale, offset, min_visible=0.5):
  """Scales one image and its boxes by `scale` about the origin, then shifts
  them by `offset`, on a canvas of the same shape; pure and jit-able.

  A continuous point `(x, y)` goes to `(scale * x + dx, scale * y + dy)`
  (`jax.image.scale_and_translate`, linear, antialiased when shrinking;
  pixels from outside the image are 0). Boxes are clipped to the canvas; one
  keeps its place only if at least `min_visible` of its scaled area remains.

  Args:
    image: `[h, w, c]`.
    boxes: `[k, 4]` pixels; `valid` bool `[k]` the entries that are boxes.
    scale: a scalar (may be traced).
    offset: `(dy, dx)` pixels (may be traced).
    min_visible: the share of a box's area that must stay in the canvas.

  Returns:
    `(image, boxes, visible)`: boxes that are not visible (or not valid) are
    zeros and `visible` bool `[k]` is False for them.
  """
  h, w = image.shape[:2]
  scale = jnp.asarray(scale, jnp.float32)
  dy, dx = (jnp.asarray(o, jnp.float32) for o in offset)
  out = jax.image.scale_and_translate(
    image.astype(jnp.float32), image.shape, (0, 1), jnp.stack([scale, scale]),
    jnp.stack([dy, dx]), method='linear', antialias=True,
  )  # fmt: skip
  moved = boxes * scale + jnp.stack([dx, dy, dx, dy])
  clipped = jnp.clip(moved, 0, jnp.array([w, h, w, h], jnp.float32))

  def area(b):
    return jnp.maximum(b[:, 2] - b[:, 0], 0) * jnp.maximum(b[:, 3] - b[:, 1], 0)

  visible = valid & (area(clipped) > 0) & (area(clipped) >= min_visible * area(moved))
  return out.astype(image.dtype), jnp.where(visible[:, None], clipped, 0), visible


def augment(rng, batch, *, flip=True, min_scale=0.8, max_scale=1.25, min_visible=0.5):
  """Random horizontal flips and scale jitter of a batch, boxes moved with
  the images; pure and jit-able (static shapes), for use inside a train step.

  Each example is flipped with probability 1/2 (if `flip`), then scaled by
  a factor drawn log-uniformly from `[min_scale, max_scale]` and shifted by an
  offset drawn uniformly from those that keep the canvas covered (when
  enlarging) or the content inside it (when shrinking).

  Args:
    rng: a JAX key.
    batch: `image` `[b, h, w, c]`, `boxes` `[b, k, 4]`, `labels`, `box_mask`,
      `difficult` `[b, k]`, `image_size` `[b, 2]`; other keys pass through.

  Returns:
    The batch with `image`, `boxes`, `labels`, `box_mask`, `difficult`,
    `image_size` and `scale` (if present) replaced; boxes pushed out of the
    canvas become padding. The shape of the batch is unchanged.
  """

  def one(key, image, boxes, labels, box_mask, difficult, size):
    k_flip, k_scale, k_off = jax.random.split(key, 3)
    valid = box_mask | difficult
    size = size.astype(jnp.float32)
    if flip:
      flipped = flip_horizontal(image, boxes, valid, width=size[1].astype(jnp.int32))
      do = jax.random.bernoulli(k_flip)
      image = jnp.where(do, flipped[0], image)
      boxes = jnp.where(do, flipped[1], boxes)
    scale = jnp.exp(
      jax.random.uniform(
        k_scale, (), minval=jnp.log(min_scale), maxval=jnp.log(max_scale)
      )
    )
    canvas = jnp.array(image.shape[:2], jnp.float32)
    room = canvas - scale * size  # < 0: crop a window; > 0: place the content
    offset = jax.random.uniform(k_off, (2,)) * room
    image, boxes, visible = rescale(
      image, boxes, valid, scale=scale, offset=offset, min_visible=min_visible
    )
    new_size = jnp.clip(jnp.round(scale * size + offset), 1, canvas).astype(jnp.int32)
    return (
      image, boxes, jnp.where(visible, labels, 0), box_mask & visible,
      difficult & visible, new_size, scale,
    )  # fmt: skip

  keys = jax.random.split(rng, batch['image'].shape[0])
  out = jax.vmap(one)(
    keys, batch['image'], batch['boxes'], batch['labels'], batch['box_mask'],
    batch['difficult'], batch['image_size'],
  )  # fmt: skip
  names = ('image', 'boxes', 'labels', 'box_mask', 'difficult', 'image_size')
  result = {**batch, **dict(zip(names, out[:-1], strict=True))}
  if 'scale' in batch:
    result['scale'] = batch['scale'] * out[-1][:, None]
  return result


def ground_truths(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
  """Per-image ground truth for `nkjax.metrics.detection` from batch arrays.

  Keeps the entries where `box_mask | difficult` (training targets, and the
  difficult or crowd objects that the evaluation must see in order to ignore
  them). Returns one `{'boxes': [g, 4], 'labels': [g], 'difficult': [g]}` per
  image.
  """
  keep = arrays['box_mask'] | arrays['difficult']
  return [
    {
      'boxes': arrays['boxes'][i][keep[i]],
      'labels': arrays['labels'][i][keep[i]],
      'difficult': arrays['difficult'][i][keep[i]],
    }
    for i in range(len(keep))
  ]


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
  """
  choose('dataset', name, DATASETS)
  shard = {'process_index': process_index, 'process_count': process_count}
  source = DATASETS[name]
  if source is not None:
    return _load_tfds(
      name, source, batch_size=batch_size, eval_batch_size=eval_batch_size,
      seed=seed, min_size=image_size, max_size=max_size,
      max_boxes=max_boxes or source.max_boxes, data_dir=data_dir, shard=shard,
    )  # fmt: skip
  max_boxes = max_boxes or OFFLINE_DEFAULT_MAX_BOXES
  gen = functools.partial(
    generate, name, image_size=image_size, max_boxes=max_boxes, data_seed=data_seed
  )
  train = gen(num_examples=num_train, split='train')
  test = gen(num_examples=num_test, split='test')
  return Dataset(
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
    # `_load_tfds` checked every image against max_boxes: this guards the
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


def _load_tfds(
  name, source, *, batch_size, eval_batch_size, seed, min_size, max_size, max_boxes,
  data_dir, shard,
) -> Dataset:  # fmt: skip
  """VOC or COCO through TFDS; see `load`."""
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
