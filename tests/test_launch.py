"""The launcher as a person meets it: a subprocess per command line."""

import os
import subprocess
import sys

import pytest

from nkjax import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The launcher fakes one device per core; a batch of cores + 1 never splits
# (except on one core, where the row is skipped).
CORES = launch.cpu_cores()


def _run(*args, workdir, env=None):
  if env is None:
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
    'default (without :PRESET), smoke',
    '--config.learning_rate=0.001',
  ):
    assert text in proc.stdout


def _files(root):
  return {
    str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()
  }


@pytest.mark.slow
def test_a_run_ends_with_a_summary_stays_finished_and_records_an_accepted_change(
  tmp_path,
):
  import json

  smoke = ['--config=experiments/mlp.py:smoke', '--config.num_steps=5']
  first = _run(*smoke, workdir=tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  closing = first.stdout.strip().splitlines()
  assert closing[0].startswith(f'results in {tmp_path}: checkpoints/, curves.png,')
  assert any(line.startswith('eval: accuracy ') for line in closing), closing
  assert 'run.json' in closing[0].split(': ', 1)[1].split(', '), closing[0]
  assert closing[-1].startswith('5 steps in ')

  before = _files(tmp_path)
  again = _run(*smoke, workdir=tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.strip() == (
    f'The run in {tmp_path} is already finished; its results are unchanged in '
    f'{tmp_path}/summary.json (raise --config.num_steps to train further).'
  )
  assert _files(tmp_path) == before  # summary, metrics, TensorBoard: untouched

  changed = [*smoke, '--config.num_steps=10', '--config.learning_rate=0.002']
  refused = _run(*changed, workdir=tmp_path)
  assert refused.returncode == 1 and 'learning_rate 0.001 -> 0.002' in refused.stderr
  assert _files(tmp_path) == before
  accepted = _run(*changed, '--allow_config_change', workdir=tmp_path)
  assert accepted.returncode == 0, accepted.stderr[-3000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['resumed_from_step'] == 5 and summary['steps'] == 10
  assert summary['config']['learning_rate'] == 0.002
  assert summary['config_changes'] == [
    {'at_step': 5, 'fields': {'learning_rate': [0.001, 0.002], 'num_steps': [5, 10]}}
  ]


def test_the_cache_folder_by_platform_and_the_users_choice_wins(monkeypatch, tmp_path):
  monkeypatch.delenv(launch.CACHE_DIR_VARIABLE, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  for platform in ('tpu', 'gpu', 'cuda'):
    assert launch.compilation_cache_dir(platform) == str(tmp_path / 'nkjax' / 'xla')
  assert launch.compilation_cache_dir('cpu') == ''  # the user's choice there
  monkeypatch.setenv(launch.CACHE_DIR_VARIABLE, str(tmp_path / 'mine'))
  assert launch.compilation_cache_dir('cpu') == str(tmp_path / 'mine')
  monkeypatch.setenv(launch.CACHE_DIR_VARIABLE, '')
  assert launch.compilation_cache_dir('tpu') == ''


@pytest.mark.slow
def test_a_second_run_loads_what_the_first_compiled_from_the_named_cache(tmp_path):
  import json

  # As a user who names a cache: no other setting of JAX's, no test flags.
  env = {
    k: v for k, v in os.environ.items()
    if k != 'XLA_FLAGS' and not k.startswith('JAX_PERSISTENT_CACHE')
  }  # fmt: skip
  cache = tmp_path / 'cache'
  env[launch.CACHE_DIR_VARIABLE] = str(cache)
  smoke = ['--config=experiments/mlp.py:smoke', '--config.num_steps=5']
  entries, summaries = [], []
  for name in ('first', 'second'):
    proc = _run(*smoke, workdir=tmp_path / name, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries.append(sorted(p.name for p in cache.iterdir()))
    summaries.append(json.loads((tmp_path / name / 'summary.json').read_text()))
  # Every program kept (the launcher's threshold of 0 s), the second run's loaded.
  assert len(entries[0]) > 5, entries[0]
  assert entries[1] == entries[0]  # the second compiled nothing new
  assert summaries[1]['eval'] == summaries[0]['eval']


def test_help_puts_the_experiment_first(tmp_path):
  for flag in ('--help', '--helpfull'):
    proc = _run(flag, '--config=experiments/mlp.py:smoke', workdir=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0
    assert out.startswith('An MLP classifier')
    presets = (
      'presets (--config=experiments/mlp.py:PRESET): default (without :PRESET), smoke'
    )
    assert out.index(presets) < (
      out.index('--config.hidden=(32,)')  # the named preset's fields
    )
    assert '--allow_config_change' in out
  assert 'logtostderr' not in _run('--help', workdir=tmp_path).stdout
  full = proc.stdout
  assert full.index('--config.hidden') < full.index('logtostderr')


@pytest.mark.parametrize('works', [True, False])
def test_cpu_setup_adds_onednn_only_where_it_works_and_the_users_flags_win(
  monkeypatch, works
):
  monkeypatch.setattr(launch, 'onednn_convolutions_work', lambda: works)
  monkeypatch.setattr(launch, 'cpu_cores', lambda: 3)
  monkeypatch.setenv('XLA_FLAGS', '')
  launch.use_all_cpu_cores()
  flags = os.environ['XLA_FLAGS'].split()
  assert '--xla_force_host_platform_device_count=3' in flags
  assert (f'{launch.ONEDNN}=true' in flags) == works
  # A user's own settings are kept as given, and not repeated.
  mine = f'--xla_force_host_platform_device_count=1 {launch.ONEDNN}=false'
  monkeypatch.setenv('XLA_FLAGS', mine)
  launch.use_all_cpu_cores()
  assert os.environ['XLA_FLAGS'] == mine


def test_onednn_is_known_to_work_from_jaxlib_0_12_on():
  from importlib import metadata

  version = tuple(int(p) for p in metadata.version('jaxlib').split('.')[:2])
  assert launch.onednn_convolutions_work() == (version >= (0, 12))


def test_call_runs_a_command_line_in_process_and_leaves_the_global_flags_alone(
  tmp_path, monkeypatch
):
  from absl import flags

  monkeypatch.chdir(ROOT)
  xla = os.environ.get('XLA_FLAGS')
  workdir = tmp_path / 'run'
  code, stderr = launch.call(
    'experiments/mlp.py', ['--config.batch_size=0', f'--workdir={workdir}']
  )
  assert code == 1
  assert stderr.startswith('error: --config.batch_size=0 is out of range')
  assert not workdir.exists()
  # Twice: each call has flags of its own; absl's global ones stay undefined.
  assert launch.call('experiments/mlp.py', ['--config.batch_size=0'])[0] == 1
  assert 'config' not in flags.FLAGS and os.environ.get('XLA_FLAGS') == xla
  assert launch.call('experiments/mlp.py', ['--help']) == (0, '')


def test_closing_lines_name_every_file_and_the_headline_gain_or_map(tmp_path):
  import json

  (tmp_path / 'run.json').write_text('{}')
  sr_summary = {
    'mean_scores': {
      'x2': {
        'bicubic': {'psnr_y': 28.25},
        'edsr': {'psnr_y': 28.91, 'gain_psnr_y': 28.91 - 28.25},
      }
    }
  }
  (tmp_path / 'summary.json').write_text(json.dumps(sr_summary))
  lines = launch.closing_lines(str(tmp_path))
  assert lines[0] == f'results in {tmp_path}: run.json, summary.json'
  assert 'edsr x2: test PSNR-Y 28.91 dB, +0.66 dB over bicubic' in lines
  (tmp_path / 'summary.json').write_text(json.dumps({'map_07': 0.5, 'map_all': 0.25}))
  assert 'mAP@0.5 0.500 (VOC07 11-point), 0.250 (all-point)' in (
    launch.closing_lines(str(tmp_path))
  )
