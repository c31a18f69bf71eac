"""Multi-label classifier training and the black-box wrapper used by the saliency methods.

Works with any Flax module whose ``apply(params, x)`` returns logits float32[B, C] or a tuple
``(logits, features)`` (the repo's model convention) and that has no mutable collections
(no batch norm statistics); e.g. :class:`rise_jax.models.tiny.TinyCNN`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from rise_jax.metrics.classification import (  # noqa: F401 (re-exported)
  average_precision,
  mean_average_precision,
)
from rise_jax.models import common
from rise_jax.train import loop

Params = Any



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
  params = jax.jit(module.init)(init_key, images[:1])
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
  return common.black_box(module.apply, params, output)


@flax.struct.dataclass
class TrainState:
  """What :func:`fit` optimises and checkpoints (frozen parameters are not part of it)."""

  epoch: jax.Array
  params: Any  # trainable parameters only
  batch_stats: Any
  opt_state: Any


def split_trainable(params: Any, trainable: Callable[[tuple[str, ...]], bool]
                    ) -> tuple[dict, dict]:
  """Splits a params tree into ``(trainable, frozen)`` flat dicts keyed by path tuples."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  train = {k: v for k, v in flat.items() if trainable(k)}
  frozen = {k: v for k, v in flat.items() if not trainable(k)}
  if not train:
    raise ValueError(f"no trainable parameters selected among {sorted({k[0] for k in flat})}")
  return train, frozen


def _merge(train: dict, frozen: dict) -> dict:
  return flax.traverse_util.unflatten_dict({**frozen, **train})


def mask_augment(key: jax.Array, images: jax.Array, keep: jax.Array, prob: float) -> jax.Array:
  """Randomly masks the background of a batch (see :func:`fit`'s ``mask_prob``).

  Args:
    key: PRNG key.
    images: float32[B, H, W, C] normalised images.
    keep: bool[B, H, W] pixels that are never masked.
    prob: Probability that an image is masked at all.

  Returns:
    float32[B, H, W, C] images multiplied by ``max(keep, smooth random mask)`` (or unchanged).
  """
  b, h, w, _ = images.shape
  k_rate, k_grid, k_coin = jax.random.split(key, 3)
  rate = jax.random.uniform(k_rate, (b, 1, 1), minval=0.2, maxval=0.8)
  grid = (jax.random.uniform(k_grid, (b, 4, 4)) < rate).astype(jnp.float32)
  smooth = jax.image.resize(grid, (b, h, w), "bilinear")
  mask = jnp.maximum(keep.astype(jnp.float32), smooth)
  on = jax.random.uniform(k_coin, (b, 1, 1)) < prob
  return images * jnp.where(on, mask, 1.0)[..., None]


def _check_fit_args(n: int, *, epochs: int, batch_size: int, learning_rate: float,
                    schedule: str, mask_prob: float, keep_masks: Any,
                    image_shape: tuple[int, ...]) -> jax.Array | None:
  """Checks :func:`fit`'s arguments; the masking augmentation's bool[N, H, W] ``keep`` (or
  ``None`` without it)."""
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}")
  if epochs < 1 or learning_rate <= 0:
    raise ValueError(f"epochs must be >= 1 and learning_rate > 0, got {epochs}, {learning_rate}")
  if schedule not in ("constant", "cosine"):
    raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
  if not 0.0 <= mask_prob <= 1.0:
    raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
  if mask_prob == 0:
    return None
  if keep_masks is None:
    raise ValueError("mask_prob > 0 needs keep_masks: bool[N, H, W] object pixels")
  keep = jnp.asarray(keep_masks, bool)
  if keep.shape != image_shape[:3]:
    raise ValueError(f"keep_masks must have shape [N, H, W] = {list(image_shape[:3])}, got "
                     f"{list(keep.shape)}")
  return keep


def _fit_steps(module: nn.Module, has_bn: bool, tx: optax.GradientTransformation,
               mask_prob: float) -> tuple[Callable, Callable]:
  """:func:`fit`'s jitted ``train_step(state, frozen, images, labels, rng, keep_batch) ->
  (state, loss)`` and ``eval_logits(state, frozen, images) -> logits [B, K]``."""

  def apply(params, batch_stats, frozen, images, is_training, rng=None):
    v = {"params": _merge(params, frozen)}
    if has_bn:
      v["batch_stats"] = batch_stats
    if is_training:
      out, upd = module.apply(v, images, train=True, mutable=["batch_stats"],
                              rngs={"dropout": rng})
      return (out[0] if isinstance(out, tuple) else out), upd.get("batch_stats", batch_stats)
    out = module.apply(v, images, train=False)
    return (out[0] if isinstance(out, tuple) else out), batch_stats

  @jax.jit
  def train_step(state, frozen, images, labels, rng, keep_batch):
    if keep_batch is not None:
      images = mask_augment(jax.random.fold_in(rng, 1), images, keep_batch, mask_prob)

    def loss_fn(p):
      logits, stats = apply(p, state.batch_stats, frozen, images, True, rng)
      return _bce(logits, labels), stats

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), batch_stats=stats,
                         opt_state=opt_state), loss

  @jax.jit
  def eval_logits(state, frozen, images):
    return apply(state.params, state.batch_stats, frozen, images, False)[0]

  return train_step, eval_logits


