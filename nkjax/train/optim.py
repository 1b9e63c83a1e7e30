"""Optimizers and learning-rate schedules by name, dispatched explicitly."""

import inspect
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
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
  decay_boundaries: Sequence[float] | None = None,
  decay_steps: Sequence[int] | None = None,
  decay_factor: float = 0.1,
) -> optax.Schedule:
  """A learning-rate schedule over `num_steps` updates, counted from 0.

  Args:
    name: 'constant'; 'step' (multiply by `decay_factor` at each decay, as in
      the ResNet paper); 'cosine' (to 0 at `num_steps`); 'warmup_cosine'
      (linear from 0 over `warmup_steps`, then cosine). Any schedule but
      'warmup_cosine' also warms up linearly when `warmup_steps > 0`.
    learning_rate: the peak rate.
    num_steps: total number of updates.
    warmup_steps: updates of the linear warm-up from 0.
    decay_boundaries: 'step' decays as increasing fractions in (0, 1) of
      `num_steps`, counted after the warm-up: fraction f decays from update
      `warmup_steps + int(f * num_steps)` on. None: (0.5, 0.75), unless
      `decay_steps` places the decays.
    decay_steps: 'step' decays as absolute update numbers (torchvision's
      `--lr-steps`): increasing, each in (warmup_steps, num_steps); the rate
      is `learning_rate * decay_factor**k` from update `decay_steps[k - 1]` on.
      At most one of `decay_steps` and `decay_boundaries` may be non-empty.
    decay_factor: the factor of each decay.

  Raises:
    UserError: a value out of range, or decays given both ways.
  """
  choose('schedule', name, SCHEDULES)
  if learning_rate <= 0 or num_steps <= 0 or warmup_steps < 0:
    raise UserError(
      f'learning_rate ({learning_rate}) and num_steps ({num_steps}) must be > 0 '
      f'and warmup_steps ({warmup_steps}) >= 0'
    )
  steps = _decay_steps(
    num_steps=num_steps,
    warmup_steps=warmup_steps,
    decay_boundaries=decay_boundaries,
    decay_steps=decay_steps,
  )
  if name == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps, max(num_steps, warmup_steps + 1)
    )
  if name == 'constant':
    main = optax.constant_schedule(learning_rate)
  elif name == 'step':
    # `main` counts from the end of the warm-up (optax.join_schedules).
    main = optax.piecewise_constant_schedule(
      learning_rate, {s - warmup_steps: decay_factor for s in steps}
    )
  else:
    main = optax.cosine_decay_schedule(learning_rate, max(num_steps - warmup_steps, 1))
  if warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def _decay_steps(
  *,
  num_steps: int,
  warmup_steps: int,
  decay_boundaries: Sequence[float] | None,
  decay_steps: Sequence[int] | None,
) -> tuple[int, ...]:
  """The absolute updates at which a 'step' schedule decays, checked."""
  fractions = (0.5, 0.75) if decay_boundaries is None else tuple(decay_boundaries)
  absolute = tuple(decay_steps or ())
  if absolute and decay_boundaries is not None and fractions:
    raise UserError(
      f'decay_steps={absolute} and decay_boundaries={fractions} both place the '
      'learning-rate decays: give one, and set the other to () '
      '("--config.decay_boundaries=()")'
    )
  if absolute:
    ok = all(isinstance(s, int) and not isinstance(s, bool) for s in absolute)
    if not ok or list(absolute) != sorted(set(absolute)):
      raise UserError(
        f'decay_steps={absolute} must be increasing integers (update numbers)'
      )
    if absolute[0] <= warmup_steps or absolute[-1] >= num_steps:
      raise UserError(
        f'decay_steps={absolute} must lie in (warmup_steps, num_steps) = '
        f'({warmup_steps}, {num_steps}): lower them, or raise num_steps'
      )
    return absolute
  if list(fractions) != sorted(set(fractions)) or not all(0 < f < 1 for f in fractions):
    raise UserError(
      f'decay_boundaries={fractions} must be increasing fractions of num_steps in '
      '(0, 1); for absolute update numbers use decay_steps'
    )
  return tuple(warmup_steps + int(f * num_steps) for f in fractions)


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


