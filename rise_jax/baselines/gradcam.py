"""Grad-CAM (Selvaraju et al.): ReLU of the gradient-weighted sum of a layer's activations.

``L_c = ReLU(sum_k alpha_k^c A^k)`` with ``alpha_k^c = mean_{h,w} d y_c / d A^k_{hw}``, ``y_c``
the class logit, bilinearly upsampled to the input size. The gradient with respect to the
intermediate activation is taken through Flax's ``perturb`` mechanism: a model that calls
``self.perturb(name, activation)`` (the models of :mod:`rise_jax.models` do, for every feature
they return) exposes ``d y / d activation`` as the gradient of a zero "perturbations" variable.
All requested classes come from one forward pass and one vmapped VJP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks


@functools.partial(jax.jit, static_argnames=("apply_fn", "layer", "select", "topk"))
def _gradcam(apply_fn, layer, select, topk, variables, images, ids):
  shapes = jax.eval_shape(
      lambda v, x: apply_fn(v, x, mutable=["perturbations"])[1], variables, images)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["perturbations"])

  def forward(delta):
    logits, feats = apply_fn({**variables, "perturbations": delta}, images)
    return logits.astype(jnp.float32), feats[layer]

  logits, vjp, acts = jax.vjp(forward, zeros, has_aux=True)
  if select == "all":
    ids = jnp.tile(jnp.arange(logits.shape[1], dtype=jnp.int32)[None], (logits.shape[0], 1))
  elif select == "topk":
    ids = jax.lax.top_k(logits, topk)[1].astype(jnp.int32)
  onehots = jnp.moveaxis(jax.nn.one_hot(ids, logits.shape[1], dtype=logits.dtype), 1, 0)
  grads = jax.vmap(lambda ct: vjp(ct)[0][layer])(onehots)  # [K, B, h, w, c]
  alpha = grads.mean(axis=(2, 3))  # [K, B, c]
  cam = jax.nn.relu(jnp.einsum("kbc,bhwc->bkhw", alpha, acts.astype(jnp.float32)))
  h, w = images.shape[1:3]
  cam = jax.image.resize(cam, cam.shape[:2] + (h, w), "bilinear")
  return cam, ids


def gradcam(apply_fn: Callable, variables, images, *, layer: str = "last_conv",
            classes: None | int | Sequence[int] = None, return_ids: bool = False):
  """Grad-CAM maps for the requested classes.

  Args:
    apply_fn: A Flax ``module.apply``: ``apply_fn(variables, images, mutable=...)`` returning
      ``(logits float32[b, C], features dict)``, whose module calls
      ``self.perturb(layer, activation)`` on the activation it returns as ``features[layer]``
      (every model of :mod:`rise_jax.models` does).
    variables: The model's variables (``{"params": ..., "batch_stats": ...}``); frozen.
    images: float32[H, W, C_in] or float32[B, H, W, C_in].
    layer: Name of the feature (e.g. ``"last_conv"``, ``"stage4"``).
    classes: ``None`` (all), a sequence of ids, or an int ``k`` (top-k by logit).
    return_ids: Also return the class ids int32[B, K].

  Returns:
    float32[K, H, W] (one image) or float32[B, K, H, W], non-negative.
  """
  batch, single = _checks.as_images(images)
  if not isinstance(layer, str):
    raise ValueError(f"layer must be a feature name (str), got {layer!r}")
  try:
    (logits, feats), state = jax.eval_shape(
        lambda v, x: apply_fn(v, x, mutable=["perturbations"]), variables, batch)
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise TypeError(
        "apply_fn must be a Flax apply: apply_fn(variables, images, mutable=[...]) -> "
        f"((logits, features), state); calling it failed with {type(e).__name__}: {e}") from e
  if not isinstance(feats, dict) or layer not in feats:
    names = sorted(feats) if isinstance(feats, dict) else []
    raise ValueError(f"layer must be one of the model's features {names}, got {layer!r}")
  if layer not in state.get("perturbations", {}):
    raise ValueError(
        f"the model does not expose a gradient for {layer!r}: its module must call "
        f"self.perturb({layer!r}, x) on that activation (rise_jax.models do)")
  if len(feats[layer].shape) != 4:
    raise ValueError(f"feature {layer!r} must be [B, h, w, c], got {feats[layer].shape}")
  sel = _checks.class_ids(classes, logits.shape[1])
  if sel is None:
    select, topk, ids = "all", 0, jnp.zeros((batch.shape[0], 0), jnp.int32)
  elif isinstance(sel, int):
    select, topk, ids = "topk", sel, jnp.zeros((batch.shape[0], sel), jnp.int32)
  else:
    select, topk, ids = "ids", 0, jnp.tile(jnp.asarray(sel)[None], (batch.shape[0], 1))
  cam, ids = _gradcam(apply_fn, layer, select, topk, variables, batch, ids)
  if single:
    cam, ids = cam[0], ids[0]
  return (cam, np.asarray(ids)) if return_ids else cam
