"""Property-based tests (hypothesis) over the rest of the public API (Segmentation RISE, IASSA,
causal / pointing / segmentation / Explainer metrics, occlusion, ``explain``, host black boxes):
random shapes, dtypes and parameter values give either a valid result (right shape, finite, in
range, plus an exact property where one is cheap) or a clear ``ValueError`` / ``TypeError``
naming the argument, never a crash inside XLA or a silent NaN.

Each example draws ``broken``: ``None`` (every argument from its valid values) or the name of
the one argument drawn from its invalid values. Validity is still decided from the drawn values
(as in ``tests/test_properties.py``); an invalid draw must raise an error naming the broken
argument (or, with ``broken=None``, one of the arguments). Images stay small and valid values
come from small sets, since every new static configuration compiles.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

import rise_jax
from rise_jax import substrates
from rise_jax.explainer import train as explainer_train
from rise_jax.metrics import (
  causal,
  class_specific,
  explainer as explainer_metrics,
  pointing,
  segmentation,
)

NAN, INF = float("nan"), float("inf")
# Methods that compile get few examples; the pure NumPy metrics more (they take microseconds).
_JIT = settings(max_examples=12, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
_NUMPY = settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
_BAD = (ValueError, TypeError)

_RNG = np.random.default_rng(0)
IMAGE = _RNG.uniform(-1.0, 1.0, size=(20, 20, 3)).astype(np.float32)
SALIENCY = _RNG.normal(size=(20, 20)).astype(np.float32)
TIES = _RNG.integers(0, 3, size=(20, 20)).astype(np.float32)  # many tied maxima
GT = _RNG.uniform(size=(20, 20)) < 0.15
UNIFORM = _RNG.uniform(size=(4, 3, 20, 20))


def _broken(*names):
  """``None`` (all arguments valid) half of the time, else the one argument made invalid."""
  return st.sampled_from([None] * len(names) + list(names))


def _draw(data, broken, name, good, bad):
  """Draws argument ``name`` from ``bad`` if it is the broken one, else from ``good``."""
  return data.draw(bad if broken == name else good, label=name)


def _with_nan(arr, value=NAN):
  """A float copy of ``arr`` whose first element is ``value`` (NaN by default)."""
  out = np.array(arr, np.float64)
  if out.size:
    out.flat[0] = value
  return out


def _is_int(value) -> bool:
  return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _note(valid: bool, broken) -> None:
  """Labels the example for ``--hypothesis-show-statistics`` (how many draws were valid)."""
  event("valid" if valid else f"invalid ({broken or 'several'})")


def _raises_naming(broken, names, fn):
  """``fn()`` raises ValueError/TypeError naming ``broken`` (any of ``names`` if None)."""
  with pytest.raises(_BAD, match=broken or "|".join(names)):
    fn()


def _prob_box(images):
  """Two-class probability black box: softmax of the top-half and bottom-half means."""
  h = images.shape[1] // 2
  a = images[:, :max(h, 1)].mean(axis=(1, 2, 3))
  b = images[:, h:].mean(axis=(1, 2, 3))
  return jax.nn.softmax(4.0 * jnp.stack([a, b], axis=-1), axis=-1)


def _seg_box(images):
  """Dense two-class probability black box [b, H, W, 2]: sigmoid of the channel mean."""
  s = jax.nn.sigmoid(4.0 * images.mean(axis=-1))
  return jnp.stack([s, 1.0 - s], axis=-1)


# ----------------------------------------------------------------------------------------------
# Segmentation RISE.

_SEG_ARGS = ("target_class", "region", "merge", "pixel_chunk")


@settings(_JIT, max_examples=10)
@given(data=st.data(), broken=_broken(*_SEG_ARGS), size=st.integers(min_value=3, max_value=10))
def test_segmentation_rise_valid_or_clear_error(data, broken, size):
  """Random target class (out of range, negative, float, bool), region (default, empty, int,
  wrong shape), merge name and pixel_chunk: a clear error naming the argument, or a finite
  [H, W] map in [0, 1] (with ``normalize="empirical"`` each pixel is a mask-weighted average of
  probabilities, and ``max`` keeps one such average per pixel)."""
  target_class = _draw(data, broken, "target_class", st.sampled_from([0, 1, np.int64(1)]),
                       st.sampled_from([-1, 2, 1.0, True, None]))
  region = _draw(data, broken, "region", st.sampled_from(["default", "full", "random", "one"]),
                 st.sampled_from(["empty", "int", "shape", "scalar"]))
  merge = _draw(data, broken, "merge", st.sampled_from(["mean", "max"]),
                st.sampled_from(["Max", "sum", "", None]))
  pixel_chunk = _draw(data, broken, "pixel_chunk", st.integers(min_value=1, max_value=40),
                      st.sampled_from([-1, 0, 2.0, True]))
  image = IMAGE[:size, :size]
  arg = {"default": None, "full": np.ones((size, size), bool), "random": GT[:size, :size].copy(),
         "one": np.zeros((size, size), bool), "empty": np.zeros((size, size), bool),
         "int": np.ones((size, size), np.int32), "shape": np.ones((size + 1, size), bool),
         "scalar": np.asarray(True)}[region]
  if region in ("random", "one"):
    arg[size // 2, 1] = True  # non-empty
  class_ok = _is_int(target_class) and 0 <= target_class < 2
  if region == "default":  # the pixels predicted as target_class on the image: maybe none
    predicted = np.asarray(jnp.argmax(_seg_box(image[None])[0], axis=-1))
    region_ok = class_ok and bool((predicted == target_class).any())
  else:
    region_ok = region in ("full", "random", "one")
  valid = (merge in ("mean", "max") and _is_int(pixel_chunk) and pixel_chunk >= 1 and class_ok
           and region_ok)

  def run():
    return rise_jax.segmentation_rise(
        _seg_box, image, jax.random.key(0), target_class=target_class, region=arg,
        merge=merge, pixel_chunk=pixel_chunk, num_masks=8, grid_size=2, batch_size=4,
        normalize="empirical")

  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _SEG_ARGS, run)
    return
  out = np.asarray(run())
  assert out.shape == (size, size) and out.dtype == np.float32
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


# ----------------------------------------------------------------------------------------------
# IASSA.

_PROJ = [jnp.asarray(_RNG.normal(size=(3, c)), jnp.float32) for c in (4, 5)]
_IASSA_ARGS = ("window", "stride", "max_iters", "batch_size", "mix", "class_id", "record")


def _features(x):
  """Two 'stages' for any input size: fixed bilinear pools through fixed projections."""
  return [jnp.tanh(jax.image.resize(x, (1, 4, 4, 3), "linear") @ _PROJ[0]),
          jnp.tanh(jax.image.resize(x, (1, 2, 2, 3), "linear") @ _PROJ[1])]


def _window_count(length, window, stride):
  """Window starts along an axis: every ``stride``, plus one at the far edge if missed."""
  return (length - window) // stride + 1 + ((length - window) % stride != 0)


@settings(_JIT, max_examples=8)  # each valid draw compiles the whole IASSA loop (~1-2 s)
@given(data=st.data(), broken=_broken(*_IASSA_ARGS))
def test_iassa_valid_or_clear_error(data, broken):
  """Random window, stride (0, negative, larger than the 8x8 image), max_iters, batch_size,
  mix, class_id and record: a clear error naming the argument, or maps in [0, 1] of the right
  shapes; the estimate is a mask-weighted average of probability differences (in [-1, 1]) and
  iteration 0 sends every window of the initial sliding-window grid through the black box."""
  window = _draw(data, broken, "window", st.sampled_from([1, 3, 8]),
                 st.sampled_from([-1, 0, 9, 2.0, True]))
  stride = _draw(data, broken, "stride", st.sampled_from([1, 3, 8]),
                 st.sampled_from([-2, 0, 9, 1.5]))
  max_iters = _draw(data, broken, "max_iters", st.sampled_from([0, 1, 2]),
                    st.sampled_from([-1, 1.0, True]))
  batch_size = _draw(data, broken, "batch_size", st.sampled_from([5, 64]),
                     st.sampled_from([-1, 0, 2.5]))
  mix = _draw(data, broken, "mix", st.sampled_from(["paper", "code"]),
              st.sampled_from(["Paper", "", None]))
  class_id = _draw(data, broken, "class_id", st.sampled_from([None, 0, 1, np.int32(1)]),
                   st.sampled_from([-1, 2, 1.0, True, [0]]))
  record = _draw(data, broken, "record", st.sampled_from([(), (0,), (1, 5), [0, 2]]),
                 st.sampled_from([(-1,), "1", (0.5,), 3, (True,)]))
  size = 8
  image = IMAGE[:size, :size]
  record_ok = (isinstance(record, tuple | list)
               and all(_is_int(r) and r >= 0 for r in record))
  class_ok = class_id is None or (_is_int(class_id) and 0 <= class_id < 2)
  valid = (all(_is_int(v) for v in (window, stride, max_iters, batch_size))
           and 1 <= window <= size and 1 <= stride <= size and max_iters >= 0
           and batch_size >= 1 and mix in ("paper", "code") and class_ok and record_ok)
  kw = dict(class_id=class_id, window=window, stride=stride, max_iters=max_iters,
            batch_size=batch_size, mix=mix, record=record)
  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _IASSA_ARGS, lambda: rise_jax.iassa(_prob_box, _features, image, **kw))
    return
  res = rise_jax.iassa(_prob_box, _features, image, **kw)
  sal, records, est = (np.asarray(v) for v in (res.saliency, res.records, res.estimate))
  assert sal.shape == est.shape == (size, size) and records.shape == (len(record), size, size)
  for arr in (sal, records.reshape(-1, size)):
    assert np.isfinite(arr).all() and np.all((arr >= 0.0) & (arr <= 1.0 + 1e-6))
  # probabilities minus the substrate image's probability (SPEC §5)
  assert np.isfinite(est).all() and np.all(np.abs(est) <= 1.0 + 1e-6)
  assert 0 <= int(res.iterations) <= max_iters and res.windows.shape == (max_iters + 1,)
  assert int(res.windows[0]) == _window_count(size, window, stride) ** 2
  want = int(np.argmax(_prob_box(image[None])[0])) if class_id is None else int(class_id)
  assert int(res.class_id) == want


# ----------------------------------------------------------------------------------------------
# Causal metrics.

_CAUSAL_ARGS = ("images", "saliency", "class_ids", "step", "substrate")


def _substrate(kind, h, w):
  return {"array": np.full((h, w, 1), 0.5, np.float32),
          "array_nan": _with_nan(np.zeros((h, w, 3))),
          "array_shape": np.zeros((h + 1, w, 3), np.float32),
          "array_4d": np.zeros((1, h, w, 3), np.float32),
          "array_str": np.full((1, 1, 3), "a"),
          "array_complex": np.zeros((1, 1, 3), np.complex64)}.get(kind, kind)


@_JIT
@given(data=st.data(), broken=_broken(*_CAUSAL_ARGS),
       mode=st.sampled_from(["deletion", "insertion"]), h=st.integers(min_value=2, max_value=7),
       w=st.integers(min_value=2, max_value=7))
def test_causal_metrics_valid_or_clear_error(data, broken, mode, h, w):
  """Random step (0, negative, > H * W), substrate (names, unknown names, constants, NaN, inf,
  arrays of the wrong shape, with NaN, of strings or complex numbers), saliency (NaN, wrong
  shape, bool), class ids (out of range, float, bool) and image dtype: a clear error naming
  the argument, or a finite curve of ``ceil(H * W / step) + 1`` probabilities whose trapezoid
  AUC lies between its minimum and maximum and whose end points are the black box's scores on
  the image and on the substrate."""
  dtype = _draw(data, broken, "images", st.sampled_from(["float32", "float16", "float64"]),
                st.sampled_from(["int32", "bool", "uint8"]))
  saliency = _draw(data, broken, "saliency", st.sampled_from(["map", "int", "batched"]),
                   st.sampled_from(["nan", "inf", "shape", "bool"]))
  class_id = _draw(data, broken, "class_ids", st.sampled_from([0, 1, np.int64(1), [1]]),
                   st.sampled_from([-1, 2, 0.5, [0, 1], None]))
  step = _draw(data, broken, "step", st.integers(min_value=1, max_value=60),
               st.sampled_from([-2, 0, 1.0, True]))
  substrate = _draw(data, broken, "substrate",
                    st.sampled_from(["zeros", "mean", "blur", 0.25, -1, "array"]),
                    st.sampled_from(["ones", "", NAN, INF, None, "array_nan", "array_shape",
                                     "array_4d", "array_str", "array_complex"]))
  image = IMAGE[:h, :w].astype(dtype)
  sal = {"map": SALIENCY[:h, :w], "int": (SALIENCY[:h, :w] * 3).astype(np.int32),
         "batched": SALIENCY[None, :h, :w], "nan": _with_nan(SALIENCY[:h, :w]),
         "inf": _with_nan(SALIENCY[:h, :w], INF), "shape": SALIENCY[:h, :w + 1],
         "bool": SALIENCY[:h, :w] > 0}[saliency]
  sub = _substrate(substrate, h, w)
  cid = np.asarray(class_id).reshape(-1) if class_id is not None else np.zeros(0)
  valid = (dtype.startswith("float") and saliency in ("map", "int", "batched")
           and cid.shape == (1,) and _is_int(cid[0]) and 0 <= cid[0] < 2
           and _is_int(step) and step >= 1
           and substrate in ("zeros", "mean", "blur", 0.25, -1, "array"))
  fn = causal.deletion if mode == "deletion" else causal.insertion
  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _CAUSAL_ARGS, lambda: fn(_prob_box, image, sal, class_id, step=step,
                                                     substrate=sub, batch_size=16))
    return
  area, curve = fn(_prob_box, image, sal, class_id, step=step, substrate=sub, batch_size=16)
  area, curve = float(area), np.asarray(curve)
  assert curve.shape == (math.ceil(h * w / step) + 1,)
  assert np.isfinite(curve).all() and curve.min() >= 0.0 and curve.max() <= 1.0
  assert curve.min() - 1e-6 <= area <= curve.max() + 1e-6
  x = jnp.asarray(image, jnp.float32)
  canvas = jnp.broadcast_to(substrates.build(substrates.check(sub, x.shape), x), x.shape)
  on_image = float(_prob_box(x[None])[0, cid[0]])
  on_canvas = float(_prob_box(canvas[None])[0, cid[0]])
  first, last = (on_image, on_canvas) if mode == "deletion" else (on_canvas, on_image)
  np.testing.assert_allclose([curve[0], curve[-1]], [first, last], atol=1e-5)


@_NUMPY
@given(length=st.integers(min_value=0, max_value=6),
       bad=st.sampled_from([None, None, None, NAN, INF, -INF]),
       rank=st.integers(min_value=0, max_value=2))
def test_auc_valid_or_clear_error(length, bad, rank):
  """AUC of a curve: a scalar, fewer than 2 points or a NaN/inf value give a clear error naming
  ``curve``; otherwise the trapezoid AUC lies between the curve's minimum and maximum."""
  curve = np.linspace(0.2, 0.9, length)[::-1]
  if bad is not None and length:
    curve[length // 2] = bad
  if rank:
    curve = curve.reshape((1,) * (rank - 1) + (length,))
  elif length:
    curve = curve[0]  # a scalar
  valid = rank >= 1 and length >= 2 and bad is None
  _note(valid, "curve")
  if not valid:
    with pytest.raises(ValueError, match="curve"):
      causal.auc(curve)
    return
  area = causal.auc(curve)
  assert area.shape == (1,) * (rank - 1)
  assert curve.min() <= area.min() and area.max() <= curve.max()
  assert float(causal.auc(np.ones(length))) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Pointing game.

_POINTING_ARGS = ("saliency", "gt", "tolerance")


def _brute_force_pointing(sal, gt, tolerance):
  """The argmax (first in row-major order) hits iff a GT pixel lies within tolerance."""
  if not gt.any():
    return -1
  best = (0, 0)
  for y in range(sal.shape[0]):
    for x in range(sal.shape[1]):
      if sal[y, x] > sal[best]:
        best = (y, x)
  for y in range(gt.shape[0]):
    for x in range(gt.shape[1]):
      if gt[y, x] and (y - best[0]) ** 2 + (x - best[1]) ** 2 <= tolerance ** 2:
        return 1
  return 0


@_NUMPY
@given(data=st.data(), broken=_broken(*_POINTING_ARGS), h=st.integers(min_value=1, max_value=9),
       w=st.integers(min_value=1, max_value=9),
       box=st.tuples(*[st.integers(min_value=-2, max_value=11)] * 4))
def test_pointing_game_valid_or_clear_error(data, broken, h, w, box):
  """Random maps (ties included; NaN, inf, empty, 3-D, strings), ground truths (masks, boxes,
  empty, wrong shapes, int masks, NaN/inf/flipped boxes) and tolerances (negative, NaN, bool):
  a clear error naming the argument, or exactly the brute-force result (1 hit, 0 miss, -1 empty
  GT), the same from :class:`PointingGame`."""
  saliency = _draw(data, broken, "saliency", st.sampled_from(["map", "ties", "bool"]),
                   st.sampled_from(["nan", "inf", "3d", "empty", "str"]))
  gt = _draw(data, broken, "gt", st.sampled_from(["mask", "empty", "boxes"]),
             st.sampled_from(["shape", "int", "box_nan", "box_inf", "box_flipped", "box_str"]))
  tolerance = _draw(data, broken, "tolerance",
                    st.one_of(st.floats(min_value=0.0, max_value=6.0),
                              st.sampled_from([0, 1, INF, np.float32(2.5)])),
                    st.one_of(st.floats(min_value=-3.0, max_value=-1e-3),
                              st.sampled_from([NAN, -INF, True, "2", None])))
  sal = {"map": SALIENCY[:h, :w], "ties": TIES[:h, :w], "bool": GT[:h, :w],
         "nan": _with_nan(SALIENCY[:h, :w]), "inf": _with_nan(SALIENCY[:h, :w], INF),
         "3d": SALIENCY[None, :h, :w], "empty": SALIENCY[:0, :w],
         "str": np.full((h, w), "a")}[saliency]
  y0, x0, y1, x1 = box
  arg = {"mask": GT[:h, :w], "empty": np.zeros((h, w), bool), "shape": GT[:h + 1, :w + 1],
         "int": GT[:h, :w].astype(np.int32), "boxes": np.asarray([[y0, x0, y1, x1]]),
         "box_nan": np.asarray([y0, x0, NAN, x1]), "box_inf": np.asarray([[y0, x0, INF, x1]]),
         "box_flipped": np.asarray([[1, 1, 0, 2]]), "box_str": np.asarray([["0"] * 4])}[gt]
  tol_ok = (isinstance(tolerance, int | float | np.floating) and not isinstance(tolerance, bool)
            and tolerance >= 0)
  # Boxes [1, 4] for a 1x4 map are ambiguous with a non-boolean mask: refused. A box covering
  # no pixel of the map (outside it, or of zero area) is refused too (issue 19: it was scored
  # "no object" silently).
  gt_ok = gt in ("mask", "empty") or (gt == "boxes" and y1 >= y0 and x1 >= x0
                                      and (h, w) != (1, 4)
                                      and min(y1, h) > max(y0, 0) and min(x1, w) > max(x0, 0))
  valid = tol_ok and saliency in ("map", "ties", "bool") and gt_ok
  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _POINTING_ARGS, lambda: pointing.pointing_game(sal, arg,
                                                                          tolerance=tolerance))
    return
  result = pointing.pointing_game(sal, arg, tolerance=tolerance)
  if gt == "boxes":
    ys, xs = np.mgrid[:h, :w]
    mask = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
  else:
    mask = arg
  assert result in (-1, 0, 1)
  assert result == _brute_force_pointing(sal, mask, tolerance)
  game = pointing.PointingGame(1, tolerance=tolerance)
  assert game.update(sal, arg, 0) == result


