"""NN-Explainer training (Stalder et al.; SPEC §6): a DeepLabV3 learns class masks for a frozen
classifier.

* The **Explainer** is :class:`rise_jax.models.deeplab.DeepLabV3` with one output channel per
  class (:func:`create_explainer`); :func:`explain` applies it in eval mode and a sigmoid, giving
  all class masks ``s float32[B, C, H, W]`` in one forward pass.
* The **explanandum** ``F`` is any Flax ``apply(variables, x)`` returning logits float32[B, C] or
  ``(logits, features)``. It is frozen: its variables are an explicit argument of every step,
  never part of :class:`ExplainerState` (so never optimised nor checkpointed).
* One step (:func:`make_train_step`): ``s = sigmoid(E(x))`` (train mode: BN batch statistics
  updated, ASPP dropout active), ``m, n = aggregate_masks(s, Y)``, ``F(x * m)`` and
  ``F(x * (1 - m))`` (masking in normalised space), ``explainer_loss(..., coeffs)``, Adam.
* :func:`train_explainer`: the step, a validation function and one call to the epoch driver
  :func:`rise_jax.train.loop.run` (as :func:`rise_jax.train.classifier.fit`): epochs in the
  order ``permutation(fold_in(key, epoch))``, validation loss each epoch, early stopping on it,
  Orbax ``checkpoints/latest`` + ``checkpoints/best`` (by validation loss) and ``history.json``
  in ``workdir`` with exact resume.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.errors
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from rise_jax import engine
from rise_jax.explainer.losses import (
  Coefficients,
  aggregate_masks,
  check_inputs,
  explainer_loss,
)
from rise_jax.models.deeplab import DeepLabV3
from rise_jax.train import loop

ApplyFn = Callable[..., Any]


@flax.struct.dataclass
class ExplainerState:
  """What the Explainer training optimises and checkpoints (never the explanandum).

  Attributes:
    epoch: int32 scalar, completed epochs.
    params: The Explainer's ``params`` collection.
    batch_stats: The Explainer's BN ``batch_stats`` collection.
    opt_state: Adam state of ``params``.
  """

  epoch: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


# ----------------------------------------------------------------------------------------------
# Model and inference.


def create_explainer(num_classes: int, *, backbone: str = "resnet18", width: int = 8,
                     output_stride: int = 8, stem: str = "imagenet") -> DeepLabV3:
  """The Explainer network: DeepLabV3 with one output channel (mask logit) per class.

  The sigmoid is applied by :func:`explain` (and inside the training step), not by the module.

  Args:
    num_classes: Number of classes ``C`` of the explanandum, ``>= 1``.
    backbone: ``"resnet18"`` (small CPU variant, default), ``"resnet34"``, ``"resnet50"`` (the
      paper's) or ``"resnet101"``.
    width: Backbone base width (64 in torchvision; ASPP/head channels are ``4 * width``).
    output_stride: 8 (the paper's), 16 or 32.
    stem: ``"imagenet"`` (the paper's) or ``"small"`` (no stem downsampling, for small
      images; see :class:`DeepLabV3`).

  Returns:
    A :class:`DeepLabV3` whose ``apply(variables, x)`` gives ``(logits float32[B, H, W, C],
    features)``.

  Raises:
    ValueError: For a non-positive ``num_classes`` or ``width``.
  """
  for value, name in ((num_classes, "num_classes"), (width, "width")):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  return DeepLabV3(num_classes=num_classes, backbone=backbone, width=width,
                   output_stride=output_stride, stem=stem)


def _check_images(images: Any, name: str = "images") -> None:
  shape = tuple(np.shape(images))
  if len(shape) != 4 or shape[-1] != 3 or min(shape) < 1:
    raise ValueError(f"{name} must have shape [B, H, W, 3] (non-empty, RGB, normalised), got "
                     f"shape {list(shape)}")


def _mask_logits(module: nn.Module, variables: Any, images: jax.Array, train: bool = False,
                 rng: jax.Array | None = None) -> tuple[jax.Array, Any]:
  """Explainer mask logits float32[B, C, H, W] and the (possibly updated) batch_stats."""
  if train:
    (logits, _), upd = module.apply(variables, images, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": rng})
    stats = upd.get("batch_stats", variables.get("batch_stats", {}))
  else:
    logits, _ = module.apply(variables, images, train=False)
    stats = variables.get("batch_stats", {})
  return jnp.transpose(logits, (0, 3, 1, 2)), stats


@functools.partial(jax.jit, static_argnums=0)
def _explain(module: nn.Module, variables: Any, images: jax.Array) -> jax.Array:
  return jax.nn.sigmoid(_mask_logits(module, variables, images)[0])


def explain(module: nn.Module, variables: Any, images: Any, mesh: Mesh | None = None
            ) -> jax.Array:
  """All class masks of a batch in one forward pass (eval mode), jitted per module.

  Args:
    module: The Explainer (:func:`create_explainer`).
    variables: Its variables ``{"params", "batch_stats"}``.
    images: float32[B, H, W, 3] images, normalised as the explanandum expects.
    mesh: Optional 1-D mesh with axis ``"batch"`` (:func:`rise_jax.batch_mesh`, or one over
      ``jax.devices()`` of several processes): the batch is padded to a multiple of its size and
      sharded over it, the variables replicated. Eval mode treats images independently, so the
      masks do not depend on the mesh.

  Returns:
    float32[B, C, H, W] masks ``sigmoid(E(x))`` in ``[0, 1]`` (a host-addressable array when
    ``mesh`` spans several processes: every process gets all masks).

  Raises:
    ValueError: For images that are not [B, H, W, 3] or not finite, or variables that do not
      fit the module.
    TypeError: For images that are not floating point (uint8 / bool photos are refused).
  """
  _check_images(images)
  dtype = getattr(images, "dtype", None)
  dtype = np.asarray(images).dtype if dtype is None else dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    # uint8 / bool photos in 0..255 are not normalised: the masks would saturate.
    raise TypeError(f"images must be floating point (normalised as the explanandum expects), "
                    f"got dtype {dtype}; preprocess uint8 photos first")
  if not isinstance(variables, Mapping) or "params" not in variables:
    raise ValueError(f"variables must be the Explainer's variables {{'params': ..., "
                     f"'batch_stats': ...}}, got {type(variables).__name__}"
                     + (f" with keys {sorted(variables)}" if isinstance(variables, Mapping)
                        else ""))
  # On the device without a mesh; on the host with one (global arrays are built from it).
  x = jnp.asarray(images, jnp.float32) if mesh is None else np.asarray(images, np.float32)
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError("images contain NaN or inf values; the masks would be NaN")
  try:
    if mesh is None:
      return _explain(module, variables, x)
    b = x.shape[0]
    pad = -b % mesh.size
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.float32)])
    out = _explain(module, engine.replicate(variables, mesh), engine.shard_batch(x, mesh))
  except flax.errors.FlaxError as e:  # a missing or mis-shaped parameter
    raise ValueError(f"variables do not fit module {type(module).__name__} (not its "
                     f"variables, or another image channel count): {e}") from e
  return jnp.asarray(engine.to_host(out)[:b])


# ----------------------------------------------------------------------------------------------
# One optimisation step.


def _explanandum_logits(apply_fn: ApplyFn, variables: Any, images: jax.Array) -> jax.Array:
  out = apply_fn(variables, images)
  return out[0] if isinstance(out, tuple) else out


def _loss_terms(apply_fn: ApplyFn, frozen: Any, coeffs: Coefficients, masks: jax.Array,
                images: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Masks both ways through the frozen explanandum and evaluates eq. 1."""
  frozen = jax.lax.stop_gradient(frozen)
  m, _ = aggregate_masks(masks, labels)
  logits_masked = _explanandum_logits(apply_fn, frozen, images * m[..., None])
  logits_inverse = _explanandum_logits(apply_fn, frozen, images * (1.0 - m)[..., None])
  return explainer_loss(logits_masked, logits_inverse, masks, labels, coeffs)


def _check_step_shapes(images: jax.Array, labels: jax.Array) -> None:
  _check_images(images)
  ls = tuple(labels.shape)
  if len(ls) != 2 or ls[0] != images.shape[0]:
    raise ValueError(f"labels must be multi-hot with shape [B={images.shape[0]}, C], got shape "
                     f"{list(ls)}")


@functools.lru_cache(maxsize=32)
def make_train_step(module: nn.Module, explanandum_apply: ApplyFn, coeffs: Coefficients,
                    learning_rate: float) -> Callable:
  """The jitted step ``(state, frozen_explanandum_variables, images, labels, rng)``.

  Cached on its (hashable) arguments, so repeated training runs of the same configuration
  compile once.

  Args:
    module: The Explainer.
    explanandum_apply: The frozen classifier's ``apply(variables, x)`` (logits or
      ``(logits, features)``), closed over (static).
    coeffs: Loss coefficients (static).
    learning_rate: Adam learning rate (must match the optimiser of the state, see
      :func:`init_state`).

  Returns:
    ``step(state, frozen_explanandum_variables, images float32[B, H, W, 3], labels [B, C],
    rng) -> (new_state, loss, terms)``; only ``state.params``, ``state.batch_stats`` and
    ``state.opt_state`` change (``epoch`` is left to the caller). The explanandum variables
    are an input only: no gradient is taken with respect to them.
  """
  tx = optax.adam(learning_rate)

  @jax.jit
  def step(state: ExplainerState, frozen: Any, images: jax.Array, labels: jax.Array,
           rng: jax.Array):
    _check_step_shapes(images, labels)
    labels = labels.astype(jnp.float32)

    def loss_fn(params):
      variables = {"params": params, "batch_stats": state.batch_stats}
      logits, stats = _mask_logits(module, variables, images, True, rng)
      loss, terms = _loss_terms(explanandum_apply, frozen, coeffs, jax.nn.sigmoid(logits),
                                images, labels)
      return loss, (terms, stats)

    (loss, (terms, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new = state.replace(params=optax.apply_updates(state.params, updates), batch_stats=stats,
                        opt_state=opt_state)
    return new, loss, terms

  return step


@functools.lru_cache(maxsize=32)
def make_eval_step(module: nn.Module, explanandum_apply: ApplyFn,
                   coeffs: Coefficients) -> Callable:
  """Jitted ``(explainer_variables, frozen, images, labels) -> (loss, terms)`` in eval mode."""

  @jax.jit
  def evaluate(variables: Any, frozen: Any, images: jax.Array, labels: jax.Array):
    _check_step_shapes(images, labels)
    logits, _ = _mask_logits(module, variables, images)
    return _loss_terms(explanandum_apply, frozen, coeffs, jax.nn.sigmoid(logits), images,
                       labels.astype(jnp.float32))

  return evaluate


def init_state(variables: Any, learning_rate: float) -> ExplainerState:
  """The initial :class:`ExplainerState` of Explainer ``variables`` with Adam(``learning_rate``)."""
  params = variables["params"]
  return ExplainerState(epoch=jnp.asarray(0, jnp.int32), params=params,
                        batch_stats=variables.get("batch_stats", {}),
                        opt_state=optax.adam(learning_rate).init(params))


def state_variables(state: ExplainerState) -> dict:
  """The Explainer variables ``{"params", "batch_stats"}`` of a state (for :func:`explain`)."""
  return {"params": state.params, "batch_stats": state.batch_stats}


# ----------------------------------------------------------------------------------------------
# Training loop.


def _check_split(split: Any, name: str) -> tuple[jax.Array, jax.Array]:
  if not isinstance(split, dict) or "image" not in split or "label" not in split:
    raise ValueError(f"{name} must be a dict with 'image' [N, H, W, 3] and 'label' [N, C]")
  _check_images(split["image"], f"{name}['image']")
  images = jnp.asarray(split["image"], jnp.float32)
  labels = np.asarray(split["label"])
  if labels.ndim != 2 or labels.shape[0] != images.shape[0] or labels.shape[1] < 1:
    raise ValueError(f"{name}['label'] must be multi-hot with shape [N={images.shape[0]}, C], got "
                     f"shape {list(labels.shape)}")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError(f"{name}['label'] must be multi-hot: bool or exactly 0/1 per class")
  return images, jnp.asarray(labels, jnp.float32)


def _check_training_args(explanandum_apply: ApplyFn, explanandum_variables: Any, train: dict,
                         val: dict, *, coeffs: Coefficients, epochs: int, batch_size: int,
                         learning_rate: float | None, patience: int, module: nn.Module | None,
                         mesh: Mesh | None) -> tuple[jax.Array, ...]:
  """Checks :func:`train_explainer`'s arguments.

  Returns:
    ``(x_tr, y_tr, x_va, y_va, learning_rate, module)``: images float32[N, H, W, 3], labels
    float32[N, C], the learning rate as a float and the Explainer (default
    ``create_explainer(C)``).
  """
  if not isinstance(coeffs, Coefficients):
    raise ValueError(f"coeffs must be a Coefficients instance, got {type(coeffs).__name__}")
  x_tr, y_tr = _check_split(train, "train")
  x_va, y_va = _check_split(val, "val")
  n, num_classes = y_tr.shape
  if y_va.shape[1] != num_classes or x_va.shape[1:] != x_tr.shape[1:]:
    raise ValueError(f"val must match train: images [N, {', '.join(map(str, x_tr.shape[1:]))}] "
                     f"and labels [N, {num_classes}], got {list(x_va.shape)} and "
                     f"{list(y_va.shape)}")
  for value, name in ((epochs, "epochs"), (patience, "patience")):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be an integer in [1, {n}] (the number of training "
                     f"examples), got {batch_size!r}")
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(f"batch_size must be a multiple of the number of devices in mesh "
                     f"({mesh.size}) for data-parallel training, got {batch_size}")
  lr = coeffs.lr if learning_rate is None else learning_rate
  if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
    raise ValueError(f"learning_rate must be a finite number > 0, got {lr!r}")
  module = create_explainer(num_classes) if module is None else module
  if getattr(module, "num_classes", num_classes) != num_classes:
    raise ValueError(f"labels have {num_classes} classes but the Explainer predicts "
                     f"{module.num_classes} masks (module.num_classes)")
  out_shape = jax.eval_shape(lambda x: _explanandum_logits(explanandum_apply,
                                                           explanandum_variables, x), x_tr[:1])
  if tuple(out_shape.shape) != (1, num_classes):
    raise ValueError(f"labels have {num_classes} classes but the explanandum returns logits of "
                     f"shape {list(out_shape.shape)} per image (expected [1, {num_classes}])")
  return x_tr, y_tr, x_va, y_va, float(lr), module


def _check_first_batch(module: nn.Module, state: ExplainerState, explanandum_apply: ApplyFn,
                       frozen: Any, images: jax.Array, labels: jax.Array) -> None:
  """Value checks of the loss inputs on concrete arrays, outside jit (the first batch)."""
  masks = explain(module, state_variables(state), images)
  m, _ = aggregate_masks(masks, labels)
  check_inputs(masks=masks, labels=labels,
               logits_masked=_explanandum_logits(explanandum_apply, frozen, images * m[..., None]),
               logits_inverse=_explanandum_logits(explanandum_apply, frozen,
                                                  images * (1.0 - m)[..., None]))


def _placer(mesh: Mesh | None) -> Callable:
  """``place(x, y)``: a batch as the steps take it, sharded over the mesh when it divides."""

  def place(x, y):
    if mesh is None:
      return x, y
    if x.shape[0] % mesh.size:
      return tuple(engine.replicate(a, mesh) for a in (x, y))
    return engine.shard_batch(x, mesh), engine.shard_batch(y, mesh)

  return place


def _validator(eval_step: Callable, frozen: Any, x_va: Any, y_va: Any, batch_size: int,
               place: Callable) -> Callable:
  """``validate(state) -> {"val_loss", "val_terms"}``: eq. 1 and its terms on ``val``, means
  over the examples (Explainer in eval mode)."""

  def validate(st):
    variables = state_variables(st)
    total, sums = 0.0, {}
    for i in range(0, x_va.shape[0], batch_size):
      xv, yv = x_va[i:i + batch_size], y_va[i:i + batch_size]
      loss, terms = eval_step(variables, frozen, *place(xv, yv))
      k = xv.shape[0]
      total += float(loss) * k
      for name, v in terms.items():
        sums[name] = sums.get(name, 0.0) + float(v) * k
    count = x_va.shape[0]
    return {"val_loss": total / count, "val_terms": {name: v / count for name, v in sums.items()}}

  return validate


def train_explainer(explanandum_apply: ApplyFn, explanandum_variables: Any, train: dict,
                    val: dict, *, coeffs: Coefficients, epochs: int, batch_size: int,
                    learning_rate: float | None = None, seed: int = 0, patience: int = 3,
                    workdir: str | None = None, module: nn.Module | None = None,
                    progress: bool = True, mesh: Mesh | None = None,
                    overwrite: bool = False) -> dict:
  """Trains an Explainer for a frozen classifier with Adam and early stopping.

  The epochs are run by :func:`rise_jax.train.loop.run`: epoch ``e`` visits the training set in
  the order ``permutation(fold_in(key, e))`` (the last partial batch is dropped); the dropout
  key of step ``s`` is ``fold_in(fold_in(key, e), s)``. After each epoch the loss of eq. 1 on
  ``val`` (Explainer in eval mode) decides the best epoch; training stops after ``patience``
  epochs without improvement. With ``workdir``, a run that was killed (or asked for fewer
  epochs) restarts from its latest checkpoint and ends with exactly the parameters of an
  uninterrupted run.

  Args:
    explanandum_apply: Frozen classifier ``apply(variables, x)`` returning logits float32[B, C]
      or ``(logits, features)`` (e.g. ``TinyCNN(...).apply``); hashable (a bound
      ``module.apply`` or a module-level function).
    explanandum_variables: Its variables; passed to every step, never trained or saved.
    train: ``{"image": float32[N, H, W, 3] (normalised), "label": multi-hot [N, C]}``.
    val: Same for validation, ``N >= 1``.
    coeffs: Loss coefficients (:class:`Coefficients`, e.g. a preset).
    epochs: Total epochs ``>= 1`` (a resumed run continues up to this number).
    batch_size: Examples per step, in ``[1, N]``.
    learning_rate: Adam learning rate; default ``coeffs.lr``.
    seed: Initialisation, data-order and dropout seed.
    patience: Stop after this many epochs without a lower validation loss, ``>= 1``.
    workdir: Folder for ``checkpoints/latest``, ``checkpoints/best``, ``history.json`` and the
      run's fingerprint (:mod:`rise_jax.train.loop`: a rerun with other data, explanandum or
      settings refuses instead of returning the old Explainer; ``epochs``, ``patience`` and
      ``mesh`` are not part of it); ``None`` trains in memory.
    module: The Explainer; default ``create_explainer(C)``. Its ``num_classes`` must be ``C``.
    progress: Show a progress bar.
    mesh: Optional 1-D mesh with axis ``"batch"`` for data-parallel training: each training
      batch (and each validation batch whose size it divides) is sharded over it, the state and
      the frozen explanandum replicated; gradients and BN statistics are reduced over the
      whole global batch, so the run follows the single-device one (up to float summation
      order). A mesh over ``jax.devices()`` after ``jax.distributed.initialize`` trains across
      processes: every process runs this function on the same data and takes its own rows of
      each batch (see ``experiments/README.md``). ``batch_size`` must be a multiple of
      ``mesh.size``.
    overwrite: Discard a run in ``workdir`` trained with other settings and train anew.

  Returns:
    ``{"variables": Explainer variables of the epoch with the lowest validation loss,
    "last_variables": those of the last epoch, "history": [{"epoch", "train_loss", "val_loss",
    "val_terms"}], "best_epoch", "stopped_early"}``.

  Raises:
    ValueError: For malformed data (images not [N, H, W, 3], labels not multi-hot [N, C], a
      label width that differs from the explanandum's or the Explainer's number of classes),
      out-of-range arguments, or a ``workdir`` holding a run with other settings (without
      ``overwrite``).
    rise_jax.train.loop.RunFolderBusy: Another run is training in ``workdir``.
  """
  x_tr, y_tr, x_va, y_va, lr, module = _check_training_args(
      explanandum_apply, explanandum_variables, train, val, coeffs=coeffs, epochs=epochs,
      batch_size=batch_size, learning_rate=learning_rate, patience=patience, module=module,
      mesh=mesh)
  init_key, key = jax.random.split(jax.random.key(seed))
  state = init_state(jax.jit(module.init)(init_key, x_tr[:1]), lr)
  train_step = make_train_step(module, explanandum_apply, coeffs, lr)
  frozen = explanandum_variables
  first = jax.random.permutation(jax.random.fold_in(key, 0), y_tr.shape[0])[:batch_size]
  _check_first_batch(module, state, explanandum_apply, frozen, x_tr[first], y_tr[first])
  config = {"trainer": "rise_jax.explainer.train.train_explainer", "module": module,
            "explanandum": explanandum_apply, "coeffs": coeffs, "learning_rate": lr,
            "seed": seed}
  inputs = {"val.image": x_va, "val.label": y_va, "explanandum_variables": frozen}
  if mesh is not None:
    frozen = engine.replicate(frozen, mesh)
    x_tr, y_tr, x_va, y_va = (np.asarray(a) for a in (x_tr, y_tr, x_va, y_va))
  place = _placer(mesh)

  def step(st, batch, rng):
    st, loss, _ = train_step(st, frozen, *place(batch["image"], batch["label"]),
                             rng if mesh is None else engine.replicate(rng, mesh))
    return st, loss

  res = loop.run(
      state, step, _validator(make_eval_step(module, explanandum_apply, coeffs), frozen, x_va,
                              y_va, batch_size, place),
      {"image": x_tr, "label": y_tr}, epochs=epochs, batch_size=batch_size, key=key,
      best_metric="val_loss", mode="min", workdir=workdir, patience=patience, config=config,
      inputs=inputs, overwrite=overwrite, progress=progress, desc="explainer",
      place_state=None if mesh is None else (lambda t: engine.replicate(t, mesh)))
  return {"variables": state_variables(res.best_state),
          "last_variables": state_variables(res.state), "history": res.history,
          "best_epoch": int(res.best_state.epoch), "stopped_early": bool(res.stopped_early)}
