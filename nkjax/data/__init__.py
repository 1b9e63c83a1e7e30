"""Datasets: embedded offline data, TFDS loaders and batching.

* `nkjax.data.dataset`: `Dataset`, the one record every loader returns;
* `nkjax.data.images`: image classification sets by name (`load('digits')`,
  MNIST, Fashion-MNIST, CIFAR-10, CelebA);
* `nkjax.data.digits`: scikit-learn's 8x8 digits, embedded, fixed split;
* `nkjax.data.text`: the pydoc corpus, vocabularies, windows;
* `nkjax.data.detection`: generated shapes and digits canvases, VOC, COCO;
* `nkjax.data.batching`: per-process rows, padded eval batches, `collect`;
* `nkjax.data.tfds_loader`: TFDS through tf.data (imports TensorFlow).

Modules are imported on first use, so TensorFlow is loaded only by the TFDS
paths that need it.
"""

import importlib

__all__ = [
  'batching',
  'dataset',
  'detection',
  'digits',
  'images',
  'text',
  'tfds_loader',
]


def __getattr__(name: str):
  if name in __all__:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(__all__))
