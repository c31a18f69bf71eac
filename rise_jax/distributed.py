"""Multi-process (multi-host) runs: split a dataset over processes, gather identical results.

Two kinds of parallelism compose here:

* **Within a process**, every black-box method shards its mask/window/step batches over the
  process's own devices (a 1-D mesh, :func:`rise_jax.batch_mesh`).
* **Across processes** (``jax.distributed.initialize`` on a multi-host TPU/GPU slice, or
  several CPU processes on one machine), :func:`explain_dataset` gives each process a
  contiguous share of the images (:func:`process_range`) and all-gathers the per-image results
  (:func:`gather`), so every process ends with the whole dataset's maps and metrics, in dataset
  order. Masks come from one key shared by every image, so the split does not change any map.

Data-parallel Explainer training across processes is
:func:`rise_jax.explainer.train.train_explainer` with ``mesh=rise_jax.batch_mesh(jax.devices())``
(a mesh over every process's devices). ``experiments/README.md`` shows how to launch both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from rise_jax.metrics import causal, pointing
from rise_jax.rise import rise


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` with argument checks; a no-op for a single process.

  Give all three arguments on a plain set of machines (or several processes on one machine).
  With none of them (or ``num_processes=1``) nothing is initialised and the run is a single
  process. On Cloud TPU and SLURM/Open MPI clusters, where JAX discovers the arguments, call
  ``jax.distributed.initialize()`` yourself instead.

  Args:
    coordinator_address: ``"host:port"`` of process 0, reachable from every process.
    num_processes: Total number of processes, ``>= 1``; ``1`` skips initialisation.
    process_id: This process's id in ``[0, num_processes)``.

  Raises:
    ValueError: For a partial or out-of-range set of arguments.
  """
  given = [v is not None for v in (coordinator_address, num_processes, process_id)]
  if num_processes == 1 or not any(given):
    return
  if any(given) and not all(given):
    raise ValueError("give coordinator_address, num_processes and process_id together (or none "
                     f"of them on a cluster JAX can discover), got {coordinator_address=}, "
                     f"{num_processes=}, {process_id=}")
  if all(given):
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
      raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if (isinstance(process_id, bool) or not isinstance(process_id, int)
        or not 0 <= process_id < num_processes):
      raise ValueError(f"process_id must be an integer in [0, {num_processes}), got "
                       f"{process_id!r}")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def process_range(n: int, process_index: int | None = None,
                  process_count: int | None = None) -> range:
  """This process's contiguous share of ``n`` items (sizes differ by at most one).

  Args:
    n: Number of items, ``>= 0``.
    process_index: Default ``jax.process_index()``.
    process_count: Default ``jax.process_count()``.

  Returns:
    ``range(lo, hi)``; the shares of processes ``0 .. P - 1`` tile ``range(n)`` in order.
  """
  p = jax.process_count() if process_count is None else process_count
  i = jax.process_index() if process_index is None else process_index
  if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
    raise ValueError(f"n must be an integer >= 0, got {n!r}")
  if not 0 <= i < p:
    raise ValueError(f"process_index must be in [0, {p}), got {i}")
  base, extra = divmod(int(n), p)
  lo = i * base + min(i, extra)
  return range(lo, lo + base + (i < extra))


