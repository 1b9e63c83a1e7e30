"""The launcher asks XLA for deterministic ops on a GPU, and only there."""

import os

import pytest

from nkjax import launch


@pytest.mark.parametrize('platform', ['gpu', 'cuda', 'rocm', 'GPU'])
def test_deterministic_ops_on_a_gpu_unless_turned_off(platform):
  assert launch.xla_flags_for(platform) == ['--xla_gpu_deterministic_ops=true']
  assert launch.xla_flags_for(platform, gpu_deterministic=False) == []


@pytest.mark.parametrize('platform', ['cpu', 'tpu', 'METAL'])
def test_nothing_added_for_other_platforms(platform):
  assert launch.xla_flags_for(platform) == []


def test_the_flag_is_one_this_xla_knows():
  # An unknown name in XLA_FLAGS aborts the process when XLA starts; the GPU
  # options are parsed on every backend, so this jaxlib must know the name.
  import glob
  import os

  import jaxlib

  flag = launch.GPU_DETERMINISTIC.lstrip('-').encode()
  libs = glob.glob(os.path.join(os.path.dirname(jaxlib.__file__), '*.so'))
  assert any(flag in open(p, 'rb').read() for p in libs)


def test_expected_platform_follows_jax_platforms(monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda,cpu')
  assert launch.expected_platform() == 'cuda'
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  assert launch.expected_platform() == 'cpu'


def test_a_gpu_run_gets_the_flag_and_an_explicit_setting_wins(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '')
  launch._add_xla_flags(launch.xla_flags_for('cuda'))
  assert '--xla_gpu_deterministic_ops=true' in os.environ['XLA_FLAGS'].split()
  monkeypatch.setenv('XLA_FLAGS', '--xla_gpu_deterministic_ops=false')
  launch._add_xla_flags(launch.xla_flags_for('cuda'))
  assert os.environ['XLA_FLAGS'] == '--xla_gpu_deterministic_ops=false'
