"""Property-based tests (hypothesis) over the public API: random shapes and parameter values
give either a valid result or a clear ``ValueError`` / ``TypeError`` naming the argument, never
a crash inside XLA or a silent NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rise_jax

_SETTINGS = settings(max_examples=20, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
_ANY_INT = st.integers(min_value=-3, max_value=40)
_ANY_P1 = st.one_of(st.floats(min_value=-0.5, max_value=1.5),
                    st.sampled_from([0.0, 1.0, 0.5, float("nan")]))


def _valid(num_masks, size, grid, p1):
  # p1 must stay in (0, 1) in float32 (an underflowing p1 would divide by zero); NaN: False.
  p1_ok = 0 < p1 < 1 and np.finfo(np.float32).tiny <= np.float32(p1) < 1
  return num_masks >= 1 and size >= 1 and 1 <= grid <= size and p1_ok


@_SETTINGS
@given(num_masks=_ANY_INT, size=st.integers(min_value=-1, max_value=24), grid=_ANY_INT,
       p1=_ANY_P1)
def test_generate_masks_valid_or_clear_error(num_masks, size, grid, p1):
  if not _valid(num_masks, size, grid, p1):
    with pytest.raises(ValueError):
      rise_jax.generate_masks(jax.random.key(0), num_masks, size, grid, p1)
    return
  masks = np.asarray(rise_jax.generate_masks(jax.random.key(0), num_masks, size, grid, p1))
  assert masks.shape == (num_masks, size, size)
  assert np.isfinite(masks).all() and masks.min() >= 0 and masks.max() <= 1


def _black_box(images):
  """Two analytic classes: mean of the top half and of the bottom half of the image."""
  h = images.shape[1] // 2
  return jnp.stack([images[:, :max(h, 1)].mean(axis=(1, 2, 3)),
                    images[:, h:].mean(axis=(1, 2, 3))], axis=-1)


@_SETTINGS
@given(num_masks=st.integers(min_value=-2, max_value=60),
       batch_size=st.integers(min_value=-2, max_value=70),
       size=st.integers(min_value=2, max_value=20), grid=st.integers(min_value=0, max_value=8),
       p1=_ANY_P1, dtype=st.sampled_from(["float32", "float16", "int32", "bool"]))
def test_rise_valid_or_clear_error(num_masks, batch_size, size, grid, p1, dtype):
  image = np.ones((size, size, 3), np.float32).astype(dtype)
  valid = (_valid(num_masks, size, grid, p1) and batch_size >= 1
           and dtype in ("float32", "float16"))
  if not valid:  # a wrong dtype is a TypeError, a wrong value a ValueError; both name it
    with pytest.raises((ValueError, TypeError), match="images|num_masks|grid_size|p1|batch"):
      rise_jax.rise(_black_box, image, jax.random.key(1), num_masks=num_masks,
                    grid_size=grid, p1=p1, batch_size=batch_size)
    return
  maps = np.asarray(rise_jax.rise(_black_box, image, jax.random.key(1), num_masks=num_masks,
                                  grid_size=grid, p1=p1, batch_size=batch_size))
  assert maps.shape == (2, size, size) and np.isfinite(maps).all()