def clip_by_learning_rate(
  theta: float, learning_rate: optax.Schedule
) -> optax.GradientTransformation:
  """Clips each gradient entry to [-theta / lr, theta / lr] at the current rate.

  VDSR's adjustable gradient clipping (Kim et al. 2016, 3.3): with the bound
  divided by the rate, an SGD step `lr * g` moves a weight by at most `theta`
  whatever the rate, so a high rate trains fast without exploding. Where the
  rate is 0 (the first update of a warm-up) nothing is clipped.

  Args:
    theta: the largest step, in the parameters' units.
    learning_rate: the schedule of the optimizer this precedes, read at the
      same update count.

  >>> import jax.numpy as jnp
  >>> tx = clip_by_learning_rate(0.25, lambda step: 0.5)  # bound 0.25 / 0.5
  >>> g, _ = tx.update(jnp.array([2.0, -0.25, -3.0]), tx.init(None))
  >>> g.tolist()
  [0.5, -0.25, -0.5]
  """

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    bound = theta / learning_rate(state.count)
    updates = jax.tree.map(lambda g: jnp.clip(g, -bound, bound), updates)
    return updates, optax.ScaleByScheduleState(
      count=optax.safe_int32_increment(state.count)
    )

  return optax.GradientTransformation(init, update)


def _matches(path: str, prefix: str) -> bool:
  return path == prefix or path.startswith(prefix + '/')


def _labels(
  *, frozen: Sequence[str] = (), groups: Mapping[str, str] | None = None
) -> Callable:
  """`multi_transform`'s labels: 'frozen' for a parameter under a prefix of
  `frozen`, else the label `groups` gives the longest prefix it is under, else
  'trained'. A prefix that names no parameter is an error (a typo would
  otherwise train everything at the one rate)."""
  groups = dict(groups or {})

  def label(path: str) -> str:
    if any(_matches(path, p) for p in frozen):
      return 'frozen'
    hits = [p for p in groups if _matches(path, p)]
    return groups[max(hits, key=len)] if hits else 'trained'

  def labels(params):
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [param_path(k) for k, _ in leaves]
    for field, prefixes in (('frozen', frozen), ('lr_multipliers', groups)):
      missing = [p for p in prefixes if not any(_matches(q, p) for q in paths)]
      if missing:
        raise UserError(
          f'{field}: {", ".join(map(repr, missing))} names no parameter; give '
          f"'/'-joined module names of the params tree, e.g. {paths[0]!r}"
        )
    return jax.tree_util.tree_map_with_path(lambda k, _: label(param_path(k)), params)

  return labels


def _prefixes(values: Sequence[str], field: str) -> tuple[str, ...]:
  out = tuple(str(p).strip('/') for p in values)
  if '' in out:
    raise UserError(f'{field}: an empty path prefix would name every parameter')
  return out


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
  return optax.multi_transform(
    {'trained': tx, 'frozen': optax.set_to_zero()},
    _labels(frozen=_prefixes(frozen, 'frozen')),
  )


