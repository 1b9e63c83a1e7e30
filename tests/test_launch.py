"""The launcher as a person meets it: a subprocess per command line."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The launcher fakes one device per core; a batch of cores + 1 never splits
# (except on one core, where the row is skipped).
CORES = os.cpu_count() or 1


def _run(*args, workdir):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  return subprocess.run(
    [sys.executable, 'experiments/mlp.py', f'--workdir={workdir}', *args],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip


@pytest.mark.parametrize(
  'args, message',
  [
    (
      ['--config=experiments/mlp.py:bogus'],
      "error: unknown preset 'bogus'; valid choices: default, smoke",
    ),
    (
      ['--config.dataset=imagenet'],
      "error: unknown dataset 'imagenet'; valid choices: celeb_a, cifar10, digits, fashion_mnist, mnist",
    ),
    (
      ['--config.optimizer=adamx'],
      "error: unknown optimizer 'adamx'; valid choices: adam, adamw",
    ),
    (
      ['--config.batch_sise=8'],
      'error: unknown config field \'batch_sise\'; Did you mean "batch_size"',
    ),
    (['--config.batch_size=abc'], 'error: '),
    (
      [f'--config.batch_size={CORES + 1}'],
      f'error: batch size {CORES + 1} is not divisible by the {CORES} devices',
    ),
  ],
)
def test_bad_input_is_one_line_nonzero_exit_and_writes_nothing(tmp_path, args, message):
  workdir = tmp_path / 'run'
  if f'batch_size={CORES + 1}' in args[0] and CORES == 1:
    pytest.skip('one core: every batch size splits over one device')
  proc = _run(*args, workdir=workdir)
  assert proc.returncode == 1
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
  assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not workdir.exists()


def test_helpfull_documents_the_flags(tmp_path):
  proc = _run('--helpfull', workdir=tmp_path)
  for text in (
    '--config',
    '--workdir',
    'default, smoke',
    '--config.learning_rate=0.001',
  ):
    assert text in proc.stdout
