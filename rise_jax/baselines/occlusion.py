"""Occlusion / sliding window (Zeiler & Fergus): the score drop when a window is occluded.

``S_c(p) = mean over windows W containing p of [f(x)_c - f(x with W replaced by substrate)_c]``;
pixels that no window covers get 0. Windows are streamed through the black box in fixed-size
batches by the same engine as RISE (window masks computed arithmetically from their index).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks, engine, masks as masks_lib, substrates

_HIGHEST = jax.lax.Precision.HIGHEST
_BASE_NOT_FINITE = -2  # ``bad`` code: the scores of the unoccluded image are not finite


@dataclasses.dataclass(frozen=True)
class _Config:
  size: tuple[int, int]
  window: int
  stride: int
  batch_size: int
  substrate: str | float | None
  selection: str


@functools.partial(jax.jit, static_argnames=("model_fn", "cfg", "mesh"))
def _occlusion(model_fn, cfg: _Config, mesh, images, ids, sub_array):
  h, w = cfg.size
  ny, nx = masks_lib.window_count_2d(cfg.size, cfg.window, cfg.stride)
  make = masks_lib.window_mask_fn(cfg.size, cfg.window, cfg.stride)

  def one(image, ids):
    sub = substrates.build(cfg.substrate if cfg.substrate is not None else sub_array, image)
    base = engine.call_in_batches(model_fn, image[None], cfg.batch_size)[0].astype(jnp.float32)
    if cfg.selection == "all":
      ids = jnp.arange(base.shape[0], dtype=jnp.int32)
    base = base[ids]

    def step(carry, idx, valid):
      acc, count, bad = carry
      inside = make(idx)
      scores = model_fn(substrates.perturb(image, 1.0 - inside, sub)).astype(jnp.float32)
      scores = scores[:, ids]
      bad = engine.first_bad(bad, scores, idx, valid)
      drop = jnp.where(valid[:, None], base[None] - scores, 0.0)
      flat = inside.reshape(-1, h * w) * valid[:, None]
      return (acc + jnp.dot(drop.T, flat, precision=_HIGHEST), count + flat.sum(0), bad)

    init = (jnp.zeros((ids.shape[0], h * w), jnp.float32), jnp.zeros((h * w,), jnp.float32),
            jnp.asarray(-1, jnp.int32))
    acc, count, bad = engine.stream(step, init, 0, ny * nx, cfg.batch_size, mesh)
    bad = jnp.where(jnp.all(jnp.isfinite(base)), bad, _BASE_NOT_FINITE)
    maps = jnp.where(count > 0, acc / jnp.maximum(count, 1.0), 0.0)
    return maps.reshape(-1, h, w), bad, ids

  return jax.lax.map(lambda a: one(*a), (images, ids))


def occlusion(model_fn: Callable[[jax.Array], jax.Array], images, *, window: int = 32,
              stride: int = 16, substrate="zeros", classes: None | int | Sequence[int] = None,
              batch_size: int = 64, return_ids: bool = False, mesh=None):
  """Occlusion saliency: mean score drop over the windows covering each pixel.

  Args:
    model_fn: Black box ``float32[b, H, W, C_in] -> scores float32[b, C]``.
    images: float32[H, W, C_in] or float32[B, H, W, C_in].
    window: Square window side in pixels, in ``[1, min(H, W)]``.
    stride: Step between window starts (>= 1); a last window is aligned with the far edge.
      With ``stride <= window`` every pixel is covered; with ``stride > window`` the pixels
      between windows are never occluded and get 0.
    substrate: What occluded pixels become (see :mod:`rise_jax.substrates`).
    classes: ``None`` (all), a sequence of ids, or an int ``k`` (top-k predicted).
    batch_size: Occluded images per black-box call.
    return_ids: Also return the class ids int32[B, K].
    mesh: Optional 1-D device mesh.

  Returns:
    float32[K, H, W] (one image) or float32[B, K, H, W].
  """
  batch, single = _checks.as_images(images)
  num_images, h, w, c = batch.shape
  window = _checks.positive_int(window, "window")
  stride = _checks.positive_int(stride, "stride")
  if window > min(h, w):
    raise ValueError(f"window must be in [1, {min(h, w)}] for a {h}x{w} image, got {window}")
  batch_size = _checks.positive_int(batch_size, "batch_size")
  ny, nx = masks_lib.window_count_2d((h, w), window, stride)
  batch_size = min(batch_size, ny * nx)  # capped at the windows: more would only be padding
  sub = substrates.check(substrate, (h, w, c))
  mesh = engine.batch_mesh() if mesh is None else mesh
  dev_batch = engine.device_batch_size(batch_size, mesh)
  out = engine.check_black_box(model_fn, jax.ShapeDtypeStruct((dev_batch, h, w, c), jnp.float32),
                               out_rank=2)
  sel = _checks.class_ids(classes, out[1])
  if sel is None:
    selection, ids = "all", np.zeros((num_images, 0), np.int32)
  elif isinstance(sel, int):
    selection = "ids"
    ids = np.asarray(jax.lax.top_k(engine.call_in_batches(model_fn, batch, dev_batch), sel)[1],
                     np.int32)
  else:
    selection, ids = "ids", np.tile(sel[None], (num_images, 1))
  cfg = _Config(size=(h, w), window=window, stride=stride, batch_size=dev_batch,
                substrate=sub if isinstance(sub, str | float) else None, selection=selection)
  sub_array = sub if cfg.substrate is None else jnp.zeros((), jnp.float32)
  maps, bad, ids = _occlusion(model_fn, cfg, mesh, batch, jnp.asarray(ids), sub_array)
  for i, first in enumerate(np.asarray(bad)):
    if first == _BASE_NOT_FINITE:
      raise engine.black_box_failure(model_fn, f"for image {i} on the unoccluded image (the "
                                     "score every drop is measured from)",
                                     returned="no map is returned")
    if first >= 0:
      raise engine.black_box_failure(
          model_fn, f"for image {i}, window {int(first)} (batch {int(first) // dev_batch})",
          returned="no map is returned")
  if single:
    maps, ids = maps[0], ids[0]
  return (maps, np.asarray(ids)) if return_ids else maps
