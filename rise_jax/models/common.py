"""Helpers shared by the models of :mod:`rise_jax.models`."""

from __future__ import annotations

import flax.linen as nn
import jax


def tap(module: nn.Module, name: str, x: jax.Array, feats: dict[str, jax.Array]) -> jax.Array:
  """Records feature ``name`` and makes its gradient reachable for Grad-CAM.

  Outside ``init`` the activation goes through ``module.perturb(name, x)``: a no-op unless the
  caller passes a ``"perturbations"`` collection, whose gradient is then ``d out / d x``
  (:func:`rise_jax.baselines.gradcam`). ``init`` creates no perturbation variables, so
  checkpoints hold only params and batch statistics.
  """
  if not module.is_initializing():
    x = module.perturb(name, x)
  feats[name] = x
  return x
