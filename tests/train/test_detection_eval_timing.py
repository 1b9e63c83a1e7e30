"""`detection_eval.time_head` times through the one public timer
(`nkjax.bench.measure.time_runs`) and returns the median of its runs."""

import jax
import jax.numpy as jnp
import optax
import pytest

from nkjax.bench import measure
from nkjax.models import detection as det
from nkjax.train import detection_eval
from nkjax.train import state as state_lib


def test_time_head_is_the_median_of_the_public_timer_s_runs(monkeypatch):
  model = det.FasterRCNN(num_classes=3, backbone='small_tiny', fc=(8, 8), rpn_width=4)
  state = state_lib.create(
    model=model, tx=optax.sgd(0.1), rng=jax.random.key(0),
    inputs=(jnp.zeros((1, 64, 64, 3)),),
  )  # fmt: skip
  calls, real = [], measure.time_runs
  ticks = iter([0.0, 3.0, 3.0, 4.0, 4.0, 6.0])

  def time_runs(*runs, **kwargs):
    calls.append(kwargs)

    def counted(n):
      runs[0](n)  # the head really runs (and blocks) on each call

    return real(counted, **kwargs, clock=lambda: next(ticks))

  monkeypatch.setattr(measure, 'time_runs', time_runs)
  # Three repeats of 3, 1 and 2 seconds by the fake clock: the median is 2.
  assert detection_eval.time_head(state, num_rois=4, repeats=3) == pytest.approx(2.0)
  assert calls == [{'steps': 1, 'repeats': 3, 'warmup': 1}]
