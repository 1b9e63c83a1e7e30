"""The bad-input catalogue: what a person plausibly mistypes, as command lines.

Each row is one subprocess: the experiment, its arguments, the one error line
expected (a regex, after `error: `), and how the workdir is set up first. Every
row must exit 1 with exactly one `error:` line, no traceback, and leave the
workdir byte for byte as it was (or not create it). Most rows stop in the
launcher before JAX starts; none trains.
"""

import os
import re
import subprocess
import sys

import pytest

from nkjax import launch
from nkjax.train import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANGE = r'is out of range: it must be'


def _mlp_config():
  sys.path.insert(0, os.path.join(ROOT, 'experiments'))
  import mlp

  return mlp.get_config('smoke').to_dict()


def _a_run(workdir):
  # A run of the smoke preset that was started (its record) and saved once.
  run_record.start(
    str(workdir),
    _mlp_config(),
    run_record.Resume(finished=False, changes={}, record=None),
    at_step=None,
  )
  (workdir / 'metrics.jsonl').write_text('{"step": 5, "train/loss": 2.3}\n')


def _a_run_with_an_empty_checkpoint(workdir):
  _a_run(workdir)
  (workdir / 'checkpoints' / '10').mkdir(parents=True)


def _a_file(workdir):
  workdir.write_text('not a folder\n')


def _under_a_file(workdir):
  workdir.parent.mkdir(exist_ok=True)
  (workdir.parent / 'file').write_text('x\n')


SETUPS = {
  'none': lambda w: None,
  'run': _a_run,
  'empty_checkpoint': _a_run_with_an_empty_checkpoint,
  'file': _a_file,
  'under_file': _under_a_file,
}

SMOKE = '--config=experiments/mlp.py:smoke'
# (experiment, arguments, the error line's regex, workdir set-up). `{w}` is the
# workdir, `{t}` the test's temporary folder.
ROWS = {
  # sizes and counts
  'mlp batch_size=0': ('mlp', ['--config.batch_size=0'], rf'--config.batch_size=0 {RANGE} an integer >= 1', 'none'),
  'mlp batch_size=-4': ('mlp', ['--config.batch_size=-4'], rf'--config.batch_size=-4 {RANGE} an integer >= 1', 'none'),
  'mlp batch_size=-3': ('mlp', ['--config.batch_size=-3'], rf'--config.batch_size=-3 {RANGE} an integer >= 1', 'none'),
  'mlp num_steps=0': ('mlp', ['--config.num_steps=0'], rf'--config.num_steps=0 {RANGE} an integer >= 1', 'none'),
  'mlp log_every=-1': ('mlp', ['--config.log_every=-1'], rf'--config.log_every=-1 {RANGE} an integer >= 0', 'none'),
  'mlp hidden=(0,)': ('mlp', ["--config.hidden=(0,)"], rf'--config.hidden=\(0,\) {RANGE} a tuple', 'none'),
  'mlp batch_size=abc': ('mlp', ['--config.batch_size=abc'], r'.', 'none'),
  'mlp batch_size=3 on 2 devices': ('mlp', ['--config.batch_size=3'], r'batch size 3 is not divisible by the 2 devices', 'none'),
  # rates
  'mlp learning_rate=1e30': ('mlp', ['--config.learning_rate=1e30'], rf'--config.learning_rate=1e\+30 {RANGE} a number in \(0, 10\]', 'none'),
  'mlp learning_rate=0': ('mlp', ['--config.learning_rate=0'], rf'--config.learning_rate=0.0 {RANGE}', 'none'),
  'mlp dropout_rate=1.5': ('mlp', ['--config.dropout_rate=1.5'], rf'--config.dropout_rate=1.5 {RANGE} a number in \[0, 1\)', 'none'),
  'mlp grad_clip_norm=0': ('mlp', ['--config.grad_clip_norm=0.0'], rf'--config.grad_clip_norm=0.0 {RANGE} a number > 0, or None', 'none'),
  # names
  'mlp unknown preset': ('mlp', ['--config=experiments/mlp.py:bogus'], r"unknown preset 'bogus'; valid choices: default, smoke", 'none'),
  'mlp unknown field': ('mlp', ['--config.batch_sise=8'], r"unknown config field 'batch_sise'; Did you mean \"batch_size\"", 'none'),
  'mlp unknown field after a preset': ('mlp', [SMOKE, '--config.batch_sise=8'], r"unknown config field 'batch_sise'; Did you mean \"batch_size\"", 'none'),
  'mlp unknown dataset': ('mlp', ['--config.dataset=imagenet'], r"unknown dataset 'imagenet'; valid choices: celeb_a, cifar10, digits", 'none'),
  'mlp unknown optimizer': ('mlp', ['--config.optimizer=adamx'], r"unknown optimizer 'adamx'; valid choices: ", 'none'),
  'mlp missing config file': ('mlp', ['--config=experiments/nope.py'], r'--config=experiments/nope.py: no such config file', 'none'),
  'mlp stray argument': ('mlp', ['smoke'], r'unexpected arguments: smoke', 'none'),
  # the workdir
  'mlp workdir is a file': ('mlp', [], r'--workdir=\S+ is a file, not a folder', 'file'),
  'mlp workdir under a file': ('mlp', ['--workdir={t}/file/run'], r'--workdir=\S+/file/run cannot be created: \S+/file is a file', 'under_file'),
  'mlp workdir /etc/passwd': ('mlp', ['--workdir=/etc/passwd'], r'--workdir=/etc/passwd is a file, not a folder', 'none'),
  'mlp workdir not writable': ('mlp', ['--workdir=/sys/kernel/nkjax-run'], r'--workdir=/sys/kernel/nkjax-run cannot be created \(Permission denied', 'none'),
  # resuming
  'mlp resume with another config': ('mlp', [SMOKE, '--config.learning_rate=0.01'], r'\S+ holds a run started with another config \(learning_rate 0.001 -> 0.01\); use another --workdir .* --allow_config_change', 'run'),
  'mlp resume without the preset': ('mlp', [], r'\S+ holds a run started with another config \(hidden \(32,\) -> \(512, 512\)\); use another --workdir', 'run'),
  'mlp no readable checkpoint': ('mlp', [SMOKE], r'no readable checkpoint in \S+/checkpoints \(step 10: the step folder is empty\)', 'empty_checkpoint'),
  # the other experiments
  'cnn unknown model': ('cnn', ['--config.model=lenet6'], r"unknown model 'lenet6'; valid choices: alexnet, ", 'none'),
  'cnn momentum=1': ('cnn', ['--config.momentum=1.0'], rf'--config.momentum=1.0 {RANGE} a number in \[0, 1\)', 'none'),
  'cnn gaussian sigma=0': ('cnn', ['--config=experiments/cnn.py:gaussian', '--config.sigma=0.0'], rf'--config.sigma=0.0 {RANGE} a number > 0', 'none'),
  'gan k=0': ('gan', ['--config.k=0'], rf'--config.k=0 {RANGE} an integer >= 1', 'none'),
  'gan m=-8': ('gan', ['--config.m=-8'], rf'--config.m=-8 {RANGE} an integer >= 1', 'none'),
  'gan b1=1': ('gan', ['--config.b1=1.0'], rf'--config.b1=1.0 {RANGE} a number in \[0, 1\)', 'none'),
  'gan unknown preset': ('gan', ['--config=experiments/gan.py:vae'], r"unknown preset 'vae'; valid choices: cgan, compare, dcgan, gan, smoke, wgan, wgan_gp", 'none'),
  'rnn num_layers=0': ('rnn', ['--config.num_layers=0'], rf'--config.num_layers=0 {RANGE} an integer >= 1', 'none'),
  'rnn unknown cell': ('rnn', ['--config.cell=transformer'], r"unknown cell 'transformer'; valid choices: gru, lstm, rnn", 'none'),
  'rnn sample without a run': ('rnn', ['--config=experiments/rnn.py:sample'], r'no finished char_lm run in (\S+) \(--workdir=\1\): train one first', 'none'),
  'bp xor learning_rate=0': ('bp', ['--config=experiments/bp.py:xor', '--config.learning_rate=0.0'], rf'--config.learning_rate=0.0 {RANGE}', 'none'),
  'bp gd_variants batch_sizes=(0,)': ('bp', ['--config=experiments/bp.py:gd_variants', '--config.batch_sizes=(0,)'], rf'--config.batch_sizes=\(0,\) {RANGE}', 'none'),
}  # fmt: skip


