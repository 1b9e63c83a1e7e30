import math

import numpy as np
import pytest

from nkjax.train import guard, run_record


def _guard(workdir, factor=10.0, key='loss'):
  return guard.LossGuard(
    workdir=str(workdir),
    loss_key=key,
    divergence_factor=factor,
    last_checkpoint=lambda: 'step 4 in /ckpt',
  )


def _m(**values):
  # (sum, count) pairs over 4 examples, as the jitted steps return them.
  return {k: (np.float32(4 * v), np.float32(4)) for k, v in values.items()}


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_every_loss_term_is_checked_and_named(tmp_path, bad):
  g = _guard(tmp_path, key='d_loss')
  g.check(1, _m(d_loss=1.0, g_loss=1.0, accuracy=bad))  # not a loss: not checked
  with pytest.raises(FloatingPointError) as e:
    g.check(2, _m(d_loss=1.0, g_loss=bad, accuracy=0.5))
  assert str(e.value).startswith('non-finite g_loss (')
  assert 'at step 2; last good checkpoint: step 4 in /ckpt, left intact' in str(e.value)
  assert not isinstance(e.value, guard.DivergedError)


def test_divergence_past_the_factor_of_the_first_value_stops(tmp_path):
  g = _guard(tmp_path, factor=10.0)
  g.check(1, _m(loss=2.0))
  g.check(2, _m(loss=19.9))  # 9.95x: allowed
  with pytest.raises(guard.DivergedError) as e:
    g.check(3, _m(loss=20.5))
  message = str(e.value)
  assert message.startswith(
    'loss diverged: 20.5 at step 3 is over 10x its first value 2 (step 1)'
  )
  assert 'last good checkpoint: step 4 in /ckpt' in message
  assert '--config.divergence_factor=0' in message and '\n' not in message


def test_the_first_value_is_kept_for_a_resumed_run(tmp_path):
  _guard(tmp_path).check(1, _m(loss=2.0))
  assert run_record.read(str(tmp_path))['loss_reference'] == {
    'key': 'loss',
    'step': 1,
    'value': 2.0,
  }
  resumed = _guard(tmp_path)
  with pytest.raises(guard.DivergedError, match='first value 2 .step 1.'):
    resumed.check(11, _m(loss=25.0))


@pytest.mark.parametrize('factor', [0.0, None])
def test_a_factor_of_zero_turns_divergence_off_but_not_the_finite_check(
  tmp_path, factor
):
  g = _guard(tmp_path, factor=factor)
  g.check(1, _m(loss=1.0))
  g.check(2, _m(loss=1e30))
  with pytest.raises(FloatingPointError, match='non-finite loss'):
    g.check(3, _m(loss=math.inf))


def test_a_non_positive_first_value_turns_divergence_off(tmp_path):
  g = _guard(tmp_path, factor=10.0)
  g.check(1, _m(loss=-0.01))  # a Wasserstein critic's loss
  g.check(2, _m(loss=5.0))
