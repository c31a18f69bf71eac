"""Captioner training: teacher forcing, token cross-entropy, Adam, Orbax checkpoints and resume.

The loss is the mean cross-entropy of the next word over all non-``<pad>`` target positions
(the words and the final ``<eos>``), plus an auxiliary bag-of-words loss (which words the caption
contains, predicted from the max-pooled image features; targets derived from the captions
alone). Measured on the 64 px scenes (3000 training scenes, 6 epochs, batch 16): without it
the encoder barely learns to tell the shapes apart in a few CPU minutes (greedy captions with
the right shapes on 23% of the test scenes, vs 52% with it).

Runs with a ``workdir`` keep ``checkpoints/latest`` and ``checkpoints/best`` (lowest validation
loss), ``history.json`` (through :func:`rise_jax.train.loop.run`) and the best
variables in ``variables``, so a killed run resumes exactly, and a finished one is reloaded
instead of retrained.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rise_jax.data import captions
from rise_jax.models import captioner as captioner_lib
from rise_jax.train import checkpoint, loop

Variables = Any


@flax.struct.dataclass
class CaptionTrainState:
  """What :func:`fit_captioner` optimises and checkpoints."""

  epoch: jax.Array
  params: Any
  opt_state: Any


def _check_data(data: dict, name: str) -> tuple[jax.Array, jax.Array]:
  if not isinstance(data, dict) or "image" not in data or "tokens" not in data:
    raise ValueError(f"{name} must be a dict with 'image' float32[N, H, W, C] and 'tokens' "
                     "int32[N, L] (see rise_jax.data.captions.make)")
  images = jnp.asarray(data["image"], jnp.float32)
  tokens = jnp.asarray(data["tokens"])
  if images.ndim != 4:
    raise ValueError(f"{name}['image'] must have shape [N, H, W, C], got {images.shape}")
  if tokens.ndim != 2 or tokens.shape[0] != images.shape[0] or tokens.shape[1] < 2:
    raise ValueError(f"{name}['tokens'] must have shape [N={images.shape[0]}, L >= 2], got "
                     f"{tokens.shape}")
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"{name}['tokens'] must be integer token ids, got {tokens.dtype}")
  if images.shape[0] == 0:
    raise ValueError(f"{name} needs at least one example, got N = 0")
  return images, tokens.astype(jnp.int32)


def bag_of_words(tokens: jax.Array, vocab_size: int) -> jax.Array:
  """float32[B, V] multi-hot: which words (not ``<pad>``/``<bos>``/``<eos>``) each caption has."""
  hot = jax.nn.one_hot(tokens, vocab_size).max(axis=1)
  special = jnp.zeros((vocab_size,)).at[jnp.asarray([captions.PAD_ID, captions.BOS_ID,
                                                     captions.EOS_ID])].set(1.0)
  return hot * (1.0 - special)


def caption_loss(module: captioner_lib.Captioner, params: Any, images: jax.Array,
                 tokens: jax.Array, bag_weight: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Teacher-forced cross-entropy, plus an optional auxiliary bag-of-words loss.

  Args:
    module: The captioner.
    params: Its ``params`` collection.
    images: float32[B, H, W, C].
    tokens: int32[B, L] encoded captions (``<bos> ... <eos> <pad>...``).
    bag_weight: Weight of the auxiliary loss: sigmoid cross-entropy of the captioner's
      bag-of-words head against the words the caption contains (mean over words). Its targets
      come from the captions alone; it makes the encoder learn to recognise the shapes far
      faster than through the decoder only.

  Returns:
    ``(loss, token_accuracy)``: mean next-word cross-entropy over non-pad targets (plus
    ``bag_weight`` times the auxiliary loss) and the fraction of targets predicted by arg-max.
  """
  logits, bag = module.apply({"params": params}, images, tokens[:, :-1], with_bag=True)
  targets = tokens[:, 1:]
  weight = (targets != captions.PAD_ID).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  denom = jnp.maximum(weight.sum(), 1.0)
  acc = ((jnp.argmax(logits, -1) == targets) * weight).sum() / denom
  loss = (ce * weight).sum() / denom
  if bag_weight:
    aux = optax.sigmoid_binary_cross_entropy(bag, bag_of_words(tokens, module.vocab_size))
    loss = loss + bag_weight * aux.mean()
  return loss, acc


