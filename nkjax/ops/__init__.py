"""Pure jnp ops, written from their definitions: convolution, pooling, layer sizes,
and the detection toolkit (boxes and NMS, anchors, RoI pooling, matching).

* `nkjax.ops.conv`: `conv2d`, `pool2d`, `adaptive_avg_pool` as the course
  defines them (NHWC), and the fast `max_pool` that the models use;
* `nkjax.ops.cpu_dispatch`: `conv_general_dilated`, `conv_transpose` and
  `cpu_fusion_boundary`, the forms XLA:CPU runs fast (XLA's own elsewhere);
* `nkjax.ops.resize`: MATLAB's bicubic `imresize` (JAX, and a NumPy reference);
* `nkjax.ops.lstm`: `lstm_sequence`, an LSTM layer over a whole sequence with
  its weight gradients outside the time loop (what `models.rnn.Recurrent` runs);
* `nkjax.ops.sizes`: output sizes, receptive fields and parameter counts;
* `nkjax.ops.image`: Gaussian kernels, per-channel filtering, random crops and
  flips;
* `nkjax.ops.boxes`: IoU, box encoding, `nms` and `batched_nms` (static shapes,
  a mask beside the kept indices);
* `nkjax.ops.anchors`, `nkjax.ops.roi` (`roi_pool`, `roi_align`),
  `nkjax.ops.matching` (anchor/proposal matching and sampling).

>>> import jax.numpy as jnp
>>> from nkjax.ops import output_size, pool2d
>>> output_size(28, 5, padding=(2, 2))
28
>>> pool2d(jnp.arange(16.0).reshape(1, 4, 4, 1), window=2)[0, ..., 0]
Array([[ 5.,  7.],
       [13., 15.]], dtype=float32)
"""

from nkjax.ops import (
  anchors,
  boxes,
  conv,
  cpu_dispatch,
  image,
  lstm,
  matching,
  resize,
  roi,
  sizes,
)
from nkjax.ops.boxes import batched_nms, nms, pairwise_iou
from nkjax.ops.conv import adaptive_avg_pool, conv2d, pool2d
from nkjax.ops.image import filter2d, gaussian_kernel, random_crop_flip
from nkjax.ops.roi import roi_align, roi_pool
from nkjax.ops.sizes import conv_params, dense_params, output_size, receptive_field

__all__ = [
  'anchors',
  'boxes',
  'conv',
  'cpu_dispatch',
  'image',
  'lstm',
  'matching',
  'resize',
  'roi',
  'sizes',
  'conv2d',
  'pool2d',
  'adaptive_avg_pool',
  'filter2d',
  'gaussian_kernel',
  'random_crop_flip',
  'output_size',
  'receptive_field',
  'conv_params',
  'dense_params',
  'pairwise_iou',
  'nms',
  'batched_nms',
  'roi_pool',
  'roi_align',
]
