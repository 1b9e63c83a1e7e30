"""Recurrent networks: a character language model, sentiment, sequential digits, vanishing gradients.

  python experiments/rnn.py                                         # char_lm on pydoc_data
  python experiments/rnn.py --config=experiments/rnn.py:sample --config.prompt='The for statement'
  python experiments/rnn.py --config=experiments/rnn.py:seq_digits
  python experiments/rnn.py --config=experiments/rnn.py:vanishing
  python experiments/rnn.py --config=experiments/rnn.py:sentiment   # needs TFDS imdb_reviews
  python experiments/rnn.py --config.corpus=tiny_shakespeare        # needs TFDS tiny_shakespeare

Each task writes summary.json (and checkpoints, metrics, pictures) into --workdir
(default runs/rnn-<preset>).
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from nkjax import launch, validate, viz
from nkjax.data import batching, images, text
from nkjax.errors import UserError, choose
from nkjax.models import rnn
from nkjax.train import classify, loop, optim, restore, sharding, steps, writers
from nkjax.train import state as state_lib

# default: the char_lm task.
PRESETS = (
  'default',
  'char_lm',
  'sample',
  'sentiment',
  'seq_digits',
  'vanishing',
  'smoke',
)
CORPORA = ('pydoc', 'tiny_shakespeare')
# The launcher's default --workdir where it is not runs/rnn-<preset>.
DEFAULT_WORKDIRS = {'sample': 'runs/rnn'}
CHECKS = {
  **validate.TRAINING,
  'features': validate.count,
  'num_layers': validate.count,
  'embed': validate.count,
  'seq_len': validate.count,
  'temperature': validate.positive_number(),
  'sample_length': validate.count,
  'vocab_size': validate.count,
  'max_len': validate.count,
}

# What each config field means (the launcher's --help); one line each.
DESCRIPTIONS = {
  **optim.DESCRIPTIONS,
  'task': 'char_lm, sample, sentiment, seq_digits or vanishing',
  'seed': 'the root random seed: same seed, same run',
  'data_dir': 'where TFDS keeps its datasets; None: its default',
  'cell': 'the recurrent cell: rnn, lstm or gru',
  'features': "the cell's hidden-state size",
  'num_layers': 'stacked recurrent layers',
  'batch_size': 'training sequences per step, over all devices',
  'eval_batch_size': 'sequences per evaluation batch',
  'num_steps': 'training steps',
  'log_every': 'steps between training-metric lines',
  'eval_every': 'steps between evaluations; 0: only at the end',
  'checkpoint_every': 'steps between checkpoints; 0: only at the end',
  'divergence_factor': 'stop when the loss passes this multiple of its first value; 0: never',
  'corpus': 'the text: pydoc (offline) or tiny_shakespeare (TFDS)',
  'embed': 'the token embedding size',
  'seq_len': 'characters (time steps) per training sequence',
  'prompt': 'the text sampling starts from',
  'temperature': 'sampling temperature: below 1 sharper, above 1 flatter',
  'sample_length': 'characters sampled',
  'checkpoint_dir': 'sample: the char_lm run to sample from; None: --workdir',
  'vocab_size': 'sentiment: the most frequent words kept, the rest unknown',
  'max_len': 'sentiment: words per review kept (padded or cut)',
  'bidirectional': 'sentiment: read the review both ways',
  'train_subset': 'sentiment: train on the first N reviews only; None: all',
  'cells': 'seq_digits, vanishing: the cells compared',
}


def get_config(preset: str = 'default') -> ml_collections.ConfigDict:
  choose('preset', preset, PRESETS)
  c = ml_collections.ConfigDict()
  c.task = 'char_lm' if preset in ('default', 'smoke') else preset
  c.seed = 0
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.cell = 'lstm'
  c.features = 256
  c.num_layers = 1
  # Exploding gradients: clip the global norm.
  c.update(
    optim.default_fields(
      optimizer='adam', learning_rate=3e-3, schedule='cosine', grad_clip_norm=1.0
    )
  )
  c.batch_size = 64
  c.eval_batch_size = 128
  c.num_steps = 1500
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.divergence_factor = 1000.0  # stop when the loss passes this x its first; 0: never
  if c.task in ('char_lm', 'sample'):
    c.corpus = 'pydoc'  # or 'tiny_shakespeare' (TFDS)
    c.embed = 64
    c.seq_len = 64
    c.prompt = 'The '
    c.temperature = 0.8
    c.sample_length = 300
  if preset == 'sample':
    # The char_lm run to sample from; None: the --workdir itself, whose default
    # for this preset is the default char_lm run's (DEFAULT_WORKDIRS).
    c.checkpoint_dir = ml_collections.config_dict.placeholder(str)
  elif preset == 'smoke':
    c.features = 32
    c.seq_len = 32
    c.num_steps = 10
    c.log_every = 5
    c.eval_every = 10
    c.checkpoint_every = 10
    c.sample_length = 20
  elif preset == 'sentiment':
    c.vocab_size = 10_000
    c.max_len = 256
    c.embed = 64
    c.features = 128
    c.bidirectional = True
    c.train_subset = ml_collections.config_dict.placeholder(int)
  elif preset == 'seq_digits':
    c.cells = ('rnn', 'lstm', 'gru')
    c.features = 64
    c.num_steps = 1000
    c.eval_every = 500
    c.checkpoint_every = 0
  elif preset == 'vanishing':
    c.cells = ('rnn', 'lstm', 'gru')
    c.features = 64
    c.seq_len = 60
    c.batch_size = 16
  return c


def _tx(config):
  return optim.build(num_steps=config.num_steps, **optim.fields(config))


def _lm_model(config, vocab_size):
  return rnn.CharLM(
    vocab_size=vocab_size,
    embed=config.embed,
    cell=config.cell,
    features=config.features,
    num_layers=config.num_layers,
  )


def _with_rates(metrics: dict) -> dict:
  """Adds bits per character and perplexity to a mean per-token loss in nats."""
  return {
    **metrics,
    'bits_per_char': metrics['loss'] / math.log(2),
    'perplexity': math.exp(metrics['loss']),
  }


def _corpus(config) -> tuple[str, str]:
  choose('corpus', config.corpus, CORPORA)
  if config.corpus == 'pydoc':
    corpus = text.pydoc_corpus()
    cut = int(0.9 * len(corpus))  # the first 90% trains, the last 10% validates
    return corpus[:cut], corpus[cut:]
  return (
    text.tfds_text('tiny_shakespeare', s, data_dir=config.data_dir)
    for s in ('train', 'validation')
  )


def _sample_text(model, params, vocab, config, rng) -> str:
  generate = jax.jit(
    functools.partial(
      rnn.generate, model, length=config.sample_length, temperature=config.temperature
    )
  )
  tokens = generate(params, jnp.asarray(vocab.encode(config.prompt)), rng=rng)
  return config.prompt + vocab.decode(np.asarray(tokens))


def _process_rows() -> dict:
  return {'process_index': jax.process_index(), 'process_count': jax.process_count()}


def _lm_summary(state, model, vocab, data, workdir, config, rng) -> dict:
  """The char_lm run's own figures, and a sample written beside them."""
  sample = _sample_text(model, jax.device_get(state.params), vocab, config, rng)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'samples.txt'), 'w') as f:
      f.write(sample + '\n')
  return {
    'corpus': config.corpus,
    'train_chars': data.num_train,
    'val_chars': data.num_test,
    'vocab_size': len(vocab),
    'sample': sample,
  }


