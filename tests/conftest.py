"""Test set-up: 2 fake CPU devices, so the sharded code paths run in CI.

Two, as the launcher gives the project's 2-core machine (one device a core):
the batch is split and the gradients summed across devices as in a user's
run. More fake devices than cores cost time (docs/testing.md) and prove no
more.

XLA's CPU back end compiles at its lowest optimisation level and, where the
jaxlib has them, with its older fusion emitters (see `tests/processes.py`): the
suite's time is mostly compilation. A test marked `default_emitters` (a claim
of bitwise equality between two programs, which holds with the emitters a
user's XLA uses) runs in a child pytest without the older ones: all such tests
in one child, started by the first of them to run (they form one xdist group).

Set before JAX starts its backends. TensorFlow is imported only by the TFDS
tests, through `nkjax.data.tfds_loader.import_tf`, which hides its GPUs.

The run's processes share one on-disk XLA compilation cache: the xdist workers
and the subprocesses tests start (a rerun, a resume, kill -9, the notebook's
kernel) inherit the environment, so a program that several of them compile,
the same tiny model at the same shapes and flags, is compiled once. The cache
key covers the program, the flags and the jax/jaxlib versions; a cached
executable is the same one a compile would give.

Under `-n`, tests go to the workers one at a time (`--dist loadgroup`), except
that the tests of a file that share a module-scoped fixture (a trained model, a
prepared dataset) form one group, run on one worker, so the fixture is built
once; `pytest_collection_modifyitems` below marks them.
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tests.processes import OLD_EMITTERS, ROOT, env_without, fast_compile

DEVICES = 2
os.environ['JAX_PLATFORMS'] = 'cpu'
_flags = os.environ.get('XLA_FLAGS', '').split()
for _flag in (
  f'--xla_force_host_platform_device_count={DEVICES}',
  *fast_compile().split(),
):
  if _flag not in _flags:  # xdist's workers inherit the controller's
    _flags.append(_flag)
os.environ['XLA_FLAGS'] = ' '.join(_flags)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  # Made by the first process (xdist's controller, or a plain pytest); the
  # workers start after it and find the variable set.
  _cache = tempfile.mkdtemp(prefix='nkjax-tests-xla-cache-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import jax  # noqa: E402
import pytest  # noqa: E402

from nkjax.train import sharding  # noqa: E402


@pytest.fixture(scope='session')
def mesh():
  """The data mesh over all the fake devices."""
  assert jax.device_count() == DEVICES, 'conftest must run before JAX starts'
  return sharding.data_mesh()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(items):
  """Groups the tests of a module that share a module-scoped fixture, and the
  `default_emitters` tests (one child pytest runs them all)."""
  for item in items:
    if item.get_closest_marker('default_emitters'):
      item.add_marker(pytest.mark.xdist_group('default_emitters'))
      continue
    info = getattr(item, '_fixtureinfo', None)
    if info is None:
      continue
    shared = sorted(
      name
      for name in info.names_closure
      if any(d.scope == 'module' for d in info.name2fixturedefs.get(name, ()))
    )
    if shared:
      item.add_marker(pytest.mark.xdist_group(f'{item.module.__name__}:{shared[0]}'))


# nodeid -> (passed, the child's output), for the `default_emitters` tests.
_CHILD_RESULTS: dict[str, tuple[bool, str]] = {}


def _node(item) -> str:
  return item.nodeid.split('@')[0]  # less xdist's group suffix


def _run_default_emitters_child(items) -> None:
  """Runs every `default_emitters` test of `items` in one child pytest with
  XLA's default emitters; records each one's outcome."""
  nodes = [_node(i) for i in items if i.get_closest_marker('default_emitters')]
  args = ['-m', 'pytest', '-q', '-rA', '-p', 'no:cacheprovider', '-o', 'addopts=']
  child = subprocess.run(
    [sys.executable, *args, *nodes], cwd=ROOT, env=env_without([OLD_EMITTERS]),
    capture_output=True, text=True,
  )  # fmt: skip
  outcomes = dict(
    (m.group(2), m.group(1) == 'PASSED')
    for m in re.finditer(r'^(PASSED|FAILED|ERROR) (\S+)', child.stdout, re.M)
  )
  for node in nodes:
    _CHILD_RESULTS[node] = (outcomes.get(node, False), child.stdout[-4000:])


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """Runs a `default_emitters` test in a child pytest with the emitters a
  user's XLA uses, when this run compiles with the older ones."""
  if not pyfuncitem.get_closest_marker('default_emitters'):
    return None
  if OLD_EMITTERS not in fast_compile().split():
    return None
  node = _node(pyfuncitem)
  if node not in _CHILD_RESULTS:
    _run_default_emitters_child(pyfuncitem.session.items)
  passed, output = _CHILD_RESULTS[node]
  if not passed:
    pytest.fail(f'{node} with the default emitters:\n{output}', pytrace=False)
  return True