@_NUMPY
@given(tolerance=st.sampled_from([NAN, -1.0, -INF, True, None, "1"]))
def test_pointing_game_class_rejects_bad_tolerance(tolerance):
  """``PointingGame`` refuses the tolerances ``pointing_game`` refuses (NaN scored a miss)."""
  with pytest.raises(ValueError, match="tolerance"):
    pointing.PointingGame(3, tolerance=tolerance)


# ----------------------------------------------------------------------------------------------
# Occlusion.

_OCCLUSION_ARGS = ("window", "stride", "classes")


def _brute_force_occlusion(image, window, stride, ids):
  """Mean score drop over the windows covering each pixel (every window built explicitly);
  0 where no window covers the pixel (``stride > window``)."""
  h, w, _ = image.shape

  def starts(n):
    s = list(range(0, n - window + 1, stride))
    return s + [n - window] if s[-1] != n - window else s

  masks = []
  for y in starts(h):
    for x in starts(w):
      m = np.zeros((h, w), np.float32)
      m[y:y + window, x:x + window] = 1
      masks.append(m)
  masks = np.stack(masks)
  base = np.asarray(_prob_box(jnp.asarray(image[None])), np.float64)[0, ids]
  occluded = jnp.asarray((1.0 - masks[..., None]) * image)  # substrate "zeros"
  drops = base - np.asarray(_prob_box(occluded), np.float64)[:, ids]
  count = masks.sum(0)
  return np.einsum("nk,nhw->khw", drops, masks) / np.maximum(count, 1) * (count > 0)


