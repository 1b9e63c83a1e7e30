"""Pictures: training curves, image grids -> PNG files.

matplotlib runs on its non-interactive Agg backend, so nothing here needs a
display.
"""

import collections
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str, *, dpi: int = 100) -> str:
  """Lays out, writes and closes a matplotlib figure; creates the folder if needed."""
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return path


def plot_curves(rows: list[dict], path: str, *, title: str = '') -> str:
  """One panel per metric name, train and eval of the same name overlaid.

  Args:
    rows: dicts with a 'step' and scalars named 'split/metric' (the rows of
      `metrics.jsonl`).
    path: the PNG to write.
  """
  series = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    for key, value in row.items():
      if key == 'step' or '/' not in key:
        continue
      split, metric = key.split('/', 1)
      series[metric][split].append((row['step'], value))
  names = sorted(series)
  fig, axes = plt.subplots(
    1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.4)
  )
  axes = np.atleast_1d(axes)
  for ax, name in zip(axes, names, strict=False):
    for split, points in sorted(series[name].items()):
      steps, values = zip(*points, strict=True)
      ax.plot(steps, values, marker='.' if len(steps) < 30 else None, label=split)
    ax.set_title(name)
    ax.set_xlabel('step')
    ax.legend()
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  return save_figure(fig, path)


def image_grid(
  images: np.ndarray, *, rows: int | None = None, pad: int = 1
) -> np.ndarray:
  """Tiles `[n, h, w, c]` images into one `[H, W, c]` image, row-major.

  Values are copied unchanged; padding is the images' minimum.
  """
  images = np.asarray(images)
  n, h, w, c = images.shape
  rows = rows or int(np.ceil(np.sqrt(n)))
  cols = int(np.ceil(n / rows))
  grid = np.full(
    (rows * (h + pad) + pad, cols * (w + pad) + pad, c), images.min(), images.dtype
  )
  for i in range(n):
    r, q = divmod(i, cols)
    grid[
      pad + r * (h + pad) : pad + r * (h + pad) + h,
      pad + q * (w + pad) : pad + q * (w + pad) + w,
    ] = images[i]
  return grid


def _normalise(image: np.ndarray) -> np.ndarray:
  lo, hi = float(image.min()), float(image.max())
  return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def save_images(
  images: np.ndarray,
  path: str,
  *,
  titles: list[str] | None = None,
  cols: int = 8,
  normalise: bool = False,
  suptitle: str = '',
) -> str:
  """A titled grid of `[n, h, w, c]` images (c = 1 grey, 3 colour) -> PNG.

  Args:
    normalise: stretch each image to [0, 1] (for kernels and feature maps);
      otherwise values are taken as [0, 1] intensities.
  """
  images = np.asarray(images, np.float32)
  n = len(images)
  rows = max(1, int(np.ceil(n / cols)))
  cols = min(cols, max(n, 1))
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for i, (ax, img) in enumerate(zip(axes.flat, images, strict=False)):
    img = _normalise(img) if normalise else np.clip(img, 0, 1)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap='gray', vmin=0, vmax=1)
    if titles:
      ax.set_title(titles[i], fontsize=7)
  if suptitle:
    fig.suptitle(suptitle, fontsize=9)
  return save_figure(fig, path)


def plot_confusion_matrix(cm: np.ndarray, path: str, *, title: str = '') -> str:
  """Counts `[true, predicted]` as a heat map with the numbers written in."""
  k = len(cm)
  fig, ax = plt.subplots(figsize=(0.5 * k + 2, 0.5 * k + 1.6))
  ax.imshow(cm, cmap='Blues')
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
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_xticks(range(k))
  ax.set_yticks(range(k))
  if title:
    ax.set_title(title, fontsize=9)
  return save_figure(fig, path)


def save_feature_maps(
  maps: list[tuple[str, np.ndarray]], path: str, *, channels: int = 8
) -> str:
  """One row per layer: its first `channels` feature maps `[h, w, c]` of one input."""
  fig, axes = plt.subplots(
    len(maps),
    channels + 1,
    figsize=(1.2 * (channels + 1), 1.3 * len(maps)),
    squeeze=False,
  )
  for row, (name, fmap) in zip(axes, maps, strict=True):
    for ax in row:
      ax.axis('off')
    row[0].text(
      0.5,
      0.5,
      f'{name}\n{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}',
      ha='center',
      va='center',
      fontsize=7,
    )
    for ax, c in zip(row[1:], range(min(channels, fmap.shape[-1])), strict=False):
      ax.imshow(_normalise(fmap[..., c]), cmap='viridis')
  return save_figure(fig, path)


def detection_figure(
  images: np.ndarray,
  *,
  detections: list[dict] | None,
  ground_truths: list[dict] | None = None,
  class_names,
  title: str,
  score_threshold: float = 0.5,
  cols: int = 4,
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
    title: the figure's title.
    cols: images per row.
  """
  images = np.asarray(images, np.float32)
  n, h, w = images.shape[:3]
  cols = max(1, min(cols, n))
  rows = max(1, int(np.ceil(n / cols)))
  fig, axes = plt.subplots(
    rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.3), squeeze=False
  )
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
          x1, y2, class_names[int(label)], color='white', fontsize=6, va='top',
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
          fontsize=6, va='bottom',
          bbox={'facecolor': colour, 'alpha': 0.8, 'pad': 0.5, 'linewidth': 0},
        )  # fmt: skip
  fig.suptitle(title, fontsize=10)
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
  dpi: int = 100,
) -> str:
  """Boxes on a grid of images -> PNG: ground truth dashed, detections solid.

  The arguments are those of `detection_figure`; returns `path`.
  """
  fig = detection_figure(
    images, detections=detections, ground_truths=ground_truths,
    class_names=class_names, title=title, score_threshold=score_threshold, cols=cols,
  )  # fmt: skip
  return save_figure(fig, path, dpi=dpi)
