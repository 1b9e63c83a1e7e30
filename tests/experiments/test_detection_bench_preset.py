"""nkjax.bench's Faster R-CNN benchmarks time the step that experiments/
detection.py trains: the sizes of its default and voc07 presets."""

import os
import sys

import pytest

from nkjax import bench

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import detection  # noqa: E402


@pytest.mark.parametrize(
  ('name', 'preset'), [('faster_rcnn', 'default'), ('faster_rcnn_voc', 'voc07')]
)
def test_faster_rcnn_benchmark_has_the_preset_s_sizes(name, preset, monkeypatch):
  c = detection.get_config(preset)
  b = bench.BENCHMARKS[name]
  assert b.batch_size == c.batch_size
  assert min(b.input_shape[:2]) == c.image_size
  # The step's model and proposal counts, without initialising it (VGG-16).
  from nkjax.train import state as state_lib

  monkeypatch.setattr(state_lib, 'create', lambda **kwargs: None)
  _, step, batch = b.setup(2)
  model = step.keywords['model']
  for field in bench.registry.FASTER_RCNN_MODEL_FIELDS:
    assert getattr(model, field) == c[field], field
  assert step.keywords['pre_nms_top_n'] == c.rpn_pre_nms_train
  assert step.keywords['post_nms_top_n'] == c.rpn_post_nms_train
  assert batch['image'].shape[1:] == b.input_shape
