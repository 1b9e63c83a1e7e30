import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import losses, weights
from nkjax.errors import UserError
from nkjax.models import cnn, sr
from nkjax.models.layers import Conv
from nkjax.ops import resize


def _conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def test_srcnn_parameter_counts_and_valid_sizes_are_the_papers():
  # Dong et al. (2014): 9-1-5 with n1 = 64, n2 = 32 on Y: 8,129 parameters;
  # 9-5-5 has 57,184 weights (section 4.3.2), plus 97 biases.
  small = sr.SRCNN(f2=1)
  assert (
    cnn.count_params(small, (33, 33, 1))
    == (_conv(9, 1, 64) + _conv(1, 64, 32) + _conv(5, 32, 1))
    == 8_129
  )
  big = sr.SRCNN(f2=5)
  assert cnn.count_params(big, (33, 33, 1)) == 57_184 + 64 + 32 + 1
  # 33x33 sub-images give 21x21 labels (9-1-5) and 17x17 (9-5-5).
  x = jnp.zeros((2, 33, 33, 1))
  for model, out in ((small, 21), (big, 17)):
    y = model.apply(model.init(jax.random.key(0), x), x)
    assert y.shape == (2, out, out, 1)
  same = sr.SRCNN(padding='SAME')
  assert same.apply(same.init(jax.random.key(0), x), x).shape == x.shape
  assert sr.receptive_field(small) == 13 and sr.receptive_field(big) == 17


def test_vdsr_has_20_layers_of_64_and_predicts_a_residual():
  model = sr.VDSR()
  want = _conv(3, 1, 64) + 18 * _conv(3, 64, 64) + _conv(3, 64, 1)
  assert cnn.count_params(model, (41, 41, 1)) == want == 665_921
  x = jax.random.uniform(jax.random.key(1), (1, 41, 41, 1))
  params = jax.jit(model.init)(jax.random.key(0), x)['params']
  last = sorted(params, key=lambda k: int(k.split('_')[1]))[-1]
  params[last] = jax.tree.map(jnp.zeros_like, params[last])
  # With the last layer at zero the network is the identity: output = input.
  np.testing.assert_array_equal(jax.jit(model.apply)({'params': params}, x), x)
  assert sr.receptive_field(model) == 41


def test_srresnet_parameter_count_from_its_layers_and_x4_output():
  model = sr.SRResNet()
  bn = 2 * 64  # scale and bias; running statistics are not parameters
  block = 2 * _conv(3, 64, 64) + 2 * bn + 1
  want = (
    _conv(9, 3, 64) + 1
    + 16 * block
    + _conv(3, 64, 64) + bn
    + 2 * (_conv(3, 64, 256) + 1)
    + _conv(9, 64, 3)
  )  # fmt: skip
  assert cnn.count_params(model, (24, 24, 3)) == want == 1_549_462
  tiny = sr.SRResNet(blocks=1, features=8, scale=2)
  x = jnp.zeros((2, 6, 5, 3))
  variables = jax.jit(lambda x: tiny.init(jax.random.key(0), x, train=False))(x)
  assert tiny.apply(variables, x, train=False).shape == (2, 12, 10, 3)
  with pytest.raises(UserError, match='powers of two'):
    sr.SRResNet(scale=3).init(jax.random.key(0), x, train=False)


def test_pixel_shuffle_is_the_sub_pixel_definition():
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 2 * 9)).astype(np.float32)
  got = np.asarray(sr.pixel_shuffle(jnp.asarray(x), 3))
  want = np.zeros((2, 9, 12, 2), np.float32)
  for h in range(3):
    for w in range(4):
      for c in range(2):
        for i in range(3):
          for j in range(3):
            want[:, 3 * h + i, 3 * w + j, c] = x[:, h, w, c * 9 + i * 3 + j]
  np.testing.assert_array_equal(got, want)


