"""Pointing game (Zhang et al.; RISE §4.2) with the TorchRay protocol.

A map scores a hit when its maximum lies within ``tolerance`` pixels (Euclidean, inclusive) of a
ground-truth pixel of the class. Accuracy is ``hits / (hits + misses)`` per class, then the
mean over classes, on "all" (image, class) pairs and on the "difficult" subset (the class covers
less than 1/4 of the image and the image holds more than one class). A class absent from the
ground truth (empty mask) is "no object": neither a hit nor a miss. The centre baseline points
at the image centre.
"""

from __future__ import annotations

import numbers

import numpy as np


def _check_tolerance(tolerance) -> None:
  # ``not >= 0`` also rejects NaN (``NaN < 0`` is False and NaN silently scored a miss).
  if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
      or not tolerance >= 0):
    raise ValueError(f"tolerance must be a number >= 0 (not NaN), got {tolerance!r}")


def _as_gt_mask(gt, shape: tuple[int, int]) -> np.ndarray:
  """A boolean mask from a mask or from boxes ``[k, 4]`` = ``(y0, x0, y1, x1)``, ends exclusive."""
  arr = np.asarray(gt)
  if arr.dtype == np.bool_:
    if arr.shape != shape:
      raise ValueError(f"gt mask must have the saliency map's shape {list(shape)}, got "
                       f"{list(arr.shape)}")
    return arr
  if arr.shape == shape:
    raise ValueError(
        f"gt of the map's shape {list(shape)} must be a boolean mask, got {arr.dtype} (boxes "
        "are given as [k, 4] arrays of (y0, x0, y1, x1))")
  if arr.ndim == 1 and arr.size == 4:
    arr = arr[None]
  if arr.ndim == 2 and arr.shape[1] == 4:
    if (not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
        or not np.all(np.isfinite(arr))):
      raise ValueError(f"gt boxes [k, 4] must be finite numbers (y0, x0, y1, x1), got "
                       f"{arr.dtype}{arr.tolist()}")
    mask = np.zeros(shape, bool)
    for y0, x0, y1, x1 in arr:
      if y1 < y0 or x1 < x0:
        raise ValueError(f"gt box (y0, x0, y1, x1) must have y1 >= y0 and x1 >= x0, got "
                         f"{[y0, x0, y1, x1]}")
      rows = slice(max(int(np.floor(y0)), 0), max(int(np.ceil(y1)), 0))
      cols = slice(max(int(np.floor(x0)), 0), max(int(np.ceil(x1)), 0))
      if not mask[rows, cols].size:
        # Scored as "no object" it would silently drop the pair from the game.
        raise ValueError(f"gt box (y0, x0, y1, x1) = {[y0, x0, y1, x1]} covers no pixel of "
                         f"the {shape[0]}x{shape[1]} map (outside it or of zero area)")
      mask[rows, cols] = True
    return mask
  raise ValueError(
      "gt must be a boolean mask [H, W] or boxes [k, 4] as (y0, x0, y1, x1) with exclusive "
      f"ends, got {arr.dtype}{list(arr.shape)}")


def max_point(saliency) -> tuple[int, int]:
  """``(y, x)`` of the map's maximum (the first in row-major order when tied)."""
  sal = np.asarray(saliency)
  if sal.ndim != 2:
    raise ValueError(f"saliency must have shape [H, W], got {list(sal.shape)}")
  if sal.size == 0:
    raise ValueError(f"saliency must be non-empty, got shape {list(sal.shape)}")
  if sal.dtype.kind in "cmMOSU":  # complex, dates, objects, strings (ml_dtypes floats: "V")
    raise TypeError(f"saliency must be real-valued (float, int or bool), got dtype {sal.dtype}")
  if not np.all(np.isfinite(sal)):
    raise ValueError("saliency contains NaN or inf values")
  return tuple(int(v) for v in np.unravel_index(int(np.argmax(sal)), sal.shape))


def hit(point: tuple[int, int], gt_mask: np.ndarray, tolerance: float = 15) -> int:
  """1 if a ground-truth pixel lies within ``tolerance`` of ``point``, 0 if not, -1 if none.

  Args:
    point: ``(y, x)``.
    gt_mask: bool[H, W].
    tolerance: Pixels (Euclidean distance, inclusive; TorchRay default 15).

  Returns:
    1 (hit), 0 (miss) or -1 (empty ground truth: no object).
  """
  if not gt_mask.any():
    return -1
  ys, xs = np.nonzero(gt_mask)
  d2 = (ys - point[0]) ** 2 + (xs - point[1]) ** 2
  return int(d2.min() <= tolerance * tolerance)


