"""Causal metrics (Petsiuk et al., §4.1): deletion and insertion curves and their AUC.

Pixels are ranked by saliency in the RISE authors' order, ``flip(argsort(saliency))`` with a
stable argsort: descending, and among equal values the higher (row-major) pixel index first. At
step
``k`` of ``n = ceil(H * W / step)`` steps the top ``min(k * step, H * W)`` pixels are

* deletion: replaced by the deletion substrate (default zeros, i.e. the mean colour in
  normalised space);
* insertion: copied from the image into the insertion canvas (default the authors' Gaussian
  blur of the image, ``gkern(11, 5)``: substrate ``"blur"``).

The curve holds the black box's score of the explained class at steps ``0..n`` and its AUC is
the trapezoid rule on ``[0, 1]``. Every step of every image goes through the black box in
fixed-size batches inside one jitted program (the streaming engine): item ``i`` is the pair
``(image i // (n + 1), step i % (n + 1))`` and its perturbation is computed arithmetically from
the pixel ranks, so nothing of size ``B * n * H * W`` is ever built.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks, engine, substrates


def auc(curve) -> np.ndarray:
  """Area under a curve sampled uniformly on [0, 1], by the trapezoid rule.

  ``(sum(a) - a[0] / 2 - a[-1] / 2) / (len(a) - 1)``.

  Args:
    curve: float[..., n + 1] with ``n >= 1``.

  Returns:
    float[...] areas.
  """
  a = np.asarray(curve, np.float64)
  if a.ndim < 1 or a.shape[-1] < 2:
    raise ValueError(f"curve must have at least 2 points on its last axis, got shape {a.shape}")
  if not np.all(np.isfinite(a)):
    raise ValueError("curve contains NaN or inf values")
  return (a.sum(-1) - a[..., 0] / 2 - a[..., -1] / 2) / (a.shape[-1] - 1)


def pixel_ranks(saliency: jax.Array) -> jax.Array:
  """Rank of each pixel, 0 = most salient, in the RISE authors' order.

  The authors' ``evaluation.py`` orders pixels by ``np.flip(np.argsort(saliency))``. NumPy's
  default argsort is not stable: the order of equal values depends on the NumPy build and CPU
  (its SIMD sorts), so this takes the stable equivalent ``flip(argsort(kind="stable"))``:
  descending, and among equal values the higher pixel index first (a constant map is
  visited from the last pixel to the first).

  Args:
    saliency: float[B, H, W].

  Returns:
    int32[B, H * W] ranks.
  """
  flat = saliency.reshape(saliency.shape[0], -1)
  order = jnp.flip(jnp.argsort(flat, axis=1, stable=True), axis=1)
  b, p = flat.shape
  ranks = jnp.zeros((b, p), jnp.int32)
  return ranks.at[jnp.arange(b)[:, None], order].set(jnp.arange(p, dtype=jnp.int32)[None])


@dataclasses.dataclass(frozen=True)
class _Config:
  mode: str  # "deletion" | "insertion"
  step: int
  num_steps: int
  batch_size: int
  substrate: str | float | None


@functools.partial(jax.jit, static_argnames=("model_fn", "cfg", "mesh"))
def _curves(model_fn, cfg: _Config, mesh, images, saliency, class_ids, sub_array):
  num_images, h, w, _ = images.shape
  ranks = pixel_ranks(saliency)
  per_image = cfg.num_steps + 1
  total = num_images * per_image
  spec = cfg.substrate if cfg.substrate is not None else sub_array
  subs = jax.vmap(lambda x: jnp.broadcast_to(substrates.build(spec, x), x.shape))(images)

  def step(carry, idx, valid):
    curve, bad = carry
    safe = jnp.minimum(idx, total - 1)
    img, k = safe // per_image, safe % per_image
    changed = (ranks[img] < (k * cfg.step)[:, None]).astype(jnp.float32).reshape(-1, h, w, 1)
    x, s = images[img], subs[img]
    if cfg.mode == "deletion":
      batch = changed * s + (1.0 - changed) * x
    else:
      batch = changed * x + (1.0 - changed) * s
    scores = model_fn(batch).astype(jnp.float32)
    picked = jnp.take_along_axis(scores, class_ids[img][:, None], axis=1)[:, 0]
    bad = engine.first_bad(bad, picked[:, None], idx, valid)
    curve = curve.at[jnp.where(valid, idx, total)].set(picked, mode="drop")
    return curve, bad

  init = (jnp.zeros((total,), jnp.float32), jnp.asarray(-1, jnp.int32))
  curve, bad = engine.stream(step, init, 0, total, cfg.batch_size, mesh)
  return curve.reshape(num_images, per_image), bad


def _causal(mode, model_fn, images, saliency, class_ids, *, step, substrate, batch_size,
            mesh):
  batch, single = _checks.as_images(images)
  num_images, h, w, c = batch.shape
  sal = np.asarray(saliency)  # checked on the host: no eager device ops per call
  if single and sal.ndim == 2:
    sal = sal[None]
  if sal.ndim == 4 and sal.shape[1] == 1:
    sal = sal[:, 0]
  if sal.shape != (num_images, h, w):
    raise ValueError(
        f"saliency must have shape [B, H, W] = {[num_images, h, w]} (or [B, 1, H, W]) to match "
        f"the images, got {list(sal.shape)}")
  if not np.issubdtype(sal.dtype, np.floating) and not np.issubdtype(sal.dtype, np.integer):
    raise TypeError(f"saliency must be numeric, got dtype {sal.dtype}")
  if not np.all(np.isfinite(sal)):
    raise ValueError("saliency contains NaN or inf values; causal metrics need a finite ranking")
  step = _checks.positive_int(step, "step")
  batch_size = _checks.positive_int(batch_size, "batch_size")
  sub = substrates.check(substrate, (h, w, c))
  ids = np.asarray(class_ids).reshape(-1) if np.ndim(class_ids) else np.asarray([class_ids])
  if ids.shape != (num_images,) or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(
        f"class_ids must be {num_images} integer class id(s), one per image, got {class_ids!r}")
  mesh = engine.batch_mesh() if mesh is None else mesh
  # Capped at the images' steps: larger batches would only be padding.
  batch_size = min(batch_size, num_images * (math.ceil(h * w / step) + 1))
  dev_batch = engine.device_batch_size(batch_size, mesh)
  out = engine.check_black_box(model_fn, jax.ShapeDtypeStruct((dev_batch, h, w, c), jnp.float32),
                               out_rank=2)
  if ids.min() < 0 or ids.max() >= out[1]:
    raise ValueError(
        f"class_ids must be in [0, {out[1] - 1}] (the model returns {out[1]} scores), got "
        f"{ids.tolist()}")
  cfg = _Config(mode=mode, step=step, num_steps=math.ceil(h * w / step), batch_size=dev_batch,
                substrate=sub if isinstance(sub, str | float) else None)
  sub_array = sub if cfg.substrate is None else jnp.zeros((), jnp.float32)
  curve, bad = jax.device_get(_curves(model_fn, cfg, mesh, batch, sal.astype(np.float32),
                                      ids.astype(np.int32), sub_array))
  bad = int(bad)
  if bad >= 0:
    per = cfg.num_steps + 1
    raise engine.black_box_failure(
        model_fn, f"for image {bad // per} at {mode} step {bad % per} (batch "
        f"{bad // dev_batch})", returned="no curve is returned")
  curve = np.asarray(curve)
  scores = auc(curve).astype(np.float32)
  if single:
    return scores[0], curve[0]
  return scores, curve


def deletion(model_fn: Callable[[jax.Array], jax.Array], images, saliency, class_ids, *,
             step: int = 224, substrate="zeros", batch_size: int = 64, mesh=None):
  """Deletion metric: the class score as the most salient pixels are removed (lower is better).

  Args:
    model_fn: Black box ``float32[b, H, W, C_in] -> scores float32[b, C]`` (probabilities,
      as in the paper).
    images: float32[B, H, W, C_in] (or one [H, W, C_in] image).
    saliency: float[B, H, W] (or [B, 1, H, W]; or [H, W] for one image).
    class_ids: int[B] (or an int for one image): the class explained in each image.
    step: Pixels removed per step (paper: 224, one row of a 224 image).
    substrate: What removed pixels become: ``"zeros"``, a float, ``"mean"``, ``"blur"``,
      ``"blur_normalized"`` or an array (see :mod:`rise_jax.substrates`).
    batch_size: Perturbed images per black-box call.
    mesh: Optional 1-D device mesh (default: all local devices).

  Returns:
    ``(auc float32[B], curve float32[B, n + 1])`` with ``n = ceil(H * W / step)``; scalars and
    [n + 1] for one image.
  """
  return _causal("deletion", model_fn, images, saliency, class_ids, step=step,
                 substrate=substrate, batch_size=batch_size, mesh=mesh)


def insertion(model_fn: Callable[[jax.Array], jax.Array], images, saliency, class_ids, *,
              step: int = 224, substrate="blur", batch_size: int = 64, mesh=None):
  """Insertion metric: the class score as the most salient pixels are inserted into a canvas.

  Same arguments as :func:`deletion`; ``substrate`` is the starting canvas (default ``"blur"``:
  the authors' ``gkern(11, 5)`` blur of the image). Higher AUC is better.
  """
  return _causal("insertion", model_fn, images, saliency, class_ids, step=step,
                 substrate=substrate, batch_size=batch_size, mesh=mesh)


class CausalAccumulator:
  """Deletion and insertion AUCs of many (image, map, class) triples, scored in fixed chunks.

  Triples are buffered and scored ``chunk`` at a time (the last chunk padded with earlier
  triples), so one compiled program serves every chunk; the AUCs and the sum of the curves are
  kept per mode.

  Args:
    model_fn: Black box ``float32[b, H, W, 3] -> float32[b, C]``.
    step: Pixels per step.
    chunk: Triples per scoring call.
    batch_size: Black-box batch size.
    modes: Which of ``("deletion", "insertion")`` to score.
    deletion_substrate: Substrate of :func:`deletion`.
    insertion_substrate: Canvas of :func:`insertion`.
  """

  def __init__(self, model_fn: Callable[[jax.Array], jax.Array], *, step: int, chunk: int,
               batch_size: int, modes=("deletion", "insertion"),
               deletion_substrate="zeros", insertion_substrate="blur"):
    unknown = [m for m in modes if m not in ("deletion", "insertion")]
    if unknown or int(chunk) < 1:
      raise ValueError(f"modes must be a subset of ('deletion', 'insertion') and chunk >= 1, got "
                       f"{tuple(modes)} and {chunk}")
    self.model_fn, self.step, self.chunk, self.batch_size = model_fn, step, int(chunk), batch_size
    self.substrates = {"deletion": deletion_substrate, "insertion": insertion_substrate}
    self.modes = tuple(modes)
    self.pending: list[tuple[np.ndarray, np.ndarray, int]] = []
    self.auc: dict[str, list[float]] = {m: [] for m in self.modes}
    self.curve_sum: dict[str, np.ndarray | None] = {m: None for m in self.modes}

  def add(self, image, saliency, class_id: int) -> None:
    """Queues ``image float32[H, W, 3]`` with its map ``float32[H, W]`` of ``class_id``."""
    self.pending.append((np.asarray(image), np.asarray(saliency), int(class_id)))
    if len(self.pending) >= self.chunk:
      self.flush()

  def flush(self) -> None:
    """Scores the queued triples."""
    if not self.pending:
      return
    n = len(self.pending)
    idx = np.arange(self.chunk) % n  # pad with earlier triples: one compiled shape
    images = np.stack([self.pending[i][0] for i in idx])
    sal = np.stack([self.pending[i][1] for i in idx])
    ids = np.asarray([self.pending[i][2] for i in idx])
    for mode in self.modes:
      fn = deletion if mode == "deletion" else insertion
      aucs, curves = fn(self.model_fn, images, sal, ids, step=self.step,
                        substrate=self.substrates[mode], batch_size=self.batch_size)
      self.auc[mode] += [float(a) for a in np.asarray(aucs)[:n]]
      s = np.asarray(curves, np.float64)[:n].sum(0)
      self.curve_sum[mode] = s if self.curve_sum[mode] is None else self.curve_sum[mode] + s
    self.pending = []
