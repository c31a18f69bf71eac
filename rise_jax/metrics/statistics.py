"""Seeded percentile-bootstrap confidence intervals for metric means and paired differences.

A resample draws ``G`` units with replacement from the ``G`` units of the data: the values
themselves, or whole groups (``groups``: e.g. the image of each (image, class) pair, so an
image contributes all its pairs or none). Resample ``r`` draws ``rng.integers(0, G, size=G)``
from ``rng = np.random.default_rng(seed)``, resamples in order, and is represented by the
multiplicity of each value, ``weights[r, i]``; a statistic maps ``(values, weights[R, n])`` to
``[R]`` numbers, so every resample is computed at once in NumPy. The interval is the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the ``R`` resampled
statistics (``np.percentile``, linear interpolation); the point estimate is the statistic of
the data.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

DIRECTIONS = ("greater", "less")
VERDICTS = ("holds", "reversed", "not resolved")
_CHUNK_ELEMENTS = 1 << 22  # resamples are drawn and reduced in chunks of ~4M weights

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


class BootstrapCI(NamedTuple):
  """What :func:`bootstrap_ci` returns.

  Attributes:
    mean: The statistic of the data (by default their mean).
    low: Lower end of the percentile interval.
    high: Upper end.
    n: Number of values.
    num_groups: Number of resampled units (``n`` without ``groups``).
    confidence: The interval's nominal coverage.
    num_resamples: ``R``.
  """

  mean: float
  low: float
  high: float
  n: int
  num_groups: int
  confidence: float
  num_resamples: int


class PairedDifference(NamedTuple):
  """What :func:`paired_difference` returns.

  Attributes:
    mean_difference: The statistic of ``a - b`` (by default the mean difference).
    low: Lower end of its percentile interval.
    high: Upper end.
    num_pairs: Number of pairs.
    num_groups: Number of resampled units (``num_pairs`` without ``groups``).
    direction: The claim tested: ``"greater"`` (``a > b``) or ``"less"`` (``a < b``).
    verdict: ``"holds"`` (the interval excludes 0 on the claimed side), ``"reversed"`` (it
      excludes 0 on the other side) or ``"not resolved"`` (it contains 0).
    confidence: The interval's nominal coverage.
    num_resamples: ``R``.
  """

  mean_difference: float
  low: float
  high: float
  num_pairs: int
  num_groups: int
  direction: str
  verdict: str
  confidence: float
  num_resamples: int


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """The default statistic: ``weights @ values / weights.sum(1)``.

  Args:
    values: float[n].
    weights: float[R, n] multiplicities (every row has a positive sum).

  Returns:
    float[R].
  """
  return weights @ values / weights.sum(axis=1)


def mean_of_class_means(class_ids) -> Statistic:
  """The statistic "mean over classes of the per-class mean" (TorchRay's pointing accuracy).

  A class absent from a resample is left out of that resample's mean over classes, as
  :class:`rise_jax.metrics.PointingGame` leaves out classes never seen.

  Args:
    class_ids: int[n], the class of each value (e.g. of each (image, class) pair; the value
      is 1 for a hit and 0 for a miss).

  Returns:
    ``statistic(values float[n], weights float[R, n]) -> float[R]`` for :func:`bootstrap_ci`
    and :func:`paired_difference`.
  """
  ids = np.asarray(class_ids)
  if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"class_ids must be a non-empty 1-D integer array, got "
                     f"{ids.dtype}{list(ids.shape)}")
  classes, index = np.unique(ids, return_inverse=True)
  onehot = np.zeros((ids.size, classes.size))
  onehot[np.arange(ids.size), index] = 1.0

  def statistic(values, weights):
    if values.shape[0] != ids.size:
      raise ValueError(f"mean_of_class_means was built for {ids.size} class ids, but the "
                       f"statistic got {values.shape[0]} values")
    count = weights @ onehot  # [R, K]
    total = weights @ (onehot * values[:, None])
    seen = count > 0
    per_class = np.where(seen, total / np.where(seen, count, 1.0), 0.0)
    return per_class.sum(axis=1) / seen.sum(axis=1)

  return statistic


def _as_values(values, name: str) -> np.ndarray:
  arr = np.asarray(values)
  if arr.dtype == np.bool_:
    arr = arr.astype(np.float64)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(f"{name} must be a non-empty 1-D array of numbers, got shape "
                     f"{list(arr.shape)}")
  if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
    raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
  arr = arr.astype(np.float64)
  if not np.all(np.isfinite(arr)):
    bad = np.flatnonzero(~np.isfinite(arr))
    raise ValueError(f"{name} contains NaN or inf at positions {bad[:10].tolist()}"
                     f"{' ...' if bad.size > 10 else ''}")
  return arr


def _check_options(num_resamples, confidence, seed) -> None:
  if (isinstance(num_resamples, bool) or not isinstance(num_resamples, numbers.Integral)
      or num_resamples < 1):
    raise ValueError(f"num_resamples must be an integer >= 1, got {num_resamples!r}")
  if (isinstance(confidence, bool) or not isinstance(confidence, numbers.Real)
      or not 0.0 < confidence < 1.0):
    raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def _group_index(groups, n: int) -> np.ndarray:
  """int[n] unit of each value, numbered 0..G-1 (the values themselves without groups)."""
  if groups is None:
    return np.arange(n)
  g = np.asarray(groups)
  if g.ndim != 1 or g.shape[0] != n:
    raise ValueError(f"groups must be a 1-D array with one group label per value ({n}), got "
                     f"shape {list(g.shape)}")
  if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
    raise ValueError("groups contains NaN or inf labels")
  return np.unique(g, return_inverse=True)[1].reshape(-1)


def _resampled(values: np.ndarray, unit: np.ndarray, statistic: Statistic, num_resamples: int,
               seed: int) -> tuple[float, np.ndarray]:
  """The statistic of the data and of ``num_resamples`` unit resamples."""
  n, num_units = values.shape[0], int(unit.max()) + 1
  point = np.asarray(statistic(values, np.ones((1, n))), np.float64).reshape(-1)
  if point.shape != (1,):
    raise ValueError(f"statistic must return one number per row of weights, got shape "
                     f"{list(point.shape)} for 1 row")
  rng = np.random.default_rng(seed)
  chunk = max(1, _CHUNK_ELEMENTS // max(n, num_units))
  out = []
  for start in range(0, num_resamples, chunk):
    rows = min(chunk, num_resamples - start)
    draws = rng.integers(0, num_units, size=(rows, num_units))
    flat = (draws + num_units * np.arange(rows)[:, None]).reshape(-1)
    mult = np.bincount(flat, minlength=rows * num_units).reshape(rows, num_units)
    stats = np.asarray(statistic(values, mult[:, unit].astype(np.float64)), np.float64)
    if stats.shape != (rows,):
      raise ValueError(f"statistic must return one number per row of weights, got shape "
                       f"{list(stats.shape)} for {rows} rows")
    out.append(stats)
  stats = np.concatenate(out)
  if not np.isfinite(point[0]) or not np.all(np.isfinite(stats)):
    raise ValueError("statistic returned NaN or inf (on the data or on a resample)")
  return float(point[0]), stats


def bootstrap_ci(values, *, groups=None, statistic: Statistic | None = None,
                 num_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> BootstrapCI:
  """Mean (or ``statistic``) of ``values`` with a seeded percentile-bootstrap interval.

  Args:
    values: float[n] per-item scores (e.g. one AUC per (image, class) pair; bool is 0/1).
    groups: Optional [n] labels (e.g. image ids): whole groups are resampled, so the interval
      accounts for items of one group being correlated. Default: items are independent.
    statistic: ``statistic(values float[n], weights float[R, n]) -> float[R]`` (see the module
      docstring); default :func:`weighted_mean`. :func:`mean_of_class_means` gives TorchRay's
      pointing accuracy.
    num_resamples: ``R >= 1``.
    confidence: Nominal coverage in (0, 1).
    seed: Seed of ``np.random.default_rng``.

  Returns:
    A :class:`BootstrapCI`.

  Raises:
    ValueError: Empty or non-1-D values, NaN/inf, groups of another length, bad options.
  """
  _check_options(num_resamples, confidence, seed)
  v = _as_values(values, "values")
  unit = _group_index(groups, v.shape[0])
  point, stats = _resampled(v, unit, statistic or weighted_mean, int(num_resamples), int(seed))
  low, high = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
  return BootstrapCI(mean=point, low=float(low), high=float(high), n=int(v.shape[0]),
                     num_groups=int(unit.max()) + 1, confidence=float(confidence),
                     num_resamples=int(num_resamples))


def verdict(low: float, high: float, direction: str) -> str:
  """``"holds"``, ``"reversed"`` or ``"not resolved"`` for an interval of ``a - b``.

  Args:
    low: Lower end of the interval.
    high: Upper end.
    direction: The claim, ``"greater"`` (``a > b``: holds when ``low > 0``) or ``"less"``
      (``a < b``: holds when ``high < 0``).
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
  above, below = low > 0, high < 0
  if direction == "greater":
    return "holds" if above else "reversed" if below else "not resolved"
  return "holds" if below else "reversed" if above else "not resolved"


def paired_difference(a, b, *, groups=None, direction: str = "greater",
                      statistic: Statistic | None = None, num_resamples: int = 1000,
                      confidence: float = 0.95, seed: int = 0) -> PairedDifference:
  """Paired bootstrap of ``a - b`` and a verdict on the claim ``a > b`` (or ``a < b``).

  The pairs (or whole groups of pairs) are resampled together, so the interval is that of the
  paired difference, not of two independent means.

  Args:
    a: float[n] scores of the first method (e.g. per (image, class) pair).
    b: float[n] scores of the second method on the same items, in the same order.
    groups: Optional [n] labels resampled as units (e.g. image ids).
    direction: ``"greater"`` (claim ``a > b``, e.g. insertion AUC) or ``"less"`` (claim
      ``a < b``, e.g. deletion AUC).
    statistic: As in :func:`bootstrap_ci`, applied to ``a - b`` (any statistic linear in the
      values for fixed weights, like :func:`mean_of_class_means`, gives the difference of the
      two statistics).
    num_resamples: ``R >= 1``.
    confidence: Nominal coverage in (0, 1).
    seed: Seed of ``np.random.default_rng``.

  Returns:
    A :class:`PairedDifference`.

  Raises:
    ValueError: Empty inputs, NaN/inf, ``a`` and ``b`` (or ``groups``) of different lengths,
      bad options.
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
  _check_options(num_resamples, confidence, seed)
  av, bv = _as_values(a, "a"), _as_values(b, "b")
  if av.shape != bv.shape:
    raise ValueError(f"a and b must be paired (the same length), got {av.shape[0]} and "
                     f"{bv.shape[0]} values")
  unit = _group_index(groups, av.shape[0])
  point, stats = _resampled(av - bv, unit, statistic or weighted_mean, int(num_resamples),
                            int(seed))
  low, high = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
  return PairedDifference(mean_difference=point, low=float(low), high=float(high),
                          num_pairs=int(av.shape[0]), num_groups=int(unit.max()) + 1,
                          direction=direction, verdict=verdict(low, high, direction),
                          confidence=float(confidence), num_resamples=int(num_resamples))
