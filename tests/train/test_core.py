"""The core's extension points: frozen step inputs, warm starts, trainable
subsets, summaries from the experiment, whole-set prediction."""

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from nkjax.data import batching, images
from nkjax.errors import UserError
from nkjax.models.mlp import MLP
from nkjax.train import checkpoint, loop, optim, steps, writers
from nkjax.train import state as state_lib

from .helpers import tiny_run


def _np(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_frozen_input_is_unchanged_absent_from_checkpoints_and_compiles_once(
  mesh, tmp_path
):
  traces = []
  # A frozen linear map of the inputs, as a content loss reads a frozen VGG.
  frozen = {'w': jnp.arange(64.0).reshape(64, 1) / 64.0}
  before = _np(frozen)

  def step(state, batch, rng, frozen):
    traces.append(1)  # runs once per trace
    feature = batch['image'].reshape(batch['image'].shape[0], -1) @ frozen['w']
    batch = {**batch, 'image': batch['image'] + 0.0 * feature.reshape(-1, 1, 1, 1)}
    state, metrics = steps.classifier_train_step(state, batch, rng)
    return state, {**metrics, 'feature': (jnp.sum(feature), feature.shape[0] * 1.0)}

  result = tiny_run(mesh, tmp_path, num_steps=12, train_step=step, frozen=frozen)
  assert int(result.state.step) == 12 and len(traces) == 1
  assert all((a == b).all() for a, b in zip(before, _np(frozen), strict=True))
  # The logged feature mean is the frozen map of real images, so it was used.
  rows = [r for r in writers.read_metrics(str(tmp_path)) if 'train/feature' in r]
  assert rows and all(r['train/feature'] > 0 for r in rows)
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
  saved = ckpt._manager.item_metadata(ckpt.latest_step()).tree
  assert set(saved) == {'step', 'params', 'opt_state', 'batch_stats'}
  sizes = {m.shape for m in jax.tree.leaves(saved)}
  assert (64, 1) not in sizes


def _state(hidden=(16,), seed=0):
  return state_lib.create(
    model=MLP(hidden=hidden, num_outputs=10),
    tx=optim.make_optimizer(name='adam', learning_rate=1e-2),
    rng=jax.random.key(seed),
    inputs=(jnp.zeros((1, 8, 8, 1)),),
  )


def test_warm_start_takes_the_source_params_only_when_the_workdir_is_new(
  mesh, tmp_path
):
  source = tiny_run(mesh, tmp_path / 'a', num_steps=5)
  warm = functools.partial(checkpoint.warm_start, source_workdir=str(tmp_path / 'a'))
  fresh = warm(_state(seed=3))
  for a, b in zip(_np(fresh.params), _np(source.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert int(fresh.step) == 0  # only the params move, not the step or moments
  # Through fit: a new run starts from the source; its own resume wins after.
  run = tiny_run(mesh, tmp_path / 'b', num_steps=1, warm_start=warm, learning_rate=0.0)
  for a, b in zip(_np(run.state.params), _np(source.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  calls = []
  tiny_run(mesh, tmp_path / 'b', num_steps=2, warm_start=lambda s: calls.append(s) or s)
  assert calls == []


def test_warm_start_into_a_sub_tree_of_a_bigger_state(mesh, tmp_path):
  tiny_run(mesh, tmp_path / 'a', num_steps=5)
  both = {'g': _state(seed=1), 'd': _state(seed=2)}
  out = checkpoint.warm_start(
    both, source_workdir=str(tmp_path / 'a'), source='params', target='g.params'
  )
  src = checkpoint.warm_start(_state(), source_workdir=str(tmp_path / 'a'))
  for a, b in zip(_np(out['g'].params), _np(src.params), strict=True):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_np(out['d'].params), _np(both['d'].params), strict=True):
    np.testing.assert_array_equal(a, b)


def test_warm_start_errors_name_both_paths_and_the_first_mismatch(mesh, tmp_path):
  tiny_run(mesh, tmp_path / 'a', num_steps=5)
  with pytest.raises(UserError, match=r'no checkpoint to warm-start .* in .*nowhere'):
    checkpoint.warm_start(_state(), source_workdir=str(tmp_path / 'nowhere'))
  with pytest.raises(
    UserError,
    match=r"'params' .* from 'params' of .*a/checkpoints .* parameter "
    r'Dense_0/bias is \(32,\) here and \(16,\) there',
  ):
    checkpoint.warm_start(_state(hidden=(32,)), source_workdir=str(tmp_path / 'a'))
  with pytest.raises(UserError, match=r"has no 'g'"):
    checkpoint.warm_start(_state(), source_workdir=str(tmp_path / 'a'), target='g')


def test_freeze_keeps_named_sub_trees_bitwise_and_trains_the_rest():
  state = state_lib.create(
    model=MLP(hidden=(8, 8), num_outputs=3),
    tx=optim.freeze(optim.make_optimizer(name='adam', learning_rate=0.1),
                    frozen=['Dense_0', 'Dense_2/bias']),
    rng=jax.random.key(0),
    inputs=(jnp.zeros((1, 4)),),
  )  # fmt: skip
  grads = jax.tree.map(jnp.ones_like, state.params)
  new = state.apply_gradients(grads=grads)
  for path in ('Dense_0/kernel', 'Dense_0/bias', 'Dense_2/bias'):
    a, b = path.split('/')
    np.testing.assert_array_equal(new.params[a][b], state.params[a][b])
  for a, b in (('Dense_1', 'kernel'), ('Dense_2', 'kernel')):
    assert not np.array_equal(new.params[a][b], state.params[a][b])


def test_build_matches_make_optimizer_on_a_schedule():
  params = {'w': jnp.ones(3)}
  g = {'w': jnp.array([1.0, -2.0, 3.0])}
  config = ml_collections.ConfigDict(
    optim.default_fields(
      optimizer='momentum', learning_rate=0.1, schedule='step', decay_boundaries=(0.5,)
    )
  )
  config.grad_clip_norm = 100.0  # the typed empty field takes a value
  a = optim.build(num_steps=4, **optim.fields(config))
  b = optim.make_optimizer(
    name='momentum',
    learning_rate=optim.make_schedule(
      name='step', learning_rate=0.1, num_steps=4, decay_boundaries=(0.5,)
    ),
    grad_clip_norm=100.0,
  )
  sa, sb = a.init(params), b.init(params)
  for _ in range(4):
    ua, sa = a.update(g, sa, params)
    ub, sb = b.update(g, sb, params)
    np.testing.assert_array_equal(ua['w'], ub['w'])


def test_summarize_figures_land_in_summary_json(mesh, tmp_path):
  tiny_run(mesh, tmp_path, num_steps=3, summarize=lambda s: {'psnr': {'bicubic': 30.5}})
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['psnr'] == {'bicubic': 30.5} and summary['steps'] == 3


def _predict_step(state, batch):
  logits = state.apply_fn({'params': state.params}, batch['image'], train=False)
  return {'logits': logits}


@pytest.mark.parametrize('split_batch', [True, False])
def test_predictor_returns_every_real_example_in_order(mesh, split_batch):
  state = _state()
  test = images.load('digits', batch_size=8, eval_batch_size=8, seed=0)
  arrays = batching.collect(test.eval_batches())
  n = 37  # not a multiple of the batch: the last batch is padded
  arrays = {k: v[:n] for k, v in arrays.items()}
  size = 8 if split_batch else 3  # 3 does not split over 2 (or 8) devices
  predict = loop.make_predictor(_predict_step, mesh=mesh, split_batch=split_batch)
  out = predict(state, batching.eval_batches(arrays, batch_size=size))
  assert set(out) == {'image', 'label', 'logits'} and len(out['logits']) == n
  np.testing.assert_array_equal(out['label'], arrays['label'])
  want = state.apply_fn({'params': state.params}, arrays['image'], train=False)
  np.testing.assert_allclose(out['logits'], want, rtol=1e-5, atol=1e-5)


def test_evaluator_on_unsplit_batches_equals_the_split_one(mesh):
  state = _state()
  data = images.load('digits', batch_size=8, eval_batch_size=8, seed=0)
  split = loop.make_evaluator(steps.classifier_eval_step, data.eval_batches, mesh=mesh)
  whole = loop.make_evaluator(
    steps.classifier_eval_step,
    lambda: batching.eval_batches(batching.collect(data.eval_batches()), batch_size=1),
    mesh=mesh,
    split_batch=False,
  )
  a, b = split(state), whole(state)
  assert a.keys() == b.keys()
  for k in a:
    assert a[k] == pytest.approx(b[k], rel=1e-5)