def evaluate_captioner(module: captioner_lib.Captioner, variables: Variables, data: dict, *,
             batch_size: int = 256) -> dict:
  """Loss, token accuracy and greedy-caption accuracy on a captioned dataset.

  Args:
    module: The captioner.
    variables: Its variables.
    data: ``{"image", "tokens"}`` as made by :func:`rise_jax.data.captions.make` (with
      ``"label"`` for the shape-set accuracy).
    batch_size: Examples per forward pass.

  Returns:
    ``{"loss", "token_acc", "exact": greedy caption == reference, "shapes": the greedy caption
    names exactly the scene's set of shapes (each once)}``; the last needs ``data["label"]``.
  """
  images, tokens = _check_data(data, "data")
  loss, acc = evaluate_loss(module, variables, images, tokens, batch_size=batch_size)
  pred = captioner_lib.greedy_decode(module, variables, images, max_len=tokens.shape[1],
                                     batch_size=batch_size)
  ref = np.asarray(tokens)
  exact = [captions.decode(p) == captions.decode(r) for p, r in zip(pred, ref)]
  out = {"loss": loss, "token_acc": acc, "exact": float(np.mean(exact))}
  if "label" in data:
    out["shapes"] = float(np.mean(shape_set_correct(pred, data["label"])))
  return out


