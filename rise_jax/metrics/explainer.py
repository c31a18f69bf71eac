"""NN-Explainer metrics (Stalder et al. §4.3, eq. 9): Acc, IoU, Sal, MAE and sanity baselines.

On the aggregated mask ``m`` (max over the image's true classes) and the binary ground truth
``s``, per image, then averaged over images:

* ``Acc = (sum(m * s) + sum((1 - m) * (1 - s))) / Z``
* ``IoU = sum(min(m, s)) / sum(max(m, s))`` (1 when both are empty)
* ``Sal = ln(max(mean(m), 0.05)) - ln(sum_{c in Y} softmax(f(m * x))_c)`` (lower is better)
* ``MAE = mean(|m - s|)``

Acc, IoU and MAE are fractions in [0, 1] (the paper prints percentages).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

SAL_MIN_AREA = 0.05


def _check(mask, gt_mask):
  m = np.asarray(mask, np.float64)
  s = np.asarray(gt_mask)
  if m.ndim == 2:
    m = m[None]
  if s.ndim == 2:
    s = s[None]
  if m.ndim != 3 or m.shape != s.shape or m.size == 0:
    raise ValueError(f"mask and gt_mask must both have shape [B, H, W] (non-empty), got "
                     f"{list(m.shape)} and {list(s.shape)}")
  if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
    raise ValueError("mask must be finite with values in [0, 1]")
  s = s.astype(np.float64)
  if not np.all((s == 0) | (s == 1)):
    raise ValueError("gt_mask must be binary (bool or 0/1)")
  return m, s


def explainer_scores(mask, gt_mask, probs_on_masked, present_classes) -> dict[str, float]:
  """Acc, IoU, Sal and MAE averaged over images.

  Args:
    mask: float[B, H, W] aggregated masks in [0, 1] (max over each image's true classes).
    gt_mask: bool[B, H, W] union of the true classes' ground-truth segments.
    probs_on_masked: float[B, C] softmax probabilities of the explanandum on ``mask * x``.
    present_classes: multi-hot [B, C] of the true classes ``Y``.

  Returns:
    ``{"acc", "iou", "sal", "mae"}`` (means) and ``"per_image"`` (arrays of each).
  """
  m, s = _check(mask, gt_mask)
  probs = np.asarray(probs_on_masked, np.float64)
  present = np.asarray(present_classes)
  if probs.ndim != 2 or probs.shape[0] != m.shape[0] or present.shape != probs.shape:
    raise ValueError(
        f"probs_on_masked and present_classes must both have shape [B, C] with B = {m.shape[0]}, "
        f"got {list(probs.shape)} and {list(present.shape)}")
  if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1 + 1e-6:
    raise ValueError("probs_on_masked must be probabilities in [0, 1] (apply a softmax)")
  if not np.all((present == 0) | (present == 1)):
    raise ValueError("present_classes must be multi-hot: bool or exactly 0/1 per class")
  present = present.astype(bool)
  if not present.any(axis=1).all():
    raise ValueError(
        "present_classes must give every image at least one present class (Sal takes the log "
        "of their summed probability); images without one: "
        f"{np.flatnonzero(~present.any(1)).tolist()}")
  z = m[0].size
  acc = ((m * s).sum((1, 2)) + ((1 - m) * (1 - s)).sum((1, 2))) / z
  den = np.maximum(m, s).sum((1, 2))
  iou = np.where(den > 0, np.minimum(m, s).sum((1, 2)) / np.where(den > 0, den, 1), 1.0)
  p_y = np.maximum((probs * present).sum(1), 1e-30)
  sal = np.log(np.maximum(m.mean((1, 2)), SAL_MIN_AREA)) - np.log(p_y)
  mae = np.abs(m - s).mean((1, 2))
  per = {"acc": acc, "iou": iou, "sal": sal, "mae": mae}
  out = {k: float(v.mean()) for k, v in per.items()}
  out["per_image"] = {k: v.tolist() for k, v in per.items()}
  return out


def sanity_baselines(probs_fn: Callable, images, gt_mask, present_classes
                     ) -> dict[str, dict[str, float]]:
  """The paper's sanity rows: constant masks "0", "0.5", "1" and the ground truth "G.T.".

  Args:
    probs_fn: ``float32[b, H, W, C_in] -> softmax probabilities float32[b, C]``.
    images: float32[B, H, W, C_in] in normalised space (masking multiplies them).
    gt_mask: bool[B, H, W].
    present_classes: multi-hot [B, C].

  Returns:
    ``{"0": scores, "0.5": scores, "1": scores, "G.T.": scores}`` as :func:`explainer_scores`.
  """
  x = jnp.asarray(images, jnp.float32)
  gt = np.asarray(gt_mask).astype(np.float32)
  if x.ndim != 4 or gt.shape != x.shape[:3]:
    raise ValueError(f"images [B, H, W, C_in] and gt_mask [B, H, W] must match, got images "
                     f"{list(x.shape)} and gt_mask {list(gt.shape)}")
  out = {}
  for name, m in (("0", np.zeros_like(gt)), ("0.5", np.full_like(gt, 0.5)),
                  ("1", np.ones_like(gt)), ("G.T.", gt)):
    probs = np.asarray(probs_fn(x * jnp.asarray(m)[..., None]))
    scores = explainer_scores(m, gt_mask, probs, present_classes)
    scores.pop("per_image")
    out[name] = scores
  return out
