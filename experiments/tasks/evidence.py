"""Confidence intervals and paired comparisons for the experiments' tables.

Every metric mean in a table carries a 95% percentile-bootstrap interval over images (whole
images resampled, with all their (image, class) pairs; 1000 resamples, seed 0), and every
ordering a paper reports is decided on the paired difference between two methods on the same
pairs (:func:`rise_jax.metrics.statistics.paired_difference`): "holds" when the interval of
the difference excludes 0 in the paper's direction, "reversed" when it excludes 0 the other
way, "not resolved" when it contains 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rise_jax.metrics import statistics

NUM_RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95


def _statistic(class_ids):
  return None if class_ids is None else statistics.mean_of_class_means(np.asarray(class_ids))


def ci(values, groups=None, class_ids=None) -> dict:
  """``{"mean", "low", "high", "n", "groups"}`` of ``values`` (NaN entries for no value).

  Args:
    values: float[n] per-pair (or per-image) values.
    groups: int[n] image of each value (resampled as units); default: each value its own.
    class_ids: int[n]: the statistic is the mean over classes of the per-class means
      (TorchRay's pointing accuracy) instead of the plain mean.
  """
  v = np.asarray(values, np.float64).reshape(-1)
  if not v.size:
    return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0, "groups": 0}
  r = statistics.bootstrap_ci(v, groups=groups, statistic=_statistic(class_ids),
                              num_resamples=NUM_RESAMPLES, confidence=CONFIDENCE, seed=SEED)
  return {"mean": r.mean, "low": r.low, "high": r.high, "n": r.n, "groups": r.num_groups}


def compare(claim: str, a, b, *, direction: str, names: Sequence[str], metric: str,
            groups=None, class_ids=None, headline: bool = True) -> dict:
  """A paper's ordering ``a > b`` (``direction="greater"``) or ``a < b`` on paired values.

  Args:
    claim: The ordering in words (shown in ``tables.md``).
    a: float[n] values of the first method.
    b: float[n] values of the second on the same pairs.
    direction: ``"greater"`` or ``"less"``.
    names: ``(name of a, name of b)``.
    metric: The metric compared.
    groups: int[n] image of each pair (resampled as units).
    class_ids: int[n] class of each pair, for a mean of per-class means.
    headline: Listed among the main job's orderings (else only in its stage's table).

  Returns:
    JSON-able ``{"claim", "a", "b", "metric", "direction", "headline", "difference", "low",
    "high", "num_pairs", "num_images", "verdict"}``; ``verdict`` is ``"no data"`` without pairs.
  """
  out = {"claim": claim, "a": names[0], "b": names[1], "metric": metric,
         "direction": direction, "headline": bool(headline)}
  av, bv = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
  if not av.size:
    return out | {"difference": math.nan, "low": math.nan, "high": math.nan, "num_pairs": 0,
                  "num_images": 0, "verdict": "no data"}
  d = statistics.paired_difference(av, bv, groups=groups, direction=direction,
                                   statistic=_statistic(class_ids),
                                   num_resamples=NUM_RESAMPLES, confidence=CONFIDENCE,
                                   seed=SEED)
  return out | {"difference": d.mean_difference, "low": d.low, "high": d.high,
                "num_pairs": d.num_pairs, "num_images": d.num_groups, "verdict": d.verdict}


def fmt(c: dict, digits: int = 3, scale: float = 1.0) -> str:
  """``"0.270 [0.251, 0.289]"`` of a :func:`ci` dict (``scale`` e.g. 100 for percent)."""
  if c is None or not c.get("n") or not np.isfinite(c["mean"]):
    return "n/a"
  f = f"{{:.{digits}f}}"
  return (f"{f.format(scale * c['mean'])} [{f.format(scale * c['low'])}, "
          f"{f.format(scale * c['high'])}]")


def comparisons_markdown(comparisons: Sequence[dict], digits: int = 4) -> list[str]:
  """Table lines: claim | verdict | difference [95% CI] | pairs (images)."""
  lines = ["| claim | verdict | difference a − b [95% CI] | pairs (images) |",
           "|---|---|---|---|"]
  for c in comparisons:
    f = f"{{:+.{digits}f}}"
    diff = ("n/a" if not c["num_pairs"] else
            f"{f.format(c['difference'])} [{f.format(c['low'])}, {f.format(c['high'])}]")
    verdict = c["verdict"] if c["verdict"] == "holds" else f"**{c['verdict']}**"
    lines.append(f"| {c['claim']} | {verdict} | {diff} | {c['num_pairs']} "
                 f"({c['num_images']}) |")
  return lines
