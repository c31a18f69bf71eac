"""Argument validation shared by the public API.

Every check raises with the argument's name, what is allowed and the value received.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

INT32_MAX = 2**31 - 1


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
  finite(images, name)
  return batch, single


def finite(array, name: str) -> None:
  """Raises ValueError naming ``name`` if the concrete ``array`` holds NaN or inf.

  Traced values (inside a user's ``jit``) cannot be checked on the host and pass.
  """
  if isinstance(array, jax.core.Tracer):
    return
  ok = np.all(np.isfinite(array)) if isinstance(array, np.ndarray) else jnp.all(
      jnp.isfinite(array))
  if not bool(ok):
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(np.asarray(array))))
    raise ValueError(f"{name} must be finite, got {bad} NaN or inf value(s) in an array of "
                     f"shape {tuple(np.shape(array))}")


def positive_int(value, name: str, upper: int = INT32_MAX) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or not 1 <= value <= upper):
    raise ValueError(f"{name} must be an integer >= 1 (at most {upper}), got {value!r}")
  return int(value)


def positive_number(value, name: str, allow_none: bool = False) -> float | None:
  """A finite real number > 0 (Python or NumPy scalar of any precision), or None if allowed."""
  if value is None and allow_none:
    return None
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not (np.isfinite(value) and value > 0)):
    what = "None or a finite number > 0" if allow_none else "a finite number > 0"
    raise ValueError(f"{name} must be {what}, got {value!r}")
  return float(value)


def mask_set(masks, name: str = "masks", size: tuple[int, int] | None = None) -> np.ndarray:
  """Validates a saved RISE mask set: float[N, H, W], N >= 1, finite, values in [0, 1].

  Args:
    masks: The mask set (NumPy or JAX array).
    name: Argument name for error messages (a file path for :func:`load_masks`).
    size: Optional ``(H, W)`` the masks must have.

  Returns:
    float32[N, H, W] (a JAX array stays on its device).
  """
  if not hasattr(masks, "shape") or not hasattr(masks, "dtype"):
    raise TypeError(f"{name} must be an array float[N, H, W], got {type(masks).__name__}")
  want = "[N, H, W]" if size is None else f"[N, {size[0]}, {size[1]}] to match the images"
  if masks.ndim != 3 or (size is not None and tuple(masks.shape[1:]) != tuple(size)):
    raise ValueError(f"{name} must have shape {want}, got {tuple(masks.shape)}")
  if min(masks.shape) < 1:
    raise ValueError(f"{name} must hold at least one non-empty mask (N, H, W >= 1), got shape "
                     f"{tuple(masks.shape)}")
  if not jnp.issubdtype(masks.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point with values in [0, 1], got dtype "
                     f"{masks.dtype} (for 0/255 masks use masks / 255.0)")
  xp = np if isinstance(masks, np.ndarray) else jnp
  finite(masks, name)
  lo, hi = float(xp.min(masks)), float(xp.max(masks))
  if lo < 0.0 or hi > 1.0:
    raise ValueError(f"{name} must have values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
  return masks.astype(np.float32)


def contained_path(folder: str, name, what: str) -> str:
  """Absolute ``folder/name`` if it stays inside ``folder`` (lexically: symlinks inside the
  folder are followed when read, as datasets often use them), else ValueError naming ``what``.

  Args:
    folder: The data folder.
    name: A relative file name read from a data file (label file, annotation JSON, split).
    what: Where ``name`` came from, for the message.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"{what}: a file name must be a non-empty string, got {name!r}")
  root = os.path.abspath(folder)
  path = os.path.abspath(os.path.join(root, name))
  if os.path.commonpath([root, path]) != root:
    raise ValueError(f"{what}: file name {name!r} must lie inside the folder {root} (no '..' "
                     "or absolute path leading out of it)")
  return path


def open_unit(value, name: str) -> float:
  """A number in (0, 1) that stays in (0, 1) in float32 (the methods compute in float32: a
  ``p1`` that underflows to 0 would divide by zero)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
    raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")
  if not np.finfo(np.float32).tiny <= np.float32(value) < 1.0:
    raise ValueError(f"{name} must be in (0, 1) in float32, i.e. in [1.2e-38, 1 - 6e-8], got "
                     f"{value!r}")
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
      or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                 and 1 <= v <= INT32_MAX for v in value)):
    raise ValueError(f"input_size must be an int or a pair (H, W) of ints >= 1 (at most "
                     f"{INT32_MAX}), got {value!r}")
  return int(value[0]), int(value[1])


def choice(value, name: str, allowed: Sequence[str]) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
  return value


def as_key(key) -> jax.Array:
  """Accepts a typed or raw PRNG key, or an int seed."""
  if isinstance(key, numbers.Integral) and not isinstance(key, bool):
    if not -2**63 <= key < 2**63:
      raise ValueError(f"key as an int seed must be in [-2**63, 2**63 - 1], got {key}")
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
