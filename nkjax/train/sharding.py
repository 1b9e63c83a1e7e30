"""Data parallelism on a `jax.sharding.Mesh` with one axis, `data`.

The batch is split along its leading axis over every device of every process;
parameters and optimizer state are replicated. The same code runs on one CPU,
on fake CPU devices, on a GPU and on a TPU pod: only the mesh differs.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nkjax.errors import UserError

DATA = 'data'


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `data` over `devices` (default: all devices, all hosts)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA))


def stacked_batch_sharded(mesh: Mesh) -> NamedSharding:
  """Several steps' batches stacked along a leading axis `[steps, batch, ...]`:
  split along the batch axis, every step's rows on every device."""
  return NamedSharding(mesh, PartitionSpec(None, DATA))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises `UserError` unless the global batch splits evenly over the mesh."""
  n = mesh.devices.size
  if batch_size % n:
    raise UserError(
      f'batch size {batch_size} is not divisible by the {n} devices of the data '
      f'mesh; use a multiple of {n}, e.g. --config.batch_size={max(n, batch_size // n * n)}'
    )


def shard_batch(batch, mesh: Mesh, *, split: bool = True):
  """Places a batch on the mesh, split along axis 0 or (`split=False`) replicated.

  Split: each process passes its local rows (the global batch divided by the
  process count); the result is one global array per leaf. Replicated: each
  process passes the whole batch and every device holds all of it, for inputs
  that do not split over the devices (one full-size test image on 8 devices).
  """
  sharding = batch_sharded(mesh) if split else replicated(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
  )


def shard_stacked_batch(batch, mesh: Mesh):
  """Places `[steps, local batch, ...]` arrays on the mesh, split along axis 1
  (`stacked_batch_sharded`); each process passes its own rows of each step."""
  sharding = stacked_batch_sharded(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
  )


def replicate(tree, mesh: Mesh):
  """Copies a pytree of arrays to every device of the mesh.

  With several processes each passes the same values (the same seed, the same
  checkpoint), and each places its copy on its own devices: `device_put` cannot
  move an array onto devices of another process.
  """
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x  # already global
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = put(jax.random.key_data(x))
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)
