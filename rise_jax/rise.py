"""RISE (Petsiuk et al., BMVC 2018) and Segmentation RISE, on the streaming engine.

``S_c = 1 / (N * E[M]) * sum_i f(x * m_i + (1 - m_i) * substrate)_c * m_i`` for every class ``c``
at once, with ``E[M] = p1`` (``normalize="expected"``, the paper) or the per-pixel mean of the
masks actually drawn (``normalize="empirical"``). Masks are generated inside the jitted loop
from ``fold_in(key, i)`` and never all held in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks, engine, masks as masks_lib, substrates

NORMALIZE = ("expected", "empirical")
MERGE = ("mean", "max")
_HIGHEST = jax.lax.Precision.HIGHEST
_BASE_NOT_FINITE = -2  # ``bad`` code: the scores of the unmasked image (top-k) are not finite


class RiseInfo(NamedTuple):
  """What :func:`rise` did besides the maps.

  Attributes:
    class_ids: int32[B, K] the class of each map.
    num_masks: int32[B] masks used per image (``< N`` when ``tol`` stopped early).
  """

  class_ids: np.ndarray
  num_masks: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Config:
  """Static (compile-time) settings of one RISE run."""

  size: tuple[int, int]
  grid: tuple[int, int]
  p1: float
  num_masks: int
  batch_size: int
  normalize: str
  substrate: str | float | None  # None: a user array passed as a dynamic argument
  selection: str  # "all" | "ids" | "topk" | "segment"
  topk: int
  tol: float | None
  check_every: int
  use_mask_array: bool


def _mask_source(key, mask_array, cfg: _Config):
  if cfg.use_mask_array:
    last = mask_array.shape[0] - 1
    return lambda idx: mask_array[jnp.clip(idx, 0, last)]
  return masks_lib.mask_fn(key, cfg.size, cfg.grid, cfg.p1)


def _normalise(acc, msum, count, cfg: _Config):
  """acc float32[K, HW] -> saliency float32[K, HW]."""
  if cfg.normalize == "expected":
    return acc / (jnp.maximum(count, 1).astype(jnp.float32) * cfg.p1)
  return jnp.where(msum > 0, acc / jnp.where(msum > 0, msum, 1.0), 0.0)


def _select(model_fn, cfg: _Config, aux):
  """Returns ``scores(x) -> float32[b, K]`` for the run's class selection."""
  if cfg.selection == "all":
    return model_fn
  if cfg.selection in ("ids", "topk"):
    return lambda x: jnp.take(model_fn(x), aux, axis=1)
  weights, target = aux  # segment mean: weights float32[H'*W'] sum to 1
  def seg(x):
    out = model_fn(x)
    per_pixel = jnp.take(out.reshape(out.shape[0], -1, out.shape[-1]), target, axis=2)
    return (per_pixel @ weights)[:, None]
  return seg


def _rise_one(model_fn, cfg: _Config, mesh, image, key, mask_array, sub_array, aux):
  """RISE for one image. Returns (maps float32[K, H, W], used int32[], bad int32[], ids)."""
  h, w = cfg.size
  sub = substrates.build(cfg.substrate if cfg.substrate is not None else sub_array, image)
  make_masks = _mask_source(key, mask_array, cfg)
  base_ok = jnp.asarray(True)
  if cfg.selection == "topk":
    base = engine.call_in_batches(model_fn, image[None], cfg.batch_size)[0]
    base_ok = jnp.all(jnp.isfinite(base))
    aux = jax.lax.top_k(base, cfg.topk)[1].astype(jnp.int32)
  score_fn = _select(model_fn, cfg, aux)
  num_k = jax.eval_shape(score_fn, jax.ShapeDtypeStruct((cfg.batch_size, h, w, image.shape[-1]),
                                                        jnp.float32)).shape[1]

  def step(carry, idx, valid):
    acc, msum, bad = carry
    m = make_masks(idx)
    scores = score_fn(substrates.perturb(image, m, sub)).astype(jnp.float32)
    bad = engine.first_bad(bad, scores, idx, valid)
    weights = jnp.where(valid[:, None], scores, 0.0)
    flat = m.reshape(m.shape[0], h * w)
    acc = acc + jnp.dot(weights.T, flat, precision=_HIGHEST)
    msum = msum + jnp.dot(valid.astype(jnp.float32), flat, precision=_HIGHEST)
    return acc, msum, bad

  init = (jnp.zeros((num_k, h * w), jnp.float32), jnp.zeros((h * w,), jnp.float32),
          jnp.asarray(-1, jnp.int32))
  n = cfg.num_masks
  if cfg.tol is None:
    acc, msum, bad = engine.stream(step, init, 0, n, cfg.batch_size, mesh)
    used = jnp.asarray(n, jnp.int32)
  else:
    every = cfg.check_every

    def cond(state):
      done, _, _, converged = state
      return (done < n) & ~converged

    def body(state):
      done, carry, prev, _ = state
      stop = jnp.minimum(done + every, n)
      carry = engine.stream(step, carry, done, stop, cfg.batch_size, mesh)
      cur = _normalise(carry[0], carry[1], stop, cfg)
      change = jnp.linalg.norm(cur - prev) / jnp.maximum(jnp.linalg.norm(cur), 1e-30)
      return stop, carry, cur, (done > 0) & (change < cfg.tol)

    state = (jnp.asarray(0, jnp.int32), init, jnp.zeros((num_k, h * w), jnp.float32),
             jnp.asarray(False))
    used, (acc, msum, bad), _, _ = jax.lax.while_loop(cond, body, state)
  maps = _normalise(acc, msum, used, cfg).reshape(num_k, h, w)
  ids = aux if cfg.selection in ("ids", "topk") else jnp.arange(num_k, dtype=jnp.int32)
  bad = jnp.where(base_ok, bad, _BASE_NOT_FINITE)
  return maps, used, bad, ids


