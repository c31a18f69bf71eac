"""RISE for image captioning (Petsiuk et al., BMVC 2018, "RISE for Captioning", eq. 7).

The black box of a captioning model is the probability of each word of a sentence
``s = (w_1, ..., w_T)`` given the image and the words before it (teacher forcing):
``f(I, s, w_k) = P[w_k | I, w_1, ..., w_{k-1}]``. RISE explains every word with the same
estimator as for classes, ``S_k = sum_i f(I * M_i, s, w_k) * M_i / (N * E[M])``, so the ``T``
words of a sentence are the ``T`` "classes" of one RISE run: every masked image goes through the
captioner once and the word probabilities of all ``T`` positions are folded into ``T`` maps in
the same streaming pass.

This is literally :func:`rise_jax.rise`'s per-image estimator (``rise._rise_one``, with
``rise._prepare``'s validation) on the black box ``x -> caption_model_fn(x, tokens)``; the
tokens are a traced argument of the jitted function, so explaining another sentence of the same
length does not recompile. The map of word ``k`` therefore equals
``rise(lambda x: caption_model_fn(x, tokens)[:, k:k + 1], image, key)``
with the same key and settings (tested to 1e-5).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks, engine, masks as masks_lib, substrates
from rise_jax.rise import _Config, _prepare, _raise_if_bad, _rise_one  # private, reused as is

# Probabilities may overshoot [0, 1] by float rounding (e.g. a softmax in float32).
_PROB_SLACK = 1e-4


class CaptionRiseInfo(NamedTuple):
  """What :func:`caption_rise` did besides the maps.

  Attributes:
    probs: float32[T] ``P[w_k | I, w_<k]`` on the unmasked image.
    num_masks: int masks used (``< num_masks`` when ``tol`` stopped early).
  """

  probs: np.ndarray
  num_masks: int


def _check_tokens(tokens, vocab_size: int | None) -> jax.Array:
  """Validates a token sequence; returns int32[T]."""
  if isinstance(tokens, str):
    raise TypeError("tokens must be a sequence of integer token ids, got a string (encode the "
                    "sentence with the captioner's vocabulary first)")
  try:
    arr = np.asarray(tokens)
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise TypeError(f"tokens must be a 1-D sequence of integer token ids, got "
                    f"{type(tokens).__name__}") from e
  if arr.ndim != 1:
    raise ValueError(f"tokens must be a 1-D sequence of token ids [T], got shape {arr.shape}")
  if arr.size == 0:
    raise ValueError("tokens must contain at least one token id, got an empty sequence")
  if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"tokens must be integer token ids, got dtype {arr.dtype}")
  lo, hi = int(arr.min()), int(arr.max())
  if lo < 0 or (vocab_size is not None and hi >= vocab_size):
    allowed = f"[0, {vocab_size - 1}]" if vocab_size is not None else "ids >= 0"
    bad = [int(t) for t in arr if t < 0 or (vocab_size is not None and t >= vocab_size)]
    raise ValueError(f"tokens must be ids in the vocabulary {allowed}, got out-of-range ids "
                     f"{bad[:5]} at positions "
                     f"{[int(i) for i in np.flatnonzero(np.isin(arr, bad))][:5]}")
  return jnp.asarray(arr, jnp.int32)


def _vocab_size(caption_model_fn, vocab_size) -> int | None:
  if vocab_size is None:
    vocab_size = getattr(caption_model_fn, "vocab_size", None)
    if vocab_size is None:
      return None
  if (isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral)
      or vocab_size < 1):
    raise ValueError(f"vocab_size must be an integer >= 1, got {vocab_size!r}")
  return int(vocab_size)


def _check_output(caption_model_fn, tokens: jax.Array, image_shape) -> None:
  """Abstractly evaluates the captioner on two images; it must return float32[2, T]."""
  num_tokens = int(tokens.shape[0])
  example = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
  try:
    out = jax.eval_shape(caption_model_fn, example, tokens)
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise TypeError(
        f"caption_model_fn must be a JAX-traceable callable (images float32{list(example.shape)}"
        f", tokens int32[{num_tokens}]) -> probabilities [b, T]; calling it on an abstract "
        f"batch failed with {type(e).__name__}: {e}") from e
  if not hasattr(out, "shape") or not hasattr(out, "dtype"):
    raise ValueError(f"caption_model_fn must return one array of probabilities [b, T], got a "
                     f"{type(out).__name__}")
  if tuple(out.shape) != (2, num_tokens) or not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(
        f"caption_model_fn must return one probability per token, float[b, T] with b = 2 (the "
        f"number of images) and T = {num_tokens} (len(tokens)), got {out.dtype}"
        f"{list(out.shape)}")


@functools.partial(jax.jit, static_argnames=("caption_model_fn", "cfg", "mesh"))
def _caption_one(caption_model_fn, cfg, mesh, image, tokens, key, mask_array, sub_array):
  def model_fn(x):
    # Values outside [0, 1] (log-probabilities, logits) become NaN, so the engine's check
    # stops the run naming the mask batch; caption_rise then says which it was.
    p = caption_model_fn(x, tokens)
    return jnp.where((p >= -_PROB_SLACK) & (p <= 1 + _PROB_SLACK), p, jnp.nan)

  maps, used, bad, _ = _rise_one(model_fn, cfg, mesh, image, key, mask_array, sub_array,
                                 jnp.zeros((0,), jnp.int32))
  return maps, used, bad


def _raise_if_out_of_range(caption_model_fn, cfg, image, tokens, key, mask_array, sub_array,
                           bad) -> None:
  """Re-scores the first failing mask batch on the host: values outside [0, 1] are a
  ValueError naming caption_model_fn (NaN/inf are left to ``_raise_if_bad``)."""
  first = int(np.asarray(bad).reshape(-1)[0])
  if first < 0:
    return
  idx = jnp.arange(first, first + 1, dtype=jnp.int32)
  if cfg.use_mask_array:
    m = mask_array[idx]
  else:
    m = masks_lib.mask_fn(key, cfg.size, cfg.grid, cfg.p1)(idx)
  sub = substrates.build(cfg.substrate if cfg.substrate is not None else sub_array, image)
  x = jnp.broadcast_to(substrates.perturb(image, m, sub), (cfg.batch_size, *image.shape))
  p = np.asarray(caption_model_fn(x, tokens), np.float32)[0]
  if np.all(np.isfinite(p)):
    raise ValueError(
        "caption_model_fn must return word probabilities in [0, 1] (RISE eq. 7) on every "
        f"masked image, got values in [{p.min():.4g}, {p.max():.4g}] for mask {first}; for a "
        "model returning log-probabilities pass lambda x, t: jnp.exp(log_p(x, t))")


def caption_rise(caption_model_fn: Callable[[jax.Array, jax.Array], jax.Array], image,
                 tokens: Sequence[int] | np.ndarray | jax.Array, key, *,
                 vocab_size: int | None = None, num_masks: int = 4000,
                 grid_size: int | tuple[int, int] = 7, p1: float = 0.5, batch_size: int = 100,
                 substrate="zeros", normalize: str = "expected", masks: jax.Array | None = None,
                 tol: float | None = None, check_every: int = 500, return_info: bool = False,
                 mesh=None):
  """RISE maps of every word of a sentence, in one streaming pass (RISE paper, eq. 7).

  ``S_k = sum_i P[w_k | I * M_i, w_<k] * M_i / (N * E[M])`` for ``k = 1..T``: every masked
  image is scored once by the captioner (teacher forcing on ``tokens``) and the ``T`` word
  probabilities are accumulated into ``T`` maps at once. Masks, substrate and normalisation are
  those of :func:`rise_jax.rise`; the map of word ``k`` equals a ``rise`` run on the black box
  ``x -> caption_model_fn(x, tokens)[:, k]`` with the same key.

  Args:
    caption_model_fn: JAX-traceable ``(images float32[b, H, W, C_in], tokens int32[T]) ->
      float32[b, T]`` whose column ``k`` is the **probability** (not the log-probability)
      ``P[tokens[k] | image, tokens[:k]]`` of each masked image (the paper's eq. 7 uses the
      word probability). The begin-of-sentence token is the model's business: ``tokens`` are
      the words explained, ``tokens[0]`` is predicted from the image alone. A model producing
      log-probabilities can be passed as ``lambda x, t: jnp.exp(log_p(x, t))``. If it has an
      integer attribute ``vocab_size`` (as :class:`rise_jax.models.captioner.CaptionModelFn`
      does), token ids are checked against it. The function is a static argument of a jitted
      function: pass the same object again to reuse the compiled loop.
    image: float32[H, W, C_in] one image, in the model's input space.
    tokens: int[T] the sentence, ``T >= 1`` token ids (e.g. a generated caption, or any
      sentence, to explain words that the model did not generate).
    key: PRNG key or int seed; mask ``i`` is ``generate_masks(key, ...)[i]``, as in ``rise``.
    vocab_size: Number of token ids; default ``caption_model_fn.vocab_size`` when it exists
      (without either, only negative ids are rejected).
    num_masks, grid_size, p1, batch_size, substrate, normalize, masks, tol, check_every, mesh:
      As in :func:`rise_jax.rise`.
    return_info: Also return a :class:`CaptionRiseInfo` (word probabilities on the unmasked
      image and the number of masks used).

  Returns:
    float32[T, H, W], map ``k`` for word ``tokens[k]``; with ``return_info``,
    ``(maps, CaptionRiseInfo)``.

  Raises:
    ValueError: Empty or non-1-D ``tokens``, ids outside ``[0, vocab_size)``, an image that is
      not ``[H, W, C]``, a ``caption_model_fn`` that does not return ``[b, T]``, or returns
      values outside ``[0, 1]`` on the unmasked or any masked image (log-probabilities or
      logits), or any invalid RISE argument (message names it).
    TypeError: Non-integer tokens, or a ``caption_model_fn`` that is not a traceable callable.
    FloatingPointError: ``caption_model_fn`` returned NaN/inf (on the unmasked image or for
      some mask batch).
  """
  if not callable(caption_model_fn):
    raise TypeError("caption_model_fn must be a callable (images, tokens) -> probabilities "
                    f"[b, T], got {type(caption_model_fn).__name__}")
  if hasattr(image, "ndim") and image.ndim != 3:
    raise ValueError(f"image must have shape [H, W, C] (one image), got shape "
                     f"{tuple(image.shape)}")
  tokens = _check_tokens(tokens, _vocab_size(caption_model_fn, vocab_size))
  num_tokens = int(tokens.shape[0])
  check_every = _checks.positive_int(check_every, "check_every")
  tol = _checks.positive_number(tol, "tol", allow_none=True)
  batch, _ = _checks.as_images(image, "image")
  _check_output(caption_model_fn, tokens, batch.shape[1:])
  # rise's validation of the image, key, masks, substrate, ...; its abstract black-box check
  # runs on x -> caption_model_fn(x, tokens), a [b, C] black box with C = T.
  prep = _prepare(lambda x: caption_model_fn(x, tokens), image, key, num_masks=num_masks,
                  grid_size=grid_size, p1=p1, batch_size=batch_size, substrate=substrate,
                  normalize=normalize, masks=masks, out_rank=2, mesh=mesh)
  x = prep["batch"][0]
  probs = np.asarray(engine.call_in_batches(lambda b: caption_model_fn(b, tokens), x[None],
                                            prep["dev_batch"]), np.float32)
  if probs.shape != (1, num_tokens):
    raise ValueError(f"caption_model_fn must return float32[1, {num_tokens}] for one image, "
                     f"got shape {list(probs.shape)}")
  if not np.all(np.isfinite(probs)):
    raise FloatingPointError(
        f"caption_model_fn returned NaN or inf on the unmasked image (token positions "
        f"{np.flatnonzero(~np.isfinite(probs[0])).tolist()}); no saliency map is returned")
  if probs.min() < -_PROB_SLACK or probs.max() > 1 + _PROB_SLACK:
    raise ValueError(
        "caption_model_fn must return word probabilities in [0, 1] (RISE eq. 7), got values "
        f"in [{probs.min():.4g}, {probs.max():.4g}] on the unmasked image; for a model "
        "returning log-probabilities pass lambda x, t: jnp.exp(log_p(x, t))")
  cfg = _Config(size=prep["size"], grid=prep["grid"], p1=prep["p1"],
                num_masks=prep["num_masks"], batch_size=prep["dev_batch"], normalize=normalize,
                substrate=prep["sub_static"], selection="all", topk=0,
                tol=None if tol is None else float(tol), check_every=check_every,
                use_mask_array=prep["use_mask_array"])
  maps, used, bad = _caption_one(caption_model_fn, cfg, prep["mesh"], x, tokens, prep["key"],
                                 prep["mask_array"], prep["sub_array"])
  _raise_if_out_of_range(caption_model_fn, cfg, x, tokens, prep["key"], prep["mask_array"],
                         prep["sub_array"], bad)
  _raise_if_bad(bad, cfg.batch_size, caption_model_fn, what="caption_model_fn")
  if not return_info:
    return maps
  return maps, CaptionRiseInfo(probs=probs[0], num_masks=int(used))
