"""The Colab notebook runs top to bottom on a CPU, installed from this checkout.

nbclient executes it in a fresh kernel that inherits this process's
environment (8 fake CPU devices, see conftest), with the notebook's smoke
parameter: a few steps of every chapter.
"""

import json
import os
import re

import pytest

import nkjax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, nkjax.NOTEBOOK)


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


def test_notebook_runs_every_chapter_on_a_cpu(tmp_path, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  import nbformat

  monkeypatch.setenv('NKJAX_CHECKOUT', ROOT)
  monkeypatch.setenv('NKJAX_NOTEBOOK_SMOKE', '1')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(
    nb,
    timeout=300,
    kernel_name='python3',
    resources={'metadata': {'path': str(tmp_path)}},
  ).execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  text = ''.join(o.get('text', '') for o in outputs if o['output_type'] == 'stream')
  # Installed from the checkout into a folder of its own, not this environment's copy.
  installed = re.search(r'nkjax \S+ from (\S+)', text).group(1)
  assert 'nkjax_site_' in installed and os.path.commonpath([installed, ROOT]) != ROOT
  assert '8 devices in the data mesh; compute dtype float32' in text
  # Every chapter's picture is shown inline, and the sample continues its prompt.
  pictures = [o for o in outputs if 'image/png' in o.get('data', {})]
  # The confusion matrix, the cGAN grid, the SR side-by-side and the detections.
  assert len(pictures) == 4
  assert re.search(r'^The for statement.{200}', text, re.M | re.S)
  # SR: bicubic and the model scored on the same test photograph, as PSNR in dB.
  psnr = dict(re.findall(r'x4 +(bicubic|SRResNet): PSNR-Y (\d+\.\d+) dB', text))
  assert set(psnr) == {'bicubic', 'SRResNet'} and 10 < float(psnr['bicubic']) < 60
  # Detection: a mean AP, a fraction, over the test images.
  (map07,) = re.findall(r'VOC mAP@0\.5 on 8 test images: (\d\.\d+) \(11-point\)', text)
  assert 0 <= float(map07) <= 1
  for run in ('lenet5', 'char_lm', 'cgan', 'srresnet', 'faster_rcnn', 'cli-mlp'):
    assert (tmp_path / 'runs' / 'notebook' / run / 'summary.json').exists(), run
