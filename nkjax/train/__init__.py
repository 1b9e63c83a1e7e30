"""Training: state, optimizers, the one loop, checkpoints, sharding, writers.

* `nkjax.train.state`: `TrainState` (flax's, plus `batch_stats`) and `create`;
* `nkjax.train.optim`: optimizers and schedules by name, `build`, `freeze`;
* `nkjax.train.loop`: `fit` (resume, eval, checkpoints, curves),
  `make_evaluator`, `make_predictor`;
* `nkjax.train.steps`: classifier and language-model steps, named keys;
* `nkjax.train.classify`: the classifier experiments' fit and predict;
* `nkjax.train.gan`: one jitted round of the GAN algorithm;
* `nkjax.train.scan`: whole in-memory runs as one `lax.scan`;
* `nkjax.train.checkpoint`: orbax checkpoints and `warm_start`;
* `nkjax.train.restore`: a finished run's variables and config, read-only;
* `nkjax.train.sharding`: the data-parallel mesh;
* `nkjax.train.writers`: metrics.jsonl, TensorBoard, summary.json.

Modules are imported on first use: `nkjax.train.state` and `optim` need only
flax and optax, while `loop` and `checkpoint` bring in orbax and matplotlib.
"""

import importlib

__all__ = [
  'checkpoint',
  'classify',
  'gan',
  'loop',
  'optim',
  'restore',
  'scan',
  'sharding',
  'state',
  'steps',
  'writers',
]


def __getattr__(name: str):
  if name in __all__:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(__all__))
