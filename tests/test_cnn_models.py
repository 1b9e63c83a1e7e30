import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.models import cnn

# Published counts: LeCun et al. 1998 (LeNet-5), torchvision (AlexNet, VGG, ResNet
# at 224x224x3, 1000 classes), He et al. 2016 (CIFAR ResNets: 0.27M, 0.46M, 0.85M).
PUBLISHED = [
  ('lenet5', (28, 28, 1), 10, 61_706),
  ('alexnet', (224, 224, 3), 1000, 61_100_840),
  ('vgg11', (224, 224, 3), 1000, 132_863_336),
  ('vgg13', (224, 224, 3), 1000, 133_047_848),
  ('vgg16', (224, 224, 3), 1000, 138_357_544),
  ('vgg19', (224, 224, 3), 1000, 143_667_240),
  ('resnet18', (224, 224, 3), 1000, 11_689_512),
  ('resnet34', (224, 224, 3), 1000, 21_797_672),
  ('resnet50', (224, 224, 3), 1000, 25_557_032),
  ('resnet20', (32, 32, 3), 10, 269_722),
  ('resnet32', (32, 32, 3), 10, 464_154),
  ('resnet56', (32, 32, 3), 10, 853_018),
]


@pytest.mark.parametrize('name, shape, classes, count', PUBLISHED)
def test_parameter_count_equals_the_published_one(name, shape, classes, count):
  assert cnn.count_params(cnn.create(name, num_classes=classes), shape) == count


def test_lenet5_layer_shapes_are_the_papers():
  model = cnn.create('lenet5')
  x = jnp.zeros((2, 28, 28, 1))
  _, state = model.init_with_output(
    jax.random.key(0), x, train=False, capture_intermediates=True
  )
  shapes = {
    k: v['__call__'][0].shape
    for k, v in state['intermediates'].items()
    if k != '__call__'
  }
  assert shapes['Conv_0'] == (2, 28, 28, 6)  # C1 on the padded 32x32
  assert shapes['Conv_1'] == (2, 10, 10, 16)  # C3
  assert shapes['Dense_0'] == (2, 120) and shapes['Dense_1'] == (2, 84)


@pytest.mark.parametrize(
  'name, shape',
  [
    ('lenet5', (28, 28, 1)),
    ('vgg_tiny', (16, 16, 3)),
    ('resnet_tiny', (16, 16, 3)),
    ('resnet_tiny_bottleneck', (16, 16, 3)),
  ],
)
def test_tiny_models_give_logits_and_train_mode_updates_batch_stats(name, shape):
  model = cnn.create(name, num_classes=7)
  x = jax.random.normal(jax.random.key(0), (4, *shape))
  variables = model.init(jax.random.key(1), x, train=False)
  logits = model.apply(variables, x, train=False)
  assert logits.shape == (4, 7) and logits.dtype == jnp.float32
  if 'batch_stats' in variables:
    _, updates = model.apply(
      variables,
      x,
      train=True,
      mutable=['batch_stats'],
      rngs={'dropout': jax.random.key(2)},
    )
    changed = jax.tree.map(
      lambda a, b: bool(jnp.any(a != b)),
      variables['batch_stats'],
      updates['batch_stats'],
    )
    assert all(jax.tree.leaves(changed))


def test_batch_norm_eval_mode_does_not_depend_on_the_rest_of_the_batch():
  model = cnn.create('resnet_tiny', num_classes=3)
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  variables = model.init(jax.random.key(1), x, train=False)
  alone = model.apply(variables, x[:1], train=False)
  together = model.apply(variables, x, train=False)[:1]
  np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)
  # In train mode each example is normalised with its batch's statistics.
  train_alone, _ = model.apply(variables, x[:2], train=True, mutable=['batch_stats'])
  train_together, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert not np.allclose(train_alone[:1], train_together[:1])


def test_dropout_is_random_in_training_and_off_in_eval():
  model = cnn.create('lenet5', dropout_rate=0.5)
  x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
  variables = model.init(jax.random.key(1), x, train=False)
  a = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)})
  b = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(3)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(
    model.apply(variables, x, train=False), model.apply(variables, x, train=False)
  )


def test_bfloat16_computes_in_bfloat16_with_float32_parameters():
  model = cnn.create('resnet_tiny', num_classes=3, dtype=jnp.bfloat16)
  x = jnp.ones((2, 8, 8, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  assert {p.dtype for p in jax.tree.leaves(variables['params'])} == {
    jnp.dtype('float32')
  }
  _, state = model.apply(variables, x, train=False, capture_intermediates=True)
  assert state['intermediates']['Conv_0']['__call__'][0].dtype == jnp.bfloat16
  full = cnn.create('resnet_tiny', num_classes=3).apply(variables, x, train=False)
  np.testing.assert_allclose(
    model.apply(variables, x, train=False), full, rtol=0.05, atol=0.05
  )


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(
    ValueError,
    match='unknown model .resnet9.; valid choices: alexnet, lenet5, resnet18',
  ):
    cnn.create('resnet9')


def test_frozen_batch_norm_trains_on_the_stored_statistics():
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3)) * 3.0 + 1.0
  model = cnn.create('resnet_tiny', num_classes=3, frozen_batch_norm=True)
  variables = model.init(jax.random.key(0), x, train=False)
  out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  # The statistics stay as stored, and training mode computes what eval does.
  for a, b in zip(
    jax.tree.leaves(updates['batch_stats']),
    jax.tree.leaves(variables['batch_stats']),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(out, model.apply(variables, x, train=False))
  # Unfrozen, the same call moves them.
  live = cnn.create('resnet_tiny', num_classes=3)
  _, moved = live.apply(variables, x, train=True, mutable=['batch_stats'])
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(
      jax.tree.leaves(moved), jax.tree.leaves(variables['batch_stats']), strict=True
    )
  )


@pytest.mark.parametrize(
  'name, attribute, value, valid',
  [
    ('lenet5', 'pool', 'median', 'avg, max'),
    ('resnet_tiny', 'stem', 'tiny', 'cifar, imagenet'),
    ('resnet_tiny', 'shortcut', 'C', 'A, B'),
  ],
)
def test_unknown_module_strings_name_the_valid_values(name, attribute, value, valid):
  model = cnn.create(name, num_classes=3, **{attribute: value})
  with pytest.raises(
    ValueError, match=f"unknown {attribute} '{value}'; valid choices: {valid}"
  ):
    model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