def fit(module: nn.Module, train: dict, val: dict, *, epochs: int = 10, batch_size: int = 64,
        learning_rate: float = 1e-3, seed: int = 0, head_only: bool = False,
        head_names: tuple[str, ...] = ("head", "fc"), init_variables: Any = None,
        schedule: str = "constant", workdir: str | None = None,
        progress: bool = True, keep_masks: Any = None, mask_prob: float = 0.0,
        overwrite: bool = False) -> dict:
  """Multi-label BCE training with Adam, per-epoch validation mAP, Orbax keep-best and resume.

  The epochs are run by :func:`rise_jax.train.loop.run`: epoch ``e`` visits the training set in
  the order ``permutation(fold_in(key, e))`` (the last partial batch is dropped), so a run
  killed after epoch ``k`` and resumed from its checkpoint ends with exactly the parameters of
  an uninterrupted run.

  Args:
    module: Flax module ``__call__(x, train) -> logits or (logits, features)``; batch norm
      statistics (``batch_stats``) are supported.
    train: ``{"image": float32[N, H, W, C], "label": multi-hot [N, K]}``.
    val: Same for validation (mAP and loss each epoch).
    epochs: Total epochs (a resumed run continues up to this number).
    batch_size: Examples per step, in ``[1, N]``.
    learning_rate: Adam learning rate.
    seed: Initialisation and data-order seed.
    head_only: Train only the parameters under ``head_names`` (fine-tuning a pretrained
      backbone); the frozen rest is passed to the step as an explicit argument.
    head_names: Top-level parameter names of the classifier head.
    init_variables: Starting variables (e.g. converted pretrained weights); default
      ``module.init``.
    schedule: ``"constant"`` learning rate or ``"cosine"`` decay to 0 over all steps.
    workdir: Folder for ``checkpoints/latest``, ``checkpoints/best``, ``history.json`` and the
      run's fingerprint (:mod:`rise_jax.train.loop`: a rerun with other data or settings
      refuses instead of returning the old model; ``epochs`` is part of it only with the
      cosine schedule); ``None`` trains in memory without checkpoints.
    progress: Show progress bars.
    keep_masks: Optional bool[N, H, W] pixels never masked by the masking augmentation (the
      objects of each training image).
    mask_prob: Masking augmentation: each training image is, with this probability, multiplied
      by ``max(keep, b)`` with ``b`` a random smooth mask (a 4x4 grid of uniform values,
      each cell kept with a random rate, bilinearly upsampled), so the classifier sees
      images whose background is partly replaced by 0 (the mean in normalised space), as
      saliency methods' masks do, without losing the labelled objects. Needs ``keep_masks``.
    overwrite: Discard a run in ``workdir`` trained with other settings and train anew.

  Returns:
    ``{"variables": the variables of the epoch with the best validation mAP,
    "last_variables", "history": [{"epoch", "train_loss", "val_loss", "val_map"}],
    "best_epoch", "val_map"}``.

  Raises:
    ValueError: For malformed data, out-of-range arguments, or a ``workdir`` holding a run
      with other settings (without ``overwrite``).
    rise_jax.train.loop.RunFolderBusy: Another run is training in ``workdir``.
  """
  x_tr, y_tr = _check_data(train["image"], train["label"])
  x_va, y_va = _check_data(val["image"], val["label"])
  keep = _check_fit_args(x_tr.shape[0], epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, schedule=schedule, mask_prob=mask_prob,
                         keep_masks=keep_masks, image_shape=x_tr.shape)
  init_key, key = jax.random.split(jax.random.key(seed))
  variables = init_variables or jax.jit(module.init)(init_key, x_tr[:1])
  has_bn = "batch_stats" in variables
  trainable_fn = (lambda k: k[0] in head_names) if head_only else (lambda k: True)
  params_tr, frozen = split_trainable(variables["params"], trainable_fn)
  lr = (optax.cosine_decay_schedule(learning_rate, epochs * (x_tr.shape[0] // batch_size))
        if schedule == "cosine" else learning_rate)
  tx = optax.adam(lr)
  state = TrainState(epoch=jnp.asarray(0, jnp.int32), params=params_tr,
                     batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params_tr))
  train_step, eval_logits = _fit_steps(module, has_bn, tx, mask_prob)

  def step(st, batch, rng):
    return train_step(st, frozen, batch["image"], batch["label"], rng, batch.get("keep"))

  def validate(st):
    logits = np.concatenate([np.asarray(eval_logits(st, frozen, x_va[i:i + 256]))
                             for i in range(0, x_va.shape[0], 256)])
    loss = float(np.mean(np.asarray(optax.sigmoid_binary_cross_entropy(logits, y_va))))
    return {"val_loss": loss, "val_map": mean_average_precision(logits, np.asarray(y_va))[0]}

  config = {"trainer": "rise_jax.train.classifier.fit", "module": module, "seed": seed,
            "learning_rate": learning_rate, "schedule": schedule, "head_only": head_only,
            "mask_prob": mask_prob}
  config.update({"head_names": list(head_names)} if head_only else {})
  config.update({"epochs": epochs} if schedule == "cosine" else {})  # the schedule's length
  data = {"image": x_tr, "label": y_tr, **({} if keep is None else {"keep": keep})}
  res = loop.run(state, step, validate, data, epochs=epochs, batch_size=batch_size, key=key,
                 best_metric="val_map", mode="max", workdir=workdir, config=config,
                 inputs={"val.image": x_va, "val.label": y_va, "init_variables": init_variables},
                 overwrite=overwrite, progress=progress)

  def to_variables(st):
    v = {"params": _merge(st.params, frozen)}
    if has_bn:
      v["batch_stats"] = st.batch_stats
    return v

  return {"variables": to_variables(res.best_state), "last_variables": to_variables(res.state),
          "history": res.history, "best_epoch": int(res.best_state.epoch),
          "val_map": max((h["val_map"] for h in res.history), default=float("nan"))}
