"""Checks on a run's inputs, made before anything is written.

Each experiment declares its rules compactly, one per config field:

    CHECKS = {
      'batch_size': validate.count,
      'learning_rate': validate.learning_rate,
      'dropout_rate': validate.optional(validate.fraction),
      'hidden': validate.each(validate.count),
    }

and the launcher applies them (`config(...)`) and checks the workdir
(`workdir(...)`) before it imports JAX or creates a file. A rule that fails is
one line naming the field, the value and the valid range. This module imports
nothing heavy, so that bad input costs a person no more than Python's start.
"""

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from nkjax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Rule:
  """A check on one config value.

  Attributes:
    test: value -> whether it is valid; never raises for a value of the
      field's type.
    valid: the valid range in words, as the error message quotes it
      ('an integer >= 1').
  """

  test: Callable[[Any], bool]
  valid: str
  choices: tuple | None = None  # a name's rule: the message lists them

  def __call__(self, value) -> bool:
    return self.test(value)


def _number(value) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def at_least(low: int) -> Rule:
  """An integer >= `low`: sizes, counts, steps (`low=1`), cadences (`low=0`)."""
  return Rule(
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
    f'an integer >= {low}',
  )


def interval(
  low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Rule:
  """A finite number in [low, high], either end open if asked."""
  lo, hi = '(' if low_open else '[', ')' if high_open else ']'

  def test(v):
    if not _number(v) or not math.isfinite(v):
      return False
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    return above and below

  return Rule(test, f'a number in {lo}{low:g}, {high:g}{hi}')


def positive_number() -> Rule:
  """A finite number > 0 (a standard deviation, a scale)."""
  return Rule(lambda v: _number(v) and math.isfinite(v) and v > 0, 'a number > 0')


def one_of(*choices) -> Rule:
  """One of `choices` (a name: a model, a padding, a scale)."""
  return Rule(
    lambda v: v in choices, f'one of {", ".join(map(repr, choices))}', choices
  )


def optional(rule: Rule) -> Rule:
  """`rule`, or None (a placeholder left unset)."""
  return Rule(lambda v: v is None or rule(v), f'{rule.valid}, or None')


def each(rule: Rule, *, min_len: int = 1) -> Rule:
  """A tuple of at least `min_len` values, each passing `rule`."""
  return Rule(
    lambda v: (
      isinstance(v, tuple | list) and len(v) >= min_len and all(rule(x) for x in v)
    ),
    f'a tuple of at least {min_len}, each {rule.valid}',
  )


count = at_least(1)  # sizes, widths, layer counts, steps, k
cadence = at_least(0)  # log/eval/checkpoint every N steps; 0: only at the end
non_negative = interval(0.0, math.inf)  # penalties, weight decay
fraction = interval(0.0, 1.0, high_open=True)  # dropout: a rate, not a keep rate
unit = interval(0.0, 1.0, low_open=True, high_open=True)  # Adam's betas, decays
# Above 10 no optimizer here trains; 1e9 overflows a net within steps.
learning_rate = interval(0.0, 10.0, low_open=True)


def _shown(value):
  return tuple(value) if isinstance(value, list) else value


def _non_finite(value) -> bool:
  if isinstance(value, tuple | list):
    return any(_non_finite(v) for v in value)
  return isinstance(value, float) and not math.isfinite(value)


def config(values: Mapping, checks: Mapping[str | tuple[str, ...], Rule]) -> None:
  """Raises `UserError` for the first field of `values` that breaks its rule.

  Every number must be finite (nan or inf, in any field, stops here: no field
  means them, and JSON cannot record them). Fields a preset does not have are
  skipped, so one `checks` serves every preset. A rule keyed by a tuple of
  field names relates them: its test gets their values as a tuple, and its
  `valid` says what they must be together.

  Args:
    values: the resolved config (a ConfigDict or a dict).
    checks: field name (or tuple of names) -> `Rule`.
  """
  for name, value in values.items():
    if _non_finite(value):
      raise UserError(
        f'--config.{name}={_shown(value)!r} is not a finite number; give one'
      )
  for name, rule in checks.items():
    names = name if isinstance(name, tuple) else (name,)
    if any(n not in values for n in names):
      continue
    if isinstance(name, tuple):
      value = tuple(values[n] for n in names)
      if not rule(value):
        given = ' with '.join(
          f'--config.{n}={_shown(v)!r}' for n, v in zip(names, value, strict=True)
        )
        raise UserError(f'{given}: {rule.valid}')
      continue
    value = values[name]
    if not rule(value) and rule.choices is not None:
      valid = ', '.join(sorted(map(str, rule.choices)))
      raise UserError(
        f'unknown {name} {value!r} (--config.{name}); valid choices: {valid}'
      )
    if not rule(value):
      raise UserError(
        f'--config.{name}={_shown(value)!r} is out of range: it must be {rule.valid}'
      )


def config_file(path: str) -> None:
  """Raises `UserError` unless the experiment file behind `--config=` exists."""
  if not os.path.isfile(path):
    raise UserError(
      f'--config={path}: no such config file; name an experiment file such as '
      'experiments/mlp.py, optionally with :preset'
    )


def workdir(path: str) -> None:
  """Raises `UserError` unless `path` is, or can become, a writable folder.

  Probes by creating and removing a temporary file (in the nearest existing
  ancestor when `path` does not exist yet), because permission bits do not tell
  the whole story: root ignores them, and read-only mounts do not show in them.
  Writes nothing that stays.
  """
  if not path:
    raise UserError('--workdir is empty; name a folder for the run')
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'--workdir={path} is a file, not a folder; name a folder')
  parent = os.path.abspath(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(
      f'--workdir={path} cannot be created: {parent} is a file; name a folder'
    )
  try:
    fd, probe = tempfile.mkstemp(dir=parent, prefix='.nkjax-probe-')
  except OSError as e:
    what = 'is not writable' if parent == os.path.abspath(path) else 'cannot be created'
    raise UserError(
      f'--workdir={path} {what} ({e.strerror} in {parent}); name a folder you can write to'
    ) from e
  os.close(fd)
  os.remove(probe)


# The fields every training experiment shares; each experiment adds its own:
# `CHECKS = {**validate.TRAINING, 'hidden': validate.each(validate.count)}`.
TRAINING = {
  'seed': cadence,
  'batch_size': count,
  'eval_batch_size': count,
  'num_steps': count,
  'log_every': cadence,
  'eval_every': cadence,
  'checkpoint_every': cadence,
  'keep_checkpoints': count,
  'learning_rate': learning_rate,
  'warmup_steps': cadence,
  'weight_decay': non_negative,
  'momentum': fraction,
  'grad_clip_norm': optional(positive_number()),
  'l1': non_negative,
  'l2': non_negative,
  'image_size': optional(count),
  'train_subset': optional(count),
  'dropout_rate': optional(fraction),
  'divergence_factor': non_negative,
  'steps_per_call': count,
  # The compute dtype; parameters stay float32.
  'dtype': one_of('float32', 'bfloat16'),
}
