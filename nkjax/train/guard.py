"""Stops a run whose losses are not finite or have diverged, before it is saved.

The loop hands `LossGuard.check` every step's metrics once they are on the
host, before any checkpoint of that step is written, so the last checkpoint is
always of a state that passed.
"""

from collections.abc import Callable, Mapping

import numpy as np

from nkjax.train import run_record


class DivergedError(FloatingPointError):
  """A loss grew past `divergence_factor` times its first value."""


class LossGuard:
  """Checks each step's `(sum, count)` metrics.

  * Every metric whose name contains `loss` (`loss`, `d_loss`, `g_loss`,
    `loss_l2`) must be finite.
  * `loss_key`'s per-step mean must stay at or below `divergence_factor` times
    its first value: the first step's, kept in the run record so that a
    resumed run compares against the same figure. A first value <= 0 (a
    Wasserstein critic's) turns the divergence check off.

  Args:
    workdir: where the run record keeps the first value.
    loss_key: the metric checked for divergence.
    divergence_factor: the multiple; 0 or None turns the divergence check off.
    last_checkpoint: `() -> str`, the last good checkpoint in words, for the
      message.
    write: False on every process but the first.
  """

  def __init__(
    self,
    *,
    workdir: str,
    loss_key: str,
    divergence_factor: float | None,
    last_checkpoint: Callable[[], str],
    write: bool = True,
  ):
    self._workdir = workdir
    self._key = loss_key
    self._factor = divergence_factor or None
    self._last_checkpoint = last_checkpoint
    self._write = write
    record = run_record.read(workdir) or {}
    ref = record.get('loss_reference')
    self._reference = (
      (int(ref['step']), float(ref['value']))
      if ref and ref.get('key') == loss_key
      else None
    )

  def check(self, step: int, metrics: Mapping) -> None:
    """Raises `FloatingPointError` (`DivergedError` for divergence) naming the
    step, the metric and the last good checkpoint."""
    for name in sorted(metrics):
      if 'loss' not in name:
        continue
      total, count = metrics[name]
      if not np.all(np.isfinite(total)):
        raise FloatingPointError(
          f'non-finite {name} ({float(np.asarray(total).ravel()[0])}) at step {step}; '
          f'last good checkpoint: {self._last_checkpoint()}, left intact'
        )
    if self._factor is None or self._key not in metrics:
      return
    total, count = metrics[self._key]
    value = float(total) / max(float(count), 1.0)
    if self._reference is None:
      self._reference = (step, value)
      if self._write:
        run_record.update(
          self._workdir,
          loss_reference={'key': self._key, 'step': step, 'value': value},
        )
      return
    ref_step, ref = self._reference
    if ref > 0 and value > self._factor * ref:
      raise DivergedError(
        f'{self._key} diverged: {value:.4g} at step {step} is over '
        f'{self._factor:g}x its first value {ref:.4g} (step {ref_step}); last good '
        f'checkpoint: {self._last_checkpoint()}, left intact; lower the learning '
        'rate, or pass --config.divergence_factor=0 to turn this check off'
      )