def run_char_lm(config, workdir):
  mesh = sharding.data_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh)
  train_text, val_text = _corpus(config)
  vocab = text.CharVocab(train_text + val_text)
  train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)
  if not config.prompt:
    raise UserError('--config.prompt must have at least one character')
  vocab.encode(config.prompt)
  data = text.windows(
    config.corpus, train_ids, val_ids, seq_len=config.seq_len,
    batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
    seed=config.seed, vocab_size=len(vocab), **_process_rows(),
  )  # fmt: skip
  model = _lm_model(config, len(vocab))
  params_rng, rng, sample_rng = jax.random.split(jax.random.key(config.seed), 3)
  state = state_lib.create(
    model=model,
    tx=_tx(config),
    rng=params_rng,
    inputs=(jnp.zeros((1, config.seq_len), jnp.int32),),
  )
  evaluate = loop.make_evaluator(steps.lm_eval_step, data.eval_batches, mesh=mesh)
  os.makedirs(workdir, exist_ok=True)
  vocab.save(os.path.join(workdir, 'vocab.json'))
  result = loop.fit(
    state=state,
    train_step=steps.lm_train_step,
    train_batches=data.train_batches,
    num_steps=config.num_steps,
    workdir=workdir,
    rng=rng,
    mesh=mesh,
    examples_per_step=config.batch_size * config.seq_len,  # tokens
    eval_fn=lambda s: _with_rates(evaluate(s)),
    eval_every=config.eval_every,
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    best_metric='loss',
    best_mode='min',
    loss_unit='nats per character',
    config=config.to_dict(),
    divergence_factor=config.divergence_factor,
    summarize=lambda state: _lm_summary(
      state, model, vocab, data, workdir, config, sample_rng
    ),
  )
  summary = result.summary
  print(
    f'\nvalidation: {summary["eval"]["bits_per_char"]:.3f} bits per character, perplexity {summary["eval"]["perplexity"]:.2f}'
  )
  print(f'sample (temperature {config.temperature}):\n{summary["sample"]}')
  return summary


