"""Test set-up: 8 fake CPU devices, so the sharded code paths run in CI.

Set before JAX starts its backends. TensorFlow is imported only by the TFDS
tests, through `nkjax.data.tfds_loader.import_tf`, which hides its GPUs.
"""

import os

os.environ['JAX_PLATFORMS'] = 'cpu'
os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402
import pytest  # noqa: E402

from nkjax.train import sharding  # noqa: E402


@pytest.fixture(scope='session')
def mesh():
  """The data mesh over all 8 fake devices."""
  assert jax.device_count() == 8, 'conftest must run before JAX starts'
  return sharding.data_mesh()
