import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nkjax.models import rnn


def _sig(x):
  return 1 / (1 + np.exp(-x))


def _numpy_step(kind, p, carry, x):
  """The published equations, in float64 NumPy, from the cell's own matrices."""
  w, u, b = (np.asarray(p[k], np.float64) for k in ('w', 'u', 'b'))
  if kind == 'rnn':
    h = np.tanh(x @ w + carry @ u + b)
    return h, h
  if kind == 'lstm':
    c, h = carry
    n = h.shape[-1]
    a = x @ w + h @ u + b
    i, f, g, o = (
      _sig(a[:, :n]),
      _sig(a[:, n : 2 * n]),
      np.tanh(a[:, 2 * n : 3 * n]),
      _sig(a[:, 3 * n :]),
    )
    c = f * c + i * g
    h = o * np.tanh(c)
    return (c, h), h
  h = carry
  n = h.shape[-1]
  z = _sig(x @ w[:, :n] + h @ u[:, :n] + b[:n])
  r = _sig(x @ w[:, n : 2 * n] + h @ u[:, n : 2 * n] + b[n : 2 * n])
  cand = np.tanh(x @ w[:, 2 * n :] + (r * h) @ u[:, 2 * n :] + b[2 * n :])
  h = z * h + (1 - z) * cand
  return h, h


@pytest.mark.parametrize('kind', ['rnn', 'lstm', 'gru'])
def test_cells_follow_their_equations_step_by_step(kind):
  cell = rnn.CELLS[kind](features=5)
  xs = np.asarray(jax.random.normal(jax.random.key(0), (6, 3, 4)), np.float64)
  carry = cell.initialize_carry(None, (3, 4))
  params = cell.init(jax.random.key(1), carry, jnp.asarray(xs[0], jnp.float32))[
    'params'
  ]
  # Non-zero biases, so each bias block is checked.
  params = dict(params, b=0.1 * jnp.arange(params['b'].size, dtype=jnp.float32) - 0.5)
  ref = jax.tree.map(lambda a: np.asarray(a, np.float64), carry)
  for x in xs:
    carry, h = cell.apply({'params': params}, carry, jnp.asarray(x, jnp.float32))
    ref, ref_h = _numpy_step(kind, params, ref, x)
    np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-5)
  if kind == 'lstm':
    np.testing.assert_allclose(carry[0], ref[0], rtol=1e-4, atol=1e-5)


def test_lstm_forget_bias_starts_at_one():
  cell = rnn.LSTMCell(features=3)
  b = cell.init(
    jax.random.key(0), cell.initialize_carry(None, (1, 2)), jnp.ones((1, 2))
  )['params']['b']
  np.testing.assert_array_equal(b, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize('kind', ['rnn', 'lstm', 'gru'])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_padding_never_changes_a_result(kind, bidirectional):
  model = rnn.SequenceClassifier(
    num_classes=3,
    vocab_size=20,
    cell=kind,
    features=6,
    num_layers=2,
    bidirectional=bidirectional,
  )
  tokens = jax.random.randint(jax.random.key(0), (3, 9), 1, 20)
  lengths = jnp.array([9, 4, 6])
  variables = model.init(jax.random.key(1), tokens, lengths, train=False)
  apply = jax.jit(lambda t, n: model.apply(variables, t, n, train=False))
  batched = apply(tokens, lengths)
  # Whatever fills the padding...
  garbage = jnp.where(jnp.arange(9) < lengths[:, None], tokens, 7)
  np.testing.assert_allclose(apply(garbage, lengths), batched, rtol=1e-5, atol=1e-6)
  # ...and whatever else is in the batch.
  i, n = 1, int(lengths[1])
  np.testing.assert_allclose(
    apply(tokens[i : i + 1, :n], lengths[i : i + 1]),
    batched[i : i + 1],
    rtol=1e-5,
    atol=1e-6,
  )


@pytest.mark.parametrize('kind', ['rnn', 'lstm', 'gru'])
def test_carry_out_then_in_continues_the_sequence(kind):
  lm = rnn.CharLM(vocab_size=11, embed=4, cell=kind, features=8, num_layers=2)
  tokens = jax.random.randint(jax.random.key(0), (2, 10), 0, 11)
  variables = lm.init(jax.random.key(1), tokens)
  apply = jax.jit(lambda t, c: lm.apply(variables, t, carries=c))
  whole, _ = apply(tokens, None)
  first, carries = apply(tokens[:, :6], None)
  second, _ = apply(tokens[:, 6:], carries)
  np.testing.assert_allclose(
    jnp.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-5
  )


def test_unknown_cell_lists_the_valid_ones():
  model = rnn.SequenceClassifier(num_classes=2, vocab_size=5, cell='transformer')
  with pytest.raises(ValueError, match='valid choices: gru, lstm, rnn'):
    model.init(jax.random.key(0), jnp.zeros((1, 3), jnp.int32), train=False)


def test_lstm_sequence_op_matches_the_cell_under_nn_rnn():
  """Without lengths an LSTM stack runs as `ops.lstm.lstm_sequence`; with full
  lengths the same stack runs LSTMCell step by step under `nn.RNN` (autodiff's
  own backward pass): same parameters, values and gradients."""
  model = rnn.Recurrent('lstm', features=8, num_layers=2)
  x = jax.random.normal(jax.random.key(0), (3, 7, 5))
  full = jnp.full((3,), 7)
  params = model.init(jax.random.key(1), x)['params']
  params_cell = model.init(jax.random.key(1), x, lengths=full)['params']
  assert jax.tree.structure(params) == jax.tree.structure(params_cell)
  jax.tree.map(np.testing.assert_array_equal, params, params_cell)
  # Non-zero carries in, so their gradients are checked too.
  c0, h0, c1, h1 = jax.random.normal(jax.random.key(2), (4, 3, 8))
  carries = ((c0, h0), (c1, h1))
  weights = jax.random.normal(jax.random.key(3), (3, 7, 8))

  def loss(params, x, carries, lengths):
    out, final = model.apply(
      {'params': params}, x, lengths=lengths, initial_carries=carries
    )
    c, h = final[-1]
    return jnp.sum(weights * out) + jnp.sum(jnp.sin(c)) + jnp.sum(h**2)

  value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, carries, None)
  ref_value, ref_grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(
    params, x, carries, full
  )
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
