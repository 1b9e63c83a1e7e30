"""Weight files: reading, converting and fitting trained parameters to a model.

The one place that reads parameters from disk (models never do file I/O). It
reads three kinds of file, each into a `Weights` (the parameter tree in the
names of `nkjax.models.cnn.VGG` / `ResNet`, batch-norm statistics, and the
input preprocessing the weights were trained with):

* torchvision's state_dicts (`.pth`: `vgg16-397923af.pth`, `vgg19-dcbb9e9d.pth`,
  `resnet18/34/50-*.pth`; reading one needs PyTorch): convolutions OIHW ->
  HWIO, batch norm's running statistics into `batch_stats`, VGG's fc6 rows from
  torchvision's C,H,W flatten order to nkjax's H,W,C; preprocessing 'torchvision';
* Keras' VGG16 / VGG19 `.h5` (with or without the dense layers): preprocessing
  'caffe';
* nkjax's own `.npz` (`write`, `convert`): one array per parameter keyed by its
  '/'-joined path (`Conv_0/kernel`, `BasicBlock_0/Conv_0/kernel`), statistics
  under `batch_stats/`, the preprocessing and architecture as `__preprocess__`
  and `__arch__`; it needs nothing but NumPy.

One command converts a file once, checking it against the architecture:

  python -m nkjax.weights convert vgg16-397923af.pth vgg16.npz --arch vgg16

`load_vgg19` fits a file to SRGAN's `VGG19Features`, `load_detector_weights`
to a detector's backbone (and VGG's fc6/fc7 to its box head). Every bad file is
one `UserError` line that names the file and the first parameter that differs.
"""

import argparse
import os
import re
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError, choose

# The architectures a file converts to: the `nkjax.models.cnn` models.
ARCHS = ('vgg16', 'vgg19', 'resnet18', 'resnet34', 'resnet50')
# The torchvision ResNets by (blocks per stage, bottleneck).
_RESNETS = {((2, 2, 2, 2), False): 'resnet18', ((3, 4, 6, 3), False): 'resnet34'}
_RESNETS[(3, 4, 6, 3), True] = 'resnet50'


class Weights(NamedTuple):
  """A weights file read into nkjax's trees.

  Attributes:
    params: the `params` tree (`cnn.VGG` / `cnn.ResNet` names), float32 NumPy.
    batch_stats: the `batch_stats` tree (ResNets), or None.
    preprocess: the input the weights expect from RGB in [0, 1], a name in
      `nkjax.models.backbones.PREPROCESS` ('torchvision', 'caffe', 'none').
    arch: the architecture (one of `ARCHS`), or None when unknown.
  """

  params: dict
  batch_stats: dict | None
  preprocess: str
  arch: str | None


def _tree_paths(tree, prefix=()) -> dict[tuple[str, ...], tuple[int, ...]]:
  """`{path: shape}` of every leaf of a nested dict, in sorted path order."""
  if not hasattr(tree, 'items'):
    return {prefix: tuple(tree.shape) if hasattr(tree, 'shape') else np.shape(tree)}
  out = {}
  for key in sorted(tree):
    out.update(_tree_paths(tree[key], (*prefix, str(key))))
  return out


def first_mismatch(got, want) -> str | None:
  """The first difference between two parameter trees, as a phrase naming the
  parameter ('Conv_3/kernel has shape (3, 3, 8, 8), the model needs (3, 3, 8,
  16)'), or None when they have the same paths and shapes."""
  g, w = _tree_paths(got), _tree_paths(want)
  for path in sorted(set(g) | set(w)):
    name = '/'.join(path)
    if path not in g:
      return f'{name} is missing'
    if path not in w:
      return f'{name} is not a parameter of the model'
    if g[path] != w[path]:
      return f'{name} has shape {g[path]}, the model needs {w[path]}'
  return None


def _named(path: str, flag: str | None) -> str:
  """How an error line names a weights file: by the field that gave it."""
  return f'{flag}={path}' if flag else f'weights file {path}'