def shape_set_correct(pred_tokens: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Whether each caption names exactly the scene's shapes, each once.

  Args:
    pred_tokens: int[N, L] encoded captions.
    labels: float[N, C] multi-hot visible classes.

  Returns:
    bool[N].
  """
  out = []
  for ids, lab in zip(np.asarray(pred_tokens), np.asarray(labels)):
    nouns = [c for c in (captions.noun_class(t) for t in captions.words_of(ids)) if c is not None]
    out.append(sorted(nouns) == np.flatnonzero(lab > 0.5).tolist())
  return np.asarray(out, bool)


def _caption_step(module: captioner_lib.Captioner, tx: optax.GradientTransformation,
                  bag_weight: float) -> Callable:
  """Jitted ``train_step(state, images, tokens) -> (state, loss)`` of :func:`fit_captioner`."""

  @jax.jit
  def train_step(state, images, tokens):
    (loss, _), grads = jax.value_and_grad(
        lambda p: caption_loss(module, p, images, tokens, bag_weight), has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), loss

  return train_step


def fit_captioner(module: captioner_lib.Captioner, train: dict, val: dict, *, epochs: int = 10,
                  batch_size: int = 16, learning_rate: float = 3e-3, bag_weight: float = 1.0,
                  seed: int = 0, workdir: str | None = None, progress: bool = True,
                  overwrite: bool = False) -> dict:
  """Trains a captioner with teacher forcing (token cross-entropy) and Adam.

  The epochs are run by :func:`rise_jax.train.loop.run`: epoch ``e`` visits the training set in
  the order ``permutation(fold_in(key, e))`` (the last partial batch is dropped), so a run
  resumed from its latest checkpoint ends with exactly the parameters of an uninterrupted run.
  The learning rate decays with a cosine over all steps.

  Args:
    module: The :class:`~rise_jax.models.captioner.Captioner`.
    train: ``{"image": float32[N, H, W, C], "tokens": int32[N, L]}``
      (:func:`rise_jax.data.captions.make`).
    val: Same, for the per-epoch validation loss (the best checkpoint has the lowest).
    epochs: Total epochs (a resumed run continues up to this number; a finished run returns at
      once).
    batch_size: Examples per step, in ``[1, N]``.
    learning_rate: Peak Adam learning rate.
    bag_weight: Weight of the auxiliary bag-of-words loss (see :func:`caption_loss`); the
      validation loss and the best checkpoint use the next-word cross-entropy only.
    seed: Initialisation and data-order seed.
    workdir: Run folder (``checkpoints/{latest,best}``, ``history.json``, the run's fingerprint:
      a rerun with other data or settings, ``epochs`` included since the cosine schedule spans
      them, refuses instead of returning the old captioner, see :mod:`rise_jax.train.loop`);
      ``None`` trains in memory.
    progress: Show a progress bar.
    overwrite: Discard a run in ``workdir`` trained with other settings and train anew.

  Returns:
    ``{"variables": the best epoch's variables, "last_variables", "history": [{"epoch",
    "train_loss", "val_loss", "val_token_acc"}], "best_epoch"}``. With a ``workdir`` the best
    variables are also saved to ``workdir/variables`` (:func:`load_captioner` reads them).

  Raises:
    ValueError: For malformed data, out-of-range arguments, or a ``workdir`` holding a run
      with other settings (without ``overwrite``).
    rise_jax.train.loop.RunFolderBusy: Another run is training in ``workdir``.
  """
  x_tr, t_tr = _check_data(train, "train")
  x_va, t_va = _check_data(val, "val")
  n = x_tr.shape[0]
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}")
  if epochs < 1 or not learning_rate > 0:
    raise ValueError(f"epochs must be >= 1 and learning_rate > 0, got {epochs}, {learning_rate}")
  if int(t_tr.max()) >= module.vocab_size or int(t_tr.min()) < 0:
    raise ValueError(f"train['tokens'] must be ids in [0, {module.vocab_size - 1}], got "
                     f"[{int(t_tr.min())}, {int(t_tr.max())}]")
  init_key, key = jax.random.split(jax.random.key(seed))
  variables = captioner_lib.init(module, init_key, tuple(x_tr.shape[1:]))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, epochs * (n // batch_size), 0.05))
  state = CaptionTrainState(epoch=jnp.asarray(0, jnp.int32), params=variables["params"],
                            opt_state=tx.init(variables["params"]))
  train_step = _caption_step(module, tx, bag_weight)

  def validate(st):
    val_loss, val_acc = evaluate_loss(module, {"params": st.params}, x_va, t_va)
    return {"val_loss": val_loss, "val_token_acc": val_acc}

  def export(res):  # the best variables, for load_captioner
    checkpoint.save_variables(os.path.join(workdir, VARIABLES_DIR),
                              {"params": res.best_state.params})

  config = {"trainer": "rise_jax.train.captioner.fit_captioner", "module": module,
            "epochs": epochs, "learning_rate": learning_rate, "bag_weight": bag_weight,
            "seed": seed}
  res = loop.run(state, lambda st, batch, rng: train_step(st, batch["image"], batch["tokens"]),
                 validate, {"image": x_tr, "tokens": t_tr}, epochs=epochs,
                 batch_size=batch_size, key=key, best_metric="val_loss", mode="min",
                 workdir=workdir, config=config, inputs={"val.image": x_va, "val.tokens": t_va},
                 overwrite=overwrite, clear=(VARIABLES_DIR,), finish=export, progress=progress,
                 desc="captioner epochs")
  return {"variables": {"params": res.best_state.params},
          "last_variables": {"params": res.state.params}, "history": res.history,
          "best_epoch": int(res.best_state.epoch)}


def evaluate_loss(module: captioner_lib.Captioner, variables: Variables, images, tokens, *,
                  batch_size: int = 256) -> tuple[float, float]:
  """Teacher-forced loss of a dataset.

  Args:
    module: The captioner.
    variables: Its variables.
    images: float32[N, H, W, C].
    tokens: int32[N, L] encoded captions.
    batch_size: Examples per forward pass.

  Returns:
    ``(mean token cross-entropy, token accuracy)`` over all non-pad targets.
  """
  images, tokens = _check_data({"image": images, "tokens": tokens}, "data")
  total, acc, count = 0.0, 0.0, 0.0
  for i in range(0, images.shape[0], batch_size):
    x, t = images[i:i + batch_size], tokens[i:i + batch_size]
    n = float((t[:, 1:] != captions.PAD_ID).sum())
    loss, a = _loss_jit(module, variables["params"], x, t)
    total, acc, count = total + float(loss) * n, acc + float(a) * n, count + n
  return total / count, acc / count


_loss_jit = jax.jit(caption_loss, static_argnums=0)

VARIABLES_DIR = "variables"


def load_captioner(workdir: str, module: captioner_lib.Captioner,
                   image_shape: tuple[int, int, int]) -> Variables:
  """The best variables of a finished :func:`fit_captioner` run (``workdir/variables``).

  Args:
    workdir: The run folder.
    module: The captioner (its hyper-parameters must match the checkpoint).
    image_shape: ``(H, W, C)`` of the training images.

  Returns:
    ``{"params": ...}``.

  Raises:
    FileNotFoundError: No finished run in ``workdir``.
    ValueError: The checkpoint does not match ``module`` (names the first difference).
  """
  template = jax.eval_shape(lambda: captioner_lib.init(module, jax.random.key(0), image_shape))
  tree = checkpoint.load_variables(os.path.join(workdir, VARIABLES_DIR), template)
  return jax.tree.map(jnp.asarray, tree)
