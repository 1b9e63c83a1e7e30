"""The one absl launcher; the only file in nkjax that defines flags.

Every experiment file is `get_config(preset)`, `main(config, workdir)` and

    if __name__ == '__main__':
      launch.run(main)

Flags: `--config` (the experiment file, an optional `:preset`, then overrides
such as `--config.learning_rate=0.01`), `--workdir` (default `runs/<experiment>`
for `default`, the preset without `:preset`, else `runs/<experiment>-<preset>`)
and `--allow_config_change`. `--help` lists the presets, the config fields with
their descriptions and the run's workdir; `--helpfull` adds every absl flag.

Before JAX is imported or a file written, the launcher checks the config
against the experiment's `CHECKS` (`nkjax.validate`), the workdir, and the run
record (`nkjax.train.run_record`): a workdir holding a run with another config
stops, a finished run says so and exits 0. At the end it prints where the
results are and the headline figures.

`call(experiment_file, args)` runs a command line in-process (the same
parsing, checks and `main`) and returns its exit code and stderr.

What an experiment file may declare besides `PRESETS`, `get_config` and `main`:
`CHECKS` (field -> `validate.Rule`), `resumable(config) -> bool` (False for a
task that keeps no checkpoints: a picture, a table of closed forms; the run
record is then not kept), `DEFAULT_WORKDIRS` (preset -> default --workdir
where it is not `runs/<experiment>-<preset>`, or for `default` not
`runs/<experiment>`) and `DESCRIPTIONS` (field -> the one line `--help` prints
beside it; every field of every preset has one, tests/test_help.py).
"""

import contextlib
import difflib
import importlib.util
import io
import json
import logging as std_logging
import math
import os
import shutil
import sys
import types

from absl import app, flags, logging
from ml_collections import config_flags

from nkjax import validate
from nkjax.errors import UserError
from nkjax.train import run_record

_HOST_DEVICES = '--xla_force_host_platform_device_count'
ONEDNN = '--xla_cpu_experimental_onednn_custom_call'


def cpu_cores() -> int:
  # The cores this process may run on (taskset, a container's cpuset), not the machine's.
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS, Windows
    return os.cpu_count() or 1


def onednn_convolutions_work() -> bool:
  """Whether the installed jaxlib runs convolutions through oneDNN on `ONEDNN`.

  jaxlib 0.12 does (Python 3.12+); 0.10.2, the newest that Python 3.11 gets,
  accepts the flag and ignores it. Read from the package metadata, so JAX is
  not imported.
  """
  from importlib import metadata

  try:
    version = metadata.version('jaxlib')
  except metadata.PackageNotFoundError:
    return False
  major_minor = tuple(int(p) for p in version.split('.')[:2] if p.isdigit())
  return major_minor >= (0, 12)


def use_all_cpu_cores() -> None:
  """Sets the CPU backend up as the experiments and benchmarks run it.

  * One fake XLA host device per core, so the data-parallel path uses them
    all. XLA's CPU convolutions run on about one core; split over one device
    per core the same step runs on all of them (ResNet-20 at batch 128 on 2
    cores: 570 -> 428 ms). Matrix products already use every core, so a model
    of them only (an MLP) is faster on one device.
  * On jaxlib 0.12+, XLA's oneDNN convolutions and matrix products (`ONEDNN`):
    LeNet-5's train step at batch 256 on one core 33 -> 21 ms (PyTorch eager:
    21-30 ms), ResNet-20's at batch 128 860 -> 790 ms; every model's loss and
    gradients agree with XLA's own kernels to float32 rounding
    (`tests/test_onednn.py`).

  GPU and TPU backends ignore both. They must be set before JAX starts its
  backends; an explicit setting in XLA_FLAGS wins (`ONEDNN=false` turns the
  second off).
  """
  flags = [f'{_HOST_DEVICES}={cpu_cores()}']
  if onednn_convolutions_work():
    flags.append(f'{ONEDNN}=true')
  _add_xla_flags(flags)


