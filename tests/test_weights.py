"""nkjax.weights: the one reader of weight files.

Converted networks are checked against PyTorch networks with torchvision's
module and parameter names, built here from random weights (reduced widths, the
published layer structure; no download). Those tests need torch and skip
without it; the Keras, npz and error tests need none (h5py for Keras)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nkjax import weights
from nkjax.errors import UserError
from nkjax.models import backbones, cnn, sr
from nkjax.models import detection as det
from nkjax.train import state as state_lib


def _shapes(module, *args, **kwargs):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))


def test_npz_round_trip_restores_the_nested_tree(tmp_path):
  rng = np.random.default_rng(0)
  tree = {
    'Conv_0': {'kernel': rng.normal(size=(3, 3, 1, 2)), 'bias': rng.normal(size=2)},
    'BasicBlock_0': {'Conv_0': {'kernel': rng.normal(size=(1, 1, 2, 2))}},
  }
  path = weights.write_npz(str(tmp_path / 'w.npz'), tree)
  with np.load(path) as z:
    assert sorted(z.files) == [
      'BasicBlock_0/Conv_0/kernel',
      'Conv_0/bias',
      'Conv_0/kernel',
    ]
  back = weights.read_npz(path)
  assert jax.tree.structure(back) == jax.tree.structure(tree)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.float32(b)), back, tree)


def test_npz_errors_are_one_line_and_name_the_file_and_flag(tmp_path):
  missing = str(tmp_path / 'missing.npz')
  with pytest.raises(
    UserError, match=r'missing\.npz.*not found; give --config\.x=PATH'
  ):
    weights.read_npz(missing, flag='--config.x')
  bad = tmp_path / 'bad.npz'
  bad.write_bytes(b'not a zip archive')
  with pytest.raises(UserError, match=r'bad\.npz: not an .npz of parameters') as e:
    weights.read_npz(str(bad))
  assert '\n' not in str(e.value)


def test_first_mismatch_names_the_first_differing_parameter():
  want = {'a': {'kernel': np.zeros((2, 3)), 'bias': np.zeros(3)}, 'b': np.zeros(1)}
  assert weights.first_mismatch(want, want) is None
  got = {'a': {'kernel': np.zeros((2, 4)), 'bias': np.zeros(3)}, 'b': np.zeros(1)}
  assert weights.first_mismatch(got, want) == (
    'a/kernel has shape (2, 4), the model needs (2, 3)'
  )
  assert weights.first_mismatch({'b': np.zeros(1)}, want) == 'a/bias is missing'
  extra = {**want, 'c': np.zeros(1)}
  assert weights.first_mismatch(extra, want) == 'c is not a parameter of the model'
  with pytest.raises(UserError, match=r'^weights file f\.npz: a/bias is missing$'):
    weights.check_shapes('f.npz', {'b': np.zeros(1)}, want)


def test_load_backbone_params_copies_every_backbone_weight_and_checks_shapes():
  model = det.FastRCNN(num_classes=3, backbone='resnet_tiny', fc=(8, 8))
  x = jnp.zeros((1, 32, 32, 3))
  # Shapes only: the loader copies by name and checks shapes.
  params = jax.tree.map(
    lambda a: jnp.zeros(a.shape, a.dtype),
    _shapes(model, x, jnp.zeros((1, 2, 4)), jnp.ones((1, 2), bool))['params'],
  )
  classifier = cnn.ResNet(stage_sizes=(1, 1, 1), num_filters=4, num_classes=5)
  c_params = jax.jit(lambda: classifier.init(jax.random.key(1), x, train=False))()[
    'params'
  ]
  out = weights.load_backbone_params(
    {'backbone': params['backbone_net'], 'head': params['box_head']}, c_params
  )
  for key in out['backbone']:
    jax.tree.map(np.testing.assert_array_equal, out['backbone'][key], c_params[key])
  bad = {**c_params, 'Conv_0': {'kernel': np.zeros((3, 3, 3, 4))}}
  with pytest.raises(
    UserError, match=r'^w\.npz: backbone weight Conv_0/kernel has shape'
  ):
    weights.load_backbone_params(
      {'backbone': params['backbone_net'], 'head': params['box_head']},
      bad,
      source='w.npz',
    )
  missing = {k: v for k, v in c_params.items() if k != 'Conv_0'}
  with pytest.raises(UserError, match=r'^w\.npz: backbone weight Conv_0 is missing'):
    weights.load_backbone_params(
      {'backbone': params['backbone_net'], 'head': params['box_head']},
      missing,
      source='w.npz',
    )


# ---------------------------------------------------------------- preprocessing


def test_preprocess_matches_each_sources_published_convention():
  rgb = np.random.default_rng(0).uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
  tv = backbones.preprocess(jnp.asarray(rgb), 'torchvision')
  # torchvision.transforms.Normalize on RGB in [0, 1].
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(tv, (rgb - mean) / std, rtol=1e-5, atol=1e-5)
  # Keras' imagenet_utils.preprocess_input(mode='caffe') on RGB in [0, 255].
  caffe = backbones.preprocess(jnp.asarray(rgb), 'caffe')
  bgr = rgb[..., [2, 1, 0]] * 255.0
  np.testing.assert_allclose(caffe, bgr - [103.939, 116.779, 123.68], atol=1e-4)
  np.testing.assert_array_equal(backbones.preprocess(jnp.asarray(rgb), 'none'), rgb)
  with pytest.raises(UserError, match="unknown preprocess 'bgr'"):
    backbones.preprocess(jnp.asarray(rgb), 'bgr')


def test_vgg19_features_and_backbones_apply_their_preprocessing():
  rgb = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3))
  for module in (
    functools.partial(sr.VGG19Features, convs_per_stage=(1, 1), widths=(4, 4)),
    functools.partial(backbones.VGGBackbone, convs_per_stage=(1, 1), widths=(4, 4)),
    functools.partial(backbones.ResNetBackbone, stage_sizes=(1,), num_filters=4),
  ):
    variables = jax.jit(
      lambda x, m=module: m().init(jax.random.key(1), x, train=False)
    )(rgb)
    for kind in ('torchvision', 'caffe'):
      got = module(preprocess=kind).apply(variables, rgb, train=False)
      want = module(preprocess='none').apply(
        variables, backbones.preprocess(rgb, kind), train=False
      )
      np.testing.assert_array_equal(got, want)
  assert sr.VGG19Features().preprocess == 'caffe'  # Keras' VGG19, as before


# ---------------------------------------------------------------- torchvision


def _torch_modules(torch):
  """torchvision's VGG and ResNet, written out with its module names (and so
  its state_dict keys), any widths."""
  tnn = torch.nn

  class VGG(tnn.Module):
    def __init__(self, convs, widths, classifier, num_classes, pool_to=7):
      super().__init__()
      layers, cin = [], 3
      for n, w in zip(convs, widths, strict=True):
        for _ in range(n):
          layers += [tnn.Conv2d(cin, w, 3, padding=1), tnn.ReLU(inplace=True)]
          cin = w
        layers.append(tnn.MaxPool2d(2, 2))
      self.features = tnn.Sequential(*layers)
      self.avgpool = tnn.AdaptiveAvgPool2d((pool_to, pool_to))
      fc, fin = [], cin * pool_to * pool_to
      for w in classifier:
        fc += [tnn.Linear(fin, w), tnn.ReLU(True), tnn.Dropout()]
        fin = w
      self.classifier = tnn.Sequential(*fc, tnn.Linear(fin, num_classes))

    def forward(self, x):
      return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

  def bn(c):
    b = tnn.BatchNorm2d(c)
    with torch.no_grad():  # statistics and affine parameters away from the identity
      b.weight.uniform_(0.5, 1.5)
      b.bias.normal_(0, 0.2)
      b.running_mean.normal_(0, 0.2)
      b.running_var.uniform_(0.5, 1.5)
    return b

  def downsample(cin, cout, stride):
    if stride == 1 and cin == cout:
      return None
    return tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

  class BasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, cin, c, stride):
      super().__init__()
      self.conv1 = tnn.Conv2d(cin, c, 3, stride, 1, bias=False)
      self.bn1 = bn(c)
      self.relu = tnn.ReLU(inplace=True)
      self.conv2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False)
      self.bn2 = bn(c)
      self.downsample = downsample(cin, c, stride)

    def forward(self, x):
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return self.relu(y + (x if self.downsample is None else self.downsample(x)))

  class Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, cin, c, stride):
      super().__init__()
      self.conv1 = tnn.Conv2d(cin, c, 1, bias=False)
      self.bn1 = bn(c)
      self.conv2 = tnn.Conv2d(c, c, 3, stride, 1, bias=False)  # v1.5
      self.bn2 = bn(c)
      self.conv3 = tnn.Conv2d(c, 4 * c, 1, bias=False)
      self.bn3 = bn(4 * c)
      self.relu = tnn.ReLU(inplace=True)
      self.downsample = downsample(cin, 4 * c, stride)

    def forward(self, x):
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      return self.relu(y + (x if self.downsample is None else self.downsample(x)))

  class ResNet(tnn.Module):
    def __init__(self, block, stages, width, num_classes):
      super().__init__()
      self.conv1 = tnn.Conv2d(3, width, 7, 2, 3, bias=False)
      self.bn1 = bn(width)
      self.relu = tnn.ReLU(inplace=True)
      self.maxpool = tnn.MaxPool2d(3, 2, 1)
      cin = width
      for s, n in enumerate(stages):
        blocks = []
        for b in range(n):
          stride = 2 if s > 0 and b == 0 else 1
          blocks.append(block(cin, width * 2**s, stride))
          cin = width * 2**s * block.expansion
        setattr(self, f'layer{s + 1}', tnn.Sequential(*blocks))
      self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
      self.fc = tnn.Linear(cin, num_classes)
      self.stages = len(stages)

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      for s in range(self.stages):
        x = getattr(self, f'layer{s + 1}')(x)
      return self.fc(torch.flatten(self.avgpool(x), 1))

  return VGG, BasicBlock, Bottleneck, ResNet


SMALL_VGG = dict(widths=(8, 16, 16, 32, 32), classifier=(64, 48), num_classes=10)


def _torch_pair(torch, arch):
  """(the torch network, the nkjax classifier) of `arch` at reduced widths."""
  VGG, BasicBlock, Bottleneck, ResNet = _torch_modules(torch)
  if arch.startswith('vgg'):
    stages = cnn.VGG_STAGES[int(arch[3:])]
    net = VGG(stages, SMALL_VGG['widths'], SMALL_VGG['classifier'], 10)
    return net, cnn.VGG(convs_per_stage=stages, **SMALL_VGG)
  stages = {
    'resnet18': (2, 2, 2, 2),
    'resnet34': (3, 4, 6, 3),
    'resnet50': (3, 4, 6, 3),
  }
  block = Bottleneck if arch == 'resnet50' else BasicBlock
  net = ResNet(block, stages[arch], 8, 10)
  flax_block = cnn.Bottleneck if arch == 'resnet50' else cnn.BasicBlock
  return net, cnn.ResNet(
    stage_sizes=stages[arch], block=flax_block, num_filters=8, num_classes=10
  )


@pytest.mark.parametrize('arch', weights.ARCHS)
def test_a_converted_torchvision_network_computes_the_same_logits(tmp_path, arch):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  net, model = _torch_pair(torch, arch)
  net.eval()
  pth = tmp_path / f'{arch}.pth'
  torch.save(net.state_dict(), pth)
  # The full architecture's names (eval_shape at 1000 classes) are the model's.
  w = weights.read(str(pth))
  assert (w.arch, w.preprocess) == (arch, 'torchvision')
  want_names = jax.tree.structure(weights.model_variables(arch)['params'])
  assert jax.tree.structure(w.params) == want_names
  npz = weights.write(str(tmp_path / f'{arch}.npz'), w)
  w = weights.read(npz)  # the converted file, read without torch
  assert (w.arch, w.preprocess) == (arch, 'torchvision')
  x = np.random.default_rng(1).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  variables = {'params': w.params}
  if w.batch_stats is not None:
    variables['batch_stats'] = w.batch_stats
  check = _shapes(model, jnp.zeros((1, 64, 64, 3)), train=False)
  assert weights.first_mismatch(variables, check) is None
  got = jax.jit(functools.partial(model.apply, train=False))(
    variables, jnp.asarray(x.transpose(0, 2, 3, 1))
  )
  err = float(np.abs(np.asarray(got) - want).max())
  print(
    f'{arch}: max |logit difference| {err:.2e}, logits up to {np.abs(want).max():.2f}'
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_vgg16_fc6_fc7_load_into_the_detection_head(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  VGG = _torch_modules(torch)[0]
  # The `vgg_tiny` backbone's layout: five stages of one convolution.
  net = VGG((1, 1, 1, 1, 1), (4, 4, 8, 8, 8), (16, 12), 5).eval()
  pth = tmp_path / 'vgg.pth'
  torch.save(net.state_dict(), pth)
  model = det.FastRCNN(num_classes=3, backbone='vgg_tiny', fc=(16, 12))
  images = jnp.zeros((1, 64, 64, 3))
  state = state_lib.create(
    model=model, tx=optax.sgd(0.1), rng=jax.random.key(0),
    inputs=(images, jnp.zeros((1, 2, 4)), jnp.ones((1, 2), bool)),
  )  # fmt: skip
  state, preprocess = weights.load_detector_weights(state, str(pth))
  assert preprocess == 'torchvision'
  rgb = np.random.default_rng(1).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
  normalised = (rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  x = normalised.transpose(0, 3, 1, 2).astype(np.float32)
  pooled = np.random.default_rng(2).uniform(0, 1, (3, 8, 7, 7)).astype(np.float32)
  with torch.no_grad():
    conv5_3 = net.features[:-1](torch.from_numpy(x)).numpy()  # no fifth pool
    fc7 = net.classifier[:5](torch.from_numpy(pooled).flatten(1)).numpy()
  # The detector built with the file's preprocessing takes RGB in [0, 1].
  feats = det.FastRCNN(
    num_classes=3, backbone='vgg_tiny', fc=(16, 12), preprocess=preprocess
  ).apply({'params': state.params}, jnp.asarray(rgb), method=det.FastRCNN.features)
  np.testing.assert_allclose(feats, conv5_3.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
  head = state.params['box_head']
  # The head flattens each RoI's [7, 7, C] map.
  h = jnp.asarray(pooled.transpose(0, 2, 3, 1)).reshape(3, -1)
  for fc in ('fc_0', 'fc_1'):
    h = jax.nn.relu(h @ head[fc]['kernel'] + head[fc]['bias'])
  np.testing.assert_allclose(h, fc7, rtol=1e-5, atol=1e-5)


def test_a_resnet_backbone_loads_with_its_batch_norm_statistics(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  _, BasicBlock, _, ResNet = _torch_modules(torch)
  net = ResNet(BasicBlock, (1, 1, 1), 4, 5).eval()  # `resnet_tiny`'s stages
  pth = tmp_path / 'resnet.pth'
  torch.save(net.state_dict(), pth)
  model = det.FastRCNN(num_classes=3, backbone='resnet_tiny', fc=(8, 8))
  state = state_lib.create(
    model=model, tx=optax.sgd(0.1), rng=jax.random.key(0),
    inputs=(jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 2, 4)), jnp.ones((1, 2), bool)),
  )  # fmt: skip
  state, preprocess = weights.load_detector_weights(state, str(pth))
  rgb = np.random.default_rng(1).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
  x = ((rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32)
  with torch.no_grad():
    y = torch.from_numpy(x.transpose(0, 3, 1, 2))
    y = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(y)))))))
  feats = det.FastRCNN(
    num_classes=3, backbone='resnet_tiny', fc=(8, 8), preprocess=preprocess
  ).apply(
    {'params': state.params, 'batch_stats': state.batch_stats}, jnp.asarray(rgb),
    method=det.FastRCNN.features,
  )  # fmt: skip
  want = y.numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_torchvision_vgg19_gives_the_sr_features_with_its_preprocessing(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  net = _torch_modules(torch)[0](cnn.VGG_STAGES[19], sr.VGG19_WIDTHS, (8,), 4).eval()
  pth = tmp_path / 'vgg19.pth'
  torch.save(net.state_dict(), pth)
  params, preprocess = weights.load_vgg19(str(pth))
  assert preprocess == 'torchvision'
  rgb = np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
  normalised = (rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  with torch.no_grad():  # phi_5,4: through the last ReLU, before the fifth pool
    want = net.features[:-1](
      torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))
    )
  got = sr.VGG19Features(preprocess=preprocess).apply(
    {'params': params}, jnp.asarray(rgb)
  )
  want = want.numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_torch_errors_are_one_line_naming_the_first_mismatch(tmp_path):
  torch = pytest.importorskip('torch')
  net, _ = _torch_pair(torch, 'resnet18')
  pth = tmp_path / 'resnet18.pth'
  torch.save(net.state_dict(), pth)
  # Another architecture's file: the first parameter that differs.
  with pytest.raises(
    UserError,
    match=r'resnet18\.pth: BasicBlock_0/BatchNorm_0/bias has shape \(8,\), the model needs \(64,\)$',
  ):
    weights.convert(str(pth), str(tmp_path / 'out.npz'), arch='resnet18')
  with pytest.raises(
    UserError,
    match=r'resnet18\.pth: BasicBlock_0/BatchNorm_0/bias is not a parameter of the model$',
  ):
    weights.convert(str(pth), str(tmp_path / 'out.npz'), arch='resnet50')
  assert not (tmp_path / 'out.npz').exists()
  sd = {k: v for k, v in net.state_dict().items() if k != 'layer1.0.bn1.running_var'}
  torch.save(sd, pth)
  with pytest.raises(
    UserError, match=r'\.pth: layer1\.0\.bn1\.running_var is missing$'
  ):
    weights.read(str(pth))


# ---------------------------------------------------------------- Keras


def _write_keras_vgg(path, stages, widths, dense=(), seed=0, skip=()):
  """A file laid out as Keras' vgg16/vgg19_weights_tf_dim_ordering_tf_kernels
  (`_notop` without `dense`): the layers' arrays, in order."""
  h5py = pytest.importorskip('h5py')
  rng = np.random.default_rng(seed)
  layers, arrays, cin = ['input_1'], [], 3
  for b, n in enumerate(stages, 1):
    layers += [f'block{b}_conv{i}' for i in range(1, n + 1)] + [f'block{b}_pool']
  if dense:
    layers += ['flatten', 'fc1', 'fc2', 'predictions']
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [n.encode() for n in layers if n not in skip]
    for name in layers:
      g = f.create_group(name)
      if '_conv' in name:
        cout = widths[int(name[5]) - 1]
        shape = (3, 3, cin, cout)
      elif name in ('fc1', 'fc2', 'predictions'):
        cout = dense[('fc1', 'fc2', 'predictions').index(name)]
        shape = (7 * 7 * cin if name == 'fc1' else cin, cout)
      else:
        g.attrs['weight_names'] = []
        continue
      kernel = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
      bias = rng.normal(0, 0.1, cout)
      g.attrs['weight_names'] = [f'{name}/kernel:0'.encode(), f'{name}/bias:0'.encode()]
      g.create_dataset(f'{name}/kernel:0', data=kernel.astype(np.float32))
      g.create_dataset(f'{name}/bias:0', data=bias.astype(np.float32))
      if name not in skip:
        arrays.append((kernel, bias))
      cin = cout
  return arrays


