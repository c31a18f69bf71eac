"""Multi-label classifier training and the black-box wrapper used by the saliency methods.

Works with any Flax module whose ``apply(params, x)`` returns logits float32[B, C] or a tuple
``(logits, features)`` (the repo's model convention) and that has no mutable collections
(no batch norm statistics); e.g. :class:`rise_jax.models.tiny.TinyCNN`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

Params = Any

_OUTPUTS = ("sigmoid", "softmax", "logits")


def _logits(module: nn.Module, params: Params, images: jax.Array) -> jax.Array:
  out = module.apply(params, images)
  return out[0] if isinstance(out, tuple) else out


def _check_data(images: Any, labels: Any) -> tuple[jax.Array, jax.Array]:
  images = jnp.asarray(images, jnp.float32)
  labels = jnp.asarray(labels, jnp.float32)
  if images.ndim != 4:
    raise ValueError(f"images must have shape [N, H, W, C], got {images.shape}")
  if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
    raise ValueError(
      f"labels must have shape [N={images.shape[0]}, num_classes], got {labels.shape}"
    )
  if images.shape[0] == 0:
    raise ValueError("need at least one training example, got N = 0")
  return images, labels


def _bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Multi-label sigmoid binary cross-entropy, mean over batch and classes."""
  return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def train_classifier(
  module: nn.Module,
  images: Any,
  labels: Any,
  *,
  steps: int = 300,
  batch_size: int = 32,
  learning_rate: float = 3e-3,
  seed: int = 0,
  progress: bool = True,
) -> Params:
  """Trains a multi-label classifier with sigmoid BCE and Adam.

  Parameters are initialised from ``jax.random.key(seed)``; the batch of step ``t`` is
  ``batch_size`` indices drawn without replacement with ``fold_in(key, t)``, so training is
  reproducible and ``steps=0`` returns the initial parameters.

  Args:
    module: A Flax module, see the module docstring.
    images: float32[N, H, W, C] training images.
    labels: float32[N, num_classes] multi-hot targets in [0, 1].
    steps: Number of optimisation steps, ``>= 0``.
    batch_size: Examples per step, in ``[1, N]``.
    learning_rate: Adam learning rate, ``> 0``.
    seed: Seed of the initialisation and the batch order.
    progress: Show a tqdm progress bar with the running loss.

  Returns:
    The trained parameters (a pytree for ``module.apply``).

  Raises:
    ValueError: For mismatched shapes or out-of-range arguments.
  """
  images, labels = _check_data(images, labels)
  n = images.shape[0]
  if steps < 0:
    raise ValueError(f"steps must be >= 0, got {steps}")
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}")
  if learning_rate <= 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}")

  key = jax.random.key(seed)
  init_key, data_key = jax.random.split(key)
  params = module.init(init_key, images[:1])
  if set(params) - {"params"}:
    raise ValueError(
      f"module must have only a 'params' collection, got {sorted(params)} "
      "(mutable state such as batch_stats is not supported)"
    )
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state, step, images, labels):
    idx = jax.random.choice(jax.random.fold_in(data_key, step), n, (batch_size,), replace=False)

    def loss_fn(p):
      return _bce(_logits(module, p, images[idx]), labels[idx])

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  bar = tqdm.trange(steps, desc="train", disable=not progress, leave=False)
  for step in bar:
    params, opt_state, loss = train_step(params, opt_state, step, images, labels)
    if progress and (step % 10 == 0 or step == steps - 1):
      bar.set_postfix(loss=f"{float(loss):.4f}")
  return params


def evaluate_loss(
  module: nn.Module,
  params: Params,
  images: Any,
  labels: Any,
  *,
  batch_size: int = 256,
) -> float:
  """Mean multi-label sigmoid BCE of ``params`` on a dataset.

  Args:
    module: The Flax module.
    params: Its parameters.
    images: float32[N, H, W, C] images.
    labels: float32[N, num_classes] multi-hot targets.
    batch_size: Examples per forward pass.

  Returns:
    The BCE averaged over all examples and classes.
  """
  images, labels = _check_data(images, labels)
  loss_sum = jax.jit(
    lambda p, x, y: optax.sigmoid_binary_cross_entropy(_logits(module, p, x), y).sum()
  )
  total = sum(
    float(loss_sum(params, images[i : i + batch_size], labels[i : i + batch_size]))
    for i in range(0, images.shape[0], batch_size)
  )
  return total / float(np.prod(labels.shape))


def black_box(
  module: nn.Module,
  params: Params,
  output: str = "sigmoid",
) -> Callable[[jax.Array], jax.Array]:
  """Wraps a trained classifier as a jitted black box ``images -> scores``.

  Args:
    module: The Flax module.
    params: Its (frozen) parameters, closed over by the returned function.
    output: ``"sigmoid"`` (multi-label probabilities), ``"softmax"`` (probabilities over
      classes) or ``"logits"``.

  Returns:
    A jitted function mapping float32[B, H, W, C] images to float32[B, num_classes] scores.

  Raises:
    ValueError: For an unknown ``output``.
  """
  if output not in _OUTPUTS:
    raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
  post = {"sigmoid": jax.nn.sigmoid, "softmax": jax.nn.softmax, "logits": lambda z: z}[output]

  @jax.jit
  def scores(images: jax.Array) -> jax.Array:
    return post(_logits(module, params, images))

  return scores
