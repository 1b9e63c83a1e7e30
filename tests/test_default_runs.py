"""tools/default_runs.py: a chapter's command timed whole, its figures read back
from its run (the default runs themselves take minutes: the tool is run by
hand, `python tools/default_runs.py`)."""

import importlib.util
import json
import os

import pytest

from nkjax import launch

_PATH = os.path.join(os.path.dirname(__file__), '..', 'tools', 'default_runs.py')
_spec = importlib.util.spec_from_file_location('default_runs', _PATH)
default_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(default_runs)


@pytest.mark.slow
def test_a_run_is_timed_whole_and_reports_the_figures_it_closed_with(tmp_path):
  workdir = tmp_path / 'mlp'
  row = default_runs.run_one('mlp', str(workdir), preset='smoke')
  summary = json.loads((workdir / 'summary.json').read_text())
  # The process's time holds the run's own training time and more (start-up,
  # compilation, evaluation).
  assert row['train_seconds'] == summary['wall_seconds'] < row['seconds']
  accuracy = f'accuracy {summary["eval"]["accuracy"]:.4f}'
  assert any(line.startswith('eval: ') and accuracy in line for line in row['figures'])
  assert row['figures'] == [
    line for line in launch.closing_lines(str(workdir))[1:] if 'tensorboard' not in line
  ]
  assert row['command'] == (
    f'python experiments/mlp.py --workdir={workdir} --config=experiments/mlp.py:smoke'
  )


def test_an_unknown_chapter_lists_the_experiments(tmp_path):
  with pytest.raises(SystemExit, match=r"no experiment 'lenet'; valid choices: .*cnn"):
    default_runs.run_one('lenet', str(tmp_path / 'x'))
  assert not (tmp_path / 'x').exists()


def test_main_prints_the_machine_header_then_a_row_a_chapter(
  tmp_path, monkeypatch, capsys
):
  workdirs = []

  def fake(chapter, workdir, preset, cache_dir):
    workdirs.append(workdir)
    assert os.path.dirname(cache_dir) == os.path.dirname(workdir)  # a cache a row
    return {'chapter': chapter, 'command': chapter, 'seconds': 12.5,
            'train_seconds': 7.31 if chapter == 'cnn' else None,
            'figures': [f'{chapter} figure', 'second'], 'load_after': 0.5}  # fmt: skip

  monkeypatch.setattr(default_runs, 'run_one', fake)
  out = tmp_path / 'rows.json'
  rows = default_runs.main(['cnn', 'sr', 'cnn', '--out', str(out)])
  # A chapter named twice runs twice, each in a folder of its own.
  assert len(set(workdirs)) == 3
  text = capsys.readouterr().out
  assert text.startswith('# cpu: ') and '# date: ' in text and 'commit ' in text
  assert '| cnn | 12.5 | 7.3 | cnn figure; second | 0.5 |' in text
  assert '| sr | 12.5 |  | sr figure; second | 0.5 |' in text
  assert json.loads(out.read_text()) == rows
  assert [r['chapter'] for r in rows] == ['cnn', 'sr', 'cnn']
  assert '# compilation cache: cold' in text


def test_warm_runs_each_chapter_once_untimed_into_the_cache_it_then_times(
  tmp_path, monkeypatch, capsys
):
  calls = []

  def fake(chapter, workdir, preset, cache_dir):
    calls.append((workdir, cache_dir))
    return {'chapter': chapter, 'command': chapter, 'seconds': 1.0,
            'train_seconds': None, 'figures': [], 'load_after': 0.5}  # fmt: skip

  monkeypatch.setattr(default_runs, 'run_one', fake)
  rows = default_runs.main(['cnn', 'sr', '--warm'])
  assert '# compilation cache: warm' in capsys.readouterr().out
  assert len(rows) == 2 and len(calls) == 4
  (first_cnn, cnn), (first_sr, sr) = calls[:2], calls[2:]
  assert first_cnn[1] == cnn[1] != sr[1] == first_sr[1]  # a cache a chapter
  assert first_cnn[0] != cnn[0] and first_sr[0] != sr[0]  # not a resume