def check_shapes(path: str, got, want, *, flag: str | None = None) -> None:
  """Raises a one-line `UserError` naming `path` (and the field `flag` that
  gave it) and the first parameter where tree `got` differs from `want` in
  paths or shapes."""
  diff = first_mismatch(got, want)
  if diff is not None:
    raise UserError(f'{_named(path, flag)}: {diff}')


def _nest(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for key, value in flat.items():
    *parents, leaf = key.split('/')
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def _read_npz_flat(path: str, flag: str) -> tuple[dict, dict]:
  """(`{key: float32 array}`, `{metadata name: str}`) of an nkjax `.npz`."""
  if not os.path.isfile(path):
    raise UserError(
      f'weights file {path!r} not found; give {flag}=PATH '
      '(an .npz of parameters, keys like Conv_0/kernel, or a .pth / .h5 file)'
    )
  try:
    with np.load(path) as z:
      meta = {k.strip('_'): str(z[k]) for k in z.files if k.startswith('__')}
      flat = {
        k: np.asarray(z[k], np.float32) for k in z.files if not k.startswith('__')
      }
  except (OSError, ValueError) as e:
    raise UserError(
      f'{_named(path, flag)}: not an .npz of parameters ({type(e).__name__}); '
      'give an .npz with keys like Conv_0/kernel'
    ) from e
  return flat, meta


def read_npz(path: str, *, flag: str = '--config.weights') -> dict:
  """A parameter tree from an nkjax `.npz` whose keys are '/'-joined paths
  (`Conv_0/kernel`, `BasicBlock_0/Conv_0/kernel`, `Dense_0/bias`); float32
  NumPy leaves (statistics under `batch_stats`; the metadata left out).

  Args:
    path: the file.
    flag: the config field that named it, for the error message.

  Raises:
    UserError: the file is missing or not such an archive.
  """
  return _nest(_read_npz_flat(path, flag)[0])


def write_npz(path: str, params: dict, **metadata: str) -> str:
  """Writes a parameter tree as nkjax's `.npz` (the inverse of `read_npz`),
  each `metadata` string as key `__name__`; returns `path`."""
  flat = {'/'.join(p): np.asarray(v) for p, v in _leaves(params)}
  flat.update({f'__{k}__': np.asarray(v) for k, v in metadata.items() if v})
  np.savez(path, **flat)
  return path


def _leaves(tree, prefix=()):
  if not hasattr(tree, 'items'):
    yield prefix, tree
    return
  for key, value in tree.items():
    yield from _leaves(value, (*prefix, str(key)))


# ---------------------------------------------------------------- torchvision


def torchvision_to_weights(
  state_dict: dict, *, source: str = 'the state_dict'
) -> Weights:
  """A torchvision VGG (`features.N`, `classifier.N`) or ResNet (`conv1`, `bn1`,
  `layerS.B.convK`, `.bnK`, `.downsample.0/1`, `fc`) state_dict of NumPy arrays
  (or tensors) as nkjax's trees, with 'torchvision' preprocessing.

  Convolutions `[out, in, kh, kw]` become `[kh, kw, in, out]`; dense weights
  `[out, in]` become `[in, out]`, and VGG's first one takes its rows from the
  pooled map's C,H,W order to H,W,C (nkjax flattens NHWC). Batch norm's weight
  and bias are `scale` and `bias`, its `running_mean` / `running_var` go to
  `batch_stats` as `mean` / `var`.

  Raises:
    UserError: one line naming `source` when the keys are neither layout's.
  """
  sd = {
    k: np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v, np.float32)
    for k, v in state_dict.items()
    if not k.endswith('num_batches_tracked')
  }
  try:
    if 'features.0.weight' in sd:
      return _torchvision_vgg(sd, source)
    if 'conv1.weight' in sd and 'fc.weight' in sd:
      return _torchvision_resnet(sd)
  except KeyError as e:
    raise UserError(f'{source}: {e.args[0]} is missing') from e
  first = next(iter(sd), 'nothing')
  raise UserError(
    f'{source}: not a torchvision VGG or ResNet state_dict (first key {first}); '
    f'give the weights of one of {", ".join(ARCHS)}'
  )


def _conv(w):
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _indexed(sd: dict, prefix: str) -> list[int]:
  pat = re.compile(rf'{re.escape(prefix)}\.(\d+)\.weight$')
  return sorted(int(m.group(1)) for k in sd if (m := pat.match(k)))