# Compiled programs are kept on disk across runs: a rerun, a resume, or another
# run at the same shapes and flags loads them instead of compiling again. The
# folder grows with each new program; deleting it costs only compilation time.
CACHE_DIR_VARIABLE = 'JAX_COMPILATION_CACHE_DIR'
# Every program, the small ones of eager operations too: a LeNet-5 run keeps 47
# files (0.5 MB) and its rerun starts 1 s sooner than with only those over 0.1 s.
CACHE_MIN_COMPILE_SECONDS = 0.0


def compilation_cache_dir(platform: str) -> str:
  """Where the launcher keeps compiled programs for a run on JAX platform
  `platform`; '' for none.

  `$JAX_COMPILATION_CACHE_DIR` if set (empty: none). Else, on a GPU or TPU,
  `nkjax/xla` under the user's cache folder (`$XDG_CACHE_HOME`, default
  `~/.cache`); on a CPU none: jaxlib's loader of cached CPU programs rejects
  every one on some AVX-512 CPUs (it takes LLVM's tuning hints for missing
  instructions, jax issue 38445), logging an error line for each and compiling
  anyway, so on a CPU the cache is the user's choice.
  """
  if CACHE_DIR_VARIABLE in os.environ:
    return os.environ[CACHE_DIR_VARIABLE]
  if platform.lower() == 'cpu':
    return ''
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
    os.path.expanduser('~'), '.cache'
  )
  return os.path.join(base, 'nkjax', 'xla')


def use_compilation_cache(platform: str) -> None:
  """Turns on JAX's persistent compilation cache for this process where
  `compilation_cache_dir(platform)` names a folder, before its first
  compilation. A cached executable is the one a compilation gives, so results
  are the same bits. What the user set through JAX's own variables wins."""
  import jax

  directory = compilation_cache_dir(platform)
  jax.config.update('jax_compilation_cache_dir', directory or None)
  name = 'jax_persistent_cache_min_compile_time_secs'
  if directory and name.upper() not in os.environ:
    jax.config.update(name, CACHE_MIN_COMPILE_SECONDS)


GPU_DETERMINISTIC = '--xla_gpu_deterministic_ops'
_GPU_PLATFORMS = ('gpu', 'cuda', 'rocm')


def xla_flags_for(platform: str, *, gpu_deterministic: bool = True) -> list[str]:
  """The XLA flags the launcher adds for a run on JAX platform `platform`.

  On a GPU, `GPU_DETERMINISTIC=true`: XLA's scatter-adds (the gradients of
  RoIAlign, RoI pooling and embeddings) otherwise add in whatever order the
  threads finish, so two runs, or a run and its resume after kill -9, differ in
  the last bits; with it, scatters run as deterministic sorts or segmented
  sums and autotuning picks the same kernels each time. `gpu_deterministic=False`
  (`--gpu_deterministic=false`) leaves XLA's faster default. The CPU and TPU
  backends are deterministic already: nothing is added for them.

  >>> xla_flags_for('cuda'), xla_flags_for('tpu'), xla_flags_for('gpu', gpu_deterministic=False)
  (['--xla_gpu_deterministic_ops=true'], [], [])
  """
  if platform.lower() in _GPU_PLATFORMS and gpu_deterministic:
    return [f'{GPU_DETERMINISTIC}=true']
  return []


def expected_platform() -> str:
  """The platform JAX will start on, found without starting it: the first of
  `JAX_PLATFORMS` if set, else 'gpu' where a CUDA or ROCm plugin is
  installed, 'tpu' where libtpu is, else 'cpu'."""
  from importlib import metadata

  chosen = os.environ.get('JAX_PLATFORMS', '').split(',')[0].strip().lower()
  if chosen:
    return chosen
  names = {
    d.metadata['Name'].lower().replace('_', '-') for d in metadata.distributions()
  }
  if any(n.startswith(('jax-cuda', 'jax-rocm')) for n in names):
    return 'gpu'
  if any(n.startswith('libtpu') for n in names):
    return 'tpu'
  return 'cpu'


class _QuietLibraries(std_logging.Filter):
  # orbax logs every save's internals at INFO; keep its warnings and errors.
  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


_QUIET_LIBRARIES = _QuietLibraries()


