"""`python -m nkjax.bench NAMES --torch`: JAX and PyTorch timed interleaved,
after a header; checked with fake steps and a fake clock, not by timing."""

import json
import subprocess

import pytest

from nkjax import bench
from nkjax.bench import measure
from nkjax.bench import pytorch as bench_pytorch


def test_time_runs_interleaves_the_runs_and_times_each_call():
  now, calls = [0.0], []

  def fake_run(name, seconds_per_step):
    def run_steps(n):
      calls.append((name, n))
      now[0] += seconds_per_step * n

    return run_steps

  a, b = measure.time_runs(
    fake_run('a', 1.0), fake_run('b', 3.0), steps=4, repeats=3, warmup=2,
    clock=lambda: now[0],
  )  # fmt: skip
  assert calls == [('a', 2), ('b', 2)] + [('a', 4), ('b', 4)] * 3
  assert a == [4.0] * 3 and b == [12.0] * 3


def test_torch_flag_interleaves_jax_and_torch_after_a_header(
  capsys, monkeypatch, tmp_path
):
  # A fake clock: the JAX step takes 1 s a step, the fake PyTorch one 4 s.
  now, calls = [0.0], []
  real_time_runs = measure.time_runs

  def fake_torch_steps(name, batch_size):
    assert (name, batch_size) == ('mlp', 8)

    def run_steps(n):
      calls.append(('torch', n))
      now[0] += 4.0 * n

    return run_steps

  def time_runs(*runs, **kwargs):
    jax_run, torch_run = runs

    def timed_jax(n):
      jax_run(n)
      calls.append(('jax', n))
      now[0] += 1.0 * n

    return real_time_runs(timed_jax, torch_run, **kwargs, clock=lambda: now[0])

  loads = iter([(1.5, 1.25, 1.0), (2.5, 2.25, 2.0)])
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nmodel name\t: Fake CPU 9000\n')
  monkeypatch.setattr(bench_pytorch, 'torch_steps', fake_torch_steps)
  monkeypatch.setattr(measure, 'time_runs', time_runs)
  monkeypatch.setattr(bench_pytorch.os, 'getloadavg', lambda: next(loads))
  monkeypatch.setattr(bench_pytorch, 'CPUINFO', str(cpuinfo))

  bench.main(['mlp', '--torch', '--batch-size', '8', '--steps', '2', '--repeats', '3'])
  lines = capsys.readouterr().out.strip().splitlines()

  # Warm-ups (3 steps each, `run`'s default), then A B A B A B.
  assert calls == [('jax', 3), ('torch', 3)] + [('jax', 2), ('torch', 2)] * 3
  header = lines[:4]
  assert header[0].startswith('# cpu: Fake CPU 9000, ')
  versions = header[1]
  for package in ('python', 'jax', 'jaxlib', 'torch'):
    assert f'{package} ' in versions
  assert f'jax {bench_pytorch._version("jax")},' in versions
  commit = subprocess.run(
    ['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
    cwd=bench_pytorch.os.path.dirname(bench_pytorch.__file__),
  ).stdout.strip()  # fmt: skip
  assert f'commit {commit}' in header[2] and header[2].startswith('# date: 20')
  assert header[3].endswith('1.5 1.25 1.0')
  assert lines[-1].endswith('2.5 2.25 2.0') and 'after' in lines[-1]

  row = json.loads(lines[4])
  assert row['step_ms_median'] == pytest.approx(1000.0)
  assert row['torch_step_ms_median'] == pytest.approx(4000.0)
  assert row['jax_over_torch'] == pytest.approx(0.25)
  assert row['jax_over_torch_min_max'] == pytest.approx([0.25, 0.25])
  assert '| mlp (8) | 1000.0 | 4000.0 | 0.25 (0.25-0.25) |' in lines


def test_torch_flag_names_the_benchmarks_with_an_equivalent(capsys):
  with pytest.raises(SystemExit):
    bench.main(['resnet50', '--torch'])
  err = capsys.readouterr().err
  assert 'PyTorch equivalent' in err and 'dcgan' in err and 'vdsr' in err
