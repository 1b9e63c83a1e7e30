"""Timing a benchmark's jitted train step: its set-up on a mesh, timed runs,
XLA's FLOP count, memory, peak FLOP/s and MFU; its parts timed alone."""

import resource
import statistics
import time
from collections.abc import Callable

from nkjax.bench.registry import BENCHMARKS, Benchmark

# Dense peak FLOP/s of one JAX device: (pattern matched in `device_kind`,
# bfloat16, float32). By JAX's default precision float32 matrix products and
# convolutions run as TF32 on the tensor cores of Ampere and later GPUs and as
# one bfloat16 pass on TPUs, so those float32 peaks are the TF32 and bfloat16
# ones. A TPU v2 or v3 chip is two JAX devices (its cores), hence half the chip's
# figure; from v4 on one device is one chip. The T4 has no bfloat16 tensor cores.
# Vendor data sheets; sparsity figures halved where a sheet quotes them.
PEAKS: tuple[tuple[str, float | None, float | None], ...] = (
  (r'h100.*pcie', 756e12, 378e12),
  (r'h100', 989e12, 495e12),  # SXM
  (r'h200', 989e12, 495e12),  # SXM
  (r'a100', 312e12, 156e12),
  (r'\bl4\b', 121e12, 60e12),
  (r'\bt4\b', None, 8.1e12),
  (r'tpu v2\b', 22.5e12, 22.5e12),
  (r'tpu v3\b', 61.5e12, 61.5e12),
  (r'tpu v4\b', 275e12, 275e12),
  (r'tpu v5 ?(lite|e)\b', 197e12, 197e12),
  (r'tpu v5p?$', 459e12, 459e12),
  (r'tpu v6 ?(lite|e)\b', 918e12, 918e12),
)


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """One device's dense peak FLOP/s for `dtype` ('bfloat16' or 'float32'), or
  None for a device (or a dtype on it) the table does not know.

  >>> peak_flops('NVIDIA H100 80GB HBM3', 'bfloat16')
  989000000000000.0
  """
  import re

  for pattern, bf16, fp32 in PEAKS:
    if re.search(pattern, device_kind.lower()):
      return bf16 if dtype == 'bfloat16' else fp32
  return None


def _peak_memory_bytes(devices) -> tuple[int, str]:
  stats = [d.memory_stats() for d in devices]
  if all(s and 'peak_bytes_in_use' in s for s in stats):
    return max(
      s['peak_bytes_in_use'] for s in stats
    ), 'device peak bytes in use (max over devices, whole process so far)'
  return resource.getrusage(
    resource.RUSAGE_SELF
  ).ru_maxrss * 1024, 'host peak RSS (whole process)'


