"""Checkpoints with orbax: keep the last N and the best by a named metric.

Saves are atomic (orbax writes to a temporary folder and renames it when the
save is complete) and asynchronous (training continues while files are written),
so a run killed mid-save leaves the previous checkpoints intact.
"""

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from nkjax.errors import UserError


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

  def restore(self, state, step: int | None = None):
    """Restores checkpoint `step` (default: the latest) into the structure,
    dtypes and shardings of `state`; returns `state` itself if there is none."""
    step = self.latest_step() if step is None else step
    if step is None:
      return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(
        f'the checkpoint at step {step} in {self.directory} does not fit this '
        f"run's model ({type(e).__name__}); use another --workdir or the config "
        'that wrote it'
      ) from e

  def wait(self) -> None:
    """Blocks until every save in flight is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
