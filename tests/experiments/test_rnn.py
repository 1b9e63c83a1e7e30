import json
import math
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import rnn as rnn_experiment  # noqa: E402

from nkjax.models import rnn  # noqa: E402
from nkjax.train import optim, steps  # noqa: E402
from nkjax.train import state as state_lib  # noqa: E402

from ..figures import assert_readable, record  # noqa: E402


def test_char_lm_smoke_then_sampling_from_its_checkpoint(tmp_path):
  config = rnn_experiment.get_config('smoke')
  summary = rnn_experiment.main(config, str(tmp_path / 'lm'))
  ev = summary['eval']
  assert ev['bits_per_char'] == pytest.approx(ev['loss'] / math.log(2))
  assert ev['perplexity'] == pytest.approx(math.exp(ev['loss']))
  assert ev['bits_per_char'] < math.log2(
    summary['vocab_size']
  )  # better than uniform after 10 steps
  assert (tmp_path / 'lm' / 'samples.txt').read_text().startswith(config.prompt)

  sample = rnn_experiment.get_config('sample')
  sample.update(
    {
      'checkpoint_dir': str(tmp_path / 'lm'),
      'prompt': 'for ',
      'temperature': 0.0,
      'sample_length': 12,
    }
  )
  first = rnn_experiment.main(sample, str(tmp_path / 's1'))
  again = rnn_experiment.main(sample, str(tmp_path / 's2'))
  assert first['step'] == config.num_steps
  assert first['sample'] == again['sample'] and first['sample'].startswith('for ')
  assert len(first['sample']) == len('for ') + 12


def test_sampling_without_a_trained_run_is_a_clear_error(tmp_path):
  config = rnn_experiment.get_config('sample')
  config.checkpoint_dir = str(tmp_path / 'nothing')
  with pytest.raises(ValueError, match='no finished char_lm run in .*train one first'):
    rnn_experiment.main(config, str(tmp_path / 'out'))


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary_size():
  model = rnn.CharLM(vocab_size=17, embed=4, features=8)
  tx = optim.make_optimizer(name='sgd', learning_rate=0.1)
  state = state_lib.create(
    model=model, tx=tx, rng=jax.random.key(0), inputs=(np.zeros((1, 5), np.int32),)
  )
  params = dict(state.params)
  params['Dense_0'] = jax.tree.map(np.zeros_like, params['Dense_0'])  # all logits 0
  state = state.replace(params=params)
  batch = {
    'tokens': np.random.default_rng(0).integers(0, 17, (4, 9)).astype(np.int32),
    'mask': np.ones(4, np.float32),
  }
  loss_sum, count = steps.lm_eval_step(state, batch)['loss']
  assert float(count) == 4 * 8
  assert math.exp(float(loss_sum) / float(count)) == pytest.approx(17, rel=1e-5)


def test_sequential_digits_are_learned_by_every_cell(tmp_path):
  config = rnn_experiment.get_config('seq_digits')
  config.update({'num_steps': 150, 'features': 32, 'eval_every': 0})
  results = rnn_experiment.main(config, str(tmp_path))['results']
  assert set(results) == {'rnn', 'lstm', 'gru'}
  assert all(r['test_accuracy'] > 0.5 for r in results.values())


def test_gradient_through_time_vanishes_fastest_without_gates_of_memory(
  tmp_path, monkeypatch
):
  figures = record(monkeypatch)
  config = rnn_experiment.get_config('vanishing')
  norms = {
    c: np.array(n)
    for c, n in rnn_experiment.main(config, str(tmp_path))['gradient_norms'].items()
  }
  # k = 0: dL/dh_T is the readout v for every cell.
  assert (
    norms['rnn'][0] == pytest.approx(norms['lstm'][0]) == pytest.approx(norms['gru'][0])
  )
  for n in norms.values():
    assert (
      n[40] < 1e-3 * n[0]
    )  # every cell's gradient decays over 40 steps at initialisation
  assert (
    norms['lstm'][40] > 10 * norms['rnn'][40]
  )  # the LSTM's cell state carries it further
  assert (tmp_path / 'vanishing.png').exists()
  assert_readable(figures['vanishing.png'], run=tmp_path.name)
  assert figures['vanishing.png']['axes'][0]['legend'] == ['rnn', 'lstm', 'gru']


def test_sentiment_pipeline_on_mocked_imdb(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  config = rnn_experiment.get_config('sentiment')
  config.update(
    {
      'num_steps': 4,
      'batch_size': 8,
      'eval_batch_size': 16,
      'features': 8,
      'embed': 8,
      'max_len': 20,
      'log_every': 2,
      'eval_every': 4,
      'checkpoint_every': 4,
    }
  )
  with tfds.testing.mock_data(num_examples=24):
    summary = rnn_experiment.main(config, str(tmp_path))
  # A share of the 24 real reviews: padding rows of the last batch never count.
  correct = summary['eval']['accuracy'] * 24
  assert correct == pytest.approx(round(correct), abs=1e-6)
  assert summary['vocab_size'] > 2 and summary['train_reviews'] == 24
  assert json.loads((tmp_path / 'summary.json').read_text())['test_reviews'] == 24


def test_tiny_shakespeare_is_read_through_tfds(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  pytest.importorskip('tensorflow')
  from nkjax.data import text

  with tfds.testing.mock_data(num_examples=1):
    train = text.tfds_text('tiny_shakespeare', 'train', data_dir=None)
  assert isinstance(train, str) and train
  # The experiment takes whatever text the loader returns, train and validation.
  corpus = {
    'train': 'to be or not to be, that is the question. ' * 20,
    'validation': 'whether tis nobler in the mind. ' * 10,
  }
  monkeypatch.setattr(text, 'tfds_text', lambda name, split, data_dir: corpus[split])
  config = rnn_experiment.get_config('smoke')
  config.update({'corpus': 'tiny_shakespeare', 'prompt': 'to be', 'seq_len': 16})
  summary = rnn_experiment.main(config, str(tmp_path))
  assert summary['corpus'] == 'tiny_shakespeare' and summary['vocab_size'] == len(
    set(corpus['train'] + corpus['validation'])
  )
