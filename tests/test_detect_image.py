import json

import jax.numpy as jnp
import numpy as np
from PIL import Image

from nkjax.train import detection_eval


def _fixed_predict(state, batch):
  # Boxes in the network's frame, whatever the image: what the file's boxes
  # must be a rescaling of.
  del state, batch
  return {
    'det_boxes': jnp.array([[[10.0, 20.0, 60.0, 100.0], [0.0, 0.0, 5.0, 5.0]]]),
    'det_scores': jnp.array([[0.9, 0.3]]),
    'det_labels': jnp.array([[1, 0]]),
    'det_valid': jnp.array([[True, True]]),
  }


def test_detect_image_gives_boxes_in_the_files_pixels_on_a_picture_at_its_size(
  tmp_path,
):
  h, w = 480, 720
  image = np.random.default_rng(0).uniform(size=(h, w, 3)).astype(np.float32)
  title = 'detect-run: faster_rcnn on a photograph with a long name ' * 3
  result = detection_eval.detect_image(
    image, None, predict=_fixed_predict, image_size=128,
    class_names=('circle', 'square'), workdir=str(tmp_path), title=title,
  )  # fmt: skip
  # The network saw the shorter side at 128: 128 x 192, 3.75 file pixels each.
  assert result['image_size'] == [h, w] and result['network_size'] == [128, 192]
  np.testing.assert_allclose(result['scale'], [h / 128, w / 192])
  (det,) = result['detections']  # the 0.3 one is under the threshold
  np.testing.assert_allclose(det['box'], np.array([10, 20, 60, 100]) * 3.75)
  assert det['class'] == 'square'
  with open(tmp_path / 'detections.json') as f:
    assert json.load(f) == result
  with Image.open(tmp_path / 'detections.png') as png:
    width, height = png.size
  assert width >= w and height >= h  # drawn at least at the photo's resolution


def test_a_long_detection_title_is_wrapped_inside_the_figure():
  import matplotlib.pyplot as plt

  from nkjax import viz

  fig = viz.detection_figure(
    np.zeros((1, 128, 192, 3)), detections=None, class_names=('a',),
    title='detection-detect: faster_rcnn on flower.png, ' * 4, panel_inches=3.0,
  )  # fmt: skip
  fig.canvas.draw()
  box = fig._suptitle.get_window_extent()
  width, height = fig.canvas.get_width_height()
  plt.close(fig)
  assert 0 <= box.x0 and box.x1 <= width and box.y1 <= height
