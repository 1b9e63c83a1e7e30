"""The Faster R-CNN recipes' sizes, as fields of experiments/detection.py's config.

Plain values (no JAX), read in two places: that experiment's `get_config`
(the `default` and `faster_rcnn` presets, and `voc07`) and `nkjax.bench`'s
`faster_rcnn` and `faster_rcnn_voc` benchmarks, which time those recipes' train
steps. Stated once here so that the benchmark times the step that the
experiment trains.
"""

# The offline recipe, on the generated shapes (CPU, minutes): stride 8 gives
# small shapes (12 px) several anchors; 7x7 RoIs and the fewer pre-NMS
# proposals in training took mAP@0.5 from 0.79 to 0.90.
OFFLINE = {
  'image_size': 128,
  'batch_size': 4,
  'backbone': 'small_s8',
  'anchor_scales': (16.0, 32.0, 64.0),
  'rpn_width': 128,
  'fc': (256, 256),
  'roi_op': 'align',
  'roi_size': 7,
  'rpn_pre_nms_train': 1000,
  'rpn_post_nms_train': 128,
}

# Ren et al. 2015 / Girshick 2015 on VOC07: VGG-16, the shorter side 600,
# anchors 128/256/512, RPN 12000/2000 proposals in training, RoI pooling 7x7,
# fc 4096-4096, 2 images a batch.
VOC07 = {
  'image_size': 600,
  'batch_size': 2,
  'backbone': 'vgg16',
  'anchor_scales': (128.0, 256.0, 512.0),
  'rpn_width': 512,
  'fc': (4096, 4096),
  'roi_op': 'pool',
  'roi_size': 7,
  'rpn_pre_nms_train': 12000,
  'rpn_post_nms_train': 2000,
}