@_JIT
@given(data=st.data(), broken=_broken(*_OCCLUSION_ARGS), h=st.integers(min_value=3, max_value=9),
       w=st.integers(min_value=3, max_value=9))
def test_occlusion_valid_or_clear_error(data, broken, h, w):
  """Random window (0, negative, larger than the image), stride (also larger than the image)
  and classes: a clear error naming the argument, or maps equal to the brute-force mean score
  drop over the windows covering each pixel."""
  window = _draw(data, broken, "window", st.integers(min_value=1, max_value=min(h, w)),
                 st.one_of(st.integers(min_value=min(h, w) + 1, max_value=14),
                           st.sampled_from([-1, 0, 2.0])))
  stride = _draw(data, broken, "stride", st.integers(min_value=1, max_value=14),
                 st.sampled_from([-1, 0, 1.5, True]))
  classes = _draw(data, broken, "classes", st.sampled_from([None, 1, 2, [0], [1, 0]]),
                  st.sampled_from([0, 3, [], [-1], [2], "0", [0.5]]))
  image = IMAGE[:h, :w]
  if classes is None:
    classes_ok = True
  elif _is_int(classes):
    classes_ok = 1 <= classes <= 2
  else:
    classes_ok = (isinstance(classes, list) and bool(classes)
                  and all(_is_int(c) and 0 <= c < 2 for c in classes))
  valid = (_is_int(window) and 1 <= window <= min(h, w) and _is_int(stride) and stride >= 1
           and classes_ok)

  def run():
    return rise_jax.baselines.occlusion(_prob_box, image, window=window, stride=stride,
                                        classes=classes, batch_size=16, return_ids=True)

  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _OCCLUSION_ARGS, run)
    return
  maps, ids = (np.asarray(v) for v in run())
  k = 2 if classes is None else (classes if _is_int(classes) else len(classes))
  assert maps.shape == (k, h, w) and ids.shape == (k,) and np.isfinite(maps).all()
  np.testing.assert_allclose(maps, _brute_force_occlusion(image, window, stride, ids), atol=1e-5)


