"""Checkpoints with orbax: keep the last N and the best by a named metric.

Saves are atomic (orbax writes to a temporary folder and renames it when the
save is complete) and asynchronous (training continues while files are written),
so a run killed mid-save leaves the previous checkpoints intact.

A checkpoint damaged after the fact (a truncated or zeroed array file, a deleted
metadata file, manifest or commit marker, an emptied step folder) is named in
one line on restore, moved aside to `<directory>-damaged/<step>`, and the run
falls back to the newest readable checkpoint. A reader of another run's
checkpoints (detect, upscale, compare) goes through `nkjax.train.restore`,
which skips a damaged step without moving or writing anything.
"""

import logging as std_logging
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from nkjax.errors import UserError
from nkjax.train.state import param_path

# Files every complete checkpoint of one `StandardSave` item has (orbax 0.12,
# OCDBT format); orbax restores some checkpoints without them, silently.
REQUIRED_FILES = (
  'commit_success.txt',
  os.path.join('default', '_METADATA'),
  os.path.join('default', 'manifest.ocdbt'),
)


def missing_files(step_dir: str) -> str | None:
  """What is missing from a step folder, in words; None if nothing is."""
  if not os.path.isdir(step_dir) or not os.listdir(step_dir):
    return 'the step folder is empty'
  missing = [f for f in REQUIRED_FILES if not os.path.exists(os.path.join(step_dir, f))]
  if missing:
    return f'{", ".join(missing)} missing: the save did not finish or was damaged'
  return None


class _AbandonedReadErrors(std_logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' record of a
  tensorstore read that a failed restore abandoned."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return not (
      record.getMessage().startswith('Task exception was never retrieved')
      and 'tensorstore_spec=' in str(error)
    )


_ABANDONED_READ_ERRORS = _AbandonedReadErrors()


