"""XLA settings of the test processes, and the environment of a process a test
starts to run a recipe at full speed."""

import json
import os
import subprocess
import sys

# The tests compile far more than they run: most programs run a few steps. XLA's
# CPU back end (LLVM) at its lowest optimisation level compiles them 2-3 times
# faster and computes the same functions (docs/testing.md); a recipe run whose
# steps are the cost runs in a process without it (`optimised_env`).
LOWEST_LEVEL = '--xla_backend_optimization_level=0'
# jaxlib 0.10 emits fused kernels through MLIR by default; its older emitters
# compile the suite's programs about 1.5x faster (docs/testing.md). Later
# jaxlibs have only the new ones, and XLA aborts on a flag it does not know, so
# it is used where this jaxlib accepts it.
OLD_EMITTERS = '--xla_cpu_use_fusion_emitters=false'
# The first process of a run (pytest, or xdist's controller) chooses the flags
# once; the workers and the subprocesses tests start inherit the choice.
_CHOSEN = 'NKJAX_TESTS_FAST_COMPILE'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _accepted(flag: str) -> bool:
  """Whether this jaxlib's XLA starts with `flag` (a process of its own)."""
  env = {**os.environ, 'XLA_FLAGS': flag, 'JAX_PLATFORMS': 'cpu'}
  probe = [sys.executable, '-c', 'import jax; jax.devices()']
  return subprocess.run(probe, env=env, capture_output=True).returncode == 0


def fast_compile() -> str:
  """The XLA flags the tests compile with, space-separated, as XLA_FLAGS takes
  them."""
  if _CHOSEN not in os.environ:
    flags = [LOWEST_LEVEL] + [f for f in (OLD_EMITTERS,) if _accepted(f)]
    os.environ[_CHOSEN] = ' '.join(flags)
  return os.environ[_CHOSEN]


def env_without(flags: list[str], **extra: str) -> dict[str, str]:
  """This process's environment less the XLA `flags`, in XLA_FLAGS and in the
  run's choice (so that a child pytest does not add them back), plus `extra`."""

  def kept(value: str) -> str:
    return ' '.join(f for f in value.split() if f not in flags)

  env = {
    _CHOSEN: kept(fast_compile()),
    'XLA_FLAGS': kept(os.environ.get('XLA_FLAGS', '')),
  }
  return {**os.environ, **env, **extra}


def optimised_env(**extra: str) -> dict[str, str]:
  """This process's environment less `fast_compile()`'s flags, plus `extra`."""
  return env_without(fast_compile().split(), **extra)


def default_run(experiment: str, workdir) -> dict:
  """`python experiments/<experiment>.py --workdir=...` as a user runs it (no
  flags, XLA's optimised code: the steps, not the compilation, are a default
  run's cost); its summary.json."""
  run = subprocess.run(
    [sys.executable, f'experiments/{experiment}.py', f'--workdir={workdir}'],
    cwd=ROOT, env=optimised_env(PYTHONPATH=ROOT), capture_output=True, text=True,
    timeout=600,
  )  # fmt: skip
  assert run.returncode == 0, run.stderr[-3000:]
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)
