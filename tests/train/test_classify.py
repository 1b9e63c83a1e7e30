"""classify.fit's speed options compute what the plain path computes."""

import jax
import numpy as np
import optax
import pytest

from nkjax.data import batching, images
from nkjax.data.dataset import Dataset
from nkjax.errors import UserError
from nkjax.models import LeNet5
from nkjax.train import classify, writers


def _fit(mesh, workdir, **options):
  data = images.load(
    'digits', batch_size=32, eval_batch_size=120, seed=0, image_size=28
  )
  return classify.fit(
    model=LeNet5(dropout_rate=0.1), data=data, tx=optax.adam(1e-3),
    mesh=mesh, workdir=str(workdir), num_steps=12, batch_size=32, seed=0,
    log_every=5, eval_every=6, **options,
  )  # fmt: skip


# Bitwise with the fusion emitters a user's XLA uses (see tests/conftest.py).
@pytest.mark.default_emitters
def test_data_on_device_and_several_steps_per_call_equal_the_host_path_bitwise(
  mesh, tmp_path
):
  # LeNet-5 (its one-channel C1 and dropout, so the step's keys count too).
  plain = _fit(mesh, tmp_path / 'plain', data_on_device=False)
  fast = _fit(mesh, tmp_path / 'fast', data_on_device=True, steps_per_call=4)
  leaves = [jax.tree.leaves(jax.device_get(r.state.params)) for r in (plain, fast)]
  # Bitwise on jaxlib 0.10; jaxlib 0.12 (oneDNN) fuses the gathered batch
  # into other kernels and a parameter can come out 1 ulp apart.
  exact = jax.__version_info__ < (0, 12)
  for a, b in zip(*leaves, strict=True):
    if exact:
      np.testing.assert_array_equal(a, b)
    else:
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
  rows = [writers.read_metrics(str(tmp_path / d)) for d in ('plain', 'fast')]
  assert len(rows[0]) == len(rows[1]) >= 5
  if exact:
    assert rows[0] == rows[1]


def test_the_index_stream_is_the_batch_stream():
  arrays = {'x': np.arange(50) * 3, 'y': np.arange(50) % 7}
  batches = batching.train_batches(arrays, batch_size=8, seed=3, start_step=4)
  indices = batching.train_indices(50, batch_size=8, seed=3, start_step=4)
  for _ in range(12):  # over two epoch boundaries
    batch, idx = next(batches), next(indices)
    assert set(idx) <= set(range(50)) and len(set(idx)) == 8
    for k in arrays:
      np.testing.assert_array_equal(batch[k], arrays[k][idx])


def test_data_on_device_needs_an_in_memory_training_set(mesh, tmp_path):
  streamed = Dataset(
    name='mnist', train_batches=lambda s: iter(()), eval_batches=lambda: iter(())
  )
  with pytest.raises(UserError, match="'mnist' is streamed.*data_on_device"):
    classify.fit(
      model=LeNet5(), data=streamed, tx=optax.adam(1e-3), mesh=mesh,
      workdir=str(tmp_path), num_steps=1, batch_size=8, seed=0, data_on_device=True,
    )  # fmt: skip
  assert not list(tmp_path.iterdir())


def test_by_default_only_a_small_in_memory_training_set_goes_on_the_device():
  digits = images.load('digits', batch_size=32, eval_batch_size=120, seed=0)
  assert classify.default_fields()['data_on_device'].get() is None
  assert classify.fits_on_device(digits)
  streamed = Dataset(
    name='mnist', train_batches=lambda s: iter(()), eval_batches=lambda: iter(())
  )
  assert not classify.fits_on_device(streamed)
  # One byte over the limit (a broadcast array: its size without the memory).
  big = np.broadcast_to(np.float32(0), (classify.DEVICE_DATA_BYTES // 4 + 1,))
  assert big.nbytes > classify.DEVICE_DATA_BYTES
  large = Dataset(
    name='large', train_batches=lambda s: iter(()), eval_batches=lambda: iter(()),
    train_arrays={'image': big},
  )  # fmt: skip
  assert not classify.fits_on_device(large)
