"""Training: state, optimizers, the one loop, checkpoints, sharding, writers.

* `nkjax.train.state`: `TrainState` (flax's, plus `batch_stats`) and `create`;
* `nkjax.train.optim`: optimizers and schedules by name, `build`, `freeze`;
* `nkjax.train.loop`: `fit` (resume, eval, checkpoints, curves),
  `make_evaluator`, `make_predictor`;
* `nkjax.train.steps`: classifier and language-model steps, named keys;
* `nkjax.train.classify`: the classifier experiments' fit and predict;
* `nkjax.train.gan`: one jitted round of the GAN algorithm;
* `nkjax.train.sr`, `nkjax.train.detection`: the super-resolution and
  R-CNN family's steps; `sr_eval`, `detection_eval`: their evaluation,
  tables and figures; `alternating`: Faster R-CNN's 4-step training;
  `detection_presets`: the Faster R-CNN recipes' sizes (the experiment's and
  the benchmark's);
* `nkjax.train.scan`: whole in-memory runs as one `lax.scan`;
* `nkjax.train.checkpoint`: orbax checkpoints and `warm_start`;
* `nkjax.train.restore`: a finished run's variables and config, read-only;
* `nkjax.train.run_record`, `nkjax.train.guard`: `run.json` (the config a
  run was started with), and the stop on non-finite or diverged losses;
* `nkjax.train.sharding`: the data-parallel mesh;
* `nkjax.train.writers`: metrics.jsonl, TensorBoard, summary.json.

Modules are imported on first use: `nkjax.train.state` and `optim` need only
flax and optax, while `loop` and `checkpoint` bring in orbax and matplotlib.
"""

from nkjax import _lazy

__all__ = [
  'alternating',
  'checkpoint',
  'classify',
  'detection',
  'detection_eval',
  'detection_presets',
  'gan',
  'guard',
  'loop',
  'optim',
  'restore',
  'run_record',
  'scan',
  'sharding',
  'sr',
  'sr_eval',
  'state',
  'steps',
  'writers',
]


__getattr__, __dir__ = _lazy.submodules(__name__, __all__)
