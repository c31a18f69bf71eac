"""Segmentation agreement of a saliency map with a ground-truth mask (IASSA §4.1).

The map is min-max normalised to [0, 1] and binarised at ``threshold`` (IASSA: 0.3). IoU and
F1 are computed against the ground-truth mask ("image level"); the "pixel level" numbers are the
image-level ones divided by the number of pixels of the binary map, as IASSA normalises them
(their Table 1 values are ~1e-5).
"""

from __future__ import annotations

import numbers

import numpy as np


def binarize(saliency, threshold: float = 0.3) -> np.ndarray:
  """``minmax(saliency) > threshold`` as bool[H, W] (a constant map gives all False)."""
  sal = np.asarray(saliency, np.float64)
  lo, hi = sal.min(), sal.max()
  if hi <= lo:
    return np.zeros(sal.shape, bool)
  return (sal - lo) / (hi - lo) > threshold


def segmentation_scores(saliency, gt_mask, *, threshold: float = 0.3) -> dict[str, float]:
  """IoU and F1 of the thresholded map against a ground-truth mask.

  Args:
    saliency: float[H, W].
    gt_mask: bool[H, W].
    threshold: In [0, 1], applied to the min-max normalised map (IASSA: 0.3).

  Returns:
    ``{"iou", "f1", "iou_pixel", "f1_pixel", "area"}``: image-level IoU and F1, the same divided
    by the number of pixels above threshold (``area``; 0 when the binary map is empty).
  """
  if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
      or not 0.0 <= threshold <= 1.0):
    raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
  sal = np.asarray(saliency)
  gt = np.asarray(gt_mask)
  if sal.ndim != 2 or sal.size == 0:
    raise ValueError(f"saliency must have shape [H, W] (non-empty), got {list(sal.shape)}")
  if gt.shape != sal.shape:
    raise ValueError(f"gt_mask must have the saliency map's shape {list(sal.shape)}, got "
                     f"{list(gt.shape)}")
  if gt.dtype != np.bool_:
    raise ValueError(f"gt_mask must be boolean, got {gt.dtype}")
  if sal.dtype.kind in "cmMOSU":  # complex, dates, objects, strings (ml_dtypes floats: "V")
    raise TypeError(f"saliency must be real-valued (float, int or bool), got dtype {sal.dtype}")
  if not np.all(np.isfinite(sal)):
    raise ValueError("saliency contains NaN or inf values")
  pred = binarize(sal, threshold)
  inter = float(np.logical_and(pred, gt).sum())
  union = float(np.logical_or(pred, gt).sum())
  area = int(pred.sum())
  total = area + int(gt.sum())
  iou = inter / union if union else 0.0
  f1 = 2 * inter / total if total else 0.0
  return {"iou": iou, "f1": f1, "iou_pixel": iou / area if area else 0.0,
          "f1_pixel": f1 / area if area else 0.0, "area": area}