@functools.partial(jax.jit, static_argnames=("model_fn", "cfg", "mesh"))
def _rise_batch(model_fn, cfg, mesh, images, key, mask_array, sub_array, aux):
  one = functools.partial(_rise_one, model_fn, cfg, mesh, key=key, mask_array=mask_array,
                          sub_array=sub_array, aux=aux)
  return jax.lax.map(lambda im: one(im), images)


def _raise_if_bad(bad, batch_size: int, model_fn, what: str = "model_fn"):
  bad = np.asarray(bad).reshape(-1)
  for b, first in enumerate(bad):
    if first == _BASE_NOT_FINITE:
      raise engine.black_box_failure(
          model_fn, f"for image {b} on the unmasked image (whose scores pick the top-k "
          "classes)", name=what)
    if first >= 0:
      j = int(first) // batch_size
      raise engine.black_box_failure(
          model_fn, f"for image {b}, mask {int(first)} (mask batch {j}: masks "
          f"[{j * batch_size}, {(j + 1) * batch_size}))", name=what)


def _prepare(model_fn, images, key, *, num_masks, grid_size, p1, batch_size, substrate,
             normalize, masks, out_rank, mesh):
  """Shared validation for rise and segmentation_rise."""
  batch, single = _checks.as_images(images)
  size = (int(batch.shape[1]), int(batch.shape[2]))
  key = _checks.as_key(key)
  _checks.choice(normalize, "normalize", NORMALIZE)
  p1 = _checks.open_unit(p1, "p1")
  batch_size = _checks.positive_int(batch_size, "batch_size")
  sub = substrates.check(substrate, batch.shape[1:])
  mask_array = jnp.zeros((1, 1, 1), jnp.float32)
  if masks is not None:
    masks = masks if hasattr(masks, "shape") else np.asarray(masks)
    mask_array = jnp.asarray(_checks.mask_set(masks, "masks", size))
    num_masks = _checks.positive_int(int(mask_array.shape[0]), "masks.shape[0]")
    grid = (1, 1)
  else:
    num_masks = _checks.positive_int(num_masks, "num_masks")
    grid = _checks.grid_size(grid_size, size)
  # Capped, not refused: more images per call than masks would only be padding (memory grows
  # with batch_size, not with the work); results do not depend on the batch size.
  batch_size = min(batch_size, num_masks)
  mesh = engine.batch_mesh() if mesh is None else mesh
  dev_batch = engine.device_batch_size(batch_size, mesh)
  out_shape = engine.check_black_box(
      model_fn, jax.ShapeDtypeStruct((dev_batch, *batch.shape[1:]), jnp.float32),
      out_rank=out_rank)
  sub_array = sub if not isinstance(sub, str | float) else jnp.zeros((), jnp.float32)
  sub_static = sub if isinstance(sub, str | float) else None
  return dict(batch=batch, single=single, size=size, key=key, p1=p1, grid=grid,
              num_masks=num_masks, dev_batch=dev_batch, mask_array=mask_array,
              sub_array=sub_array, sub_static=sub_static, out_shape=out_shape, mesh=mesh,
              use_mask_array=masks is not None)


