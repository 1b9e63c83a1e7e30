"""XLA's oneDNN kernels (the CPU default on jaxlib 0.12+) compute what XLA's
own kernels compute: every model family's outputs and parameter gradients,
in two processes, one with each setting of the flag.

The flag is read when JAX starts its backends, so each setting needs its own
process; `_dump` runs in both and the test compares what they wrote.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from nkjax import launch
from tests.processes import fast_compile

pytestmark = [
  pytest.mark.slow,
  pytest.mark.skipif(
    not launch.onednn_convolutions_work(),
    reason='this jaxlib ignores the oneDNN flag (jaxlib < 0.12)',
  ),
]


def _models():
  """(name, module, example input) for one small model of each family."""
  import jax.numpy as jnp

  from nkjax import models
  from nkjax.models import detection, gan, sr

  images = lambda h, c: jnp.linspace(0, 1, 2 * h * h * c).reshape(2, h, h, c)  # noqa: E731
  return [
    ('mlp', models.MLP(hidden=(32, 16), num_outputs=10), images(8, 1)),
    ('lenet5', models.LeNet5(), images(28, 1)),
    ('resnet20', models.ResNet20(num_classes=10), images(16, 3)),
    ('char_lm', models.CharLM(vocab_size=20, embed=8, features=16),
     (jnp.arange(24).reshape(2, 12) % 20)),
    ('dcgan_g', gan.DCGANGenerator(image_shape=(16, 16, 3), widths=(32, 16)),
     jnp.linspace(-1, 1, 200).reshape(2, 100)),
    ('dcgan_d', gan.DCGANDiscriminator(widths=(16, 32)), images(16, 3)),
    ('srcnn', sr.SRCNN(), images(33, 1)),
    ('srresnet', sr.SRResNet(blocks=2, features=16), images(12, 3)),
    ('faster_rcnn', detection.FasterRCNN(num_classes=3, rpn_width=16, fc=(32, 32),
                                         pre_nms_top_n=50, post_nms_top_n=16),
     images(64, 3)),
  ]  # fmt: skip


def _dump(path: str) -> None:
  """Writes each model's output and parameter gradient leaves to `path` (.npz)."""
  import jax
  import jax.numpy as jnp

  out = {}
  for name, model, x in _models():
    variables = model.init(jax.random.key(0), x, train=False)
    params = variables['params']

    def loss(params, model=model, variables=variables, x=x):
      y = model.apply({**variables, 'params': params}, x, train=False)
      leaves = [v for v in jax.tree.leaves(y) if jnp.issubdtype(v.dtype, jnp.floating)]
      # Weights that differ per output, so that a permuted result cannot pass.
      return sum(
        jnp.sum(v * jnp.cos(jnp.arange(v.size)).reshape(v.shape)) for v in leaves
      )

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    out[f'{name}/loss'] = np.asarray(value)
    for key, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
      out[f'{name}/grad{jax.tree_util.keystr(key)}'] = np.asarray(leaf)
  np.savez(path, **out)


def _run(path, onednn: bool):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  # Both at the suite's compile level: only the kernel choice differs.
  env['XLA_FLAGS'] = f'{launch.ONEDNN}={str(onednn).lower()} {fast_compile()}'
  code = f'from tests.test_onednn import _dump; _dump({str(path)!r})'
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run(
    [sys.executable, '-c', code], env=env, cwd=root, check=True, timeout=600
  )
  return dict(np.load(path))


def test_onednn_agrees_with_xla_kernels_on_every_model_family(tmp_path):
  xla = _run(tmp_path / 'xla.npz', onednn=False)
  onednn = _run(tmp_path / 'onednn.npz', onednn=True)
  assert sorted(xla) == sorted(onednn)
  families = {key.split('/')[0] for key in xla}
  assert len(families) == 9, families
  worst = {}
  for key, expected in xla.items():
    scale = float(np.max(np.abs(expected))) or 1.0
    err = float(np.max(np.abs(onednn[key] - expected))) / scale
    family = key.split('/')[0]
    worst[family] = max(worst.get(family, 0.0), err)
  # float32 sums of the same products in another order: relative to the
  # largest entry, differences stay near rounding (1e-7) times the depth.
  print('oneDNN vs XLA, max |diff| / max |value| per family:', worst)
  bad = {k: v for k, v in worst.items() if not v < 1e-4}
  assert not bad, f'oneDNN differs from XLA (max |diff| / max |value|): {bad}'
