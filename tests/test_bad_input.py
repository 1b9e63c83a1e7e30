"""The bad-input catalogue: what a person plausibly mistypes, as command lines.

Each row is a command line: the experiment, its arguments, the one error line
expected (a regex, after `error: `), and how the workdir is set up first. Every
row must exit 1 with exactly one short `error:` line, no traceback, and leave
the workdir byte for byte as it was (or not create it), so that the corrected
command runs there. Most rows stop in the launcher before JAX starts; none
trains.

Rows run in this process through `launch.call` (the launcher's own parsing,
checks, run record and `main`, without an interpreter's start); the rows in
`SUBPROCESS`, one per experiment, run as a person runs them: `python
experiments/<name>.py ...` in a fresh interpreter, on the launcher's device
count (one per core).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from nkjax import launch, validate
from nkjax.train import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANGE = r'is out of range: it must be'


def _mlp_config():
  sys.path.insert(0, os.path.join(ROOT, 'experiments'))
  import mlp

  return mlp.get_config('smoke').to_dict()


def _a_run(workdir, experiment='mlp'):
  # A run of the smoke preset that was started (its record) and saved once.
  run_record.start(
    str(workdir),
    _mlp_config(),
    run_record.Resume(finished=False, changes={}, record=None),
    at_step=None,
    experiment=experiment,
  )
  (workdir / 'metrics.jsonl').write_text('{"step": 5, "train/loss": 2.3}\n')


def _png(path, side):
  from PIL import Image

  path.parent.mkdir(parents=True, exist_ok=True)
  x = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
  Image.fromarray(x).save(path)


def _tiny_test_dir(side):
  return lambda w: _png(w.parent / 'set' / 'tiny.png', side)


def _weights(w, kind):
  w.parent.mkdir(parents=True, exist_ok=True)
  junk = np.random.default_rng(0).bytes(4096)
  if kind == 'npz_keys':
    np.savez(w.parent / 'vgg19.npz', weights=np.zeros((3, 3)))
  else:
    (w.parent / f'vgg19.{kind}').write_bytes(junk)


def _a_detection_run_and_a_photo(w):
  # What upscale finds when pointed at a detection run: its summary.
  run = w.parent / 'detection'
  run.mkdir(parents=True)
  (run / 'summary.json').write_text(
    json.dumps(
      {'config': {'method': 'faster_rcnn', 'anchor_scales': [32], 'num_classes': 3}}
    )
  )
  _png(w.parent / 'photo.png', 32)


def _an_earlier_reading(config):
  # The record that a detect, svd, upscale or compare left before they were
  # declared not resumable: the same task on another image.
  def setup(w):
    run_record.start(str(w), config, run_record.Resume(False, {}, None), at_step=None)
    _png(w.parent / 'b.png', 32)

  return setup


def _config_of(experiment, preset, **fields):
  sys.path.insert(0, os.path.join(ROOT, 'experiments'))
  module = __import__(experiment)
  return {**module.get_config(preset).to_dict(), **fields}


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
  'old_run': lambda w: _a_run(w, experiment=None),
  'test_dir_10': _tiny_test_dir(10),
  'test_dir_3': _tiny_test_dir(3),
  'h5': lambda w: _weights(w, 'h5'),
  'npz': lambda w: _weights(w, 'npz'),
  'npz_keys': lambda w: _weights(w, 'npz_keys'),
  'detection_run': _a_detection_run_and_a_photo,
  'detect_record': lambda w: _an_earlier_reading(
    _config_of('detection', 'detect', image='a.png')
  )(w),
  'svd_record': lambda w: _an_earlier_reading(
    _config_of('detection', 'svd', svd_ranks=(4,))
  )(w),
  'upscale_record': lambda w: _an_earlier_reading(
    _config_of('sr', 'upscale', image='a.png')
  )(w),
  'compare_record': lambda w: _an_earlier_reading(
    _config_of('sr', 'compare', scales=(4,))
  )(w),
  'empty_checkpoint': _a_run_with_an_empty_checkpoint,
  'file': _a_file,
  'under_file': _under_a_file,
}

SMOKE = '--config=experiments/mlp.py:smoke'
S = '--config=experiments/sr.py:smoke'
D = '--config=experiments/detection.py:smoke'
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
  'gan unknown preset': ('gan', ['--config=experiments/gan.py:vae'], r"unknown preset 'vae'; valid choices: cgan, compare, dcgan, default, gan, smoke, wgan, wgan_gp", 'none'),
  'rnn num_layers=0': ('rnn', ['--config.num_layers=0'], rf'--config.num_layers=0 {RANGE} an integer >= 1', 'none'),
  'rnn unknown cell': ('rnn', ['--config.cell=transformer'], r"unknown cell 'transformer'; valid choices: gru, lstm, rnn", 'none'),
  'rnn sample without a run': ('rnn', ['--config=experiments/rnn.py:sample'], r'no finished char_lm run in (\S+) \(--workdir=\1\): train one first', 'none'),
  'bp xor learning_rate=0': ('bp', ['--config=experiments/bp.py:xor', '--config.learning_rate=0.0'], rf'--config.learning_rate=0.0 {RANGE}', 'none'),
  'bp gd_variants batch_sizes=(0,)': ('bp', ['--config=experiments/bp.py:gd_variants', '--config.batch_sizes=(0,)'], rf'--config.batch_sizes=\(0,\) {RANGE}', 'none'),
  # super-resolution (issue 30's numbers in brackets)
  'sr batch_size=0 [1]': ('sr', [S, '--config.batch_size=0'], rf'--config.batch_size=0 {RANGE} an integer >= 1', 'none'),
  'sr batch_size=-2 [1]': ('sr', [S, '--config.batch_size=-2'], rf'--config.batch_size=-2 {RANGE} an integer >= 1', 'none'),
  'sr learning_rate=nan [2]': ('sr', [S, '--config.learning_rate=nan'], r'--config.learning_rate=nan is not a finite number', 'none'),
  'sr adversarial_weight=inf [2]': ('sr', ['--config=experiments/sr.py:srgan', '--config.adversarial_weight=inf'], r'--config.adversarial_weight=inf is not a finite number', 'none'),
  'sr learning_rate=1e30': ('sr', [S, '--config.learning_rate=1e30'], rf'--config.learning_rate=1e\+30 {RANGE} a number in \(0, 10\]', 'none'),
  'sr srresnet features=0 [3]': ('sr', ['--config=experiments/sr.py:srresnet', '--config.features=0'], rf'--config.features=0 {RANGE} an integer >= 1', 'none'),
  'sr test image 10x10 [4]': ('sr', [S, '--config.test_dir={t}/set'], r'test image tiny is 10x10: scoring at x2 needs at least 16x16 .*change --config.test_dir=', 'test_dir_10'),
  'sr test image 3x3 [4]': ('sr', [S, '--config.test_dir={t}/set'], r'test image tiny is 3x3: scoring at x2 needs at least 16x16', 'test_dir_3'),
  'sr vgg19_weights random .h5 [5]': ('sr', ['--config=experiments/sr.py:srgan', '--config.vgg19_weights={t}/vgg19.h5'], r'--config.vgg19_weights=\S+/vgg19.h5: not an HDF5 file', 'h5'),
  'sr vgg19_weights random .npz [5]': ('sr', ['--config=experiments/sr.py:srgan', '--config.vgg19_weights={t}/vgg19.npz'], r'--config.vgg19_weights=\S+/vgg19.npz: not an .npz of parameters', 'npz'),
  'sr vgg19_weights .npz of other keys [5]': ('sr', ['--config=experiments/sr.py:srgan', '--config.vgg19_weights={t}/vgg19.npz'], r'--config.vgg19_weights=\S+/vgg19.npz: Conv_0/bias is missing', 'npz_keys'),
  'sr upscale a detection run [6]': ('sr', ['--config=experiments/sr.py:upscale', '--config.checkpoint={t}/detection', '--config.image={t}/photo.png'], r'--config.checkpoint=\S+/detection is a detection run \(experiments/detection.py\), not an sr run', 'detection_run'),
  'sr max_test_images=0 [9]': ('sr', [S, '--config.max_test_images=0'], rf'--config.max_test_images=0 {RANGE} an integer >= 1, or None', 'none'),
  'sr log_every=-1 [9]': ('sr', [S, '--config.log_every=-1'], rf'--config.log_every=-1 {RANGE} an integer >= 0', 'none'),
  'sr patch=0 [10]': ('sr', [S, '--config.patch=0'], rf'--config.patch=0 {RANGE} an integer >= 1', 'none'),
  'sr srcnn valid patch=8 [10]': ('sr', [S, '--config.padding=VALID', '--config.patch=8'], r'--config.patch=8 is smaller than the receptive field of SRCNN with valid convolutions \(13 pixels\)', 'none'),
  'sr upscale after another upscale [17]': ('sr', ['--config=experiments/sr.py:upscale', '--config.checkpoint={t}/none', '--config.image={t}/b.png'], r'--config.checkpoint=\S+/none: no such folder; give the workdir of a finished sr run', 'upscale_record'),
  'sr compare after another compare [17]': ('sr', ['--config=experiments/sr.py:compare', '--config.runs={t}/none'], r'no finished SR runs under \S+/none/sr-<model>', 'compare_record'),
  'sr in the workdir of an mlp run [18]': ('sr', [S], r'\S+ holds a run of experiments/mlp.py, not of experiments/sr.py; use another --workdir', 'run'),
  'sr in the workdir of an older record [18]': ('sr', [S], r'\S+ holds a run of another experiment \(fields \S+, \S+, \S+, \S+ and \d+ more are in one config only\); use another --workdir', 'old_run'),
  'sr task=tran': ('sr', [S, '--config.task=tran'], r"unknown task 'tran'; valid choices: compare, train, upscale", 'none'),
  'sr scales=(8,)': ('sr', [S, '--config.scales=(8,)'], rf'--config.scales=\(8,\) {RANGE} a tuple of scales among 2, 3, 4', 'none'),
  'sr srresnet scales=(2,4)': ('sr', ['--config=experiments/sr.py:srresnet', '--config.scales=(2,4)'], r"--config.model='srresnet' with --config.scales=\(2, 4\): srresnet and srgan train at one scale", 'none'),
  'sr srresnet scales=(3,)': ('sr', ['--config=experiments/sr.py:srresnet', '--config.scales=(3,)'], r"--config.model='srresnet' with --config.scales=\(3,\): .*upscale by powers of two", 'none'),
  'sr srgan pixel_loss=l1': ('sr', ['--config=experiments/sr.py:srgan', "--config.pixel_loss=l1"], r"--config.model='srgan' with --config.pixel_loss='l1': .*leave pixel_loss='mse'", 'none'),
  'sr padding=same': ('sr', [S, '--config.padding=same'], r"unknown padding 'same' \(--config.padding\); valid choices: SAME, VALID", 'none'),
  # detection
  'detection learning_rate=nan [2]': ('detection', [D, '--config.learning_rate=nan'], r'--config.learning_rate=nan is not a finite number', 'none'),
  'detection fast_rcnn max_proposals=0 [7]': ('detection', [D, '--config.method=fast_rcnn', '--config.max_proposals=0'], rf'--config.max_proposals=0 {RANGE} an integer >= 1', 'none'),
  'detection max_boxes=0 [9]': ('detection', [D, '--config.max_boxes=0'], rf'--config.max_boxes=0 {RANGE} an integer >= 1, or None', 'none'),
  'detection nms_threshold=1.5 [9]': ('detection', [D, '--config.nms_threshold=1.5'], rf'--config.nms_threshold=1.5 {RANGE} a number in \[0, 1\]', 'none'),
  'detection nms_threshold=-0.5 [9]': ('detection', [D, '--config.nms_threshold=-0.5'], rf'--config.nms_threshold=-0.5 {RANGE}', 'none'),
  'detection rpn_nms_threshold=0 [9]': ('detection', [D, '--config.rpn_nms_threshold=0.0'], rf'--config.rpn_nms_threshold=0.0 {RANGE} a number in \(0, 1\]', 'none'),
  'detection rpn_nms_threshold=2 [9]': ('detection', [D, '--config.rpn_nms_threshold=2.0'], rf'--config.rpn_nms_threshold=2.0 {RANGE}', 'none'),
  'detection score_threshold=1.5 [9]': ('detection', [D, '--config.score_threshold=1.5'], rf'--config.score_threshold=1.5 {RANGE} a number in \[0, 1\)', 'none'),
  'detection checkpoint_every=-1 [9]': ('detection', [D, '--config.checkpoint_every=-1'], rf'--config.checkpoint_every=-1 {RANGE} an integer >= 0', 'none'),
  'detection fg_fraction=1.5 [11]': ('detection', [D, '--config.fg_fraction=1.5'], rf'--config.fg_fraction=1.5 {RANGE} a number in \(0, 1\]', 'none'),
  'detection detect after another detect [17]': ('detection', ['--config=experiments/detection.py:detect', '--config.image={t}/b.png', '--config.run={t}/none'], r'--config.run=\S+/none: no such folder; give the workdir of a finished detection run', 'detect_record'),
  'detection svd after another svd [17]': ('detection', ['--config=experiments/detection.py:svd', '--config.run={t}/none'], r'--config.run=\S+/none: no such folder; give the workdir of a finished detection run', 'svd_record'),
  'detection in the workdir of an mlp run [18]': ('detection', [D], r'\S+ holds a run of experiments/mlp.py, not of experiments/detection.py', 'run'),
  'detection task=tran': ('detection', [D, '--config.task=tran'], r"unknown task 'tran'; valid choices: detect, svd, train", 'none'),
  'detection method=yolo': ('detection', [D, '--config.method=yolo'], r"unknown method 'yolo' \(--config.method\); valid choices: fast_rcnn, faster_rcnn, rcnn", 'none'),
  'detection batch_size=3': ('detection', [D, '--config.batch_size=3'], r'batch size 3 is not divisible by the \d+ devices', 'none'),
  'detection alternating fast_rcnn': ('detection', [D, '--config.training=alternating', '--config.method=fast_rcnn'], r"--config.training='alternating' with --config.method='fast_rcnn' with --config.compare=False: --config.training=alternating applies to faster_rcnn only", 'none'),
  'detection stage_steps=(2,2,0)': ('detection', [D, '--config.training=alternating', '--config.stage_steps=(2,2,0)'], rf'--config.stage_steps=\(2, 2, 0\) {RANGE} \(\) \(num_steps split in four\) or 4 step counts', 'none'),
}  # fmt: skip
# One row per experiment in a fresh interpreter, as a person runs it.
SUBPROCESS = {
  'mlp batch_size=3 on 2 devices',
  'cnn unknown model',
  'gan k=0',
  'rnn num_layers=0',
  'bp xor learning_rate=0',
  'sr batch_size=0 [1]',
  'detection task=tran',
}


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


def _run(row, experiment, args):
  """`(exit code, stderr)` of the command line, in this process or not."""
  if row not in SUBPROCESS:
    return launch.call(f'experiments/{experiment}.py', args)
  # The launcher picks the device count; the test's fake devices stay out.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run(
    [sys.executable, f'experiments/{experiment}.py', *args],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  return proc.returncode, proc.stderr


@pytest.mark.parametrize(
  'row',
  [pytest.param(r, marks=pytest.mark.slow) if r in SUBPROCESS else r for r in ROWS],
)
def test_bad_input_is_one_line_exit_1_and_the_workdir_is_untouched(
  tmp_path, monkeypatch, row
):
  experiment, args, message, setup = ROWS[row]
  if 'not divisible by the 2' in message and launch.cpu_cores() != 2:
    pytest.skip('needs exactly 2 cores (the launcher fakes one device per core)')
  if '/sys/kernel' in ' '.join(args) and not os.path.isdir('/sys/kernel'):
    pytest.skip('needs /sys/kernel')
  monkeypatch.chdir(ROOT)
  workdir = tmp_path / 'run'
  SETUPS[setup](workdir)
  args = [a.format(w=workdir, t=tmp_path) for a in args]
  if not any(a.startswith('--workdir') for a in args):
    args.append(f'--workdir={workdir}')
  before = _tree(str(tmp_path))
  code, stderr = _run(row, experiment, args)
  errors = [ln for ln in stderr.splitlines() if ln.startswith('error: ')]
  assert code == 1, stderr[-3000:]
  assert len(errors) == 1, stderr[-3000:]
  assert re.match(message, errors[0][len('error: ') :]), errors[0]
  assert len(errors[0]) < 500, errors[0]  # a line to read, not a listing
  assert 'Traceback' not in stderr, stderr[-3000:]
  assert _tree(str(tmp_path)) == before
  assert not os.path.exists('/sys/kernel/nkjax-run')


def test_the_catalogue_covers_every_experiment_with_one_subprocess_row_each():
  experiments = {'mlp', 'cnn', 'gan', 'rnn', 'bp', 'sr', 'detection'}
  assert {row[0] for row in ROWS.values()} == experiments
  assert sorted(ROWS[r][0] for r in SUBPROCESS) == sorted(experiments)
  for name in ('sr', 'detection'):
    assert sum(row[0] == name for row in ROWS.values()) >= 15


def test_the_divergence_advice_names_a_field_of_every_training_experiment():
  # The guard's message tells a person to pass --config.divergence_factor=0.
  import inspect

  from nkjax.train import guard

  assert '--config.divergence_factor=0' in inspect.getsource(guard)
  sys.path.insert(0, os.path.join(ROOT, 'experiments'))
  for name, preset in [('mlp', 'smoke'), ('cnn', 'smoke'), ('gan', 'smoke'),
                       ('rnn', 'smoke'), ('sr', 'smoke'), ('detection', 'smoke')]:  # fmt: skip
    config = __import__(name).get_config(preset)
    assert config.divergence_factor > 0, name
    assert validate.TRAINING['divergence_factor'](0.0)  # 0 turns the check off
