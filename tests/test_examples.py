"""The examples of docs/library.md ("Using nkjax in your own code") run and hold their claims.

Each example asserts its own result (an accuracy floor, a SciPy reference, a
closed form); run here in-process on the 8 fake devices of conftest.
"""

import os
import re
import runpy
import sys

import pytest

EXAMPLES = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples'
)
NAMES = ('custom_optax_loop.py', 'fit_custom_step.py', 'ops_and_metrics.py')


def test_the_readme_names_every_example():
  with open(os.path.join(EXAMPLES, '..', 'README.md')) as f:
    readme = f.read()
  for name in NAMES:
    assert f'examples/{name}' in readme, name
  assert sorted(n for n in os.listdir(EXAMPLES) if n.endswith('.py')) == sorted(NAMES)


@pytest.mark.parametrize('name', NAMES)
def test_example_runs(name, tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, 'argv', [name, str(tmp_path / 'run')])
  runpy.run_path(os.path.join(EXAMPLES, name), run_name='__main__')
  assert capsys.readouterr().out.strip()  # each example reports its figure


def test_the_library_page_blocks_are_the_example_files_verbatim():
  with open(os.path.join(EXAMPLES, '..', 'docs', 'library.md')) as f:
    readme = f.read()
  blocks = re.findall(
    r'<!-- example: examples/(\S+) .*?-->\n```python\n(.*?)```\n', readme, re.S
  )
  assert sorted(name for name, _ in blocks) == sorted(NAMES)
  for name, code in blocks:
    with open(os.path.join(EXAMPLES, name)) as f:
      assert code == f.read(), f'docs/library.md block of {name} differs from the file'
