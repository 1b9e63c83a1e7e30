"""RoI pooling and RoIAlign (placeholder written by det-model until det-ops lands)."""

import jax.numpy as jnp


def _unused_bilinear(features, y, x):
  h, w, _ = features.shape
  inside = (y > -1) & (y < h) & (x > -1) & (x < w)
  y, x = jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1)
  y0, x0 = jnp.floor(y).astype(jnp.int32), jnp.floor(x).astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  ly, lx = y - y0, x - x0
  v = (
    features[y0, x0] * ((1 - ly) * (1 - lx))[..., None]
    + features[y0, x1] * ((1 - ly) * lx)[..., None]
    + features[y1, x0] * (ly * (1 - lx))[..., None]
    + features[y1, x1] * (ly * lx)[..., None]
  )
  return v * inside[..., None]


def _interp_weights(lo, length, n_out, s, size):
  # Bilinear weights of the n_out * s sample points of each RoI along one axis:
  # [R, n_out * s, size]; RoIAlign is separable, so pooling is two matrix products.
  f = (jnp.arange(n_out)[:, None] + (jnp.arange(s)[None, :] + 0.5) / s).reshape(-1) / n_out
  pos = lo[:, None] + f[None] * length[:, None]
  inside = (pos > -1) & (pos < size)
  pos = jnp.clip(pos, 0, size - 1)
  grid = jnp.arange(size, dtype=pos.dtype)
  w = jnp.maximum(1 - jnp.abs(pos[..., None] - grid), 0)
  return w * inside[..., None]


def roi_align(features, rois, *, output_size=(7, 7), spatial_scale, sampling_ratio=2, aligned=True):
  h, w, _ = features.shape
  oh, ow = output_size
  off = 0.5 if aligned else 0.0
  r = rois * spatial_scale - off
  rw, rh = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
  if not aligned:
    rw, rh = jnp.maximum(rw, 1.0), jnp.maximum(rh, 1.0)
  s = sampling_ratio
  wy = _interp_weights(r[:, 1], rh, oh, s, h).reshape(-1, oh, s, h).mean(2)
  wx = _interp_weights(r[:, 0], rw, ow, s, w).reshape(-1, ow, s, w).mean(2)
  return jnp.einsum('rih,hwc,rjw->rijc', wy, features.astype(wy.dtype), wx)


def roi_pool(features, rois, *, output_size=(7, 7), spatial_scale):
  h, w, c = features.shape
  oh, ow = output_size
  r = jnp.round(rois * spatial_scale)
  x1, y1 = r[:, 0], r[:, 1]
  rw = jnp.maximum(r[:, 2] - x1 + 1, 1)
  rh = jnp.maximum(r[:, 3] - y1 + 1, 1)
  ys, xs = jnp.arange(h), jnp.arange(w)
  outs = []
  for i in range(oh):
    hs = jnp.clip(jnp.floor(y1 + i * rh / oh), 0, h)
    he = jnp.clip(jnp.ceil(y1 + (i + 1) * rh / oh), 0, h)
    my = (ys[None] >= hs[:, None]) & (ys[None] < he[:, None])
    row = []
    for j in range(ow):
      ws = jnp.clip(jnp.floor(x1 + j * rw / ow), 0, w)
      we = jnp.clip(jnp.ceil(x1 + (j + 1) * rw / ow), 0, w)
      mx = (xs[None] >= ws[:, None]) & (xs[None] < we[:, None])
      m = my[:, :, None] & mx[:, None, :]
      v = jnp.max(jnp.where(m[..., None], features[None], -jnp.inf), axis=(1, 2))
      row.append(jnp.where(jnp.isfinite(v), v, 0.0))
    outs.append(jnp.stack(row, 1))
  return jnp.stack(outs, 1)
