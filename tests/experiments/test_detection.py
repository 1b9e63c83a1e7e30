import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from nkjax import validate
from nkjax.errors import UserError
from nkjax.train import alternating

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import detection  # noqa: E402

from ..figures import record  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')


@pytest.fixture(scope='module')
def compare_run(tmp_path_factory):
  """The three detectors, a few steps each on the same tiny shapes data."""
  workdir = tmp_path_factory.mktemp('compare')
  config = detection.get_config('smoke')
  config.compare = True
  with pytest.MonkeyPatch.context() as mp:
    pictures = record(mp)
    summary = detection.main(config, str(workdir))
  return workdir, summary, pictures


def test_compare_smoke_trains_the_three_detectors_and_reports_every_figure(compare_run):
  workdir, summary, pictures = compare_run
  # Every picture names the run it came from (each detector's own workdir).
  assert pictures
  for d in pictures.values():
    titles = [d['suptitle'], *(a['title'] for a in d['axes'])]
    assert any(m in t for t in titles for m in ('faster_rcnn', 'fast_rcnn', 'rcnn'))
  assert set(summary['results']) == {'faster_rcnn', 'fast_rcnn', 'rcnn'}
  for method, row in summary['results'].items():
    assert row['test_seconds_per_image']['total'] > 0
    run = json.loads((workdir / method / 'summary.json').read_text())
    # The table's mAP is the mean of that run's five per-class APs.
    assert row['map_07'] == pytest.approx(np.mean(list(run['ap_07'].values()))), method
    assert len(run['ap_07']) == 5 and len(run['ap_all']) == 5  # the five shapes
    assert run['test_images'] == 8 and sum(run['num_gt'].values()) > 0
    for term in ('cls_loss', 'box_loss', 'loss'):
      assert np.isfinite(run['train'][term])
    assert (workdir / method / 'detections.png').stat().st_size > 5000
  # Four steps: Faster R-CNN finds some objects (0.017 measured; Fast R-CNN
  # 0.0002 and R-CNN 0 on their sliding windows, so no floor for them).
  assert summary['results']['faster_rcnn']['map_07'] > 0.005
  faster = json.loads((workdir / 'faster_rcnn' / 'summary.json').read_text())
  assert np.isfinite(faster['train']['rpn_cls_loss'])
  assert np.isfinite(faster['train']['rpn_box_loss'])
  assert summary['results']['fast_rcnn']['proposal_source'] == 'sliding_windows'


def test_detect_draws_a_grey_image_as_its_rgb_copy(compare_run, tmp_path):
  workdir, _, _ = compare_run
  rgb = (np.random.default_rng(0).uniform(size=(90, 120, 3)) * 255).astype(np.uint8)
  grey = Image.fromarray(rgb).convert('L')
  grey.save(tmp_path / 'img_L.png')
  grey.convert('RGB').save(tmp_path / 'img_RGB.png')
  found = {}
  for mode in ('RGB', 'L'):
    config = detection.get_config('detect')
    config.image, config.run = (
      str(tmp_path / f'img_{mode}.png'),
      str(workdir / 'faster_rcnn'),
    )
    out = detection.main(config, str(tmp_path / mode))
    # What it returns is what it records, and the picture it names is drawn.
    assert json.loads((tmp_path / mode / 'detections.json').read_text()) == out
    assert out['picture'] == str(tmp_path / mode / 'detections.png')
    assert (tmp_path / mode / 'detections.png').stat().st_size > 1000
    # Boxes are in the file's pixels (120 wide, 90 high).
    assert out['image_size'] == [90, 120]
    for d in out['detections']:
      x1, y1, x2, y2 = d['box']
      assert 0 <= x1 <= x2 <= 120 + 1e-9 and 0 <= y1 <= y2 <= 90 + 1e-9
      assert d['score'] >= 0.5
    with Image.open(tmp_path / mode / 'detections.png') as png:
      assert min(png.size) >= 90 and max(png.size) >= 640  # drawn at a readable size
    found[mode] = out['detections']
  # One channel read as three equal ones: the detector sees the same picture.
  assert found['L'] == found['RGB']


