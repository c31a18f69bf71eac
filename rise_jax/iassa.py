"""IASSA (Vasu & Long, WACV 2020): iterative and adaptive sampling with spatial attention.

Iteration ``k = 0, 1, ..., K`` (SPEC §5, paper eq. 5-10):

1. Sampling: square windows of side ``W_k = max(round(W_0 - window_step * k), min(3, W_0))``
   at stride ``S_k = max(round(S_0 - stride_step * k), 1)`` (``round`` is half-up, computed on
   the host in float64), the last window of each axis aligned with the far edge
   (:func:`rise_jax.masks.window_mask_fn`). Each window mask is multiplied by the sampling
   region ``R_k`` (``R_0`` = the whole image, ``R_k = HAR_{k-1}``).
2. Estimate: ``S_k(p) = sum_i (f(x_i)_c - f(s)_c) M_i(p) / sum_i M_i(p)`` with
   ``x_i = M_i * x + (1 - M_i) * s`` and ``s`` the substrate image: the RISE formula with the
   per-pixel empirical ``E[M]``, on scores relative to the fully masked image (the "no
   evidence" level, SPEC §5); pixels that no mask covers (outside ``R_k``) get 0. Windows that
   do not intersect ``R_k`` (they would add exactly zero) are skipped.
3. Adjust: ``S'_k = beta * Sn_k + c * up(A @ down(Sn_k))`` with ``c = beta - 1`` (paper eq. 6,
   ``mix="paper"``) or ``c = 1 - beta`` (the authors' code, ``mix="code"``), ``Sn_k`` the
   min-max normalised ``S_k``, ``A`` the LRPF-SA attention (:func:`attention`), ``down`` /
   ``up`` linear resizes between ``H x W`` and the attention grid ``h x w``.
4. HAR: ``HAR_k = R_k & (norm(S'_k) > threshold)``; the next masks live inside it.
5. Stop after ``k = max_iters`` or as soon as ``mean |Sn_k - Sn_{k-1}| < tol``.

Min-max normalisation runs over the whole image (SPEC §5): outside ``R_k`` the estimate is the
"no evidence" 0, so the region is not re-stretched to [0, 1] at every iteration (normalising
over the covered pixels only made ``threshold`` cut the lowest 30% of the region each time and
the HAR shrink geometrically). A map that is flat (range ``<= 1e-5 * max |S|``, e.g. a constant
black box) normalises to 1, so the HAR is never empty. For ``S'`` the range is compared with
the size of its two terms (``max |beta * Sn| + max |c * A Sn|``), since with ``mix="paper"``
they nearly cancel on a flat map.

``region="code"`` follows the authors' released code instead: occlusion masks (0 inside the
window, 1 outside) placed as theirs (starts ``stride - window + i * stride``, clipped), not
multiplied by the region, a window kept when the region has a pixel outside it (their
``find_intersection``), the estimate ``sum_i f(x_i)_c M_i / N`` over the whole image on raw
scores, and ``HAR_k = norm(S'_k) > threshold`` over the whole image.

The whole procedure is one jitted function: an outer ``lax.while_loop`` over iterations and,
inside it, :func:`rise_jax.engine.stream` over fixed-size batches of window indices whose
count is a traced value, so nothing recompiles between iterations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rise_jax import _checks, engine, masks as masks_lib, substrates

MIX = ("paper", "code")
REGION = ("paper", "code")
MAX_ITERS = 100_000
ATTENTION_SCALE = ("sqrt", None)
DEFAULT_RECORD = (5, 10, 15, 20, 25)
_FLAT_RTOL = 1e-5
_HIGHEST = jax.lax.Precision.HIGHEST


class IassaResult(NamedTuple):
  """What :func:`iassa` returns (:func:`iassa_batch`: every field with a leading ``B`` axis).

  Attributes:
    saliency: float32[H, W] the final IASSA map ``norm(S'_K)`` in [0, 1] (the adjusted map the
      paper thresholds and evaluates), min-max normalised over the whole image.
    records: float32[R, H, W] the map ``norm(S'_r)`` at each iteration ``r`` of ``record``;
      for ``r > K`` (the run stopped early, or ``r > max_iters``) the final map is repeated.
    iterations: int ``K``, the last iteration run (0 = only the initial sliding-window pass).
    estimate: float32[H, W] the raw black-box estimate ``S_K`` (in score units, not
      normalised; with ``region="paper"`` relative to the substrate image's score and 0 where
      no mask of iteration ``K`` covered the pixel).
    windows: int32[max_iters + 1] windows sent through the black box at each iteration (0 for
      iterations not run).
    class_id: int the explained class.
  """

  saliency: jax.Array
  records: jax.Array
  iterations: np.ndarray
  estimate: jax.Array
  windows: np.ndarray
  class_id: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Config:
  """Static (compile-time) settings of one IASSA run."""

  size: tuple[int, int]
  schedule: tuple[tuple[int, int], ...]  # (W_k, S_k) for k = 0..max_iters
  max_windows: int
  beta: float
  threshold: float
  tol: float | None
  mix: str
  region: str
  scale: str | None
  record: tuple[int, ...]
  batch_size: int
  substrate: str | float | None  # None: a user array passed as a dynamic argument


def window_schedule(window: int, stride: int, window_step: float, stride_step: float,
                    max_iters: int) -> tuple[tuple[int, int], ...]:
  """Window side and stride of every iteration (SPEC §5 step 4).

  ``W_k = max(round(W_0 - window_step * k), min(3, W_0))``,
  ``S_k = max(round(S_0 - stride_step * k), 1)``, rounding half up, in float64.

  Returns:
    ``((W_0, S_0), ..., (W_K, S_K))`` with ``K = max_iters``.
  """
  w_min = min(3, window)
  return tuple((max(int(math.floor(window - window_step * k + 0.5)), w_min),
                max(int(math.floor(stride - stride_step * k + 0.5)), 1))
               for k in range(max_iters + 1))


def _attention(features: Sequence[jax.Array], scale: str | None) -> jax.Array:
  """LRPF-SA on traced features; see :func:`attention`."""
  h, w = features[0].shape[1:3]
  parts = [jax.image.resize(f[0].astype(jnp.float32), (h, w, f.shape[-1]), "linear")
           for f in features]
  phi = jnp.concatenate(parts, axis=-1).reshape(h * w, -1)
  logits = jnp.dot(phi, phi.T, precision=_HIGHEST)
  if scale == "sqrt":
    logits = logits / math.sqrt(phi.shape[1])
  return jax.nn.softmax(logits, axis=1)


def _check_scale(scale) -> None:
  if scale is not None and not (isinstance(scale, str) and scale == "sqrt"):
    raise ValueError(f"attention_scale must be one of {list(ATTENTION_SCALE)}, got {scale!r}")


def _check_features(shapes, name: str = "feature_fn") -> list[tuple[int, ...]]:
  """Validates the (abstract) output of a feature function."""
  if isinstance(shapes, dict) or not isinstance(shapes, list | tuple) or not shapes:
    raise ValueError(
        f"{name} must return a non-empty list of feature maps [1, h_i, w_i, C_i] (IASSA: the "
        f"four backbone stages), got {type(shapes).__name__}; for a model returning "
        "(logits, features dict) use rise_jax.iassa.stage_feature_fn")
  out = []
  for i, f in enumerate(shapes):
    shape = tuple(getattr(f, "shape", ()))
    dtype = getattr(f, "dtype", None)
    if len(shape) != 4 or min(shape) < 1:
      raise ValueError(
          f"{name} feature map {i} must have shape [1, h, w, C] with every size >= 1, got "
          f"shape {list(shape)}")
    if shape[0] != 1:
      raise ValueError(
          f"{name} feature map {i} has batch size {shape[0]}, but every map must have batch "
          "size 1 (feature_fn gets one image [1, H, W, C] and must return its maps "
          f"[1, h_i, w_i, C_i]); got shapes {[list(getattr(g, 'shape', ())) for g in shapes]}")
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"{name} feature map {i} must be floating point, got dtype {dtype}")
    out.append(shape)
  return out


def attention(features: Sequence[jax.Array], attention_scale: str | None = "sqrt") -> jax.Array:
  """Long-range parameter-free spatial attention (LRPF-SA, paper eq. 9-10).

  ``A = softmax(Phi Phi^T * s)`` row-wise, with ``Phi`` the feature maps bilinearly resized
  (``jax.image.resize(..., "linear")``) to the first map's ``h x w``, concatenated along the
  channels and reshaped to ``[h * w, C]``; ``s = 1 / sqrt(C)`` (``"sqrt"``, the documented
  deviation: without it the softmax is one-hot in float32) or 1 (``None``, the paper).

  Args:
    features: Sequence of float[1, h_i, w_i, C_i] feature maps of one image (IASSA: ResNet
      stages 1..4).
    attention_scale: ``"sqrt"`` or ``None``.

  Returns:
    float32[h * w, h * w] row-stochastic attention (row ``i``: pixel ``i``'s weights, pixels
    numbered row-major on the first map's grid).
  """
  _check_scale(attention_scale)
  _check_features(features, "features")
  return _attention([jnp.asarray(f) for f in features], attention_scale)


def stage_feature_fn(apply_fn: Callable, variables,
                     stages: Sequence[str] = ("stage1", "stage2", "stage3", "stage4")
                     ) -> Callable[[jax.Array], list[jax.Array]]:
  """A ``feature_fn`` for :func:`iassa` from a model returning ``(logits, features dict)``.

  Every model of :mod:`rise_jax.models` (e.g. ``ResNet50``) returns its stage outputs as
  ``features["stage1"]`` .. ``features["stage4"]`` (strides 4, 8, 16, 32 at ``stem="imagenet"``).

  Args:
    apply_fn: ``apply_fn(variables, images) -> (logits, features)``, e.g. a Flax
      ``module.apply`` (batch norm in inference mode by default).
    variables: The model's variables; frozen, closed over.
    stages: Names of the feature maps, first the one whose grid the attention uses.

  Returns:
    ``feature_fn(images float32[1, H, W, C]) -> [features[s] for s in stages]``. Keep the
    returned function and reuse it: :func:`iassa` compiles once per ``feature_fn`` object.
  """
  if isinstance(stages, str) or not stages or not all(isinstance(s, str) for s in stages):
    raise ValueError(f"stages must be a non-empty sequence of feature names, got {stages!r}")
  stages = tuple(stages)

  def feature_fn(images):
    out = apply_fn(variables, images)
    feats = out[1] if isinstance(out, tuple) and len(out) == 2 else None
    if not isinstance(feats, dict):
      raise ValueError(
          "apply_fn must return (logits, features dict) like the models of rise_jax.models, "
          f"got {type(out).__name__}")
    missing = [s for s in stages if s not in feats]
    if missing:
      raise ValueError(f"stages {missing} are not among the model's features {sorted(feats)}")
    return [feats[s] for s in stages]

  return feature_fn


def _minmax(x: jax.Array, scale: jax.Array | None = None) -> jax.Array:
  """Min-max normalisation of ``x`` over the whole image.

  A flat map (range ``<= _FLAT_RTOL * scale``, by default ``scale = max |x|``) becomes 1.
  """
  lo, hi = jnp.min(x), jnp.max(x)
  span = hi - lo
  if scale is None:
    scale = jnp.maximum(jnp.abs(hi), jnp.abs(lo))
  flat = ~(span > _FLAT_RTOL * scale)
  return jnp.where(flat, 1.0, (x - lo) / jnp.where(flat, 1.0, span))


def _code_window_count(size: tuple[int, int], window, stride):
  """Windows per axis of the authors' code: starts ``arange(stride - window, length, stride)``."""
  return tuple((length + window - 1) // stride for length in size)


def _window_starts(cfg: _Config, j, window, stride):
  """Top-left corners ``(y0, x0)`` of windows ``j`` and the counts ``(n_y, n_x)``.

  ``region="paper"``: starts ``0, stride, ...`` plus one aligned with the far edge
  (:func:`rise_jax.masks.window_mask_fn`). ``region="code"``: the authors' placement, starts
  ``stride - window, 2 * stride - window, ... < length`` clipped to the image, so every pixel is
  covered by about ``window / stride`` windows (their estimate divides by ``N``, not by the
  per-pixel coverage).
  """
  h, w = cfg.size
  if cfg.region == "code":
    ny, nx = _code_window_count(cfg.size, window, stride)
    return stride - window + (j // nx) * stride, stride - window + (j % nx) * stride, ny, nx
  ny, nx = masks_lib.window_count_2d(cfg.size, window, stride)
  y0 = jnp.minimum((j // nx) * stride, h - window)
  x0 = jnp.minimum((j % nx) * stride, w - window)
  return y0, x0, ny, nx


def _estimate(model_fn, cfg: _Config, mesh, image, sub, class_id, base, region, window,
              stride):
  """Raw ``S_k`` float32[H, W] from the windows of ``(window, stride)`` in ``region``, the
  windows used, and the first bad (position, window id)."""
  h, w = cfg.size
  n_max = cfg.max_windows
  code_region = cfg.region == "code"
  j = jnp.arange(n_max, dtype=jnp.int32)
  y0, x0, ny, nx = _window_starts(cfg, j, window, stride)
  ya, yb = jnp.clip(y0, 0, h), jnp.clip(y0 + window, 0, h)
  xa, xb = jnp.clip(x0, 0, w), jnp.clip(x0 + window, 0, w)
  integral = jnp.pad(jnp.cumsum(jnp.cumsum(region.astype(jnp.int32), 0), 1), ((1, 0), (1, 0)))
  hits = integral[yb, xb] - integral[ya, xb] - integral[yb, xa] + integral[ya, xa]
  if code_region:  # the authors' find_intersection: the region has a pixel outside window j
    hits = jnp.sum(region, dtype=jnp.int32) - hits
  hit = (j < ny * nx) & (hits > 0)
  order = jnp.nonzero(hit, size=n_max, fill_value=0)[0].astype(jnp.int32)
  count = jnp.sum(hit, dtype=jnp.int32)
  region_f = region.astype(jnp.float32)
  ys, xs = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]

  def step(carry, idx, valid):
    acc, msum, bad = carry
    win = order[jnp.minimum(idx, n_max - 1)]
    top, left = y0[win][:, None, None], x0[win][:, None, None]
    m = ((ys >= top) & (ys < top + window) & (xs >= left) & (xs < left + window)
         ).astype(jnp.float32)
    m = 1.0 - m if code_region else m * region_f
    out = model_fn(substrates.perturb(image, m, sub))
    scores = jnp.take(out, class_id, axis=1).astype(jnp.float32)
    bad = engine.first_bad(bad, scores, idx, valid)
    flat = m.reshape(m.shape[0], h * w)
    acc = acc + jnp.dot(jnp.where(valid, scores - base, 0.0), flat, precision=_HIGHEST)
    msum = msum + jnp.dot(valid.astype(jnp.float32), flat, precision=_HIGHEST)
    return acc, msum, bad

  init = (jnp.zeros((h * w,), jnp.float32), jnp.zeros((h * w,), jnp.float32),
          jnp.asarray(-1, jnp.int32))
  acc, msum, bad = engine.stream(step, init, 0, count, cfg.batch_size, mesh)
  if code_region:  # BlackBoxScore: sum_i f(x_i) M_i / N over the whole image
    raw = (acc / jnp.maximum(count, 1).astype(jnp.float32)).reshape(h, w)
  else:
    raw = jnp.where(msum > 0, acc / jnp.where(msum > 0, msum, 1.0), 0.0).reshape(h, w)
  return raw, count, bad, order[jnp.maximum(bad, 0)]


def _adjust(cfg: _Config, attn, mats, sn):
  """``S'`` (eq. 7): ``beta * Sn`` mixed with the attention-spread ``A Sn``, min-max normalised.

  ``mats`` = ``(down_h, down_w, up_h, up_w)`` resize matrices between the image and the
  features' ``fh x fw`` grid.
  """
  down_h, down_w, up_h, up_w = mats
  fh, fw = down_h.shape[0], down_w.shape[0]
  mix = cfg.beta - 1.0 if cfg.mix == "paper" else 1.0 - cfg.beta
  small = jnp.dot(jnp.dot(down_h, sn, precision=_HIGHEST), down_w.T, precision=_HIGHEST)
  spread = jnp.dot(attn, small.reshape(-1), precision=_HIGHEST).reshape(fh, fw)
  spread = jnp.dot(jnp.dot(up_h, spread, precision=_HIGHEST), up_w.T, precision=_HIGHEST)
  a, b = cfg.beta * sn, mix * spread
  # Flatness relative to the two terms, not to their difference: with mix="paper" a flat
  # Sn gives S' = beta * Sn - (1 - beta) * A Sn ~ 0 up to rounding noise.
  scale = jnp.max(jnp.abs(a)) + jnp.max(jnp.abs(b))
  return _minmax(a + b, scale)


def _iassa_one(model_fn, feature_fn, cfg: _Config, mesh, image, class_id, sub_array):
  """IASSA for one image float32[H, W, C]; see :func:`iassa`."""
  h, w = cfg.size
  num_iters = len(cfg.schedule)
  sub = substrates.build(cfg.substrate if cfg.substrate is not None else sub_array, image)

  feats = feature_fn(image[None])
  attn = _attention(feats, cfg.scale)
  feats_ok = jnp.all(jnp.isfinite(attn))
  fh, fw = feats[0].shape[1:3]
  with jax.ensure_compile_time_eval():
    down_h, down_w = masks_lib.resize_matrix(h, fh), masks_lib.resize_matrix(w, fw)
    up_h, up_w = masks_lib.resize_matrix(fh, h), masks_lib.resize_matrix(fw, w)
  sched = jnp.asarray(np.asarray(cfg.schedule, np.int32))
  record = jnp.asarray(np.asarray(cfg.record, np.int32).reshape(-1))
  code_region = cfg.region == "code"
  if code_region:  # raw scores, as the authors' code
    base, base_ok = jnp.float32(0.0), jnp.asarray(True)
  else:  # the fully masked image's score: the "no evidence" level S is measured from (SPEC §5)
    base_out = engine.call_in_batches(  # every call gets batch_size images (the contract)
        model_fn, jnp.broadcast_to(sub, image.shape)[None].astype(image.dtype), cfg.batch_size)
    base = jnp.take(base_out, class_id, axis=1).astype(jnp.float32)[0]
    base_ok = jnp.isfinite(base)
    base = jnp.where(base_ok, base, 0.0)

  def cond(state):
    return ~state["done"]

  def body(state):
    k = state["k"]
    raw, count, bad_pos, bad_win = _estimate(model_fn, cfg, mesh, image, sub, class_id, base,
                                             state["region"], sched[k, 0], sched[k, 1])
    sn = _minmax(raw)
    sp = _adjust(cfg, attn, (down_h, down_w, up_h, up_w), sn)
    delta = jnp.mean(jnp.abs(sn - state["sn"]))
    bad = bad_pos >= 0
    done = (k >= num_iters - 1) | bad | ~feats_ok | ~base_ok
    if cfg.tol is not None:
      done = done | ((k > 0) & (delta < cfg.tol))
    # The paper's HAR never grows (windows live in it); the released code's spans the image.
    har = sp > cfg.threshold if code_region else state["region"] & (sp > cfg.threshold)
    return dict(
        k=k + 1, region=har, sn=sn, raw=raw, sp=sp,
        records=jnp.where((record == k)[:, None, None], sp[None], state["records"]),
        windows=state["windows"].at[k].set(count), done=done,
        bad=jnp.where(bad, jnp.stack([k, bad_pos, bad_win]), state["bad"]))

  zeros = jnp.zeros((h, w), jnp.float32)
  state = dict(k=jnp.asarray(0, jnp.int32), region=jnp.ones((h, w), bool), sn=zeros, raw=zeros,
               sp=zeros, records=jnp.zeros((record.shape[0], h, w), jnp.float32),
               windows=jnp.zeros((num_iters,), jnp.int32), done=jnp.asarray(False),
               bad=jnp.full((3,), -1, jnp.int32))
  state = jax.lax.while_loop(cond, body, state)
  last = state["k"] - 1
  records = jnp.where((record > last)[:, None, None], state["sp"][None], state["records"])
  return dict(saliency=state["sp"], records=records, iterations=last, estimate=state["raw"],
              windows=state["windows"], bad=state["bad"], feats_ok=feats_ok, base_ok=base_ok)


@functools.partial(jax.jit, static_argnames=("model_fn", "feature_fn", "cfg", "mesh"))
def _iassa_batch(model_fn, feature_fn, cfg, mesh, images, class_ids, sub_array):
  one = functools.partial(_iassa_one, model_fn, feature_fn, cfg, mesh, sub_array=sub_array)
  return jax.lax.map(lambda a: one(*a), (images, class_ids))


def _number(value, name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> float:
  ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi))
  if not ok:
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
  return float(value)


def _raise_if_bad(out, cfg: _Config, model_fn):
  for b, ok in enumerate(np.asarray(out["base_ok"]).reshape(-1)):
    if not ok:  # checked first: a host black box that raised there gives NaN from then on
      raise engine.black_box_failure(
          model_fn, f"for image {b} fully masked (the substrate image, whose score is the "
          "'no evidence' level of the estimate), before iteration 0")
  for b, (it, pos, win) in enumerate(np.asarray(out["bad"]).reshape(-1, 3)):
    if it >= 0:
      window, stride = cfg.schedule[it]
      y0, x0, ny, nx = (int(v) for v in _window_starts(cfg, int(win), window, stride))
      j = int(pos) // cfg.batch_size
      raise engine.black_box_failure(
          model_fn, f"for image {b} at iteration {int(it)} (window {window}, stride {stride}): "
          f"window {int(win)} of {ny * nx} (top-left corner ({y0}, {x0})), in window batch {j} "
          "of that iteration")
  for b, ok in enumerate(np.asarray(out["feats_ok"]).reshape(-1)):
    if not ok:
      raise FloatingPointError(
          f"feature_fn returned NaN or inf features for image {b} (the attention is not "
          "finite); no saliency map is returned")


def iassa_batch(model_fn: Callable[[jax.Array], jax.Array],
                feature_fn: Callable[[jax.Array], Sequence[jax.Array]], images: jax.Array,
                key=None, *, class_id: None | int | Sequence[int] = None, window: int = 45,
                stride: int = 8, window_step: float = 1.5, stride_step: float = 0.2,
                beta: float = 0.5, threshold: float = 0.3, max_iters: int = 25,
                tol: float | None = None, mix: str = "paper", region: str = "paper",
                attention_scale: str | None = "sqrt", batch_size: int = 100,
                record: Sequence[int] = DEFAULT_RECORD, substrate="zeros",
                mesh=None) -> IassaResult:
  """IASSA maps for a batch of images, one jitted program (images processed one by one).

  Args and returns as :func:`iassa`, with ``images`` float32[B, H, W, C_in], ``class_id``
  ``None``, one int for every image or a sequence of ``B`` ints, and every field of the
  :class:`IassaResult` carrying a leading ``B`` axis.
  """
  batch, _ = _checks.as_images(images)
  num_images, h, w, c = (int(d) for d in batch.shape)
  if key is not None:
    _checks.as_key(key)
  if not callable(feature_fn):
    raise TypeError(
        f"feature_fn must be a callable image[1, H, W, C] -> list of feature maps, got "
        f"{type(feature_fn).__name__}")
  window = _checks.positive_int(window, "window")
  stride = _checks.positive_int(stride, "stride")
  if window > min(h, w):
    raise ValueError(f"window must be in [1, {min(h, w)}] for a {h}x{w} image, got {window}")
  if stride > min(h, w):
    raise ValueError(f"stride must be in [1, {min(h, w)}] for a {h}x{w} image, got {stride}")
  window_step = _number(window_step, "window_step", 0.0, math.inf, False, True)
  stride_step = _number(stride_step, "stride_step", 0.0, math.inf, False, True)
  beta = _number(beta, "beta", 0.0, 1.0, False, False)
  threshold = _number(threshold, "threshold", 0.0, 1.0, True, True)
  if (isinstance(max_iters, bool) or not isinstance(max_iters, numbers.Integral)
      or not 0 <= max_iters <= MAX_ITERS):
    # The schedule is a static tuple of max_iters + 1 entries: 2**40 would hang the host.
    raise ValueError(f"max_iters must be an integer >= 0 (at most {MAX_ITERS}), got "
                     f"{max_iters!r}")
  max_iters = int(max_iters)
  if tol is not None:
    tol = _number(tol, "tol", 0.0, math.inf, True, True)
  _checks.choice(mix, "mix", MIX)
  _checks.choice(region, "region", REGION)
  _check_scale(attention_scale)
  if (isinstance(record, str | bytes) or not isinstance(record, Sequence)
      or not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 0
                 for r in record)):
    raise ValueError(f"record must be a sequence of iteration numbers >= 0, got {record!r}")
  batch_size = _checks.positive_int(batch_size, "batch_size")
  sub = substrates.check(substrate, (h, w, c))
  mesh = engine.batch_mesh() if mesh is None else mesh
  dev_batch = engine.device_batch_size(batch_size, mesh)
  out_shape = engine.check_black_box(
      model_fn, jax.ShapeDtypeStruct((dev_batch, h, w, c), jnp.float32), out_rank=2)
  num_classes = out_shape[1]
  try:
    feat_shapes = jax.eval_shape(feature_fn, jax.ShapeDtypeStruct((1, h, w, c), jnp.float32))
  except ValueError:
    raise
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise TypeError(
        f"feature_fn must be a JAX-traceable callable float32[1, {h}, {w}, {c}] -> list of "
        f"feature maps [1, h_i, w_i, C_i]; calling it on an abstract image failed with "
        f"{type(e).__name__}: {e}") from e
  _check_features(feat_shapes)

  if class_id is None:
    base = np.asarray(engine.call_in_batches(model_fn, batch, dev_batch))
    if not np.all(np.isfinite(base)):
      raise engine.black_box_failure(
          model_fn, f"for image {int(np.flatnonzero(~np.isfinite(base).all(axis=1))[0])} on "
          "the unmasked image (whose scores pick class_id=None's top-1 class)")
    ids = np.argmax(base, axis=1).astype(np.int32)
  else:
    ids = np.asarray(class_id)
    if ids.ndim == 0:
      ids = np.full((num_images,), ids)
    if ids.ndim != 1 or ids.shape[0] != num_images or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(
          f"class_id must be None (the top-1 predicted class), an int or a sequence of "
          f"{num_images} ints (one per image), got {class_id!r}")
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if bad.size:
      raise ValueError(
          f"class_id must be in [0, {num_classes - 1}] (model_fn returns {num_classes} "
          f"scores), got {bad.tolist()}")
  ids = ids.astype(np.int32)

  schedule = window_schedule(window, stride, window_step, stride_step, max_iters)
  count_2d = _code_window_count if region == "code" else masks_lib.window_count_2d
  max_windows = max(int(np.prod(count_2d((h, w), ws, ss))) for ws, ss in schedule)
  if dev_batch > max_windows:  # capped: larger batches would only be padding
    dev_batch = engine.device_batch_size(max_windows, mesh)
  cfg = _Config(size=(h, w), schedule=schedule, max_windows=max_windows, beta=beta,
                threshold=threshold, tol=tol, mix=mix, region=region, scale=attention_scale,
                record=tuple(int(r) for r in record), batch_size=dev_batch,
                substrate=sub if isinstance(sub, str | float) else None)
  sub_array = sub if cfg.substrate is None else jnp.zeros((), jnp.float32)
  out = _iassa_batch(model_fn, feature_fn, cfg, mesh, batch, jnp.asarray(ids), sub_array)
  _raise_if_bad(out, cfg, model_fn)
  return IassaResult(saliency=out["saliency"], records=out["records"],
                     iterations=np.asarray(out["iterations"]), estimate=out["estimate"],
                     windows=np.asarray(out["windows"]), class_id=ids)


def iassa(model_fn: Callable[[jax.Array], jax.Array],
          feature_fn: Callable[[jax.Array], Sequence[jax.Array]], image: jax.Array, key=None,
          *, class_id: int | None = None, window: int = 45, stride: int = 8,
          window_step: float = 1.5, stride_step: float = 0.2, beta: float = 0.5,
          threshold: float = 0.3, max_iters: int = 25, tol: float | None = None,
          mix: str = "paper", region: str = "paper", attention_scale: str | None = "sqrt",
          batch_size: int = 100, record: Sequence[int] = DEFAULT_RECORD, substrate="zeros",
          mesh=None) -> IassaResult:
  """IASSA saliency map of one image for one class (Vasu & Long, WACV 2020; SPEC §5).

  See the module docstring for the algorithm. The whole run (features, attention, every
  iteration) is one jitted program; it compiles once per (model_fn, feature_fn, image shape,
  settings) and never between iterations.

  Args:
    model_fn: JAX-traceable black box ``float32[b, H, W, C_in] -> scores float32[b, K]``
      (probabilities or logits); each call gets ``batch_size`` images (rounded up to a
      multiple of the device count).
    feature_fn: JAX-traceable ``float32[1, H, W, C_in] -> [float[1, h_i, w_i, C_i], ...]``,
      the multi-level features of the attention (paper: ResNet-50 stages 1..4; see
      :func:`stage_feature_fn`). The attention grid is the first map's ``h x w``; memory
      ``O((h * w)^2)``.
    image: float32[H, W, C_in] in the model's input space.
    key: Unused (IASSA is deterministic: sliding windows); ``None`` or a PRNG key, accepted
      for a signature uniform with :func:`rise_jax.rise`.
    class_id: Class explained, in ``[0, K)``; ``None``: the top-1 class on the image.
    window: Initial window side ``W_0`` in ``[1, min(H, W)]`` (paper: 45 at 224x224).
    stride: Initial stride ``S_0`` in ``[1, min(H, W)]`` (paper: 8).
    window_step: Decrease of the window side per iteration, >= 0 (paper: 1.5).
    stride_step: Decrease of the stride per iteration, >= 0 (paper: 0.2).
    beta: Weight of the saliency map against the attention, in [0, 1] (paper: 0.5).
    threshold: HAR threshold on the normalised adjusted map, in (0, 1) (paper: 0.3).
    max_iters: Last iteration ``K`` in ``[0, 100000]`` (paper: 25); iteration 0 is the initial
      pass.
    tol: Optional convergence threshold (> 0): stop after iteration ``k >= 1`` when
      ``mean |Sn_k - Sn_{k-1}| < tol`` on the normalised estimates.
    mix: ``"paper"`` (``beta * S + (beta - 1) * A S``, eq. 6) or ``"code"`` (the authors'
      code: ``beta * S + (1 - beta) * A S``).
    region: ``"paper"`` (windows multiplied by the HAR, estimate inside it relative to the
      substrate image's score, 0 outside; SPEC §5) or ``"code"`` (the authors' released code:
      occlusion windows not multiplied by the region, estimate over the whole image on raw
      scores, HAR over the whole image); see the module docstring.
    attention_scale: ``"sqrt"`` (``softmax(Phi Phi^T / sqrt(C))``) or ``None`` (the paper).
    batch_size: Masked images per black-box call.
    record: Iterations whose maps are returned in ``records`` (paper: 5, 10, 15, 20, 25).
    substrate: What masked-out pixels become (see :mod:`rise_jax.substrates`).
    mesh: Optional 1-D ``jax.sharding.Mesh`` with axis ``"batch"`` (default: all local
      devices); each window batch is sharded over it.

  Returns:
    An :class:`IassaResult`: ``saliency`` float32[H, W], ``records`` float32[R, H, W],
    ``iterations``, ``estimate`` float32[H, W], ``windows`` int32[max_iters + 1],
    ``class_id``.

  Raises:
    ValueError, TypeError: For invalid arguments (the message names the argument).
    FloatingPointError: When the black box returns NaN/inf for some window (the message names
      the iteration, the window and its batch) or the features are not finite.
  """
  arr = image if hasattr(image, "ndim") else None
  if arr is not None and arr.ndim != 3:
    raise ValueError(
        f"image must have shape [H, W, C] (use iassa_batch for a batch), got shape "
        f"{tuple(arr.shape)}")
  if class_id is not None and (isinstance(class_id, bool)
                               or not isinstance(class_id, numbers.Integral)):
    raise ValueError(f"class_id must be None or an int, got {class_id!r}")
  res = iassa_batch(model_fn, feature_fn, image, key, class_id=class_id, window=window,
                    stride=stride, window_step=window_step, stride_step=stride_step, beta=beta,
                    threshold=threshold, max_iters=max_iters, tol=tol, mix=mix, region=region,
                    attention_scale=attention_scale, batch_size=batch_size, record=record,
                    substrate=substrate, mesh=mesh)
  return IassaResult(*(x[0] for x in res))
