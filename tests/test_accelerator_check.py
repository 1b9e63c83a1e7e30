"""tools/accelerator_check.py's table and verdict (the script itself runs for
minutes: `tools/accelerator_check.sh OUT --reduced` on a CPU)."""

import importlib.util
import os

_PATH = os.path.join(os.path.dirname(__file__), '..', 'tools', 'accelerator_check.py')
_spec = importlib.util.spec_from_file_location('accelerator_check', _PATH)
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

BENCH_ROW = {
  'benchmark': 'resnet50', 'batch_size': 256, 'dtype': 'bfloat16',
  'examples_per_second': 6000.0, 'compile_seconds': 40.0, 'peak_memory_mb': 30000.0,
  'mfu': 0.5, 'device_kind': 'NVIDIA H100 80GB HBM3',
}  # fmt: skip


def _resume(killed=True, equal=True):
  return {'name': 'kill -9 resume (mlp)', 'killed': killed, 'steps': 30,
          'kill_at': 18, 'bitwise_equal': equal}  # fmt: skip


def test_table_has_one_row_per_check_under_its_header():
  text = check.table([BENCH_ROW, _resume()])
  lines = text.splitlines()
  assert lines[0].startswith('| check | batch | dtype | examples/s')
  assert len(lines) == 4 and all(line.count('|') == 9 for line in lines)
  assert '| resnet50 | 256 | bfloat16 | 6000.0 | 40.0 | 30000.0 | 50.0% |' in text
  assert 'killed at 18 of 30: bitwise equal' in text


def test_a_resume_passes_only_when_killed_and_bitwise_equal():
  assert check.passed(_resume())
  assert not check.passed(_resume(equal=False))
  assert not check.passed(_resume(killed=False))
  assert 'DIFFERS' in check.table([_resume(equal=False)])
  assert 'not killed' in check.table([_resume(killed=False)])
