"""`--help` explains: every config field of every preset has its one line,
and the help lists the presets, then each field once with its line, then the
workdir the launcher really uses."""

import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from nkjax import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.py')))
NAMES = [os.path.splitext(os.path.basename(f))[0] for f in FILES]
_LOADED = {}


def _module(name):
  if name not in _LOADED:
    path = os.path.join(ROOT, 'experiments', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'help_test_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _LOADED[name] = module
  return _LOADED[name]


def _leaves(tree, prefix=''):
  # Dotted names of a config's leaves, from its plain-dict form.
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      yield from _leaves(value, f'{prefix}{key}.')
    elif not isinstance(value, dict):
      yield f'{prefix}{key}'


def test_the_seven_experiments_are_all_here():
  assert NAMES == ['bp', 'cnn', 'detection', 'gan', 'mlp', 'rnn', 'sr']


@pytest.mark.parametrize('name', NAMES)
def test_every_field_of_every_preset_has_a_one_line_description(name):
  module = _module(name)
  assert module.PRESETS[0] == 'default'
  missing = []
  for preset in module.PRESETS:
    for field in _leaves(module.get_config(preset).to_dict()):
      text = launch.description(module, field)
      if not text:
        missing.append(f'{preset}: {field}')
      else:
        assert '\n' not in text and len(text) <= 100, (field, text)
  assert not missing, f'{name}.DESCRIPTIONS lacks {missing}'


def test_a_nested_field_takes_its_parents_line():
  sr = _module('sr')
  config = sr.get_config('srcnn_paper').to_dict()
  assert config['lr_multipliers'] == {'conv3': 0.1}
  assert (
    launch.description(sr, 'lr_multipliers.conv3') == sr.DESCRIPTIONS['lr_multipliers']
  )
  assert launch.description(sr, 'no_such_field') is None


def _sections(text):
  # The help's parts after the docstring, by their headings.
  presets = re.search(r'^presets \(--config=\S+:PRESET\): (.*)$', text, re.M)
  fields = text.split('(override any with --config.FIELD=VALUE):\n', 1)[1]
  fields, launcher = fields.split('\n\nlauncher flags:\n', 1)
  return presets, fields, launcher


# (experiment, preset or None): the default workdir is the experiment's name, a
# special one (sr's default is the srresnet run; rnn's sample reads char_lm's),
# or the name and the preset.
WORKDIRS = [
  *[(n, None) for n in NAMES],
  ('sr', 'srcnn'),
  ('rnn', 'sample'),
  ('cnn', 'smoke'),
]


@pytest.mark.parametrize('name, preset', WORKDIRS)
def test_help_lists_presets_then_described_fields_once_then_the_real_workdir(
  name, preset, tmp_path, monkeypatch
):
  module = _module(name)
  path = os.path.join(ROOT, 'experiments', f'{name}.py')
  config_arg = f'{path}:{preset}' if preset else None
  text = launch._experiment_help(module, f'experiments/{name}.py', config_arg)
  presets, fields, launcher = _sections(text)

  listed = presets.group(1).split(', ')
  assert [p.split(' ')[0] for p in listed] == list(module.PRESETS)
  assert listed[0] == 'default (without :PRESET)'
  assert all(' ' not in p for p in listed[1:])  # only the default is marked
  assert text.index('presets (') < text.index('config fields of preset')

  config = module.get_config(preset or 'default')
  want = sorted(_leaves(config.to_dict()))
  lines = fields.splitlines()
  shown = [
    ln.split('=')[0].strip()[len('--config.') :]
    for ln in lines
    if ln.startswith('  --')
  ]
  assert sorted(shown) == want  # each field once
  body = '\n'.join(lines)
  for field in want:
    assert launch.description(module, field) in body

  # The launcher, run without --workdir, uses the folder the help names: a
  # file put there stops it with that path.
  named = re.search(r'\(default: (\S+)\)', launcher).group(1)
  monkeypatch.chdir(tmp_path)
  os.makedirs(os.path.dirname(named), exist_ok=True)
  open(named, 'w').close()
  args = [f'--config={config_arg}'] if preset else []
  code, stderr = launch.call(path, args)
  assert code == 1
  assert f'--workdir={named} is a file' in stderr, stderr


def test_helpfull_lists_each_field_once():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run(
    [sys.executable, 'experiments/sr.py', '--helpfull'],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = proc.stdout
  assert out.count('--config.learning_rate=') == 1
  assert out.count('--config.srcnn_f2=1 ') == 1
  assert 'logtostderr' in out  # absl's flags follow
  assert out.count('default: runs/sr-srresnet') == 2  # --workdir: ours and absl's
