"""Where a compiled train step's time goes, op by op, beside PyTorch's.

  python -m nkjax.bench lenet5 --profile                  # JAX's table
  python -m nkjax.bench lenet5 resnet20 --profile --torch # and PyTorch's
  taskset -c 0 python -m nkjax.bench lenet5 --profile --torch   # one core

JAX: the step runs under `jax.profiler.trace`; every XLA op the CPU (or GPU)
runtime records in the trace is matched by name to its instruction in the
compiled HLO, whose metadata names the layer (`Conv_1`, `BasicBlock_3/Conv_0`)
and the pass (`jvp(...)`: forward; `transpose(jvp(...))`: backward; neither:
the loss, the optimizer update or an op XLA added, such as a layout copy).
PyTorch: `torch.profiler` over the same steps, each aten op's self time.

Both tables give each row's share of the ops' total time and that share of the
measured step time (so rows add up to the step), which keeps the two comparable
though JAX's trace counts core time over every device while PyTorch's counts
the calling thread's time with its intra-op threads inside. On one core the two
measures are the same thing.
"""

import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable

# An HLO instruction: `%name = shape opcode(operands), attributes`; a tuple
# shape is parenthesised and may hold spaces.
_INSTRUCTION = re.compile(
  r'^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\('
)
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r'calls=%([\w.\-]+)')
_CUSTOM_TARGET = re.compile(r'custom_call_target="([^"]*)"')
# A flax module's scope name: `Conv_0`, `BasicBlock_3`, `Dense_2`.
_MODULE = re.compile(r'^[A-Za-z]\w*_\d+$')

# Op families, by the jax primitive an op computes (its metadata) or its opcode.
_PRIMITIVE_FAMILY = {
  'conv_general_dilated': 'convolution',
  'dot_general': 'matmul',
  'reduce_max': 'pooling',
  'reduce_window_max': 'pooling',
  'reduce_window_sum': 'pooling',
  'select_and_scatter_add': 'pooling',
  'select_and_gather_add': 'pooling',
  'transpose': 'layout',
}
_OPCODE_FAMILY = {
  'convolution': 'convolution',
  'dot': 'matmul',
  'copy': 'layout',
  'transpose': 'layout',
  'all-reduce': 'all-reduce (devices)',
  'reduce-window': 'pooling',
  'select-and-scatter': 'pooling',
}


@dataclasses.dataclass(frozen=True)
class OpInfo:
  """What one HLO instruction computes, from the compiled program's text."""

  family: str  # convolution, matmul, pooling, layout, all-reduce, elementwise
  layer: str  # the flax scope path, or '' for none (loss, update, XLA's own)
  direction: str  # forward, backward or other


_LIBRARY_FUSION = ('ynn', 'onednn', 'xnn')


def _family(opcode: str, name: str, primitive: str, root: str, target: str) -> str:
  """An op's family from its opcode, name, jax primitive, the root opcode of the
  computation a fusion calls, and a custom call's target."""
  if opcode == 'custom-call':
    target = target.lower()
    if 'conv' in target:
      return 'convolution'
    if 'matmul' in target or 'dot' in target:
      return 'matmul'
  if opcode == 'fusion':
    # A library fusion (YNNPACK, oneDNN) is named for the library, not the op:
    # its computation's root says what it computes.
    if any(lib in name for lib in _LIBRARY_FUSION) and root in _OPCODE_FAMILY:
      return _OPCODE_FAMILY[root]
    if 'transpose' in name or (name.startswith('copy') and not primitive):
      return 'layout'
    if 'convolution' in name:
      return 'convolution'
    if name.startswith('dot') or '_dot' in name:
      return 'matmul'
    return _PRIMITIVE_FAMILY.get(primitive, 'elementwise / other')
  if opcode in _OPCODE_FAMILY:
    return _OPCODE_FAMILY[opcode]
  return _PRIMITIVE_FAMILY.get(primitive, 'elementwise / other')


def _layer_and_direction(op_name: str) -> tuple[str, str]:
  parts = op_name.split('/')
  modules = [p for p in parts[1:-1] if _MODULE.match(p)]
  # An op XLA merged from several layers' ops (one all-reduce of every
  # gradient) carries their names one after another.
  layer = '(several)' if len(set(modules)) < len(modules) else '/'.join(modules)
  if any(p.startswith('transpose(') for p in parts):
    return layer, 'backward'
  if any(p.startswith('jvp(') for p in parts):
    return layer, 'forward'
  return layer, 'other'


