"""nkjax.profile: per-op time tables from a real jax.profiler trace of a step."""

import importlib.util
import math

import pytest

from nkjax import bench, profile


def _compiled(name, batch_size, mesh):
  return bench._prepare(name, batch_size=batch_size, mesh=mesh)


def test_every_dense_layer_has_matrix_products_in_both_passes(mesh):
  compiled, _, _ = _compiled('mlp', 16, mesh)
  ops = profile.hlo_ops(compiled.as_text()).values()
  for layer in ('Dense_0', 'Dense_1', 'Dense_2'):
    passes = {o.direction for o in ops if o.layer == layer and o.family == 'matmul'}
    # The first layer needs no input gradient, but every layer has a weight one.
    assert passes == {'forward', 'backward'}, (layer, passes)
  # Several devices: the gradients are summed across them.
  assert any(o.family == 'all-reduce (devices)' for o in ops)


def test_traced_ops_are_the_compiled_program_s_and_add_up(mesh):
  compiled, _, run_steps = _compiled('lenet5', 16, mesh)
  run_steps(1)
  text = compiled.as_text()
  times = profile.trace_op_times(lambda: run_steps(2), profile.module_name(text))
  ops = profile.hlo_ops(text)
  assert times and all(profile.lookup(ops, n) is not profile._UNKNOWN for n in times)
  assert all(t > 0 for t in times.values())
  ops = {n: profile.lookup(ops, n) for n in times}
  # LeNet-5's two convolutions appear, forward and backward.
  convs = {
    (ops[n].layer, ops[n].direction) for n in times if ops[n].family == 'convolution'
  }
  assert ('Conv_1', 'forward') in convs and any(d == 'backward' for _, d in convs)

  step_ms = 7.0
  rows = profile.group(times, lambda n: (ops[n].family,), step_ms)
  assert math.isclose(sum(r.share for r in rows), 1.0, rel_tol=1e-9)
  assert math.isclose(sum(r.ms_per_step for r in rows), step_ms, rel_tol=1e-9)
  assert [r.share for r in rows] == sorted((r.share for r in rows), reverse=True)
  conv_us = sum(t for n, t in times.items() if ops[n].family == 'convolution')
  (conv,) = [r for r in rows if r.key == ('convolution',)]
  assert math.isclose(conv.share, conv_us / sum(times.values()), rel_tol=1e-9)


def test_hlo_text_parsing_reads_layers_passes_and_library_fusions():
  text = '\n'.join(
    [
      'HloModule jit_step, entry_computation_layout={()->()}',
      '%fused_computation.4 (p0: f32[1,28,28,8], p1: f32[28,28,8,6]) -> f32[1,5,5,6] {',
      '  %p0 = f32[1,28,28,8]{3,2,1,0} parameter(0)',
      '  ROOT %convolution.8 = f32[1,5,5,6]{3,2,1,0} convolution(%p0, %p1), window={size=28x28}',
      '}',
      'ENTRY %main (param: f32[8,28,28,1]) -> f32[6] {',
      '  %ynn_fusion.4 = f32[1,5,5,6]{3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation.4',
      '  %convolution.1 = f32[8,28,28,6]{3,2,1,0} convolution(%x, %w), '
      'metadata={op_name="jit(step)/jvp(LeNet5)/Conv_0/conv_general_dilated"}',
      '  %dot.2 = f32[8,120]{1,0} dot(%x, %w), '
      'metadata={op_name="jit(step)/transpose(jvp(LeNet5))/Dense_0/dot_general"}',
      '  %tuple.3 = (f32[8]{0}, s32[8]{0}) reduce(%x, %y), '
      'metadata={op_name="jit(step)/mul"}',
      '  ROOT %all-reduce.5 = f32[6]{0} all-reduce(%g), '
      'metadata={op_name="jit(step)/transpose(jvp(M))/Conv_0/x:transpose(jvp(M))/Conv_0/y"}',
      '}',
    ]
  )
  ops = profile.hlo_ops(text)
  assert ops['convolution.1'] == profile.OpInfo('convolution', 'Conv_0', 'forward')
  assert ops['dot.2'] == profile.OpInfo('matmul', 'Dense_0', 'backward')
  # A YNNPACK fusion is what its computation computes; with no metadata it is
  # named by its output shape.
  assert ops['ynn_fusion.4'] == profile.OpInfo(
    'convolution', '(XLA) f32[1,5,5,6]', 'other'
  )
  assert ops['tuple.3'] == profile.OpInfo('elementwise / other', '', 'other')
  assert ops['all-reduce.5'].family == 'all-reduce (devices)'


@pytest.mark.parametrize(
  'op, family',
  [
    ('aten::convolution_backward', 'convolution'),
    ('aten::mkldnn_convolution', 'convolution'),
    ('aten::addmm', 'matmul'),
    ('aten::mm', 'matmul'),
    ('aten::max_pool2d_with_indices_backward', 'pooling'),
    ('aten::native_batch_norm_backward', 'batch norm'),
    ('aten::_foreach_addcdiv_', 'optimizer'),
    ('aten::copy_', 'layout'),
    ('aten::t', 'layout'),
    ('aten::threshold_backward', 'elementwise / other'),
    ('aten::sqrt', 'elementwise / other'),
  ],
)
def test_torch_ops_fall_in_their_families(op, family):
  assert profile.torch_family(op) == family


def test_profile_command_prints_the_tables(capsys):
  with_torch = importlib.util.find_spec('torch') is not None
  argv = ['mlp', '--profile', '--batch-size', '16', '--steps', '2', '--repeats', '1']
  bench.main(argv + (['--torch'] if with_torch else []))
  out = capsys.readouterr().out
  assert '### mlp (batch 16): jax ' in out
  assert '| matmul | forward |' in out and '| Dense_1 | backward | matmul |' in out
  if with_torch:
    assert '### mlp (batch 16): torch ' in out and '| aten::addmm | matmul |' in out
