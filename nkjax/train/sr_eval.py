"""Super-resolution at test time: scores, tables and figures of trained runs.

* `evaluate`: every (scale, test image) of a dataset through a network,
  scored against the bicubic baseline as the papers score (PSNR and SSIM on
  Y after shaving `scale` pixels, RGB PSNR: `nkjax.metrics.image.sr_scores`),
  with the scored PNGs and a side-by-side figure per image.
* `means`, `print_table`: the per-scale means and the console table.
* `save_compare_figures`: several runs' outputs side by side, zoomed.
"""

import os
from collections.abc import Callable, Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from nkjax import viz
from nkjax.data import sr as sr_data
from nkjax.metrics import image as image_metrics

SCORES = ('psnr_y', 'ssim_y', 'psnr_rgb')


def evaluate(
  predict: Callable[[Any, list], dict],
  state: Any,
  data: Any,
  *,
  workdir: str,
  label: str,
  round_y: bool,
  crop: int,
  note: str = '',
  write: bool = True,
  scales: Iterable[int] | None = None,
) -> dict:
  """Per-image and mean scores of the bicubic baseline and the model.

  Args:
    predict: `predict(state, [batch]) -> {'sr', 'hr', 'lr', 'bicubic'[,
      'sr_y']}` (`nkjax.train.loop.make_predictor` of an SR predict step).
    data: an `SRDataset` (`nkjax.data.sr.load`); its eval batches hold one
      (scale, image) each.
    workdir: where `sr/x{s}/<image>.png` (the model's RGB output, 8-bit),
      `sr/x{s}/<image>_y.png` (the scored Y, for Y networks) and
      `figures/x{s}_<image>.png` (LR, bicubic, model, HR) go.
    label: the model's name in the scores and figures.
    round_y: score as MATLAB's uint8 path does (`sr_scores`).
    crop: HR side of the zoomed crop in the figures.
    note: added to the figures' titles.
    write: False writes nothing (scores only).
    scales: score only these scales (a run trained at x4 is scored at x4);
      None: every scale of `data`.

  Returns:
    `{'per_image': {'x{s}': {image: {'bicubic': scores, label: scores}}},
    'mean': means(per_image), 'outputs': {(s, image): sr [h, w, 3]}}`.
  """
  keep = None if scales is None else set(int(s) for s in scales)
  per_image, outputs = {}, {}
  for batch in data.eval_batches():
    s, k = int(batch['scale'][0]), int(batch['index'][0])
    if keep is not None and s not in keep:
      continue
    out = predict(state, [batch])
    name = data.test_names[k]
    hr, lr, bic, sr = out['hr'][0], out['lr'][0], out['bicubic'][0], out['sr'][0]
    sr_y = out['sr_y'][0] if 'sr_y' in out else None
    base = image_metrics.sr_scores(sr=bic, hr=hr, border=s, round_y=round_y)
    model = image_metrics.sr_scores(sr=sr, hr=hr, border=s, sr_y=sr_y, round_y=round_y)
    per_image.setdefault(f'x{s}', {})[name] = {'bicubic': base, label: model}
    outputs[(s, name)] = sr
    if write:
      sr_data.write_png(os.path.join(workdir, 'sr', f'x{s}', f'{name}.png'), sr)
      if sr_y is not None:  # what was scored on Y; `{name}.png` is its colour view
        sr_data.write_y_png(os.path.join(workdir, 'sr', f'x{s}', f'{name}_y.png'), sr_y)
      viz.save_sr_figure(
        os.path.join(workdir, 'figures', f'x{s}_{name}.png'),
        lr=lr, bicubic=bic, sr=sr, hr=hr, crop=crop,
        titles=(
          f'LR x{s}', f'bicubic {base["psnr_y"]:.2f} dB',
          f'{label} {model["psnr_y"]:.2f} dB', 'HR',
        ),
        suptitle=f'{viz.run_name(workdir)}: {name} x{s}, PSNR on Y (MATLAB protocol)'
        + (f'; {note}' if note else ''),
      )  # fmt: skip
  return {'per_image': per_image, 'mean': means(per_image), 'outputs': outputs}


