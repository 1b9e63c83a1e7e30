"""Pictures: training curves, image grids, confusion matrices, boxes -> PNG files.

Each `*_figure` function returns a matplotlib figure (tests read its titles and
labels); each `save_*` / `plot_*` writes one to a PNG and closes it. Every
figure has a title that says what it shows and, from the experiments, which
run (the workdir's name) it came from.

matplotlib runs on its non-interactive Agg backend, so nothing here needs a
display. It is imported on first use: it costs about a second, which a run
that stops on bad input, or never draws, should not pay.
"""

import collections
import functools
import os
import textwrap

import numpy as np


@functools.cache
def _pyplot():
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def run_name(workdir: str) -> str:
  """The name a figure's title gives a run: its workdir's last component."""
  return os.path.basename(os.path.normpath(os.path.abspath(workdir)))


def save_figure(fig, path: str, *, dpi: int = 100) -> str:
  """Lays out, writes and closes a matplotlib figure; creates the folder if needed."""
  plt = _pyplot()
  if fig.get_layout_engine() is None:
    fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return path


# Metric names with a unit worth stating on the y-axis; the loss's unit follows
# the loss the run minimises (`loss_unit`), so it is not among them.
_UNITS = {
  'accuracy': 'accuracy (fraction correct)',
  'psnr': 'PSNR (dB)',
  'frechet': 'Frechet distance (feature units^2)',
  'd_output': 'mean discriminator output',
}


def _panel(metric: str) -> str:
  # Every loss shares one panel (a GAN's d_loss beside its g_loss), and so do
  # the discriminator's mean outputs on real and generated images.
  if metric.endswith('loss'):
    return 'loss'
  if metric.startswith('psnr'):
    return 'psnr'
  return 'd_output' if metric in ('d_real', 'd_fake') else metric


def _ylabel(name: str, loss_unit: str | None) -> str:
  if name == 'loss':
    return f'loss ({loss_unit})' if loss_unit else 'loss'
  if name in _UNITS:
    return _UNITS[name]
  if name.endswith(('accuracy', 'share', 'share_max')):
    return f'{name} (fraction)'
  return name