def _quiet_abandoned_reads() -> None:
  # A restore that fails on a damaged array abandons the reads still in
  # flight; each one completes later on a tensorstore thread and, if orbax's
  # event loop has closed, Python prints it as an ignored-exception traceback
  # (dozens per damaged checkpoint, after the one line that names it); if the
  # loop is still open, asyncio logs the read's own error as a task exception
  # never retrieved. Only those are dropped; any other unraisable exception or
  # asyncio error goes where it went.
  std_logging.getLogger('asyncio').addFilter(_ABANDONED_READ_ERRORS)  # once
  previous = sys.unraisablehook
  if getattr(previous, 'drops_abandoned_reads', False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
      return
    previous(unraisable)

  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  detail = text[0] if text else ''
  return f'{type(error).__name__}: {detail[:160]}'


class Checkpointer:
  """Saves and restores a train state under `directory`, one folder per step.

  Args:
    directory: where the step folders live; created on the first save.
    keep: how many of the latest checkpoints to keep.
    best_metric: a key of the metrics passed to `save`; when set, the best
      checkpoint by it is kept too, however old.
    best_mode: 'max' or 'min': which end of `best_metric` is best.
  """

  def __init__(
    self,
    directory: str,
    *,
    keep: int = 3,
    best_metric: str | None = None,
    best_mode: str = 'max',
  ):
    if keep < 1:
      raise UserError(f'keep_checkpoints must be >= 1, got {keep}')
    if best_mode not in ('max', 'min'):
      raise UserError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    self.directory = os.path.abspath(directory)
    self.best_metric = best_metric
    policies = [pp.LatestN(n=keep)]
    if best_metric is not None:
      policies.append(
        pp.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric],
          # BestN keeps the tail of an ascending sort: the largest values.
          reverse=best_mode == 'min',
          n=1,
          keep_checkpoints_without_metrics=False,
        )
      )
    self._manager = ocp.CheckpointManager(
      self.directory,
      item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=True,
        create=False,
      ),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, metrics: dict[str, float] | None = None) -> None:
    """Starts an asynchronous save of `state` as checkpoint `step`."""
    if self.best_metric is not None and metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()}
      if self.best_metric not in metrics:
        raise UserError(
          f'best checkpoint metric {self.best_metric!r} is not among the eval '
          f'metrics: {", ".join(sorted(metrics))}'
        )
    else:
      metrics = None
    self._manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics)

  def damage(self, step: int) -> str | None:
    """Why checkpoint `step` cannot be read, in words; None if it can.

    Checks the files a complete save leaves, then reads every array back
    without a target (so that a model mismatch is not mistaken for damage).
    """
    missing = missing_files(os.path.join(self.directory, str(step)))
    if missing:
      return missing
    _quiet_abandoned_reads()
    try:
      self._manager.restore(step, args=ocp.args.StandardRestore())
    except Exception as e:  # noqa: BLE001 - tensorstore raises bare Exceptions
      return f'unreadable ({_first_line(e)})'
    return None

  def restore(self, state, step: int | None = None):
    """Restores checkpoint `step` (default: the newest readable one) into the
    structure, dtypes and shardings of `state`; returns `state` itself if there
    is none.

    Without `step`, a damaged checkpoint is named in one warning line, moved
    to `<directory>-damaged/<step>` (by process 0) and the next newest is
    tried. The step restored is the
    returned state's.

    Raises:
      UserError: no checkpoint is readable (nothing is moved then), `step` is
        damaged, or the checkpoint does not fit `state` (another model).
    """
    steps = sorted(self.all_steps(), reverse=True) if step is None else [step]
    if not steps:
      return state
    damaged = []
    for s in steps:
      why = self.damage(s)
      if why is None:
        break
      damaged.append((s, why))
    else:
      listed = '; '.join(f'step {s}: {why}' for s, why in damaged)
      raise UserError(
        f'no readable checkpoint in {self.directory} ({listed}); use another '
        '--workdir, or move the damaged step folders away to start again'
      )
    for bad, why in damaged:
      aside = os.path.join(f'{self.directory}-damaged', str(bad))
      logging.warning(
        'Checkpoint step %d in %s is damaged (%s); moved to %s, falling back to step %d.',
        bad, self.directory, why, aside, s,
      )  # fmt: skip
      if jax.process_index() == 0:
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(os.path.join(self.directory, str(bad)), aside)
    if damaged:
      self._manager.reload()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      return self._manager.restore(s, args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(
        f'the checkpoint at step {s} in {self.directory} does not fit this '
        f"run's model ({type(e).__name__}); use another --workdir or the config "
        'that wrote it'
      ) from e

  def wait(self) -> None:
    """Blocks until every save in flight is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _get(tree, keys: list[str], what: str):
  for i, key in enumerate(keys):
    try:
      tree = tree[key] if isinstance(tree, Mapping) else getattr(tree, key)
    except (KeyError, AttributeError):
      raise UserError(
        f'{what} has no {".".join(keys[: i + 1])!r}; name a sub-tree it holds'
      ) from None
  return tree


def _set(tree, keys: list[str], value):
  if not keys:
    return value
  key, rest = keys[0], keys[1:]
  if isinstance(tree, Mapping):
    return {**tree, key: _set(tree[key], rest, value)}
  return tree.replace(**{key: _set(getattr(tree, key), rest, value)})


def warm_start(
  state: Any,
  *,
  source_workdir: str,
  source: str = 'params',
  target: str = 'params',
) -> Any:
  """`state` with its sub-tree `target` taken from another run's latest checkpoint.

  For `loop.fit(..., warm_start=functools.partial(warm_start, source_workdir=...))`:
  SRGAN's generator starts from the SRResNet run (`target='g.params'`), a
  detector's stage starts from the previous stage's weights.

  Args:
    state: this run's initial state (a `TrainState`, a GAN state, ...).
    source_workdir: the other run's workdir (its `checkpoints/` is read).
    source, target: dotted paths of the sub-trees in the checkpointed state
      and in `state`, e.g. 'params', 'g.params', 'params.backbone'.

  Raises:
    UserError: one line naming both paths when the source has no checkpoint,
      or the first parameter whose path or shape differs.
  """
  directory = os.path.abspath(os.path.join(source_workdir, 'checkpoints'))
  here = _get(state, target.split('.'), "this run's state")
  manager = (
    ocp.CheckpointManager(
      directory,
      item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(create=False, read_only=True),
    )
    if os.path.isdir(directory)
    else None
  )
  step = manager.latest_step() if manager is not None else None
  if step is None:
    raise UserError(
      f'no checkpoint to warm-start {target!r} from in {directory}; train that run '
      'first or point the warm-start option at another workdir'
    )
  try:
    tree = manager.item_metadata(step).tree
    # Restored as numpy on the host; fit places the state on the mesh.
    like = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restored = manager.restore(step, args=ocp.args.StandardRestore(like))
  finally:
    manager.close()
  there = _get(
    restored, source.split('.'), f'the checkpoint at step {step} in {directory}'
  )
  want = {param_path(k): v for k, v in jax.tree_util.tree_flatten_with_path(here)[0]}
  got = {param_path(k): v for k, v in jax.tree_util.tree_flatten_with_path(there)[0]}
  for p in sorted(want.keys() | got.keys()):
    a, b = want.get(p), got.get(p)
    if a is None or b is None or np.shape(a) != np.shape(b):
      shape = lambda x: 'missing' if x is None else tuple(np.shape(x))  # noqa: E731
      raise UserError(
        f'cannot warm-start {target!r} of this run from {source!r} of {directory} '
        f'(step {step}): parameter {p} is {shape(a)} here and {shape(b)} there'
      )
  new = jax.tree.unflatten(
    jax.tree.structure(here),
    [np.asarray(got[p], dtype=np.asarray(v).dtype) for p, v in want.items()],
  )
  return _set(state, target.split('.'), new)