def _program_memory_bytes(compiled) -> int | None:
  """One device's memory for the compiled program: arguments, outputs and
  temporaries, less the outputs that reuse donated arguments."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return (
    m.argument_size_in_bytes
    + m.output_size_in_bytes
    + m.temp_size_in_bytes
    - m.alias_size_in_bytes
  )


def compiled_flops(compiled) -> float | None:
  """FLOPs of one run of a compiled program on one device, by XLA's cost analysis.

  Under SPMD each device runs the partitioned program, so the whole step is
  this times the device count. XLA counts a loop's body once, whatever its
  trip count (see `step_flops`).
  """
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jaxlibs: one dict per program
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def time_runs(
  *runs: Callable[[int], None],
  steps: int,
  repeats: int,
  warmup: int,
  clock: Callable[[], float] = time.perf_counter,
) -> list[list[float]]:
  """Seconds of each timed call of each of `runs`, the runs interleaved.

  Each `run_steps(n)` runs n steps and blocks until they are done. Each is
  warmed up once with `warmup` steps (in order); then every repeat calls each
  run once with `steps` steps, in order (A B A B ... for two), so that a change
  of the machine's speed during the measurement falls on all of them alike.

  Returns:
    One list of `repeats` durations (seconds, by `clock`) per run, in order.

  >>> calls = []
  >>> runs = [lambda n, k=k: calls.append((k, n)) for k in 'ab']
  >>> _ = time_runs(*runs, steps=5, repeats=2, warmup=1)
  >>> calls
  [('a', 1), ('b', 1), ('a', 5), ('b', 5), ('a', 5), ('b', 5)]
  """
  for run_steps in runs:
    run_steps(warmup)
  times = [[] for _ in runs]
  for _ in range(repeats):
    for run_steps, seconds in zip(runs, times, strict=True):
      t0 = clock()
      run_steps(steps)
      seconds.append(clock() - t0)
  return times


def _throughput(
  times: list[float], steps: int, batch_size: int, seq_len: int = 0
) -> dict:
  median = statistics.median(times)
  tokens = (
    {'tokens_per_second': round(steps * batch_size * seq_len / median, 1)}
    if seq_len
    else {}
  )
  return {
    **tokens,
    'step_ms_median': round(1e3 * median / steps, 3),
    'examples_per_second': round(steps * batch_size / median, 1),
    'examples_per_second_min_max': [
      round(steps * batch_size / t, 1) for t in (max(times), min(times))
    ],
  }


def _random_batch(bench: Benchmark, batch_size: int, input_shape=None) -> dict:
  import numpy as np

  if bench.seq_len:
    return {
      'tokens': np.random.default_rng(1)
      .integers(0, bench.num_classes, (batch_size, bench.seq_len + 1))
      .astype(np.int32)
    }
  return {
    'image': np.random.default_rng(1)
    .uniform(size=(batch_size, *(input_shape or bench.input_shape)))
    .astype(np.float32),
    'label': np.random.default_rng(2)
    .integers(0, bench.num_classes, batch_size)
    .astype(np.int32),
  }


def _input_shape(bench: Benchmark, image_size: int | None) -> tuple[int, ...]:
  if image_size is None or bench.seq_len:
    return bench.input_shape
  return (image_size, image_size, *bench.input_shape[2:])


def _setup(name: str, *, batch_size: int, dtype: str, image_size, unroll: int = 1):
  """(state, train_step, host batch) of benchmark `name`, on the host."""
  import jax
  import jax.numpy as jnp

  from nkjax.errors import UserError
  from nkjax.train import optim
  from nkjax.train import state as state_lib
  from nkjax.train import steps as steps_lib

  bench = BENCHMARKS[name]
  if bench.setup is not None:
    if dtype != 'float32':
      raise UserError(f'benchmark {name} has no bfloat16 variant')
    return bench.setup(batch_size)
  model = bench.model()
  if dtype == 'bfloat16':
    if not hasattr(model, 'dtype'):
      raise UserError(
        f'benchmark {name} has no bfloat16 variant; those with one: lenet5, vgg11, resnet20, resnet50'
      )
    model = model.clone(dtype=jnp.bfloat16)
  if unroll != 1:
    model = model.clone(unroll=unroll)
  tx = optim.make_optimizer(name='adam', learning_rate=1e-3)
  shape = _input_shape(bench, image_size)
  example = jnp.zeros((1, *shape), jnp.int32 if bench.seq_len else jnp.float32)
  state = state_lib.create(model=model, tx=tx, rng=jax.random.key(0), inputs=(example,))
  train_step = (
    steps_lib.lm_train_step if bench.seq_len else steps_lib.classifier_train_step
  )
  return state, train_step, _random_batch(bench, batch_size, shape)


def several_steps(train_step: Callable, steps_per_call: int) -> Callable:
  """`train_step` run `steps_per_call` times on the same batch in one compiled
  call (a `lax.scan`), for models whose one step is too small to keep a device
  busy between the host's dispatches; returns the last step's metrics.

  Unrolled on a CPU, as `loop.jit_train_steps` is: XLA:CPU ran LeNet-5's step
  inside a rolled loop 6x slower (77 against 13 ms a step, batch 256, 2 cores,
  jax 0.10.2); on a GPU or TPU the rolled loop compiles once and runs at speed.
  """
  import jax

  def run(state, batch, rng):
    state, metrics = jax.lax.scan(
      lambda s, _: train_step(s, batch, rng),
      state,
      length=steps_per_call,
      unroll=jax.default_backend() == 'cpu',
    )
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return run


def _compile(train_step, state, batch, rng, mesh):
  from nkjax.train import loop

  return loop.jit_train_step(train_step, mesh).lower(state, batch, rng).compile()


def _prepare(
  name, *, batch_size, mesh, dtype='float32', image_size=None, steps_per_call=1
):
  """Benchmark `name`'s step compiled on `mesh`: (compiled, compile seconds,
  `run_steps(n)`, which runs it n times from the last state and blocks)."""
  import jax

  from nkjax.train import sharding

  state, train_step, host_batch = _setup(
    name, batch_size=batch_size, dtype=dtype, image_size=image_size
  )
  state = sharding.replicate(state, mesh)
  batch = sharding.shard_batch(host_batch, mesh)
  rng = sharding.replicate(jax.random.key(0), mesh)
  t0 = time.perf_counter()
  step = (
    train_step if steps_per_call == 1 else several_steps(train_step, steps_per_call)
  )
  compiled = _compile(step, state, batch, rng, mesh)
  compile_seconds = time.perf_counter() - t0

  def run_steps(n):
    nonlocal state
    for _ in range(n):
      state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))

  return compiled, compile_seconds, run_steps


def step_flops(
  name: str,
  *,
  batch_size: int,
  dtype: str = 'float32',
  image_size=None,
  mesh=None,
  counted: float | None = None,
) -> float | None:
  """FLOPs of one train step of benchmark `name` over every device (XLA's count).

  A recurrent model's time loop is compiled as a loop whose body XLA counts
  once, so it is counted at unroll factors 1 and 2: the difference is one time
  step, and the step is the first count plus (seq_len - 1) more time steps.
  `counted`: the count of the one-step program at unroll 1, if already known.
  """
  import jax

  from nkjax.train import sharding

  mesh = mesh or sharding.data_mesh()

  def count(unroll):
    state, train_step, host_batch = _setup(
      name, batch_size=batch_size, dtype=dtype, image_size=image_size, unroll=unroll
    )
    args = (
      sharding.replicate(state, mesh),
      sharding.shard_batch(host_batch, mesh),
      sharding.replicate(jax.random.key(0), mesh),
    )
    flops = compiled_flops(_compile(train_step, *args, mesh))
    return None if flops is None else flops * mesh.devices.size

  flops = count(1) if counted is None else counted
  seq_len = BENCHMARKS[name].seq_len
  if flops is None or not seq_len:
    return flops
  return flops + (seq_len - 1) * (count(2) - flops)


def _mesh(bench: Benchmark):
  """The data mesh a benchmark runs on: every device, or see `one_cpu_device`."""
  import jax

  from nkjax.train import sharding

  if bench.one_cpu_device and jax.default_backend() == 'cpu':
    return sharding.data_mesh(jax.devices()[:1])
  return sharding.data_mesh()


def time_parts(
  name: str, *, batch_size: int, mesh, steps: int, repeats: int, warmup: int
) -> dict:
  """Benchmark `name`'s parts (`Benchmark.parts`), each jitted alone on `mesh`.

  Returns:
    `{'parts_ms': {part: ms a call}, 'parts_sum_ms': the sum weighted by each
    part's calls per step, 'parts_tflops': that sum's FLOPs}`.
  """
  import jax

  from nkjax.train import sharding

  state, _, host_batch = _setup(
    name, batch_size=batch_size, dtype='float32', image_size=None
  )
  times, total_ms, flops = {}, 0.0, 0.0
  for part, (count, fn, params, data) in (
    BENCHMARKS[name].parts(state, host_batch).items()
  ):
    args = (sharding.replicate(params, mesh), sharding.shard_batch(data, mesh))
    compiled = jax.jit(fn).lower(*args).compile()

    def run_steps(n, compiled=compiled, args=args):
      for _ in range(n):
        out = compiled(*args)
      jax.block_until_ready(out)

    (runs,) = time_runs(run_steps, steps=steps, repeats=repeats, warmup=warmup)
    seconds = statistics.median(runs)
    times[part] = round(1e3 * seconds / steps, 3)
    total_ms += count * times[part]
    counted = compiled_flops(compiled)
    flops = None if counted is None or flops is None else flops + count * counted
  return {
    'parts_ms': times,
    'parts_sum_ms': round(total_ms, 3),
    'parts_tflops': None if flops is None else flops * mesh.devices.size / 1e12,
  }


def run(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
  dtype: str = 'float32',
  steps_per_call: int = 1,
  image_size: int | None = None,
  peak_tflops: float | None = None,
  beside: Callable[[int], None] | None = None,
) -> dict:
  """Measures one benchmark's jitted, data-parallel train step (Adam); returns its figures.

  Args:
    name: a key of `BENCHMARKS`.
    batch_size: global batch (default: the benchmark's).
    steps: compiled calls per timed run; `repeats` timed runs, after `warmup` calls.
    dtype: 'float32', or 'bfloat16' compute with float32 parameters.
    steps_per_call: train steps per compiled call (`several_steps`).
    image_size: square images of this size instead of the benchmark's.
    peak_tflops: one device's peak in TFLOP/s, for a device `PEAKS` lacks.
    beside: another `run_steps(n)` (n train steps, blocking; the PyTorch
      equivalent), timed interleaved with this step (`time_runs`): then the
      figures add `run_seconds` and `beside_run_seconds`, each timed run's
      seconds, and leave out the parts.

  Returns:
    A dict of JSON-ready figures: `examples_per_second` (and `tokens_per_second`
    for a language model), `compile_seconds`, memory in MB, `tflops_per_step`
    (all devices), `tflop_per_second` and `mfu` (None without a peak).
  """
  import jax

  from nkjax.errors import UserError, choose
  from nkjax.train import sharding

  choose('benchmark', name, BENCHMARKS)
  choose('dtype', dtype, ('float32', 'bfloat16'))
  if steps_per_call < 1:
    raise UserError(f'steps per call must be at least 1, got {steps_per_call}')
  bench = BENCHMARKS[name]
  batch_size = batch_size or bench.batch_size
  mesh = _mesh(bench)
  sharding.check_batch_size(batch_size, mesh)
  compiled, compile_seconds, run_steps = _prepare(
    name,
    batch_size=batch_size,
    dtype=dtype,
    image_size=image_size,
    steps_per_call=steps_per_call,
    mesh=mesh,
  )
  program_memory = _program_memory_bytes(compiled)
  counted = None
  if steps_per_call == 1:
    counted = compiled_flops(compiled)
    counted = None if counted is None else counted * mesh.devices.size
  # Several steps per call is a loop that XLA counts once: count one step.
  flops = (
    counted
    if steps_per_call == 1 and not bench.seq_len
    else step_flops(
      name,
      batch_size=batch_size,
      dtype=dtype,
      image_size=image_size,
      mesh=mesh,
      counted=counted,
    )
  )

  if beside is None:
    (times,) = time_runs(run_steps, steps=steps, repeats=repeats, warmup=warmup)
  else:
    times, beside_times = time_runs(
      run_steps,
      lambda n: beside(n * steps_per_call),
      steps=steps,
      repeats=repeats,
      warmup=warmup,
    )
  memory, memory_kind = _peak_memory_bytes(mesh.devices.flat)
  figures = _throughput(times, steps * steps_per_call, batch_size, bench.seq_len)
  if beside is not None:
    figures.update(run_seconds=times, beside_run_seconds=beside_times)
  elif bench.parts is not None:
    parts = time_parts(
      name, batch_size=batch_size, mesh=mesh, steps=steps, repeats=repeats,
      warmup=warmup,
    )  # fmt: skip
    # A step much slower than its parts is a defect of the program around them.
    parts['round_over_parts'] = round(
      figures['step_ms_median'] / parts['parts_sum_ms'], 2
    )
    parts['round_over_parts_flops'] = (
      None
      if flops is None or parts['parts_tflops'] is None
      else round(flops / 1e12 / parts['parts_tflops'], 2)
    )
    figures.update(parts)
  device_kind = jax.devices()[0].device_kind
  peak = peak_tflops * 1e12 if peak_tflops else peak_flops(device_kind, dtype)
  flops_per_second = (
    None if flops is None else flops / (1e-3 * figures['step_ms_median'])
  )
  return {
    'benchmark': name,
    'framework': f'jax {jax.__version__}',
    'batch_size': batch_size,
    'input_shape': list(_input_shape(bench, image_size)),
    'dtype': dtype,
    'platform': jax.default_backend(),
    'devices': int(mesh.devices.size),
    'device_kind': device_kind,
    'steps_per_call': steps_per_call,
    'compile_seconds': round(compile_seconds, 3),
    **figures,
    'peak_memory_mb': round(memory / 2**20, 1),
    'peak_memory_kind': memory_kind,
    'program_memory_mb': None
    if program_memory is None
    else round(program_memory / 2**20, 1),
    'tflops_per_step': None if flops is None else flops / 1e12,
    'tflop_per_second': None
    if flops_per_second is None
    else float(f'{flops_per_second / 1e12:.4g}'),
    'peak_tflop_per_second_per_device': None if peak is None else peak / 1e12,
    'mfu': None
    if peak is None or flops_per_second is None
    else float(f'{flops_per_second / (peak * mesh.devices.size):.4g}'),
    'timing': f'median of {repeats} runs of {steps} calls of {steps_per_call} '
    f'steps after {warmup} warm-up calls',
  }
