"""A finished run's model, read back for inference: its variables and its config.

`detect`, `svd`, `upscale`, `compare` and `sample` use a trained run and never
train it further. They need its parameters (and batch statistics), not its
optimizer state, so `restore` reads only those sub-trees of the latest readable
checkpoint (an orbax partial restore against the checkpoint's own metadata: no
model or optimizer is built to read it), and the config the run recorded in
`summary.json`, from which the experiment builds its model.

Nothing in the run is written or moved: a damaged checkpoint is named in a
warning and the next newest is read (`Checkpointer.restore`, which resumes a
run, moves it aside; a reader of someone else's run must not). Every failure is
one `UserError` line: no such folder, no finished run there, no readable
checkpoint, a run of another experiment.
"""

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from nkjax.errors import UserError
from nkjax.train import checkpoint
from nkjax.train import state as state_lib

# Config fields that every preset of an experiment has and no other
# experiment's has: how a run's recorded config says which experiment wrote it
# (tests/train/test_restore.py checks this against every preset).
SIGNATURES = {
  'cnn': ('augment', 'model'),
  'detection': ('method', 'anchor_scales'),
  'gan': ('latent_dim',),
  'rnn': ('cell', 'num_layers'),
  'sr': ('scales', 'patch'),
}
# The model variables a checkpointed train state holds (`TrainState` fields).
COLLECTIONS = ('params', 'batch_stats')


@dataclasses.dataclass(frozen=True)
class Restored:
  """A finished run, read back.

  Attributes:
    config: the config the run recorded in `summary.json` (a plain dict).
    variables: `{'params': ..., 'batch_stats': ...}` (the latter only for
      models that have batch statistics) as numpy arrays, for `model.apply`.
    step: the step of the checkpoint they come from.
    directory: the run's folder.
  """

  config: dict
  variables: dict
  step: int
  directory: str


def experiment_of(config: Mapping) -> str | None:
  """Which experiment a run's recorded config comes from (None: unknown).

  >>> experiment_of({'scales': [4], 'patch': 24, 'model': 'srresnet'})
  'sr'
  >>> experiment_of({'learning_rate': 0.1}) is None
  True
  """
  for name, fields in SIGNATURES.items():
    if all(f in config for f in fields):
      return name
  return None


def run_config(run_dir: str, *, experiment: str, option: str) -> dict:
  """The config recorded by the finished `experiment` run in `run_dir`.

  Args:
    run_dir: the run's workdir.
    experiment: the experiment the run must come from, a key of `SIGNATURES`.
    option: the flag that named `run_dir` (for the error lines), e.g.
      '--config.run'.

  Raises:
    UserError: `run_dir` is not a folder, holds no `summary.json` with a
      config (not a finished run), or holds a run of another experiment.
  """
  if experiment not in SIGNATURES:
    raise ValueError(
      f'experiment must be one of {sorted(SIGNATURES)}, got {experiment!r}'
    )
  if not os.path.isdir(run_dir):
    raise UserError(
      f'{option}={run_dir}: no such folder; give the workdir of a finished '
      f'{experiment} run'
    )
  path = os.path.join(run_dir, 'summary.json')
  try:
    with open(path) as f:
      config = json.load(f)['config']
    if not isinstance(config, dict):
      raise TypeError('config is not a mapping')
  except FileNotFoundError:
    raise UserError(
      f'{option}={run_dir} holds no finished run (no summary.json); train it to the '
      f'end first, or give the workdir of a finished {experiment} run'
    ) from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(
      f'{option}={run_dir}: {path} is unreadable or records no config '
      f'({type(e).__name__}); give the workdir of a finished {experiment} run'
    ) from None
  found = experiment_of(config)
  if found != experiment:
    fields = ', '.join(SIGNATURES[experiment])
    what = (
      f'{_a(found)} {found} run (experiments/{found}.py), not {_a(experiment)} '
      f'{experiment} run'
      if found
      else f'not {_a(experiment)} {experiment} run (its config lacks {fields})'
    )
    raise UserError(
      f'{option}={run_dir} is {what}; give the workdir of an '
      f'experiments/{experiment}.py run'
    )
  return config


def _a(name: str) -> str:
  # The article of an experiment's name read aloud: a detection, an sr run.
  return 'an' if name in ('rnn', 'sr') else 'a'


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:160] if text else ""}'


def _read(item_dir: str, under: str | None) -> dict:
  # The checkpoint's own metadata gives the shapes and dtypes of the sub-trees
  # asked for; `partial_restore` reads those and skips the optimizer state.
  reader = ocp.PyTreeCheckpointHandler()
  path = epath.Path(item_dir)
  try:
    tree = reader.metadata(path).tree
    if under is not None:
      if not isinstance(tree, Mapping) or under not in tree:
        raise UserError(f'its state has no {under!r}')
      tree = tree[under]
    if not isinstance(tree, Mapping) or 'params' not in tree:
      raise UserError('its state has no params')
    wanted = {k: tree[k] for k in COLLECTIONS if k in tree and jax.tree.leaves(tree[k])}
    if under is not None:
      wanted = {under: wanted}
    item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    out = reader.restore(
      path,
      args=ocp.args.PyTreeRestore(item=item, restore_args=args, partial_restore=True),
    )
  finally:
    reader.close()
  return out[under] if under is not None else out


