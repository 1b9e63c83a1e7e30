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
  assert (
    'valid choices: dcgan, lenet5, lstm_lm, mlp, resnet20, resnet50, srcnn, srresnet, srresnet_x4_512, vdsr, vdsr_x4_512, vgg11'
    in capsys.readouterr().err
  )


def test_resnet_benchmark_in_bfloat16_runs(capsys):
  bench.main(
    [
      'resnet20',
      '--batch-size',
      '8',
      '--steps',
      '1',
      '--repeats',
      '1',
      '--dtype',
      'bfloat16',
    ]
  )
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['dtype'] == 'bfloat16' and figures['examples_per_second'] > 0


@pytest.mark.parametrize('name', ['mlp', 'lenet5', 'vgg11', 'resnet20'])
def test_pytorch_equivalents_have_the_same_parameter_count(name):
  pytest.importorskip('torch')
  from nkjax import bench_torch
  from nkjax.models.cnn import count_params

  b = bench.BENCHMARKS[name]
  torch_count = sum(p.numel() for p in bench_torch.MODELS[name]().parameters())
  assert torch_count == count_params(b.model(), b.input_shape)


def test_lstm_language_model_benchmark_reports_tokens_per_second(capsys):
  bench.main(['lstm_lm', '--batch-size', '8', '--steps', '1', '--repeats', '1'])
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  # Both are rounded to 0.1: examples/s by up to 0.05, so tokens/s by up to 128 * 0.05.
  assert figures['tokens_per_second'] == pytest.approx(
    128 * figures['examples_per_second'], abs=6.5
  )
  with pytest.raises(SystemExit):
    bench.main(['lstm_lm', '--dtype', 'bfloat16'])
  assert 'has no bfloat16 variant' in capsys.readouterr().err


def test_dcgan_round_benchmark_runs(capsys):
  bench.main(['dcgan', '--batch-size', '8', '--steps', '1', '--repeats', '1'])
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['benchmark'] == 'dcgan' and figures['examples_per_second'] > 0


def test_srcnn_benchmark_runs(capsys):
  bench.main(['srcnn', '--batch-size', '8', '--steps', '1', '--repeats', '1'])
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['benchmark'] == 'srcnn' and figures['examples_per_second'] > 0
