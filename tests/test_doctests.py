"""Runs the `>>>` examples of the public entry points as tests.

The modules are listed here rather than collected with `--doctest-modules`:
collection would import every module (the benchmarks' PyTorch, TensorFlow
loaders), and a list says which docstrings are promised to run. The examples
run on the 8 fake CPU devices of `tests/conftest.py`.
"""

import doctest
import importlib

import pytest

MODULES = (
  'nkjax',
  'nkjax.backprop',
  'nkjax.bench.measure',
  'nkjax.data.proposals',
  'nkjax.losses',
  'nkjax.metrics',
  'nkjax.metrics.detection',
  'nkjax.metrics.image',
  'nkjax.models',
  'nkjax.models.cnn',
  'nkjax.ops',
  'nkjax.ops.boxes',
  'nkjax.ops.conv',
  'nkjax.train.alternating',
  'nkjax.train.loop',
  'nkjax.train.optim',
  'nkjax.train.restore',
  'nkjax.train.sr_eval',
  'nkjax.train.state',
  'nkjax.train.steps',
  'nkjax.viz',
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=FLAGS, report=True)
  # A listed module without examples is a mistake in the list, not a pass.
  assert result.attempted > 0, f'{name} has no >>> examples'
  assert result.failed == 0, f'{result.failed} of {result.attempted} examples failed'