def build(
  *,
  optimizer: str,
  learning_rate: float,
  num_steps: int,
  schedule: str = 'constant',
  warmup_steps: int = 0,
  decay_boundaries: Sequence[float] | None = None,
  decay_steps: Sequence[int] | None = None,
  decay_factor: float = 0.1,
  momentum: float = 0.9,
  b1: float = 0.9,
  b2: float = 0.999,
  weight_decay: float = 0.0,
  grad_clip_norm: float | None = None,
  clip_by_lr: float | None = None,
  lr_multipliers: Mapping[str, float] | None = None,
  frozen: Sequence[str] = (),
) -> optax.GradientTransformation:
  """`make_optimizer` on a `make_schedule`, from the fields experiments share.

  Every experiment's config carries these fields under the same names
  (`default_fields()`), so `build(num_steps=..., **fields(config))` is the one
  way an experiment makes its optimizer, and `build_schedule` with the same
  arguments its learning rate. The schedule's arguments as in
  `make_schedule`, the optimizer's as in `make_optimizer`; `frozen` as in
  `freeze` (it wins over `lr_multipliers`).

  Args:
    clip_by_lr: theta of `clip_by_learning_rate`, on the same schedule (its
      warm-up included), before everything else; None: off.
    lr_multipliers: path prefix (as in `freeze`) -> multiplier: the
      parameters under it train with the same recipe at multiplier times the
      schedule (SRCNN's last layer at a tenth of the rate, Dong et al. 2014),
      and under `clip_by_lr` their bound is theta over that rate. A parameter
      under several prefixes takes the longest.

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

  The same decay as an update number, and a layer at a tenth of the rate:

  >>> tx = build(optimizer='sgd', learning_rate=0.1, num_steps=4, schedule='step',
  ...            decay_steps=(2,), lr_multipliers={'last': 0.1})
  >>> params = {'first': {'w': jnp.zeros(())}, 'last': {'w': jnp.zeros(())}}
  >>> updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params))
  >>> round(float(updates['first']['w']), 6), round(float(updates['last']['w']), 6)
  (-0.1, -0.01)

  Frozen sub-trees get zero updates whatever their gradient:

  >>> tx = build(optimizer='adam', learning_rate=1e-3, num_steps=10, frozen=['backbone'])
  >>> params = {'backbone': {'w': jnp.ones(2)}, 'head': {'w': jnp.ones(2)}}
  >>> updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  >>> updates['backbone']['w'].tolist(), bool((updates['head']['w'] < 0).all())
  ([0.0, 0.0], True)
  """
  lr = build_schedule(
    learning_rate=learning_rate,
    num_steps=num_steps,
    schedule=schedule,
    warmup_steps=warmup_steps,
    decay_boundaries=decay_boundaries,
    decay_steps=decay_steps,
    decay_factor=decay_factor,
  )
  multipliers = dict(lr_multipliers or {})
  bad = {p: m for p, m in multipliers.items() if not _positive_number(m)}
  if bad:
    raise UserError(
      f'lr_multipliers={bad} must be finite numbers > 0 (to stop a part from '
      'training, name it in frozen)'
    )
  if clip_by_lr is not None and not _positive_number(clip_by_lr):
    raise UserError(f'clip_by_lr={clip_by_lr} must be a number > 0, or None (off)')

  def recipe(rate: optax.Schedule) -> optax.GradientTransformation:
    tx = make_optimizer(
      name=optimizer,
      learning_rate=rate,
      momentum=momentum,
      b1=b1,
      b2=b2,
      weight_decay=weight_decay,
      grad_clip_norm=grad_clip_norm,
    )
    if clip_by_lr is None:
      return tx
    return optax.chain(clip_by_learning_rate(clip_by_lr, rate), tx)

  frozen = _prefixes(frozen, 'frozen')
  prefixes = _prefixes(multipliers, 'lr_multipliers')
  if not prefixes:
    return freeze(recipe(lr), frozen=frozen) if frozen else recipe(lr)
  # Labels are names in the optimizer state (and so in checkpoints): the
  # prefixes' indices, not the prefixes, which hold '/'.
  groups = {p: f'lr_group_{i}' for i, p in enumerate(prefixes)}
  transforms = {'trained': recipe(lr)}
  if frozen:
    transforms['frozen'] = optax.set_to_zero()
  for p, m in zip(prefixes, multipliers.values(), strict=True):
    transforms[groups[p]] = recipe(lambda step, m=m: m * lr(step))
  return optax.multi_transform(transforms, _labels(frozen=frozen, groups=groups))


