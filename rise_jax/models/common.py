"""Helpers shared by the models of :mod:`rise_jax.models`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


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


OUTPUTS = ("sigmoid", "softmax", "logits")
_BLACK_BOXES: dict[tuple, tuple[Any, Callable]] = {}


def black_box(apply_fn: Callable, variables: Any, output: str = "softmax"
              ) -> Callable[[jax.Array], jax.Array]:
  """A frozen classifier as a jitted black box ``float32[b, H, W, 3] -> float32[b, C]``.

  The one builder of black boxes from Flax models: every entry point and experiment uses it.
  ``apply_fn(variables, images)`` may return the logits or ``(logits, features)``.

  Args:
    apply_fn: The module's ``apply``.
    variables: Its frozen variables, closed over by the returned function.
    output: ``"sigmoid"`` (multi-label probabilities), ``"softmax"`` (probabilities over the
      classes) or ``"logits"``.

  Returns:
    A jitted function. The same function object is returned for the same ``(apply_fn,
    variables, output)`` within a process, so that compiled programs keyed on the black box
    (every method's and metric's) are reused, e.g. by the points of a sweep.

  Raises:
    ValueError: For an unknown ``output``.
  """
  if output not in OUTPUTS:
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
  key = (apply_fn, id(variables), output)
  hit = _BLACK_BOXES.get(key)
  if hit is not None and hit[0] is variables:
    return hit[1]
  act = {"sigmoid": jax.nn.sigmoid, "softmax": lambda z: jax.nn.softmax(z, axis=-1),
         "logits": lambda z: z}[output]

  def scores(images: jax.Array) -> jax.Array:
    out = apply_fn(variables, images)
    return act((out[0] if isinstance(out, tuple) else out).astype(jnp.float32))

  fn = jax.jit(scores)
  _BLACK_BOXES[key] = (variables, fn)
  return fn
