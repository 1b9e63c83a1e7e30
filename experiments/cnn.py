"""Convolutional networks: LeNet-5 to ResNet on the digits, MNIST, Fashion-MNIST, CIFAR-10.

  python experiments/cnn.py                                   # LeNet-5 on the embedded digits
  python experiments/cnn.py --config.model=resnet20 --config.image_size=32
  python experiments/cnn.py --config=experiments/cnn.py:regularization
  python experiments/cnn.py --config=experiments/cnn.py:gaussian
  python experiments/cnn.py --config=experiments/cnn.py:cifar_resnet20   # needs TFDS cifar10

Writes checkpoints, metrics, summary.json, curves.png and pictures (confusion
matrix, first-layer kernels, feature maps, misclassified test images) into
--workdir (default runs/cnn-<preset>); rerunning resumes.
"""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from nkjax import launch, validate, viz
from nkjax.data import images
from nkjax.errors import UserError, choose
from nkjax.models import cnn
from nkjax.ops import image as image_ops
from nkjax.train import classify, loop, optim, sharding, steps, writers
from nkjax.train import state as state_lib

PRESETS = ('default', 'smoke', 'regularization', 'cifar_resnet20', 'gaussian')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
AUGMENTS = ('none', 'crop_flip')
CHECKS = {
  **validate.TRAINING,
  'decay_boundaries': validate.each(
    validate.interval(0, 1, low_open=True, high_open=True)
  ),
  'kernel_size': validate.count,
  'sigma': validate.positive_number(),
}
# Regularization study: each variant's changes to the plain network.
VARIANTS = {
  'none': {},
  'dropout': {'dropout_rate': 0.5},
  'batch_norm': {'norm': True},
  'l2': {'l2': 1e-2},
  'l1': {'l1': 1e-3},
}

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  **classify.DESCRIPTIONS,
  'task': 'train, regularization (the VARIANTS study) or gaussian (a blur picture)',
  'model': 'the network: lenet5, alexnet, vgg11/13/16/19, resnet20/32/56, resnet18/34/50',
  'dropout_rate': "dropout probability in lenet5, alexnet, vgg*; None: the model's own",
  'norm': 'batch norm in lenet5 and vgg* (ResNets always have it)',
  'dtype': 'compute dtype: float32 or bfloat16 (parameters stay float32)',
  'augment': f'training augmentation: {", ".join(AUGMENTS)}',
  'variants': 'regularization: the variants trained, from none, dropout, batch_norm, l2, l1',
  'kernel_size': "gaussian: the blur kernel's side, pixels",
  'sigma': "gaussian: the blur's standard deviation, pixels",
}


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.task = 'train'
  c.model = 'lenet5'
  c.update(
    classify.default_fields(
      image_size=28,  # the digits' 8x8 upsampled to LeNet-5's input; None: native
      learning_rate=2e-3, num_steps=1200, eval_every=300, checkpoint_every=600,
    )
  )  # fmt: skip
  c.dropout_rate = ml_collections.config_dict.placeholder(
    float
  )  # None: the model's own
  c.norm = False  # batch norm in LeNet-5 and VGG (ResNets always have it)
  c.dtype = 'float32'  # 'bfloat16': bfloat16 compute, float32 parameters
  c.augment = 'none'
  if preset == 'smoke':
    c.num_steps = 10
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint_every = 10
  elif preset == 'regularization':
    c.task = 'regularization'
    c.variants = tuple(VARIANTS)
    c.train_subset = 200
    c.num_steps = 500
    c.eval_every = 0
    c.checkpoint_every = 0
  elif preset == 'cifar_resnet20':
    # He et al. (2016), section 4.2: 91.25% test accuracy reported.
    c.model = 'resnet20'
    c.dataset = 'cifar10'
    c.image_size = None
    c.augment = 'crop_flip'
    c.optimizer = 'momentum'
    c.learning_rate = 0.1
    c.schedule = 'step'  # /10 at 32k and 48k of 64k iterations
    c.weight_decay = 1e-4
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_steps = 64_000
    c.log_every = 500
    c.eval_every = 4000
    c.checkpoint_every = 4000
  elif preset == 'gaussian':
    c.task = 'gaussian'
    c.kernel_size = 7
    c.sigma = 2.0
  return c


