"""Trivial reference maps: centre Gaussian, uniform and seeded random, shaped like RISE output."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rise_jax import _checks


def _shape(images, num_maps: int):
  batch, single = _checks.as_images(images)
  num_maps = _checks.positive_int(num_maps, "num_maps")
  return batch.shape[0], num_maps, batch.shape[1], batch.shape[2], single


def centre_gaussian(images, *, num_maps: int = 1, sigma: float = 0.25) -> jax.Array:
  """A Gaussian centred on the image, ``sigma`` as a fraction of each side.

  Args:
    images: float32[H, W, C] or float32[B, H, W, C] (only the shape is used).
    num_maps: ``K``, the number of (identical) class maps.
    sigma: Standard deviation relative to the height / width, > 0.

  Returns:
    float32[K, H, W] or float32[B, K, H, W] with maximum 1 at the centre.
  """
  if not isinstance(sigma, int | float) or sigma <= 0:
    raise ValueError(f"sigma must be a number > 0, got {sigma!r}")
  b, k, h, w, single = _shape(images, num_maps)
  ys = (jnp.arange(h) - (h - 1) / 2) / (sigma * h)
  xs = (jnp.arange(w) - (w - 1) / 2) / (sigma * w)
  g = jnp.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
  out = jnp.broadcast_to(g, (b, k, h, w))
  return out[0] if single else out


def uniform(images, *, num_maps: int = 1) -> jax.Array:
  """A constant map of ones, shaped like :func:`centre_gaussian`."""
  b, k, h, w, single = _shape(images, num_maps)
  out = jnp.ones((b, k, h, w), jnp.float32)
  return out[0] if single else out


def random_map(images, key, *, num_maps: int = 1) -> jax.Array:
  """Uniform noise in [0, 1) from ``key`` (a PRNG key or int seed)."""
  b, k, h, w, single = _shape(images, num_maps)
  out = jax.random.uniform(_checks.as_key(key), (b, k, h, w))
  return out[0] if single else out
