"""nkjax.weights: the one reader of weight files (VGG19's are tested with the
SR models, tests/test_sr_models.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax import weights
from nkjax.errors import UserError
from nkjax.models import cnn
from nkjax.models import detection as det


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