def build_model(config, num_classes: int, image_side: int, **overrides):
  """The configured model; `dropout_rate` and `norm` only where the model has them."""
  choose('dtype', config.dtype, DTYPES)
  kwargs = {'num_classes': num_classes, 'dtype': DTYPES[config.dtype]}
  if config.model == 'lenet5':
    # C1 sees the paper's 32x32: MNIST-sized 28x28 inputs are padded by 2.
    kwargs['padding'] = max(0, (32 - image_side) // 2)
  dropout = overrides.pop('dropout_rate', config.dropout_rate)
  norm = overrides.pop('norm', config.norm)
  if dropout is not None:
    if not config.model.startswith(('lenet', 'alexnet', 'vgg')):
      raise UserError(
        f'model {config.model} has no dropout; dropout_rate applies to lenet5, alexnet and vgg*'
      )
    kwargs['dropout_rate'] = dropout
  if norm:
    if not config.model.startswith(('lenet', 'vgg')):
      raise UserError(
        f'norm=True applies to lenet5 and vgg* (ResNets always use batch norm), not {config.model}'
      )
    kwargs['norm'] = True
  return cnn.create(config.model, **kwargs)


def _optimizer(config):
  return optim.build(num_steps=config.num_steps, **optim.fields(config))


def _load(config, mesh):
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh)
  choose('augment', config.augment, AUGMENTS)
  return images.load(
    config.dataset,
    batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    seed=config.seed,
    image_size=config.image_size,
    train_subset=config.train_subset,
    data_dir=config.data_dir,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )


def _fit(config, model, data, mesh, workdir, summarize=None, **overrides):
  return classify.fit(
    model=model,
    data=data,
    tx=_optimizer(config),
    mesh=mesh,
    workdir=workdir,
    num_steps=config.num_steps,
    batch_size=config.batch_size,
    seed=config.seed,
    l1=overrides.get('l1', config.l1),
    l2=overrides.get('l2', config.l2),
    augment=image_ops.random_crop_flip if config.augment == 'crop_flip' else None,
    log_every=config.log_every,
    eval_every=config.eval_every,
    checkpoint_every=config.checkpoint_every,
    keep_checkpoints=config.keep_checkpoints,
    config=config.to_dict(),
    jit=not config.debug,
    divergence_factor=config.divergence_factor,
    steps_per_call=config.steps_per_call,
    data_on_device=config.data_on_device,
    summarize=summarize,
  )


