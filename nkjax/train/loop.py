"""The one training loop that every experiment uses.

The loop knows nothing about the model. An experiment hands it

* `state`: any pytree with an integer `step` field (a `TrainState`, or a
  struct of two of them for a GAN);
* `train_step(state, batch, rng) -> (state, metrics)`: one update, or one
  round of several (a GAN's k discriminator updates and one generator update),
  pure and un-jitted; static options already bound with `functools.partial`;
  `metrics` maps names to `(sum, count)` pairs (`nkjax.metrics`);
* `train_batches(start_step)`: an iterator of this process's rows of each
  global batch, a dict of arrays whose leading axis is the batch; variable-size
  targets are padded to fixed shapes with a mask, so every batch has one shape;
* `eval_fn(state) -> dict[str, float]`: any host-side evaluation (mean
  metrics through `make_evaluator`, or mAP, PSNR, a Frechet distance);
* optionally `frozen`: arrays the step reads but never trains (a frozen VGG19
  for a content loss, a frozen backbone); the step is then
  `train_step(state, batch, rng, frozen)`;
* optionally `warm_start(state) -> state`, applied when the workdir has no
  checkpoint yet (parameters from another run: `checkpoint.warm_start`), and
  `summarize(state) -> dict`, the experiment's own figures for `summary.json`.

and gets back the final state and the run's summary. Resume is the default:
when `workdir` holds checkpoints, training continues from the latest one.
Whole-set predictions on the host (PSNR per image, detections for mAP, a
confusion matrix) come from `make_predictor`.
"""

import dataclasses
import json
import operator
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from nkjax import metrics as metrics_lib
from nkjax import viz
from nkjax.data import batching
from nkjax.train import checkpoint, guard, sharding, writers

StepFn = Callable[[Any, Any, jax.Array], tuple[Any, metrics_lib.Metrics]]


@dataclasses.dataclass
class FitResult:
  state: Any
  summary: dict


def jit_train_step(train_step: StepFn, mesh: Mesh, *, frozen: bool = False) -> StepFn:
  """`train_step` jitted for data parallelism: state and key replicated, batch
  split along axis 0; the input state's buffers are donated to the output.

  With `frozen`, the step takes a fourth argument, replicated and not donated:
  an argument rather than a closure, so that its arrays are inputs of the
  compiled program and not constants baked into it.
  """
  repl, data = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(
    train_step,
    in_shardings=(repl, data, repl, repl) if frozen else (repl, data, repl),
    out_shardings=(repl, repl),
    donate_argnums=0,
  )


def jit_train_steps(train_step: StepFn, mesh: Mesh, *, frozen: bool = False) -> StepFn:
  """Several steps of `train_step` in one compiled call: `(state, batches, rng)
  -> (state, metrics)`, a `lax.scan` over `batches`, whose leaves are `[n, b,
  ...]` (n steps of a batch each, split along axis 1); `metrics` come back
  stacked, `[n, ...]` per leaf. Shardings and donation as `jit_train_step`'s.

  In the program for a CPU the scan is unrolled: XLA:CPU compiles the body of
  a loop with other kernels than a lone step (LeNet-5's parameters came out up
  to 3e-7 apart after 12 steps), and unrolled, the n steps are the single
  step's program n times over, bitwise equal to it. Compilation grows with n,
  so keep n small (4-32): this is for models whose step is short. The program
  for a GPU or TPU keeps the loop (`jax.lax.platform_dependent`, resolved when
  the program is lowered for its platform): its body compiles once, and
  results are those of that loop, the same on every run and resume but not
  bitwise those of n single steps."""
  repl = sharding.replicated(mesh)
  stacked = sharding.stacked_batch_sharded(mesh)

  def run(state, batches, rng, *extra):
    def scan(unroll):
      def loop(state, batches, rng, *extra):
        return jax.lax.scan(
          lambda s, b: train_step(s, b, rng, *extra), state, batches, unroll=unroll
        )

      return loop

    return jax.lax.platform_dependent(
      state, batches, rng, *extra, cpu=scan(True), default=scan(1)
    )

  return jax.jit(
    run,
    in_shardings=(repl, stacked, repl, repl) if frozen else (repl, stacked, repl),
    out_shardings=(repl, repl),
    donate_argnums=0,
  )


