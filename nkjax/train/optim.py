"""Optimizers and learning-rate schedules by name, dispatched explicitly."""

import inspect
from collections.abc import Sequence

import jax
import ml_collections
import optax

from nkjax.errors import UserError, choose
from nkjax.train.state import param_path

SCHEDULES = ('constant', 'step', 'cosine', 'warmup_cosine')
OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop')


def make_schedule(
  *,
  name: str,
  learning_rate: float,
  num_steps: int,
  warmup_steps: int = 0,
  decay_boundaries: tuple[float, ...] = (0.5, 0.75),
  decay_factor: float = 0.1,
) -> optax.Schedule:
  """A learning-rate schedule over `num_steps` updates.

  Args:
    name: 'constant'; 'step' (multiply by `decay_factor` at each fraction of
      `num_steps` in `decay_boundaries`, as in the ResNet paper); 'cosine' (to 0
      at `num_steps`); 'warmup_cosine' (linear from 0 over `warmup_steps`, then
      cosine). Any schedule but 'warmup_cosine' also warms up linearly when
      `warmup_steps > 0`.
    learning_rate: the peak rate.
    num_steps: total number of updates.
  """
  choose('schedule', name, SCHEDULES)
  if learning_rate <= 0 or num_steps <= 0 or warmup_steps < 0:
    raise UserError(
      f'learning_rate ({learning_rate}) and num_steps ({num_steps}) must be > 0 '
      f'and warmup_steps ({warmup_steps}) >= 0'
    )
  if name == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps, max(num_steps, warmup_steps + 1)
    )
  if name == 'constant':
    main = optax.constant_schedule(learning_rate)
  elif name == 'step':
    main = optax.piecewise_constant_schedule(
      learning_rate,
      {int(f * num_steps): decay_factor for f in decay_boundaries},
    )
  else:
    main = optax.cosine_decay_schedule(learning_rate, max(num_steps - warmup_steps, 1))
  if warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def make_optimizer(
  *,
  name: str,
  learning_rate: float | optax.Schedule,
  momentum: float = 0.9,
  b1: float = 0.9,
  b2: float = 0.999,
  rms_decay: float = 0.9,
  weight_decay: float = 0.0,
  grad_clip_norm: float | None = None,
) -> optax.GradientTransformation:
  """An optax optimizer by name.

  Args:
    name: one of `OPTIMIZERS`. 'momentum' is heavy-ball SGD, 'nesterov' its
      Nesterov form.
    learning_rate: a float or a schedule from `make_schedule`.
    momentum: for 'momentum' and 'nesterov'.
    b1, b2: Adam's moment decays.
    rms_decay: RMSProp's decay of the squared-gradient average.
    weight_decay: for 'adamw' the decoupled decay of Loshchilov & Hutter; for
      every other optimizer an L2 term, weight_decay * w added to the gradient.
    grad_clip_norm: when set, gradients are rescaled so that their global norm is
      at most this (Pascanu et al.), before anything else.
  """
  choose('optimizer', name, OPTIMIZERS)
  if name == 'sgd':
    opt = optax.sgd(learning_rate)
  elif name == 'momentum':
    opt = optax.sgd(learning_rate, momentum=momentum)
  elif name == 'nesterov':
    opt = optax.sgd(learning_rate, momentum=momentum, nesterov=True)
  elif name == 'adam':
    opt = optax.adam(learning_rate, b1=b1, b2=b2)
  elif name == 'adamw':
    opt = optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
  else:
    opt = optax.rmsprop(learning_rate, decay=rms_decay)
  chain = []
  if grad_clip_norm is not None:
    chain.append(optax.clip_by_global_norm(grad_clip_norm))
  if weight_decay and name != 'adamw':
    chain.append(optax.add_decayed_weights(weight_decay))
  return optax.chain(*chain, opt)


