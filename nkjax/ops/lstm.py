"""An LSTM layer over a whole sequence, with the backward pass written out.

`jax.grad` of a time loop differentiates each step on its own: every step
computes its share of the input and recurrent weight gradients, x_t^T dA_t and
h_{t-1}^T dA_t, as small matrix products inside the sequential loop. Only two
products per step are truly sequential, h_{t-1} U forward and dA_t U^T
backward; the rest are one large product each over all time steps, the way
cuDNN's and oneDNN's RNN kernels (PyTorch's `nn.LSTM`) schedule them:

* forward: the input projection x W + b of every step at once, then the loop;
* backward: the loop yields every step's gate gradient dA_t, then
  dU = sum_t h_{t-1}^T dA_t is one product; dW, db and dx follow from dA by
  autodiff of the input projection (also one product each).

The equations are `nkjax.models.rnn.LSTMCell`'s (the tests check values and
gradients against it): gates (i, f, g, o) from A = x W + h U + b,
c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).
"""

import functools

import jax
import jax.numpy as jnp


def lstm_sequence(xs, carry, w, u, b, *, unroll: int = 1):
  """Runs the LSTM over `xs [batch, time, in]` from `carry = (c, h)`, each `[batch, features]`.

  Args:
    xs: inputs, batch-major.
    carry: the initial (c, h).
    w, u, b: `[in, 4 features]`, `[features, 4 features]`, `[4 features]`,
      gate blocks ordered (i, f, g, o).
    unroll: time steps per iteration of both compiled loops.

  Returns:
    `((c_T, h_T), hs [batch, time, features])`.
  """
  c0, h0 = carry
  # Time-major from here: each loop iteration reads one contiguous [batch, 4n] slab.
  xw = jnp.einsum('bti,ig->tbg', xs, w) + b
  c, h, hs = _recurrence(unroll, u, xw, c0, h0)
  return (c, h), jnp.swapaxes(hs, 0, 1)


def _gates(a):
  i, f, g, o = jnp.split(a, 4, axis=-1)
  return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def _forward(unroll, u, xw, c0, h0):
  def step(carry, xw_t):
    c, h = carry
    i, f, g, o = _gates(xw_t + h @ u)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

  (c, h), (hs, cs, gates) = jax.lax.scan(step, (c0, h0), xw, unroll=unroll)
  return (c, h, hs), (u, c0, h0, hs, cs, gates)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrence(unroll, u, xw, c0, h0):
  """(c_T, h_T, hs [time, batch, n]) from the input projections `xw [time, batch, 4n]`."""
  return _forward(unroll, u, xw, c0, h0)[0]


def _recurrence_bwd(unroll, residuals, cotangents):
  u, c0, h0, hs, cs, gates = residuals
  dc_last, dh_last, dhs = cotangents
  c_prev = jnp.concatenate([c0[None], cs[:-1]])
  h_prev = jnp.concatenate([h0[None], hs[:-1]])

  def step(carry, inputs):
    dc, dh = carry  # flowing back from step t + 1
    dh_t, c_t, c_p, gates_t = inputs
    i, f, g, o = jnp.split(gates_t, 4, axis=-1)
    dh = dh + dh_t
    tanh_c = jnp.tanh(c_t)
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    da = jnp.concatenate(
      [
        dc * g * i * (1 - i),
        dc * c_p * f * (1 - f),
        dc * i * (1 - g * g),
        dh * tanh_c * o * (1 - o),
      ],
      axis=-1,
    )
    return (dc * f, da @ u.T), da

  (dc0, dh0), da = jax.lax.scan(
    step, (dc_last, dh_last), (dhs, cs, c_prev, gates), reverse=True, unroll=unroll
  )
  du = jnp.einsum('tbn,tbg->ng', h_prev, da)
  return du, da, dc0, dh0


_recurrence.defvjp(lambda unroll, *args: _forward(unroll, *args), _recurrence_bwd)
