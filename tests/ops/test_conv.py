import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.ops import conv, cpu_dispatch, sizes

COURSE_MAP = jnp.array(
  [[1, 5, 4, 3], [2, 6, 4, 0], [3, 1, 7, 9], [2, 8, 6, 5]], jnp.float32
)[None, :, :, None]


def test_course_pooling_example():
  mx = conv.pool2d(COURSE_MAP, window=2, stride=2, kind='max')[0, :, :, 0]
  avg = conv.pool2d(COURSE_MAP, window=2, stride=2, kind='avg')[0, :, :, 0]
  np.testing.assert_array_equal(mx, [[6, 4], [8, 9]])
  # The course prints [[3.5, 2.75], [3.5, 7]]: its 7 is (7 + 9 + 6 + 5) / 4 = 6.75
  # rounded, as its rounded-down version [[3, 2], [3, 6]] confirms.
  np.testing.assert_array_equal(avg, [[3.5, 2.75], [3.5, 6.75]])
  assert float(jnp.round(avg[1, 1])) == 7.0
  np.testing.assert_array_equal(jnp.floor(avg), [[3, 2], [3, 6]])


def test_course_convolution_shapes():
  x = jnp.ones((1, 32, 32, 3))
  y = conv.conv2d(x, jnp.ones((5, 5, 3, 6)))
  assert y.shape == (1, 28, 28, 6)
  assert conv.conv2d(y, jnp.ones((5, 5, 6, 10))).shape == (1, 24, 24, 10)
  # Stride 2: floor((32 - 5) / 2) + 1 = 14; with padding 2, floor((36 - 5) / 2) + 1 = 16.
  assert conv.conv2d(x, jnp.ones((5, 5, 3, 6)), stride=2).shape == (1, 14, 14, 6)
  assert conv.conv2d(x, jnp.ones((5, 5, 3, 6)), stride=2, padding=2).shape == (
    1,
    16,
    16,
    6,
  )
  assert sizes.output_size(32, 5) == 28 and sizes.output_size(28, 5) == 24
  assert (
    sizes.output_size(7, 3, stride=2) == 3
    and sizes.output_size(32, 5, stride=2, padding=(2, 2)) == 16
  )


CONV_CASES = list(
  itertools.product(
    [1, 2, 3], ['VALID', 'SAME', 1, ((2, 0), (1, 3))], [1, 2], [(3, 3), (2, 5)]
  )
)


@pytest.mark.parametrize('stride, padding, dilation, kernel', CONV_CASES)
def test_conv2d_equals_lax(stride, padding, dilation, kernel):
  kx, kw = jax.random.split(jax.random.key(stride * 7 + dilation))
  x = jax.random.normal(kx, (2, 11, 10, 3))
  w = jax.random.normal(kw, (*kernel, 3, 4))
  pads = (
    padding
    if isinstance(padding, str)
    else ((padding, padding), (padding, padding))
    if isinstance(padding, int)
    else padding
  )
  expected = jax.lax.conv_general_dilated(
    x,
    w,
    (stride, stride),
    pads,
    rhs_dilation=(dilation, dilation),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  got = conv.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  'window, stride, padding',
  [(2, 2, 'VALID'), (3, 2, 'VALID'), (3, 1, 'SAME'), (2, 1, 'VALID'), (3, 2, 'SAME')],
)
@pytest.mark.parametrize('kind', ['max', 'avg'])
def test_pool2d_equals_flax(window, stride, padding, kind):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  lib = nn.max_pool if kind == 'max' else nn.avg_pool
  expected = lib(x, (window, window), strides=(stride, stride), padding=padding)
  got = conv.pool2d(x, window=window, stride=stride, kind=kind, padding=padding)
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_adaptive_avg_pool_tiles_and_replicates():
  x = jax.random.normal(jax.random.key(1), (2, 14, 14, 3))
  np.testing.assert_allclose(
    conv.adaptive_avg_pool(x, (7, 7)),
    conv.pool2d(x, window=2, kind='avg'),
    # Means of 4 normal values: float32 rounding is ~1e-7 absolute, which is
    # a large relative error for the cells whose mean is near 0.
    rtol=1e-6,
    atol=1e-6,
  )
  one = x[:, :1, :1, :]
  np.testing.assert_allclose(
    conv.adaptive_avg_pool(one, (7, 7)), jnp.broadcast_to(one, (2, 7, 7, 3))
  )
  # Uneven: 5 -> 3 cells span rows [0, 2), [1, 4), [3, 5), as torch defines them.
  y = conv.adaptive_avg_pool(
    jnp.arange(5.0)[None, :, None, None] * jnp.ones((1, 5, 1, 1)), (3, 1)
  )
  np.testing.assert_allclose(y[0, :, 0, 0], [0.5, 2.0, 3.5])


