"""The CPU-only forms of nkjax.ops.cpu_dispatch are in the program for a CPU
and never in the program for a GPU or TPU.

The forms are chosen inside the program (`jax.lax.platform_dependent`), so
the traced jaxpr holds both; each platform's program is read off it by
following, at each platform-dependent choice, the branch that lowering keeps
for that platform. tests/test_export.py checks the lowered programs themselves.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.models import cnn, gan
from nkjax.ops import cpu_dispatch

ACCELERATORS = ('cuda', 'tpu')
_PLATFORM = {'name': 'cpu'}  # the platform whose branches `_primitives` follows


def _branch_for(eqn, platform):
  """The branch of a `platform_dependent` cond that `platform` runs."""
  for branch, platforms in zip(
    eqn.params['branches'], eqn.params['branches_platforms'], strict=True
  ):
    if platforms is None or platform in platforms:
      return branch
  raise AssertionError(f'no branch for {platform}')


def _primitives(closed_jaxpr) -> list:
  """Every equation of a jaxpr and of the jaxprs nested in it (jit, scan,
  cond...), in the program for `_PLATFORM['name']`."""
  found = []

  def visit(value):
    if hasattr(value, 'eqns'):
      for eqn in value.eqns:
        if eqn.params.get('branches_platforms') is not None:
          visit(_branch_for(eqn, _PLATFORM['name']))
          continue
        found.append(eqn)
        for param in eqn.params.values():
          visit(param)
    elif hasattr(value, 'jaxpr'):
      visit(value.jaxpr)
    elif isinstance(value, (list, tuple)):
      for v in value:
        visit(v)

  visit(closed_jaxpr)
  return found


def _convs(fn, *args):
  eqns = _primitives(jax.make_jaxpr(fn)(*args))
  convs = [e for e in eqns if e.primitive.name == 'conv_general_dilated']
  dots = [e for e in eqns if e.primitive.name == 'dot_general']
  return convs, dots


@pytest.fixture(params=('cpu', *ACCELERATORS))
def backend(request, monkeypatch):
  monkeypatch.setitem(_PLATFORM, 'name', request.param)
  return request.param


def test_transposed_convolution_is_sub_pixel_only_on_a_cpu(backend):
  x = jnp.ones((2, 4, 4, 16))
  w = jnp.ones((4, 4, 16, 8))
  f = functools.partial(cpu_dispatch.conv_transpose, strides=(2, 2), padding='SAME')
  convs, _ = _convs(f, x, w)
  dilated = [e for e in convs if tuple(e.params['lhs_dilation']) != (1, 1)]
  if backend == 'cpu':
    # One stride-1 convolution per output phase, no inserted zeros.
    assert len(convs) == 4 and not dilated
  else:
    # XLA's own op: one convolution of the input dilated by the stride.
    assert len(convs) == 1 and tuple(dilated[0].params['lhs_dilation']) == (2, 2)
  # Its gradient: on an accelerator XLA's two gradient convolutions, nothing else.
  grad_convs, grad_dots = _convs(
    jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), (0, 1)), x, w
  )
  if backend != 'cpu':
    assert len(grad_convs) == 3 and not grad_dots


def test_tiny_map_convolution_is_shifted_matmuls_only_on_a_cpu(backend):
  x = jnp.ones((2, 2, 2, 8))  # a 2x2 output: the CPU's slow case
  w = jnp.ones((3, 3, 8, 4))
  dims = ('NHWC', 'HWIO', 'NHWC')
  f = lambda x, w: cpu_dispatch.conv_general_dilated(
    x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims
  )  # noqa: E731
  convs, dots = _convs(f, x, w)
  if backend == 'cpu':
    assert not convs and len(dots) == 9  # one product per kernel tap
  else:
    assert len(convs) == 1 and not dots


def test_models_take_no_cpu_form_on_an_accelerator(backend):
  # VGG-11 on 32x32 images reaches 2x2 maps in its last stage (two of its eight
  # convolutions); the DCGAN generator upsamples three times with transposed
  # convolutions.
  vgg = cnn.create('vgg11', num_classes=10, pool_to=1, classifier=(16,))
  images = jnp.ones((2, 32, 32, 3))
  variables = jax.eval_shape(
    functools.partial(vgg.init, train=False), jax.random.key(0), images
  )
  convs, _ = _convs(lambda v, x: vgg.apply(v, x, train=False), variables, images)
  generator = gan.DCGANGenerator(image_shape=(32, 32, 3), widths=(32, 16, 8))
  z = jnp.ones((2, 100))
  g_vars = jax.eval_shape(
    functools.partial(generator.init, train=False), jax.random.key(0), z
  )
  g_convs, _ = _convs(lambda v, z: generator.apply(v, z, train=False), g_vars, z)
  g_dilated = [e for e in g_convs if tuple(e.params['lhs_dilation']) != (1, 1)]
  if backend == 'cpu':
    assert len(convs) == 8 - 2
    # Sub-pixel for the two wide layers; the 3-channel output layer keeps XLA's.
    assert len(g_convs) == 2 * 4 + 1 and len(g_dilated) == 1
  else:
    assert len(convs) == 8  # every convolution is XLA's
    assert len(g_convs) == 3 and len(g_dilated) == 3


def test_one_channel_convolution_is_elementwise_only_on_a_cpu(backend):
  # LeNet-5's C1 on grey digits: no convolution in the forward pass on a CPU.
  x = jnp.ones((2, 28, 28, 1))
  w = jnp.ones((5, 5, 1, 6))
  f = lambda x, w: cpu_dispatch.conv_general_dilated(
    x, w, (1, 1), ((2, 2), (2, 2)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )  # noqa: E731
  convs, dots = _convs(f, x, w)
  assert not dots
  assert len(convs) == (0 if backend == 'cpu' else 1)
  # The gradient is XLA's convolutions on every backend.
  grad_convs, _ = _convs(jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), (0, 1)), x, w)
  assert len(grad_convs) == (2 if backend == 'cpu' else 3)


def resnet20_squared_logits():
  """`(loss, (params, batch_stats))`: ResNet-20's sum of squared logits on two
  8x8 images in training mode and its abstract variables, whose gradient's
  program the fusion-boundary tests count ops in."""
  model = cnn.create('resnet20', num_classes=10)
  images = jnp.ones((2, 8, 8, 3))
  variables = jax.eval_shape(
    functools.partial(model.init, train=False), jax.random.key(0), images
  )

  def loss(params, stats):
    logits, _ = model.apply(
      {'params': params, 'batch_stats': stats}, images, train=True,
      mutable=['batch_stats'],
    )  # fmt: skip
    return jnp.sum(logits**2)

  return loss, (variables['params'], variables['batch_stats'])


def test_resnet_blocks_have_fusion_boundaries_only_where_they_apply(backend):
  # Two per BasicBlock (after its first ReLU and at its output), forward and
  # in the gradient; none on an accelerator.
  loss, args = resnet20_squared_logits()
  eqns = _primitives(jax.make_jaxpr(jax.grad(loss))(*args))
  barriers = [e for e in eqns if e.primitive.name == 'optimization_barrier']
  on = backend == 'cpu' and cpu_dispatch.fusion_boundaries_apply()
  assert len(barriers) == (2 * 9 * 2 if on else 0)


def test_fusion_boundaries_change_no_gradient(monkeypatch):
  model = cnn.create('resnet20', num_classes=10)
  images = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  variables = model.init(jax.random.key(0), images, train=False)

  def grads():
    def loss(params):
      logits, _ = model.apply(
        {**variables, 'params': params}, images, train=True, mutable=['batch_stats']
      )
      return jnp.sum(jax.nn.log_softmax(logits)[:, 3])

    return jax.jit(jax.grad(loss))(variables['params'])

  monkeypatch.setattr(cpu_dispatch, 'fusion_boundaries_apply', lambda: True)
  with_boundaries = grads()
  monkeypatch.setattr(cpu_dispatch, 'cpu_fusion_boundary', lambda x: x)
  without = grads()
  for a, b in zip(
    jax.tree.leaves(with_boundaries), jax.tree.leaves(without), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