def write_pictures(state, data, mesh, workdir: str) -> dict:
  """Confusion matrix, first-layer kernels, feature maps and misclassified images.

  Every process predicts (the prediction is one sharded program); process 0
  draws.
  """
  # One pass over the test set gives the confusion matrix, the feature-map input
  # and the misclassified images.
  labels, preds, test_images = classify.predict(state, data.eval_batches(), mesh=mesh)
  cm = classify.confusion_matrix(labels, preds, data.num_classes)
  figures = {
    'confusion_matrix': cm.tolist(),
    'test_accuracy_from_predictions': float(np.trace(cm) / cm.sum()),
  }
  if jax.process_index() != 0:
    return figures
  run = viz.run_name(workdir)
  accuracy = np.trace(cm) / cm.sum()
  viz.plot_confusion_matrix(
    cm,
    os.path.join(workdir, 'confusion.png'),
    title=f'{run}: test confusion matrix, accuracy {accuracy:.4f}',
  )

  kernel = np.asarray(
    jax.device_get(state.params['Conv_0']['kernel'])
  )  # [kh, kw, cin, cout]
  colour = kernel.shape[2] == 3
  kernels = np.moveaxis(kernel if colour else kernel.mean(axis=2, keepdims=True), -1, 0)
  kh, kw = kernel.shape[:2]
  viz.save_images(
    kernels,
    os.path.join(workdir, 'kernels.png'),
    # Colour kernels have no one scale to show; each is stretched to [0, 1].
    normalise=colour,
    colorbar_label=None if colour else 'weight',
    titles=[f'#{i}' for i in range(len(kernels))],
    suptitle=f'{run}: first-layer {kh}x{kw} kernels'
    + (' (each stretched to [0, 1])' if colour else ''),
  )

  x = jnp.asarray(test_images[:1])
  variables = jax.device_get(steps.model_variables(state, state.params))
  # One compiled program, not one per operation of an eager pass.
  capture = jax.jit(
    functools.partial(
      state.apply_fn,
      train=False,
      capture_intermediates=lambda m, _: isinstance(m, nn.Conv),
    )
  )
  _, inter = capture(variables, x)
  maps = [('input', np.asarray(x[0]))]
  maps += [
    (path[0], np.asarray(v['__call__'][0][0], np.float32))
    for path, v in _conv_outputs(inter['intermediates'])
  ]
  viz.save_feature_maps(
    maps[:8],
    os.path.join(workdir, 'feature_maps.png'),
    title=f'{run}: feature maps of test image 0, a {_class_name(data, labels[0])} '
    f'(predicted {_class_name(data, preds[0])}); each map scaled to its own range',
  )

  wrong_idx = np.flatnonzero(labels != preds)[:24]
  if len(wrong_idx):
    viz.save_images(
      test_images[wrong_idx],
      os.path.join(workdir, 'misclassified.png'),
      titles=[f'true {labels[i]}, said {preds[i]}' for i in wrong_idx],
      suptitle=f'{run}: misclassified test images '
      f'(first {len(wrong_idx)} of {int(np.sum(labels != preds))})',
    )
  return figures


def _class_name(data, label) -> str:
  return data.class_names[int(label)] if data.class_names else str(int(label))


def _conv_outputs(tree, prefix=()):
  # Depth-first, in the order the modules were called (dicts keep insertion order).
  for key, value in tree.items():
    if key == '__call__':
      yield ('/'.join(prefix),), {'__call__': value}
    elif isinstance(value, dict):
      yield from _conv_outputs(value, (*prefix, key))


def run_train(config, workdir):
  mesh = sharding.data_mesh()
  data = _load(config, mesh)
  model = build_model(config, data.num_classes, data.example_shape[0])
  result = _fit(
    config, model, data, mesh, workdir,
    summarize=lambda state: {
      'params': state_lib.num_params(state.params),
      **write_pictures(state, data, mesh, workdir),
    },
  )  # fmt: skip
  return result.summary


def run_regularization(config, workdir):
  mesh = sharding.data_mesh()
  data = _load(config, mesh)
  for name in config.variants:
    choose('variant', name, VARIANTS)
  # Every model is built before any trains, so a bad combination fails at once.
  structural = ('dropout_rate', 'norm')
  models = {
    name: build_model(
      config,
      data.num_classes,
      data.example_shape[0],
      **{k: v for k, v in VARIANTS[name].items() if k in structural},
    )
    for name in config.variants
  }
  rows = {}
  for name, model in models.items():
    result = _fit(
      config, model, data, mesh, os.path.join(workdir, name), **VARIANTS[name]
    )
    evaluate = loop.make_evaluator(
      steps.classifier_eval_step, data.train_eval_batches, mesh=mesh
    )
    train_accuracy = evaluate(result.state)['accuracy']
    test_accuracy = result.summary['eval']['accuracy']
    rows[name] = {
      'train_accuracy': train_accuracy,
      'test_accuracy': test_accuracy,
      'gap': train_accuracy - test_accuracy,
    }
  print(
    f'\n{config.model} on {data.num_train} training digits, {config.num_steps} steps; test on {data.num_test}'
  )
  print(f'{"variant":>11} {"train acc":>10} {"test acc":>9} {"gap":>7}')
  for name, r in rows.items():
    print(
      f'{name:>11} {r["train_accuracy"]:10.4f} {r["test_accuracy"]:9.4f} {r["gap"]:7.4f}'
    )
  viz.save_figure(
    regularization_figure(
      rows, title=f'{viz.run_name(workdir)}: {config.model} on {data.num_train} '
      f'training digits, {config.num_steps} steps',
    ),
    os.path.join(workdir, 'regularization.png'),
  )  # fmt: skip
  summary = {
    'task': 'regularization',
    'train_examples': data.num_train,
    'results': rows,
    'config': config.to_dict(),
  }
  writers.write_summary(workdir, summary)
  return summary