def _torchvision_vgg(sd: dict, source: str) -> Weights:
  params = {}
  convs = _indexed(sd, 'features')
  if any(sd[f'features.{i}.weight'].ndim != 4 for i in convs):
    raise UserError(
      f'{source}: a VGG with batch norm (vgg*_bn); give torchvision vgg16 or vgg19'
    )
  for n, i in enumerate(convs):
    params[f'Conv_{n}'] = {
      'kernel': _conv(sd[f'features.{i}.weight']),
      'bias': sd[f'features.{i}.bias'],
    }
  channels = sd[f'features.{convs[-1]}.weight'].shape[0]
  for n, i in enumerate(_indexed(sd, 'classifier')):
    w = sd[f'classifier.{i}.weight']
    if n == 0:  # fc6: rows of the pooled [C, H, W] map, flattened to [H, W, C]
      side = int(round(np.sqrt(w.shape[1] // channels)))
      if side * side * channels != w.shape[1]:
        raise UserError(
          f'{source}: classifier.{i}.weight has {w.shape[1]} inputs, not '
          f'{channels} x H x W: give torchvision vgg16 or vgg19'
        )
      w = w.reshape(-1, channels, side, side).transpose(2, 3, 1, 0)
      kernel = w.reshape(side * side * channels, -1)
    else:
      kernel = w.T
    params[f'Dense_{n}'] = {
      'kernel': np.ascontiguousarray(kernel),
      'bias': sd[f'classifier.{i}.bias'],
    }
  arch = {13: 'vgg16', 16: 'vgg19'}.get(len(convs))
  return Weights(params, None, 'torchvision', arch)


def _batch_norm(sd, name):
  return (
    {'scale': sd[f'{name}.weight'], 'bias': sd[f'{name}.bias']},
    {'mean': sd[f'{name}.running_mean'], 'var': sd[f'{name}.running_var']},
  )


def _torchvision_resnet(sd: dict) -> Weights:
  params = {'Conv_0': {'kernel': _conv(sd['conv1.weight'])}}
  stats = {}
  params['BatchNorm_0'], stats['BatchNorm_0'] = _batch_norm(sd, 'bn1')
  bottleneck = any(k.endswith('.conv3.weight') for k in sd)
  kind = 'Bottleneck' if bottleneck else 'BasicBlock'
  stages, block = [], 0
  for s in range(1, 5):
    n = len({k.split('.')[1] for k in sd if k.startswith(f'layer{s}.')})
    if n == 0:
      break
    stages.append(n)
    for b in range(n):
      pre, name = f'layer{s}.{b}', f'{kind}_{block}'
      p, st = {}, {}
      convs = 3 if bottleneck else 2
      for c in range(convs):
        p[f'Conv_{c}'] = {'kernel': _conv(sd[f'{pre}.conv{c + 1}.weight'])}
        p[f'BatchNorm_{c}'], st[f'BatchNorm_{c}'] = _batch_norm(sd, f'{pre}.bn{c + 1}')
      if f'{pre}.downsample.0.weight' in sd:  # the projection shortcut, made last
        p[f'Conv_{convs}'] = {'kernel': _conv(sd[f'{pre}.downsample.0.weight'])}
        p[f'BatchNorm_{convs}'], st[f'BatchNorm_{convs}'] = _batch_norm(
          sd, f'{pre}.downsample.1'
        )
      params[name], stats[name] = p, st
      block += 1
  params['Dense_0'] = {
    'kernel': np.ascontiguousarray(sd['fc.weight'].T),
    'bias': sd['fc.bias'],
  }
  arch = _RESNETS.get((tuple(stages), bottleneck))
  return Weights(params, stats, 'torchvision', arch)


def _read_pth(path: str, flag: str | None) -> Weights:
  try:
    import torch
  except ImportError as e:
    raise UserError(
      f'{_named(path, flag)}: reading a .pth needs PyTorch: pip install torch '
      "(or pip install -e '.[torch]'), or convert it where torch is installed"
    ) from e
  try:
    sd = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises many types for a file that is no checkpoint
    raise UserError(
      f'{_named(path, flag)}: not a PyTorch state_dict ({type(e).__name__}); '
      "give torchvision's file, e.g. vgg16-397923af.pth"
    ) from e
  if isinstance(sd, dict) and isinstance(sd.get('state_dict'), dict):
    sd = sd['state_dict']
  if not isinstance(sd, dict):
    raise UserError(
      f'{_named(path, flag)}: holds a {type(sd).__name__}, not a state_dict'
    )
  return torchvision_to_weights(sd, source=_named(path, flag))


# ---------------------------------------------------------------- Keras VGG


def _text(name) -> str:
  return name.decode() if isinstance(name, bytes) else name


def keras_vgg_to_weights(h5_path: str, *, flag: str | None = None) -> Weights:
  """Keras' VGG16 or VGG19 weights (`vgg16_weights_tf_dim_ordering_tf_kernels.h5`,
  `..._notop.h5`, and VGG19's) as nkjax's trees, with 'caffe' preprocessing.

  Keras stores one group per layer, listed in the root attribute `layer_names`
  (`block1_conv1` .. `block5_conv3/4`, then `fc1`, `fc2`, `predictions` in the
  full model), each with `weight_names` naming its `kernel:0` (`[3, 3, in, out]`
  for a convolution: HWIO, flax's layout; `[in, out]` for a dense layer, fc1's
  rows already in H,W,C order) and `bias:0`.
  """
  try:
    import h5py
  except ImportError as e:  # h5py comes with TensorFlow (`pip install -e '.[tfds]'`)
    raise UserError('reading a Keras .h5 file needs h5py: pip install h5py') from e
  try:
    f = h5py.File(h5_path, 'r')
  except OSError as e:
    raise UserError(
      f"{_named(h5_path, flag)}: not an HDF5 file ({e}); give Keras' "
      'vgg16/vgg19_weights_tf_dim_ordering_tf_kernels(_notop).h5 or a converted .npz'
    ) from e
  params = {}
  with f:
    root = f['model_weights'] if 'model_weights' in f else f
    names = [_text(n) for n in root.attrs.get('layer_names', [])]
    convs = [n for n in names if '_conv' in n]
    dense = [n for n in names if n in ('fc1', 'fc2', 'predictions')]
    for prefix, layers in (('Conv', convs), ('Dense', dense)):
      for i, name in enumerate(layers):
        group, weights = root[name], {}
        for w in group.attrs['weight_names']:
          w = _text(w)
          weights[w.split('/')[-1].split(':')[0]] = np.asarray(group[w], np.float32)
        params[f'{prefix}_{i}'] = {'kernel': weights['kernel'], 'bias': weights['bias']}
  if not convs:
    raise UserError(f"{_named(h5_path, flag)}: no block*_conv* layers: not Keras' VGG")
  return Weights(params, None, 'caffe', {13: 'vgg16', 16: 'vgg19'}.get(len(convs)))


def keras_vgg19_to_params(h5_path: str, *, flag: str | None = None) -> dict:
  """The convolutions of Keras' VGG19 `.h5` as `nkjax.models.sr.VGG19Features`
  params (`keras_vgg_to_weights`, dense layers dropped)."""
  w = keras_vgg_to_weights(h5_path, flag=flag)
  if w.arch != 'vgg19':
    raise UserError(f"{_named(h5_path, flag)}: not VGG19's 16 convolutions")
  return {k: v for k, v in w.params.items() if k.startswith('Conv_')}


def convert_keras_vgg19(h5_path: str, out_path: str) -> str:
  """Writes Keras VGG19 weights as nkjax's `.npz` (`convert`); returns `out_path`."""
  return convert(h5_path, out_path)


# ---------------------------------------------------------------- any file


def read(path: str, *, flag: str | None = None) -> Weights:
  """The `Weights` of `path` by its kind: torchvision `.pth` / `.pt`, Keras
  `.h5` / `.hdf5` or nkjax `.npz` (an `.npz` without metadata: preprocessing
  'none', as nkjax trains).

  Raises:
    UserError: the file is missing, of another format, or unreadable.
  """
  field = flag or '--config.weights'
  if not os.path.isfile(path):
    give = f'{flag}=PATH, ' if flag else ''
    raise UserError(
      f'weights file {path!r} not found; give {give}a torchvision .pth, a Keras '
      '.h5 or a converted .npz'
    )
  if path.endswith(('.pth', '.pt')):
    return _read_pth(path, flag)
  if path.endswith(('.h5', '.hdf5')):
    return keras_vgg_to_weights(path, flag=flag)
  if path.endswith('.npz'):
    from nkjax.models.backbones import PREPROCESS

    flat, meta = _read_npz_flat(path, field)
    tree = _nest(flat)
    preprocess = meta.get('preprocess', 'none')
    choose('preprocess', preprocess, PREPROCESS)
    return Weights(tree, tree.pop('batch_stats', None), preprocess, meta.get('arch'))
  raise UserError(
    f'{_named(path, flag)}: weights must be a torchvision .pth, a Keras .h5 or '
    'an nkjax .npz file'
  )


def model_variables(arch: str) -> dict:
  """Shapes of the `params` and `batch_stats` of `cnn.create(arch)` (1000
  ImageNet classes), without allocating them."""
  from nkjax.models import cnn

  choose('arch', arch, ARCHS)
  return jax.eval_shape(
    lambda: cnn.create(arch).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
    )
  )


def check_arch(w: Weights, arch: str, *, path: str, flag: str | None = None) -> None:
  """Raises a one-line `UserError` naming `path` and the first parameter (or
  statistic) of `w` that `cnn.create(arch)` does not have in that shape; a
  file without dense layers (Keras' `_notop`) is checked without them."""
  want = model_variables(arch)
  top = any(k.startswith('Dense_') for k in w.params)
  want_params = {k: v for k, v in want['params'].items() if top or 'Dense_' not in k}
  check_shapes(path, w.params, want_params, flag=flag)
  if 'batch_stats' in want:
    check_shapes(path, w.batch_stats or {}, want['batch_stats'], flag=flag)


def write(path: str, w: Weights) -> str:
  """Writes `w` as nkjax's `.npz` (read back by `read`); returns `path`."""
  tree = dict(w.params)
  if w.batch_stats:
    tree['batch_stats'] = w.batch_stats
  return write_npz(path, tree, preprocess=w.preprocess, arch=w.arch or '')


def convert(src: str, dst: str, *, arch: str | None = None) -> str:
  """Converts weights file `src` (any kind `read` takes) to nkjax's `.npz`
  `dst`, checked against architecture `arch` (one of `ARCHS`; default the one
  the file's layers make). Returns `dst`.

  Raises:
    UserError: one line naming the file and the first mismatching parameter.
  """
  w = read(src)
  arch = arch or w.arch
  if arch is None:
    raise UserError(
      f'{src}: its layers are none of {", ".join(ARCHS)}; give the one meant as '
      '--arch to name the first parameter that differs'
    )
  check_arch(w, arch, path=src, flag=None)
  return write(dst, w._replace(arch=arch))


# ---------------------------------------------------------------- fitting to models


def load_vgg19(path: str, *, flag: str = '--config.vgg19_weights') -> tuple[dict, str]:
  """(`nkjax.models.sr.VGG19Features` params, the preprocessing name for its
  `preprocess` attribute) from any VGG19 file `read` takes; the dense layers are
  dropped. An `.npz` without metadata (an older `convert_keras_vgg19`) is Keras'
  ('caffe').

  Raises:
    UserError: the file is missing, of another format, or not VGG19's shapes
      (naming the first parameter that differs).
  """
  from nkjax.models.sr import VGG19Features

  if not os.path.isfile(path):
    raise UserError(
      f'VGG19 weights file {path!r} not found; give {flag}=PATH (torchvision '
      "vgg19-dcbb9e9d.pth, Keras' vgg19 .h5 or a converted .npz)"
    )
  w = read(path, flag=flag)
  params = {k: v for k, v in w.params.items() if not k.startswith('Dense_')}
  want = jax.eval_shape(
    lambda: VGG19Features().init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  )['params']
  check_shapes(path, params, want, flag=flag)
  preprocess = w.preprocess
  if path.endswith('.npz') and w.arch is None and preprocess == 'none':
    preprocess = 'caffe'
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), preprocess


def load_vgg19_params(path: str, *, flag: str = '--config.vgg19_weights') -> dict:
  """`load_vgg19`'s params only (for Keras' files, whose preprocessing is
  `VGG19Features`' default)."""
  return load_vgg19(path, flag=flag)[0]


def load_backbone_params(
  params: dict, classifier_params: dict, *, source: str = 'the backbone weights'
) -> dict:
  """`params` (`{'backbone': ..., 'head': ...}` of a detector) with every
  backbone (and matching fc) parameter replaced by the one of the same name in
  `classifier_params` (a `cnn.VGG` / `cnn.ResNet` parameter tree, e.g.
  `read(...).params`).

  The backbone's `Conv_*`, `BatchNorm_*` and block parameters keep their names;
  VGG's `Dense_0`, `Dense_1` (fc6, fc7) initialise the box head's two fc layers
  when their shapes agree (the Fast R-CNN recipe).

  Raises:
    UserError: one line naming `source` (the file) and the first backbone
      parameter that is missing or whose shape differs.
  """
  params = jax.tree.map(lambda x: x, dict(params))
  backbone = dict(params['backbone'])
  for name, value in backbone.items():
    if name not in classifier_params:
      raise UserError(
        f'{source}: backbone weight {name} is missing (there are '
        f'{", ".join(sorted(classifier_params))}); give the weights of the same '
        'architecture as --config.backbone'
      )
    diff = first_mismatch(classifier_params[name], value)
    if diff is not None:
      raise UserError(f'{source}: backbone weight {name}/{diff}')
    backbone[name] = jax.tree.map(jnp.asarray, classifier_params[name])
  params['backbone'] = backbone
  head = dict(params['head'])
  for mine, theirs in (('fc_0', 'Dense_0'), ('fc_1', 'Dense_1')):
    if (
      theirs in classifier_params
      and first_mismatch(classifier_params[theirs], head[mine]) is None
    ):
      head[mine] = jax.tree.map(jnp.asarray, classifier_params[theirs])
  params['head'] = head
  return params


def load_detector_weights(state, path: str, *, flag: str = '--config.backbone_weights'):
  """A detector's train state (params `backbone_net` and `box_head`, ResNets'
  `batch_stats['backbone_net']`) with the backbone, fc6/fc7 and batch-norm
  statistics of weights file `path` (any kind `read` takes).

  Returns:
    (the state, the preprocessing name the weights expect).

  Raises:
    UserError: one line naming the file and the first mismatching parameter.
  """
  w = read(path, flag=flag)
  source = _named(path, flag)
  loaded = load_backbone_params(
    {'backbone': state.params['backbone_net'], 'head': state.params['box_head']},
    w.params,
    source=source,
  )
  params = {
    **state.params,
    'backbone_net': loaded['backbone'],
    'box_head': loaded['head'],
  }
  stats = state.batch_stats
  if stats is not None and 'backbone_net' in stats:
    mine = stats['backbone_net']
    theirs = {k: (w.batch_stats or {}).get(k, {}) for k in mine}
    diff = first_mismatch(theirs, mine)
    if diff is not None:
      raise UserError(f'{source}: backbone statistic {diff}')
    stats = {**stats, 'backbone_net': jax.tree.map(jnp.asarray, theirs)}
  return state.replace(params=params, batch_stats=stats), w.preprocess


# ---------------------------------------------------------------- command line


def main(argv=None) -> int:
  """`python -m nkjax.weights convert SRC DST [--arch ARCH]`."""
  parser = argparse.ArgumentParser(prog='python -m nkjax.weights')
  sub = parser.add_subparsers(dest='command', required=True)
  conv = sub.add_parser('convert', help='torchvision .pth / Keras .h5 to nkjax .npz')
  conv.add_argument('src')
  conv.add_argument('dst')
  conv.add_argument('--arch', choices=ARCHS, help="default: the file's layers")
  args = parser.parse_args(argv)
  try:
    out = convert(args.src, args.dst, arch=args.arch)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  w = read(out)
  print(f'{out}: {w.arch}, preprocessing {w.preprocess!r}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