def run_sample(config, workdir):
  """Samples from the latest checkpoint of a char_lm run, with its own model config.

  The run is `config.checkpoint_dir`, or `workdir` itself when that is None; the
  sample goes to `workdir/summary.json`, or to `workdir/sample.json` when the
  run is in `workdir` (its own summary.json stays untouched).
  """
  source = config.checkpoint_dir or workdir
  where = (
    f'--config.checkpoint_dir={source}'
    if config.checkpoint_dir
    else f'--workdir={source}'
  )
  paths = {name: os.path.join(source, name) for name in ('summary.json', 'vocab.json')}
  if not all(os.path.exists(p) for p in paths.values()):
    raise UserError(
      f'no finished char_lm run in {source} ({where}): train one first '
      f'(python experiments/rnn.py --workdir={source}) or name the folder of one '
      'with --workdir or --config.checkpoint_dir'
    )
  run = restore.restore(source, experiment='rnn', option=where.partition('=')[0])
  trained = ml_collections.ConfigDict(run.config)
  vocab = text.CharVocab.load(paths['vocab.json'])
  model = _lm_model(trained, len(vocab))
  _, sample_rng = jax.random.split(jax.random.key(config.seed))
  state = restore.inference_state(
    model, run, inputs=(jnp.zeros((1, trained.seq_len), jnp.int32),)
  )
  step = run.step
  sample = _sample_text(model, state.params, vocab, config, sample_rng)
  print(
    f'checkpoint step {step} of {source}, temperature {config.temperature}:\n{sample}'
  )
  os.makedirs(workdir, exist_ok=True)
  summary = {
    'task': 'sample',
    'checkpoint': source,
    'step': step,
    'prompt': config.prompt,
    'temperature': config.temperature,
    'sample': sample,
  }
  if os.path.abspath(source) == os.path.abspath(workdir):
    with open(os.path.join(workdir, 'sample.json'), 'w') as f:
      json.dump(writers.strict_json(summary), f, indent=2)
  else:
    writers.write_summary(workdir, summary)
  return summary


def _fit_classifier(config, model, data, workdir, inputs, summarize=None):
  mesh = sharding.data_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh)
  return classify.fit(
    model=model, data=data, tx=_tx(config), mesh=mesh, workdir=workdir, num_steps=config.num_steps,
    batch_size=config.batch_size, seed=config.seed, inputs=inputs, log_every=config.log_every,
    eval_every=config.eval_every, checkpoint_every=config.checkpoint_every, config=config.to_dict(),
    divergence_factor=config.divergence_factor,
    summarize=summarize,
  )  # fmt: skip


def run_sentiment(config, workdir):
  import tensorflow_datasets as tfds

  from nkjax.data import tfds_loader

  b = tfds_loader.builder(
    'imdb_reviews',
    data_dir=config.data_dir,
    offline_hint='the other presets of experiments/rnn.py work offline',
  )
  split = 'train' if config.train_subset is None else f'train[:{config.train_subset}]'
  raw = {
    s: list(tfds.as_numpy(b.as_dataset(split=name, shuffle_files=False)))
    for s, name in (('train', split), ('test', 'test'))
  }
  texts = {s: [ex['text'].decode('utf-8') for ex in rows] for s, rows in raw.items()}
  vocab = text.WordVocab(
    texts['train'], size=config.vocab_size
  )  # from the training split only
  arrays = {
    s: {
      **vocab.encode(texts[s], max_len=config.max_len),
      'label': np.array([ex['label'] for ex in raw[s]], np.int32),
    }
    for s in raw
  }
  data = batching.from_arrays(
    'imdb_reviews', arrays['train'], arrays['test'], batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size, seed=config.seed, num_classes=2,
    **_process_rows(),
  )  # fmt: skip
  model = rnn.SequenceClassifier(
    num_classes=2,
    vocab_size=len(vocab),
    embed=config.embed,
    cell=config.cell,
    features=config.features,
    num_layers=config.num_layers,
    bidirectional=config.bidirectional,
  )
  result = _fit_classifier(
    config, model, data, workdir, inputs=('tokens', 'length'),
    summarize=lambda state: {
      'vocab_size': len(vocab), 'train_reviews': len(texts['train']),
      'test_reviews': len(texts['test']),
    },
  )  # fmt: skip
  print(
    f'\n{config.cell} sentiment on {len(texts["train"])} reviews: test accuracy {result.summary["eval"]["accuracy"]:.4f}'
  )
  return result.summary