def test_single_item_loops_do_not_depend_on_batch_size():
  """One item to stream (one RISE mask; one occlusion window covering the image) is processed
  whatever the batch size: XLA skipped a 0 -> 1 loop stepping by ``batch_size > 1``, giving
  all-zero maps (found by the occlusion property above with ``window = H = W``)."""
  size, batch_size = 5, 4
  image = IMAGE[:size, :size]
  one = np.asarray(rise_jax.rise(_prob_box, image, 0, num_masks=1, grid_size=2, batch_size=1))
  many = np.asarray(rise_jax.rise(_prob_box, image, 0, num_masks=1, grid_size=2,
                                  batch_size=batch_size))
  assert np.abs(one).max() > 0
  np.testing.assert_allclose(many, one, atol=1e-6)
  maps = np.asarray(rise_jax.baselines.occlusion(_prob_box, image, window=size, stride=1,
                                                 batch_size=batch_size))
  drop = np.asarray(_prob_box(image[None])[0] - _prob_box(np.zeros_like(image)[None])[0])
  np.testing.assert_allclose(maps, np.broadcast_to(drop[:, None, None], maps.shape), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# The Explainer and its metrics.


class _TinyExplainer(nn.Module):
  """Stand-in for :func:`create_explainer` with its interface (``apply(v, x, train)`` ->
  ``(logits [B, H, W, C], features)``): ``explain``'s checks do not depend on the network, and
  a DeepLabV3 takes ~20 s to initialise on a small CPU."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Conv(2, (3, 3))(x), {}


_EXPLAINER = _TinyExplainer()
_EXPLAINER_VARS = _EXPLAINER.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
_EXPLAIN_SHAPE = ("batch", "size", "channels", "rank")


@_JIT
@given(data=st.data(), broken=_broken(*_EXPLAIN_SHAPE, "dtype", "values"))
def test_explain_valid_or_clear_error(data, broken):
  """Random image shapes (empty, wrong rank, 1 or 4 channels), dtypes (strings, complex, and
  since issue 19 integers and bools: unnormalised 0..255 photos saturated the masks) and
  NaN/inf pixels: a clear error naming ``images``, or masks float32[B, C, H, W] in [0, 1]."""
  batch = _draw(data, broken, "batch", st.sampled_from([1, 2]), st.just(0))
  size = _draw(data, broken, "size", st.sampled_from([4, 7]), st.just(0))
  channels = _draw(data, broken, "channels", st.just(3), st.sampled_from([1, 4]))
  rank = _draw(data, broken, "rank", st.just(4), st.sampled_from([3, 5]))
  dtype = _draw(data, broken, "dtype", st.sampled_from(["float32", "float16"]),
                st.sampled_from(["str", "complex64", "int32", "bool", "uint8"]))
  bad = _draw(data, broken, "values", st.none(), st.sampled_from([NAN, INF, -INF]))
  x = np.full((batch, size, size, channels), 0.25, np.float32)
  has_bad = bad is not None and x.size > 0 and dtype.startswith("float")
  if has_bad:
    x.flat[-1] = bad
  x = x[None] if rank == 5 else (x.reshape(batch * size, size, channels) if rank == 3 else x)
  x = x.astype(dtype)
  valid = (rank == 4 and batch >= 1 and size >= 1 and channels == 3
           and dtype.startswith("float") and not has_bad)
  _note(valid, broken)
  if not valid:
    _raises_naming(None, ["images"],
                   lambda: explainer_train.explain(_EXPLAINER, _EXPLAINER_VARS, x))
    return
  masks = np.asarray(explainer_train.explain(_EXPLAINER, _EXPLAINER_VARS, x))
  assert masks.shape == (batch, 2, size, size) and masks.dtype == np.float32
  assert np.isfinite(masks).all() and masks.min() >= 0.0 and masks.max() <= 1.0


_SCORES_ARGS = ("mask", "gt_mask", "probs_on_masked", "present_classes")


@_NUMPY
@given(data=st.data(), broken=_broken(*_SCORES_ARGS, "b", "h"),
       w=st.integers(min_value=1, max_value=5))
def test_explainer_scores_valid_or_clear_error(data, broken, w):
  """Random mask shapes and values (empty, NaN, outside [0, 1]), ground truths, probabilities
  and present classes: a clear error naming the argument, or Acc, IoU, MAE in [0, 1] with
  ``Acc = 1 - MAE`` exactly (binary GT) and Acc = IoU = 1, MAE = 0 for the GT as the mask."""
  b = _draw(data, broken, "b", st.integers(min_value=1, max_value=3), st.just(0))
  h = _draw(data, broken, "h", st.integers(min_value=1, max_value=5), st.just(0))
  mask = _draw(data, broken, "mask", st.sampled_from(["uniform", "gt"]),
               st.sampled_from(["nan", "inf", "negative", "above", "shape"]))
  gt = _draw(data, broken, "gt_mask", st.sampled_from(["bool", "float01"]),
             st.sampled_from(["half", "nan"]))
  probs = _draw(data, broken, "probs_on_masked", st.just("softmax"),
                st.sampled_from(["nan", "above", "negative", "shape"]))
  present = _draw(data, broken, "present_classes", st.sampled_from(["ok", "bool"]),
                  st.sampled_from(["none", "half", "nan", "shape"]))
  s = GT[:h, :w][None].repeat(b, 0)
  u = UNIFORM[:b, 0, :h, :w]
  m = {"uniform": u, "gt": s.astype(np.float64), "nan": _with_nan(u), "inf": _with_nan(u, INF),
       "negative": u - 1.0, "above": u + 1.0, "shape": UNIFORM[:b, 0, :h, :w + 1]}[mask]
  g = {"bool": s, "float01": s.astype(np.float32), "half": _with_nan(s, 0.5),
       "nan": _with_nan(s)}[gt]
  logits = _RNG.normal(size=(b, 3))
  softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  p = {"softmax": softmax, "nan": _with_nan(softmax), "above": softmax + 1.0,
       "negative": softmax - 1.0, "shape": np.full((b, 4), 0.25)}[probs]
  one_hot = np.eye(3)[np.arange(b) % 3]
  y = {"ok": one_hot, "bool": one_hot.astype(bool), "none": np.zeros((b, 3)),
       "half": one_hot * 0.5, "nan": _with_nan(one_hot), "shape": np.ones((b, 2))}[present]
  valid = (b >= 1 and h >= 1 and mask in ("uniform", "gt") and gt in ("bool", "float01")
           and probs == "softmax" and present in ("ok", "bool"))
  _note(valid, broken)
  if not valid:
    name = {"b": "mask", "h": "mask"}.get(broken, broken)
    _raises_naming(name, _SCORES_ARGS, lambda: explainer_metrics.explainer_scores(m, g, p, y))
    return
  out = explainer_metrics.explainer_scores(m, g, p, y)
  for key in ("acc", "iou", "mae"):
    assert 0.0 <= out[key] <= 1.0
  assert np.isfinite(out["sal"])
  assert out["acc"] == pytest.approx(1.0 - out["mae"])
  if mask == "gt":
    assert (out["acc"], out["iou"], out["mae"]) == (1.0, 1.0, 0.0)


_SEGMENTATION_ARGS = ("saliency", "gt_mask", "threshold")


@_NUMPY
@given(data=st.data(), broken=_broken(*_SEGMENTATION_ARGS),
       h=st.integers(min_value=1, max_value=6), w=st.integers(min_value=1, max_value=6))
def test_segmentation_scores_valid_or_clear_error(data, broken, h, w):
  """Random maps (empty, constant, NaN, inf, strings), masks and thresholds (NaN, bool, out of
  [0, 1]): a clear error naming the argument, or IoU and F1 in [0, 1] with
  ``F1 = 2 IoU / (1 + IoU)`` and the area the number of pixels above threshold."""
  saliency = _draw(data, broken, "saliency",
                   st.sampled_from(["map", "int", "constant", "bool"]),
                   st.sampled_from(["nan", "inf", "3d", "empty", "str"]))
  gt = _draw(data, broken, "gt_mask", st.just("bool"), st.sampled_from(["int", "shape", "float"]))
  threshold = _draw(data, broken, "threshold",
                    st.one_of(st.floats(min_value=0.0, max_value=1.0),
                              st.sampled_from([0, 1, np.float32(0.3)])),
                    st.one_of(st.floats(min_value=1.001, max_value=3.0),
                              st.sampled_from([-0.5, NAN, INF, True, "0.3", None])))
  sal = {"map": SALIENCY[:h, :w], "int": TIES[:h, :w].astype(np.int32),
         "constant": np.ones((h, w)), "bool": GT[:h, :w], "nan": _with_nan(SALIENCY[:h, :w]),
         "inf": _with_nan(SALIENCY[:h, :w], INF), "3d": SALIENCY[None, :h, :w],
         "empty": SALIENCY[:0, :w], "str": np.full((h, w), "a")}[saliency]
  g = {"bool": GT[:h, :w], "int": GT[:h, :w].astype(np.int32), "shape": GT[:h + 1, :w],
       "float": GT[:h, :w].astype(np.float32)}[gt]
  threshold_ok = (isinstance(threshold, int | float | np.floating)
                  and not isinstance(threshold, bool) and 0.0 <= threshold <= 1.0)
  valid = saliency in ("map", "int", "constant", "bool") and gt == "bool" and threshold_ok
  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _SEGMENTATION_ARGS, lambda: segmentation.segmentation_scores(
        sal, g, threshold=threshold))
    return
  out = segmentation.segmentation_scores(sal, g, threshold=threshold)
  assert 0.0 <= out["iou"] <= 1.0 and 0.0 <= out["f1"] <= 1.0
  assert out["f1"] == pytest.approx(2 * out["iou"] / (1 + out["iou"]))
  assert out["area"] == int(segmentation.binarize(sal, threshold).sum())


def _probs_fn(images):
  """Three-class softmax of fixed projections of the channel means."""
  feats = images.mean(axis=(1, 2))
  return jax.nn.softmax(feats @ jnp.asarray([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0],
                                             [-1.0, 0.0, 1.0]]), axis=-1)


_TABLE_ARGS = ("class_masks", "labels", "thresholds", "batch_size")


@_NUMPY
@given(data=st.data(), broken=_broken(*_TABLE_ARGS), b=st.integers(min_value=1, max_value=3))
def test_class_specific_table_valid_or_clear_error(data, broken, b):
  """Random class masks (NaN, outside [0, 1], wrong shape), labels (not 0/1, NaN), thresholds
  (NaN, empty, on the bounds) and batch sizes: a clear error naming the argument, or a
  [C, C + 1] table of probabilities whose counts are exactly the (image, mask class, threshold)
  triples."""
  masks = _draw(data, broken, "class_masks", st.just("ok"),
                st.sampled_from(["nan", "negative", "above", "shape"]))
  labels = _draw(data, broken, "labels", st.sampled_from(["ok", "bool"]),
                 st.sampled_from(["half", "two", "nan", "shape"]))
  thresholds = _draw(data, broken, "thresholds",
                     st.sampled_from([(0.5,), (0.2, 0.7), [0.1, 0.3, 0.9]]),
                     st.sampled_from([(), (0.0,), (1.0,), (NAN,), (0.5, NAN), ((0.5,),)]))
  batch_size = _draw(data, broken, "batch_size", st.integers(min_value=1, max_value=5),
                     st.sampled_from([-1, 0, 2.0, True]))
  images = IMAGE[None, :4, :4].repeat(b, 0) * (1 + np.arange(b))[:, None, None, None]
  u = UNIFORM[:b, :, :4, :4]
  cm = {"ok": u, "nan": _with_nan(u), "negative": u - 1.0, "above": u + 1.0,
        "shape": UNIFORM[:b, :, :4, :3]}[masks]
  present = (np.arange(b)[:, None] + np.arange(3)[None]) % 2 == 0  # some images with 2 classes
  y = {"ok": present.astype(np.float32), "bool": present, "half": present * 0.5,
       "two": present * 2, "nan": _with_nan(present), "shape": present[:, :2]}[labels]
  thr = np.asarray(thresholds, np.float64)
  valid = (masks == "ok" and labels in ("ok", "bool") and thr.ndim == 1 and thr.size > 0
           and bool(np.all((thr > 0) & (thr < 1))) and _is_int(batch_size) and batch_size >= 1)

  def run():
    return class_specific.class_specific_table(_probs_fn, images, cm, y, thresholds=thresholds,
                                               batch_size=batch_size)

  _note(valid, broken)
  if not valid:
    _raises_naming(broken, _TABLE_ARGS, run)
    return
  out = run()
  table, counts = out["table"], out["counts"]
  assert table.shape == counts.shape == (3, 4)
  seen = counts > 0
  assert np.isfinite(table[seen]).all() and np.isnan(table[~seen]).all()
  assert table[seen].min() >= 0.0 and table[seen].max() <= 1.0
  both = present.T.astype(int) @ present.astype(int)  # images holding both classes c and c'
  np.testing.assert_array_equal(counts[:, :3], both * len(thresholds))
  np.testing.assert_array_equal(counts[:, 3], present.sum(0))


@_NUMPY
@given(gt=st.sampled_from(["ok", "small", "batch", "2d"]))
def test_sanity_baselines_valid_or_clear_error(gt):
  """Ground truths that do not match the images give a clear error naming ``gt_mask``; matching
  ones give the four sanity rows, where the G.T. row scores Acc = IoU = 1 and MAE = 0."""
  images = IMAGE[None, :4, :4].repeat(2, 0)
  g = {"ok": GT[None, :4, :4].repeat(2, 0), "small": GT[None, :3, :3].repeat(2, 0),
       "batch": GT[None, :4, :4], "2d": GT[:4, :4]}[gt]
  labels = np.eye(3)[:2]
  if gt != "ok":
    with pytest.raises(_BAD, match="gt_mask"):
      explainer_metrics.sanity_baselines(_probs_fn, images, g, labels)
    return
  rows = explainer_metrics.sanity_baselines(_probs_fn, images, g, labels)
  assert set(rows) == {"0", "0.5", "1", "G.T."}
  assert all(np.isfinite(list(r.values())).all() for r in rows.values())
  assert (rows["G.T."]["acc"], rows["G.T."]["iou"], rows["G.T."]["mae"]) == (1.0, 1.0, 0.0)


# ----------------------------------------------------------------------------------------------
# Host (non-JAX) black boxes.


def _host_ok(x):
  return np.stack([x[:, :3].mean((1, 2, 3)), x[:, 3:].mean((1, 2, 3))], axis=1)


def _host_raise_at_run(x):
  if x.any():
    raise RuntimeError("model crashed")
  return np.zeros((x.shape[0], 2), np.float32)


def _host_shape_at_run(x):
  return np.zeros((x.shape[0], 3 if x.any() else 2), np.float32)


def _host_nan_at_run(x):
  return np.full((x.shape[0], 2), NAN if x.any() else 0.0, np.float32)


_HOST_FNS = {
    "ok": _host_ok,
    "list": lambda x: _host_ok(x).tolist(),
    "int": lambda x: np.zeros((x.shape[0], 2), np.int32),
    "batch+1": lambda x: np.zeros((x.shape[0] + 1, 2), np.float32),
    "rank1": lambda x: np.zeros((x.shape[0],), np.float32),
    "rank0": lambda x: np.float32(1.0),
    "rank3": lambda x: np.zeros((x.shape[0], 2, 2), np.float32),
    "empty": lambda x: np.zeros((x.shape[0], 0), np.float32),
    "none": lambda x: None,
    "str": lambda x: np.full((x.shape[0], 2), "a"),
    "tuple": lambda x: (_host_ok(x), _host_ok(x)),
    "raise_on_zeros": lambda x: 1 / 0,
    "raise_at_run": _host_raise_at_run,
    "shape_at_run": _host_shape_at_run,
    "nan_at_run": _host_nan_at_run,
}
# One wrapper per fn for the whole module: a new wrapper would recompile every method.
_HOST_BOXES = {name: rise_jax.host_black_box(fn) for name, fn in _HOST_FNS.items()}


@_JIT
@given(kind=st.sampled_from(sorted(_HOST_FNS)), method=st.sampled_from(["rise", "deletion"]))
def test_host_black_box_valid_or_clear_error(kind, method):
  """Host black boxes returning wrong shapes, wrong batch sizes, non-floats or nothing fail
  with a clear error naming ``fn`` / ``model_fn`` before any run; one raising or returning NaN
  or another shape mid-run fails naming the batch; valid ones give finite results."""
  box, image = _HOST_BOXES[kind], IMAGE[:6, :6]

  def run():
    if method == "rise":
      return np.asarray(rise_jax.rise(box, image, 0, num_masks=6, grid_size=2, batch_size=4))
    return np.asarray(causal.deletion(box, image, SALIENCY[:6, :6], 1, step=9,
                                      batch_size=4)[1])

  if kind in ("ok", "list"):
    out = run()
    assert out.shape == ((2, 6, 6) if method == "rise" else (5,)) and np.isfinite(out).all()
  elif kind in ("raise_at_run", "shape_at_run"):
    with pytest.raises(rise_jax.BlackBoxError, match="model_fn raised .* batch"):
      run()
  elif kind == "nan_at_run":
    with pytest.raises(FloatingPointError, match="model_fn returned NaN"):
      run()
  else:
    with pytest.raises(_BAD, match="model_fn"):
      run()


def test_host_black_box_rejects_non_callables():
  """``host_black_box`` of something that is not callable is a TypeError naming ``fn``."""
  for fn in (None, 3, np.zeros(3)):
    with pytest.raises(TypeError, match="fn must be a callable"):
      rise_jax.host_black_box(fn)


# ----------------------------------------------------------------------------------------------
# Every public function, every array argument corrupted, extreme integers (issue 19).

_Q = 8  # one image size for the whole table: valid draws reuse the compiled loops
_QIMG = IMAGE[:_Q, :_Q]
_QSAL = SALIENCY[:_Q, :_Q]
_QGT = GT[:_Q, :_Q]
_QMASKS = UNIFORM[:4, 0, :_Q, :_Q].astype(np.float32)
_QREGION = np.zeros((_Q, _Q), bool)
_QREGION[2:5, 3:6] = True
_QPROBS = np.asarray([[0.6, 0.3, 0.1]])


def _caption_box(images, tokens):
  """Word probabilities in (0, 1): sigmoid of the image mean shifted by the token id."""
  m = images.mean(axis=(1, 2, 3))
  return jax.nn.sigmoid(m[:, None] + tokens[None, :].astype(jnp.float32) / 4.0)


def _unit(lo=0.0, hi=1.0):
  """Checks a map: finite, within [lo, hi] (up to float rounding)."""
  def check(out):
    arr = np.asarray(out, np.float64)
    assert np.isfinite(arr).all(), "non-finite output"
    assert arr.min() >= lo - 1e-5 and arr.max() <= hi + 1e-5, (arr.min(), arr.max())
  return check


def _scores(out):
  for key in ("acc", "iou", "mae", "f1"):
    if key in out:
      assert 0.0 <= out[key] <= 1.0, (key, out[key])
  if "sal" in out:
    assert np.isfinite(out["sal"])


def _roundtrip(masks, tmp):
  rise_jax.save_masks(tmp, masks)
  return rise_jax.load_masks(tmp)


# name -> (call(args) -> output, default array arguments, default int arguments, output check).
# Probability black boxes with ``normalize="empirical"`` make every RISE-type map a weighted
# average of probabilities, in [0, 1]; occlusion maps are probability drops, in [-1, 1].
_API = {
    "rise": (lambda a: rise_jax.rise(
        _prob_box, a["images"], a["key"], num_masks=a["num_masks"], grid_size=2,
        batch_size=a["batch_size"], classes=a["classes"], normalize="empirical"),
        {"images": _QIMG}, {"key": 0, "num_masks": 6, "batch_size": 4, "classes": 1},
        _unit()),
    "rise_masks": (lambda a: rise_jax.rise(
        _prob_box, a["images"], 0, masks=a["masks"], batch_size=a["batch_size"],
        normalize="empirical"),
        {"images": _QIMG, "masks": _QMASKS}, {"batch_size": 4}, _unit()),
    "segmentation_rise": (lambda a: rise_jax.segmentation_rise(
        _seg_box, a["image"], a["key"], target_class=a["target_class"], region=a["region"],
        merge="max", num_masks=a["num_masks"], grid_size=2, batch_size=4,
        pixel_chunk=a["pixel_chunk"], normalize="empirical"),
        {"image": _QIMG, "region": _QREGION},
        {"key": 0, "target_class": 0, "num_masks": 6, "pixel_chunk": 4}, _unit()),
    "caption_rise": (lambda a: rise_jax.caption_rise(
        _caption_box, a["image"], a["tokens"], 0, vocab_size=a["vocab_size"],
        num_masks=a["num_masks"], grid_size=2, batch_size=4, normalize="empirical"),
        {"image": _QIMG, "tokens": np.asarray([1, 3])}, {"vocab_size": 5, "num_masks": 6},
        _unit()),
    "iassa": (lambda a: rise_jax.iassa(
        _prob_box, _features, a["image"], class_id=a["class_id"], window=a["window"],
        stride=a["stride"], max_iters=a["max_iters"], batch_size=a["batch_size"]).saliency,
        {"image": _QIMG}, {"class_id": 1, "window": 3, "stride": 2, "max_iters": 1,
                           "batch_size": 8}, _unit()),
    "occlusion": (lambda a: rise_jax.baselines.occlusion(
        _prob_box, a["images"], window=a["window"], stride=a["stride"], classes=a["classes"],
        batch_size=a["batch_size"]),
        {"images": _QIMG}, {"window": 3, "stride": 2, "classes": 1, "batch_size": 8},
        _unit(-1.0, 1.0)),
    "deletion": (lambda a: causal.deletion(
        _prob_box, a["images"], a["saliency"], a["class_ids"], step=a["step"],
        batch_size=a["batch_size"])[1],
        {"images": _QIMG, "saliency": _QSAL}, {"class_ids": 1, "step": 16, "batch_size": 8},
        _unit()),
    "insertion": (lambda a: causal.insertion(
        _prob_box, a["images"], a["saliency"], a["class_ids"], step=a["step"], batch_size=8)[1],
        {"images": _QIMG, "saliency": _QSAL}, {"class_ids": 0, "step": 16}, _unit()),
    "generate_masks": (lambda a: rise_jax.generate_masks(
        a["key"], a["num_masks"], a["input_size"], a["grid_size"]),
        {}, {"key": 0, "num_masks": 3, "input_size": _Q, "grid_size": 2}, _unit()),
    "save_masks": (lambda a: _roundtrip(a["masks"], a["tmp"]), {"masks": _QMASKS}, {},
                   _unit()),
    "pointing_game": (lambda a: pointing.pointing_game(a["saliency"], a["gt"]),
                      {"saliency": _QSAL, "gt": _QGT}, {},
                      lambda out: out in (-1, 0, 1)),
    "segmentation_scores": (lambda a: segmentation.segmentation_scores(a["saliency"],
                                                                       a["gt_mask"]),
                            {"saliency": _QSAL, "gt_mask": _QGT}, {}, _scores),
    "explainer_scores": (lambda a: explainer_metrics.explainer_scores(
        a["mask"], a["gt_mask"], a["probs_on_masked"], a["present_classes"]),
        {"mask": UNIFORM[:1, 0, :_Q, :_Q], "gt_mask": _QGT[None],
         "probs_on_masked": _QPROBS, "present_classes": np.asarray([[1.0, 0.0, 1.0]])}, {},
        _scores),
    "explain": (lambda a: explainer_train.explain(_EXPLAINER, _EXPLAINER_VARS, a["images"]),
                {"images": _QIMG[None]}, {}, _unit()),
    "centre_gaussian": (lambda a: rise_jax.baselines.centre_gaussian(
        a["images"], num_maps=a["num_maps"]), {"images": _QIMG}, {"num_maps": 2}, _unit()),
    "random_map": (lambda a: rise_jax.baselines.random_map(
        a["images"], a["key"], num_maps=a["num_maps"]),
        {"images": _QIMG}, {"key": 0, "num_maps": 2}, _unit()),
}

# Array corruptions. NaN/inf and empty arrays must always be refused naming the argument; the
# others (other dtypes, huge/tiny/negative values, wrong ranks and shapes) may also give a
# valid result, which must then pass the function's output check.
_MUST_FAIL = ("nan", "inf", "-inf", "empty")
_CORRUPT = {
    "nan": lambda x: _with_nan(x),
    "inf": lambda x: _with_nan(x, INF),
    "-inf": lambda x: _with_nan(x, -INF),
    "empty": lambda x: np.asarray(x)[:0],
    "int32": lambda x: np.asarray(x).astype(np.int32),
    "bool": lambda x: np.asarray(x) > 0.5 if np.asarray(x).dtype != bool else np.asarray(x),
    "uint8_255": lambda x: (np.asarray(x, np.float64) > 0.5).astype(np.uint8) * 255,
    "float16": lambda x: np.asarray(x).astype(np.float16),
    "huge": lambda x: np.asarray(x, np.float64) * 1e30,
    "tiny": lambda x: np.asarray(x, np.float64) * 1e-30,
    "negative": lambda x: -np.asarray(x, np.float64) - 0.5,
    "rank+1": lambda x: np.asarray(x)[None],
    "rank-1": lambda x: np.asarray(x)[0],
    "shape": lambda x: np.asarray(x)[..., :-1],
    "jax_float32": lambda x: jnp.asarray(np.asarray(x), jnp.float32),
}
_EXTREME_INTS = [0, -1, 2**31, 2**32 + 1, 2**63, -2**63 - 1, 2**70, -2**70, np.int64(2**40),
                 np.uint64(2**64 - 1), True, 2.0, np.float32(3.0), None]


def _cases():
  out = []
  for fn, (_, arrays, ints, _) in _API.items():
    out += [(fn, arg, kind) for arg in arrays for kind in _CORRUPT]
    out += [(fn, arg, i) for arg in ints for i in range(len(_EXTREME_INTS))]
  return out


_CASES = _cases()


@settings(_JIT, max_examples=40)  # of ~820 cases; errors are cheap, valid draws compile once
@given(case=st.sampled_from(_CASES))
def test_every_public_function_valid_or_clear_error(case, tmp_path_factory):
  """Issue 19: every public function, with one array argument corrupted (NaN, inf, empty,
  other dtypes, huge or tiny values, wrong rank or shape) or one integer argument extreme
  (int32 and int64 overflow, 0, -1, bool, float, None): a ValueError/TypeError naming that
  argument, or a valid result that is finite and within the range the method can produce.
  NaN/inf/empty arrays must be refused. Never another exception type."""
  fn, arg, kind = case
  call, arrays, ints, check = _API[fn]
  args = {**arrays, **ints, "tmp": str(tmp_path_factory.mktemp("m") / "m.npy")}
  if arg in arrays:
    args[arg] = _CORRUPT[kind](arrays[arg])
    label = kind
  else:
    args[arg] = _EXTREME_INTS[kind]
    label = repr(_EXTREME_INTS[kind])
  event(f"{fn}.{arg}={label}")
  try:
    out = call(args)
  except (ValueError, TypeError) as e:
    name = "image" if arg in ("images", "image") else arg
    assert name in str(e) or (arg == "masks" and "path" in str(e)), (
        f"{fn}({arg}={label}) raised {type(e).__name__} not naming {arg!r}: {e}")
    return
  assert kind not in _MUST_FAIL or arg not in arrays, f"{fn}({arg}={label}) was accepted"
  assert check(out) is not False, f"{fn}({arg}={label}) gave {out}"
