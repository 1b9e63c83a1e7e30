import json
import os

import pytest

from nkjax.errors import UserError
from nkjax.train import run_record

CONFIG = {
  'learning_rate': 1e-3,
  'hidden': (512, 512),
  'num_steps': 100,
  'log_every': 10,
  'optim': {'name': 'adam'},
}


def _start(workdir, config=CONFIG, **kw):
  resume = run_record.check(str(workdir), config, **kw)
  run_record.start(str(workdir), config, resume, at_step=None)
  return resume


def test_flatten_and_differences_see_through_tuples_and_nesting():
  flat = run_record.flatten(CONFIG)
  assert flat['hidden'] == [512, 512] and flat['optim.name'] == 'adam'
  new = {**CONFIG, 'hidden': [512, 512], 'optim': {'name': 'sgd'}, 'extra': 1}
  assert run_record.differences(CONFIG, new) == {
    'extra': [None, 1],
    'optim.name': ['adam', 'sgd'],
  }


def test_new_workdir_has_nothing_to_check(tmp_path):
  resume = run_record.check(str(tmp_path / 'new'), CONFIG)
  assert resume == run_record.Resume(finished=False, changes={}, record=None)


def test_the_same_config_resumes_and_a_safe_change_is_allowed(tmp_path):
  _start(tmp_path)
  assert run_record.check(str(tmp_path), CONFIG).changes == {}
  safe = {**CONFIG, 'log_every': 5, 'num_steps': 200}
  assert set(run_record.check(str(tmp_path), safe).changes) == {
    'log_every',
    'num_steps',
  }


def test_another_config_stops_naming_the_fields_and_both_ways_on(tmp_path):
  _start(tmp_path)
  other = {**CONFIG, 'learning_rate': 1e9, 'optim': {'name': 'sgd'}, 'log_every': 5}
  with pytest.raises(UserError) as e:
    run_record.check(str(tmp_path), other)
  message = str(e.value)
  assert '\n' not in message
  assert 'learning_rate 0.001 -> 1000000000.0' in message
  assert "optim.name 'adam' -> 'sgd'" in message
  assert 'log_every' not in message  # safe to change: not named
  assert '--workdir' in message and '--allow_config_change' in message


def test_an_accepted_change_is_recorded_in_the_record_and_the_summary(tmp_path):
  _start(tmp_path)
  (tmp_path / 'summary.json').write_text(json.dumps({'steps': 100}))
  run_record.finish(str(tmp_path))
  other = {**CONFIG, 'learning_rate': 1e-2, 'num_steps': 150}
  resume = _start(tmp_path, other, allow_change=True)
  assert not resume.finished  # num_steps raised
  run_record.finish(str(tmp_path))
  record = run_record.read(str(tmp_path))
  assert record['config']['learning_rate'] == 1e-2 and record['finished']
  change = {
    'at_step': None,
    'fields': {'learning_rate': [1e-3, 1e-2], 'num_steps': [100, 150]},
  }
  assert record['changes'] == [change]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['config_changes'] == [change] and summary['steps'] == 100


@pytest.mark.parametrize('num_steps, finished', [(100, True), (50, True), (101, False)])
def test_a_finished_run_stays_finished_unless_its_steps_are_raised(
  tmp_path, num_steps, finished
):
  _start(tmp_path)
  assert not run_record.check(str(tmp_path), CONFIG).finished  # not yet
  run_record.finish(str(tmp_path))
  again = {**CONFIG, 'num_steps': num_steps}
  assert run_record.check(str(tmp_path), again).finished is finished


def test_an_unreadable_record_is_one_line(tmp_path):
  (tmp_path / 'run.json').write_text('{"config": ')
  with pytest.raises(UserError, match='run.json is unreadable .*another --workdir'):
    run_record.check(str(tmp_path), CONFIG)


def test_latest_checkpoint_step_reads_step_folders(tmp_path):
  assert run_record.latest_checkpoint_step(str(tmp_path)) is None
  for name in ('5', '10', '10.orbax-checkpoint-tmp-1', 'x'):
    (tmp_path / 'checkpoints' / name).mkdir(parents=True)
  assert run_record.latest_checkpoint_step(str(tmp_path)) == 10


def test_a_record_json_cannot_hold_leaves_no_half_written_file(tmp_path):
  with pytest.raises(ValueError):
    run_record.write(str(tmp_path), {'config': {'learning_rate': float('nan')}})
  assert os.listdir(tmp_path) == []


def test_another_experiments_run_is_named_and_a_long_difference_is_cut_short(tmp_path):
  start = run_record.Resume(finished=False, changes={}, record=None)
  run_record.start(str(tmp_path), CONFIG, start, at_step=None, experiment='mlp')
  with pytest.raises(UserError, match=r'holds a run of experiments/mlp.py, not of '):
    run_record.check(str(tmp_path), CONFIG, experiment='cnn')
  many = {**CONFIG, **{f'field_{i}': i for i in range(30)}}
  run_record.start(str(tmp_path), many, start, at_step=None)
  other = {**CONFIG, **{f'field_{i}': -i for i in range(30)}}
  with pytest.raises(UserError) as e:
    run_record.check(str(tmp_path), other)
  assert 'field_1 1 -> -1' in str(e.value) and 'and 25 more' in str(e.value)
  assert len(str(e.value)) < 400
