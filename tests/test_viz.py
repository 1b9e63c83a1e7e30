import matplotlib.pyplot as plt
import numpy as np

from nkjax import viz

from .figures import assert_readable, describe


def test_plot_curves_writes_a_png(tmp_path):
  rows = [{'step': s, 'train/loss': 1 / s, 'eval/loss': 2 / s} for s in range(1, 5)]
  path = viz.plot_curves(rows, str(tmp_path / 'c.png'))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_classifier_curves_overlay_train_and_eval_with_labelled_axes():
  rows = [
    {'step': s, 'train/loss': 1 / s, 'train/accuracy': 1 - 1 / s} for s in (1, 2, 3)
  ] + [{'step': s, 'eval/loss': 2 / s, 'eval/accuracy': 0.5} for s in (2, 3)]
  fig = viz.curves_figure(rows, title='cnn-smoke')
  d = describe(fig)
  plt.close(fig)
  assert d['suptitle'] == 'training curves: cnn-smoke'
  assert_readable(d, run='cnn-smoke')
  loss, accuracy = d['axes']  # the loss panel first
  assert loss['legend'] == ['eval', 'train'] and loss['ylabel'].startswith('loss')
  assert accuracy['title'] == 'accuracy' and 'fraction' in accuracy['ylabel']
  assert loss['xlabel'] == accuracy['xlabel'] == 'training step'


def test_gan_curves_grid_d_and_g_on_one_panel_and_no_single_points():
  train = ('d_loss', 'g_loss', 'd_real', 'd_fake', 'lr', 'grad_norm')
  rows = [{'step': s, **{f'train/{m}': s * 0.1 for m in train}} for s in (3, 6, 9)]
  rows.append({'step': 9, 'eval/frechet': 3.0, 'eval/condition_accuracy': 0.2})
  fig = viz.curves_figure(rows, title='gan-smoke')
  d = describe(fig)
  geometry = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
  plt.close(fig)
  assert_readable(d, run='gan-smoke')
  drawn = [a for a in d['axes'] if a['plots']]
  # Four panels (losses, D's outputs, grad_norm, lr), three to a row.
  assert geometry == {(2, 3)} and len(drawn) == 4
  assert drawn[0]['legend'] == ['train d_loss', 'train g_loss']
  assert drawn[1]['legend'] == ['train d_fake', 'train d_real']
  titles = ' '.join(a['title'] for a in drawn)
  assert 'frechet' not in titles and 'condition' not in titles  # one point each
  assert all(a['ylabel'] for a in drawn)


def test_loss_axis_names_the_runs_unit_and_sr_test_psnr_is_a_point_on_the_psnr_panel():
  rows = [
    {'step': s, 'train/loss': 1 / s, 'train/psnr': 30 + s, 'train/proposals': 64.0}
    for s in (1, 2, 3)
  ] + [{'step': 3, 'test/psnr_y_x2': 28.9}]
  fig = viz.curves_figure(rows, loss_unit='intensity, L1 on [0, 1]')
  d = describe(fig)
  plt.close(fig)
  drawn = [a for a in d['axes'] if a['plots']]
  loss, psnr = drawn  # the constant proposal count has no panel
  assert (
    loss['ylabel'] == 'loss (intensity, L1 on [0, 1])' and 'nats' not in loss['ylabel']
  )
  assert psnr['legend'] == ['test psnr_y_x2', 'train psnr'] and 'dB' in psnr['ylabel']
  fig = viz.curves_figure(rows[:3])
  assert fig.axes[0].get_ylabel() == 'loss'  # no unit given: none claimed
  plt.close(fig)


def test_kernels_share_one_symmetric_colour_scale_with_a_colour_bar():
  kernels = np.stack([np.full((5, 5, 1), v, np.float32) for v in (-0.3, 0.1, 0.2)])
  fig = viz.images_figure(
    kernels, colorbar_label='weight', suptitle='run-7: first-layer 5x5 kernels'
  )
  d = describe(fig)
  limits = {im.get_clim() for ax in fig.axes for im in ax.images}
  plt.close(fig)
  assert d['colorbars'] == ['weight']
  assert limits == {(-np.float32(0.3), np.float32(0.3))}  # one scale, 0 in the middle
  assert_readable(d, run='run-7')


def test_confusion_matrix_names_its_axes_and_counts():
  cm = np.array([[5, 1], [0, 4]])
  fig = viz.confusion_figure(cm, title='cnn-smoke: test confusion matrix')
  d = describe(fig)
  plt.close(fig)
  assert_readable(d, run='cnn-smoke')
  (ax,) = d['axes']
  assert (ax['xlabel'], ax['ylabel']) == ('predicted class', 'true class')
  assert ax['texts'] == ['5', '1', '0', '4'] and d['colorbars'] == ['test examples']


def test_feature_maps_say_how_many_of_each_layers_maps_they_show():
  maps = [
    ('input', np.zeros((28, 28, 1))),
    ('Conv_0', np.zeros((28, 28, 6))),
    ('Conv_1', np.zeros((10, 10, 16))),
  ]
  fig = viz.feature_maps_figure(maps, channels=8, title='run: a 7 (predicted 7)')
  d = describe(fig)
  plt.close(fig)
  labels = [t for a in d['axes'] for t in a['texts']]
  assert labels == [
    'input\n28x28,\n1 of 1 maps',
    'Conv_0\n28x28,\n6 of 6 maps',
    'Conv_1\n10x10,\n8 of 16 maps',
  ]
  assert sum(a['images'] for a in d['axes']) == 1 + 6 + 8
  assert d['suptitle'] == 'run: a 7 (predicted 7)'


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


def test_zoom_window_is_the_grid_window_of_largest_variance_and_allows_side_one():
  image = np.random.default_rng(0).random((13, 10, 3)) ** 4
  for crop in (1, 2, 3, 6, 40):
    top, left, side = viz.zoom_window(image, crop)
    assert side == min(crop, 10)
    # The same search written with numpy's sliding windows.
    step = max(side // 2, 1)
    windows = np.lib.stride_tricks.sliding_window_view(image.mean(-1), (side, side))
    variances = windows[::step, ::step].var(axis=(-2, -1))
    i, j = np.unravel_index(np.argmax(variances), variances.shape)
    assert (top, left) == (i * step, j * step)
