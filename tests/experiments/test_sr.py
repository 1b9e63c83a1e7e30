import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import sr  # noqa: E402

from nkjax.data import sr as sr_data  # noqa: E402
from nkjax.errors import UserError  # noqa: E402
from nkjax.metrics import image as image_metrics  # noqa: E402
from nkjax.models import sr as sr_models  # noqa: E402
from nkjax.train import gan  # noqa: E402
from nkjax.train import state as state_lib  # noqa: E402

from ..figures import assert_readable, record  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')

TINY = {
  'crop': 48,
  'max_test_images': 1,
  'num_steps': 2,
  'log_every': 1,
  'batch_size': 8,
}


def _config(preset, **overrides):
  c = sr.get_config(preset)
  c.update({**TINY, **overrides})
  return c


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """The smoke preset, run once: its test reads it and the launcher test runs
  after it (same worker, see conftest), loading the same SRCNN programs from
  the run's compilation cache instead of compiling them again."""
  tmp_path = tmp_path_factory.mktemp('smoke')
  with pytest.MonkeyPatch.context() as mp:
    pictures = record(mp)
    summary = sr.main(sr.get_config('smoke'), str(tmp_path))
  return tmp_path, summary, pictures


def test_smoke_preset_scores_bicubic_and_srcnn_and_writes_rescorable_pngs(smoke_run):
  tmp_path, summary, pictures = smoke_run
  assert pictures
  for d in pictures.values():
    assert_readable(d, run=tmp_path.name)
  assert set(summary['mean_scores']) == {'x2', 'x3'}
  for scale in ('x2', 'x3'):
    mean = summary['mean_scores'][scale]
    assert set(mean) == {'bicubic', 'srcnn'}
    assert mean['srcnn']['gain_psnr_y'] == pytest.approx(
      mean['srcnn']['psnr_y'] - mean['bicubic']['psnr_y']
    )
    # Bicubic on real photographs: well above 20 dB, SSIM in (0, 1].
    assert 20 < mean['bicubic']['psnr_y'] < 50 and 0 < mean['bicubic']['ssim_y'] <= 1
  assert summary['y_rounded'] is True and summary['test_images'] == [
    'chelsea',
    'coffee',
  ]
  # The files written are what was scored: re-scored with the library's metric
  # they give summary.json's per-image figures and its means. SRCNN predicts Y:
  # `<image>_y.png` is the scored Y, `<image>.png` (its colour view) the scored RGB.
  written = json.loads((tmp_path / 'summary.json').read_text())
  for scale, images in written['scores'].items():
    s = int(scale[1:])
    rescored = {}
    for name, methods in images.items():
      folder = tmp_path / 'sr' / scale
      rgb = np.asarray(Image.open(folder / f'{name}.png'), np.float64) / 255.0
      y = np.asarray(Image.open(folder / f'{name}_y.png'), np.float64)
      assert y.ndim == 2 and y.shape == rgb.shape[:2]
      hr = sr_data._center_crop(sr_data.photo(name)[0], 72)
      got = image_metrics.sr_scores(sr=rgb, hr=hr, border=s, sr_y=y, round_y=True)
      assert got == pytest.approx(methods['srcnn'], rel=1e-12, abs=1e-12)
      rescored[name] = got
    for key in ('psnr_y', 'ssim_y', 'psnr_rgb'):
      mean = np.mean([v[key] for v in rescored.values()])
      assert mean == pytest.approx(
        summary['mean_scores'][scale]['srcnn'][key], rel=1e-12
      )
    # The colour view's own Y is not the Y that was scored.
    y_of_rgb = image_metrics.sr_scores(sr=rgb, hr=hr, border=s, round_y=True)['psnr_y']
    assert y_of_rgb != got['psnr_y']
  for name in ('x2_chelsea.png', 'x3_coffee.png'):
    assert (tmp_path / 'figures' / name).stat().st_size > 10_000


