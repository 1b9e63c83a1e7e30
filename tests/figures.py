"""Reading a matplotlib figure's words (titles, labels, legends), not its pixels."""

import os

from nkjax import viz


def describe(fig) -> dict:
  """Titles, axis labels, legends and colour bars of `fig`, as plain data."""
  axes, colorbars = [], []
  for ax in fig.axes:
    if getattr(ax, '_colorbar', None) is not None:
      colorbars.append(ax.get_ylabel() or ax.get_xlabel())
      continue
    legend = ax.get_legend()
    series = [
      a
      for a in (*ax.lines, *ax.collections, *ax.containers)
      if not str(a.get_label()).startswith('_')
    ]
    axes.append(
      {
        'title': ax.get_title(),
        'xlabel': ax.get_xlabel(),
        'ylabel': ax.get_ylabel(),
        'axis_on': ax.axison,
        'plots': bool(ax.lines or ax.containers or ax.collections),
        'images': len(ax.images),
        'texts': [t.get_text() for t in ax.texts],
        'series': len(series),
        'legend': [t.get_text() for t in legend.get_texts()] if legend else [],
      }
    )
  suptitle = fig.get_suptitle()
  return {'suptitle': suptitle, 'axes': axes, 'colorbars': colorbars}


def assert_readable(d: dict, *, run: str) -> None:
  """The claims every figure makes: a title naming the run; on every plot
  (not an image) both axes labelled; a legend wherever several series are drawn."""
  titles = [d['suptitle'], *(a['title'] for a in d['axes'])]
  assert any(run in t for t in titles), (run, titles)
  for a in d['axes']:
    if a['axis_on'] and a['plots'] and not a['images']:
      assert a['xlabel'] and a['ylabel'], a
    if a['series'] > 1:
      assert len(a['legend']) == a['series'], a


def record(monkeypatch) -> dict:
  """Every figure an experiment saves through `viz.save_figure`, described, by file name."""
  seen = {}
  save = viz.save_figure

  def recording(fig, path, **kwargs):
    seen[os.path.basename(path)] = describe(fig)
    return save(fig, path, **kwargs)

  monkeypatch.setattr(viz, 'save_figure', recording)
  return seen