def hlo_ops(hlo_text: str) -> dict[str, OpInfo]:
  """Each instruction of a compiled program's HLO text (`compiled.as_text()`)
  by name: its op family, the layer that made it and its pass.

  A fusion without metadata of its own (one XLA formed or added) takes that of
  its fused computation's instructions. An op with no metadata at all (XLA's
  own, such as the weight-gradient convolution it derives from a transposed
  one) has no layer; `jax_tables` names it by its output shape.
  """
  lines = hlo_text.splitlines()
  computation_meta: dict[str, str] = {}
  computation_root: dict[str, str] = {}
  current = None
  for line in lines:
    header = re.match(r'^\s*(?:ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$', line)
    if header:
      current = header.group(1)
      continue
    name = _OP_NAME.search(line)
    if current and name and current not in computation_meta:
      computation_meta[current] = name.group(1)
    m = _INSTRUCTION.match(line)
    if current and m and line.lstrip().startswith('ROOT'):
      computation_root[current] = m.group(3)
  ops = {}
  for line in lines:
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    name, shape, opcode = m.groups()
    meta = _OP_NAME.search(line)
    op_name = meta.group(1) if meta else ''
    calls = _CALLS.search(line)
    called = calls.group(1) if calls else ''
    if not op_name:
      op_name = computation_meta.get(called, '')
    target = _CUSTOM_TARGET.search(line)
    primitive = op_name.rsplit('/', 1)[-1] if op_name else ''
    layer, direction = _layer_and_direction(op_name)
    family = _family(
      opcode,
      name,
      primitive,
      computation_root.get(called, ''),
      target.group(1) if target else '',
    )
    ops[name] = OpInfo(
      family=family,
      layer=layer or ('' if op_name else f'(XLA) {shape.split("{")[0]}'),
      direction=direction,
    )
  return ops


_DIM_LABELS = re.compile(r'dim_labels=([\w>-]+)')


def convolution_forms(hlo_text: str) -> collections.Counter:
  """How many convolutions of a compiled program's HLO text have each form:
  `(dim_labels, dilations)`, e.g. `('b01f_01io->b01f', 'rhs_dilate')`.

  XLA:CPU runs a convolution in its canonical form (`b01f_01io->b01f`) with
  its Eigen kernel and any other form with a generic loop, over 30x slower for
  the DCGAN's gradients; a program of known parts should hold no form that its
  parts compiled alone lack (`tests/test_gan.py`).

  >>> line = ('%c = f32[4,4,3,64]{3,2,1,0} convolution(%a, %b), '
  ...         'window={size=16x16 rhs_dilate=2x2}, dim_labels=f01b_i01o->01bf')
  >>> dict(convolution_forms(line))
  {('f01b_i01o->01bf', 'rhs_dilate'): 1}
  """
  forms = collections.Counter()
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    labels = _DIM_LABELS.search(line)
    if not m or m.group(3) != 'convolution' or not labels:
      continue
    dilation = ','.join(d for d in ('lhs_dilate', 'rhs_dilate') if d + '=' in line)
    forms[labels.group(1), dilation] += 1
  return forms


def module_name(hlo_text: str) -> str:
  """The HLO module's name (`jit_classifier_train_step`), as a trace names it."""
  return hlo_text.split('\n', 1)[0].split()[1].rstrip(',')


def trace_op_times(run: Callable[[], None], module: str) -> dict[str, float]:
  """Microseconds each XLA op of program `module` took while `run()` ran under
  `jax.profiler.trace`, summed over its executions, devices and threads."""
  import jax

  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      run()
    (path,) = glob.glob(
      os.path.join(logdir, '**', 'perfetto_trace.json.gz'), recursive=True
    )
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  times: dict[str, float] = collections.defaultdict(float)
  for e in events:
    args = e.get('args') or {}
    if e.get('ph') == 'X' and 'hlo_op' in args and args.get('hlo_module') == module:
      times[args['hlo_op']] += float(e['dur'])
  return dict(times)


_UNKNOWN = OpInfo('elementwise / other', '', 'other')


