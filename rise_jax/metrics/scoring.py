"""Per-pair scores of saliency maps: causal AUCs, F1/IoU, pointing, and their table entries.

The scorer shared by :func:`rise_jax.evaluate` users and the experiments' tables (the IASSA
Table 1 metrics of SPEC §3 per (image, class) pair, then image- and pixel-level means).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from rise_jax.metrics import causal, pointing, segmentation

METRICS = ("deletion", "insertion", "f1", "iou", "pointing")
CLASSES = ("all", "first")


def select_pairs(labels, classes: str = "all") -> tuple[np.ndarray, np.ndarray]:
  """The explained (image, class) pairs of a multi-hot label matrix.

  Args:
    labels: float[N, C] multi-hot (``> 0``: present).
    classes: ``"all"``: every present class of every image (row-major order); ``"first"``:
      the lowest-index present class of each image. Images without a class are left out.

  Returns:
    ``(image_index int64[P], class_id int64[P])``.
  """
  if classes not in CLASSES:
    raise ValueError(f"classes must be one of {CLASSES}, got {classes!r}")
  present = np.asarray(labels) > 0
  if present.ndim != 2:
    raise ValueError(f"labels must have shape [N, C], got {list(present.shape)}")
  if classes == "first":
    img = np.flatnonzero(present.any(1))
    return img.astype(np.int64), present[img].argmax(1).astype(np.int64)
  img, cls = np.nonzero(present)
  return img.astype(np.int64), cls.astype(np.int64)


def pixel_level(values, areas) -> np.ndarray:
  """IASSA's pixel-level numbers: each value divided by its binary map's pixel count.

  Args:
    values: float[P] per-pair metric values.
    areas: int[P] pixels of each pair's binary map ``minmax(map) > T``.

  Returns:
    float64[P] ``values / areas``, 0 where the area is 0 (an empty binary map).
  """
  v, a = np.asarray(values, np.float64), np.asarray(areas, np.float64)
  if v.shape != a.shape:
    raise ValueError(f"values and areas must have the same shape, got {v.shape} and {a.shape}")
  return np.where(a > 0, v / np.where(a > 0, a, 1.0), 0.0)


def class_mean(values, class_ids) -> float:
  """Mean over classes of the per-class mean of ``values`` (TorchRay's pointing accuracy).

  Args:
    values: float[P] per-pair values (pointing: hit 1 / miss 0).
    class_ids: int[P] each pair's class.

  Returns:
    The mean of the per-class means over the classes that occur (NaN for no pairs).
  """
  v, c = np.asarray(values, np.float64), np.asarray(class_ids)
  if v.shape != c.shape:
    raise ValueError(f"values and class_ids must have the same shape, got {v.shape} and "
                     f"{c.shape}")
  if not v.size:
    return float("nan")
  return float(np.mean([v[c == k].mean() for k in np.unique(c)]))


def score_maps(probs_fn: Callable[[jax.Array], jax.Array], images, maps, gt, class_ids, *,
               step: int, tolerance: float, threshold: float = 0.3, deletion_substrate="zeros",
               insertion_substrate="blur", batch_size: int = 64, chunk: int = 32
               ) -> dict[str, np.ndarray]:
  """Per-pair IASSA Table 1 metrics of one method's maps.

  Args:
    probs_fn: Black box ``float32[b, H, W, 3] -> probabilities float32[b, C]``.
    images: float32[P, H, W, 3] the image of each pair.
    maps: float[P, H, W] the pair's saliency map.
    gt: bool[P, H, W] the pair's class mask.
    class_ids: int[P] the explained class of each pair.
    step: Pixels per deletion/insertion step.
    tolerance: Pointing-game radius in pixels (inclusive).
    threshold: Binarisation threshold of the min-max normalised map (IASSA: 0.3).
    deletion_substrate: What deleted pixels become (SPEC §3: zeros).
    insertion_substrate: The insertion canvas (SPEC §3: a Gaussian blur).
    batch_size: Perturbed images per black-box call.
    chunk: Pairs per causal-metric call (the last chunk is padded, so nothing recompiles).

  Returns:
    ``{"deletion", "insertion", "f1", "iou", "pointing", "pointing_strict", "area"}``, each of
    shape [P]: AUCs, IoU/F1, pointing hit (1 hit, 0 miss, -1 empty ground truth) within
    ``tolerance`` and at distance 0 (the maximum on the object), and the binary map's pixel
    count.
  """
  images = np.asarray(images, np.float32)
  maps = np.asarray(maps, np.float32)
  gt = np.asarray(gt, bool)
  ids = np.asarray(class_ids, np.int64)
  p = images.shape[0]
  if maps.shape != images.shape[:3] or gt.shape != images.shape[:3] or ids.shape != (p,):
    raise ValueError(f"images [P, H, W, 3], maps [P, H, W], gt [P, H, W] and class_ids [P] "
                     f"must agree, got {list(images.shape)}, {list(maps.shape)}, "
                     f"{list(gt.shape)}, {list(ids.shape)}")
  if not p:
    raise ValueError("score_maps needs at least one pair")
  acc = causal.CausalAccumulator(probs_fn, step=step, chunk=max(1, min(chunk, p)),
                                 batch_size=batch_size, deletion_substrate=deletion_substrate,
                                 insertion_substrate=insertion_substrate)
  for image, m, c in zip(images, maps, ids):
    acc.add(image, m, c)
  acc.flush()
  out = {mode: np.asarray(acc.auc[mode], np.float64) for mode in ("deletion", "insertion")}
  seg = [segmentation.segmentation_scores(m, g, threshold=threshold) for m, g in zip(maps, gt)]
  out["f1"] = np.asarray([s["f1"] for s in seg], np.float64)
  out["iou"] = np.asarray([s["iou"] for s in seg], np.float64)
  out["area"] = np.asarray([s["area"] for s in seg], np.int64)
  out["pointing"] = np.asarray([pointing.pointing_game(m, g, tolerance=tolerance)
                                for m, g in zip(maps, gt)], np.float64)
  out["pointing_strict"] = np.asarray([pointing.pointing_game(m, g, tolerance=0)
                                       for m, g in zip(maps, gt)], np.float64)
  return out


def summarise(scores: dict[str, np.ndarray], class_ids) -> dict[str, dict[str, float]]:
  """Image- and pixel-level Table 1 entries of one method from :func:`score_maps`' output.

  Image level: the mean over pairs of deletion, insertion, F1 and IoU; pointing (and
  ``pointing_strict``) as the mean over classes of the per-class hit rate. Pixel level: the same
  after dividing every per-pair value by the pair's binary-map area (:func:`pixel_level`).

  Args:
    scores: Per-pair arrays ``{"deletion", "insertion", "f1", "iou", "pointing",
      "pointing_strict", "area"}``.
    class_ids: int[P] each pair's class.

  Returns:
    ``{"image": {metric: value}, "pixel": {metric: value}}``, with ``"area"`` (mean binary-map
    pixels) in the image level.
  """
  out: dict[str, dict[str, float]] = {"image": {}, "pixel": {}}
  for name in METRICS + ("pointing_strict",):
    v = np.asarray(scores[name], np.float64)
    pix = pixel_level(v, scores["area"])
    if name.startswith("pointing"):  # -1: no ground-truth pixel (not counted)
      seen = v >= 0
      out["image"][name] = class_mean(v[seen], np.asarray(class_ids)[seen])
      out["pixel"][name] = class_mean(pix[seen], np.asarray(class_ids)[seen])
    else:
      out["image"][name] = float(v.mean())
      out["pixel"][name] = float(pix.mean())
  out["image"]["area"] = float(np.mean(scores["area"]))
  return out
