"""RISE masks against a NumPy reference of the paper's algorithm."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rise_jax
from rise_jax import masks as masks_lib


def _np_bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Half-pixel-centre bilinear interpolation with edge clamping, written independently."""
  a = np.zeros((n_out, n_in))
  scale = n_out / n_in
  for o in range(n_out):
    x = (o + 0.5) / scale - 0.5
    x = min(max(x, 0.0), n_in - 1.0)
    lo = int(math.floor(x))
    hi = min(lo + 1, n_in - 1)
    t = x - lo
    a[o, lo] += 1 - t
    a[o, hi] += t
  return a


def _np_reference(key, num, size, grid, p1):
  """The paper's algorithm in NumPy for the same grid and shift draws."""
  h, w = size
  ch, cw = math.ceil(h / grid[0]), math.ceil(w / grid[1])
  a_h = _np_bilinear_matrix(grid[0], (grid[0] + 1) * ch)
  a_w = _np_bilinear_matrix(grid[1], (grid[1] + 1) * cw)
  out = np.zeros((num, h, w))
  for i in range(num):
    g, dy, dx = masks_lib.mask_draws(key, i, size, grid, p1)
    up = a_h @ np.asarray(g, np.float64) @ a_w.T  # bilinear upsample of the grid
    out[i] = up[int(dy):int(dy) + h, int(dx):int(dx) + w]  # random-shift crop
  return out


@pytest.mark.parametrize("size,grid", [((32, 32), (7, 7)), ((24, 40), (3, 5)), ((17, 23), 4),
                                       ((64, 48), (8, 6))])
def test_masks_equal_numpy_reference(size, grid):
  key = jax.random.key(3)
  ours = np.asarray(rise_jax.generate_masks(key, 40, size, grid, 0.4))
  grid2 = grid if isinstance(grid, tuple) else (grid, grid)
  ref = _np_reference(key, 40, size, grid2, 0.4)
  assert ours.shape == (40, *size)
  np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_masks_equal_jax_image_resize_and_crop():
  key = jax.random.key(0)
  size, grid = (30, 30), (5, 5)
  ours = rise_jax.generate_masks(key, 10, size, grid)
  for i in range(10):
    g, dy, dx = masks_lib.mask_draws(key, i, size, grid, 0.5)
    up = jax.image.resize(g, (36, 36), "bilinear")
    np.testing.assert_allclose(ours[i], up[dy:dy + 30, dx:dx + 30], atol=1e-6)


def test_masks_equal_skimage_edge_mode():
  transform = pytest.importorskip("skimage.transform")
  key = jax.random.key(1)
  size, grid = (28, 28), (7, 7)
  ours = np.asarray(rise_jax.generate_masks(key, 8, size, grid))
  for i in range(8):
    g, dy, dx = masks_lib.mask_draws(key, i, size, grid, 0.5)
    up = transform.resize(np.asarray(g), (32, 32), order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(ours[i], up[int(dy):int(dy) + 28, int(dx):int(dx) + 28],
                               atol=1e-5)


def test_mask_statistics():
  m = np.asarray(rise_jax.generate_masks(0, 2000, 32, 7, 0.5))
  assert m.min() >= 0.0 and m.max() <= 1.0 + 1e-6
  assert abs(m.mean() - 0.5) < 0.01
  m2 = np.asarray(rise_jax.generate_masks(1, 2000, (24, 40), (3, 5), 0.2))
  assert abs(m2.mean() - 0.2) < 0.01


def test_masks_are_addressed_by_index():
  a = rise_jax.generate_masks(5, 50, 16, 4)
  b = rise_jax.generate_masks(5, 20, 16, 4)
  np.testing.assert_array_equal(np.asarray(a[:20]), np.asarray(b))
  c = rise_jax.generate_masks(6, 20, 16, 4)
  assert np.abs(np.asarray(c) - np.asarray(b)).max() > 0.1


def test_shift_range_and_grid_draws():
  key = jax.random.key(2)
  shifts = np.array([[int(v) for v in masks_lib.mask_draws(key, i, (28, 28), (7, 7), 0.5)[1:]]
                     for i in range(200)])
  assert shifts.min() == 0 and shifts.max() == 3  # cell = ceil(28 / 7) = 4


def test_save_load_roundtrip(tmp_path):
  m = rise_jax.generate_masks(0, 12, 16, 4, savepath=tmp_path / "m.npy")
  loaded = rise_jax.load_masks(tmp_path / "m.npy")
  np.testing.assert_array_equal(loaded, np.asarray(m))
  np.save(tmp_path / "orig.npy", np.asarray(m)[:, None])  # original RISE layout [N, 1, H, W]
  np.testing.assert_array_equal(rise_jax.load_masks(tmp_path / "orig.npy"), np.asarray(m))
  np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
  with pytest.raises(ValueError, match=r"\[N, H, W\]"):
    rise_jax.load_masks(tmp_path / "bad.npy")


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_masks=0), "num_masks"),
    (dict(p1=0.0), "p1"),
    (dict(p1=1.5), "p1"),
    (dict(grid_size=0), "grid_size"),
    (dict(grid_size=33), "grid_size"),
    (dict(grid_size=(2, 3, 4)), "grid_size"),
    (dict(input_size=(0, 5)), "input_size"),
])
def test_generate_masks_bad_input(kwargs, match):
  args = dict(key=0, num_masks=4, input_size=32, grid_size=4, p1=0.5)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    rise_jax.generate_masks(**args)


def test_bad_key():
  with pytest.raises(TypeError, match="key"):
    rise_jax.generate_masks("seed", 4, 16)


def test_resize_matrix_rows_sum_to_one():
  a = np.asarray(masks_lib.resize_matrix(7, 256))
  np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-6)
  assert np.all(jnp.asarray(a) >= 0)