def curves_figure(rows: list[dict], *, title: str = '', loss_unit: str | None = None):
  """The training curves of one run as a matplotlib figure.

  One panel per metric, train and eval (or test) of a metric overlaid, every
  `*loss` metric on one 'loss' panel and every `psnr*` one on a 'psnr' panel.
  A series with a single point (an evaluation made only at the end) is drawn
  as a marker on a panel that has a curve, and left out otherwise; a panel
  whose every series is constant (a count fixed by the configuration) is left
  out. Panels are laid out three to a row.

  Args:
    rows: dicts with a 'step' and scalars named 'split/metric' (the rows of
      `metrics.jsonl`).
    title: the run's name (its workdir's), shown in the figure's title.
    loss_unit: the unit of the loss the run minimises (e.g. 'nats,
      cross-entropy'), shown on the loss axis; None shows no unit.
  """
  plt = _pyplot()
  series = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    for key, value in row.items():
      if key == 'step' or '/' not in key:
        continue
      split, metric = key.split('/', 1)
      series[(split, metric)]['points'].append((row['step'], value))
  panels = collections.defaultdict(list)
  for (split, metric), s in sorted(series.items()):
    panels[_panel(metric)].append((split, metric, s['points']))
  panels = {
    name: entries
    for name, entries in panels.items()
    if any(len(p) > 1 for _, _, p in entries)
    and any(len({v for _, v in p}) > 1 for _, _, p in entries)
  }
  names = sorted(panels, key=lambda n: (n != 'loss', n))
  cols = min(3, max(len(names), 1))
  rows_n = max(1, -(-len(names) // cols))
  fig, axes = plt.subplots(
    rows_n, cols, figsize=(4.6 * cols, 3.4 * rows_n + 0.5), squeeze=False
  )
  for ax in axes.flat[len(names) :]:
    ax.axis('off')
  for ax, name in zip(axes.flat, names, strict=False):
    metrics = {m for _, m, _ in panels[name]}
    for split, metric, points in panels[name]:
      steps, values = zip(*points, strict=True)
      label = split if len(metrics) == 1 else f'{split} {metric}'
      if len(steps) == 1:
        ax.plot(steps, values, marker='o', linestyle='none', label=label)
      else:
        ax.plot(steps, values, marker='.' if len(steps) < 30 else None, label=label)
    ax.set_title(name if len(metrics) == 1 else ', '.join(sorted(metrics)))
    ax.set_xlabel('training step')
    ax.set_ylabel(_ylabel(name, loss_unit))
    ax.legend()
    ax.grid(alpha=0.3)
  if not names:
    axes.flat[0].text(0.5, 0.5, 'no metric has two points yet', ha='center')
  fig.suptitle(f'training curves: {title}' if title else 'training curves')
  return fig


def plot_curves(
  rows: list[dict], path: str, *, title: str = '', loss_unit: str | None = None
) -> str:
  """`curves_figure(rows, title=title, loss_unit=loss_unit)` -> PNG at `path`;
  returns `path`."""
  return save_figure(curves_figure(rows, title=title, loss_unit=loss_unit), path)


def _normalise(image: np.ndarray) -> np.ndarray:
  lo, hi = float(image.min()), float(image.max())
  return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def images_figure(
  images: np.ndarray,
  *,
  titles: list[str] | None = None,
  cols: int = 8,
  normalise: bool = False,
  suptitle: str = '',
  colorbar_label: str | None = None,
):
  """A titled grid of `[n, h, w, c]` images (c = 1 grey, 3 colour) as a figure.

  Args:
    titles: one per image.
    normalise: stretch each image to [0, 1]; otherwise values are taken as
      [0, 1] intensities.
    suptitle: the figure's title: what the images are and the run.
    colorbar_label: for single-channel images, draw every image on one scale
      symmetric about 0 (blue negative, red positive: kernels' weights) with a
      colour bar of this label; `normalise` is then ignored.
  """
  plt = _pyplot()
  images = np.asarray(images, np.float32)
  n = len(images)
  rows = max(1, int(np.ceil(n / cols)))
  cols = min(cols, max(n, 1))
  shared = colorbar_label is not None and images.shape[-1] == 1
  extra = 0.9 if shared else 0.0
  fig, axes = plt.subplots(
    rows,
    cols,
    figsize=(1.3 * cols + extra, 1.45 * rows + 0.4),
    squeeze=False,
    # tight_layout cannot place a colour bar shared by a grid; constrained can.
    layout='constrained' if shared else None,
  )
  for ax in axes.flat:
    ax.axis('off')
  bound = float(np.abs(images).max()) or 1.0
  shown = None
  for i, (ax, img) in enumerate(zip(axes.flat, images, strict=False)):
    if shared:
      shown = ax.imshow(img[..., 0], cmap='RdBu_r', vmin=-bound, vmax=bound)
    else:
      img = _normalise(img) if normalise else np.clip(img, 0, 1)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap='gray', vmin=0, vmax=1)
    if titles:
      ax.set_title(titles[i], fontsize=7)
  if shown is not None:
    fig.colorbar(shown, ax=axes.ravel().tolist(), label=colorbar_label, shrink=0.9)
  if suptitle:
    fig.suptitle(suptitle, fontsize=9)
  return fig


def save_images(images: np.ndarray, path: str, **kwargs) -> str:
  """`images_figure(images, **kwargs)` -> PNG at `path`; returns `path`."""
  return save_figure(images_figure(images, **kwargs), path)


def confusion_figure(cm: np.ndarray, *, title: str = '', class_names=None):
  """Counts `[true, predicted]` as a heat map with the numbers written in."""
  plt = _pyplot()
  k = len(cm)
  fig, ax = plt.subplots(figsize=(0.5 * k + 2.8, 0.5 * k + 1.6))
  shown = ax.imshow(cm, cmap='Blues')
  for (i, j), v in np.ndenumerate(cm):
    ax.text(
      j,
      i,
      str(v),
      ha='center',
      va='center',
      fontsize=7,
      color='white' if v > cm.max() / 2 else 'black',
    )
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  names = [str(c) for c in (class_names or range(k))]
  ax.set_xticks(range(k), names)
  ax.set_yticks(range(k), names)
  fig.colorbar(shown, ax=ax, label='test examples')
  if title:
    ax.set_title(title, fontsize=9)
  return fig


def plot_confusion_matrix(cm: np.ndarray, path: str, *, title: str = '') -> str:
  """`confusion_figure(cm, title=title)` -> PNG at `path`; returns `path`."""
  return save_figure(confusion_figure(cm, title=title), path)


def feature_maps_figure(
  maps: list[tuple[str, np.ndarray]], *, channels: int = 8, title: str = ''
):
  """One row per layer: its first `channels` feature maps `[h, w, c]` of one input.

  Each row is labelled with the layer, its map size and how many of its maps
  are shown ("8 of 16"); each map is stretched to its own range (viridis:
  dark low, yellow high).
  """
  plt = _pyplot()
  fig, axes = plt.subplots(
    len(maps),
    channels + 1,
    figsize=(1.2 * (channels + 1), 1.3 * len(maps) + 0.5),
    squeeze=False,
  )
  for row, (name, fmap) in zip(axes, maps, strict=True):
    for ax in row:
      ax.axis('off')
    shown = min(channels, fmap.shape[-1])
    row[0].text(
      0.5,
      0.5,
      f'{name}\n{fmap.shape[0]}x{fmap.shape[1]},\n{shown} of {fmap.shape[2]} maps',
      ha='center',
      va='center',
      fontsize=7,
    )
    for ax, c in zip(row[1:], range(shown), strict=False):
      ax.imshow(_normalise(fmap[..., c]), cmap='viridis')
      ax.set_title(f'#{c}', fontsize=6)
  if title:
    fig.suptitle(title, fontsize=9)
  return fig


def save_feature_maps(
  maps: list[tuple[str, np.ndarray]], path: str, *, channels: int = 8, title: str = ''
) -> str:
  """`feature_maps_figure(...)` -> PNG at `path`; returns `path`."""
  return save_figure(feature_maps_figure(maps, channels=channels, title=title), path)


def detection_figure(
  images: np.ndarray,
  *,
  detections: list[dict] | None,
  ground_truths: list[dict] | None = None,
  class_names,
  title: str,
  score_threshold: float = 0.5,
  cols: int = 4,
  panel_inches: float = 2.6,
):
  """A grid of images with boxes drawn on them, as a matplotlib figure.

  Args:
    images: `[n, h, w, 3]` (or `[n, h, w, 1]`) intensities in [0, 1].
    detections: per image `{'boxes': [k, 4], 'scores': [k], 'labels': [k]}`,
      boxes `(x1, y1, x2, y2)` in pixels (continuous coordinates); drawn solid
      with the class name and score where the score >= `score_threshold`.
      None draws none.
    ground_truths: per image `{'boxes': [g, 4], 'labels': [g]}` and optionally
      `'difficult'` `[g]`; drawn dashed with the class name (difficult ones
      dotted and grey).
    class_names: a name per class id.
    title: the figure's title, wrapped to the figure's width.
    cols: images per row.
    panel_inches: the longer side of each image's panel (the shorter follows
      the images' aspect); the box labels' font grows with it.
  """
  plt = _pyplot()
  images = np.asarray(images, np.float32)
  n, h, w = images.shape[:3]
  cols = max(1, min(cols, n))
  rows = max(1, int(np.ceil(n / cols)))
  pw, ph = panel_inches * w / max(h, w), panel_inches * h / max(h, w)
  fig, axes = plt.subplots(
    rows, cols, figsize=(pw * cols, ph * rows + 0.4), squeeze=False,
    layout='constrained',
  )  # fmt: skip
  label_size = 6 if panel_inches < 4 else 9
  palette = plt.get_cmap('tab10').colors
  for ax in axes.flat:
    ax.axis('off')
  for i, ax in zip(range(n), axes.flat, strict=False):
    img = np.clip(images[i], 0, 1)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap='gray', vmin=0, vmax=1)
    # imshow puts pixel i's centre at i; the continuous box edge x sits at x - 0.5.
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    gt = (ground_truths or [None] * n)[i]
    if gt is not None:
      difficult = gt.get('difficult', np.zeros(len(gt['labels']), bool))
      for box, label, hard in zip(
        np.asarray(gt['boxes']), np.asarray(gt['labels']), np.asarray(difficult),
        strict=True,
      ):  # fmt: skip
        colour = 'grey' if hard else palette[int(label) % len(palette)]
        x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
        ax.add_patch(
          plt.Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
            linestyle=':' if hard else '--', linewidth=1.2,
          )
        )  # fmt: skip
        ax.text(
          x1, y2, class_names[int(label)], color='white', fontsize=label_size, va='top',
          bbox={'facecolor': colour, 'alpha': 0.6, 'pad': 0.5, 'linewidth': 0},
        )  # fmt: skip
    det = (detections or [None] * n)[i]
    if det is not None:
      for box, label, score in zip(
        np.asarray(det['boxes']), np.asarray(det['labels']), np.asarray(det['scores']),
        strict=True,
      ):  # fmt: skip
        if score < score_threshold:
          continue
        colour = palette[int(label) % len(palette)]
        x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
        ax.add_patch(
          plt.Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
            linestyle='-', linewidth=1.5,
          )
        )  # fmt: skip
        ax.text(
          x1, y1, f'{class_names[int(label)]} {float(score):.2f}', color='white',
          fontsize=label_size, va='bottom',
          bbox={'facecolor': colour, 'alpha': 0.8, 'pad': 0.5, 'linewidth': 0},
        )  # fmt: skip
  # About 0.55 em per character: wrap rather than run off the figure's edges.
  chars = max(20, int(pw * cols * 72 / (0.55 * 10)))
  fig.suptitle(textwrap.fill(title, chars), fontsize=10)
  return fig