def means(per_image: dict) -> dict:
  """Per scale and method, the mean of each score over the images, and each
  model's `gain_psnr_y` over bicubic (dB).

  >>> means({'x2': {'a': {'bicubic': {'psnr_y': 30.0, 'ssim_y': 0.9, 'psnr_rgb': 29.0},
  ...                     'm': {'psnr_y': 31.0, 'ssim_y': 0.9, 'psnr_rgb': 30.0}}}}
  ...       )['x2']['m']['gain_psnr_y']
  1.0
  """
  out = {}
  for scale, images in per_image.items():
    methods = next(iter(images.values())).keys()
    out[scale] = {
      m: {k: float(np.mean([images[i][m][k] for i in images])) for k in SCORES}
      for m in methods
    }
    for m in methods:
      if m != 'bicubic':
        out[scale][m]['gain_psnr_y'] = (
          out[scale][m]['psnr_y'] - out[scale]['bicubic']['psnr_y']
        )
  return out


def print_table(per_image: dict, mean: dict, title: str) -> None:
  """Every image's and the mean's PSNR-Y, SSIM-Y and PSNR-RGB per method."""
  print(f'\n{title}')
  print(
    f'{"scale":>5} {"image":>14} {"method":>10} {"PSNR-Y":>8} {"SSIM-Y":>7} {"PSNR-RGB":>9}'
  )
  for scale, images in per_image.items():
    rows = list(images.items()) + [('mean', mean[scale])]
    for name, methods in rows:
      for m, v in methods.items():
        print(f'{scale:>5} {name:>14} {m:>10} {v["psnr_y"]:8.2f} {v["ssim_y"]:7.4f} '
              f'{v["psnr_rgb"]:9.2f}')  # fmt: skip


def save_compare_figures(
  data: Any,
  *,
  outputs: dict[str, dict],
  per_image: dict,
  workdir: str,
  crop: int,
  notes: dict[str, str],
) -> None:
  """`workdir/compare_x{s}_<image>.png`: bicubic, each run's output and HR,
  zoomed on the same window, each titled with its PSNR-Y.

  Args:
    data: the `SRDataset` the runs were scored on.
    outputs: `{run: evaluate(...)['outputs']}`.
    per_image: the merged per-image scores, `{'x{s}': {image: {run: scores}}}`.
    crop: the zoomed window's side (HR pixels).
    notes: `{run: content-loss note}`; an SRGAN trained on the pixel loss is
      marked so.
  """
  for b in data.eval_batches():
    s, name = int(b['scale'][0]), data.test_names[int(b['index'][0])]
    models = [m for m in outputs if (s, name) in outputs[m]]
    if not models:
      continue
    hr = b['hr'][0]
    panels = [('bicubic', b['bicubic'][0])] + [
      (m, outputs[m][(s, name)]) for m in models
    ]
    panels.append(('HR', hr))
    top, left, side = viz.zoom_window(hr, crop)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for ax, (m, img) in zip(axes, panels, strict=True):
      ax.imshow(
        np.clip(img[top : top + side, left : left + side], 0, 1),
        interpolation='nearest',
      )
      score = per_image[f'x{s}'][name].get(m)
      extra = (
        ' (pixel loss)' if m == 'srgan' and notes.get(m, '').startswith('pixel') else ''
      )
      ax.set_title(
        f'{m}{extra}' + (f'\n{score["psnr_y"]:.2f} dB' if score else ''), fontsize=8
      )
      ax.axis('off')
    fig.suptitle(f'{viz.run_name(workdir)}: {name} x{s}, zoomed', fontsize=9)
    viz.save_figure(fig, os.path.join(workdir, f'compare_x{s}_{name}.png'), dpi=90)
