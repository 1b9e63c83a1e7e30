"""The two generated detection sets, drawn with NumPy offline.

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

`generate` gives the arrays of `nkjax.data.detection`'s schema (with `image`
as uint8); `nkjax.data.detection.load` batches them.
"""

import functools

import numpy as np

from nkjax.data import digits
from nkjax.data.box_targets import check_max_boxes, pad_targets
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


OFFLINE_DEFAULT_MAX_BOXES = 8


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
  out = pad_targets(
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
