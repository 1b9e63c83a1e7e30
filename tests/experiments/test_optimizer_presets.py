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


def test_voc07_rate_is_1e_3_for_50k_updates_then_1e_4_for_20k():
  # Girshick 2015 / Ren et al. 2015 (VOC07): "0.001 for 50k mini-batch
  # iterations, and 0.0001 for the next 20k" (counting updates from 0).
  config = detection.get_config('voc07')
  assert config.num_steps == 50_000 + 20_000
  lr = optim.build_schedule(num_steps=config.num_steps, **optim.fields(config))
  expected = {0: 1e-3, 49_999: 1e-3, 50_000: 1e-4, 69_999: 1e-4}
  assert {s: float(lr(s)) for s in expected} == pytest.approx(expected, rel=1e-6)


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
      if c.decay_steps:  # voc07: 50k is past a stage of 70k / 4
        with pytest.raises(
          UserError, match='decay_steps=.*the 17500 steps of one stage'
        ):
          detection.make_tx(c, c.num_steps // 4, frozen)
      else:
        jax.eval_shape(detection.make_tx(c, 100, frozen).init, params)
