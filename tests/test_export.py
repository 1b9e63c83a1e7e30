"""Every experiment's train and predict/eval steps, and the benchmark suite's
steps, lower for a TPU and a GPU on this CPU-only machine.

`jax.export` lowers for a platform without its device. Each experiment's
smoke preset runs its own `main` up to `loop.fit` (patched here to record the
step, the state and one batch, then stop: nothing is trained); its
evaluation or prediction is reached the same way, through the `eval_fn` and
`summarize` that `main` handed to `fit`. The steps are then lowered from
`jax.ShapeDtypeStruct`s, not compiled: a lowering error (an op with no rule
on that platform, a CPU-only form left in the program) fails the test.
"""

import functools
import os
import re
import sys

import jax
import numpy as np
import pytest
from jax import export

from nkjax.train import loop

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'experiments'))

PLATFORMS = ('tpu', 'cuda')
EXPERIMENTS = ('mlp', 'cnn', 'rnn', 'gan', 'sr', 'detection')


class _Stop(Exception):
  """Raised by the patched loop functions once they hold what a test needs."""


def _spec(tree):
  """`jax.ShapeDtypeStruct`s of a pytree of arrays; PRNG keys become their
  uint32 key data (wrapped back by `_lowerable`)."""

  def one(x):
    x = x if hasattr(x, 'dtype') else np.asarray(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    # A host int64 (a step counter) is the int32 that jit would make of it.
    return jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.canonicalize_dtype(x.dtype))

  return jax.tree.map(one, tree)


def _key_positions(tree):
  return jax.tree.map(
    lambda x: (
      hasattr(x, 'dtype') and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    ),
    tree,
  )


def _lowerable(fn, args):
  """`fn` taking key data where `args` hold keys; the specs of its arguments."""
  is_key = [_key_positions(a) for a in args]

  def wrapped(*flat):
    real = [
      jax.tree.map(lambda v, k: jax.random.wrap_key_data(v) if k else v, a, m)
      for a, m in zip(flat, is_key, strict=True)
    ]
    return fn(*real)

  return wrapped, [_spec(a) for a in args]


def lower(fn, args, *platforms: str) -> str:
  """The StableHLO text of `fn(*args)` exported for `platforms` (several: one
  module that holds each platform's branch of `lax.platform_dependent`)."""
  wrapped, specs = _lowerable(fn, args)
  return export.export(jax.jit(wrapped), platforms=platforms)(*specs).mlir_module()


def _abstract_create(create):
  """`state.create` giving the state's shapes only: no initialisation is run."""

  def abstract(**kwargs):
    return jax.eval_shape(lambda: create(**kwargs))

  return abstract


def _first(iterable):
  return next(iter(iterable))


def _no_features(images):
  return np.zeros((len(images), 2), np.float32), np.zeros(len(images), np.int32)


