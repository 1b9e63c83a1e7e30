import io
import logging

from nkjax.train import writers


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_draws_a_bar_with_rate_on_a_terminal():
  stream = _Terminal()
  progress = writers.Progress(total=10, initial=0, stream=stream)
  progress.update(5)
  progress.log('step 5: train/loss=1')
  progress.close()
  out = stream.getvalue()
  assert '5/10' in out and 'step/s' in out and 'step 5: train/loss=1' in out


def test_progress_logs_rate_and_eta_when_not_a_terminal(caplog):
  stream = io.StringIO()
  progress = writers.Progress(total=10, initial=2, stream=stream)
  progress.update(6)
  with caplog.at_level(logging.INFO):
    progress.log('step 6: train/loss=1')
  progress.close()
  assert stream.getvalue() == ''  # no bar
  assert any(
    'step 6: train/loss=1' in r.getMessage() and 'steps/s, ETA' in r.getMessage()
    for r in caplog.records
  )


def test_summary_is_replaced_atomically(tmp_path):
  writers.write_summary(str(tmp_path), {'a': 1})
  writers.write_summary(str(tmp_path), {'a': 2})
  assert (tmp_path / 'summary.json').read_text().count('"a": 2') == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ['summary.json']
