"""The run record: `run.json` in the workdir says which config started the run.

A resumed run must be the run that was asked for. The launcher reads the record
before anything else (`check`): the same config resumes, a config that differs
in a field outside `SAFE_TO_CHANGE` stops with one line naming the fields,
unless the person accepts the change (`--allow_config_change`), which is then
recorded here and in `summary.json` under `config_changes`. A run that reached
its step count is marked finished (`finish`); rerunning it changes nothing
unless the step count is raised.

`run.json` holds `{"config": {...}, "finished": bool, "changes": [...],
"experiment": name}` and,
from the loop, the guard's reference loss. Only process 0 writes it. Nothing
here imports JAX.
"""

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from nkjax.errors import UserError

FILENAME = 'run.json'
# Fields that may differ on resume without changing what the run computes up to
# the resumed step: how long to train, how often to log, evaluate and save, how
# big the eval batches are, where data lives, how to sample. Raising num_steps
# extends a run (a schedule that decays over num_steps is stretched from there on).
SAFE_TO_CHANGE = frozenset({
  'num_steps', 'num_rounds', 'log_every', 'eval_every', 'checkpoint_every',
  'keep_checkpoints', 'eval_batch_size', 'eval_samples', 'data_dir', 'debug',
  'divergence_factor', 'prompt', 'temperature', 'sample_length',
  # Same results either way (tests/train/test_loop.py, tests/train/test_classify.py).
  'steps_per_call', 'data_on_device',
})  # fmt: skip
# The fields that count steps: raising one continues a finished run.
STEP_FIELDS = ('num_steps', 'num_rounds')


def _plain(value):
  # JSON's view of a config value: tuples and lists compare equal, as they
  # must after a round trip through run.json.
  return json.loads(json.dumps(value, default=str))


def flatten(config: Mapping, prefix: str = '') -> dict[str, Any]:
  """`{'a': {'b': 1}}` -> `{'a.b': 1}`, values as JSON gives them back."""
  out = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = _plain(value)
  return out


def read(workdir: str) -> dict | None:
  """The record in `workdir`, or None if it has none."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(
      f'{path} is unreadable ({type(e).__name__}); use another --workdir, or '
      'delete that file to resume without checking the config'
    ) from e


def write(workdir: str, record: Mapping) -> None:
  """Writes the record atomically (a temporary file, then a rename)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, FILENAME)
  try:
    with open(path + '.tmp', 'w') as f:
      json.dump(record, f, indent=2, sort_keys=True, allow_nan=False, default=str)
  except BaseException:
    os.remove(path + '.tmp')  # a value JSON cannot hold: leave no half-written file
    raise
  os.replace(path + '.tmp', path)


def update(workdir: str, **fields) -> None:
  """Sets top-level `fields` of the record, creating it if there is none."""
  write(workdir, {**(read(workdir) or {}), **fields})


def differences(old: Mapping, new: Mapping) -> dict[str, list]:
  """Dotted field -> `[old, new]` for every field that differs (missing: None)."""
  a, b = flatten(old), flatten(new)
  return {
    k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
  }


def _short(value) -> str:
  if isinstance(value, list):
    value = tuple(value)
  text = repr(value)
  return text if len(text) <= 40 else text[:37] + '...'


def _listed(items: list[str], first: int = 4) -> str:
  # The first few of a long list, and how many more.
  shown = ', '.join(items[:first])
  return shown + (f' and {len(items) - first} more' if len(items) > first else '')


@dataclasses.dataclass
class Resume:
  """What `check` found.

  Attributes:
    finished: the record says the run reached its step count, and no step
      count was raised: there is nothing to do.
    changes: every field that differs from the record, `name -> [old, new]`.
    record: the record as read (None: a new run).
  """

  finished: bool
  changes: dict[str, list]
  record: dict | None


def check(
  workdir: str,
  config: Mapping,
  *,
  allow_change: bool = False,
  experiment: str | None = None,
) -> Resume:
  """Compares `config` with the one that started the run in `workdir`.

  Args:
    experiment: the experiment's name ('sr'); a record of another experiment
      is refused whatever `allow_change` says.

  Raises:
    UserError: the record is another experiment's, or the configs differ
      outside `SAFE_TO_CHANGE` and `allow_change` is False; one line naming
      the first fields that differ, both ways on.
  """
  record = read(workdir)
  if record is None or 'config' not in record:
    return Resume(finished=False, changes={}, record=record)
  theirs = record.get('experiment')
  if experiment is not None and theirs is not None and theirs != experiment:
    raise UserError(
      f'{workdir} holds a run of experiments/{theirs}.py, not of '
      f'experiments/{experiment}.py; use another --workdir'
    )
  changes = differences(record['config'], config)
  unsafe = [k for k in changes if k.rpartition('.')[2] not in SAFE_TO_CHANGE]
  if unsafe and not allow_change:
    old_keys, new_keys = set(flatten(record['config'])), set(flatten(config))
    if len(old_keys ^ new_keys) > len(old_keys & new_keys):
      # Mostly other fields: a record written by another experiment.
      raise UserError(
        f'{workdir} holds a run of another experiment (fields '
        f'{_listed(sorted(old_keys ^ new_keys))} are in one config only); use '
        'another --workdir'
      )
    listed = _listed(
      [f'{k} {_short(changes[k][0])} -> {_short(changes[k][1])}' for k in unsafe]
    )
    raise UserError(
      f'{workdir} holds a run started with another config ({listed}); use another '
      '--workdir for the new config, or pass --allow_config_change to resume this '
      'run with it (the change is recorded in summary.json)'
    )
  raised = any(
    k.rpartition('.')[2] in STEP_FIELDS
    and isinstance(new, int)
    and (old is None or new > old)
    for k, (old, new) in changes.items()
  )
  return Resume(
    finished=bool(record.get('finished')) and not raised,
    changes=changes,
    record=record,
  )


def start(
  workdir: str,
  config: Mapping,
  resume: Resume,
  *,
  at_step: int | None,
  experiment: str | None = None,
) -> None:
  """Records `config` as the run's config, with any change from the last one.

  Args:
    at_step: the latest checkpoint's step, where a change takes effect.
    experiment: the experiment's name, recorded for `check`.
  """
  record = dict(resume.record or {})
  history = list(record.get('changes', []))
  if resume.changes:
    history.append({'at_step': at_step, 'fields': resume.changes})
  record.update(config=_plain(dict(config)), finished=False, changes=history)
  if experiment is not None:
    record['experiment'] = experiment
  write(workdir, record)


def finish(workdir: str) -> None:
  """Marks the run finished; copies the config changes into `summary.json`."""
  record = read(workdir) or {}
  record['finished'] = True
  write(workdir, record)
  changes = record.get('changes')
  summary_path = os.path.join(workdir, 'summary.json')
  if changes and os.path.isfile(summary_path):
    from nkjax.train import writers  # tensorboardX and tqdm: only when needed

    with open(summary_path) as f:
      summary = json.load(f)
    summary['config_changes'] = changes
    writers.write_summary(workdir, summary)


def latest_checkpoint_step(workdir: str) -> int | None:
  """The largest step folder under `workdir/checkpoints`, without orbax."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return None
  steps = [int(n) for n in os.listdir(directory) if n.isdigit()]
  return max(steps, default=None)
