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
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
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

  # The loop counts batches with a unit step: XLA (CPU, jaxlib 0.10.2) miscompiles a while loop
  # whose counter steps by batch_size > 1 between constant bounds one apart (0 -> 1 ran zero
  # times, so e.g. rise(num_masks=1, batch_size=4) returned all-zero maps).
  def cond(state):
    i, _ = state
    return start + i * batch_size < stop

  def body(state):
    i, c = state
    idx = start + i * batch_size + offsets
    if mesh is not None:
      idx = jax.lax.with_sharding_constraint(idx, batch_sharding(mesh))
    return i + 1, step(c, idx, idx < stop)

  _, carry = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), carry))
  return carry


def call_in_batches(model_fn: Callable[[jax.Array], jax.Array], images: jax.Array,
                    batch_size: int) -> jax.Array:
  """``model_fn(images)`` in calls of exactly ``batch_size`` images, eagerly or traced.

  The black boxes' documented contract is that every call gets ``batch_size`` images (a model
  exported or compiled for one batch size works); the few calls on unperturbed images (top-k
  selection, default regions) go through here, the last batch padded with copies of the last
  image.

  Args:
    model_fn: Black box ``float32[batch_size, ...] -> scores[batch_size, ...]``.
    images: float32[n, H, W, C], ``n >= 1`` (static).
    batch_size: The static batch size of every call.

  Returns:
    scores[n, ...].
  """
  n = images.shape[0]
  total = int(math.ceil(n / batch_size) * batch_size)
  if total > n:
    images = jnp.concatenate(
        [images, jnp.broadcast_to(images[-1:], (total - n, *images.shape[1:]))])
  outs = [model_fn(images[i:i + batch_size]) for i in range(0, total, batch_size)]
  return jnp.concatenate(outs)[:n] if len(outs) > 1 else outs[0][:n]


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
  if isinstance(model_fn, HostBlackBox):
    model_fn.reset()
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


# ----------------------------------------------------------------------------------------------
# Black boxes outside JAX, and the error raised when a black box fails mid-run.


class BlackBoxError(RuntimeError):
  """A host black box (:class:`HostBlackBox`) raised while a method was scoring a batch.

  The message names the batch; ``__cause__`` is the black box's own exception.
  """


class HostBlackBox:
  """A NumPy / PyTorch / TensorFlow black box usable by every rise_jax method.

  Wraps ``fn(images np.float32[b, H, W, C_in]) -> scores [b, ...]`` (anything ``np.asarray``
  takes, torch tensors included) in ``jax.pure_callback``, so the jitted streaming loops can
  call it batch by batch. The output shape for an input shape is found by calling ``fn`` once
  on zeros of that shape when the method is traced.

  If ``fn`` raises on some batch, the exception is kept, that batch and every later one get NaN
  scores without calling ``fn`` again (the jitted loop cannot be interrupted from the host),
  and the method then raises :class:`BlackBoxError` naming the batch, with ``fn``'s exception
  as its cause; no partial map is returned. Each method call starts afresh.

  Args:
    fn: The host callable.
  """

  def __init__(self, fn: Callable[[np.ndarray], Any]):
    if not callable(fn):
      raise TypeError(f"fn must be a callable images -> scores, got {type(fn).__name__}")
    self.fn = fn
    self._structs: dict[tuple[int, ...], jax.ShapeDtypeStruct] = {}
    self._lock = threading.Lock()
    self._error: BaseException | None = None

  @staticmethod
  def _numpy(out: Any) -> np.ndarray:
    if hasattr(out, "detach"):  # a torch tensor
      out = out.detach().cpu().numpy()
    return np.asarray(out)

  def _struct(self, shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    if shape not in self._structs:
      out = self._numpy(self.fn(np.zeros(shape, np.float32)))
      if not np.issubdtype(out.dtype, np.floating) or not out.ndim or out.shape[0] != shape[0]:
        raise ValueError(f"fn must map images float32{list(shape)} to float scores "
                         f"[{shape[0]}, ...], got {out.dtype}{list(out.shape)}")
      self._structs[shape] = jax.ShapeDtypeStruct(out.shape, jnp.float32)
    return self._structs[shape]

  def _host(self, images: np.ndarray) -> np.ndarray:
    struct = self._structs[tuple(images.shape)]
    failed = np.full(struct.shape, np.nan, np.float32)
    with self._lock:
      if self._error is not None:
        return failed
    try:
      out = self._numpy(self.fn(np.array(images, np.float32)))  # writable, e.g. for torch
      if out.shape != struct.shape:
        raise ValueError(f"fn returned scores of shape {list(out.shape)} for images "
                         f"{list(images.shape)}, expected {list(struct.shape)} (as for zeros)")
      return out.astype(np.float32)
    except Exception as e:  # noqa: BLE001 - kept and re-raised by the method, naming the batch
      with self._lock:
        if self._error is None:
          self._error = e
      return failed

  def __call__(self, images: jax.Array) -> jax.Array:
    struct = self._struct(tuple(int(d) for d in images.shape))
    return jax.pure_callback(self._host, struct, images.astype(jnp.float32),
                             vmap_method="sequential")

  def reset(self) -> None:
    """Forgets a kept exception (done by every method before it starts)."""
    with self._lock:
      self._error = None

  def pop_error(self) -> BaseException | None:
    """The exception ``fn`` raised since the last reset, if any (and forgets it)."""
    with self._lock:
      err, self._error = self._error, None
    return err


def host_black_box(fn: Callable[[np.ndarray], Any]) -> HostBlackBox:
  """Wraps a non-JAX black box (NumPy, PyTorch, ...) for rise_jax; see :class:`HostBlackBox`.

  Example::

    model = torchvision.models.resnet50(weights="DEFAULT").eval()
    box = rise_jax.host_black_box(lambda x: torch.softmax(
        model(torch.from_numpy(x).permute(0, 3, 1, 2)), -1))
    maps = rise_jax.rise(box, image, key, num_masks=4000)
  """
  return HostBlackBox(fn)


def black_box_failure(model_fn: Callable, where: str, *, name: str = "model_fn",
                      returned: str = "no saliency map is returned") -> Exception:
  """The exception for a black box whose scores were not finite at ``where``.

  Args:
    model_fn: The black box the method was given.
    where: Where the first non-finite score was found, naming the batch (e.g. ``"for image 0,
      mask 340 (mask batch 3: masks [300, 400))"``).
    name: The argument's name in the message.
    returned: What the caller does not return.

  Returns:
    :class:`BlackBoxError` (cause: the exception) when ``model_fn`` is a
    :class:`HostBlackBox` that raised, else ``FloatingPointError`` (NaN or inf scores).
  """
  err = model_fn.pop_error() if isinstance(model_fn, HostBlackBox) else None
  if err is not None:
    out = BlackBoxError(f"{name} raised {type(err).__name__}: {err} -- while scoring the batch "
                        f"{where}; {returned}")
    out.__cause__ = err
    return out
  return FloatingPointError(f"{name} returned NaN or inf scores {where}; {returned}. Check the "
                            "model and the substrate for this input")
