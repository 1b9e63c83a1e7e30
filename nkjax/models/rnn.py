"""Recurrent networks: Elman RNN, LSTM and GRU cells, scanned over time.

At step t a cell reads x_t and the previous hidden code h_{t-1} and produces
h_t, which it passes on. The cells hold their weights as explicit matrices
(`w` for inputs, `u` for the recurrent code, `b`), so that each is its
published equations and nothing else (the tests check them against NumPy).
Sequences run through `flax.linen.RNN` (a `lax.scan`), which freezes the carry
after each sequence's length: padding never changes a result.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nkjax.errors import choose
from nkjax.ops import lstm as lstm_ops


class _Cell(nn.RNNCellBase):
  features: int
  gates: int = 1  # how many blocks of `features` the input and recurrent matrices hold

  def _weights(self, in_features: int):
    """The input, recurrent and bias parameters (w, u, b) of all gates."""
    n = self.gates * self.features
    w = self.param('w', nn.initializers.lecun_normal(), (in_features, n))
    u = self.param('u', nn.initializers.orthogonal(), (self.features, n))
    b = self.param('b', self._bias_init, (n,))
    return w, u, b

  def _affine(self, x, h):
    """x W + h U + b for all gates at once, `[batch, gates * features]`."""
    w, u, b = self._weights(x.shape[-1])
    return x @ w + h @ u + b

  def _bias_init(self, key, shape):
    return jnp.zeros(shape)

  @property
  def num_feature_axes(self) -> int:
    return 1

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return jnp.zeros((*input_shape[:-1], self.features))


class ElmanCell(_Cell):
  """h_t = tanh(x_t W + h_{t-1} U + b) (Elman, 1990). Carry: h."""

  @nn.compact
  def __call__(self, h, x):
    h = jnp.tanh(self._affine(x, h))
    return h, h


class LSTMCell(_Cell):
  """Hochreiter & Schmidhuber (1997) with a forget gate (Gers et al., 2000).

      i = s(x W_i + h U_i + b_i)      f = s(x W_f + h U_f + b_f)
      g = tanh(x W_g + h U_g + b_g)   o = s(x W_o + h U_o + b_o)
      c_t = f * c_{t-1} + i * g       h_t = o * tanh(c_t)

  Gate blocks in `w`, `u`, `b` are ordered (i, f, g, o); the forget bias
  starts at 1 so that early gradients flow through c (Jozefowicz et al., 2015).
  Carry: (c, h).
  """

  gates: int = 4

  def _bias_init(self, key, shape):
    return jnp.zeros(shape).at[self.features : 2 * self.features].set(1.0)

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    i, f, g, o = jnp.split(self._affine(x, h), 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    zeros = jnp.zeros((*input_shape[:-1], self.features))
    return zeros, zeros


class GRUCell(_Cell):
  """Cho et al. (2014):

      z = s(x W_z + h U_z + b_z)      r = s(x W_r + h U_r + b_r)
      n = tanh(x W_n + (r * h) U_n + b_n)
      h_t = z * h_{t-1} + (1 - z) * n

  (the reset gate multiplies h before U_n, as in the paper; cuDNN and PyTorch
  apply it after). Gate blocks ordered (z, r, n). Carry: h.
  """

  gates: int = 3

  @nn.compact
  def __call__(self, h, x):
    n = self.features
    w, u, b = self._weights(x.shape[-1])
    xw = x @ w + b
    zr = nn.sigmoid(xw[..., : 2 * n] + h @ u[:, : 2 * n])
    z, r = zr[..., :n], zr[..., n:]
    cand = jnp.tanh(xw[..., 2 * n :] + (r * h) @ u[:, 2 * n :])
    h = z * h + (1.0 - z) * cand
    return h, h


CELLS = {'rnn': ElmanCell, 'lstm': LSTMCell, 'gru': GRUCell}


class _LSTMSequence(LSTMCell):
  """LSTMCell's parameters and equations over a whole `[batch, time, in]`
  sequence at once (`nkjax.ops.lstm`: the input projection and the weight
  gradients outside the time loop)."""

  unroll: int = 1

  @nn.compact
  def __call__(self, carry, xs):
    w, u, b = self._weights(xs.shape[-1])
    return lstm_ops.lstm_sequence(xs, carry, w, u, b, unroll=self.unroll)


def hidden(carry):
  """The hidden code h of a cell's carry (an LSTM carries (c, h))."""
  return carry[1] if isinstance(carry, tuple) else carry