def rise(model_fn: Callable[[jax.Array], jax.Array], images: jax.Array, key, *,
         num_masks: int = 4000, grid_size: int | tuple[int, int] = 7, p1: float = 0.5,
         batch_size: int = 100, substrate="zeros", normalize: str = "expected",
         classes: None | int | Sequence[int] = None, masks: jax.Array | None = None,
         tol: float | None = None, check_every: int = 500, return_info: bool = False,
         mesh=None):
  """RISE saliency maps for every requested class at once (Petsiuk et al., eq. 6).

  ``S_c = sum_i f(x_{m_i})_c * m_i / (N * E[M])`` with ``x_m = m * x + (1 - m) * substrate``.
  Masks are generated inside one jitted loop from ``fold_in(key, i)``, batch by batch, and
  never all held in memory; the result for a key does not depend on ``batch_size`` or on the
  number of devices (each batch is sharded over a 1-D mesh of all local devices).

  Args:
    model_fn: JAX-traceable black box ``float32[b, H, W, C_in] -> scores float32[b, C]``
      (probabilities or logits, as you choose). Each call gets exactly ``batch_size`` images
      (capped at the number of masks, then rounded up to a multiple of the device count), so
      a black box compiled or exported for one batch size works.
    images: float32[H, W, C_in] or float32[B, H, W, C_in], in the model's input space.
    key: PRNG key or int seed. Mask ``i`` is ``generate_masks(key, ...)[i]``.
    num_masks: ``N >= 1`` (paper: 4000 for VGG16, 8000 for ResNet50). Ignored with ``masks``.
    grid_size: ``s`` or ``(s_h, s_w)`` (paper: 7).
    p1: Probability of keeping a grid cell, in (0, 1) (paper: 0.5).
    batch_size: Masked images per black-box call; memory is O(batch_size * H * W). Capped at
      the number of masks (larger batches would only be padding).
    substrate: ``"zeros"`` (default), a float, ``"mean"``, ``"blur"``, ``"blur_normalized"`` or
      an array broadcastable to ``[H, W, C_in]`` (see :mod:`rise_jax.substrates`).
    normalize: ``"expected"`` divides by ``N * p1`` (paper); ``"empirical"`` by the per-pixel
      sum of the masks drawn.
    classes: ``None`` for all ``C`` classes, a sequence of class ids, or an int ``k`` for the
      top-k classes predicted on the unmasked image.
    masks: Optional float32[N, H, W] saved mask set (e.g. from :func:`load_masks`) used instead
      of key-generated masks; ``N >= 1``, finite, values in [0, 1]. With
      ``normalize="expected"``, ``p1`` must be the probability they were generated with.
    tol: Optional early stop: every ``check_every`` masks the map is compared with the
      previous checkpoint and the run stops when ``||S_t - S_{t-1}|| / ||S_t|| < tol``.
    check_every: Masks between two early-stopping checkpoints.
    return_info: Also return a :class:`RiseInfo` (class ids and masks used).
    mesh: Optional 1-D ``jax.sharding.Mesh`` with axis ``"batch"`` (default: all local
      devices).

  Returns:
    float32[K, H, W] for one image or float32[B, K, H, W] for a batch (``K = C``, the number of
    ids, or ``k``); with ``return_info``, ``(maps, RiseInfo)``.

  Raises:
    ValueError, TypeError: For invalid arguments (message names the argument), including
      images or masks with NaN or inf values.
    FloatingPointError: When the black box returns NaN/inf for some mask batch (or, with
      ``classes=k``, on the unmasked image).
  """
  prep = _prepare(model_fn, images, key, num_masks=num_masks, grid_size=grid_size, p1=p1,
                  batch_size=batch_size, substrate=substrate, normalize=normalize, masks=masks,
                  out_rank=2, mesh=mesh)
  num_classes = prep["out_shape"][1]
  sel = _checks.class_ids(classes, num_classes)
  check_every = _checks.positive_int(check_every, "check_every")
  tol = _checks.positive_number(tol, "tol", allow_none=True)
  if sel is None:
    selection, topk, aux = "all", 0, jnp.zeros((0,), jnp.int32)
  elif isinstance(sel, int):
    selection, topk, aux = "topk", sel, jnp.zeros((sel,), jnp.int32)
  else:
    selection, topk, aux = "ids", 0, jnp.asarray(sel)
  cfg = _Config(size=prep["size"], grid=prep["grid"], p1=prep["p1"],
                num_masks=prep["num_masks"], batch_size=prep["dev_batch"],
                normalize=normalize, substrate=prep["sub_static"], selection=selection,
                topk=topk, tol=None if tol is None else float(tol), check_every=check_every,
                use_mask_array=prep["use_mask_array"])
  maps, used, bad, ids = _rise_batch(model_fn, cfg, prep["mesh"], prep["batch"], prep["key"],
                                     prep["mask_array"], prep["sub_array"], aux)
  _raise_if_bad(bad, cfg.batch_size, model_fn)
  if prep["single"]:
    maps = maps[0]
  if not return_info:
    return maps
  return maps, RiseInfo(class_ids=np.asarray(ids), num_masks=np.asarray(used))