def _steps_this_call(
  step: int, *, steps_per_call: int, num_steps: int, cadences: tuple[int, ...]
) -> int:
  """How many steps the call that starts after `step` runs: `steps_per_call`,
  fewer where a cadence (log, eval, checkpoint) or the last step falls sooner,
  so that each of them lands exactly on a call boundary."""
  boundary = num_steps
  for every in cadences:
    if every > 0:
      boundary = min(boundary, (step // every + 1) * every)
  return max(1, min(steps_per_call, boundary - step))


def _jit_on_batches(fn, mesh: Mesh, *, split_batch: bool, jit: bool):
  """`fn(state, batch)` jitted with the state replicated and the batch split
  (or replicated), its outputs replicated so that every process holds them all."""
  if not jit:
    return fn
  repl = sharding.replicated(mesh)
  data = sharding.batch_sharded(mesh) if split_batch else repl
  return jax.jit(fn, in_shardings=(repl, data), out_shardings=repl)


def make_evaluator(
  eval_step: Callable[[Any, Any], metrics_lib.Metrics],
  batches: Callable[[], Iterable],
  *,
  mesh: Mesh,
  split_batch: bool = True,
  jit: bool = True,
) -> Callable[[Any], dict[str, float]]:
  """An `eval_fn` that averages `eval_step(state, batch)` over one pass of `batches()`.

  Batches are padded to one shape with a `mask` so that every example counts
  once; the `(sum, count)` pairs are added over batches and divided on the host.
  `split_batch=False` replicates each batch on every device instead of
  splitting it (each process then passes whole batches): for inputs that do
  not split over the devices, such as one full-size image at a time.
  """
  step = _jit_on_batches(eval_step, mesh, split_batch=split_batch, jit=jit)

  def evaluate(state) -> dict[str, float]:
    outs = [
      step(state, sharding.shard_batch(b, mesh, split=split_batch)) for b in batches()
    ]
    return metrics_lib.compute(metrics_lib.merge(outs))

  return evaluate


def make_predictor(
  predict_step: Callable[[Any, Any], Mapping[str, jax.Array]],
  *,
  mesh: Mesh,
  split_batch: bool = True,
  jit: bool = True,
) -> Callable[[Any, Iterable], dict[str, np.ndarray]]:
  """Whole-set prediction on the host: `predict(state, batches) -> arrays`.

  `predict_step(state, batch)` returns a dict of per-example arrays `[b, ...]`;
  it is jitted once, here. `predict` runs it over an iterable of padded
  batches (each with `mask` `[b]`) and returns its outputs concatenated over
  the real examples, beside the batch's own arrays (except `mask`), as numpy.
  Outputs and inputs come back replicated, so with several processes every
  process gets every example, not only its own rows.

  `split_batch=False` replicates each batch on every device instead of
  splitting it: full-size test images of different shapes are evaluated one
  at a time this way (batch 1 on 8 devices), and each process passes the
  whole batch.

  Ten examples in two padded batches of 8: the 6 padding rows are dropped.

  >>> import jax.numpy as jnp, numpy as np
  >>> from nkjax.data import batching
  >>> from nkjax.train import sharding
  >>> predict = make_predictor(
  ...   lambda state, batch: {'double': 2 * batch['x'] + state},
  ...   mesh=sharding.data_mesh(),
  ... )
  >>> arrays = {'x': np.arange(10.0, dtype=np.float32)}
  >>> out = predict(jnp.float32(1), batching.eval_batches(arrays, batch_size=8))
  >>> sorted(out), out['double'].tolist()
  (['double', 'x'], [1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0, 19.0])
  """

  def outputs_and_inputs(state, batch):
    out = dict(predict_step(state, batch))
    clash = sorted(set(out) & set(batch))
    if clash:
      raise ValueError(f'predict_step outputs {clash} shadow batch arrays')
    return {**batch, **out}

  step = _jit_on_batches(outputs_and_inputs, mesh, split_batch=split_batch, jit=jit)

  def predict(state, batches: Iterable) -> dict[str, np.ndarray]:
    def host_batches():
      for b in batches:
        yield jax.device_get(
          step(state, sharding.shard_batch(b, mesh, split=split_batch))
        )

    return batching.collect(host_batches())

  return predict


def _unaliased(tree):
  """Copies any array that appears twice in `tree`.

  The jitted step donates the state's buffers, and XLA refuses to donate one
  buffer twice (an EMA initialised to the very parameter arrays, say).
  """
  seen = set()

  def fresh(x):
    if isinstance(x, jax.Array) and id(x) in seen:
      return x.copy()
    seen.add(id(x))
    return x

  return jax.tree.map(fresh, tree)


def _unstack(tree, n: int) -> list:
  """`n` trees from one whose leaves are stacked along a leading axis of n."""
  return [jax.tree.map(operator.itemgetter(i), tree) for i in range(n)]


def _last_logged(workdir: str, prefix: str, *, up_to: int) -> dict[str, float]:
  """The metrics under `prefix` of the last `metrics.jsonl` row up to step
  `up_to` that has them, without the prefix."""
  for row in reversed(writers.read_metrics(workdir)):
    logged = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}
    if logged and row.get('step', 0) <= up_to:
      return logged
  return {}


def _due(step: int, every: int, last: int) -> bool:
  return step == last or (every > 0 and step % every == 0)


def fit(
  *,
  state: Any,
  train_step: StepFn,
  train_batches: Callable[[int], Iterator],
  num_steps: int,
  workdir: str,
  rng: jax.Array,
  mesh: Mesh,
  examples_per_step: int,
  eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
  eval_every: int = 0,
  log_every: int = 100,
  checkpoint_every: int = 0,
  keep_checkpoints: int = 3,
  best_metric: str | None = None,
  best_mode: str = 'max',
  loss_key: str = 'loss',
  divergence_factor: float | None = 1000.0,
  sync_every: int = 16,
  steps_per_call: int = 1,
  config: Mapping | None = None,
  jit: bool = True,
  frozen: Any = None,
  warm_start: Callable[[Any], Any] | None = None,
  summarize: Callable[[Any], Mapping] | None = None,
  loss_unit: str | None = None,
) -> FitResult:
  """Trains `state` to `num_steps`, resuming from `workdir` if it holds checkpoints.

  Args:
    state: the initial state; replaced by the latest checkpoint if one exists.
      Its buffers are donated to the first step: do not reuse it afterwards.
    train_step: `(state, batch, rng) -> (state, metrics)`; it derives its own
      per-step keys, e.g. `jax.random.fold_in(rng, state.step)`, so a resumed
      run draws the same keys as an uninterrupted one.
    train_batches: `start_step -> iterator` of host batches (this process's rows).
    num_steps: the step to train to (counted from zero, not from a resume).
    workdir: checkpoints, metrics and pictures go here.
    rng: the run's root key, passed unchanged to every step.
    mesh: the data-parallel mesh (`sharding.data_mesh()`).
    examples_per_step: global examples per step, for the examples/s figure.
    eval_fn: evaluation on the host, at `eval_every` and at the end; its
      metrics are logged as `eval/<name>`.
    eval_every, log_every, checkpoint_every: cadences in steps (0: only at
      the end, for eval and checkpoints).
    best_metric: an `eval_fn` metric name (without `eval/`) whose best
      checkpoint is kept beside the latest ones; needs checkpoints at eval steps.
    loss_key: the metric checked for divergence after every step; every
      metric whose name contains `loss` is checked for non-finite values.
    loss_unit: the unit of the loss, on curves.png's loss axis (e.g. 'nats,
      cross-entropy'); None names none.
    divergence_factor: stop when `loss_key` exceeds this multiple of its first
      value (`guard.LossGuard`); 0 or None: never.
    sync_every: the host waits for the device at least this often. Dispatching
      ~100 sharded steps without waiting has hung XLA's CPU all-reduce.
    steps_per_call: train steps per compiled call (`jit_train_steps`: a
      `lax.scan` over that many stacked batches), for models whose one step is
      too short to amortise the host's dispatch. Calls end exactly at every
      log, eval and checkpoint step (a call before one runs fewer steps, a
      second compiled program), so cadences, metrics and results are those of
      single steps; the loss guard still checks every step.
    config: stored in `summary.json`.
    jit: False runs the steps eagerly, for debugging.
    frozen: a pytree of arrays passed to every step as a fourth argument,
      `train_step(state, batch, rng, frozen)`: replicated on the mesh, never
      donated, trained or checkpointed (a frozen feature extractor).
    warm_start: `state -> state`, applied to the initial state when `workdir`
      holds no checkpoint (e.g. `functools.partial(checkpoint.warm_start,
      source_workdir=...)`); a resumed run continues from its own checkpoint.
    summarize: `state -> dict` of the experiment's own figures (a PSNR table,
      mAP), called once with the final state and merged into `summary.json`.

  Returns:
    `FitResult(state, summary)`: the final state and the dict also written to
    `workdir/summary.json` (`steps`, `resumed_from_step`, `train` and `eval`
    metrics, `examples_per_second`, ...).

  A run already at `num_steps` (a rerun of a finished run) trains nothing and
  writes nothing: the result carries the summary already on disk.

  Raises:
    FloatingPointError: when a loss is not finite, or `loss_key` diverged
      (`guard.DivergedError`), naming the step and the last good checkpoint
      (which is left untouched).

  Logistic regression on 64 points labelled by the sign of their first
  coordinate, 20 full-batch steps; a second call with the same workdir
  restores the final checkpoint and trains no further:

  >>> import tempfile, jax, jax.numpy as jnp, numpy as np, optax
  >>> from nkjax.models import MLP
  >>> from nkjax.train import sharding, state, steps
  >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
  >>> data = {'image': x, 'label': (x[:, 0] > 0).astype(np.int32)}
  >>> def batches(start_step):
  ...   while True:
  ...     yield data
  >>> def new_state():  # fit donates the buffers of the state it is given
  ...   return state.create(model=MLP(hidden=(), num_outputs=2), tx=optax.sgd(1.0),
  ...                       rng=jax.random.key(0), inputs=(jnp.zeros((1, 4)),))
  >>> workdir = tempfile.mkdtemp()
  >>> kwargs = dict(train_step=steps.classifier_train_step, train_batches=batches,
  ...               num_steps=20, workdir=workdir, rng=jax.random.key(1),
  ...               mesh=sharding.data_mesh(), examples_per_step=64, log_every=10)
  >>> result = fit(state=new_state(), **kwargs)
  >>> int(result.state.step), result.summary['train']['accuracy'] > 0.9
  (20, True)
  >>> sorted(os.listdir(workdir))
  ['checkpoints', 'curves.png', 'metrics.jsonl', 'run.json', 'summary.json', 'tensorboard']
  >>> again = fit(state=new_state(), **kwargs)
  >>> int(again.state.step), again.summary['steps']
  (20, 20)
  """
  t_start = time.perf_counter()
  first_process = jax.process_index() == 0
  ckpt = checkpoint.Checkpointer(
    os.path.join(workdir, 'checkpoints'),
    keep=keep_checkpoints,
    best_metric=best_metric,
    best_mode=best_mode,
  )
  if warm_start is not None and ckpt.latest_step() is None:
    state = warm_start(state)
  state = ckpt.restore(_unaliased(sharding.replicate(state, mesh)))
  start = int(state.step)
  if start:
    logging.info(
      'Resuming from the checkpoint at step %d in %s.', start, ckpt.directory
    )

  if start >= num_steps and os.path.exists(os.path.join(workdir, 'summary.json')):
    ckpt.close()
    logging.info('The run in %s is already at step %d: nothing to do.', workdir, start)
    with open(os.path.join(workdir, 'summary.json')) as f:
      return FitResult(state=state, summary=json.load(f))
  if steps_per_call < 1:
    raise ValueError(f'steps_per_call must be at least 1, got {steps_per_call}')
  step_fn = (
    jit_train_step(train_step, mesh, frozen=frozen is not None) if jit else train_step
  )
  several_fn = (
    jit_train_steps(train_step, mesh, frozen=frozen is not None)
    if jit and steps_per_call > 1
    else None
  )
  extra_args = () if frozen is None else (sharding.replicate(frozen, mesh),)
  rng = sharding.replicate(rng, mesh)

  checks = guard.LossGuard(
    workdir=workdir,
    loss_key=loss_key,
    divergence_factor=divergence_factor,
    last_checkpoint=lambda: f'step {ckpt.latest_step()} in {ckpt.directory}',
    write=first_process,
  )
  progress = writers.Progress(total=num_steps, initial=start, enabled=first_process)
  writer = writers.MetricWriter(
    workdir, write_files=first_process, console=progress.log, resume_step=start
  )
  # Dispatched calls whose metrics are unchecked: (first step, steps, metrics),
  # the metrics stacked along a leading axis when steps > 1.
  pending: list[tuple[int, int, Any]] = []
  window: list[Mapping] = []  # checked metrics since the last log line
  eval_metrics: dict[str, float] = {}
  train_metrics: dict[str, float] = {}
  train_seconds = 0.0
  first_window = None  # (steps, seconds) of the first window, which compiles
  batches = train_batches(start)
  cadences = (log_every, eval_every if eval_fn is not None else 0, checkpoint_every)
  try:
    t_window = time.perf_counter()
    step = synced = start
    while step < num_steps:
      n = 1
      if several_fn is not None:
        n = _steps_this_call(
          step, steps_per_call=steps_per_call, num_steps=num_steps, cadences=cadences
        )
      if n == 1:
        batch = sharding.shard_batch(next(batches), mesh)
        state, step_metrics = step_fn(state, batch, rng, *extra_args)
      else:
        stacked = jax.tree.map(
          lambda *rows: np.stack(rows), *[next(batches) for _ in range(n)]
        )
        state, step_metrics = several_fn(
          state, sharding.shard_stacked_batch(stacked, mesh), rng, *extra_args
        )
      pending.append((step + 1, n, step_metrics))
      step += n
      is_log = _due(step, log_every, num_steps)
      is_eval = eval_fn is not None and _due(step, eval_every, num_steps)
      is_ckpt = _due(step, checkpoint_every, num_steps)
      if not (is_log or is_eval or is_ckpt or step - synced >= sync_every):
        continue

      host = jax.device_get([m for _, _, m in pending])
      for (first, count, _), m in zip(pending, host, strict=True):
        rows = [m] if count == 1 else _unstack(m, count)
        for i, row in enumerate(rows):
          checks.check(first + i, row)
          window.append(row)
      pending.clear()
      synced = step
      now = time.perf_counter()
      train_seconds += now - t_window
      if first_window is None:
        first_window = (step - start, now - t_window)
      progress.update(step)
      if is_log:
        train_metrics = metrics_lib.compute(metrics_lib.merge(window))
        window.clear()
        writer.write(step, {f'train/{k}': v for k, v in train_metrics.items()})
      if is_eval:
        eval_metrics = dict(eval_fn(state))
        writer.write(step, {f'eval/{k}': v for k, v in eval_metrics.items()})
      if is_ckpt:
        ckpt.save(step, state, metrics=eval_metrics if is_eval else None)
      t_window = time.perf_counter()
  finally:
    progress.close()
    writer.close()
    ckpt.wait()
    ckpt.close()

  if start >= num_steps and eval_fn is not None:
    eval_metrics = dict(eval_fn(state))
  if start >= num_steps and not train_metrics:
    # Killed after its last checkpoint, before summary.json: the train
    # figures are the last it logged.
    train_metrics = _last_logged(workdir, 'train/', up_to=start)
  steps_run = num_steps - start
  # Throughput after the first window, which holds the compilation.
  steady_steps = steps_run - (first_window or (0, 0))[0]
  steady_seconds = train_seconds - (first_window or (0, 0))[1]
  summary = {
    'steps': num_steps,
    'resumed_from_step': start,
    'wall_seconds': time.perf_counter() - t_start,
    'train_seconds': train_seconds,
    'first_window': {'steps': first_window[0], 'seconds': first_window[1]}
    if first_window
    else None,
    'examples_per_second': steady_steps * examples_per_step / steady_seconds
    if steady_steps > 0
    else None,
    'devices': int(mesh.devices.size),
    'platform': jax.default_backend(),
    'train': train_metrics,
    'eval': eval_metrics,
    'config': dict(config or {}),
  }
  if summarize is not None:
    extra = dict(summarize(state))
    clash = sorted(set(extra) & set(summary))
    if clash:
      raise ValueError(f'summarize() returned keys the loop writes itself: {clash}')
    summary.update(extra)
  if first_process:
    writers.write_summary(workdir, summary)
    rows = writers.read_metrics(workdir)
    if rows:
      viz.plot_curves(
        rows, os.path.join(workdir, 'curves.png'), title=os.path.basename(workdir),
        loss_unit=loss_unit,
      )  # fmt: skip
  return FitResult(state=state, summary=summary)
