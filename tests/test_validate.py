import math
import os

import pytest

from nkjax import validate
from nkjax.errors import UserError


@pytest.mark.parametrize(
  'rule, good, bad',
  [
    (validate.count, [1, 2, 10**9], [0, -1, -4, 1.0, True, None, '3']),
    (validate.cadence, [0, 1, 500], [-1, 0.5]),
    (validate.fraction, [0.0, 0.2, 0.999], [1.0, 1.5, -0.1, math.nan]),
    (validate.unit, [0.5, 1e-9], [0.0, 1.0]),
    (validate.learning_rate, [1e-5, 0.1, 10.0], [0.0, -1e-3, 10.5, 1e30, math.inf]),
    (validate.non_negative, [0.0, 1e-4, 1e6], [-1e-9, math.nan, math.inf]),
    (validate.positive_number(), [1e-9, 2.0], [0.0, -1.0, math.inf]),
    (validate.optional(validate.count), [None, 3], [0]),
    (validate.each(validate.count), [(1,), (512, 512), [3]], [(), (0,), (5, -1)]),
    (validate.each(validate.count, min_len=0), [()], [(0,)]),
  ],
)
def test_rules_accept_their_range_and_nothing_else(rule, good, bad):
  assert all(rule(v) for v in good), [v for v in good if not rule(v)]
  assert not any(rule(v) for v in bad), [v for v in bad if rule(v)]


def test_interval_names_its_open_and_closed_ends():
  assert validate.interval(0, 1, high_open=True).valid == 'a number in [0, 1)'
  assert validate.learning_rate.valid == 'a number in (0, 10]'


def test_config_names_the_field_the_value_and_the_range():
  checks = {'batch_size': validate.count, 'absent': validate.count}
  validate.config({'batch_size': 8}, checks)  # a field a preset lacks is skipped
  with pytest.raises(
    UserError,
    match=r'^--config.batch_size=-4 is out of range: it must be an integer >= 1$',
  ):
    validate.config({'batch_size': -4}, checks)
  with pytest.raises(UserError, match=r'--config.hidden=\(0,\) is out of range'):
    validate.config({'hidden': [0]}, {'hidden': validate.each(validate.count)})


def test_workdir_accepts_new_and_existing_folders_and_leaves_no_probe(tmp_path):
  validate.workdir(str(tmp_path / 'a' / 'b'))
  assert not (tmp_path / 'a').exists()
  (tmp_path / 'run').mkdir()
  validate.workdir(str(tmp_path / 'run'))
  assert os.listdir(tmp_path) == ['run'] and not os.listdir(tmp_path / 'run')


def test_workdir_that_is_a_file_or_under_a_file_is_refused(tmp_path):
  f = tmp_path / 'file'
  f.write_text('x')
  with pytest.raises(UserError, match='is a file, not a folder'):
    validate.workdir(str(f))
  with pytest.raises(UserError, match=f'cannot be created: {f} is a file'):
    validate.workdir(str(f / 'run'))
  with pytest.raises(UserError, match='empty'):
    validate.workdir('')


def test_unwritable_workdir_is_refused(tmp_path):
  if os.geteuid() == 0:
    target = '/sys/kernel/nkjax-run'  # sysfs refuses new files, even to root
    if not os.path.isdir('/sys/kernel'):
      pytest.skip('needs /sys/kernel when run as root')
  else:
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    target = str(ro / 'run')
  with pytest.raises(
    UserError, match='cannot be created .*name a folder you can write to'
  ):
    validate.workdir(target)


def test_missing_config_file_is_named(tmp_path):
  validate.config_file(__file__)
  with pytest.raises(UserError, match='--config=nope.py: no such config file'):
    validate.config_file('nope.py')


def test_a_name_rule_lists_the_choices_as_choose_does():
  rule = validate.one_of('SAME', 'VALID')
  assert rule('SAME') and not rule('same')
  with pytest.raises(
    UserError,
    match=r"^unknown padding 'same' \(--config.padding\); valid choices: SAME, VALID$",
  ):
    validate.config({'padding': 'same'}, {'padding': rule})


def test_a_rule_over_several_fields_names_each_value():
  together = {
    ('model', 'scales'): validate.Rule(
      lambda v: v[0] != 'a' or len(v[1]) == 1, 'one scale for a'
    )
  }
  validate.config({'model': 'a', 'scales': (4,)}, together)
  validate.config({'model': 'b', 'scales': (2, 4)}, together)
  validate.config({'model': 'a'}, together)  # a preset without one of them: skipped
  with pytest.raises(
    UserError,
    match=r"^--config.model='a' with --config.scales=\(2, 4\): one scale for a$",
  ):
    validate.config({'model': 'a', 'scales': [2, 4]}, together)


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf, (1.0, math.nan)])
def test_no_field_takes_a_number_that_is_not_finite(value):
  # Even a field without a rule: nothing means nan, and JSON cannot record it.
  with pytest.raises(UserError, match=r'^--config.weight=.+ is not a finite number'):
    validate.config({'weight': value}, {})
