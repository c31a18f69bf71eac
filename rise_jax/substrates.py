"""Substrates: what a masked-out pixel is replaced with.

A perturbed image is ``x_m = m * x + (1 - m) * substrate(x)``. Names:

* ``"zeros"``: 0, i.e. the dataset mean colour for mean/std-normalised inputs (RISE default).
* a float: that constant in every channel.
* ``"mean"``: the per-channel mean of the image.
* ``"blur"``: the RISE authors' blur (``gkern(11, 5)`` of their ``evaluation.py``, per channel,
  zero padding): the insertion canvas of the paper. Its taps are
  ``scipy.ndimage.gaussian_filter`` (sigma 5, mode ``"reflect"``, truncate 4) of an 11x11
  impulse: the Gaussian's tails beyond the window fold back into it, so the kernel sums to 1 and
  is flatter than a sampled Gaussian (centre tap 0.00883 against 0.01196).
* ``"blur_normalized"``: the sampled Gaussian (kernel 11, sigma 5) renormalised to sum 1, zero
  padding (this library's ``"blur"`` before issue 18).
* an array broadcastable to ``[H, W, C]``: used as is.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

NAMES = ("zeros", "mean", "blur", "blur_normalized")


def gaussian_kernel(size: int = 11, sigma: float = 5.0) -> jax.Array:
  """float32[size] normalised 1-D Gaussian taps (the 2-D kernel is their outer product)."""
  r = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
  k = jnp.exp(-0.5 * (r / sigma) ** 2)
  return k / k.sum()


def authors_kernel(size: int = 11, sigma: float = 5.0) -> np.ndarray:
  """float64[size] 1-D taps of the RISE authors' ``gkern(size, sigma)``.

  ``gkern`` is ``scipy.ndimage.gaussian_filter`` of a ``size x size`` impulse with scipy's
  defaults (truncate 4, mode ``"reflect"``); that 2-D kernel is the outer product of these taps.
  Computed here without scipy: the truncated, normalised Gaussian of radius
  ``int(4 * sigma + 0.5)`` correlated with the impulse extended by half-sample reflection
  (``np.pad(..., "symmetric")`` = scipy's ``"reflect"``), so the tails beyond the window fold
  back in and the taps sum to 1.

  Args:
    size: Kernel size (odd).
    sigma: Standard deviation in pixels.

  Returns:
    float64[size] taps.
  """
  radius = int(4.0 * sigma + 0.5)
  r = np.arange(-radius, radius + 1, dtype=np.float64)
  g = np.exp(-0.5 * (r / sigma) ** 2)
  impulse = np.zeros(size)
  impulse[size // 2] = 1.0
  return np.convolve(np.pad(impulse, radius, mode="symmetric"), g / g.sum(), mode="valid")


def blur(image: jax.Array, size: int = 11, sigma: float = 5.0, *,
         kernel: str = "authors") -> jax.Array:
  """Separable Gaussian blur with zero padding, per channel.

  Args:
    image: float32[H, W, C].
    size: Kernel size (odd).
    sigma: Standard deviation in pixels.
    kernel: ``"authors"`` (the RISE authors' ``gkern``, :func:`authors_kernel`; substrate
      ``"blur"``) or ``"normalized"`` (the renormalised sampled Gaussian,
      :func:`gaussian_kernel`; substrate ``"blur_normalized"``).

  Returns:
    float32[H, W, C].
  """
  if kernel == "authors":
    k = jnp.asarray(authors_kernel(size, sigma), jnp.float32)
  elif kernel == "normalized":
    k = gaussian_kernel(size, sigma)
  else:
    raise ValueError(f"kernel must be one of ['authors', 'normalized'], got {kernel!r}")
  pad = size // 2
  x = jnp.moveaxis(image, -1, 0)[:, None]  # [C, 1, H, W]
  dn = ("NCHW", "OIHW", "NCHW")
  hi = jax.lax.Precision.HIGHEST
  x = jax.lax.conv_general_dilated(x, k.reshape(1, 1, size, 1), (1, 1), ((pad, pad), (0, 0)),
                                   dimension_numbers=dn, precision=hi)
  x = jax.lax.conv_general_dilated(x, k.reshape(1, 1, 1, size), (1, 1), ((0, 0), (pad, pad)),
                                   dimension_numbers=dn, precision=hi)
  return jnp.moveaxis(x[:, 0], 0, -1)


def check(substrate, image_shape: tuple[int, ...], name: str = "substrate"):
  """Validates a substrate spec for images of shape ``[H, W, C]``; returns it normalised."""
  if isinstance(substrate, str):
    if substrate not in NAMES:
      raise ValueError(
          f"{name} must be one of {list(NAMES)}, a float constant or an array broadcastable "
          f"to {list(image_shape)}, got {substrate!r}")
    return substrate
  if isinstance(substrate, numbers.Real) and not isinstance(substrate, bool):
    if not np.isfinite(substrate):
      raise ValueError(f"{name} constant must be finite, got {substrate!r}")
    return float(substrate)
  if hasattr(substrate, "shape"):
    try:
      np.broadcast_shapes(tuple(substrate.shape), tuple(image_shape))
    except ValueError:
      raise ValueError(
          f"{name} array of shape {tuple(substrate.shape)} does not broadcast to the image "
          f"shape {list(image_shape)}") from None
    if len(substrate.shape) > len(image_shape):
      raise ValueError(
          f"{name} array must be per image ([H, W, C] or broadcastable), got shape "
          f"{tuple(substrate.shape)}")
    raw = np.asarray(substrate)
    if not any(jnp.issubdtype(raw.dtype, t) for t in (jnp.floating, jnp.integer, jnp.bool_)):
      raise ValueError(f"{name} array must be real-valued (float, int or bool), got {raw.dtype}")
    arr = raw.astype(np.float32)
    if not np.all(np.isfinite(arr)):
      raise ValueError(f"{name} array contains NaN or inf")
    return jnp.asarray(arr)
  raise ValueError(
      f"{name} must be one of {list(NAMES)}, a float constant or an array, got "
      f"{type(substrate).__name__}")


def build(substrate, image: jax.Array) -> jax.Array:
  """The substrate for one image, broadcastable to it.

  Args:
    substrate: A spec already validated by :func:`check`.
    image: float32[H, W, C].

  Returns:
    float32 array broadcastable to [H, W, C].
  """
  if isinstance(substrate, str):
    if substrate == "zeros":
      return jnp.zeros((1, 1, image.shape[-1]), image.dtype)
    if substrate == "mean":
      return jnp.mean(image, axis=(0, 1), keepdims=True)
    if substrate == "blur_normalized":
      return blur(image, kernel="normalized")
    return blur(image)
  if isinstance(substrate, float):
    return jnp.full((1, 1, image.shape[-1]), substrate, image.dtype)
  return substrate


def perturb(image: jax.Array, masks: jax.Array, substrate: jax.Array) -> jax.Array:
  """``m * x + (1 - m) * substrate`` for a batch of masks.

  Args:
    image: float32[H, W, C].
    masks: float32[b, H, W].
    substrate: float32 broadcastable to [H, W, C].

  Returns:
    float32[b, H, W, C].
  """
  m = masks[..., None]
  return m * image + (1.0 - m) * substrate