def test_smoke_through_the_launcher_writes_the_scores_it_prints(smoke_run, tmp_path):
  # As a user runs it: flags, the run record, the closing lines.
  workdir = tmp_path / 'sr-smoke'
  run = subprocess.run(
    [sys.executable, 'experiments/sr.py', '--config=experiments/sr.py:smoke',
     '--config.scales=(2,)', '--config.max_test_images=1', f'--workdir={workdir}'],
    cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True,
    text=True, timeout=600,
  )  # fmt: skip
  assert run.returncode == 0, run.stderr[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  # The overrides reached the run: one scale, one test photograph.
  assert summary['config']['scales'] == [2] and set(summary['mean_scores']) == {'x2'}
  assert summary['test_images'] == ['chelsea'] and summary['steps'] == 4
  mean = summary['mean_scores']['x2']
  assert mean['srcnn']['gain_psnr_y'] == pytest.approx(
    mean['srcnn']['psnr_y'] - mean['bicubic']['psnr_y']
  )
  # Bicubic x2 on a real photograph: about 33 dB.
  assert 25 < mean['bicubic']['psnr_y'] < 45
  assert f'results in {workdir}: checkpoints/' in run.stdout
  assert f'{summary["steps"]} steps in ' in run.stdout
  assert (workdir / 'checkpoints' / '4').is_dir()


def test_vdsr_trains_multiscale_then_upscales_a_grey_user_image(tmp_path):
  run = tmp_path / 'runs' / 'sr-vdsr'
  c = _config('vdsr', depth=3, features=8, patch=16, scales=(2, 3))
  summary = sr.main(c, str(run))
  assert set(summary['mean_scores']) == {'x2', 'x3'}
  # The test PSNR-Y of the summary is in metrics.jsonl, for curves.png.
  rows = [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines()]
  assert rows[-1] == {
    'step': summary['steps'],
    **{f'test/psnr_y_{s}': summary['mean_scores'][s]['vdsr']['psnr_y'] for s in ('x2', 'x3')},
  }  # fmt: skip
  grey = np.random.default_rng(0).integers(0, 256, (20, 17), dtype=np.uint8)
  Image.fromarray(grey).save(tmp_path / 'mine.png')
  up = sr.get_config('upscale')
  up.update({'checkpoint': str(run), 'image': str(tmp_path / 'mine.png'), 'scale': 3})
  out = sr.main(up, str(tmp_path / 'up'))
  assert np.asarray(Image.open(out['output'])).shape == (60, 51, 3)
  # Beside the output, the image, bicubic and the model side by side.
  assert out['side_by_side'] == str(tmp_path / 'up' / 'mine_x3_vs_bicubic.png')
  with Image.open(out['side_by_side']) as side_by_side:
    assert side_by_side.format == 'PNG' and min(side_by_side.size) > 300
  # In overlapping tiles of at most 24x24 network inputs: the same picture.
  up.update({'max_pixels': 24 * 24, 'output': str(tmp_path / 'tiled.png')})
  tiled = sr.main(up, str(tmp_path / 'up'))
  np.testing.assert_array_equal(
    np.asarray(Image.open(tiled['output'])), np.asarray(Image.open(out['output']))
  )
  up.update({'max_pixels': 250_000, 'output': None})
  # A scale the run was not trained for, an unreadable file: one line, nothing written.
  up.update({'scale': 4, 'output': str(tmp_path / 'bad' / 'x.png')})
  with pytest.raises(UserError, match=r'trained for x2, x3, not x4'):
    sr.main(up, str(tmp_path / 'bad'))
  (tmp_path / 'junk.png').write_bytes(b'junk')
  up.update({'scale': 2, 'image': str(tmp_path / 'junk.png')})
  with pytest.raises(UserError, match='not an image file'):
    sr.main(up, str(tmp_path / 'bad'))
  Image.fromarray(np.zeros((3, 40), np.uint8)).save(tmp_path / 'thin.png')
  up.update({'image': str(tmp_path / 'thin.png')})
  with pytest.raises(UserError, match='receptive field'):
    sr.main(up, str(tmp_path / 'bad'))
  assert not (tmp_path / 'bad').exists()


def test_srresnet_then_srgan_warm_started_without_vgg19_then_compare(tmp_path, capsys):
  runs = tmp_path / 'runs'
  small = dict(blocks=1, features=8, patch=8, scales=(2,), d_widths=(4, 8))
  base = sr.main(_config('srresnet', **small), str(runs / 'sr-srresnet'))
  gan = sr.main(
    _config('srgan', srresnet_workdir=str(runs / 'sr-srresnet'), **small),
    str(runs / 'sr-srgan'),
  )
  assert gan['content_loss'] == sr.PIXEL_LOSS_NOTE
  assert 'SRGAN WITHOUT VGG19 WEIGHTS' in capsys.readouterr().out
  written = json.loads((runs / 'sr-srgan' / 'summary.json').read_text())
  assert written['content_loss'].startswith('pixel MSE')
  # Warm-started: two small steps from the SRResNet weights stay close to its
  # scores (a cold start would be tens of dB away).
  got = gan['mean_scores']['x2']['srgan']['psnr_y']
  assert got == pytest.approx(base['mean_scores']['x2']['srresnet']['psnr_y'], abs=1.0)
  c = sr.get_config('compare')
  c.update({'runs': str(runs), 'scales': (2,), 'crop': 48, 'max_test_images': 1})
  summary = sr.main(c, str(tmp_path / 'compare'))
  assert set(summary['mean_scores']['x2']) == {'bicubic', 'srresnet', 'srgan'}
  assert summary['mean_scores']['x2']['srresnet']['psnr_y'] == pytest.approx(
    base['mean_scores']['x2']['srresnet']['psnr_y'], abs=1e-6
  )  # the restored checkpoint scores as the run did
  assert (tmp_path / 'compare' / 'compare_x2_chelsea.png').exists()


def test_srgan_step_with_a_frozen_vgg_updates_both_networks_on_the_content_loss():
  g_model = sr_models.SRResNet(blocks=1, features=4, scale=2)
  d_model = sr_models.SRGANDiscriminator(widths=(4,), dense=4)
  vgg = sr_models.VGG19Features(convs_per_stage=(1, 1), widths=(4, 4))
  lr = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))
  hr = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  g = state_lib.create(
    model=g_model, tx=optax.sgd(0.1), rng=jax.random.key(2), inputs=(lr,)
  )
  d = state_lib.create(
    model=d_model, tx=optax.sgd(0.1), rng=jax.random.key(3), inputs=(hr,)
  )
  frozen = jax.jit(vgg.init)(jax.random.key(4), hr)['params']
  state = gan.GANState(step=jnp.zeros((), jnp.int32), g=g, d=d, ema=None)
  new, metrics = jax.jit(
    lambda s, b, f: sr.srgan_train_step(
      s, b, jax.random.key(5), f, adversarial_weight=1e-3, vgg=vgg
    )
  )(state, {'input': lr, 'hr': hr}, frozen)

  # Eager flax would compile op by op: one jitted reference computation.
  @jax.jit
  def reference(g_params, d_vars):
    sr_out, _ = gan._apply(g, g_params, lr, train=True)
    feats = lambda x: vgg.apply({'params': frozen}, x)
    content = jnp.mean(sr_models.vgg_content_loss(feats, sr_out, hr))
    return content, d_model.apply(d_vars, sr_out, train=False)

  content, d_fake_after = reference(
    g.params, {'params': new.d.params, 'batch_stats': new.d.batch_stats}
  )
  assert float(metrics['content_loss'][0]) == pytest.approx(float(content), rel=1e-4)
  assert np.all(np.isfinite(d_fake_after))
  adv = float(metrics['adversarial_loss'][0])
  assert float(metrics['g_loss'][0]) == pytest.approx(
    float(content) + 1e-3 * adv, rel=1e-4
  )
  assert int(new.step) == 1
  for old, upd in ((g.params, new.g.params), (d.params, new.d.params)):
    assert any(
      not np.allclose(a, b)
      for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(upd), strict=True)
    )