def _several_processes() -> bool:
  if os.environ.get('NKJAX_DISTRIBUTED') == '1' or os.environ.get(
    'JAX_COORDINATOR_ADDRESS'
  ):
    return True
  if ',' in os.environ.get('TPU_WORKER_HOSTNAMES', ''):  # a TPU pod's worker list
    return True
  # SLURM and MPI give the task count.
  return any(
    int(os.environ.get(name, '1') or 1) > 1
    for name in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')
  )


def _flatten(config, prefix: str = '') -> list[tuple[str, object]]:
  # (dotted field name, value) for every leaf of the config.
  fields = []
  for key, value in config.items():
    if hasattr(value, 'items'):
      fields += _flatten(value, f'{prefix}{key}.')
    else:
      fields.append((f'{prefix}{key}', value))
  return fields


def description(module, field: str) -> str | None:
  """The experiment's one-line description of config field `field`.

  From the module's `DESCRIPTIONS` (field -> line); a nested field such as
  `lr_multipliers.conv3` takes its parent's line. None where there is none.
  """
  descriptions = getattr(module, 'DESCRIPTIONS', {})
  parts = field.split('.')
  for n in range(len(parts), 0, -1):
    if '.'.join(parts[:n]) in descriptions:
      return descriptions['.'.join(parts[:n])]
  return None


def _config_help(module, experiment_file: str) -> str:
  # The --config flag's own line; --help lists the presets and the fields.
  return (
    f'experiment file[:preset], e.g. {experiment_file}:smoke; '
    f'without :preset, the preset default (--help lists the presets and fields)'
  )


def _config_arg(argv: list[str]) -> str | None:
  # The value of --config as given (the experiment file and any :preset).
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.partition('=')[2]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _unknown_field(module, name: str, config_arg: str | None) -> str:
  # ml_collections suggests a field only when the default config is parsed;
  # after an explicit --config=file:preset, suggest from that preset's fields.
  preset = (config_arg or '').partition(':')[2]
  try:
    config = module.get_config(preset) if preset else module.get_config()
  except UserError:
    config = module.get_config()
  close = difflib.get_close_matches(name, list(config.keys()), n=1)
  hint = f'; Did you mean "{close[0]}" instead of "{name}"?' if close else ''
  return f'unknown config field {name!r}{hint}'


_HELP_FLAGS = ('--help', '-h', '-?', '--helpshort', '--helpfull')


_FIELD_COLUMN = 40  # where descriptions start; a longer field puts its own below


def _experiment_help(module, experiment_file: str, config_arg: str | None) -> str:
  """The experiment's own help: its docstring, presets, config fields with
  their descriptions, and the launcher's flags with the workdir it would use."""
  preset = (config_arg or '').partition(':')[2]
  presets = getattr(module, 'PRESETS', ())
  if preset not in presets:
    preset = 'default'
  config = module.get_config(preset)
  lines = []
  for name, value in _flatten(config):
    flag = f'  --config.{name}={value!r}'
    text = description(module, name) or ''
    if len(flag) + 2 <= _FIELD_COLUMN:
      lines.append(f'{flag.ljust(_FIELD_COLUMN)}{text}'.rstrip())
    else:
      lines += [flag] + ([' ' * _FIELD_COLUMN + text] if text else [])
  marked = [f'{p} (without :PRESET)' if p == 'default' else p for p in presets]
  return (
    f'{(module.__doc__ or "").strip()}\n\n'
    f'presets (--config={experiment_file}:PRESET): {", ".join(marked)}\n\n'
    f'config fields of preset {preset} (override any with --config.FIELD=VALUE):\n'
    + '\n'.join(lines)
    + '\n\nlauncher flags:\n'
    f'  --workdir=DIR  {_workdir_help(module, f"{experiment_file}:{preset}")}\n'
    '  --allow_config_change  resume the run in --workdir with a config that differs '
    'from the one that started it, recording the change in run.json and summary.json\n'
  )


def _workdir_help(module, config_arg: str) -> str:
  # The default named is the one `_launch` uses for this --config.
  return (
    'where checkpoints, metrics and pictures go; resumes a run there '
    f'(default: {_default_workdir(module, config_arg)})'
  )


