"""Argument validation shared by the public API.

Every check raises with the argument's name, what is allowed and the value received.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def as_images(images, name: str = "images") -> tuple[jax.Array, bool]:
  """Validates an image or a batch of images.

  Args:
    images: float[H, W, C] or float[B, H, W, C] with C in {1, 3}.
    name: Argument name for error messages.

  Returns:
    ``(batch float32[B, H, W, C], was_single)``.
  """
  if not hasattr(images, "shape") or not hasattr(images, "dtype"):
    raise TypeError(f"{name} must be an array (numpy or jax), got {type(images).__name__}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(
        f"{name} must be a floating-point array (values in the model's input space), "
        f"got dtype {images.dtype}; convert with images.astype(np.float32) and normalise")
  if images.ndim not in (3, 4):
    raise ValueError(
        f"{name} must have shape [H, W, C] or [B, H, W, C], got shape {tuple(images.shape)}")
  if images.shape[-1] not in (1, 3):
    raise ValueError(
        f"{name} must have 1 or 3 channels in the last axis (NHWC), got shape "
        f"{tuple(images.shape)}")
  single = images.ndim == 3
  batch = jnp.asarray(images, jnp.float32)
  if single:
    batch = batch[None]
  if batch.shape[0] < 1 or batch.shape[1] < 1 or batch.shape[2] < 1:
    raise ValueError(f"{name} must be non-empty, got shape {tuple(images.shape)}")
  return batch, single


def positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  return int(value)


def open_unit(value, name: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
    raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")
  return float(value)


def grid_size(value, input_size: tuple[int, int]) -> tuple[int, int]:
  """Validates ``grid_size`` (int or ``(s_h, s_w)``) against the image size ``(H, W)``."""
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    pair = (int(value), int(value))
  elif (isinstance(value, Sequence) and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
    pair = (int(value[0]), int(value[1]))
  else:
    raise ValueError(f"grid_size must be an int or a pair of ints (s_h, s_w), got {value!r}")
  h, w = input_size
  if not (1 <= pair[0] <= h and 1 <= pair[1] <= w):
    raise ValueError(
        f"grid_size must be in [1, {h}] x [1, {w}] for a {h}x{w} image, got {value!r}")
  return pair


def input_size(value) -> tuple[int, int]:
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    value = (value, value)
  if (not isinstance(value, Sequence) or len(value) != 2
      or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
                 for v in value)):
    raise ValueError(f"input_size must be an int or a pair (H, W) of ints >= 1, got {value!r}")
  return int(value[0]), int(value[1])


def choice(value, name: str, allowed: Sequence[str]) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
  return value


def as_key(key) -> jax.Array:
  """Accepts a typed or raw PRNG key, or an int seed."""
  if isinstance(key, numbers.Integral) and not isinstance(key, bool):
    return jax.random.key(int(key))
  if isinstance(key, jax.Array | np.ndarray):
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
      return key
    if key.dtype == np.uint32 and key.shape == (2,):
      return jax.random.wrap_key_data(jnp.asarray(key))
  raise TypeError(
      "key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)) or an int "
      f"seed, got {type(key).__name__} {getattr(key, 'shape', '')}")


def class_ids(classes, num_classes: int) -> np.ndarray | int | None:
  """Validates ``classes``: None (all), an int k (top-k) or a sequence of ids."""
  if classes is None:
    return None
  if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
    if not 1 <= classes <= num_classes:
      raise ValueError(
          f"classes as an int selects the top-k predicted classes and must be in "
          f"[1, {num_classes}], got {classes}")
    return int(classes)
  ids = np.asarray(classes)
  if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(
        "classes must be None (all classes), an int k (top-k predicted) or a non-empty "
        f"sequence of integer class ids, got {classes!r}")
  bad = ids[(ids < 0) | (ids >= num_classes)]
  if bad.size:
    raise ValueError(
        f"class ids must be in [0, {num_classes - 1}] (the model returns {num_classes} "
        f"scores), got {bad.tolist()} in classes")
  return ids.astype(np.int32)