def test_l1_pixel_step_descends_the_mean_absolute_error_and_reports_mse_psnr():
  model = sr_models.SRResNet(blocks=1, features=4, scale=2, norm=False, icnr=True)
  lr = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))
  hr = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  st = state_lib.create(
    model=model, tx=optax.sgd(0.1), rng=jax.random.key(2), inputs=(lr,)
  )
  out = np.asarray(
    jax.jit(lambda p: model.apply({'params': p}, lr, train=False))(st.params)
  )
  step = jax.jit(
    lambda s, b: sr.pixel_train_step(
      s, b, None, model=model, y_channel=False, loss='l1'
    )
  )
  new, metrics = step(st, {'input': lr, 'hr': hr})
  err = out - np.asarray(hr)
  l1, mse = np.abs(err).mean((1, 2, 3)), (err**2).mean((1, 2, 3))
  assert float(metrics['loss'][0]) == pytest.approx(l1.sum(), rel=1e-5)
  assert float(metrics['psnr'][0]) == pytest.approx(
    np.sum(10 * np.log10(1 / mse)), rel=1e-5
  )
  # The output bias's gradient of the mean |error| over (batch, h, w, 3
  # channels) is each channel's mean sign of the error over 3: SGD moves it by
  # -0.1 times that.
  tail = f'Conv_{max(int(k[5:]) for k in st.params if k.startswith("Conv_"))}'
  np.testing.assert_allclose(
    new.params[tail]['bias'] - st.params[tail]['bias'],
    -0.1 * np.sign(err).mean((0, 1, 2)) / 3,
    atol=1e-6,
  )


@pytest.mark.parametrize(
  'preset, overrides, message',
  [
    ('srcnn', {'model': 'edsr'}, "unknown model 'edsr'; valid choices: srcnn, srgan"),
    ('srgan', {'vgg19_weights': '/nonexistent/vgg19.h5'}, 'VGG19 weights file'),
    ('srgan', {'srresnet_workdir': '/nonexistent'}, 'warm-starts from the SRResNet'),
    ('srcnn', {'dataset': 'set5'}, 'test_dir=FOLDER'),
    (
      'srresnet',
      {'pixel_loss': 'l2'},
      "unknown pixel loss 'l2'; valid choices: l1, mse",
    ),
  ],
)
def test_bad_input_is_one_line_before_anything_is_written(
  tmp_path, preset, overrides, message
):
  c = _config(preset, **overrides)
  with pytest.raises(UserError, match=message):
    sr.main(c, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