def segmentation_rise(model_fn: Callable[[jax.Array], jax.Array], image: jax.Array, key, *,
                      target_class: int, region=None, merge: str = "mean",
                      num_masks: int = 4000, grid_size: int | tuple[int, int] = 7,
                      p1: float = 0.5, batch_size: int = 100, substrate="zeros",
                      normalize: str = "expected", masks: jax.Array | None = None,
                      pixel_chunk: int = 256, mesh=None) -> jax.Array:
  """Segmentation RISE: saliency of a segment, merging per-output-pixel RISE maps.

  Every output pixel ``p`` of the explained segment is its own class with score
  ``f(x_m)[p, target_class]``; its RISE map ``S_p`` is computed as in :func:`rise` and the maps
  are merged over the segment with ``max`` or ``mean``.

  * ``merge="mean"`` streams exactly like RISE with the segment-mean score as the scalar.
  * ``merge="max"`` keeps the ``N x P`` score matrix of the ``P`` segment pixels, then
    regenerates the masks from the key and reduces over the pixels in chunks of
    ``pixel_chunk``; no ``P x H x W`` tensor is ever built.

  Args:
    model_fn: Black box ``float32[b, H, W, C_in] -> scores float32[b, H', W', K]``.
    image: float32[H, W, C_in].
    key: PRNG key or int seed (same masks as :func:`rise` and :func:`generate_masks`).
    target_class: Class id in ``[0, K)`` whose score is explained.
    region: Optional bool[H', W'] segment; default: the pixels predicted as ``target_class``
      (argmax over ``K``) on the unmasked image. Must be non-empty.
    merge: ``"mean"`` or ``"max"``.
    num_masks, grid_size, p1, batch_size, substrate, normalize, masks, mesh: As in
      :func:`rise`.
    pixel_chunk: Segment pixels reduced at once by ``merge="max"`` (memory
      ``pixel_chunk * H * W``; capped at the number of segment pixels).

  Returns:
    float32[H, W] merged saliency map.
  """
  arr = image if hasattr(image, "ndim") else None
  if arr is not None and arr.ndim != 3:
    raise ValueError(f"image must have shape [H, W, C], got shape {tuple(arr.shape)}")
  _checks.choice(merge, "merge", MERGE)
  pixel_chunk = _checks.positive_int(pixel_chunk, "pixel_chunk")
  prep = _prepare(model_fn, image, key, num_masks=num_masks, grid_size=grid_size, p1=p1,
                  batch_size=batch_size, substrate=substrate, normalize=normalize, masks=masks,
                  out_rank=4, mesh=mesh)
  _, out_h, out_w, num_k = prep["out_shape"]
  if (isinstance(target_class, bool) or not isinstance(target_class, int | np.integer)
      or not 0 <= target_class < num_k):
    raise ValueError(
        f"target_class must be an int in [0, {num_k - 1}] (model_fn returns {num_k} classes), "
        f"got {target_class!r}")
  target_class = int(target_class)
  x = prep["batch"][0]
  if region is None:
    pred = jnp.argmax(engine.call_in_batches(model_fn, x[None], prep["dev_batch"])[0], axis=-1)
    region = np.asarray(pred == target_class)
    if not region.any():
      raise ValueError(
          f"no output pixel is predicted as target_class {target_class} on the unmasked "
          "image; pass region=bool[H', W'] to explain a segment explicitly")
  else:
    region = np.asarray(region)
    if region.shape != (out_h, out_w) or region.dtype != np.bool_:
      raise ValueError(
          f"region must be a boolean mask of shape [{out_h}, {out_w}] (the model's output "
          f"size), got {region.dtype}{list(region.shape)}")
    if not region.any():
      raise ValueError("region must contain at least one pixel, got an empty mask")
  cfg_kw = dict(size=prep["size"], grid=prep["grid"], p1=prep["p1"],
                num_masks=prep["num_masks"], batch_size=prep["dev_batch"], normalize=normalize,
                substrate=prep["sub_static"], topk=0, tol=None, check_every=1,
                use_mask_array=prep["use_mask_array"])
  if merge == "mean":
    weights = jnp.asarray(region.reshape(-1) / region.sum(), jnp.float32)
    cfg = _Config(selection="segment", **cfg_kw)
    maps, _, bad, _ = _rise_batch(model_fn, cfg, prep["mesh"], prep["batch"], prep["key"],
                                  prep["mask_array"], prep["sub_array"],
                                  (weights, jnp.asarray(target_class, jnp.int32)))
    _raise_if_bad(bad, cfg.batch_size, model_fn)
    return maps[0, 0]
  pixels = np.flatnonzero(region.reshape(-1)).astype(np.int32)
  pixel_chunk = min(pixel_chunk, len(pixels))  # memory follows the segment, not the chunk
  num_p = int(math.ceil(len(pixels) / pixel_chunk) * pixel_chunk)
  padded = np.zeros(num_p, np.int32)
  padded[:len(pixels)] = pixels
  cfg = _Config(selection="segment", **cfg_kw)
  out, bad = _seg_max(model_fn, cfg, prep["mesh"], pixel_chunk, x, prep["key"],
                      prep["mask_array"], prep["sub_array"], jnp.asarray(padded),
                      jnp.asarray(len(pixels), jnp.int32),
                      jnp.asarray(target_class, jnp.int32))
  _raise_if_bad(bad, cfg.batch_size, model_fn)
  return out