def save_detections(
  path: str,
  images: np.ndarray,
  *,
  detections: list[dict] | None,
  ground_truths: list[dict] | None = None,
  class_names,
  title: str,
  score_threshold: float = 0.5,
  cols: int = 4,
  panel_inches: float = 2.6,
  dpi: int = 100,
) -> str:
  """Boxes on a grid of images -> PNG: ground truth dashed, detections solid.

  The arguments are those of `detection_figure`; returns `path`.
  """
  fig = detection_figure(
    images, detections=detections, ground_truths=ground_truths,
    class_names=class_names, title=title, score_threshold=score_threshold, cols=cols,
    panel_inches=panel_inches,
  )  # fmt: skip
  return save_figure(fig, path, dpi=dpi)


def zoom_window(image: np.ndarray, crop: int) -> tuple[int, int, int]:
  """`(top, left, side)` of the `side` x `side` window of `image` `[h, w, c]`
  whose grey levels vary most, `side = min(crop, h, w)`, searched on a grid of
  half a window's stride: where a super-resolution figure zooms in.

  >>> image = np.zeros((8, 8, 3))
  >>> image[4:, 2:6] = np.indices((4, 4)).sum(0)[..., None] % 2
  >>> zoom_window(image, 4)
  (4, 2, 4)
  """
  h, w = image.shape[:2]
  side = max(min(crop, h, w), 1)
  stride = max(side // 2, 1)
  grey = np.asarray(image, np.float64).mean(-1)
  best, pos = -1.0, (0, 0)
  for top in range(0, h - side + 1, stride):
    for left in range(0, w - side + 1, stride):
      v = float(grey[top : top + side, left : left + side].var())
      if v > best:
        best, pos = v, (top, left)
  return (*pos, side)


def sr_figure(
  *,
  lr: np.ndarray,
  bicubic: np.ndarray,
  sr: np.ndarray,
  hr: np.ndarray | None,
  titles,
  crop: int,
  suptitle: str,
):
  """Super-resolution side by side, as a matplotlib figure: LR (each pixel
  repeated `scale` times), bicubic, the model's output and HR in a row, and
  below each the same zoomed crop (the `crop` x `crop` window of highest
  variance in HR, or in bicubic without HR, outlined in yellow
  above).

  Args:
    lr: `[h / scale, w / scale, 3]` in [0, 1].
    bicubic, sr, hr: `[h, w, 3]` in [0, 1]; hr None (an image upscaled
      beyond its file) leaves its panel out.
    titles: a title per panel (LR, bicubic, model and HR unless it is None).
    crop: the zoomed window's side in output pixels.
    suptitle: the figure's title.
  """
  plt = _pyplot()
  h, w = sr.shape[:2]
  *pos, side = zoom_window(bicubic if hr is None else hr, crop)
  s = h // lr.shape[0]
  panels = [np.repeat(np.repeat(lr, s, 0), s, 1)[:h, :w], bicubic, sr]
  panels += [] if hr is None else [hr]
  fig, axes = plt.subplots(
    2, len(panels), figsize=(3.25 * len(panels), 6.8), squeeze=False
  )
  for j, (img, title) in enumerate(zip(panels, titles, strict=True)):
    img = np.clip(img, 0, 1)
    axes[0, j].imshow(img)
    axes[0, j].add_patch(
      plt.Rectangle((pos[1], pos[0]), side, side, fill=False, color='yellow', lw=1.2)
    )
    axes[0, j].set_title(title, fontsize=9)
    axes[1, j].imshow(
      img[pos[0] : pos[0] + side, pos[1] : pos[1] + side], interpolation='nearest'
    )
    for ax in axes[:, j]:
      ax.axis('off')
  fig.suptitle(suptitle, fontsize=10)
  return fig


def save_sr_figure(path: str, *, dpi: int = 90, **kwargs) -> str:
  """`sr_figure(**kwargs)` -> PNG at `path`; returns `path`."""
  return save_figure(sr_figure(**kwargs), path, dpi=dpi)