def regularization_figure(rows: dict, *, title: str):
  """Train and test accuracy per regularizer, as grouped bars."""
  fig, ax = plt.subplots(figsize=(7, 3.8))
  xs = np.arange(len(rows))
  ax.bar(xs - 0.2, [r['train_accuracy'] for r in rows.values()], 0.4, label='train')
  ax.bar(xs + 0.2, [r['test_accuracy'] for r in rows.values()], 0.4, label='test')
  ax.set_xticks(xs, list(rows))
  ax.set_ylim(min(r['test_accuracy'] for r in rows.values()) - 0.05, 1.0)
  ax.set_xlabel('regularizer')
  ax.set_ylabel('accuracy (fraction correct)')
  ax.set_title('train and test accuracy: the gap is overfitting', fontsize=9)
  ax.legend()
  fig.suptitle(title, fontsize=10)
  return fig


def gaussian_figure(kernel, photo, blurred, *, title: str):
  """The kernel (with its colour scale), the photo and the filtered photo."""
  size = kernel.shape[0]
  fig, axes = plt.subplots(
    1, 3, figsize=(13.5, 4.2), gridspec_kw={'width_ratios': [1.3, 3, 3]}
  )
  r = (size - 1) / 2
  shown = axes[0].imshow(
    kernel, cmap='viridis', extent=(-r - 0.5, r + 0.5, r + 0.5, -r - 0.5)
  )
  fig.colorbar(shown, ax=axes[0], label='weight', shrink=0.8)
  axes[0].set_title(f'{size}x{size} kernel')
  axes[0].set_xlabel('x offset (pixels)')
  axes[0].set_ylabel('y offset (pixels)')
  axes[1].imshow(photo)
  axes[1].set_title('original (scikit-learn china.jpg)')
  axes[2].imshow(np.clip(blurred, 0, 1))
  axes[2].set_title('filtered')
  for ax in axes[1:]:
    ax.axis('off')
  fig.suptitle(title)
  return fig


def run_gaussian(config, workdir):
  from sklearn.datasets import load_sample_image

  photo = (
    jnp.asarray(load_sample_image('china.jpg'), jnp.float32)[None] / 255.0
  )  # ships with scikit-learn
  kernel = image_ops.gaussian_kernel(config.kernel_size, config.sigma)
  blurred = image_ops.filter2d(photo, kernel)
  os.makedirs(workdir, exist_ok=True)
  viz.save_figure(
    gaussian_figure(
      np.asarray(kernel), np.asarray(photo[0]), np.asarray(blurred[0]),
      title=f'{viz.run_name(workdir)}: Gaussian filter, {config.kernel_size}x'
      f'{config.kernel_size}, sigma = {config.sigma} pixels',
    ),
    os.path.join(workdir, 'gaussian.png'),
  )  # fmt: skip
  # High frequencies fall: the mean squared difference between neighbouring pixels.
  roughness = lambda im: float(jnp.mean(jnp.diff(im, axis=2) ** 2))  # noqa: E731
  summary = {
    'task': 'gaussian',
    'kernel_sum': float(kernel.sum()),
    'roughness_before': roughness(photo),
    'roughness_after': roughness(blurred),
    'mean_before': float(photo.mean()),
    'mean_after': float(blurred.mean()),
  }
  print(summary)
  writers.write_summary(workdir, summary)
  return summary


def resumable(config) -> bool:
  """Whether the task trains (and so resumes); the launcher asks."""
  return config.task != 'gaussian'


TASKS = {
  'train': run_train,
  'regularization': run_regularization,
  'gaussian': run_gaussian,
}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  choose('task', config.task, TASKS)
  choose('model', config.model, cnn.MODELS)
  return TASKS[config.task](config, workdir)


if __name__ == '__main__':
  launch.run(main)
