"""Two jax.distributed CPU processes on localhost train as one process does."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.processes import fast_compile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
  'experiments/mlp.py',
  '--config=experiments/mlp.py:smoke',
  '--config.num_steps=10',
]


def _env(devices, **extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith(('JAX_', 'XLA_'))}
  return {
    **env, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ROOT,
    'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices} {fast_compile()}',
    **extra,
  }  # fmt: skip


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_of_two_devices_equal_one_of_four(tmp_path):
  port = _free_port()
  procs = [
    subprocess.Popen(
      [sys.executable, *ARGS, f'--workdir={tmp_path / "two"}'],
      cwd=ROOT,
      env=_env(
        2,
        JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
        JAX_NUM_PROCESSES='2',
        JAX_PROCESS_ID=str(i),
      ),  # fmt: skip
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert 'process 1 of 2' in outs[1] and '4 global devices' in outs[1]
  one = subprocess.run(
    [sys.executable, *ARGS, f'--workdir={tmp_path / "one"}'],
    cwd=ROOT, env=_env(4), capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert one.returncode == 0, one.stderr[-3000:]

  two_s, one_s = (
    json.loads((tmp_path / d / 'summary.json').read_text()) for d in ('two', 'one')
  )
  assert two_s['devices'] == one_s['devices'] == 4
  # The same global batches: evaluation agrees exactly; the training loss to
  # float32 rounding (an all-reduce across processes adds in another order).
  assert two_s['eval'] == one_s['eval']
  assert two_s['train']['accuracy'] == one_s['train']['accuracy']
  assert two_s['train']['loss'] == pytest.approx(one_s['train']['loss'], rel=1e-6)
  # Only process 0 writes: one set of metrics, one TensorBoard file.
  rows = [json.loads(line) for line in open(tmp_path / 'two' / 'metrics.jsonl')]
  assert [r['step'] for r in rows] == [5, 10, 10]
  assert len(os.listdir(tmp_path / 'two' / 'tensorboard')) == 1