def _innermost(error: BaseException) -> BaseException:
  # ml_collections re-raises a get_config() error with its traceback as the
  # message; the original, one-line error is at the end of the chain.
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  return error


def _parse_flags(module, flag_values, argv: list[str]) -> list[str]:
  experiment_file = os.path.relpath(module.__file__)
  asked = [a for a in argv[1:] if a.split('=')[0] in _HELP_FLAGS]
  if asked:
    print(_experiment_help(module, experiment_file, _config_arg(argv)))
    if asked[0].startswith('--helpfull'):
      print("every flag, absl's included:\n" + flag_values.get_help())
    else:
      print('--helpfull adds every absl flag.')
    sys.exit(0)
  config_arg = _config_arg(argv)
  try:
    if config_arg is not None:
      validate.config_file(config_arg.partition(':')[0])
  except UserError as e:
    _exit_with(str(e))
  try:
    return flag_values(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    detail = str(_innermost(e)).strip().splitlines() or [type(e).__name__]
    message = detail[-1]
    if isinstance(_innermost(e), AttributeError | KeyError):
      # ml_collections' "no such field", with its "Did you mean" line.
      message = _unknown_field(module, detail[0].strip('\'"'), config_arg)
    _exit_with(message)


def _exit_with(message: str) -> None:
  print(
    f'error: {message} (--helpfull lists every flag, preset and config field)',
    file=sys.stderr,
  )
  sys.exit(1)


def _default_workdir(module, config_arg: str) -> str:
  # No `:preset` runs the preset `default`: both go to the same workdir.
  path, _, preset = config_arg.partition(':')
  preset = preset or 'default'
  name = os.path.splitext(os.path.basename(path))[0]
  special = getattr(module, 'DEFAULT_WORKDIRS', {})
  if preset in special:
    return special[preset]
  return os.path.join('runs', name if preset == 'default' else f'{name}-{preset}')


class _Undo:
  """Puts back what the launcher itself wrote (the run record, a new workdir)
  when the run stops on bad input before writing anything else."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    created = self.workdir
    while not os.path.exists(os.path.dirname(created)):
      created = os.path.dirname(created)
    self.created = None if os.path.exists(self.workdir) else created
    self.names = set() if self.created else set(os.listdir(self.workdir))
    record = os.path.join(self.workdir, run_record.FILENAME)
    self.record = open(record, 'rb').read() if os.path.isfile(record) else None

  def __call__(self) -> None:
    if not os.path.isdir(self.workdir):
      return
    names = set(os.listdir(self.workdir)) - {run_record.FILENAME}
    if names != self.names - {run_record.FILENAME}:
      return  # the run wrote more: keep its record with it
    if self.created:
      shutil.rmtree(self.created)
      return
    path = os.path.join(self.workdir, run_record.FILENAME)
    if self.record is None:
      os.remove(path)
    else:
      with open(path, 'wb') as f:
        f.write(self.record)


def _fmt(value) -> str:
  if isinstance(value, float):
    return f'{value:.4g}' if math.isfinite(value) else str(value)
  return str(value)


def _numbers(d) -> str:
  return ', '.join(
    f'{k} {_fmt(v)}'
    for k, v in d.items()
    if isinstance(v, int | float) and not isinstance(v, bool)
  )


def closing_lines(workdir: str) -> list[str]:
  """Where the results of the run in `workdir` are, and its headline figures."""
  names = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
  shown = [n + ('/' if os.path.isdir(os.path.join(workdir, n)) else '') for n in names]
  lines = [f'results in {workdir}: {", ".join(shown)}']
  if 'tensorboard' in names:
    lines.append(f'curves: tensorboard --logdir {workdir}')
  try:
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return lines
  for part in ('eval', 'train'):
    if isinstance(summary.get(part), dict) and _numbers(summary[part]):
      lines.append(f'{part}: {_numbers(summary[part])}')
  if isinstance(summary.get('results'), dict):
    for name, row in summary['results'].items():
      if isinstance(row, dict) and _numbers(row):
        lines.append(f'{name}: {_numbers(row)}')
  # The headline: a super-resolution run's gain over bicubic, a detector's mAP.
  for scale, row in (summary.get('mean_scores') or {}).items():
    for m, v in row.items() if isinstance(row, dict) else ():
      if isinstance(v, dict) and 'gain_psnr_y' in v:
        lines.append(
          f'{m} {scale}: test PSNR-Y {v["psnr_y"]:.2f} dB, '
          f'{v["gain_psnr_y"]:+.2f} dB over bicubic'
        )
  if isinstance(summary.get('map_07'), float):
    lines.append(
      f'mAP@0.5 {summary["map_07"]:.3f} (VOC07 11-point), '
      f'{summary.get("map_all", float("nan")):.3f} (all-point)'
    )
  if len(lines) == 1 + ('tensorboard' in names):
    top = {k: v for k, v in summary.items() if k not in ('config', 'seed')}
    if _numbers(top):
      lines.append(_numbers(top))
  if isinstance(summary.get('steps'), int) and summary.get('wall_seconds'):
    lines.append(f'{summary["steps"]} steps in {summary["wall_seconds"]:.1f} s')
  return lines


def _add_xla_flags(flags_to_add) -> None:
  # Before JAX starts its backends; a flag the user set explicitly wins.
  current = os.environ.get('XLA_FLAGS', '')
  for flag in flags_to_add:
    if flag.partition('=')[0] not in current:
      current = f'{current} {flag}'.strip()
  os.environ['XLA_FLAGS'] = current


def _experiment_name(module) -> str:
  return os.path.splitext(os.path.basename(module.__file__))[0]


def _define_flags(module, flag_values, argv: list[str]):
  """Defines `--config`, `--workdir`, `--allow_config_change` and
  `--gpu_deterministic` in `flag_values`."""
  experiment_file = os.path.relpath(module.__file__)
  try:
    # ml_collections applies --config.<field> overrides here already.
    config = config_flags.DEFINE_config_file(
      'config', experiment_file, _config_help(module, experiment_file),
      flag_values=flag_values, sys_argv=argv,
    )  # fmt: skip
  except AttributeError as e:
    inner = e.args[0] if e.args else e
    detail = (
      inner.args[0] if isinstance(inner, BaseException) else str(inner)
    ).replace('\n', '; ')
    _exit_with(f'unknown config field {detail}')
  workdir = flags.DEFINE_string(
    'workdir',
    None,
    _workdir_help(module, _config_arg(argv) or experiment_file),
    flag_values=flag_values,
  )
  allow_change = flags.DEFINE_bool(
    'allow_config_change',
    False,
    'resume the run in --workdir with a config that differs from the one that '
    'started it; the change is recorded in run.json and summary.json',
    flag_values=flag_values,
  )
  gpu_deterministic = flags.DEFINE_bool(
    'gpu_deterministic',
    True,
    "on a GPU, make XLA's scatter-adds and autotuning deterministic "
    f'({GPU_DETERMINISTIC}; see docs/accelerators.md for its cost); false: faster, '
    'not bitwise reproducible',
    flag_values=flag_values,
  )
  return config, workdir, allow_change, gpu_deterministic


def _launch(module, main, flag_values, holders, argv: list[str]) -> None:
  """Everything after flag parsing: checks, the run record, `main`, the
  closing lines. Stops with `SystemExit` (1 on bad input)."""
  config, workdir_flag, allow_change, gpu_deterministic = holders
  if len(argv) > 1:
    _exit_with(
      f'unexpected arguments: {" ".join(argv[1:])}; flags take the form '
      '--config=FILE:PRESET, --config.FIELD=VALUE, --workdir=DIR'
    )
  logging.get_absl_handler().addFilter(_QUIET_LIBRARIES)
  try:
    cfg = config.value
  except (OSError, AttributeError, ValueError, TypeError, KeyError) as e:
    _exit_with(str(_innermost(e)).strip().splitlines()[-1])
  workdir = workdir_flag.value or _default_workdir(
    module, flag_values['config'].serialize().partition('=')[2]
  )
  experiment = _experiment_name(module)
  try:
    validate.config(cfg, getattr(module, 'CHECKS', {}))
    resumable = getattr(module, 'resumable', lambda _: True)(cfg)
    validate.workdir(workdir)
    if resumable:
      resume = run_record.check(
        workdir, cfg.to_dict(), allow_change=allow_change.value, experiment=experiment
      )
  except UserError as e:
    _exit_with(str(e))
  if resumable and resume.finished:
    steps = next((f for f in run_record.STEP_FIELDS if f in cfg), 'num_steps')
    print(
      f'The run in {workdir} is already finished; its results are unchanged in '
      f'{os.path.join(workdir, "summary.json")} (raise --config.{steps} to train further).'
    )
    return
  # Before JAX starts its backends (jax is imported, but starts them lazily).
  platform = expected_platform()
  _add_xla_flags(xla_flags_for(platform, gpu_deterministic=gpu_deterministic.value))
  import jax

  use_compilation_cache(platform)
  if _several_processes():
    # JAX finds the process count and index itself under SLURM, MPI and on
    # TPU pods; elsewhere (GPU hosts started by hand, a test on localhost)
    # JAX_NUM_PROCESSES and JAX_PROCESS_ID give them.
    count, index = (
      os.environ.get('JAX_NUM_PROCESSES'),
      os.environ.get('JAX_PROCESS_ID'),
    )
    jax.distributed.initialize(
      num_processes=int(count) if count else None,
      process_id=int(index) if index else None,
    )
  logging.info(
    'JAX %s on %s: %d local / %d global devices, process %d of %d',
    jax.__version__, jax.default_backend(), jax.local_device_count(),
    jax.device_count(), jax.process_index(), jax.process_count(),
  )  # fmt: skip
  logging.info('Devices: %s', jax.devices())
  first = jax.process_index() == 0
  undo = _Undo(workdir)
  if resumable and first:
    at_step = run_record.latest_checkpoint_step(workdir)
    run_record.start(
      workdir, cfg.to_dict(), resume, at_step=at_step, experiment=experiment
    )
  try:
    main(cfg, workdir)
  except UserError as e:
    if first:
      undo()
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  except FloatingPointError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  if first:
    if resumable:
      run_record.finish(workdir)
    print('\n'.join(closing_lines(workdir)))


def run(main, *, xla_flags: tuple[str, ...] = ()) -> None:
  """Parses flags and calls `main(config, workdir)` of the calling experiment.

  `xla_flags` are added to `XLA_FLAGS` unless the user set them: an
  experiment's own requirement of the compiler (bp's exact symmetry claims
  need `--xla_cpu_multi_thread_eigen=false`).
  """
  _add_xla_flags(xla_flags)
  use_all_cpu_cores()
  module = sys.modules['__main__']
  holders = _define_flags(module, flags.FLAGS, sys.argv)
  app.run(
    lambda argv: _launch(module, main, flags.FLAGS, holders, argv),
    flags_parser=lambda argv: _parse_flags(module, flags.FLAGS, argv),
  )


_MODULES: dict[str, types.ModuleType] = {}


def call(experiment_file: str, args: list[str]) -> tuple[int, str]:
  """Runs an experiment's command line in this process, as `run` would.

  The same parsing, checks, run record and `main` as `python experiment_file
  *args`, with flags of their own (absl's global flags are left alone) and
  without the CPU set-up, which only a fresh process can make: for tests of
  what a command line does, at the cost of an import instead of an
  interpreter's start. An exception that `run` would print as a traceback
  propagates.

  Args:
    experiment_file: the experiment's file, e.g. 'experiments/sr.py'.
    args: the arguments after it, e.g. ['--config=experiments/sr.py:smoke'].

  Returns:
    `(exit code, what was written to stderr)`.
  """
  path = os.path.abspath(experiment_file)
  if path not in _MODULES:
    spec = importlib.util.spec_from_file_location(
      f'nkjax_experiment_{os.path.splitext(os.path.basename(path))[0]}', path
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _MODULES[path] = module
  module = _MODULES[path]
  argv = [experiment_file, *args]
  flag_values = flags.FlagValues()
  err, out = io.StringIO(), io.StringIO()
  code = 0
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
    try:
      holders = _define_flags(module, flag_values, argv)
      rest = _parse_flags(module, flag_values, argv)
      _launch(module, module.main, flag_values, holders, rest)
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else 1
  return code, err.getvalue()
