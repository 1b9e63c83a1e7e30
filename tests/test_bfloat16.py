"""Every chapter with a `dtype` field trains in bfloat16 as it does in float32.

Each experiment's smoke preset runs its own `main` up to `loop.fit` (patched
to run a few train steps itself, without checkpoints or evaluation), once
with `dtype='float32'` and once with `dtype='bfloat16'`, from the same
initial parameters (float32 in both) and the same batches; the losses after
those steps agree within `TOLERANCE`. bfloat16 keeps 8 bits of mantissa
(relative rounding 2^-9, 0.2%): activations rounded at every layer move a
loss by a few tenths of a percent a step, and training compounds it a little.
"""

import os
import sys

import jax
import numpy as np
import pytest

from nkjax.train import loop

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'experiments'))

STEPS = 4
# Relative difference of each loss after STEPS steps, bfloat16 against float32.
# Measured (2-core CPU, jax 0.10.2): cnn 0.3%, gan 0.1% (g_loss), sr 0.3%,
# detection 0.3% for the total loss and 3.7% for box_loss, a small term (0.19)
# over the few sampled foreground RoIs.
TOLERANCE = {'cnn': 0.02, 'gan': 0.02, 'sr': 0.02, 'detection': 0.1}


class _Done(Exception):
  def __init__(self, losses):
    super().__init__()
    self.losses = losses


def _fit(*, state, train_step, train_batches, rng, frozen=None, **kwargs):
  """`loop.fit` cut to STEPS jitted steps; raises `_Done` with the last
  step's losses (each `sum / count`)."""
  extra = () if frozen is None else (frozen,)
  step = jax.jit(train_step)
  batches = train_batches(0)
  for _ in range(STEPS):
    state, metrics = step(state, next(batches), rng, *extra)
  losses = {
    k: float(s) / float(c)
    for k, (s, c) in jax.device_get(metrics).items()
    if 'loss' in k
  }
  raise _Done(losses)


def _no_features(images):
  return np.zeros((len(images), 2), np.float32), np.zeros(len(images), np.int32)


def _losses(name, dtype, tmp_path, monkeypatch):
  module = __import__(name)
  config = module.get_config('smoke')
  config.dtype = dtype
  monkeypatch.setattr(loop, 'fit', _fit)
  if name == 'gan':
    # The Frechet distance's feature classifier: not what is compared here.
    monkeypatch.setattr(module, 'feature_classifier', lambda *a, **k: _no_features)
  with pytest.raises(_Done) as done:
    module.main(config, str(tmp_path / dtype))
  return done.value.losses


@pytest.mark.parametrize('name', sorted(TOLERANCE))
def test_bfloat16_losses_match_float32(name, tmp_path, monkeypatch):
  f32 = _losses(name, 'float32', tmp_path, monkeypatch)
  bf16 = _losses(name, 'bfloat16', tmp_path, monkeypatch)
  assert f32 and set(f32) == set(bf16)
  # The dtype reached the model: bfloat16 rounding moves some loss.
  assert any(bf16[k] != v for k, v in f32.items())
  for k, v in f32.items():
    assert np.isfinite(bf16[k]), k
    rel = abs(bf16[k] - v) / max(abs(v), 1e-6)
    print(f'{name} {k}: float32 {v:.5f} bfloat16 {bf16[k]:.5f} relative {rel:.4f}')
    assert rel <= TOLERANCE[name], (k, v, bf16[k])
