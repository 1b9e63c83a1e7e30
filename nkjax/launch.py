"""The one absl launcher; the only file in nkjax that defines flags.

Every experiment file is `get_config(preset)`, `main(config, workdir)` and

    if __name__ == '__main__':
      launch.run(main)

Flags: `--config` (the experiment file, an optional `:preset`, then overrides
such as `--config.learning_rate=0.01`) and `--workdir` (default
`runs/<experiment>-<preset>`). `--helpfull` lists every flag and config field.
"""

import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from nkjax.errors import UserError

_HOST_DEVICES = '--xla_force_host_platform_device_count'


def use_all_cpu_cores() -> None:
  """Fakes one XLA host device per core, so the data-parallel path uses them all.

  XLA's CPU convolutions run on about one core; split over one device per core
  the same step runs on all of them (ResNet-20 at batch 128 on 2 cores: 570 ->
  428 ms). Matrix products already use every core, so a model of them only (an
  MLP) is faster on one device. GPU and TPU backends ignore the flag. It must be
  set before JAX starts its backends; an explicit setting in XLA_FLAGS wins.
  """
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if _HOST_DEVICES not in xla_flags:
    os.environ['XLA_FLAGS'] = (
      f'{xla_flags} {_HOST_DEVICES}={os.cpu_count() or 1}'.strip()
    )


class _QuietLibraries(std_logging.Filter):
  # orbax logs every save's internals at INFO; keep its warnings and errors.
  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


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


def _flatten(config, prefix: str = '') -> list[str]:
  lines = []
  for key, value in config.items():
    if hasattr(value, 'items'):
      lines += _flatten(value, f'{prefix}{key}.')
    else:
      lines.append(f'--config.{prefix}{key}={value!r}')
  return lines


def _config_help(experiment_file: str) -> str:
  module = sys.modules['__main__']
  presets = ', '.join(getattr(module, 'PRESETS', ()))
  fields = '\n'.join(_flatten(module.get_config()))
  return (
    f'experiment file[:preset], e.g. {experiment_file}:smoke; presets: {presets}.\n'
    f'Override any field of the default config:\n{fields}'
  )


def _innermost(error: BaseException) -> BaseException:
  # ml_collections re-raises a get_config() error with its traceback as the
  # message; the original, one-line error is at the end of the chain.
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  return error


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _exit_with(str(_innermost(e)).strip().splitlines()[-1])


def _exit_with(message: str) -> None:
  print(
    f'error: {message} (--helpfull lists every flag, preset and config field)',
    file=sys.stderr,
  )
  sys.exit(1)


def _default_workdir(config_arg: str) -> str:
  path, _, preset = config_arg.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', f'{name}-{preset}' if preset else name)


def _add_xla_flags(flags_to_add) -> None:
  # Before JAX starts its backends; a flag the user set explicitly wins.
  current = os.environ.get('XLA_FLAGS', '')
  for flag in flags_to_add:
    if flag.partition('=')[0] not in current:
      current = f'{current} {flag}'.strip()
  os.environ['XLA_FLAGS'] = current


def run(main, *, xla_flags: tuple[str, ...] = ()) -> None:
  """Parses flags and calls `main(config, workdir)` of the calling experiment.

  `xla_flags` are added to `XLA_FLAGS` unless the user set them: an
  experiment's own requirement of the compiler (bp's exact symmetry claims
  need `--xla_cpu_multi_thread_eigen=false`).
  """
  _add_xla_flags(xla_flags)
  use_all_cpu_cores()
  experiment_file = os.path.relpath(sys.modules['__main__'].__file__)
  try:
    # ml_collections applies --config.<field> overrides here already.
    config = config_flags.DEFINE_config_file(
      'config', experiment_file, _config_help(experiment_file)
    )
  except AttributeError as e:
    inner = e.args[0] if e.args else e
    detail = (
      inner.args[0] if isinstance(inner, BaseException) else str(inner)
    ).replace('\n', '; ')
    _exit_with(f'unknown config field {detail}')
  workdir = flags.DEFINE_string(
    'workdir',
    None,
    'where checkpoints, metrics and pictures go; resumes if it holds checkpoints (default: runs/<experiment>-<preset>)',
  )

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    logging.get_absl_handler().addFilter(_QuietLibraries())
    import jax

    if _several_processes():
      jax.distributed.initialize()
    logging.info(
      'JAX %s on %s: %d local / %d global devices, process %d of %d',
      jax.__version__, jax.default_backend(), jax.local_device_count(),
      jax.device_count(), jax.process_index(), jax.process_count(),
    )  # fmt: skip
    logging.info('Devices: %s', jax.devices())
    try:
      main(
        config.value,
        workdir.value
        or _default_workdir(flags.FLAGS['config'].serialize().partition('=')[2]),
      )
    except (UserError, FloatingPointError) as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)

  app.run(_main, flags_parser=_parse_flags)
