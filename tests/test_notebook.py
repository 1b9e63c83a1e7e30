"""The Colab notebook runs top to bottom on a CPU, from this checkout, without TensorFlow.

nbclient executes it in a fresh kernel of this interpreter that inherits this
process's environment (the fake CPU devices of conftest), with the notebook's
smoke parameter: a few steps of every chapter. `NKJAX_CHECKOUT` makes the
install cell import nkjax from the checkout in place (nothing is built); the
environment already has the dependencies the cell's `pip install` would bring,
and `test_a_plain_install_brings_no_tensorflow` checks that they exclude
TensorFlow, as on Colab's TPU runtimes, which no longer ship it.
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys

import jax
import pytest

import nkjax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, nkjax.NOTEBOOK)

# Stands in for an uninstalled TensorFlow, and logs who asked for it.
NO_TENSORFLOW = """import os, traceback
with open(os.environ['NKJAX_TF_IMPORT_LOG'], 'a') as f:
  f.write(''.join(traceback.format_stack()) + '\\n')
raise ModuleNotFoundError("No module named 'tensorflow'", name='tensorflow')
"""


def _cells():
  with open(NOTEBOOK) as f:
    return json.load(f)['cells']


def test_badge_and_install_are_built_from_the_one_repository_path():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  colab = re.findall(r'https://colab\.research\.google\.com/github/[^)\s]+', readme)
  assert colab == [nkjax.colab_url()]
  (parameters,) = [c for c in _cells() if 'parameters' in c['metadata'].get('tags', [])]
  assert f"REPOSITORY = '{nkjax.REPOSITORY}'" in ''.join(parameters['source'])
  # The notebook's own badge opens itself.
  assert nkjax.colab_url() in ''.join(_cells()[0]['source'])


def _requirements(section):
  """`install_requires` of setup.cfg (`section` None) or one extra's, as
  packaging Requirements whose markers hold for this interpreter."""
  from packaging.requirements import Requirement

  lines, inside = [], False
  with open(os.path.join(ROOT, 'setup.cfg')) as f:
    for line in f:
      key = line.split('=')[0].strip()
      if not line.startswith((' ', '\t', '#')) and line.strip():
        inside = key == (section or 'install_requires')
        continue
      if inside and line.strip() and not line.strip().startswith('#'):
        lines.append(line.strip())
  reqs = [Requirement(line) for line in lines]
  return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def _closure(requirements):
  """Every distribution pip installs for `requirements` (no extras), read from
  this environment's installed metadata: lower-case names."""
  from packaging.requirements import Requirement

  seen, todo = set(), [r.name for r in requirements]
  while todo:
    name = todo.pop().lower().replace('_', '-')
    if name in seen:
      continue
    seen.add(name)
    for line in importlib.metadata.requires(name) or ():
      req = Requirement(line)
      if req.marker is None or req.marker.evaluate({'extra': ''}):
        todo.append(req.name)
  return seen


def test_a_plain_install_brings_no_tensorflow():
  # The install cell's `pip install nkjax` (no extras), as Colab runs it.
  deps = _closure(_requirements(None))
  assert {'jax', 'flax', 'tensorflow-datasets'} <= deps  # the walk reaches them
  # (tensorflow-metadata, which TFDS brings, is protocol buffers, not TensorFlow.)
  assert not deps & {'tensorflow', 'tensorflow-cpu', 'tensorflow-intel', 'tf-nightly'}
  # ...while the tfds extra does bring it: the walk can see TensorFlow.
  assert 'tensorflow' in _closure(_requirements('tfds'))


def test_notebook_runs_every_chapter_on_a_cpu_without_tensorflow(tmp_path, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  import nbformat

  blocker = tmp_path / 'no_tensorflow' / 'tensorflow'
  blocker.mkdir(parents=True)
  (blocker / '__init__.py').write_text(NO_TENSORFLOW)
  log = tmp_path / 'tensorflow_imports.log'
  pythonpath = [str(blocker.parent), os.environ.get('PYTHONPATH', '')]
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(p for p in pythonpath if p))
  monkeypatch.setenv('NKJAX_TF_IMPORT_LOG', str(log))
  # The stand-in works: importing TensorFlow fails, and is logged.
  probe = subprocess.run([sys.executable, '-c', 'import tensorflow'], check=False)
  assert probe.returncode == 1 and log.exists()
  log.unlink()

  monkeypatch.setenv('NKJAX_CHECKOUT', ROOT)
  monkeypatch.setenv('NKJAX_NOTEBOOK_SMOKE', '1')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(
    nb,
    timeout=300,
    kernel_name='python3',
    resources={'metadata': {'path': str(tmp_path)}},
  ).execute()
  # No chapter, and not the command-line run, asked for TensorFlow.
  assert not log.exists(), log.read_text()[-3000:]
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  text = ''.join(o.get('text', '') for o in outputs if o['output_type'] == 'stream')
  # The checkout's nkjax, in place.
  installed = re.search(r'nkjax \S+ from (\S+)', text).group(1)
  assert installed == os.path.join(ROOT, 'nkjax')
  assert f'{jax.device_count()} devices in the data mesh; compute dtype float32' in text
  # Every chapter's picture is shown inline, and the sample continues its prompt.
  pictures = [o for o in outputs if 'image/png' in o.get('data', {})]
  # The confusion matrix, the cGAN grid, the SR side-by-side and the detections.
  assert len(pictures) == 4
  assert re.search(r'^The for statement.{200}', text, re.M | re.S)
  # SR: bicubic and the model scored on the same test photograph, as PSNR in dB.
  psnr = dict(re.findall(r'x4 +(bicubic|SRResNet): PSNR-Y (\d+\.\d+) dB', text))
  assert set(psnr) == {'bicubic', 'SRResNet'} and 10 < float(psnr['bicubic']) < 60
  # Detection: four steps find some objects (0.015 measured); an evaluation that
  # matched no box, or boxes in the wrong coordinates, would score 0.
  (map07,) = re.findall(r'VOC mAP@0\.5 on 8 test images: (\d\.\d+) \(11-point\)', text)
  assert float(map07) > 0.005
  for run in ('lenet5', 'char_lm', 'cgan', 'srresnet', 'faster_rcnn', 'cli-mlp'):
    assert (tmp_path / 'runs' / 'notebook' / run / 'summary.json').exists(), run