def freeze(
  tx: optax.GradientTransformation, *, frozen: Sequence[str]
) -> optax.GradientTransformation:
  """`tx` for every parameter except those under `frozen`, which stay bitwise equal.

  Args:
    tx: the optimizer of the trained parameters.
    frozen: path prefixes, '/'-joined module names as in the params tree
      ('backbone', 'rpn/conv'); a parameter is frozen when its path equals a
      prefix or starts with it followed by '/'.

  The frozen parameters get zero updates and no optimizer state (no Adam
  moments are kept for them): "train only the heads", Faster R-CNN's
  alternating stages.
  """
  prefixes = tuple(p.strip('/') for p in frozen)

  def label(path: str) -> str:
    hit = any(path == p or path.startswith(p + '/') for p in prefixes)
    return 'frozen' if hit else 'trained'

  def labels(params):
    return jax.tree_util.tree_map_with_path(lambda k, _: label(param_path(k)), params)

  return optax.multi_transform({'trained': tx, 'frozen': optax.set_to_zero()}, labels)


def build(
  *,
  optimizer: str,
  learning_rate: float,
  num_steps: int,
  schedule: str = 'constant',
  warmup_steps: int = 0,
  decay_boundaries: Sequence[float] = (0.5, 0.75),
  decay_factor: float = 0.1,
  momentum: float = 0.9,
  b1: float = 0.9,
  b2: float = 0.999,
  weight_decay: float = 0.0,
  grad_clip_norm: float | None = None,
  frozen: Sequence[str] = (),
) -> optax.GradientTransformation:
  """`make_optimizer` on a `make_schedule`, from the fields experiments share.

  Every experiment's config carries these fields under the same names
  (`default_fields()`), so `build(num_steps=..., **fields(config))` is the one
  way an experiment makes its optimizer. `frozen` as in `freeze`.

  Plain SGD at 0.1 with a 'step' schedule over 4 updates, divided by 10 at
  half of them (from update 2, counting from 0, as "divided by 10 at 32k
  iterations" in the ResNet paper): the update of a unit gradient is -lr.

  >>> import jax.numpy as jnp
  >>> tx = build(optimizer='sgd', learning_rate=0.1, num_steps=4, schedule='step',
  ...            decay_boundaries=(0.5,))
  >>> params = {'w': jnp.zeros(())}
  >>> opt_state = tx.init(params)
  >>> for _ in range(4):
  ...   updates, opt_state = tx.update({'w': jnp.ones(())}, opt_state, params)
  ...   print(round(float(updates['w']), 6))
  -0.1
  -0.1
  -0.01
  -0.01

  Frozen sub-trees get zero updates whatever their gradient:

  >>> tx = build(optimizer='adam', learning_rate=1e-3, num_steps=10, frozen=['backbone'])
  >>> params = {'backbone': {'w': jnp.ones(2)}, 'head': {'w': jnp.ones(2)}}
  >>> updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  >>> updates['backbone']['w'].tolist(), bool((updates['head']['w'] < 0).all())
  ([0.0, 0.0], True)
  """
  lr = make_schedule(
    name=schedule,
    learning_rate=learning_rate,
    num_steps=num_steps,
    warmup_steps=warmup_steps,
    decay_boundaries=tuple(decay_boundaries),
    decay_factor=decay_factor,
  )
  tx = make_optimizer(
    name=optimizer,
    learning_rate=lr,
    momentum=momentum,
    b1=b1,
    b2=b2,
    weight_decay=weight_decay,
    grad_clip_norm=grad_clip_norm,
  )
  return freeze(tx, frozen=frozen) if frozen else tx


_FIELDS = tuple(inspect.signature(build).parameters)


def default_fields(**overrides) -> dict:
  """The optimizer fields of an experiment's config with their defaults
  (`num_steps` excluded: it belongs to the run), `overrides` applied."""
  defaults = {
    name: p.default
    for name, p in inspect.signature(build).parameters.items()
    if p.default is not inspect.Parameter.empty
  }
  defaults.update(optimizer='adam', learning_rate=1e-3, decay_boundaries=(0.5, 0.75))
  defaults.update(overrides)
  defaults['frozen'] = tuple(defaults['frozen'])
  defaults['decay_boundaries'] = tuple(defaults['decay_boundaries'])
  if defaults['grad_clip_norm'] is None:
    # A typed empty field, so that --config.grad_clip_norm=1.0 can set it.
    defaults['grad_clip_norm'] = ml_collections.config_dict.placeholder(float)
  return defaults


def fields(config) -> dict:
  """The optimizer fields present in an experiment's config, for `build(**...)`."""
  return {k: config[k] for k in _FIELDS if k != 'num_steps' and k in config}
