"""RoI pooling and RoIAlign (placeholder written by det-model until det-ops lands)."""

import jax.numpy as jnp


def _bilinear(features, y, x):
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


def roi_align(features, rois, *, output_size=(7, 7), spatial_scale, sampling_ratio=2, aligned=True):
  oh, ow = output_size
  off = 0.5 if aligned else 0.0
  r = rois * spatial_scale - off
  x1, y1, x2, y2 = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
  rw, rh = x2 - x1, y2 - y1
  if not aligned:
    rw, rh = jnp.maximum(rw, 1.0), jnp.maximum(rh, 1.0)
  s = sampling_ratio
  fy = (jnp.arange(oh)[:, None] + (jnp.arange(s)[None, :] + 0.5) / s).reshape(-1) / oh
  fx = (jnp.arange(ow)[:, None] + (jnp.arange(s)[None, :] + 0.5) / s).reshape(-1) / ow
  ys = y1[:, None] + fy[None] * rh[:, None]
  xs = x1[:, None] + fx[None] * rw[:, None]
  v = _bilinear(features, ys[:, :, None], xs[:, None, :])
  r_ = v.shape[0]
  v = v.reshape(r_, oh, s, ow, s, -1)
  return v.mean(axis=(2, 4))


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