def _tree(root):
  """Every path under `root` with its bytes (None for a folder)."""
  if not os.path.exists(root):
    return None
  if os.path.isfile(root):
    return open(root, 'rb').read()
  out = {}
  for folder, dirs, files in os.walk(root):
    for d in dirs:
      out[os.path.relpath(os.path.join(folder, d), root)] = None
    for f in files:
      path = os.path.join(folder, f)
      out[os.path.relpath(path, root)] = open(path, 'rb').read()
  return out


@pytest.mark.slow
@pytest.mark.parametrize('row', list(ROWS))
def test_bad_input_is_one_line_exit_1_and_the_workdir_is_untouched(tmp_path, row):
  experiment, args, message, setup = ROWS[row]
  if 'not divisible by the 2' in message and launch.cpu_cores() != 2:
    pytest.skip('needs exactly 2 cores (the launcher fakes one device per core)')
  if '/sys/kernel' in ' '.join(args) and not os.path.isdir('/sys/kernel'):
    pytest.skip('needs /sys/kernel')
  workdir = tmp_path / 'run'
  SETUPS[setup](workdir)
  args = [a.format(w=workdir, t=tmp_path) for a in args]
  if not any(a.startswith('--workdir') for a in args):
    args.append(f'--workdir={workdir}')
  before = _tree(str(tmp_path))
  # The launcher picks the device count; the test's fake 8 devices stay out.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run(
    [sys.executable, f'experiments/{experiment}.py', *args],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')]
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert re.match(message, errors[0][len('error: ') :]), errors[0]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert _tree(str(tmp_path)) == before
  assert not os.path.exists('/sys/kernel/nkjax-run')


def test_the_catalogue_has_at_least_30_rows_over_every_experiment():
  assert len(ROWS) >= 30
  assert {row[0] for row in ROWS.values()} == {'mlp', 'cnn', 'gan', 'rnn', 'bp'}
