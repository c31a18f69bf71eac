"""The streaming perturb-and-accumulate engine shared by every black-box method.

Every black-box method in rise_jax is the same loop: make a batch of perturbations from a
range of indices, push it through the black box, fold the scores into an accumulator. This
module holds that loop, written once:

* :func:`stream` runs inside a traced (jitted) function: a ``lax.while_loop`` over fixed-size
  batches of item indices ``[start, stop)`` (the bounds may be traced values, so a method whose
  item count changes between iterations, like IASSA, never recompiles). The last batch is
  padded; ``valid`` marks real items.
* Each index batch is sharded over a 1-D device mesh (``NamedSharding``, axis ``"batch"``), so
  the perturbations and the black box's forward pass are split across all local devices; one
  device is the degenerate case of the same code.
* Items are addressed by index (e.g. mask ``i`` comes from ``fold_in(key, i)``), so results do
  not depend on the batch size or on the number of devices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


@functools.lru_cache(maxsize=None)
def _mesh_for(devices: tuple) -> Mesh:
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_mesh(devices=None) -> Mesh:
  """A 1-D mesh (axis ``"batch"``) over ``devices`` (default: all local devices)."""
  devices = tuple(jax.local_devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices must be a non-empty sequence of jax devices")
  return _mesh_for(devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch's leading axis over the mesh."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def shard_batch(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """A global array from a host array, its leading axis sharded over ``mesh``.

  Works unchanged when ``mesh`` spans several processes (``jax.distributed``): every process
  holds the same ``array`` and fills only the rows of its own devices.

  Args:
    array: [B, ...] host array, identical on every process; ``B`` a multiple of ``mesh.size``.
    mesh: 1-D mesh with axis ``"batch"``.

  Returns:
    A ``jax.Array`` of shape [B, ...] sharded ``PartitionSpec("batch")``.
  """
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, batch_sharding(mesh),
                                      lambda index: array[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Every leaf of ``tree`` replicated over ``mesh`` (typed PRNG keys included).

  Args:
    tree: Pytree of arrays, identical on every process (parameters, optimiser state, keys).
    mesh: The mesh to replicate over (possibly spanning several processes).

  Returns:
    The same tree of ``jax.Array`` s with a replicated ``NamedSharding``.
  """
  sharding = replicated(mesh)

  def put(leaf):
    if jnp.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
      data = np.asarray(jax.random.key_data(leaf))
      data = jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(put, tree)


def to_host(array: jax.Array) -> np.ndarray:
  """One host NumPy array of a (possibly multi-process) replicated or sharded array.

  Args:
    array: A ``jax.Array``; when it is not fully addressable (its shards live on other
      processes too), every process must call this (it is a collective).

  Returns:
    The whole array as ``np.ndarray`` on every process.
  """
  if getattr(array, "is_fully_addressable", True):
    return np.asarray(array)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def device_batch_size(batch_size: int, mesh: Mesh) -> int:
  """``batch_size`` rounded up to a multiple of the number of devices in ``mesh``."""
  n = mesh.size
  return int(math.ceil(batch_size / n) * n)


def stream(step: Callable[[Any, jax.Array, jax.Array], Any], carry: Any, start, stop,
           batch_size: int, mesh: Mesh | None = None) -> Any:
  """Folds batches of item indices ``[start, stop)`` into ``carry``; call inside a jit.

  Args:
    step: ``step(carry, indices int32[b], valid bool[b]) -> carry``. ``indices`` beyond
      ``stop`` are padding and marked ``valid == False``; ``step`` must give them zero weight.
    carry: Initial accumulator (any pytree of arrays).
    start: int32[] first index (Python int or traced).
    stop: int32[] one past the last index (Python int or traced).
    batch_size: Static number of items per batch ``b`` (a multiple of ``mesh.size``).
    mesh: Optional 1-D device mesh; each index batch is sharded over it.

  Returns:
    The final carry.
  """
  offsets = jnp.arange(batch_size, dtype=jnp.int32)
  start = jnp.asarray(start, jnp.int32)
  stop = jnp.asarray(stop, jnp.int32)

  def cond(state):
    lo, _ = state
    return lo < stop

  def body(state):
    lo, c = state
    idx = lo + offsets
    if mesh is not None:
      idx = jax.lax.with_sharding_constraint(idx, batch_sharding(mesh))
    return lo + batch_size, step(c, idx, idx < stop)

  _, carry = jax.lax.while_loop(cond, body, (start, carry))
  return carry


def first_bad(bad: jax.Array, scores: jax.Array, indices: jax.Array,
              valid: jax.Array) -> jax.Array:
  """Tracks the smallest index whose scores are not finite.

  Args:
    bad: int32[] running value (``-1`` while all scores were finite).
    scores: float[b, ...] black-box outputs of the batch.
    indices: int32[b] item indices.
    valid: bool[b] real (non-padding) items.

  Returns:
    int32[] updated ``bad``.
  """
  finite = jnp.all(jnp.isfinite(scores.reshape(scores.shape[0], -1)), axis=1) | ~valid
  worst = jnp.min(jnp.where(finite, jnp.iinfo(jnp.int32).max, indices))
  return jnp.where((bad < 0) & ~jnp.all(finite), worst, bad)


def check_black_box(model_fn: Callable, example: jax.ShapeDtypeStruct, *,
                    out_rank: int, name: str = "model_fn") -> tuple[int, ...]:
  """Abstractly evaluates a black box and checks its output shape.

  Args:
    model_fn: ``images -> scores`` callable, traceable by JAX.
    example: Shape of a batch of images ``[b, H, W, C]``.
    out_rank: Expected rank of the scores (2 for ``[b, C]``, 4 for ``[b, H', W', C]``).
    name: Argument name for error messages.

  Returns:
    The output shape.
  """
  if not callable(model_fn):
    raise TypeError(f"{name} must be a callable images -> scores, got {type(model_fn).__name__}")
  want = "[b, C]" if out_rank == 2 else "[b, H', W', C]"
  try:
    out = jax.eval_shape(model_fn, example)
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise TypeError(
        f"{name} must be a JAX-traceable callable float32{list(example.shape)} -> scores "
        f"{want}; calling it on an abstract batch failed with {type(e).__name__}: {e}") from e
  if isinstance(out, tuple | list | dict):
    raise ValueError(
        f"{name} must return one array of scores {want}, got a {type(out).__name__} "
        "(for a Flax model returning (logits, features) use lambda x: apply(params, x)[0])")
  if (len(out.shape) != out_rank or out.shape[0] != example.shape[0]
      or not jnp.issubdtype(out.dtype, jnp.floating)):
    raise ValueError(
        f"{name} must map images float32{list(example.shape)} to float scores {want} with "
        f"b = {example.shape[0]}, got {out.dtype}{list(out.shape)}")
  if any(d < 1 for d in out.shape[1:]):
    raise ValueError(f"{name} returned an empty score shape {list(out.shape)}")
  return tuple(out.shape)