def gather(local: Any, n: int) -> np.ndarray:
  """All processes' shares (:func:`process_range` of ``n``) concatenated in order.

  A collective: every process must call it, with its own share.

  Args:
    local: [len(process_range(n)), ...] this process's rows.
    n: Total number of rows.

  Returns:
    [n, ...] the rows of every process, identical on every process.
  """
  local = np.asarray(local)
  mine = process_range(n)
  if local.shape[0] != len(mine):
    raise ValueError(f"local must have this process's {len(mine)} rows (process_range({n})), "
                     f"got {local.shape[0]}")
  p = jax.process_count()
  if p == 1:
    return local
  width = -(-n // p)
  padded = np.zeros((width, *local.shape[1:]), local.dtype)
  padded[:len(local)] = local
  every = np.asarray(multihost_utils.process_allgather(padded, tiled=False))
  return np.concatenate([every[i, :len(process_range(n, i, p))] for i in range(p)])


def explain_dataset(model_fn: Callable[[jax.Array], jax.Array], images: Any,
                    class_ids: Sequence[int], key, *, gt: Any = None,
                    rise_kwargs: dict | None = None, step: int = 224,
                    deletion_substrate="zeros", insertion_substrate="blur",
                    tolerance: float = 15, batch_size: int = 64,
                    progress: bool = False) -> dict[str, np.ndarray]:
  """RISE maps and their metrics for a dataset, split over processes and gathered.

  Each process explains the images of :func:`process_range` (one :func:`rise_jax.rise` call
  per image, masks sharded over its local devices), scores deletion and insertion and, with
  ``gt``, the pointing game, then all results are gathered. The output does not depend on the
  number of processes or devices.

  Args:
    model_fn: Black box ``float32[b, H, W, C_in] -> float32[b, C]`` (probabilities).
    images: float32[B, H, W, C_in], the same on every process.
    class_ids: int[B], the class explained in each image.
    key: PRNG key or int seed of the masks (shared by every image, as in the paper).
    gt: Optional bool[B, H, W] ground-truth mask of each image's class (pointing game).
    rise_kwargs: Extra arguments of :func:`rise_jax.rise` (``num_masks``, ``grid_size``,
      ``p1``, ``batch_size``, ``substrate``...).
    step: Pixels per deletion/insertion step.
    deletion_substrate, insertion_substrate: As in :func:`rise_jax.metrics.causal.deletion`
      and :func:`~rise_jax.metrics.causal.insertion`.
    tolerance: Pointing-game tolerance in pixels.
    batch_size: Perturbed images per black-box call of the metrics.
    progress: Show a progress bar (process 0 only).

  Returns:
    ``{"maps": float32[B, H, W], "deletion": float32[B], "insertion": float32[B],
    "pointing_hit": int32[B]}`` (the last only with ``gt``), in dataset order, on every
    process.
  """
  images = np.asarray(images, np.float32)
  ids = np.asarray(class_ids)
  if images.ndim != 4:
    raise ValueError(f"images must be [B, H, W, C_in], got shape {list(images.shape)}")
  n = images.shape[0]
  if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"class_ids must be integers of shape [{n}], got {ids.dtype}"
                     f"{list(ids.shape)}")
  if gt is not None:
    gt = np.asarray(gt)
    if gt.shape != images.shape[:3]:
      raise ValueError(f"gt must be [B, H, W] = {list(images.shape[:3])}, got "
                       f"{list(gt.shape)}")
  mine = process_range(n)
  maps = []
  for i in tqdm.tqdm(mine, desc=f"RISE (process {jax.process_index()})",
                     disable=not progress or jax.process_index() != 0):
    m = rise(model_fn, images[i], key, classes=[int(ids[i])], **(rise_kwargs or {}))
    maps.append(np.asarray(m[0], np.float32))
  h, w = images.shape[1:3]
  local_maps = np.stack(maps) if maps else np.zeros((0, h, w), np.float32)
  out = {"maps": local_maps}
  sl = slice(mine.start, mine.stop)
  if len(mine):
    kw = dict(step=step, batch_size=batch_size)
    out["deletion"] = np.asarray(causal.deletion(model_fn, images[sl], local_maps, ids[sl],
                                                 substrate=deletion_substrate, **kw)[0])
    out["insertion"] = np.asarray(causal.insertion(model_fn, images[sl], local_maps, ids[sl],
                                                   substrate=insertion_substrate, **kw)[0])
  else:
    out["deletion"] = out["insertion"] = np.zeros((0,), np.float32)
  if gt is not None:
    out["pointing_hit"] = np.asarray(
        [pointing.pointing_game(local_maps[k], gt[i], tolerance=tolerance)
         for k, i in enumerate(mine)], np.int32).reshape(-1)
  return {name: gather(v, n) for name, v in out.items()}


__all__ = ["explain_dataset", "gather", "initialize", "process_range"]
