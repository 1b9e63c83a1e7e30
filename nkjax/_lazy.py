"""Submodules imported on first attribute access (PEP 562), for the packages
whose modules pull in heavy dependencies (TensorFlow, orbax, matplotlib,
pycocotools): `import nkjax.data` stays cheap, and `nkjax.data.detection`
works without importing it first.

`tests/test_public_api.py` checks that each package's list names exactly the
modules in its folder.
"""

import importlib
import sys
from collections.abc import Callable, Sequence


def submodules(
  package: str, names: Sequence[str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
  """The module-level `(__getattr__, __dir__)` of `package` that import
  `package.<name>` for each of `names` when first asked for it.

  >>> __getattr__, __dir__ = submodules('nkjax', ('errors',))  # doctest: +SKIP
  """
  names = tuple(names)

  def __getattr__(name: str):
    if name in names:
      return importlib.import_module(f'{package}.{name}')
    raise AttributeError(f'module {package!r} has no attribute {name!r}')

  def __dir__() -> list[str]:
    return sorted(set(vars(sys.modules[package])) | set(names))

  return __getattr__, __dir__