def test_detect_bad_inputs_are_one_line_errors(compare_run, tmp_path):
  workdir, _, _ = compare_run
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'not an image')
  config = detection.get_config('detect')
  config.image, config.run = str(bad), str(workdir / 'faster_rcnn')
  with pytest.raises(UserError, match='cannot read image'):
    detection.main(config, str(tmp_path / 'a'))
  # A run of another experiment: its summary names no detector.
  other = tmp_path / 'cnn_run'
  other.mkdir()
  (other / 'summary.json').write_text(json.dumps({'config': {'model': 'lenet5'}}))
  config.run = str(other)
  with pytest.raises(UserError, match='not a detection run'):
    detection.main(config, str(tmp_path / 'b'))
  # A detection run of another detector's shapes: the checkpoint does not fit.
  good = tmp_path / 'good.png'
  Image.new('RGB', (64, 64)).save(good)
  fake = tmp_path / 'fake_run'
  run = json.loads((workdir / 'faster_rcnn' / 'summary.json').read_text())
  fake.mkdir()
  run['config']['fc'] = [32, 32]
  (fake / 'summary.json').write_text(json.dumps(run))
  os.symlink(workdir / 'faster_rcnn' / 'checkpoints', fake / 'checkpoints')
  config.image, config.run = str(good), str(fake)
  with pytest.raises(UserError, match='does not fit'):
    detection.main(config, str(tmp_path / 'c'))
  for d in 'abc':
    assert not (tmp_path / d / 'detections.png').exists()


def test_svd_task_full_rank_matches_and_bad_ranks_are_one_line(compare_run, tmp_path):
  workdir, summary, _ = compare_run
  config = detection.get_config('svd')
  config.run, config.svd_ranks = str(workdir / 'faster_rcnn'), (4, 16)
  out = detection.main(config, str(tmp_path / 'svd'))
  rows = {r['rank']: r for r in out['svd']}
  assert set(rows) == {None, 4, 16}
  # Smoke head: fc 16-16 on 5x5x8 RoIs; rank 16 is full for both layers.
  assert rows[None]['fc_params'] == 200 * 16 + 16 + 16 * 16 + 16
  assert rows[4]['fc_params'] == 4 * (200 + 16) + 16 + 4 * (16 + 16) + 16
  assert abs(rows[16]['map_07'] - rows[None]['map_07']) < 1e-3
  assert abs(rows[None]['map_07'] - summary['results']['faster_rcnn']['map_07']) < 1e-6
  assert json.loads((tmp_path / 'svd' / 'summary.json').read_text())['svd']
  for bad in ((0,), (17,)):
    config.svd_ranks = bad
    with pytest.raises(UserError, match=f'svd_rank={bad[0]} is outside 1..16'):
      detection.main(config, str(tmp_path / f'bad{bad[0]}'))
    assert not (tmp_path / f'bad{bad[0]}').exists()
  # detect with a factored head, and a bad rank refused before drawing.
  image = tmp_path / 'img.png'
  Image.new('RGB', (64, 64)).save(image)
  config = detection.get_config('detect')
  config.image, config.run, config.svd_rank = (
    str(image),
    str(workdir / 'faster_rcnn'),
    4,
  )
  detection.main(config, str(tmp_path / 'd'))
  assert (tmp_path / 'd' / 'detections.png').exists()
  config.svd_rank = 99
  with pytest.raises(UserError, match='svd_rank=99'):
    detection.main(config, str(tmp_path / 'e'))
  assert not (tmp_path / 'e').exists()