def pointing_game(saliency, gt, *, tolerance: float = 15) -> int:
  """Pointing game for one map.

  Args:
    saliency: float[H, W].
    gt: bool[H, W] mask of the class, or boxes [k, 4] ``(y0, x0, y1, x1)`` (ends exclusive).
    tolerance: Hit radius in pixels (inclusive).

  Returns:
    1 (hit), 0 (miss) or -1 (no object of the class: not counted).
  """
  _check_tolerance(tolerance)
  sal = np.asarray(saliency)
  return hit(max_point(sal), _as_gt_mask(gt, sal.shape[-2:] if sal.ndim == 2 else ()),
             tolerance)


def centre_hit(gt, shape: tuple[int, int], *, tolerance: float = 15) -> int:
  """The centre baseline's pointing game: the image centre ``((H - 1) // 2, (W - 1) // 2)``
  as the map maximum (as :class:`PointingGame` scores it).

  Args:
    gt: bool[H, W] mask of the class, or boxes [k, 4].
    shape: ``(H, W)``.
    tolerance: Hit radius in pixels (inclusive).

  Returns:
    1 (hit), 0 (miss) or -1 (no object of the class).
  """
  _check_tolerance(tolerance)
  h, w = (int(v) for v in shape)
  return hit(((h - 1) // 2, (w - 1) // 2), _as_gt_mask(gt, (h, w)), tolerance)


class PointingGame:
  """Accumulates pointing-game hits per class, on all pairs and the difficult subset.

  Example::

    game = PointingGame(num_classes=20)
    for sal, seg, labels in data:            # sal float[K, H, W], seg bool[H, W, C]
      for c in np.flatnonzero(labels):
        game.update(sal[c], seg[..., c], c, num_present=labels.sum())
    game.results()["all"]["mean"]
  """

  def __init__(self, num_classes: int, tolerance: float = 15):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or (
        num_classes < 1):
      raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    _check_tolerance(tolerance)
    self.num_classes = int(num_classes)
    self.tolerance = float(tolerance)
    shape = (2, 2, self.num_classes)  # [method|centre, all|difficult, class]
    self.hits = np.zeros(shape, np.int64)
    self.misses = np.zeros(shape, np.int64)
    self.no_object = 0

  def update(self, saliency, gt, class_id: int, *, num_present: int | None = None,
             difficult: bool | None = None) -> int:
    """Scores one (image, class) pair.

    Args:
      saliency: float[H, W] map of class ``class_id``.
      gt: bool[H, W] mask or boxes [k, 4] of that class.
      class_id: int in ``[0, num_classes)``.
      num_present: Number of classes in the image; with the GT area it decides "difficult"
        (area < H * W / 4 and ``num_present > 1``) unless ``difficult`` is given.
      difficult: Explicit difficult flag.

    Returns:
      1 hit, 0 miss, -1 no object (not counted).
    """
    if isinstance(class_id, bool) or not isinstance(class_id, numbers.Integral) or not (
        0 <= class_id < self.num_classes):
      raise ValueError(f"class_id must be an int in [0, {self.num_classes - 1}], got "
                       f"{class_id!r}")
    sal = np.asarray(saliency)
    point = max_point(sal)
    mask = _as_gt_mask(gt, sal.shape)
    result = hit(point, mask, self.tolerance)
    if result < 0:
      self.no_object += 1
      return result
    if difficult is None:
      difficult = (num_present is not None and num_present > 1
                   and mask.sum() < mask.size / 4)
    centre = hit(((sal.shape[0] - 1) // 2, (sal.shape[1] - 1) // 2), mask, self.tolerance)
    for who, res in ((0, result), (1, centre)):
      for subset in (0, 1) if difficult else (0,):
        (self.hits if res else self.misses)[who, subset, class_id] += 1
    return result

  def results(self) -> dict:
    """Per-class accuracy (NaN for classes never seen), mean over seen classes, for the method
    and the centre baseline, on "all" and "difficult"."""
    out = {}
    for who, name in ((0, "method"), (1, "centre")):
      out[name] = {}
      for subset, sname in ((0, "all"), (1, "difficult")):
        h, m = self.hits[who, subset], self.misses[who, subset]
        n = h + m
        per = np.where(n > 0, h / np.maximum(n, 1), np.nan)
        out[name][sname] = {
            "per_class": per.tolist(),
            "mean": float(np.nanmean(per)) if (n > 0).any() else float("nan"),
            "count": int(n.sum()),
        }
    out["all"] = out["method"]["all"]
    out["difficult"] = out["method"]["difficult"]
    out["no_object"] = self.no_object
    return out