@functools.partial(jax.jit, static_argnames=("model_fn", "cfg", "mesh", "pixel_chunk"))
def _seg_max(model_fn, cfg: _Config, mesh, pixel_chunk, image, key, mask_array, sub_array,
             pixels, num_pixels, target):
  """Max-merged Segmentation RISE: score matrix N x P, then chunked reduction over P."""
  h, w = cfg.size
  n, b = cfg.num_masks, cfg.batch_size
  num_rows = int(math.ceil(n / b) * b)
  sub = substrates.build(cfg.substrate if cfg.substrate is not None else sub_array, image)
  make_masks = _mask_source(key, mask_array, cfg)

  def score_step(carry, idx, valid):
    table, msum, bad = carry
    m = make_masks(idx)
    out = model_fn(substrates.perturb(image, m, sub)).astype(jnp.float32)
    out = jnp.take(out.reshape(out.shape[0], -1, out.shape[-1]), target, axis=2)
    scores = jnp.take(out, pixels, axis=1)  # [b, P]
    bad = engine.first_bad(bad, scores, idx, valid)
    scores = jnp.where(valid[:, None], scores, 0.0)
    table = jax.lax.dynamic_update_slice(table, scores, (idx[0], 0))
    flat = m.reshape(m.shape[0], h * w)
    msum = msum + jnp.dot(valid.astype(jnp.float32), flat, precision=_HIGHEST)
    return table, msum, bad

  init = (jnp.zeros((num_rows, pixels.shape[0]), jnp.float32),
          jnp.zeros((h * w,), jnp.float32), jnp.asarray(-1, jnp.int32))
  table, msum, bad = engine.stream(score_step, init, 0, n, b, mesh)

  def chunk(c, best):
    cols = jax.lax.dynamic_slice_in_dim(table, c * pixel_chunk, pixel_chunk, axis=1)

    def map_step(acc, idx, valid):
      m = make_masks(idx).reshape(idx.shape[0], h * w)
      rows = jnp.take(cols, jnp.clip(idx, 0, num_rows - 1), axis=0)
      rows = jnp.where(valid[:, None], rows, 0.0)
      return acc + jnp.dot(rows.T, m, precision=_HIGHEST)

    acc = engine.stream(map_step, jnp.zeros((pixel_chunk, h * w), jnp.float32), 0, n, b, mesh)
    maps = _normalise(acc, msum, n, cfg)
    real = (c * pixel_chunk + jnp.arange(pixel_chunk)) < num_pixels
    maps = jnp.where(real[:, None], maps, -jnp.inf)
    return jnp.maximum(best, maps.max(axis=0))

  best = jax.lax.fori_loop(0, pixels.shape[0] // pixel_chunk, chunk,
                           jnp.full((h * w,), -jnp.inf, jnp.float32))
  return best.reshape(h, w), bad
