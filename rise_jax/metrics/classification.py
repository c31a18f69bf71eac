"""Classification metrics of the explanandum: (mean) average precision of multi-label scores."""

from __future__ import annotations

from typing import Any

import numpy as np


def average_precision(scores: Any, labels: Any) -> float:
  """Non-interpolated average precision of one class (as scikit-learn computes it).

  Args:
    scores: float[N] scores.
    labels: {0, 1}[N] targets.

  Returns:
    Mean precision at the rank of each positive (ties broken by index); NaN without positives.
  """
  s = np.asarray(scores, np.float64)
  y = np.asarray(labels) > 0.5
  if not y.any():
    return float("nan")
  order = np.argsort(-s, kind="stable")
  hits = y[order]
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision[hits].mean())


def mean_average_precision(scores: Any, labels: Any) -> tuple[float, np.ndarray]:
  """``(mAP over classes with positives, per-class AP float64[C])``."""
  s, y = np.asarray(scores), np.asarray(labels)
  if s.shape != y.shape or s.ndim != 2:
    raise ValueError(f"scores and labels must both be [N, C], got {s.shape} and {y.shape}")
  per = np.asarray([average_precision(s[:, c], y[:, c]) for c in range(s.shape[1])])
  return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan"), per