def build_schedule(
  *,
  learning_rate: float,
  num_steps: int,
  schedule: str = 'constant',
  warmup_steps: int = 0,
  decay_boundaries: Sequence[float] | None = None,
  decay_steps: Sequence[int] | None = None,
  decay_factor: float = 0.1,
  **optimizer_fields,
) -> optax.Schedule:
  """The learning rate that `build` gives its optimizer, from the same
  arguments (the optimizer's own are accepted and unused): a config's rate at
  update `step` is `build_schedule(num_steps=n, **fields(config))(step)`.

  >>> lr = build_schedule(optimizer='momentum', learning_rate=1e-3,
  ...                     num_steps=70_000, schedule='step', decay_steps=(50_000,))
  >>> [round(float(lr(s)), 6) for s in (0, 49_999, 50_000, 69_999)]
  [0.001, 0.001, 0.0001, 0.0001]
  """
  unknown = sorted(set(optimizer_fields) - set(_FIELDS))
  if unknown:
    raise TypeError(f'build_schedule() got unexpected keyword arguments {unknown}')
  return make_schedule(
    name=schedule,
    learning_rate=learning_rate,
    num_steps=num_steps,
    warmup_steps=warmup_steps,
    decay_boundaries=decay_boundaries,
    decay_steps=decay_steps,
    decay_factor=decay_factor,
  )


def _positive_number(v) -> bool:
  return isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf


_FIELDS = tuple(inspect.signature(build).parameters)


def default_fields(**overrides) -> dict:
  """The optimizer fields of an experiment's config with their defaults
  (`num_steps` excluded: it belongs to the run), `overrides` applied."""
  defaults = {
    name: p.default
    for name, p in inspect.signature(build).parameters.items()
    if p.default is not inspect.Parameter.empty
  }
  defaults.update(
    optimizer='adam',
    learning_rate=1e-3,
    decay_boundaries=(0.5, 0.75),
    lr_multipliers={},
  )
  defaults.update(overrides)
  defaults['frozen'] = tuple(defaults['frozen'])
  defaults['decay_boundaries'] = tuple(defaults['decay_boundaries'])
  defaults['lr_multipliers'] = dict(defaults['lr_multipliers'])
  # Typed empty fields, so that --config.grad_clip_norm=1.0 can set them.
  for name, kind in (
    ('grad_clip_norm', float),
    ('clip_by_lr', float),
    ('decay_steps', tuple),
  ):
    if defaults[name] is None:
      defaults[name] = ml_collections.config_dict.placeholder(kind)
  return defaults


# What each field of `default_fields()` means, for the launcher's --help.
DESCRIPTIONS = {
  'optimizer': f'the update rule: {", ".join(OPTIMIZERS)}',
  'learning_rate': 'the peak learning rate of the schedule',
  'schedule': f'learning-rate schedule over num_steps: {", ".join(SCHEDULES)}',
  'warmup_steps': 'steps of linear warm-up from 0 to learning_rate',
  'decay_boundaries': "'step' schedule: fractions of num_steps where the rate drops",
  'decay_steps': "'step' schedule: step numbers where the rate drops (wins over fractions)",
  'decay_factor': "'step' schedule: the factor the rate is multiplied by at each drop",
  'momentum': 'momentum of momentum and nesterov SGD',
  'b1': 'Adam: decay rate of the first-moment (mean) estimate',
  'b2': 'Adam: decay rate of the second-moment estimate',
  'weight_decay': 'L2 weight decay (decoupled for adamw); 0: none',
  'grad_clip_norm': 'clip the gradient to this global L2 norm; None: off',
  'clip_by_lr': 'clip each gradient entry to +-theta/learning rate (VDSR); None: off',
  'lr_multipliers': 'parameter path prefix -> multiplier of the learning rate',
  'frozen': 'parameter path prefixes that get no updates',
}


def fields(config) -> dict:
  """The optimizer fields present in an experiment's config, for `build(**...)`."""
  return {k: config[k] for k in _FIELDS if k != 'num_steps' and k in config}
