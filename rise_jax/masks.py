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

import functools
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


def _two_taps(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Writes a bilinear resize matrix as ``A[o] = w0[o] e_{i0[o]} + w1[o] e_{i0[o] + 1}``.

  Index ``n_in`` (one past the last input) may appear with weight 0; callers pad with a zero.
  """
  rows = np.arange(a.shape[0])
  i0 = np.argmax(a > 0, axis=1)
  padded = np.concatenate([a, np.zeros((a.shape[0], 1), a.dtype)], axis=1)
  return i0.astype(np.int32), padded[rows, i0], padded[rows, i0 + 1]


def mask_fn(key: jax.Array, input_size: tuple[int, int], grid: tuple[int, int],
            p1: float) -> Callable[[jax.Array], jax.Array]:
  """Returns ``masks(indices int32[b]) -> float32[b, H, W]``, pure and jit-friendly.

  Computes ``A_h[dy:dy+H] @ g @ A_w[dx:dx+W]^T``: the column product as a small matmul, the
  row product with the two non-zero taps per row of the bilinear matrix (exact, and about 3x
  cheaper than a second matmul on CPU).
  """
  h, w = input_size
  ch, cw = cell_size(input_size, grid)
  with jax.ensure_compile_time_eval():
    a_h = np.asarray(resize_matrix(grid[0], (grid[0] + 1) * ch))
    a_w = resize_matrix(grid[1], (grid[1] + 1) * cw)
  i0, w0, w1 = (jnp.asarray(t) for t in _two_taps(a_h))

  def one(index):
    g, dy, dx = mask_draws(key, index, input_size, grid, p1)
    cols = jax.lax.dynamic_slice(a_w, (dx, 0), (w, grid[1]))
    u = jnp.dot(g, cols.T, precision=_HIGHEST)  # [s_h, W]: grid upsampled along x
    u = jnp.concatenate([u, jnp.zeros((1, w), u.dtype)])
    rows = jax.lax.dynamic_slice(i0, (dy,), (h,))
    r0 = jax.lax.dynamic_slice(w0, (dy,), (h,))[:, None]
    r1 = jax.lax.dynamic_slice(w1, (dy,), (h,))[:, None]
    return r0 * u[rows] + r1 * u[rows + 1]

  return jax.vmap(one)


@functools.partial(jax.jit, static_argnames=("num_masks", "size", "grid", "p1"))
def _generate(key, num_masks, size, grid, p1):
  return mask_fn(key, size, grid, p1)(jnp.arange(num_masks, dtype=jnp.int32))


def generate_masks(key, num_masks: int, input_size, grid_size=7, p1: float = 0.5, *,
                   savepath: str | os.PathLike | None = None) -> jax.Array:
  """Generates ``num_masks`` RISE masks (paper §3.2).

  Mask ``i`` depends only on ``(key, i)``: ``generate_masks(key, 10)[:5]`` equals
  ``generate_masks(key, 5)``, and ``rise(..., key=key)`` uses exactly these masks (it never
  materialises them: it regenerates each batch inside its loop).

  Args:
    key: PRNG key or int seed.
    num_masks: Number of masks ``N >= 1``.
    input_size: ``H`` or ``(H, W)``.
    grid_size: ``s`` or ``(s_h, s_w)``, each in ``[1, H]`` resp. ``[1, W]`` (paper: 7).
    p1: Probability that a grid cell is kept, in (0, 1) (paper: 0.5).
    savepath: Optional path to save the masks to in ``.npy`` format (as the original tools
      do), written at exactly this name (see :func:`save_masks`).

  Returns:
    float32[N, H, W] masks with values in [0, 1].
  """
  key = _checks.as_key(key)
  num_masks = _checks.positive_int(num_masks, "num_masks")
  size = _checks.input_size(input_size)
  grid = _checks.grid_size(grid_size, size)
  p1 = _checks.open_unit(p1, "p1")
  # One device call for all N: measured faster on CPU than chunked calls copied into a host
  # array, since the N * H * W output is written once (benchmarks/rise_bench.py).
  masks = _generate(key, num_masks, size, grid, p1)
  if savepath is not None:
    save_masks(savepath, masks)
  return masks


def save_masks(path: str | os.PathLike, masks) -> None:
  """Saves masks float[N, H, W] (``N >= 1``, finite, values in [0, 1]) as float32 ``.npy``.

  The file is written at exactly ``path`` (NumPy's ``np.save`` would append ``.npy`` to a
  name without that suffix, and :func:`load_masks` of the name given would then fail).
  """
  if not isinstance(path, str | os.PathLike):
    raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
  masks = _checks.mask_set(np.asarray(masks), "masks")
  with open(path, "wb") as f:
    np.save(f, masks)


def load_masks(path: str | os.PathLike) -> np.ndarray:
  """Loads masks saved by :func:`save_masks` (or any ``.npy`` of shape [N, H, W] or
  [N, 1, H, W] / [N, H, W, 1], as the original RISE code writes).

  Raises:
    FileNotFoundError: No file at ``path``.
    ValueError: A file that is not a ``.npy`` array (e.g. ``.npz`` or text), or masks that are
      not float[N, H, W] with ``N >= 1``, finite values in [0, 1].
  """
  if not isinstance(path, str | os.PathLike):
    raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
  try:
    masks = np.load(path, allow_pickle=False)
  except (FileNotFoundError, IsADirectoryError):
    raise
  except Exception as e:  # noqa: BLE001 - re-raised naming the file
    raise ValueError(f"path {os.fspath(path)!r} must be a .npy file of masks [N, H, W] (as "
                     f"written by save_masks), reading it failed with {type(e).__name__}: "
                     f"{e}") from e
  if not isinstance(masks, np.ndarray):
    masks.close()
    raise ValueError(f"path {os.fspath(path)!r} must be a .npy file of masks [N, H, W] (as "
                     "written by save_masks), got an .npz archive; load it with np.load and "
                     "pass the array as masks=")
  if masks.ndim == 4 and 1 in (masks.shape[1], masks.shape[3]):
    masks = masks.reshape(masks.shape[0], *[d for d in masks.shape[1:] if d != 1][:2])
  return _checks.mask_set(masks, f"masks in {os.fspath(path)}")


def window_mask_fn(input_size: tuple[int, int], window, stride,
                   cover_edge: bool = True) -> Callable[[jax.Array], jax.Array]:
  """Returns ``masks(indices int32[b]) -> float32[b, H, W]``: 1 inside window ``i``, 0 outside.

  Window starts along an axis are ``0, stride, 2 * stride, ...`` up to ``length - window``, plus
  one final start at ``length - window`` when the strided starts miss the edge and
  ``cover_edge`` is set (so every pixel is covered). Windows are numbered row-major;
  ``window`` and ``stride`` may be traced scalars (IASSA changes them between iterations), in
  which case the number of windows is the product of :func:`window_count_2d`.
  """
  h, w = input_size
  window = jnp.asarray(window, jnp.int32)
  stride = jnp.asarray(stride, jnp.int32)
  ny, nx = window_count_2d(input_size, window, stride, cover_edge)

  def start(k, length):
    return jnp.minimum(k * stride, length - window) if cover_edge else k * stride

  def masks(indices):
    y0 = start(indices // nx, h)[:, None, None]
    x0 = start(indices % nx, w)[:, None, None]
    ys = jnp.arange(h)[None, :, None]
    xs = jnp.arange(w)[None, None, :]
    inside = (ys >= y0) & (ys < y0 + window) & (xs >= x0) & (xs < x0 + window)
    return inside.astype(jnp.float32)

  return masks


def window_count_2d(input_size: tuple[int, int], window, stride, cover_edge: bool = True):
  """``(n_y, n_x)`` window starts per axis; works on Python ints and traced scalars."""
  def count(length):
    n = (length - window) // stride + 1
    if cover_edge:
      n = n + ((length - window) % stride != 0)
    return n
  return count(input_size[0]), count(input_size[1])