@pytest.fixture(scope='module')
def captured(tmp_path_factory):
  """Per experiment: the train step with its arguments, and the eval or
  predict step with its arguments, as the smoke preset's `main` built them."""
  out = {}
  mp = pytest.MonkeyPatch()
  record = {}

  def make_evaluator(eval_step, batches, **kwargs):
    def evaluate(state):
      record['eval'] = (eval_step, (state, _first(batches())))
      raise _Stop

    return evaluate

  def make_predictor(predict_step, **kwargs):
    def predict(state, batches):
      record['eval'] = (predict_step, (state, _first(batches)))
      raise _Stop

    return predict

  def fit(*, state, train_step, train_batches, rng, frozen=None, **kwargs):
    extra = () if frozen is None else (frozen,)
    record['train'] = (train_step, (state, _first(train_batches(0)), rng, *extra))
    for hook in (kwargs.get('eval_fn'), kwargs.get('summarize')):
      if hook is not None and 'eval' not in record:
        try:
          hook(state)
        except _Stop:
          pass
    raise _Stop

  import gan as gan_experiment

  from nkjax.train import state as state_lib

  sample_images = gan_experiment.sample_images

  def record_samples(state, z, labels, **kwargs):
    record['eval'] = (functools.partial(sample_images, **kwargs), (state, z, labels))
    raise _Stop

  mp.setattr(loop, 'fit', fit)
  # The GAN's feature classifier (an MLP of the backprop chapter, for the
  # Frechet distance) is not trained.
  mp.setattr(gan_experiment, 'feature_classifier', lambda *a, **k: _no_features)
  mp.setattr(gan_experiment, 'sample_images', record_samples)
  mp.setattr(loop, 'make_evaluator', make_evaluator)
  mp.setattr(loop, 'make_predictor', make_predictor)
  try:
    for name in EXPERIMENTS:
      module = __import__(name)
      record.clear()
      with pytest.MonkeyPatch.context() as m, pytest.raises(_Stop):
        if name != 'gan':  # (its state keeps a copy of the parameters: a tiny MLP)
          # Shapes only: the model is not initialised.
          m.setattr(state_lib, 'create', _abstract_create(state_lib.create))
        module.main(module.get_config('smoke'), str(tmp_path_factory.mktemp(name)))
      out[name] = dict(record)
  finally:
    mp.undo()
  return out


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_experiment_steps_lower(captured, name):
  steps = captured[name]
  assert set(steps) == {'train', 'eval'}, f'{name}: found only {sorted(steps)}'
  for kind, (fn, args) in steps.items():
    text = lower(fn, args, *PLATFORMS)
    assert 'func.func public @main' in text, (name, kind)


# The CPU-only forms of nkjax.ops.cpu_dispatch, as they appear in StableHLO:
# fusion barriers, and the shifted-matmul and sub-pixel convolutions, which
# leave no convolution with an input dilation (XLA's transposed convolution).
def _counts(text: str) -> dict:
  convs = re.findall(r'stablehlo\.convolution.*', text)
  return {
    'barrier': text.count('stablehlo.optimization_barrier'),
    'conv': len(convs),
    'dilated_conv': sum('lhs_dilate' in c for c in convs),
    'dot': text.count('stablehlo.dot_general'),
  }


@pytest.fixture(scope='module')
def gan_generator_programs():
  """A DCGAN generator's forward and backward pass, lowered for each platform."""
  import jax.numpy as jnp

  from nkjax.models import gan

  generator = gan.DCGANGenerator(image_shape=(32, 32, 3), widths=(32, 16, 8))
  z = jnp.ones((2, 100))
  variables = jax.eval_shape(
    functools.partial(generator.init, train=False), jax.random.key(0), z
  )

  def loss(variables, z):
    return jnp.sum(generator.apply(variables, z, train=False) ** 2)

  fn = jax.grad(loss)
  return {p: _counts(lower(fn, (variables, z), p)) for p in ('cpu', *PLATFORMS)}


def test_transposed_convolutions_are_sub_pixel_only_in_the_cpu_program(
  gan_generator_programs,
):
  cpu = gan_generator_programs['cpu']
  for p in PLATFORMS:
    # XLA's own transposed convolution (an input-dilated convolution) for
    # each of the three upsampling layers, forward and in the gradient.
    assert gan_generator_programs[p]['dilated_conv'] >= 3, p
  # On the CPU, the two wide layers' transposed convolutions are s*s = 4
  # stride-1 convolutions each; only the 3-channel output layer keeps XLA's.
  assert cpu['conv'] > gan_generator_programs['tpu']['conv']
  assert cpu['dilated_conv'] < gan_generator_programs['tpu']['dilated_conv']


def test_fusion_boundaries_only_in_the_cpu_program():
  from nkjax.ops import cpu_dispatch

  from .ops.test_conv_dispatch import resnet20_squared_logits

  loss, args = resnet20_squared_logits()
  counts = {p: _counts(lower(jax.grad(loss), args, p)) for p in ('cpu', *PLATFORMS)}
  for p in PLATFORMS:
    assert counts[p]['barrier'] == 0, p
  # Two a BasicBlock, nine blocks, forward and in the gradient.
  want = 2 * 9 * 2 if cpu_dispatch.fusion_boundaries_apply() else 0
  assert counts['cpu']['barrier'] == want


