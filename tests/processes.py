"""XLA settings of the test processes, and the environment of a process a test
starts to run a recipe at full speed."""

import os

# The tests compile far more than they run: most programs run a few steps. XLA's
# CPU back end (LLVM) at its lowest optimisation level compiles them 2-3 times
# faster and computes the same functions (docs/testing.md); a recipe run whose
# steps are the cost runs in a process without it (`optimised_env`).
FAST_COMPILE = '--xla_backend_optimization_level=0'


def optimised_env(**extra: str) -> dict[str, str]:
  """This process's environment less `FAST_COMPILE`, plus `extra`."""
  flags = [f for f in os.environ.get('XLA_FLAGS', '').split() if f != FAST_COMPILE]
  return {**os.environ, 'XLA_FLAGS': ' '.join(flags), **extra}
