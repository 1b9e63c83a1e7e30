import numpy as np

from nkjax import viz


def test_image_grid_places_images_row_major_with_padding():
  images = (
    np.arange(6, dtype=np.float32)[:, None, None, None]
    * np.ones((6, 2, 3, 1), np.float32)
    + 1
  )
  grid = viz.image_grid(images, rows=2, pad=1)
  assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
  for i in range(6):
    r, c = divmod(i, 3)
    tile = grid[1 + r * 3 : 1 + r * 3 + 2, 1 + c * 4 : 1 + c * 4 + 3, 0]
    assert np.all(tile == i + 1)
  assert grid[0, 0, 0] == 1  # padding takes the minimum


def test_plot_curves_writes_a_png(tmp_path):
  rows = [{'step': s, 'train/loss': 1 / s, 'eval/loss': 2 / s} for s in range(1, 5)]
  path = viz.plot_curves(rows, str(tmp_path / 'c.png'))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