def test_receptive_field_of_stacks():
  assert sizes.receptive_field([(3, 1)] * 2) == (5, 1)  # two 3x3 convs see 5x5
  assert sizes.receptive_field([(3, 1)] * 3) == (7, 1)  # three see 7x7, VGG's argument
  assert sizes.receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)]) == (
    16,
    4,
  )  # LeNet-5's C1 S2 C3 S4
  assert sizes.receptive_field([(3, 1, 2)]) == (5, 1)  # dilation 2


def test_parameter_counts_dense_versus_convolution():
  # The course: a 1000x1000 image fully connected to 10^6 hidden units needs 10^12 weights.
  assert sizes.dense_params(1000 * 1000, 1000 * 1000, bias=False) == 10**12
  # A convolution's weights do not depend on the image size: 100 filters of 10x10.
  assert sizes.conv_params(10, 10, 1, 100, bias=False) == 10**4
  assert sizes.conv_params(5, 5, 3, 6) == 456


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match='input has 3 channels but the kernel expects 4'):
    conv.conv2d(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 4, 1)))
  with pytest.raises(ValueError, match='valid choices: avg, max'):
    conv.pool2d(COURSE_MAP, window=2, kind='median')


@pytest.mark.parametrize(
  'hw, stride, padding',
  [(2, 1, ((1, 1), (1, 1))), (4, 2, 'SAME'), (3, 1, 'VALID'), (8, 1, ((1, 1), (1, 1)))],
)
def test_conv_general_dilated_equals_lax_on_tiny_and_ordinary_maps(hw, stride, padding):
  x = jax.random.normal(jax.random.key(0), (2, hw, hw, 5))
  w = jax.random.normal(jax.random.key(1), (3, 3, 5, 4))
  dims = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))
  args = ((stride, stride), padding)
  expected = jax.lax.conv_general_dilated(x, w, *args, dimension_numbers=dims)
  np.testing.assert_allclose(
    cpu_dispatch.conv_general_dilated(x, w, *args, dimension_numbers=dims),
    expected,
    rtol=1e-4,
    atol=1e-4,
  )
  # And its gradient, which is what training runs.
  loss = lambda f: lambda w: jnp.sum(f(x, w, *args, dimension_numbers=dims) ** 2)  # noqa: E731
  np.testing.assert_allclose(
    jax.grad(loss(cpu_dispatch.conv_general_dilated))(w),
    jax.grad(loss(jax.lax.conv_general_dilated))(w),
    rtol=1e-4,
    atol=1e-3,
  )


