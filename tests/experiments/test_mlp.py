import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import mlp  # noqa: E402

from ..processes import default_run  # noqa: E402


def test_smoke_preset_runs_end_to_end_and_resumes(tmp_path):
  config = mlp.get_config('smoke')
  result = mlp.main(config, str(tmp_path))
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['steps'] == config.num_steps == int(result.state.step)
  # A share of the 360 real test digits (the padding of the last batch never counts).
  correct = summary['eval']['accuracy'] * 360
  assert correct == pytest.approx(round(correct), abs=1e-6)
  assert summary['config']['hidden'] == list(config.hidden)
  assert {
    'checkpoints',
    'curves.png',
    'metrics.jsonl',
    'summary.json',
    'tensorboard',
  } <= set(os.listdir(tmp_path))
  config.num_steps = 30
  again = mlp.main(config, str(tmp_path))
  assert again.summary['resumed_from_step'] == 20 and int(again.state.step) == 30


def test_default_run_reaches_97_percent_on_the_embedded_digits(tmp_path):
  # The default run as a user runs it, through the launcher.
  summary = default_run('mlp', tmp_path)
  assert summary['config']['hidden'] == list(mlp.get_config().hidden)
  assert summary['eval']['accuracy'] >= 0.97


def test_unknown_preset_lists_the_valid_ones():
  with pytest.raises(ValueError, match='valid choices: default, smoke'):
    mlp.get_config('tiny')