def lookup(info: dict[str, OpInfo], traced_name: str) -> OpInfo:
  """The instruction a trace event names. The CPU runtime names a custom call
  by instruction and target (`custom-call.6.clone__onednn$convolution`)."""
  if traced_name in info:
    return info[traced_name]
  return info.get(traced_name.split('__', 1)[0], _UNKNOWN)


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a profile table: a group of ops and its time per step."""

  key: tuple[str, ...]
  share: float  # of the ops' total time
  ms_per_step: float  # the share of the measured step time


def group(
  times: dict[str, float], key: Callable[[str], tuple[str, ...]], step_ms: float
) -> list[Row]:
  """Op times grouped by `key(op name)`, largest first, each group's share of
  the total and that share of `step_ms`."""
  sums: dict[tuple[str, ...], float] = collections.defaultdict(float)
  for name, us in times.items():
    sums[key(name)] += us
  total = sum(sums.values()) or 1.0
  return [
    Row(k, v / total, step_ms * v / total)
    for k, v in sorted(sums.items(), key=lambda kv: -kv[1])
  ]


def jax_tables(
  compiled, run_steps: Callable[[int], None], *, steps: int, step_ms: float
) -> dict[str, list[Row]]:
  """Profile tables of a compiled step: by family, by (family, pass), and the
  heaviest (layer, pass, family) groups.

  Args:
    compiled: the jitted step, compiled (`.lower(...).compile()`).
    run_steps: `n -> None`, runs the compiled step `n` times and blocks.
    steps: steps traced.
    step_ms: the measured time of one step, untraced (the rows' scale).
  """
  text = compiled.as_text()
  info = hlo_ops(text)
  times = trace_op_times(lambda: run_steps(steps), module_name(text))

  def op(name):
    return lookup(info, name)

  return {
    'family': group(times, lambda n: (op(n).family,), step_ms),
    'family_pass': group(times, lambda n: (op(n).family, op(n).direction), step_ms),
    'layer': group(
      times, lambda n: (op(n).layer or '-', op(n).direction, op(n).family), step_ms
    ),
  }


# aten ops by family, for PyTorch's table.
_TORCH_FAMILY = (
  ('convolution', ('conv', 'mkldnn_convolution')),
  ('matmul', ('addmm', 'mm', 'bmm', 'matmul', 'linear')),
  ('pooling', ('pool',)),
  ('batch norm', ('batch_norm',)),
  ('optimizer', ('_foreach', 'adam')),
  ('layout', ('copy_', 'contiguous', 'clone', 'permute', 'transpose', 't', 'view')),
)


def torch_family(op: str) -> str:
  """The family of an aten op name (`aten::convolution_backward`: convolution)."""
  short = op.split('::')[-1]
  for family, needles in _TORCH_FAMILY:
    if any(short == n or (len(n) > 2 and n in short) for n in needles):
      return family
  return 'elementwise / other'


def torch_op_times(run: Callable[[], None]) -> dict[str, float]:
  """Self microseconds of each aten op while `run()` ran under torch.profiler."""
  import torch

  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
    run()
  return {
    e.key: float(e.self_cpu_time_total)
    for e in p.key_averages()
    if e.key.startswith('aten::') and e.self_cpu_time_total > 0
  }


def torch_tables(times: dict[str, float], *, step_ms: float) -> dict[str, list[Row]]:
  """PyTorch's profile tables: by family and by aten op."""
  return {
    'family': group(times, lambda n: (torch_family(n),), step_ms),
    'op': group(times, lambda n: (n, torch_family(n)), step_ms),
  }


def format_rows(rows: Iterable[Row], headers: tuple[str, ...], limit: int = 0) -> str:
  """A profile table as Markdown: the key's columns, ms per step, share."""
  rows = list(rows)
  shown = rows[:limit] if limit else rows
  lines = [
    '| ' + ' | '.join(headers) + ' | ms/step | share |',
    '| ' + ' | '.join('---' for _ in headers) + ' | ---: | ---: |',
  ]
  for r in shown:
    lines.append(
      '| ' + ' | '.join(r.key) + f' | {r.ms_per_step:.2f} | {100 * r.share:.1f}% |'
    )
  if len(shown) < len(rows):
    rest = rows[len(shown) :]
    lines.append(
      '| '
      + ' | '.join(['(the rest)'] + [''] * (len(headers) - 1))
      + f' | {sum(r.ms_per_step for r in rest):.2f} '
      f'| {100 * sum(r.share for r in rest):.1f}% |'
    )
  return '\n'.join(lines)
