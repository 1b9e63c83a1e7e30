"""nkjax: a deep-learning course as tested, runnable JAX code.

Subpackages and modules (each imported on first use, so `import nkjax` is cheap
and `nkjax.models` pulls in flax but never TensorFlow, matplotlib or orbax):

* `nkjax.models`: flax.linen networks by name: MLP, LeNet5, AlexNet, VGG11-19,
  ResNet18-56, the RNN/LSTM/GRU cells and layers, the GAN generators and
  discriminators, SRCNN, VDSR, SRResNet and the SRGAN discriminator
  (`models.sr`), R-CNN, Fast R-CNN and Faster R-CNN with their backbones and
  heads (`models.detection`, `backbones`, `detection_heads`).
* `nkjax.ops`: the course's ops from their definitions: `conv2d`, `pool2d`,
  layer sizes, image filters, MATLAB's bicubic resize, the LSTM layer; boxes,
  anchors, matching and RoI pooling for detection; `cpu_dispatch`, the CPU's
  fast forms.
* `nkjax.metrics`: `(sum, count)` metrics merged on the host, the Frechet
  distance; `metrics.image` for PSNR and SSIM, `metrics.detection` for VOC
  and COCO AP.
* `nkjax.losses`: per-example losses (classification, GAN, SR pixel and VGG
  content, detection) and L1/L2 penalties.
* `nkjax.backprop`: forward and backward passes by hand, as the chain rule
  states them.
* `nkjax.train`: train state, optimizers (`optim.build`), the one training
  loop (`loop.fit`, `loop.make_predictor`), orbax checkpoints, reading a
  finished run (`restore`), sharding, the GAN round, the SR and detection
  steps and their evaluation, alternating Faster R-CNN training.
* `nkjax.data`: the embedded digits, TFDS loaders, batching, SR photographs and
  patches, detection sets and proposals.
* `nkjax.weights`: torchvision, Keras and nkjax weight files -> parameter trees.
* `nkjax.viz`: curves, SR side-by-sides and boxes -> PNG (matplotlib, Agg).
* `nkjax.launch`, `nkjax.validate`: the one absl launcher that every experiment
  runs through, and its config checks.
* `nkjax.errors`: `UserError`, bad input reported as one line.
* `nkjax.bench`, `nkjax.bench_torch`, `nkjax.bench_torch_detection`,
  `nkjax.profile`: step timings against PyTorch (Faster R-CNN's equivalent in
  its own module), and op-by-op profiles.

The library never reads flags or configs: experiments in `experiments/` do, and
pass explicit keyword arguments to the functions here. docs/library.md shows
three tested examples.

>>> import nkjax
>>> nkjax.models.LeNet5(num_classes=10).num_classes
10
"""

from nkjax import _lazy

__version__ = '0.1.0'

# The GitHub repository (owner/name) nkjax is published under: the one place
# the README's Open-in-Colab badge and the notebook's install step are built
# from (tests/test_notebook.py checks both against it).
REPOSITORY = 'nkjax/nkjax'
NOTEBOOK = 'notebooks/nkjax_colab.ipynb'


def colab_url(branch: str = 'main') -> str:
  """The Colab address that opens the notebook from the repository."""
  return (
    f'https://colab.research.google.com/github/{REPOSITORY}/blob/{branch}/{NOTEBOOK}'
  )


# Loaded on first attribute access (PEP 562): `import nkjax` imports nothing
# heavy, and each subpackage costs only what it imports itself.
_SUBMODULES = (
  'backprop',
  'bench',
  'bench_torch',
  'bench_torch_detection',
  'data',
  'errors',
  'launch',
  'losses',
  'metrics',
  'models',
  'ops',
  'profile',
  'train',
  'validate',
  'viz',
  'weights',
)

# Importable only with PyTorch installed: lazy like the others, not in `__all__`.
_OPTIONAL = ('bench_torch', 'bench_torch_detection')

__all__ = [
  '__version__',
  'REPOSITORY',
  'NOTEBOOK',
  'colab_url',
  *(m for m in _SUBMODULES if m not in _OPTIONAL),
]

__getattr__, __dir__ = _lazy.submodules(__name__, _SUBMODULES)
