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
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


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
