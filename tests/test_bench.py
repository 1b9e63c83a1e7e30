import json

import jax
import numpy as np
import pytest

from nkjax import bench


@pytest.fixture
def timed_runs(monkeypatch):
  """The seconds of every timed run `bench.run` measures, one list per run timed."""
  from nkjax.bench import measure

  calls = []

  def record(*args, **kwargs):
    times = time_runs(*args, **kwargs)
    calls.extend(times)
    return times

  time_runs = measure.time_runs
  monkeypatch.setattr(measure, 'time_runs', record)
  return calls


def _check_rates(figures, times, *, steps, batch_size):
  # The figures from the recorded runs, computed here with numpy.
  median = float(np.median(times))
  assert figures['step_ms_median'] == pytest.approx(1e3 * median / steps, abs=1e-3)
  assert figures['examples_per_second'] == pytest.approx(
    steps * batch_size / median, abs=0.05
  )
  slowest, fastest = figures['examples_per_second_min_max']
  assert slowest == pytest.approx(steps * batch_size / np.max(times), abs=0.05)
  assert fastest == pytest.approx(steps * batch_size / np.min(times), abs=0.05)


def test_mlp_benchmark_prints_its_figures(capsys, timed_runs):
  bench.main(['mlp', '--batch-size', '64', '--steps', '2', '--repeats', '3'])
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['benchmark'] == 'mlp' and figures['batch_size'] == 64
  # One of the 8 fake CPU devices (Benchmark.one_cpu_device); the rest use all.
  assert figures['devices'] == 1
  (times,) = timed_runs
  assert len(times) == 3
  _check_rates(figures, times, steps=2, batch_size=64)
  # The process's peak resident memory holds at least the Python runtime and jaxlib.
  assert figures['peak_memory_mb'] > 50


def test_unknown_benchmark_lists_the_valid_ones(capsys):
  with pytest.raises(SystemExit):
    bench.main(['resnet9000'])
  err = capsys.readouterr().err
  # Every registered benchmark is named, the chapters' own among them.
  for name in (
    'dcgan',
    'faster_rcnn',
    'lenet5',
    'lstm_lm',
    'resnet50',
    'srcnn',
    'vgg11',
  ):
    assert name in err
  assert 'valid choices: ' + ', '.join(sorted(bench.BENCHMARKS)) in err


def test_resnet_benchmark_in_bfloat16_runs(capsys, timed_runs):
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
  assert figures['dtype'] == 'bfloat16'
  _check_rates(figures, timed_runs[0], steps=1, batch_size=8)


@pytest.mark.parametrize('name', ['mlp', 'lenet5', 'vgg11', 'resnet20'])
def test_pytorch_equivalents_have_the_same_parameter_count(name):
  pytest.importorskip('torch')
  from nkjax import bench_torch
  from nkjax.models.cnn import count_params

  b = bench.BENCHMARKS[name]
  torch_count = sum(p.numel() for p in bench_torch.MODELS[name]().parameters())
  assert torch_count == count_params(b.model(), b.input_shape)


def test_pytorch_char_lm_differs_only_by_its_second_lstm_bias(mesh):
  torch = pytest.importorskip('torch')
  import jax
  import jax.numpy as jnp

  from nkjax import bench_torch

  b = bench.BENCHMARKS['lstm_lm']
  params = b.model().init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
  flax_count = sum(p.size for p in jax.tree.leaves(params))
  model = bench_torch.MODELS['lstm_lm']()
  assert sum(p.numel() for p in model.parameters()) == flax_count + 4 * 256
  logits = model(torch.zeros((2, 8), dtype=torch.long))
  assert tuple(logits.shape) == (2, 8, 100)


def test_lstm_language_model_has_no_bfloat16_variant(capsys):
  with pytest.raises(SystemExit):
    bench.main(['lstm_lm', '--dtype', 'bfloat16'])
  assert 'has no bfloat16 variant' in capsys.readouterr().err


def test_srcnn_benchmark_runs(capsys, timed_runs):
  bench.main(['srcnn', '--batch-size', '8', '--steps', '1', '--repeats', '1'])
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['benchmark'] == 'srcnn'
  _check_rates(figures, timed_runs[0], steps=1, batch_size=8)


def test_peak_table_knows_the_common_accelerators():
  # device_kind as JAX reports it -> (bfloat16, float32) dense peak TFLOP/s per device.
  expected = {
    'NVIDIA H100 80GB HBM3': (989, 495),
    'NVIDIA H200': (989, 495),
    'NVIDIA A100-SXM4-40GB': (312, 156),
    'NVIDIA L4': (121, 60),
    'Tesla T4': (None, 8.1),
    'TPU v2': (22.5, 22.5),  # one of a chip's two cores
    'TPU v3': (61.5, 61.5),
    'TPU v4': (275, 275),
    'TPU v5 lite': (197, 197),
    'TPU v6 lite': (918, 918),
    'NVIDIA L40S': (None, None),  # not an L4
    'cpu': (None, None),
  }
  for kind, peaks in expected.items():
    got = tuple(bench.peak_flops(kind, d) for d in ('bfloat16', 'float32'))
    assert got == tuple(None if p is None else p * 1e12 for p in peaks), kind