def _keras_vgg_logits(rgb, arrays, n_convs):
  """Keras' VGG by hand: BGR minus the mean in [0, 255], 3x3 'same'
  convolutions + ReLU, 2x2 max pools, Flatten (H, W, C), fc1, fc2, logits."""
  x = rgb[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  stages = {13: cnn.VGG_STAGES[16], 16: cnn.VGG_STAGES[19]}[n_convs]
  i = 0
  for n in stages:
    for _ in range(n):
      k, b = arrays[i]
      x = jax.lax.conv_general_dilated(
        x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision='highest',
      )  # fmt: skip
      x, i = np.maximum(np.asarray(x) + b, 0), i + 1
    h, w = x.shape[1] // 2, x.shape[2] // 2
    x = x.reshape(x.shape[0], h, 2, w, 2, -1).max((2, 4))
  x = x.reshape(x.shape[0], -1)
  for k, b in arrays[i:-1]:
    x = np.maximum(x @ k + b, 0)
  k, b = arrays[-1]
  return x @ k + b


@pytest.mark.parametrize('depth', [16, 19])
def test_a_keras_vgg_file_converts_and_computes_keras_logits(tmp_path, depth):
  stages, widths = cnn.VGG_STAGES[depth], (4, 8, 8, 16, 16)
  h5 = tmp_path / f'vgg{depth}_weights_tf_dim_ordering_tf_kernels.h5'
  arrays = _write_keras_vgg(str(h5), stages, widths, dense=(32, 24, 10))
  w = weights.read(str(h5))
  assert (w.arch, w.preprocess, w.batch_stats) == (f'vgg{depth}', 'caffe', None)
  npz = weights.write(str(tmp_path / 'vgg.npz'), w)
  again = weights.read(npz)
  assert (again.arch, again.preprocess) == (w.arch, w.preprocess)
  jax.tree.map(np.testing.assert_array_equal, again.params, w.params)
  model = cnn.VGG(
    convs_per_stage=stages, widths=widths, classifier=(32, 24), num_classes=10
  )
  rgb = np.random.default_rng(1).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
  x = backbones.preprocess(jnp.asarray(rgb), again.preprocess)
  got = jax.jit(functools.partial(model.apply, train=False))(
    {'params': again.params}, x
  )
  want = _keras_vgg_logits(rgb.astype(np.float64), arrays, sum(stages))
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_keras_vgg16_notop_converts_and_the_cli_checks_the_architecture(
  tmp_path, capsys
):
  h5 = str(tmp_path / 'vgg16_notop.h5')
  _write_keras_vgg(h5, cnn.VGG_STAGES[16], (64, 128, 256, 512, 512))
  out = str(tmp_path / 'vgg16.npz')
  assert weights.main(['convert', h5, out, '--arch', 'vgg16']) == 0
  assert 'vgg16' in capsys.readouterr().out
  w = weights.read(out)
  assert sorted(w.params) == sorted(f'Conv_{i}' for i in range(13))
  # Another architecture: one line naming the first parameter that differs.
  other = str(tmp_path / 'other.npz')
  assert weights.main(['convert', h5, other, '--arch', 'vgg19']) == 1
  err = capsys.readouterr().err
  assert err == f'error: weights file {h5}: Conv_13/bias is missing\n'
  with pytest.raises(
    UserError, match=r'^--config\.vgg19_weights=.*: Conv_13/bias is missing$'
  ):
    weights.load_vgg19(h5)
  assert not (tmp_path / 'other.npz').exists()


def test_misshapen_or_missing_keras_layers_name_the_first_mismatch(tmp_path):
  h5 = str(tmp_path / 'vgg19.h5')
  _write_keras_vgg(h5, cnn.VGG_STAGES[19], (64, 128, 256, 512, 256))
  with pytest.raises(
    UserError,
    match=r'vgg19\.h5: Conv_12/bias has shape \(256,\), the model needs \(512,\)$',
  ):
    weights.load_vgg19(h5)
  _write_keras_vgg(h5, cnn.VGG_STAGES[19], sr.VGG19_WIDTHS, skip=('block3_conv2',))
  with pytest.raises(UserError, match=r'vgg19\.h5: Conv_15/bias is missing$') as e:
    weights.load_vgg19(h5)
  assert '\n' not in str(e.value)
  with pytest.raises(UserError, match='give the one meant as --arch'):
    weights.convert(h5, str(tmp_path / 'x.npz'))
  with pytest.raises(UserError, match=r'x\.txt: weights must be a torchvision \.pth'):
    (tmp_path / 'x.txt').write_text('')
    weights.read(str(tmp_path / 'x.txt'))


def test_reading_a_pth_without_torch_is_one_line_naming_pip_install_torch(
  tmp_path, monkeypatch
):
  pth = tmp_path / 'vgg16-397923af.pth'
  pth.write_bytes(b'')
  monkeypatch.setitem(__import__('sys').modules, 'torch', None)  # import fails
  with pytest.raises(
    UserError,
    match=r'^--config\.backbone_weights=.*: reading a \.pth needs PyTorch: pip install torch',
  ):
    weights.read(str(pth), flag='--config.backbone_weights')
