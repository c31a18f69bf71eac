"""RISE random masks (Petsiuk et al., §3.2), addressed by ``(key, index)``.

Mask ``i`` is a pure function of ``jax.random.fold_in(key, i)``: a binary grid
``g ~ Bernoulli(p1)`` of ``s_h x s_w`` cells is bilinearly upsampled to
``((s_h + 1) * ch, (s_w + 1) * cw)`` with ``ch = ceil(H / s_h)``, ``cw = ceil(W / s_w)``, and an
``H x W`` window is cropped at a uniform shift ``dy in [0, ch)``, ``dx in [0, cw)``.

Bilinear upsampling followed by the crop is linear in ``g``, so it is computed exactly as
``A_h[dy:dy + H] @ g @ A_w[dx:dx + W]^T`` where ``A`` is the ``jax.image.resize(..., "linear")``
matrix (half-pixel centres, edge clamping). This is identical to resizing the grid with
``jax.image.resize`` and cropping, and far cheaper. See docs/DECISIONS.md for how it relates to
the authors' ``skimage.transform.resize(mode="reflect")``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks

_HIGHEST = jax.lax.Precision.HIGHEST


def resize_matrix(in_size: int, out_size: int) -> jax.Array:
  """The matrix of ``jax.image.resize(x, out_size, "linear")`` along one axis.

  Args:
    in_size: Input length ``n``.
    out_size: Output length ``m``.

  Returns:
    float32[m, n] ``A`` such that ``resize(x) == A @ x`` for x float32[n].
  """
  return jax.image.resize(jnp.eye(in_size, dtype=jnp.float32), (out_size, in_size), "linear")


def cell_size(input_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
  """``(ch, cw) = (ceil(H / s_h), ceil(W / s_w))``."""
  return math.ceil(input_size[0] / grid[0]), math.ceil(input_size[1] / grid[1])


def mask_draws(key: jax.Array, index: jax.Array, input_size: tuple[int, int],
               grid: tuple[int, int], p1: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The random draws behind mask ``index``: its binary grid and its shift.

  Args:
    key: PRNG key of the mask set.
    index: int32[] mask index.
    input_size: ``(H, W)``.
    grid: ``(s_h, s_w)``.
    p1: Probability of a grid cell being 1.

  Returns:
    ``(grid float32[s_h, s_w], dy int32[], dx int32[])``.
  """
  ch, cw = cell_size(input_size, grid)
  kg, ky, kx = jax.random.split(jax.random.fold_in(key, index), 3)
  g = jax.random.bernoulli(kg, p1, grid).astype(jnp.float32)
  dy = jax.random.randint(ky, (), 0, ch)
  dx = jax.random.randint(kx, (), 0, cw)
  return g, dy, dx


def mask_fn(key: jax.Array, input_size: tuple[int, int], grid: tuple[int, int],
            p1: float) -> Callable[[jax.Array], jax.Array]:
  """Returns ``masks(indices int32[b]) -> float32[b, H, W]``, pure and jit-friendly."""
  h, w = input_size
  ch, cw = cell_size(input_size, grid)
  a_h = resize_matrix(grid[0], (grid[0] + 1) * ch)
  a_w = resize_matrix(grid[1], (grid[1] + 1) * cw)

  def one(index):
    g, dy, dx = mask_draws(key, index, input_size, grid, p1)
    rows = jax.lax.dynamic_slice(a_h, (dy, 0), (h, grid[0]))
    cols = jax.lax.dynamic_slice(a_w, (dx, 0), (w, grid[1]))
    return jnp.dot(jnp.dot(rows, g, precision=_HIGHEST), cols.T, precision=_HIGHEST)

  return jax.vmap(one)


def generate_masks(key, num_masks: int, input_size, grid_size=7, p1: float = 0.5, *,
                   batch_size: int = 1000, savepath: str | os.PathLike | None = None
                   ) -> jax.Array:
  """Generates ``num_masks`` RISE masks (paper §3.2).

  Mask ``i`` depends only on ``(key, i)``: ``generate_masks(key, 10)[:5]`` equals
  ``generate_masks(key, 5)``, and ``rise(..., key=key)`` uses exactly these masks.

  Args:
    key: PRNG key or int seed.
    num_masks: Number of masks ``N >= 1``.
    input_size: ``H`` or ``(H, W)``.
    grid_size: ``s`` or ``(s_h, s_w)``, each in ``[1, H]`` resp. ``[1, W]`` (paper: 7).
    p1: Probability that a grid cell is kept, in (0, 1) (paper: 0.5).
    batch_size: Masks generated per jitted call (memory only; does not change the result).
    savepath: Optional ``.npy`` path to save the masks to (as the original tools do).

  Returns:
    float32[N, H, W] masks with values in [0, 1].
  """
  key = _checks.as_key(key)
  num_masks = _checks.positive_int(num_masks, "num_masks")
  batch_size = _checks.positive_int(batch_size, "batch_size")
  size = _checks.input_size(input_size)
  grid = _checks.grid_size(grid_size, size)
  p1 = _checks.open_unit(p1, "p1")
  fn = jax.jit(mask_fn(key, size, grid, p1))
  parts = []
  for start in range(0, num_masks, batch_size):
    stop = min(start + batch_size, num_masks)
    parts.append(fn(jnp.arange(start, stop, dtype=jnp.int32)))
  masks = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
  if savepath is not None:
    save_masks(savepath, masks)
  return masks


def save_masks(path: str | os.PathLike, masks) -> None:
  """Saves float32[N, H, W] masks to a ``.npy`` file."""
  masks = np.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f"masks must have shape [N, H, W], got {masks.shape}")
  np.save(path, masks.astype(np.float32))


def load_masks(path: str | os.PathLike) -> np.ndarray:
  """Loads masks saved by :func:`save_masks` (or any ``.npy`` of shape [N, H, W] or
  [N, 1, H, W] / [N, H, W, 1], as the original RISE code writes)."""
  masks = np.load(path)
  if masks.ndim == 4 and 1 in (masks.shape[1], masks.shape[3]):
    masks = masks.reshape(masks.shape[0], *[d for d in masks.shape[1:] if d != 1][:2])
  if masks.ndim != 3:
    raise ValueError(f"{path}: masks must have shape [N, H, W], got {masks.shape}")
  if not np.issubdtype(masks.dtype, np.floating):
    raise ValueError(f"{path}: masks must be floating point in [0, 1], got {masks.dtype}")
  return masks.astype(np.float32)