# The MLP benchmark: 784 -> 256 -> 256 -> 10, so sum(in * out) multiply-adds a
# forward pass per example. Training adds the weight gradients (as many) and the
# gradients of every layer's input but the first's, which nothing needs.
_MLP_LAYERS = [(784, 256), (256, 256), (256, 10)]


def test_mlp_step_flops_match_the_closed_form(mesh):
  forward = 2 * sum(i * o for i, o in _MLP_LAYERS)
  train = 2 * forward + 2 * sum(i * o for i, o in _MLP_LAYERS[1:])
  assert 2.25 < train / forward < 2.26  # not the rule of thumb's 3
  small, large = (bench.step_flops('mlp', batch_size=b, mesh=mesh) for b in (64, 128))
  # The batch-independent part (Adam on every device) cancels; what is left per
  # example is the products plus elementwise ops (relu, biases, softmax), which
  # add under 1%.
  per_example = (large - small) / 64
  assert 1.0 <= per_example / train < 1.01
  assert small >= 64 * train


def test_suite_prints_flops_and_mfu_and_counts_the_lstm_s_time_steps(
  capsys, timed_runs
):
  # The CPU suite's cheaper models at a tiny size (ResNets are compiled elsewhere).
  names = ['lenet5', 'lstm_lm', 'dcgan']
  bench.main(
    ['--suite', 'accelerator', *names, '--batch-size', '8', '--steps', '1']
    + ['--repeats', '1', '--peak-tflops', '0.5']
  )
  lines = capsys.readouterr().out.strip().splitlines()
  rows = [json.loads(line) for line in lines if line.startswith('{')]
  assert [r['benchmark'] for r in rows] == names
  # One timed step per benchmark, then the DCGAN round's three parts.
  assert len(timed_runs) == len(names) + 3
  for r, times in zip(rows, timed_runs, strict=False):
    assert r['devices'] == jax.device_count()
    _check_rates(r, times, steps=1, batch_size=8)
    # MFU is the FLOP rate over the peak of all the devices (both to 4 digits).
    peak = jax.device_count() * 0.5
    assert r['mfu'] == pytest.approx(r['tflop_per_second'] / peak, rel=2e-3)
    flop_rate = r['tflops_per_step'] / (1e-3 * r['step_ms_median'])
    assert r['tflop_per_second'] == pytest.approx(flop_rate, rel=2e-3)
  table = [line for line in lines if line.startswith('| ')]
  # A header, its rule, then one row per benchmark, each with its MFU.
  assert len(table) == 2 + len(rows) and all(line.endswith('% |') for line in table[2:])

  # The DCGAN row: its parts' sum, weighted by their calls in a round, and the ratio.
  gan = rows[2]
  parts = gan['parts_ms']
  total = parts['g_forward'] + parts['g_fwd_bwd'] + 3 * parts['d_fwd_bwd']
  assert gan['parts_sum_ms'] == pytest.approx(total, abs=1e-3)
  ratio = gan['step_ms_median'] / gan['parts_sum_ms']
  assert gan['round_over_parts'] == pytest.approx(ratio, abs=0.006)
  for (part, ms), times in zip(parts.items(), timed_runs[3:], strict=True):
    assert ms == pytest.approx(1e3 * float(np.median(times)), abs=1e-3), part

  lm = rows[1]
  # Both are rounded to 0.1: examples/s by up to 0.05, so tokens/s by up to 128 * 0.05.
  assert lm['tokens_per_second'] == pytest.approx(
    128 * lm['examples_per_second'], abs=6.5
  )
  # Per token: 4 gates of 256 over [64 inputs, 256 hidden], then 256 -> 100
  # logits; training computes every product three times (forward, input and
  # weight gradients: the embedding is trained, so its input gradient is
  # needed). The recurrent weights' gradient is one product over all time
  # steps after the backward loop (`nkjax.ops.lstm`), not a running sum inside
  # it. Gate nonlinearities, the softmax and Adam add a few percent; XLA's
  # count of the loop body alone would be about 12 times short.
  gate_weights = 4 * 256 * (64 + 256)
  per_token = 3 * 2 * (gate_weights + 256 * 100)
  assert 1.0 <= 1e12 * lm['tflops_per_step'] / (8 * 128 * per_token) < 1.05


def test_unknown_suite_and_suite_member_are_clear_errors(capsys):
  with pytest.raises(SystemExit):
    bench.main(['--suite', 'fastest'])
  assert 'valid choices: accelerator' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    bench.main(['--suite', 'accelerator', 'vgg11'])
  assert 'unknown benchmark of the suite' in capsys.readouterr().err


def test_several_steps_per_call_equal_as_many_calls(mesh):
  import jax
  import numpy as np

  from nkjax.train import sharding

  state, train_step, batch = bench._setup(
    'mlp', batch_size=16, dtype='float32', image_size=None
  )
  batch = sharding.shard_batch(batch, mesh)
  rng = jax.random.key(0)
  one = jax.jit(train_step)
  s1 = state
  for _ in range(3):
    s1, _ = one(s1, batch, rng)
  s3, _ = jax.jit(bench.several_steps(train_step, 3))(state, batch, rng)
  assert int(s3.step) == 3
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s3.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
