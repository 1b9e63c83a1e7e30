"""The public names import as documented, and cheaply."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import nkjax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = (
  'nkjax',
  'nkjax.models',
  'nkjax.ops',
  'nkjax.metrics',
  'nkjax.train',
  'nkjax.data',
)
HEAVY = ('tensorflow', 'matplotlib', 'orbax', 'torch')


def _fresh_python(code: str) -> dict:
  """Runs `code` in a new interpreter (nothing imported yet) and returns its
  last stdout line as JSON."""
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}
  out = subprocess.run(
    [sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_nkjax_models_loads_no_tensorflow_matplotlib_or_orbax():
  got = _fresh_python(
    'import json, sys, time\n'
    't = time.perf_counter()\n'
    'import nkjax.models\n'
    'seconds = time.perf_counter() - t\n'
    f'heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))\n'
    'print(json.dumps({"heavy": heavy, "seconds": seconds, '
    '"flax": "flax.linen" in sys.modules}))'
  )
  assert got['heavy'] == [], got
  assert got['flax']  # the import did happen
  print(f'import nkjax.models: {got["seconds"]:.2f} s')


def test_import_nkjax_alone_imports_no_subpackage():
  got = _fresh_python(
    'import json, sys\n'
    'import nkjax\n'
    'print(json.dumps(sorted(m for m in sys.modules if m.startswith(("nkjax.", "jax")))))'
  )
  # Only the stdlib-only helper that makes the subpackages lazy.
  assert got == ['nkjax._lazy']


def test_subpackages_load_on_attribute_access():
  got = _fresh_python(
    'import json, nkjax\n'
    'print(json.dumps([nkjax.models.LeNet5.__name__, nkjax.ops.pool2d.__name__, '
    'nkjax.train.optim.__name__]))'
  )
  assert got == ['LeNet5', 'pool2d', 'nkjax.train.optim']
  with pytest.raises(AttributeError, match='no attribute'):
    nkjax.modles  # noqa: B018


# The packages whose submodules load on first access, and the list that names them.
LAZY = {
  'nkjax': '_SUBMODULES',
  'nkjax.data': '__all__',
  'nkjax.train': '__all__',
  'nkjax.metrics': '_SUBMODULES',
}


def _modules(package) -> set[str]:
  """The public modules and subpackages in a package's folder."""
  return {
    m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith('_')
  }


@pytest.mark.parametrize('name', sorted(LAZY))
def test_each_lazy_list_names_exactly_the_package_modules(name):
  package = importlib.import_module(name)
  assert set(getattr(package, LAZY[name])) == _modules(package)


def test_every_module_of_a_lazy_package_resolves_by_attribute():
  got = _fresh_python(
    'import json, nkjax.data, nkjax.train, nkjax.metrics\n'
    'print(json.dumps([nkjax.train.detection.__name__, nkjax.data.sr.__name__, '
    'nkjax.metrics.image.__name__, nkjax.weights.__name__]))'
  )
  assert got == [
    'nkjax.train.detection',
    'nkjax.data.sr',
    'nkjax.metrics.image',
    'nkjax.weights',
  ]


def test_help_of_nkjax_names_every_top_level_module():
  # help(nkjax) is a reader's map: each module of the package is in it.
  import nkjax

  missing = [m for m in _modules(nkjax) if f'`nkjax.{m}`' not in nkjax.__doc__]
  assert not missing, f"nkjax's docstring omits {missing}"


@pytest.mark.parametrize('name', ['nkjax.models', 'nkjax.ops'])
def test_eager_packages_export_every_module(name):
  package = importlib.import_module(name)
  assert _modules(package) <= set(package.__all__)


@pytest.mark.parametrize('name', PACKAGES)
def test_every_name_in_all_resolves(name):
  module = importlib.import_module(name)
  assert module.__all__, name
  assert len(set(module.__all__)) == len(module.__all__), 'duplicates in __all__'
  for public in module.__all__:
    assert getattr(module, public) is not None, public
  assert set(module.__all__) <= set(dir(module))


def test_models_export_the_course_networks_by_name():
  from nkjax import models

  # The named partials are the same networks `create` builds from lower-case names.
  for name in ('VGG11', 'VGG13', 'VGG16', 'VGG19', 'ResNet18', 'ResNet34', 'ResNet50',
               'ResNet20', 'ResNet32', 'ResNet56'):  # fmt: skip
    assert getattr(models, name) is models.MODELS[name.lower()], name
  # The published depth of each VGG: convolutions + 3 dense layers.
  for depth in (11, 13, 16, 19):
    model = getattr(models, f'VGG{depth}')()
    assert sum(model.convs_per_stage) + len(model.classifier) + 1 == depth
  for depth in (20, 32, 56):  # CIFAR ResNets: 6n + 2 layers
    model = getattr(models, f'ResNet{depth}')()
    assert 6 * model.stage_sizes[0] + 2 == depth and model.stem == 'cifar'
  for cls in ('ElmanCell', 'LSTMCell', 'GRUCell', 'Recurrent', 'CharLM',
              'SequenceClassifier', 'MLPGenerator', 'MLPDiscriminator',
              'DCGANGenerator', 'DCGANDiscriminator', 'LeNet5', 'AlexNet', 'MLP'):  # fmt: skip
    assert cls in models.__all__ and isinstance(getattr(models, cls), type), cls