def test_srgan_discriminator_has_eight_convolutions_and_one_logit():
  model = sr.SRGANDiscriminator()
  convs = (
    _conv(3, 3, 64) + _conv(3, 64, 64)
    + _conv(3, 64, 128) + _conv(3, 128, 128)
    + _conv(3, 128, 256) + _conv(3, 256, 256)
    + _conv(3, 256, 512) + _conv(3, 512, 512)
  )  # fmt: skip
  bns = 2 * (64 + 128 + 128 + 256 + 256 + 512 + 512)  # 7: not after the first
  dense = 6 * 6 * 512 * 1024 + 1024 + 1024 + 1  # 96x96 halved four times
  assert cnn.count_params(model, (96, 96, 3)) == convs + bns + dense
  tiny = sr.SRGANDiscriminator(widths=(4, 8), dense=8)
  x = jnp.zeros((3, 16, 16, 3))
  variables = jax.jit(lambda x: tiny.init(jax.random.key(0), x, train=False))(x)
  kinds = [k for k in variables['params'] if k.startswith('Conv')]
  assert len(kinds) == 4 and tiny.apply(variables, x, train=False).shape == (3,)


def _write_keras_vgg19(path, rng):
  """A file laid out as Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5."""
  names, arrays, cin = [], [], 3
  with h5py.File(path, 'w') as f:
    f.attrs['backend'] = b'tensorflow'
    f.attrs['keras_version'] = b'2.1.5'
    layers = ['input_1']
    for b, n in enumerate(sr.VGG19_CONVS, 1):
      layers += [f'block{b}_conv{i}' for i in range(1, n + 1)] + [f'block{b}_pool']
    f.attrs['layer_names'] = [n.encode() for n in layers]
    for name in layers:
      g = f.create_group(name)
      if '_conv' not in name:
        g.attrs['weight_names'] = []
        continue
      width = sr.VGG19_WIDTHS[int(name[5]) - 1]
      kernel = rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, width))
      bias = rng.normal(0, 0.1, width)
      g.attrs['weight_names'] = [f'{name}/kernel:0'.encode(), f'{name}/bias:0'.encode()]
      g.create_dataset(f'{name}/kernel:0', data=kernel.astype(np.float32))
      g.create_dataset(f'{name}/bias:0', data=bias.astype(np.float32))
      names.append(name)
      arrays.append((kernel, bias))
      cin = width
  return arrays


def _reference_phi54(rgb, arrays):
  """Keras' VGG19 by hand: BGR minus the mean in [0, 255], convolutions + ReLU,
  2x2 max pools after blocks 1-4, stopping at block5_conv4."""
  x = rgb[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  i = 0
  for b, n in enumerate(sr.VGG19_CONVS):
    for _ in range(n):
      k, bias = arrays[i]
      x = jax.lax.conv_general_dilated(
        x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision='highest',
      ) + bias  # fmt: skip
      x = np.maximum(np.asarray(x), 0)
      i += 1
    if b < 4:
      h, w = x.shape[1] // 2, x.shape[2] // 2
      x = x[:, : 2 * h, : 2 * w].reshape(x.shape[0], h, 2, w, 2, -1).max((2, 4))
  return x


def test_vgg19_features_from_a_keras_file_and_its_converted_npz(tmp_path):
  h5 = tmp_path / 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5'
  arrays = _write_keras_vgg19(str(h5), np.random.default_rng(0))
  params = weights.load_vgg19_params(str(h5))
  rgb = np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
  got = jax.jit(sr.VGG19Features().apply)({'params': params}, jnp.asarray(rgb))
  assert got.shape == (1, 2, 2, 512)
  want = _reference_phi54(rgb.astype(np.float64), arrays)
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
  npz = weights.convert_keras_vgg19(str(h5), str(tmp_path / 'vgg19.npz'))
  again = weights.load_vgg19_params(npz)
  jax.tree.map(np.testing.assert_array_equal, again, params)
  # The VGG-19 of the CNN chapter has the same convolution names and shapes.
  cnn_params = jax.eval_shape(
    lambda: cnn.create('vgg19').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
    )
  )['params']
  convs = {k: v for k, v in cnn_params.items() if k.startswith('Conv')}
  assert jax.tree.map(lambda a: a.shape, convs) == jax.tree.map(
    lambda a: a.shape, params
  )
  assert cnn.count_params(sr.VGG19Features(), (32, 32, 3)) == 20_024_384


def test_vgg19_loader_errors_are_one_line(tmp_path):
  with pytest.raises(UserError, match='not found; give --config.vgg19_weights'):
    weights.load_vgg19_params(str(tmp_path / 'missing.h5'))
  bad = tmp_path / 'vgg.npz'
  np.savez(bad, **{'Conv_0/kernel': np.zeros((3, 3, 3, 8))})
  with pytest.raises(UserError, match=r'vgg\.npz: Conv_0/bias is missing$'):
    weights.load_vgg19_params(str(bad))