class Recurrent(nn.Module):
  """Stacked, optionally bidirectional recurrent layers over `[batch, time, features]`.

  Attributes:
    cell: 'rnn', 'lstm' or 'gru'.
    features: hidden width of each layer (and direction).
    num_layers: layers, each reading the previous one's outputs.
    bidirectional: also run each layer backwards in time, concatenating both.
    unroll: time steps per iteration of the compiled loop (`lax.scan`'s
      `unroll`); the same result. XLA's cost analysis counts a loop body once,
      so the benchmarks count FLOPs by comparing two unroll factors.

  A unidirectional LSTM layer called without `lengths` runs as one sequence op
  (`nkjax.ops.lstm`: the input projection and the weight gradients as single
  products outside the time loop; the same values and parameters as the cell
  under `nn.RNN`, which every other case uses).
  """

  cell: str = 'lstm'
  features: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  unroll: int = 1

  @nn.compact
  def __call__(self, x, *, lengths=None, initial_carries=None):
    """Runs the stack.

    Args:
      x: `[batch, time, features]` inputs.
      lengths: `[batch]` valid steps per sequence; steps past a length are
        padding and never change a carry.
      initial_carries: one carry per layer (unidirectional only), as returned.

    Returns:
      `(outputs [batch, time, features * directions], final carries per layer)`;
      for a bidirectional layer the carry is (forward, backward).
    """
    choose('cell', self.cell, CELLS)
    cell = CELLS[self.cell]
    carries = []
    for layer in range(self.num_layers):
      if self.bidirectional:
        rnn = nn.Bidirectional(
          nn.RNN(cell(self.features), unroll=self.unroll),
          nn.RNN(
            cell(self.features), reverse=True, keep_order=True, unroll=self.unroll
          ),
          return_carry=True,
        )
        carry, x = rnn(x, seq_lengths=lengths)
      elif self.cell == 'lstm' and lengths is None:
        init = None if initial_carries is None else initial_carries[layer]
        # Named as nn.RNN's path names its cells, so both share parameters.
        lstm = _LSTMSequence(
          self.features, unroll=self.unroll, name=f'LSTMCell_{layer}'
        )
        if init is None:
          init = lstm.initialize_carry(None, x[:, 0].shape)
        carry, x = lstm(init, x)
      else:
        init = None if initial_carries is None else initial_carries[layer]
        carry, x = nn.RNN(cell(self.features), return_carry=True, unroll=self.unroll)(
          x, initial_carry=init, seq_lengths=lengths
        )
      carries.append(carry)
    return x, tuple(carries)


class CharLM(nn.Module):
  """A character language model: embedding, recurrent stack, softmax over the vocabulary."""

  vocab_size: int
  embed: int = 64
  cell: str = 'lstm'
  features: int = 256
  num_layers: int = 1
  unroll: int = 1  # time steps per compiled loop iteration, as `Recurrent`'s

  @nn.compact
  def __call__(self, tokens, *, train: bool = False, carries=None):
    """Next-token logits `[batch, time, vocab]` for tokens `[batch, time]`, and
    the final carries (pass them back in to continue the sequence)."""
    del train
    x = nn.Embed(self.vocab_size, self.embed)(tokens)
    x, carries = Recurrent(
      self.cell, self.features, self.num_layers, unroll=self.unroll
    )(x, initial_carries=carries)
    return nn.Dense(self.vocab_size)(x), carries


class SequenceClassifier(nn.Module):
  """Classifies a sequence by its final hidden code (both directions' if bidirectional).

  Inputs are token ids `[batch, time]` when `vocab_size` is set, else feature
  vectors `[batch, time, features]` (a digit read row by row).
  """

  num_classes: int
  vocab_size: int | None = None
  embed: int = 64
  cell: str = 'lstm'
  features: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, lengths=None, *, train: bool):
    if self.vocab_size is not None:
      x = nn.Embed(self.vocab_size, self.embed)(x)
    elif x.ndim == 4:  # images [b, h, w, 1]: rows are the time steps
      x = x.reshape(x.shape[0], x.shape[1], -1)
    _, carries = Recurrent(
      self.cell, self.features, self.num_layers, self.bidirectional
    )(x, lengths=lengths)
    last = carries[-1]
    h = (
      jnp.concatenate([hidden(c) for c in last], -1)
      if self.bidirectional
      else hidden(last)
    )
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes)(h)


def scan_cell(
  cell: nn.Module, params, xs: jax.Array, carry, perturb: Sequence | None = None
):
  """Runs one cell over `xs [time, batch, features]` step by step, returning every carry.

  `perturb[t]` (shaped like h) is added to h after step t: the gradient of a
  loss with respect to it is the gradient with respect to h_t.
  """

  def step(carry, inputs):
    x, d = inputs
    carry, _ = cell.apply({'params': params}, carry, x)
    carry = (carry[0], carry[1] + d) if isinstance(carry, tuple) else carry + d
    return carry, carry

  deltas = (
    jnp.zeros((xs.shape[0], *hidden(carry).shape)) if perturb is None else perturb
  )
  return jax.lax.scan(step, carry, (xs, deltas))


def generate(
  model: CharLM,
  params,
  prompt: jax.Array,
  *,
  length: int,
  temperature: float,
  rng: jax.Array,
) -> jax.Array:
  """Continues `prompt` `[time]` by `length` tokens sampled one at a time.

  Each sampled token is fed back with the carries: the model never re-reads
  the prompt. `temperature` divides the logits (0: always the likeliest token).
  Returns the `[length]` new tokens. Jit-compatible: one `lax.scan`.
  """
  logits, carries = model.apply({'params': params}, prompt[None])

  def pick(logits, key):
    if temperature == 0:
      return jnp.argmax(logits, -1)
    return jax.random.categorical(key, logits / temperature)

  def step(state, key):
    last_logits, carries = state
    token = pick(last_logits, key)
    logits, carries = model.apply({'params': params}, token[:, None], carries=carries)
    return (logits[:, -1], carries), token[0]

  _, tokens = jax.lax.scan(
    step, (logits[:, -1], carries), jax.random.split(rng, length)
  )
  return tokens
