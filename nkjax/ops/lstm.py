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
    c_prev, h_prev = carry
    i, f, g, o = _gates(xw_t + h_prev @ u)
    c = f * c_prev + i * g
    tanh_c = jnp.tanh(c)
    h = o * tanh_c
    # What the backward pass reads at step t, saved rather than recomputed.
    return (c, h), (h, (h_prev, c_prev, tanh_c, i, f, g, o))

  (c, h), (hs, saved) = jax.lax.scan(step, (c0, h0), xw, unroll=unroll)
  return (c, h, hs), (u, saved)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrence(unroll, u, xw, c0, h0):
  """(c_T, h_T, hs [time, batch, n]) from the input projections `xw [time, batch, 4n]`."""
  return _forward(unroll, u, xw, c0, h0)[0]


def _recurrence_bwd(unroll, residuals, cotangents):
  u, saved = residuals
  dc_last, dh_last, dhs = cotangents
  h_prev = saved[0]
  # Transposed once here, not in every iteration of the loop.
  u_t = u.T

  def step(carry, inputs):
    dc, dh = carry  # flowing back from step t + 1
    dh_t, (_, c_prev, tanh_c, i, f, g, o) = inputs
    dh = dh + dh_t
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    da = jnp.concatenate(
      [
        dc * g * i * (1 - i),
        dc * c_prev * f * (1 - f),
        dc * i * (1 - g * g),
        dh * tanh_c * o * (1 - o),
      ],
      axis=-1,
    )
    return (dc * f, da @ u_t), da

  (dc0, dh0), da = jax.lax.scan(
    step, (dc_last, dh_last), (dhs, saved), reverse=True, unroll=unroll
  )
  du = jnp.einsum('tbn,tbg->ng', h_prev, da)
  return du, da, dc0, dh0


_recurrence.defvjp(lambda unroll, *args: _forward(unroll, *args), _recurrence_bwd)
