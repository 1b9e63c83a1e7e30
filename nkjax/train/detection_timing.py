"""Test-time measurements of the detectors, as Fast R-CNN's paper reports them.

`nkjax.bench` measures training throughput: many steps over one fixed batch.
A detector's test time is another quantity: seconds per test image, one image
at a time, each image different, with the host's region proposals (selective
search for R-CNN and Fast R-CNN) timed beside the network; and, for the
truncated-SVD study (paper section 3.1), the box head alone. Both time on one
device after a warm-up call (which compiles) and report medians.
"""

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def time_per_image(
  predict_step: Callable[[Any, dict], Any],
  state: Any,
  images: np.ndarray,
  *,
  add_proposals: Callable[[dict], dict] | None = None,
) -> dict:
  """Median seconds per test image of the network and of the proposals.

  Args:
    predict_step: `predict_step(state, batch) -> outputs`, jitted here.
    state: what `predict_step` takes (a train state); copied to one device.
    images: `[n, h, w, 3]` test images, n >= 1; image 0 is run once more
      first, untimed, to compile.
    add_proposals: `add_proposals(batch) -> batch` with `proposals` and
      `proposal_mask` added, computed afresh for each image (not from a
      cache); None for Faster R-CNN, whose proposals are part of the network.

  Returns:
    `{'net': s, 'proposals': s, 'total': s}`: medians over the images of the
    network's time, the proposals' time (without `add_proposals`: the
    microseconds of making the batch) and their sum.
  """
  device = jax.devices()[0]
  params = jax.device_put(jax.device_get(state), device)
  step = jax.jit(predict_step)
  net, props = [], []
  for i in range(len(images) + 1):
    image = images[i % len(images)][None]
    t = time.perf_counter()
    batch = {'image': image}
    if add_proposals is not None:
      batch = add_proposals(batch)
    t_props = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(step(params, jax.device_put(batch, device)))
    if i:  # the first image compiles
      net.append(time.perf_counter() - t)
      props.append(t_props)
  net_s, props_s = float(np.median(net)), float(np.median(props))
  return {'net': net_s, 'proposals': props_s, 'total': net_s + props_s}


def _box_head(model, pooled):
  return model.box_head(pooled)


def time_head(state: Any, *, num_rois: int, repeats: int = 50) -> float:
  """Median seconds of a detector's box head alone (fc layers, class and box
  outputs) on `num_rois` RoIs of one image, on one device, after a warm-up.

  Args:
    state: a train state of a Fast or Faster R-CNN (`apply_fn` of a model with
      a `box_head`, `params['box_head']` with `fc_0`, whole or factored by
      truncated SVD).
    num_rois: RoIs per image (the RoI-pooled features are ones `[1, R, 1, 1, d]`).
    repeats: timed calls; the median is returned.
  """
  head = state.params['box_head']
  fc_0 = head['fc_0'] if 'kernel' in head['fc_0'] else head['fc_0']['sv']
  d_in = fc_0['kernel'].shape[0]
  device = jax.devices()[0]
  params = jax.device_put(jax.device_get(state.params), device)
  pooled = jax.device_put(jnp.ones((1, num_rois, 1, 1, d_in), jnp.float32), device)

  @jax.jit
  def run(params, pooled):
    return state.apply_fn({'params': params}, pooled, method=_box_head)

  jax.block_until_ready(run(params, pooled))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(run(params, pooled))
    times.append(time.perf_counter() - t)
  return float(np.median(times))
