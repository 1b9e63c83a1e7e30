"""Augmentation that moves boxes with their images: horizontal flips and scale
jitter, pure and jit-able (static shapes). `nkjax.data.detection.load(...,
augment=True)` applies `augment` to every training batch.
"""

import jax
import jax.numpy as jnp


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
