"""The one error type that the launcher reports as a single line."""


class UserError(ValueError):
  """Bad input from the person running nkjax: a name, a value, a missing dataset.

  The message is one line that names the problem and the fix. The launcher prints
  it without a traceback and exits non-zero; library callers can catch it as the
  `ValueError` it is.
  """


def choose(kind: str, name: str, choices) -> None:
  """Raises `UserError` unless `name` is one of `choices`, listing the valid ones."""
  if name not in choices:
    valid = ', '.join(sorted(choices))
    raise UserError(f'unknown {kind} {name!r}; valid choices: {valid}')