def test_vgg_content_loss_is_the_scaled_feature_mse():
  feats = lambda x: x * 2.0
  a = jnp.ones((2, 4, 4, 3))
  b = jnp.zeros((2, 4, 4, 3))
  np.testing.assert_allclose(
    losses.vgg_content_loss(feats, a, b), jnp.full((2,), (2.0 / 12.75) ** 2), rtol=1e-6
  )


def test_icnr_sub_pixel_convolution_starts_as_nearest_neighbour_upsampling():
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 7))
  conv = Conv(4 * 3, (3, 3), padding='SAME', kernel_init=sr.icnr(2))
  params = conv.init(jax.random.key(1), x)['params']
  got = np.asarray(sr.pixel_shuffle(conv.apply({'params': params}, x), 2))
  # Independently: one convolution to 3 channels with the kernel of each group's
  # first channel, then every pixel repeated 2x2.
  one = jax.lax.conv_general_dilated(
    x, params['kernel'][..., ::4], (1, 1), 'SAME',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision='highest',
  )  # fmt: skip
  want = np.repeat(np.repeat(np.asarray(one), 2, 1), 2, 2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # The default initialisation is not blockwise constant (the checkerboard).
  plain = Conv(4 * 3, (3, 3), padding='SAME')
  out = sr.pixel_shuffle(plain.apply(plain.init(jax.random.key(1), x), x), 2)
  assert np.abs(np.asarray(out[:, ::2, ::2] - out[:, 1::2, ::2])).mean() > 0.1
  # The base kernel keeps LeCun normal's variance 1 / fan_in (3 x 3 x 64).
  big = sr.icnr(2)(jax.random.key(2), (3, 3, 64, 256))
  assert float(big.std()) == pytest.approx((1 / 576) ** 0.5, rel=0.03)
  with pytest.raises(ValueError, match='divisible by 4, got 6'):
    sr.icnr(2)(jax.random.key(0), (3, 3, 4, 6))


def test_srresnet_icnr_initialises_both_upsamplers_and_keeps_the_parameters():
  x = jnp.zeros((1, 6, 6, 3))
  for icnr in (True, False):
    model = sr.SRResNet(blocks=1, features=8, scale=4, norm=False, icnr=icnr)
    params = jax.jit(lambda x, m=model: m.init(jax.random.key(0), x, train=False))(x)[
      'params'
    ]
    # Conv_0 head, Conv_1 after the blocks, Conv_2 and Conv_3 the x2 stages.
    for name in ('Conv_2', 'Conv_3'):
      k = np.asarray(params[name]['kernel'])
      assert k.shape == (3, 3, 8, 32)
      shared = all(np.array_equal(k[..., 0::4], k[..., j::4]) for j in (1, 2, 3))
      assert shared is icnr
  assert cnn.count_params(
    sr.SRResNet(blocks=2, features=8, icnr=True), (24, 24, 3)
  ) == cnn.count_params(sr.SRResNet(blocks=2, features=8), (24, 24, 3))


def test_srresnet_bicubic_skip_adds_exactly_the_bicubic_upsampling():
  x = jax.random.uniform(jax.random.key(0), (2, 7, 6, 3))
  plain = sr.SRResNet(blocks=1, features=8, scale=4, norm=False)
  skip = sr.SRResNet(blocks=1, features=8, scale=4, norm=False, bicubic_skip=True)
  params = jax.jit(lambda x: plain.init(jax.random.key(1), x, train=False))(x)['params']
  assert cnn.count_params(skip, (7, 6, 3)) == cnn.count_params(plain, (7, 6, 3))
  # The host NumPy imresize (a separate code path from the network's JAX one).
  bicubic = np.stack([resize.imresize_np(np.asarray(im), scale=4.0) for im in x])
  run = jax.jit(lambda m, p: m.apply({'params': p}, x, train=False), static_argnums=0)
  np.testing.assert_allclose(
    run(skip, params) - run(plain, params), bicubic, rtol=1e-5, atol=1e-5
  )
  # With the output convolution at zero the network starts as bicubic.
  last = max(params, key=lambda k: int(k.split('_')[1]) if k.startswith('Conv') else -1)
  params[last] = jax.tree.map(jnp.zeros_like, params[last])
  np.testing.assert_allclose(run(skip, params), bicubic, rtol=1e-5, atol=1e-5)
  assert not np.allclose(run(plain, params), bicubic, atol=1e-2)