def run_seq_digits(config, workdir):
  data = images.load(
    'digits',
    batch_size=config.batch_size,
    eval_batch_size=config.eval_batch_size,
    seed=config.seed,
    **_process_rows(),
  )
  table = {}
  for cell in config.cells:
    choose('cell', cell, rnn.CELLS)
  for cell in config.cells:
    model = rnn.SequenceClassifier(
      num_classes=10, cell=cell, features=config.features, num_layers=config.num_layers
    )
    result = _fit_classifier(
      config, model, data, os.path.join(workdir, cell), inputs=('image',)
    )
    table[cell] = {
      'test_accuracy': result.summary['eval']['accuracy'],
      'params': state_lib.num_params(result.state.params),
    }
  print(
    f'\nthe digits read row by row (8 steps of 8 pixels), {config.features} hidden units, {config.num_steps} steps'
  )
  print(f'{"cell":>5} {"params":>7} {"test acc":>9}')
  for cell, r in table.items():
    print(f'{cell:>5} {r["params"]:>7} {r["test_accuracy"]:9.4f}')
  summary = {'task': 'seq_digits', 'results': table, 'config': config.to_dict()}
  writers.write_summary(workdir, summary)
  return summary


def gradient_through_time(
  cell_name: str, *, features: int, seq_len: int, batch_size: int, seed: int
) -> np.ndarray:
  """||dL/dh_{T-k}|| for k = 0..T-1, averaged over a batch, at initialisation.

  L = v . h_T for a fixed random readout v, on random normal inputs.
  """
  cell = rnn.CELLS[cell_name](features)
  k_x, k_p, k_v = jax.random.split(jax.random.key(seed), 3)
  xs = jax.random.normal(k_x, (seq_len, batch_size, features))
  carry = cell.initialize_carry(None, (batch_size, features))
  params = cell.init(k_p, carry, xs[0])['params']
  v = jax.random.normal(k_v, (features,)) / math.sqrt(features)

  def loss(deltas):
    _, carries = rnn.scan_cell(cell, params, xs, carry, deltas)
    return jnp.sum(rnn.hidden(carries)[-1] @ v)

  grads = jax.grad(loss)(jnp.zeros((seq_len, batch_size, features)))
  norms = jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=-1)  # [time]
  return np.asarray(norms[::-1])  # index k: k steps before the last


def run_vanishing(config, workdir):
  for cell in config.cells:
    choose('cell', cell, rnn.CELLS)
  norms = {
    c: gradient_through_time(
      c,
      features=config.features,
      seq_len=config.seq_len,
      batch_size=config.batch_size,
      seed=config.seed,
    )
    for c in config.cells
  }
  marks = [k for k in (0, 5, 10, 20, 40, config.seq_len - 1) if k < config.seq_len]
  print(
    f'||dL/dh_(T-k)|| at initialisation, T = {config.seq_len}, {config.features} units, random inputs'
  )
  print(f'{"cell":>5} ' + ' '.join(f'{"k=" + str(k):>9}' for k in marks))
  for c, n in norms.items():
    print(f'{c:>5} ' + ' '.join(f'{n[k]:9.2e}' for k in marks))
  os.makedirs(workdir, exist_ok=True)
  fig, ax = plt.subplots(figsize=(6, 4))
  for c, n in norms.items():
    ax.semilogy(np.arange(len(n)), n, label=c)
  ax.set_xlabel('k: time steps before the last')
  ax.set_ylabel('||dL/dh_(T-k)|| (log scale)')
  ax.set_title(
    f'{viz.run_name(workdir)}: gradient through time at initialisation\n'
    f'T = {config.seq_len}, {config.features} units, random inputs',
    fontsize=10,
  )
  ax.legend(title='cell')
  viz.save_figure(fig, os.path.join(workdir, 'vanishing.png'))
  summary = {
    'task': 'vanishing',
    'gradient_norms': {c: n.tolist() for c, n in norms.items()},
    'config': config.to_dict(),
  }
  writers.write_summary(workdir, summary)
  return summary


def resumable(config) -> bool:
  """Whether the task trains (and so resumes); the launcher asks."""
  return config.task in ('char_lm', 'sentiment', 'seq_digits')


TASKS = {
  'char_lm': run_char_lm,
  'sample': run_sample,
  'sentiment': run_sentiment,
  'seq_digits': run_seq_digits,
  'vanishing': run_vanishing,
}


def main(config: ml_collections.ConfigDict, workdir: str) -> dict:
  choose('task', config.task, TASKS)
  choose('cell', config.cell, rnn.CELLS)
  return TASKS[config.task](config, workdir)


if __name__ == '__main__':
  launch.run(main)
