"""Weight files: reading, converting and fitting trained parameters to a model.

The one place that reads parameters from disk (models never do file I/O):

* nkjax's `.npz`: one array per parameter, keyed by its '/'-joined path in the
  flax tree (`Conv_0/kernel`, `BasicBlock_0/Conv_0/kernel`, `Dense_0/bias`);
  `read_npz` gives the nested tree back;
* Keras' VGG19 `.h5` (`keras_vgg19_to_params`, `convert_keras_vgg19` writes it
  as nkjax's `.npz`), read by `load_vgg19_params` for SRGAN's content loss;
* `load_backbone_params`: a classifier's parameters (`nkjax.models.cnn.VGG` /
  `ResNet` names) copied into a detector's backbone and head.

Every bad file is one `UserError` line that names the file and, for a tree of
the wrong shapes, the first parameter that differs.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from nkjax.errors import UserError


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


def read_npz(path: str, *, flag: str = '--config.weights') -> dict:
  """A parameter tree from an nkjax `.npz` whose keys are '/'-joined paths
  (`Conv_0/kernel`, `BasicBlock_0/Conv_0/kernel`, `Dense_0/bias`), as
  `convert_keras_vgg19` writes them; float32 NumPy leaves.

  Args:
    path: the file.
    flag: the config field that named it, for the error message.

  Raises:
    UserError: the file is missing or not such an archive.
  """
  if not os.path.isfile(path):
    raise UserError(
      f'weights file {path!r} not found; give {flag}=PATH '
      '(an .npz of parameters, keys like Conv_0/kernel)'
    )
  try:
    with np.load(path) as z:
      params: dict = {}
      for key in z.files:
        *parents, leaf = key.split('/')
        node = params
        for p in parents:
          node = node.setdefault(p, {})
        node[leaf] = np.asarray(z[key], np.float32)
  except (OSError, ValueError) as e:
    raise UserError(
      f'{_named(path, flag)}: not an .npz of parameters ({type(e).__name__}); '
      'give an .npz with keys like Conv_0/kernel'
    ) from e
  return params


def write_npz(path: str, params: dict) -> str:
  """Writes a parameter tree as nkjax's `.npz` (the inverse of `read_npz`);
  returns `path`."""
  flat = {'/'.join(p): np.asarray(v) for p, v in _leaves(params)}
  np.savez(path, **flat)
  return path


def _leaves(tree, prefix=()):
  if not hasattr(tree, 'items'):
    yield prefix, tree
    return
  for key, value in tree.items():
    yield from _leaves(value, (*prefix, str(key)))


# ---------------------------------------------------------------- VGG19 (SRGAN)


def keras_vgg19_to_params(h5_path: str, *, flag: str | None = None) -> dict:
  """VGG19 parameters from Keras' `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`
  (or the full model's file; its dense layers are skipped) as
  `nkjax.models.sr.VGG19Features` params.

  Keras stores one group per layer (`block1_conv1` .. `block5_conv4`), listed in
  the root attribute `layer_names`, each with `weight_names` naming its
  `kernel:0` `[3, 3, in, out]` (HWIO, flax's layout) and `bias:0` `[out]`.
  """
  from nkjax.models.sr import VGG19_CONVS

  try:
    import h5py
  except ImportError as e:  # h5py comes with TensorFlow (`pip install -e '.[tfds]'`)
    raise UserError('reading a Keras .h5 file needs h5py: pip install h5py') from e
  params = {}
  try:
    f = h5py.File(h5_path, 'r')
  except OSError as e:
    raise UserError(
      f"{_named(h5_path, flag)}: not an HDF5 file ({e}); give Keras' "
      'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 or its converted .npz'
    ) from e
  with f:
    names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs['layer_names']]
    convs = [n for n in names if '_conv' in n]
    if len(convs) != sum(VGG19_CONVS):
      raise UserError(
        f'{_named(h5_path, flag)} holds {len(convs)} convolutions, not '
        "VGG19's 16: give Keras' VGG19 weights"
      )
    for i, name in enumerate(convs):
      group = f[name]
      weights = {}
      for w in group.attrs['weight_names']:
        w = w.decode() if isinstance(w, bytes) else w
        weights[w.split('/')[-1].split(':')[0]] = np.asarray(group[w])
      params[f'Conv_{i}'] = {'kernel': weights['kernel'], 'bias': weights['bias']}
  return params


def convert_keras_vgg19(h5_path: str, out_path: str) -> str:
  """Writes Keras VGG19 weights as nkjax's `.npz` (keys `Conv_i/kernel`,
  `Conv_i/bias`), which `load_vgg19_params` reads without h5py. Returns `out_path`.

  >>> convert_keras_vgg19('vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
  ...                     'vgg19.npz')  # doctest: +SKIP
  """
  return write_npz(out_path, keras_vgg19_to_params(h5_path))


def load_vgg19_params(path: str, *, flag: str = '--config.vgg19_weights') -> dict:
  """`nkjax.models.sr.VGG19Features` params from `path`: nkjax's `.npz` or
  Keras' `.h5`.

  Raises:
    UserError: the file is missing, of another format, or not VGG19's shapes
      (naming the first parameter that differs).
  """
  from nkjax.models.sr import VGG19Features

  if not os.path.isfile(path):
    raise UserError(
      f'VGG19 weights file {path!r} not found; give --config.vgg19_weights=PATH '
      '(Keras vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 or a converted .npz)'
    )
  if path.endswith(('.h5', '.hdf5')):
    params = keras_vgg19_to_params(path, flag=flag)
  elif path.endswith('.npz'):
    params = read_npz(path, flag=flag)
  else:
    raise UserError(
      f'{flag}={path}: VGG19 weights must be a Keras .h5 or an nkjax .npz file'
    )
  want = jax.eval_shape(
    lambda: VGG19Features().init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  )['params']
  check_shapes(path, params, want, flag=flag)
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


# ---------------------------------------------------------------- detector backbones


def load_backbone_params(
  params: dict, classifier_params: dict, *, source: str = 'the backbone weights'
) -> dict:
  """`params` (`{'backbone': ..., 'head': ...}` of a detector) with every
  backbone (and matching fc) parameter replaced by the one of the same name in
  `classifier_params` (a `cnn.VGG` / `cnn.ResNet` parameter tree, e.g.
  ImageNet weights converted by the user, read by `read_npz`).

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