def test_a_bad_svd_rank_stops_training_before_anything_is_written(tmp_path):
  config = detection.get_config('smoke')
  config.svd_rank = 0
  with pytest.raises(UserError, match='svd_rank=0 is outside'):
    detection.main(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_more_objects_than_max_boxes_is_a_clear_error_before_anything_is_written(
  tmp_path,
):
  config = detection.get_config('smoke')
  config.max_boxes = 3
  with pytest.raises(UserError, match=r'max_boxes=3 is under the 6 .*max_boxes=6'):
    detection.main(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_unknown_method_lists_the_valid_ones():
  # The launcher's check (validate.config with the experiment's CHECKS).
  config = detection.get_config('smoke')
  config.method = 'yolo'
  with pytest.raises(UserError, match='valid choices: fast_rcnn, faster_rcnn, rcnn'):
    validate.config(config, detection.CHECKS)


def _params(run_dir):
  return detection.restore_run(str(run_dir))[2].params


def _same(a, b):
  return all(
    np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


@pytest.mark.slow
def test_alternating_training_freezes_what_each_stage_must_not_change(tmp_path):
  config = detection.get_config('smoke')
  config.training, config.stage_steps = 'alternating', (2, 2, 2, 2)
  summary = detection.main(config, str(tmp_path))
  names = [s['stage'] for s in summary['stages']]
  assert names == [name for name, *_ in alternating.STAGES]
  p1, p2, p3, p4 = (_params(tmp_path / n) for n in names)
  # The initial parameters, built as the run builds them (same seed).
  k_init, _ = jax.random.split(jax.random.key(config.seed))
  model = detection.build_model(config, 'faster_rcnn', 5)
  init = detection.state_lib.create(
    model=model, tx=detection.make_tx(config), rng=k_init,
    inputs=detection._init_inputs(config, 'faster_rcnn', (128, 128, 3)),
  ).params  # fmt: skip
  # Step 1 trains backbone and RPN only.
  assert _same(p1['box_head'], init['box_head'])
  assert not _same(p1['rpn_head'], init['rpn_head'])
  assert not _same(p1['backbone_net'], init['backbone_net'])
  # Step 2: a new backbone and the head, on step 1's proposals.
  assert not _same(p2['box_head'], init['box_head'])
  assert not _same(p2['backbone_net'], p1['backbone_net'])
  # Step 3: step 2's shared layers frozen, the RPN fine-tuned from step 1's.
  assert _same(p3['backbone_net'], p2['backbone_net'])
  assert _same(p3['box_head'], p2['box_head'])
  assert not _same(p3['rpn_head'], p1['rpn_head'])
  # Step 4: shared layers and RPN frozen, the head fine-tuned.
  assert _same(p4['backbone_net'], p3['backbone_net'])
  assert _same(p4['rpn_head'], p3['rpn_head'])
  assert not _same(p4['box_head'], p3['box_head'])
  # The final model finds some objects (0.0185 measured after 2 steps a stage);
  # the run's summary has step 4's figures.
  assert summary['map_07'] > 0.005 and summary['training'] == 'alternating'
  assert json.loads((tmp_path / 'summary.json').read_text())['stages'][3]['steps'] == 2
  # A rerun resumes every stage from its own checkpoints: nothing changes.
  again = detection.main(config, str(tmp_path))
  assert again['map_07'] == summary['map_07']
  assert _same(_params(tmp_path / names[3]), p4)


def test_bad_stage_steps_are_one_line(tmp_path):
  config = detection.get_config('smoke')
  config.training, config.stage_steps = 'alternating', (2, 2, 0)
  with pytest.raises(UserError, match='stage_steps'):
    detection.main(config, str(tmp_path / 'run'))
  config.training, config.method, config.stage_steps = 'alternating', 'fast_rcnn', ()
  with pytest.raises(UserError, match='faster_rcnn only'):
    validate.config(config, detection.CHECKS)  # the launcher's check
  assert not (tmp_path / 'run').exists()


def test_smoke_through_the_launcher_then_a_rerun_finds_it_finished(
  compare_run, tmp_path
):
  # As a user runs it: flags, the run record, the closing lines. After
  # `compare_run` (same worker, see conftest): its Faster R-CNN is this run at
  # the same shapes, so the subprocess loads those programs from the run's
  # compilation cache instead of compiling them again.
  workdir = tmp_path / 'detection-smoke'
  args = [
    sys.executable, 'experiments/detection.py',
    '--config=experiments/detection.py:smoke', '--config.num_pictures=2',
    f'--workdir={workdir}',
  ]  # fmt: skip
  env = {**os.environ, 'PYTHONPATH': ROOT}
  run = subprocess.run(
    args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )
  assert run.returncode == 0, run.stderr[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['config']['num_pictures'] == 2 and summary['method'] == 'faster_rcnn'
  assert summary['steps'] == 4 and summary['test_images'] == 8
  assert set(summary['ap_07']) == {'circle', 'square', 'triangle', 'diamond', 'cross'}
  assert summary['map_07'] == pytest.approx(np.mean(list(summary['ap_07'].values())))
  # Four steps find some objects (0.017 measured): an evaluation that matched no
  # box, or boxes in the wrong coordinates, would score 0.
  assert summary['map_07'] > 0.005
  # The same run as `compare_run`'s Faster R-CNN (same config, same seed).
  assert summary['map_07'] == compare_run[1]['results']['faster_rcnn']['map_07']
  assert f'results in {workdir}: checkpoints/' in run.stdout
  assert (workdir / 'checkpoints' / '4').is_dir()
  # The same command again: the launcher reads the run record, trains nothing.
  again = subprocess.run(
    args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'The run in {workdir} is already finished' in again.stdout
  assert json.loads((workdir / 'summary.json').read_text()) == summary