@pytest.mark.parametrize(
  'hw, kernel, stride, padding, dilation',
  [
    (28, 5, 1, ((2, 2), (2, 2)), 1),  # LeNet-5's C1 on 28x28 digits
    (33, 9, 1, 'VALID', 1),  # SRCNN's first layer on a 33x33 Y sub-image
    (16, 4, 2, 'SAME', 1),  # a DCGAN discriminator's strided first layer
    (11, 3, 2, ((0, 1), (2, 0)), 2),  # uneven padding, stride and dilation
  ],
)
def test_one_channel_convolution_and_both_gradients_equal_lax(
  hw, kernel, stride, padding, dilation
):
  # Float64 references would hide nothing here: both sides are float32 sums
  # of the same products, so they agree to rounding.
  x = jax.random.normal(jax.random.key(0), (3, hw, hw, 1))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 1, 6))
  dims = ('NHWC', 'HWIO', 'NHWC')
  kwargs = dict(rhs_dilation=(dilation, dilation), dimension_numbers=dims)
  args = ((stride, stride), padding)
  ours = lambda x, w: cpu_dispatch.conv_general_dilated(x, w, *args, **kwargs)  # noqa: E731
  lax = lambda x, w: jax.lax.conv_general_dilated(x, w, *args, **kwargs)  # noqa: E731
  np.testing.assert_allclose(ours(x, w), lax(x, w), rtol=1e-5, atol=1e-4)
  # A loss that weights every output differently, so a transposed or shifted
  # gradient cannot pass.
  weights = jax.random.normal(jax.random.key(2), lax(x, w).shape)
  loss = lambda f: lambda x, w: jnp.sum(weights * f(x, w))  # noqa: E731
  for got, expected in zip(
    jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(lax), (0, 1))(x, w), strict=True
  ):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('window, stride, hw', [(2, 2, 8), (3, 2, 9), (2, 2, 7)])
def test_max_pool_equals_flax(window, stride, hw):
  x = jax.random.normal(jax.random.key(2), (2, hw, hw, 3))
  expected = nn.max_pool(x, (window, window), (stride, stride))
  np.testing.assert_array_equal(
    conv.max_pool(x, (window, window), (stride, stride)), expected
  )
  g = lambda f: jax.grad(
    lambda x: jnp.sum(f(x, (window, window), (stride, stride)) ** 2)
  )(x)  # noqa: E731
  np.testing.assert_allclose(g(conv.max_pool), g(nn.max_pool), rtol=1e-6)


@pytest.mark.parametrize(
  'kernel, stride, padding, hw',
  [
    (4, 2, 'SAME', 4),  # DCGAN's upsampling
    (3, 2, 'SAME', 5),  # a kernel that does not split evenly over the phases
    (1, 2, 'VALID', 3),  # phases no tap reaches are zeros
    (4, 3, ((3, 1), (0, 2)), 5),
  ],
)
def test_conv_transpose_equals_lax_with_its_gradients(kernel, stride, padding, hw):
  x = jax.random.normal(jax.random.key(0), (2, hw, hw + 1, 3))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 8))  # 8: the fast path
  args = ((stride, stride), padding)
  f = lambda x, w: jax.lax.conv_transpose(
    x, w, *args, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )  # noqa: E731
  np.testing.assert_allclose(
    cpu_dispatch.conv_transpose(x, w, *args), f(x, w), rtol=1e-5, atol=1e-5
  )
  loss = lambda g: lambda x, w: jnp.sum(jnp.sin(g(x, w)))  # noqa: E731
  for ours, theirs in zip(
    jax.grad(loss(lambda x, w: cpu_dispatch.conv_transpose(x, w, *args)), (0, 1))(x, w),
    jax.grad(loss(f), (0, 1))(x, w),
    strict=True,
  ):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_conv_transpose_module_is_flax_s_with_the_same_parameters():
  from nkjax.models.layers import ConvTranspose

  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 16))
  kwargs = {'features': 8, 'kernel_size': (4, 4), 'strides': (2, 2)}
  ours = ConvTranspose(**kwargs).init(jax.random.key(0), x)
  theirs = nn.ConvTranspose(**kwargs).init(jax.random.key(0), x)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), ours, theirs))
  np.testing.assert_allclose(
    ConvTranspose(**kwargs).apply(theirs, x),
    nn.ConvTranspose(**kwargs).apply(theirs, x),
    rtol=1e-5,
    atol=1e-5,
  )
