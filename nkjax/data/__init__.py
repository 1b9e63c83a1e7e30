"""Datasets: embedded offline data, TFDS loaders and batching.

* `nkjax.data.dataset`: `Dataset`, the one record every loader returns;
* `nkjax.data.images`: image classification sets by name (`load('digits')`,
  MNIST, Fashion-MNIST, CIFAR-10, CelebA);
* `nkjax.data.digits`: scikit-learn's 8x8 digits, embedded, fixed split;
* `nkjax.data.text`: the pydoc corpus, vocabularies, windows;
* `nkjax.data.detection`: detection sets by name (`load`): generated shapes
  and digits canvases (`shapes`), VOC and COCO (`voc_coco`), their padded
  targets (`box_targets`), box-moving augmentation (`box_augment`), and
  proposals from OpenCV or sliding windows (`proposals`);
* `nkjax.data.sr`: super-resolution sets (bundled photographs, DIV2K, a
  folder of HR PNGs);
* `nkjax.data.batching`: per-process rows, padded eval batches, `collect`;
* `nkjax.data.tfds_loader`: TFDS through tf.data (imports TensorFlow).

Modules are imported on first use, so TensorFlow is loaded only by the TFDS
paths that need it.
"""

from nkjax import _lazy

__all__ = [
  'batching',
  'box_augment',
  'box_targets',
  'dataset',
  'detection',
  'digits',
  'images',
  'proposals',
  'shapes',
  'sr',
  'text',
  'tfds_loader',
  'voc_coco',
]


__getattr__, __dir__ = _lazy.submodules(__name__, __all__)
