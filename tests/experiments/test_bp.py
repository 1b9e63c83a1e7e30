"""Each claim of the backpropagation chapter, as a test that would fail if it were false."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import bp  # noqa: E402

from nkjax import backprop  # noqa: E402

from ..figures import assert_readable, record  # noqa: E402


def _run(tmp_path, preset, **overrides):
  config = bp.get_config(preset)
  config.update(overrides)
  with pytest.MonkeyPatch.context() as patch:
    figures = record(patch)
    summary = bp.main(config, str(tmp_path))
  # Every picture a preset draws names the run and labels its axes.
  for d in figures.values():
    assert_readable(d, run=tmp_path.name)
  assert json.loads((tmp_path / 'summary.json').read_text())['task'] == preset
  return summary


def test_exercise_network_wires_the_weights_as_the_course_does():
  w = np.arange(1.0, 13.0)
  w1, w2 = backprop.exercise_network(w)
  x, h = np.array([0.3, -1.2, 2.0]), np.array([0.7, 0.1])
  in_h = x @ w1
  assert in_h[0] == pytest.approx(
    w[0] * x[0] + w[2] * x[1] + w[4] * x[2]
  )  # w1 x1 + w3 x2 + w5 x3
  assert in_h[1] == pytest.approx(
    w[1] * x[0] + w[3] * x[1] + w[5] * x[2]
  )  # w2 x1 + w4 x2 + w6 x3
  in_o = h @ w2
  assert in_o[0] == pytest.approx(w[6] * h[0] + w[9] * h[1])  # w7 Out_h1 + w10 Out_h2
  assert in_o[2] == pytest.approx(w[8] * h[0] + w[11] * h[1])  # w9 Out_h1 + w12 Out_h2


@pytest.mark.parametrize('loss', ['mse', 'bce'])
def test_chain_rule_by_hand_equals_autodiff_and_finite_differences(tmp_path, loss):
  summary = _run(
    tmp_path, 'chain_rule', loss=loss, x=(0.5, -1.0, 2.0), y=(1.0, 0.0, 0.5)
  )
  grads = {k: np.array(v) for k, v in summary['gradients'].items()}
  np.testing.assert_allclose(grads['hand'], grads['finite_diff'], rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(
    grads['jax_grad'], grads['finite_diff'], rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    grads['layer_by_layer'], grads['finite_diff'], rtol=1e-4, atol=1e-6
  )
  # The printed factors multiply to the gradients of w6 and w12.
  for name, index in (('w6', 5), ('w12', 11)):
    product = np.prod([v for _, v in summary['factors'][name]])
    assert product == pytest.approx(grads['finite_diff'][index], rel=1e-6)
  assert (tmp_path / 'summary.json').exists()


def test_chain_rule_rejects_a_wrong_number_of_weights(tmp_path):
  with pytest.raises(ValueError, match='needs 12 weights'):
    _run(tmp_path, 'chain_rule', w=(0.1,) * 11)


def test_perceptron_never_separates_xor_but_a_2_2_1_network_fits_it(tmp_path):
  summary = _run(tmp_path, 'xor')
  p = summary['perceptron']
  assert p['best_accuracy'] == 0.75 == p['best_linear_accuracy']
  assert p['min_mistakes_per_epoch'] >= 1  # a mistake in every one of the 100 epochs
  assert (
    p['distinct_weights_visited'] < 100
  )  # 400 updates over a few dozen states: it cycles
  assert summary['mlp']['accuracy'] == 1.0 and summary['mlp']['final_loss'] < 0.05
  assert (tmp_path / 'xor_boundaries.png').stat().st_size > 1000


def test_symmetric_initialisations_keep_hidden_units_identical(tmp_path):
  # As a user runs it: the launcher gives bp its deterministic matrix products
  # (in this process, the test set-up's XLA flags are fixed already).
  root = os.path.join(os.path.dirname(__file__), '..', '..')
  subprocess.run(
    [sys.executable, 'experiments/bp.py', '--config=experiments/bp.py:init_symmetry',
     '--config.num_steps=300', f'--workdir={tmp_path}'],
    cwd=root, check=True, capture_output=True,
    env={**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu'},
  )  # fmt: skip
  r = json.loads((tmp_path / 'summary.json').read_text())['results']
  assert r['zeros']['max_hidden_unit_difference'] == 0.0
  assert r['constant']['max_hidden_unit_difference'] == 0.0
  assert r['normal']['max_hidden_unit_difference'] > 0.1
  assert max(r['zeros']['train_accuracy'], r['constant']['train_accuracy']) < 0.7
  assert r['normal']['train_accuracy'] > 0.9


def test_sigmoid_slope_is_at_most_a_quarter_and_deep_sigmoid_gradients_vanish(tmp_path):
  summary = _run(tmp_path, 'sigmoid_saturation')
  assert summary['sigmoid_grad_max'] == pytest.approx(0.25)
  assert summary['sigmoid_grad_at']['10'] == pytest.approx(
    np.exp(-10) / (1 + np.exp(-10)) ** 2, rel=1e-4
  )
  ratio = summary['first_over_last']
  assert ratio['sigmoid'] < 1e-4 and ratio['tanh'] > 0.1 and ratio['relu'] > 0.1
  assert (tmp_path / 'sigmoid_saturation.png').exists()


def test_full_batch_descends_monotonically_and_stochastic_does_not(tmp_path):
  summary = _run(tmp_path, 'gd_variants', num_updates=100)
  full, sgd = (
    summary['full batch']['train_loss'],
    summary['stochastic (1)']['train_loss'],
  )
  assert np.all(np.diff(full) < 0)
  assert np.any(np.diff(sgd) > 0)
  assert (tmp_path / 'gd_variants.png').exists()


def test_a_hidden_layer_beats_none_on_the_digits(tmp_path):
  results = _run(tmp_path, 'mlp', depths=(0, 1), widths=(64,), num_steps=600)['results']
  acc = {r['hidden_layers']: r['test_accuracy'] for r in results}
  assert acc[1] > acc[0]
  assert (tmp_path / 'mlp_width_depth.png').exists()
