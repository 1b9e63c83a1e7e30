import json

import pytest

from nkjax import bench


def test_mlp_benchmark_prints_its_figures(capsys):
  bench.main(['mlp', '--batch-size', '64', '--steps', '2', '--repeats', '2'])
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['benchmark'] == 'mlp' and figures['batch_size'] == 64
  assert figures['examples_per_second'] > 0 and figures['compile_seconds'] > 0
  lo, hi = figures['examples_per_second_min_max']
  assert lo <= figures['examples_per_second'] <= hi
  assert figures['peak_memory_mb'] > 0


def test_unknown_benchmark_lists_the_valid_ones(capsys):
  with pytest.raises(SystemExit):
    bench.main(['resnet9000'])
  assert 'valid choices: mlp' in capsys.readouterr().err
