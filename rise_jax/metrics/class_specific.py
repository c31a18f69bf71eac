"""Class-specific masking table (Stalder et al., Table 1).

For each image with target class ``t`` and each class ``c`` present in it, the image is masked
with the thresholded mask of ``c`` (``x * (mask_c > thr)``, normalised space) at every threshold,
and the explanandum's softmax probability of ``t`` is recorded. Rows are target classes,
columns mask classes plus ``"none"`` (the unmasked image); each cell is the mean over images and
thresholds. Class-specific masks give a high diagonal and a low off-diagonal.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.1, 1.0, 0.1), 1).tolist())


def class_specific_table(probs_fn: Callable, images, class_masks, labels, *,
                         thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                         batch_size: int = 64) -> dict:
  """Mean probability of each target class when the image is masked by each class's mask.

  Args:
    probs_fn: ``float32[b, H, W, C_in] -> softmax probabilities float32[b, C]``.
    images: float32[B, H, W, C_in] in normalised space.
    class_masks: float[B, C, H, W] per-class masks in [0, 1] (e.g. an Explainer's output).
    labels: multi-hot [B, C] of the present classes.
    thresholds: Values in (0, 1) at which each mask is binarised (paper: 0.1 ... 0.9).
    batch_size: Masked images per ``probs_fn`` call.

  Returns:
    ``{"table": float64[C, C + 1]`` (NaN where no image has both classes), ``"counts":
    int64[C, C + 1]``, ``"diagonal_mean"``, ``"off_diagonal_mean"``, ``"none_mean"``,
    ``"per_image"``}``; ``per_image`` holds ``"diagonal"`` and ``"off_diagonal"`` float64[B]:
    each image's mean probability of a present class under its own masks, and under the
    masks of the image's other present classes (NaN for an image with fewer classes), so
    that a confidence interval can resample images.
  """
  x = np.asarray(images, np.float32)
  masks = np.asarray(class_masks, np.float32)
  y = np.asarray(labels)
  if x.ndim != 4:
    raise ValueError(f"images must have shape [B, H, W, C_in], got {list(x.shape)}")
  b, h, w, _ = x.shape
  if masks.ndim != 4 or masks.shape[0] != b or masks.shape[2:] != (h, w):
    raise ValueError(f"class_masks must have shape [B, C, H, W] = [{b}, C, {h}, {w}], got "
                     f"{list(masks.shape)}")
  num_classes = masks.shape[1]
  if y.shape != (b, num_classes):
    raise ValueError(f"labels must have shape [B, C] = [{b}, {num_classes}], got {list(y.shape)}")
  if not np.all((y == 0) | (y == 1)):
    raise ValueError("labels must be multi-hot: bool or exactly 0/1 per class")
  if not np.all(np.isfinite(masks)) or masks.min() < 0 or masks.max() > 1:
    raise ValueError("class_masks must be finite with values in [0, 1]")
  thr = np.asarray(thresholds, np.float32)
  if thr.ndim != 1 or thr.size == 0 or not np.all((thr > 0) & (thr < 1)):  # NaN fails too
    raise ValueError(f"thresholds must be a non-empty sequence in (0, 1), got {thresholds!r}")
  if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or (
      batch_size < 1):
    raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
  total = np.zeros((num_classes, num_classes + 1))
  count = np.zeros((num_classes, num_classes + 1), np.int64)
  own, other = np.zeros((b, 2)), np.zeros((b, 2))  # per image: [sum, count]
  pending, meta = [], []

  def flush():
    if not pending:
      return
    batch = np.stack(pending)
    probs = []
    for i in range(0, len(batch), batch_size):
      probs.append(np.asarray(probs_fn(jnp.asarray(batch[i:i + batch_size]))))
    probs = np.concatenate(probs)
    if not np.all(np.isfinite(probs)):
      raise FloatingPointError("probs_fn returned NaN or inf on a masked image")
    for p, (present, col, i) in zip(probs, meta):
      total[present, col] += p[present]
      count[present, col] += 1
      if col < num_classes:
        own[i] += (p[col], 1)
        rest = present[present != col]
        other[i] += (p[rest].sum(), rest.size)
    pending.clear()
    meta.clear()

  for i in range(b):
    present = np.flatnonzero(y[i])
    if present.size == 0:
      continue
    pending.append(x[i])
    meta.append((present, num_classes, i))
    for c in present:
      for t in thr:
        pending.append(x[i] * (masks[i, c] > t)[..., None])
        meta.append((present, c, i))
    if len(pending) >= 4 * batch_size:
      flush()
  flush()
  table = np.where(count > 0, total / np.maximum(count, 1), np.nan)
  square = table[:, :num_classes]
  diag = np.diag(square)
  off = square[~np.eye(num_classes, dtype=bool)]
  return {
      "table": table,
      "counts": count,
      "diagonal_mean": float(np.nanmean(diag)) if np.isfinite(diag).any() else float("nan"),
      "off_diagonal_mean": float(np.nanmean(off)) if np.isfinite(off).any() else float("nan"),
      "none_mean": float(np.nanmean(table[:, -1])) if np.isfinite(table[:, -1]).any()
      else float("nan"),
      "per_image": {name: np.where(acc[:, 1] > 0, acc[:, 0] / np.maximum(acc[:, 1], 1), np.nan)
                    for name, acc in (("diagonal", own), ("off_diagonal", other))},
  }