def variables(run_dir: str, *, under: str | None = None) -> tuple[dict, int]:
  """`(variables, step)` of the newest readable checkpoint in `run_dir/checkpoints`.

  Reads only the `params` and `batch_stats` sub-trees of the saved state (of
  its sub-tree `under`, e.g. 'g' for a GAN's generator), as numpy. A damaged
  or unreadable checkpoint is named in a warning and left where it is; the next
  newest is read.

  Raises:
    UserError: there is no checkpoint, none is readable, or the state has no
      `params` (under `under`).
  """
  directory = os.path.join(run_dir, 'checkpoints')
  steps = sorted(
    (int(n) for n in (os.listdir(directory) if os.path.isdir(directory) else ())
     if n.isdigit()),
    reverse=True,
  )  # fmt: skip
  if not steps:
    raise UserError(
      f'{run_dir} has no checkpoint to restore (no step folder in {directory}); '
      'train the run first'
    )
  damaged = []
  for step in steps:
    step_dir = os.path.join(directory, str(step))
    why = checkpoint.missing_files(step_dir)
    if why is None:
      try:
        found = _read(os.path.join(step_dir, 'default'), under)
      except UserError as e:
        raise UserError(f'the checkpoint at step {step} in {directory}: {e}') from None
      except Exception as e:  # noqa: BLE001 - tensorstore raises bare Exceptions
        why = f'unreadable ({_first_line(e)})'
      else:
        break
    damaged.append((step, why))
  else:
    listed = '; '.join(f'step {s}: {w}' for s, w in damaged)
    raise UserError(
      f'no readable checkpoint in {directory} ({listed}); nothing was moved: '
      'retrain the run, or give the workdir of another one'
    )
  for bad, why in damaged:
    logging.warning(
      'Checkpoint step %d in %s is damaged (%s); left in place, using step %d.',
      bad, directory, why, step,
    )  # fmt: skip
  logging.info('Restored the variables of step %d from %s.', step, directory)
  return dict(found), step


def restore(
  run_dir: str, *, experiment: str, option: str, under: str | None = None
) -> Restored:
  """The recorded config and the model variables of a finished run.

  Args:
    run_dir: the run's workdir (`summary.json` and `checkpoints/` in it).
    experiment: the experiment the run must come from, a key of `SIGNATURES`.
    option: the flag that named `run_dir`, for the error lines.
    under: the sub-tree of the saved state that holds the model ('g' for a
      GAN's generator); None for a `TrainState`.

  Raises:
    UserError: one line, from `run_config` or `variables`.
  """
  config = run_config(run_dir, experiment=experiment, option=option)
  found, step = variables(run_dir, under=under)
  return Restored(config=config, variables=found, step=step, directory=run_dir)


def inference_state(model: nn.Module, run: Restored, *, inputs: tuple) -> Any:
  """A `TrainState` without an optimizer holding `run`'s variables, for predict
  steps written against a train state (`state.apply_fn`, `state.params`,
  `state.batch_stats`).

  Args:
    model: the network `run.config` describes.
    run: what `restore` returned.
    inputs: the model's positional inputs for an example batch (only shapes
      and dtypes matter: the model is traced, not run, to check the fit).

  Raises:
    UserError: a variable of the model is missing from the checkpoint or has
      another shape there (the run was written by another version of the model).
  """
  like = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, train=False))
  want, got = _shapes(like), _shapes(run.variables)
  for path in sorted(want.keys() | got.keys()):
    if want.get(path) != got.get(path):
      shape = lambda s: 'missing' if s is None else str(s)  # noqa: E731
      raise UserError(
        f'the checkpoint at step {run.step} in {run.directory} does not fit the '
        f'model its config describes: {path} is {shape(want.get(path))} in the model '
        f'and {shape(got.get(path))} in the checkpoint; give the workdir of a run '
        'of this version of the code'
      )
  return state_lib.TrainState(
    step=np.int32(run.step),
    apply_fn=model.apply,
    params=run.variables['params'],
    tx=None,
    opt_state=None,
    batch_stats=run.variables.get('batch_stats'),
  )


def _shapes(variables: Mapping) -> dict[str, tuple[int, ...]]:
  """'collection/path' -> shape for the collections a checkpoint keeps."""
  return {
    f'{c}/{state_lib.param_path(k)}': tuple(v.shape)
    for c in COLLECTIONS
    if variables.get(c) is not None
    for k, v in jax.tree_util.tree_flatten_with_path(variables[c])[0]
  }
