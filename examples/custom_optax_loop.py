"""An nkjax model in your own training loop: plain jax.jit and optax, no nkjax loop.

  python examples/custom_optax_loop.py

Trains `nkjax.models.MLP` (with dropout) on the embedded 8x8 digits for 200
Adam steps and prints the test accuracy (0.944; a few seconds on a CPU).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nkjax.data import digits
from nkjax.models import MLP

train, test = digits.load('train'), digits.load('test')  # images [n, 8, 8, 1] in [0, 1]
model = MLP(hidden=(128,), num_outputs=10, dropout_rate=0.1)
params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)['params']
tx = optax.adam(1e-3)
opt_state = tx.init(params)


@jax.jit
def train_step(params, opt_state, images, labels, key):
  def loss_fn(p):
    logits = model.apply({'params': p}, images, train=True, rngs={'dropout': key})
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


rng = np.random.default_rng(0)
root = jax.random.key(1)
for step in range(200):
  idx = rng.choice(len(train['label']), 64, replace=False)
  params, opt_state, loss = train_step(
    params, opt_state, train['image'][idx], train['label'][idx],
    jax.random.fold_in(root, step),  # a fresh dropout key per step
  )  # fmt: skip

logits = model.apply({'params': params}, test['image'], train=False)
accuracy = float(np.mean(np.argmax(logits, -1) == test['label']))
print(f'final training loss {float(loss):.3f}, test accuracy {accuracy:.3f}')
assert accuracy > 0.9, accuracy