def test_tiny_map_convolutions_are_matmuls_only_in_the_cpu_program():
  import jax.numpy as jnp

  from nkjax.models import cnn

  # VGG-11 on 32x32 images: two of its eight convolutions see 2x2 maps.
  vgg = cnn.create('vgg11', num_classes=10, pool_to=1, classifier=(16,))
  images = jnp.ones((2, 32, 32, 3))
  variables = jax.eval_shape(
    functools.partial(vgg.init, train=False), jax.random.key(0), images
  )
  fn = lambda v, x: vgg.apply(v, x, train=False)  # noqa: E731
  counts = {p: _counts(lower(fn, (variables, images), p)) for p in ('cpu', *PLATFORMS)}
  for p in PLATFORMS:
    assert counts[p]['conv'] == 8, p
  assert counts['cpu']['conv'] == 8 - 2


def test_several_steps_loop_is_unrolled_only_in_the_cpu_program():
  import jax.numpy as jnp

  from nkjax.train import sharding

  def step(state, batch, rng):
    return state + jnp.sum(batch), {'loss': (jnp.sum(batch), 1)}

  run = loop.jit_train_steps(step, sharding.data_mesh(jax.devices()[:1]))
  args = (jnp.float32(0), jnp.ones((4, 8, 2)), jax.random.key(0))
  wrapped, specs = _lowerable(run, args)
  texts = {
    p: export.export(jax.jit(wrapped), platforms=[p])(*specs).mlir_module()
    for p in ('cpu', *PLATFORMS)
  }
  assert 'stablehlo.while' not in texts['cpu']
  for p in PLATFORMS:
    assert 'stablehlo.while' in texts[p], p


def _bench_steps():
  """(name, step, (state, batch, rng)) of each benchmark at batch 2, as
  `nkjax.bench` builds them, and each accelerator-suite entry's several-steps
  call and bfloat16 variant."""
  import jax.numpy as jnp

  from nkjax import bench
  from nkjax.train import optim, steps
  from nkjax.train import state as state_lib

  batch_size = 2
  rng = jax.random.key(0)
  out = []
  for name, b in bench.BENCHMARKS.items():
    if b.setup is not None:
      state, step, batch = b.setup(batch_size)
      out.append((name, step, (state, batch, rng)))
      continue
    shape = b.input_shape
    dtypes = ['float32'] + (['bfloat16'] if hasattr(b.model(), 'dtype') else [])
    for dtype in dtypes:
      model = b.model()
      if dtype == 'bfloat16':
        model = model.clone(dtype=jnp.bfloat16)
      example = jnp.zeros((1, *shape), jnp.int32 if b.seq_len else jnp.float32)
      state = state_lib.create(
        model=model, tx=optim.make_optimizer(name='adam', learning_rate=1e-3),
        rng=rng, inputs=(example,),
      )  # fmt: skip
      if b.seq_len:
        batch = {'tokens': np.zeros((batch_size, b.seq_len + 1), np.int32)}
        step = steps.lm_train_step
      else:
        batch = {
          'image': np.zeros((batch_size, *shape), np.float32),
          'label': np.zeros(batch_size, np.int32),
        }
        step = steps.classifier_train_step
      out.append((f'{name}/{dtype}', step, (state, batch, rng)))
  by_name = {n.split('/')[0]: (f, a) for n, f, a in out}
  for entry in bench.ACCELERATOR_SUITE:
    if entry.steps_per_call > 1:
      step, args = by_name[entry.name]
      several = bench.several_steps(step, 2)
      out.append((f'{entry.name}/several_steps', several, args))
  return out


@pytest.fixture(scope='module')
def bench_steps():
  from nkjax.train import state as state_lib

  mp = pytest.MonkeyPatch()
  mp.setattr(state_lib, 'create', _abstract_create(state_lib.create))
  try:
    return _bench_steps()
  finally:
    mp.undo()


def test_bench_steps_lower(bench_steps):
  failed = {}
  for name, step, args in bench_steps:
    try:
      lower(step, args, *PLATFORMS)
    except Exception as e:  # noqa: BLE001 - every failure is listed at once
      failed[name] = f'{type(e).__name__}: {e}'[:300]
  assert not failed, failed
  assert len(bench_steps) >= 15
