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


def test_detection_figure_draws_truth_dashed_and_detections_solid_with_scores(tmp_path):
  import matplotlib.pyplot as plt

  images = np.zeros((3, 20, 30, 3), np.float32)
  gts = [
    {'boxes': np.array([[2, 3, 12, 13], [15, 1, 25, 9]]), 'labels': np.array([0, 1])},
    {'boxes': np.zeros((0, 4)), 'labels': np.zeros(0, int)},
    {
      'boxes': np.array([[0, 0, 5, 5]]),
      'labels': np.array([1]),
      'difficult': np.array([True]),
    },
  ]
  dets = [
    {
      'boxes': np.array([[2, 3, 12, 14]]),
      'scores': np.array([0.93]),
      'labels': np.array([0]),
    },
    {
      'boxes': np.array([[1, 1, 4, 4], [5, 5, 9, 9]]),
      'scores': np.array([0.2, 0.61]),  # the first is under the threshold
      'labels': np.array([1, 1]),
    },
    None,
  ]
  fig = viz.detection_figure(
    images, detections=dets, ground_truths=gts, class_names=['cat', 'dog'],
    title='epoch 3', score_threshold=0.5, cols=2,
  )  # fmt: skip
  axes = fig.axes
  assert len(axes) == 4 and fig._suptitle.get_text() == 'epoch 3'

  def drawn(ax):
    return [
      (p.get_linestyle(), p.get_xy(), p.get_width(), p.get_height()) for p in ax.patches
    ]

  # Rectangles sit half a pixel up-left: imshow centres pixel i at i.
  assert drawn(axes[0]) == [
    ('--', (1.5, 2.5), 10, 10), ('--', (14.5, 0.5), 10, 8), ('-', (1.5, 2.5), 10, 11)
  ]  # fmt: skip
  assert [t.get_text() for t in axes[0].texts] == ['cat', 'dog', 'cat 0.93']
  assert drawn(axes[1]) == [('-', (4.5, 4.5), 4, 4)]
  assert [t.get_text() for t in axes[1].texts] == ['dog 0.61']
  assert [p.get_linestyle() for p in axes[2].patches] == [':']  # difficult
  assert not axes[3].patches and not axes[3].images  # the empty grid cell
  plt.close(fig)
  path = viz.save_detections(
    str(tmp_path / 'd.png'), images, detections=dets, ground_truths=gts,
    class_names=['cat', 'dog'], title='t',
  )  # fmt: skip
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
