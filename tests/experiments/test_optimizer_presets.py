"""Every SR and detection preset's optimizer builds on its model's parameters,
and the voc07 preset's rate is the paper's."""

import os
import sys

import jax
import jax.numpy as jnp
import pytest

from nkjax.errors import UserError
from nkjax.train import alternating, optim

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import detection  # noqa: E402
import sr  # noqa: E402


def test_voc07_rate_is_the_papers_per_image_schedule_scaled_to_its_batch():
  # py-faster-rcnn (VOC07, 1 image per step): "0.001 for 50k mini-batch
  # iterations, and 0.0001 for the next 20k" (counting updates from 0). The
  # preset takes 2 images per step: by the linear scaling rule 0.002 for 25k
  # steps, then 0.0002 for 10k (fixed for its batch; the preset says so).
  config = detection.get_config('voc07')
  assert config.batch_size == 2
  assert config.num_steps == (50_000 + 20_000) // 2
  assert config.decay_steps == (25_000,)
  lr = optim.build_schedule(num_steps=config.num_steps, **optim.fields(config))
  expected = {0: 2e-3, 24_999: 2e-3, 25_000: 2e-4, 34_999: 2e-4}
  assert {s: float(lr(s)) for s in expected} == pytest.approx(expected, rel=1e-6)
  # Per image seen, the rate and the images at each rate are the paper's.
  paper = [(1e-3, 50_000), (1e-4, 20_000)]  # (rate, steps) at 1 image per step
  b = config.batch_size
  ours = [(float(lr(0)), 25_000), (float(lr(25_000)), config.num_steps - 25_000)]
  for (rate, steps), (paper_rate, paper_steps) in zip(ours, paper, strict=True):
    assert (rate / b, steps * b) == pytest.approx((paper_rate, paper_steps), rel=1e-6)
  # The decay is a factor of 10, as the paper's.
  assert config.decay_factor == pytest.approx(0.1)


def _param_shapes(model, inputs):
  return jax.eval_shape(
    lambda: model.init(
      {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, *inputs, train=False
    )
  )['params']


@pytest.mark.parametrize('preset', sr.PRESETS)
def test_every_sr_preset_optimizer_initialises_on_its_model(preset):
  c = sr.get_config(preset)
  params = _param_shapes(sr.build_model(c), (sr._example_input(c),))
  # Raises if a per-layer multiplier names no layer of the model.
  jax.eval_shape(sr._optimizer(c).init, params)
  if preset == 'srcnn_paper':  # Dong et al.: 1e-4 for layers 1, 2; 1e-5 for 3
    # SGD with momentum from rest: the first update of a unit gradient is -lr.
    grads = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
    zeros = jax.tree.map(jnp.zeros_like, grads)
    tx = sr._optimizer(c)
    updates, _ = tx.update(grads, tx.init(zeros), zeros)
    rates = {k: float(-v['kernel'].reshape(-1)[0]) for k, v in updates.items()}
    assert rates == pytest.approx({'conv1': 1e-4, 'conv2': 1e-4, 'conv3': 1e-5})


@pytest.mark.parametrize('preset', detection.PRESETS)
def test_every_detection_preset_optimizer_initialises_on_its_model(preset):
  c = detection.get_config(preset)
  methods = c.methods if c.compare else (c.method,)
  for method in methods:
    params = _param_shapes(
      detection.build_model(c, method, 3),
      detection._init_inputs(c, method, (128, 128, 3)),
    )
    jax.eval_shape(detection.make_tx(c).init, params)
    if method != 'faster_rcnn':
      continue
    # The alternating stages freeze parts that exist (a typo would not).
    for *_, frozen, _ in alternating.STAGES:
      if c.decay_steps:  # voc07: 25k is past a stage of 35k / 4
        with pytest.raises(
          UserError, match='decay_steps=.*the 8750 steps of one stage'
        ):
          detection.make_tx(c, c.num_steps // 4, frozen)
      else:
        jax.eval_shape(detection.make_tx(c, 100, frozen).init, params)
