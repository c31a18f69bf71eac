"""IASSA Table 1 (Vasu & Long, WACV 2020): RISE against IASSA over iterations, two metric levels.

:func:`train_and_evaluate` runs one config of ``configs/iassa.py`` end to end:

1. The explanandum: the synthetic classifier of ``configs/classifier.py``, trained or reused
   in ``workdir/classifier`` (:func:`rise_jax.train.classifier.train_and_evaluate`), or for the
   paper's setting a registry architecture (``explanandum.arch``, e.g. ``resnet50``) with its
   multi-label fine-tuned weights (``explanandum.weights``).
2. The test images with per-class ground-truth masks: the synthetic test split, or COCO /
   VOC through :mod:`rise_jax.data.coco` / :mod:`rise_jax.data.voc` (paths in ``data``).
3. The explained pairs: every (image, class) with the class present in the image
   (``eval.classes="all"``, the pointing-game protocol of TorchRay) or only the image's first
   present class (``"first"``); images without a class are left out.
4. Maps: RISE (:func:`rise_jax.rise`, all classes at once, the pair's class kept) and IASSA
   (:func:`rise_jax.iassa`, one run per pair and ``mix``) at the recorded iterations
   ``k = 5, 10, 15, 20, 25`` (``IassaResult.records``: the normalised adjusted map ``S'_k``).
5. Metrics per pair (SPEC §3): deletion and insertion AUC (one row of pixels per step, the
   paper's 224-pixel step scaled to the image), F1 and IoU of ``minmax(map) > T`` against the
   class mask, and the pointing game; "image level" averages the per-pair values (pointing:
   TorchRay's per-class accuracy, then the mean over classes), "pixel level" first divides each
   value by the number of pixels of the pair's binary map (``area``), as IASSA normalises.
   IASSA maps are 0 outside the pixels sampled at the iteration (its high-activation region
   only shrinks), so their deletion/insertion order past that region follows the pixel index
   (the metrics' stable tie-break), as for any map with ties.

The paper's window settings are for 224-pixel images; they are scaled by
``s = image_size / 224`` (``eval.paper_size``): ``W_0 = round(45 s)``, ``S_0 = max(round(8 s),
1)``, window step ``1.5 s``, stride step ``0.2 s`` (:func:`scaled_iassa_settings`), and the
pointing tolerance ``15 s`` pixels. Every scaled value is recorded in ``results["settings"]``.
The causal metrics score the classifier's sigmoid probability (``explanandum.output``; the
synthetic and COCO classifiers are multi-label, trained with BCE), while RISE and IASSA explain
its logit (``explanandum.explain_output``): on windowed synthetic images the logit of some
classes is 13.8 to 16.7 for every window, so the float32 sigmoids differ by less than 1e-6
(above 16.6 they round to exactly 1), under IASSA's flatness tolerance (1e-5 of the scale): the
estimate counts as flat, its high-activation region never shrinks (3844 windows per iteration
at stride 1) and its map is constant. Both methods get the same black box.

Outputs under ``workdir``: ``results.json``, ``tables.md`` (beside the paper's COCO numbers),
``table.csv`` (one row per level x method), ``pairs.csv`` (one row per pair x method) and
``iassa_maps.png`` (maps over ``k`` for a few pairs, like the paper's Fig. 5). A rerun reuses
the trained classifier.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from rise_jax.metrics import causal, pointing, segmentation

METRICS = ("deletion", "insertion", "f1", "iou", "pointing")
LOWER_IS_BETTER = ("deletion",)
PAPER_SIZE = 224
CLASSES = ("all", "first")
OUTPUTS = ("sigmoid", "softmax", "logits")

# IASSA Table 1 (MS-COCO, ResNet50; IASSA after 25 iterations), from the paper.
PAPER_TABLE1 = {
    "image": {
        "LIME": {"deletion": 0.900967, "insertion": 0.99, "f1": 0.15390, "iou": 0.09745,
                 "pointing": 0.16461},
        "RISE": {"deletion": 0.1847, "insertion": 1.0, "f1": 0.13837, "iou": 0.13653,
                 "pointing": 0.25},
        "IASSA": {"deletion": 0.18803, "insertion": 1.0, "f1": 0.23658, "iou": 0.15153,
                  "pointing": 0.4216},
    },
    "pixel": {
        "LIME": {"deletion": 10.8526e-05, "insertion": 10.96158e-05, "f1": 1.71177e-05,
                 "iou": 1.08447e-05, "pointing": 0.43671e-05},
        "RISE": {"deletion": 5.5423e-05, "insertion": 28.8669e-05, "f1": 4.26672e-05,
                 "iou": 2.69240e-05, "pointing": 8.95937e-05},
        "IASSA": {"deletion": 5.50534e-05, "insertion": 35.33639e-05, "f1": 10.5960e-05,
                  "iou": 6.9282e-05, "pointing": 17.79331e-05},
    },
}


def _round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def scaled_iassa_settings(window: int, stride: int, window_step: float, stride_step: float,
                          image_size: int, paper_size: int = PAPER_SIZE,
                          scale: float | None = None) -> dict[str, float]:
  """The paper's sliding-window settings scaled from ``paper_size`` to ``image_size`` pixels.

  With ``s = scale`` (default ``image_size / paper_size``): ``W_0 = min(max(round(window * s),
  1), image_size)``, ``S_0 = min(max(round(stride * s), 1), image_size)``, ``window_step * s``
  and ``stride_step * s`` (rounding half up). The paper's 45 / 8 / 1.5 / 0.2 at 64 px give
  13 / 2 / 0.4286 / 0.0571.

  Args:
    window: ``W_0`` at ``paper_size`` (paper: 45).
    stride: ``S_0`` at ``paper_size`` (paper: 8).
    window_step: Window decrease per iteration at ``paper_size`` (paper: 1.5).
    stride_step: Stride decrease per iteration at ``paper_size`` (paper: 0.2).
    image_size: Side of the evaluated images.
    paper_size: Side the settings are given for (paper: 224).
    scale: Explicit factor ``s > 0`` instead of ``image_size / paper_size``.

  Returns:
    ``{"scale", "window", "stride", "window_step", "stride_step"}``.
  """
  for name, v in (("image_size", image_size), ("paper_size", paper_size)):
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  s = image_size / paper_size if scale is None else scale
  if isinstance(s, bool) or not isinstance(s, int | float) or not s > 0 or not math.isfinite(s):
    raise ValueError(f"scale must be None or a finite number > 0, got {scale!r}")
  return {"scale": float(s),
          "window": min(max(_round_half_up(window * s), 1), int(image_size)),
          "stride": min(max(_round_half_up(stride * s), 1), int(image_size)),
          "window_step": float(window_step * s), "stride_step": float(stride_step * s)}


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


def paired_difference(a, b) -> dict[str, float]:
  """Mean and standard error of the per-pair difference ``a - b``.

  Args:
    a: float[P] values of one method.
    b: float[P] values of the other method on the same pairs.

  Returns:
    ``{"mean", "se", "wins"}``: mean difference, its standard error ``std(ddof=1) / sqrt(P)``
    (0 for one pair) and the fraction of pairs with ``a > b``.
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  if d.ndim != 1 or not d.size:
    raise ValueError(f"a and b must be non-empty 1-D arrays of the same length, got {d.shape}")
  se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
  return {"mean": float(d.mean()), "se": se, "wins": float(np.mean(d > 0))}


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
  out = {k: np.zeros(p, np.float64) for k in ("deletion", "insertion")}
  chunk = max(1, min(chunk, p))
  for start in range(0, p, chunk):
    idx = np.arange(start, start + chunk) % p  # pad the last chunk with earlier pairs
    n = min(chunk, p - start)
    for mode, fn, sub in (("deletion", causal.deletion, deletion_substrate),
                          ("insertion", causal.insertion, insertion_substrate)):
      scores, _ = fn(probs_fn, images[idx], maps[idx], ids[idx], step=step, substrate=sub,
                     batch_size=batch_size)
      out[mode][start:start + n] = np.asarray(scores)[:n]
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


def row_name(method: str, mix: str | None = None, k: int | None = None) -> str:
  """Table row label: ``"RISE"`` or ``"IASSA mix=paper k=15"``."""
  return method if mix is None else f"{method} mix={mix} k={k}"


def _fmt(v: float, level: str) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "nan"
  return f"{v:.4f}" if level == "image" else f"{v:.3e}"


def tables_markdown(results: dict) -> str:
  """Markdown of Table 1 at both levels (ours and the paper's), the paired IoU/F1 gains of
  IASSA over RISE, and the settings."""
  st = results["settings"]
  head = ["## IASSA Table 1 analogue", "",
          f"Dataset: {st['dataset']} test, {results['num_images']} images, "
          f"{results['num_pairs']} (image, class) pairs (classes: {st['classes']}); "
          f"the methods explain the classifier's {st['explain_output']}, the metrics score its "
          f"{st['output']}. Paper: MS-COCO, ResNet50, 224 px "
          "(IASSA after 25 iterations).", "",
          f"Window settings scaled by s = {st['iassa']['scale']:.4f} from the paper's "
          f"224 px: W0 = {st['iassa']['window']}, S0 = {st['iassa']['stride']}, window step "
          f"{st['iassa']['window_step']:.4f}, stride step {st['iassa']['stride_step']:.4f}; "
          f"pointing tolerance {st['tolerance']:.2f} px; deletion/insertion step "
          f"{st['step']} px; T = {st['threshold']}; RISE {st['rise']['num_masks']} masks.", ""]
  lines = head
  cols = ("deletion", "insertion", "f1", "iou", "pointing")
  for level in ("image", "pixel"):
    title = "Image level" if level == "image" else (
        "Pixel level (each value / pixels of its binary map; at our image size the binary maps "
        "are smaller than at 224 px, so these are larger than the paper's)")
    lines += [f"### {title}", "",
              "| method | Deletion ↓ | Insertion ↑ | F1 ↑ | IoU ↑ | Pointing ↑ |",
              "|---|---|---|---|---|---|"]
    for name, row in results["table"][level].items():
      lines.append(f"| {name} | " + " | ".join(_fmt(row[c], level) for c in cols) + " |")
    for name, row in PAPER_TABLE1[level].items():
      lines.append(f"| paper COCO {name} | " + " | ".join(_fmt(row[c], level) for c in cols)
                   + " |")
    lines.append("")
  lines += ["### IASSA minus RISE, image level (paired over pairs: mean ± s.e., share of pairs "
            "where IASSA is higher; for deletion higher is worse)", "",
            "| row | ΔF1 | ΔIoU | Δpointing | Δdeletion | Δinsertion |", "|---" * 6 + "|"]
  for name, d in results["vs_rise"].items():
    cells = " | ".join(f"{d[m]['mean']:+.4f} ± {d[m]['se']:.4f} ({100 * d[m]['wins']:.0f}%)"
                       for m in ("f1", "iou", "pointing", "deletion", "insertion"))
    lines.append(f"| {name} | {cells} |")
  strict = ", ".join(f"{n} {r['pointing_strict']:.3f}"
                     for n, r in results["table"]["image"].items())
  area = ", ".join(f"{n} {r['area']:.1f}" for n, r in results["table"]["image"].items())
  centre = results.get("pointing_centre")
  lines += ["", f"Pointing with tolerance 0 (maximum on the object, IASSA's wording): {strict}.",
            f"Mean pixels of the binary maps (of {st['image_size']}^2): {area}."]
  if centre is not None:
    lines.append(f"Centre baseline pointing (tolerance {st['tolerance']:.2f} px): "
                 f"{centre:.4f}.")
  t = results["seconds"]
  lines.append("Seconds: RISE {:.3f} per image; ".format(t["RISE_per_image"]) + "; ".join(
      f"IASSA mix={m} {t[f'IASSA_{m}_per_pair']:.3f} per pair" for m in st["iassa"]["mixes"])
      + " (compilation excluded).")
  it = results["iassa_runs"]
  lines.append("IASSA windows sent through the black box per pair: " + "; ".join(
      f"mix={m} {it[m]['windows_per_pair']:.0f}" for m in st["iassa"]["mixes"]) + ".")
  best = results.get("best_mix")
  if best:
    lines.append(f"Better mix (mean image-level F1 + IoU over k): {best}.")
  return "\n".join(lines) + "\n"


def _write_csvs(results: dict, pairs_rows: list[dict], workdir: str) -> None:
  with open(os.path.join(workdir, "table.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["level", "method", "mix", "k", *METRICS, "pointing_strict"])
    for level, rows in results["table"].items():
      for name, row in rows.items():
        method, mix, k = results["rows"][name]
        w.writerow([level, method, mix or "", "" if k is None else k,
                    *(f"{row[m]:.8g}" for m in METRICS + ("pointing_strict",))])
    for level, rows in PAPER_TABLE1.items():
      for method, row in rows.items():
        w.writerow([level, f"paper COCO {method}", "", 25 if method == "IASSA" else "",
                    *(f"{row[m]:.8g}" for m in METRICS), ""])
  with open(os.path.join(workdir, "pairs.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(pairs_rows[0]))
    w.writeheader()
    w.writerows(pairs_rows)


def save_figure(path: str, images, gts, rows: Sequence[tuple[str, np.ndarray]],
                titles: Sequence[str], row_images: Sequence[int]) -> str:
  """A grid PNG like the paper's Fig. 5: per row the image, its GT mask, then map overlays.

  Args:
    path: Output ``.png``.
    images: float32[N, H, W, 3] images (any range).
    gts: bool[N, H, W] the explained class mask of each image.
    rows: ``(row label, maps float[M, H, W])`` per row.
    titles: ``M`` column titles of the maps.
    row_images: For each row, the index into ``images``/``gts``.

  Returns:
    The path written.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  from rise_jax import viz

  if not rows:
    raise ValueError("save_figure needs at least one row")
  ncol = 2 + len(titles)
  panel, label_w, title_h = 1.3, 1.6, 0.3
  fig = Figure(figsize=(label_w + panel * ncol, title_h + panel * len(rows)), dpi=100)
  width, height = fig.get_size_inches()
  for r, ((label, maps), i) in enumerate(zip(rows, row_images)):
    if len(maps) != len(titles):
      raise ValueError(f"row {label!r} has {len(maps)} maps for {len(titles)} titles")
    panels = [viz.display_image(images[i]), np.asarray(gts[i], np.float32)]
    panels += [viz.overlay(images[i], m) for m in maps]
    y = 1.0 - (title_h + panel * (r + 1)) / height
    fig.text(0.5 * label_w / width, y + 0.5 * panel / height, label, ha="center",
             va="center", fontsize=7, wrap=True)
    for c, img in enumerate(panels):
      ax = fig.add_axes(((label_w + panel * c) / width, y, panel / width, panel / height))
      ax.imshow(img, interpolation="nearest", cmap="gray" if c == 1 else None, vmin=0, vmax=1)
      ax.set_axis_off()
      if r == 0:
        fig.text((label_w + panel * (c + 0.5)) / width, 1.0 - 0.5 * title_h / height,
                 (["image", "GT", *titles])[c], ha="center", va="center", fontsize=8)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png", dpi=100)
  return path


def _explanandum(config, workdir: str) -> tuple[Callable, Any, list[str] | None, dict]:
  """``(apply_fn, variables, class_names, info)`` of the config's frozen classifier."""
  e, d = config.explanandum, config.data
  if e.source == "train":
    from rise_jax.data import synthetic
    from rise_jax.train import classifier

    c = e.classifier
    if d.name != "synthetic":
      raise ValueError(f"explanandum.source='train' trains the synthetic classifier; for "
                       f"data.name={d.name!r} set explanandum.source='registry' with "
                       "explanandum.arch and explanandum.weights (fine-tuned multi-label weights)")
    if (c.data.image_size, c.data.num_classes) != (d.image_size, d.num_classes):
      raise ValueError(
          f"data.image_size/num_classes ({d.image_size}, {d.num_classes}) must match the "
          f"classifier's ({c.data.image_size}, {c.data.num_classes})")
    out = classifier.train_and_evaluate(c, e.get("classifier_dir") or
                                        os.path.join(workdir, "classifier"))
    return (out["module"].apply, out["variables"], list(synthetic.CLASS_NAMES[:d.num_classes]),
            {"source": "train", "test_map": out["test_map"]})
  if e.source == "registry":
    from rise_jax.models import registry

    clf = registry.load_explanandum(e.arch, e.weights, image_size=d.image_size,
                                    num_classes=d.num_classes)
    return clf.module.apply, clf.variables, None, {"source": "registry", "arch": e.arch,
                                                    "weights": e.weights}
  raise ValueError(f"explanandum.source must be 'train' or 'registry', got {e.source!r}")


def load_test(config) -> tuple[dict, list[str] | None]:
  """The test split ``{"image", "label", "segmentation"}`` of the config and its class names.

  Synthetic: :func:`rise_jax.data.synthetic.make` (``data.num_test`` images). COCO: the
  instances file ``data.coco_annotations`` with the image folder ``data.coco_images`` (the
  paper: ``instances_val2014.json`` + ``val2014/``; needs ``pycocotools``). VOC: the
  segmentation list ``data.test_split`` of the VOCdevkit ``data.voc_root``. Real images are
  resized to ``data.image_size`` with ImageNet normalisation; ``data.max_test`` caps them.
  """
  d = config.data
  if d.name == "synthetic":
    from rise_jax.data import synthetic

    test = synthetic.make("test", d.num_test, seed=config.seed, image_size=d.image_size,
                          num_classes=d.num_classes)
    return test, list(synthetic.CLASS_NAMES[:d.num_classes])
  from rise_jax.data import loaders

  if d.name == "coco":
    from rise_jax.data import coco

    if not d.get("coco_annotations") or not d.get("coco_images"):
      raise ValueError("data.name='coco' needs data.coco_annotations (an instances JSON, e.g. "
                       "annotations/instances_val2014.json) and data.coco_images (its image "
                       "folder, e.g. val2014/); pycocotools must be installed")
    examples, names = coco.load_segmentation(d.coco_annotations, d.coco_images), coco.CLASS_NAMES
  elif d.name == "voc":
    from rise_jax.data import voc

    if not d.get("voc_root"):
      raise ValueError("data.name='voc' needs data.voc_root (the VOCdevkit folder)")
    examples = voc.load_segmentation(d.voc_root, d.get("test_split") or "test",
                                     annotations=False)
    names = voc.CLASS_NAMES
  else:
    raise ValueError(f"data.name must be 'synthetic', 'coco' or 'voc', got {d.name!r}")
  if len(names) != d.num_classes:
    raise ValueError(f"data.num_classes must be {len(names)} for {d.name}, got {d.num_classes}")
  test = loaders.to_arrays(examples, size=d.image_size, num_classes=d.num_classes,
                           limit=d.get("max_test"), segmentation=True, desc=f"{d.name} test",
                           progress=config.progress)
  return test, list(names)


def _black_box(apply_fn: Callable, variables, output: str) -> Callable[[jax.Array], jax.Array]:
  if output not in OUTPUTS:
    raise ValueError(f"explanandum.output must be one of {OUTPUTS}, got {output!r}")
  act = {"sigmoid": jax.nn.sigmoid, "softmax": lambda z: jax.nn.softmax(z, axis=-1),
         "logits": lambda z: z}[output]
  return jax.jit(lambda x: act(apply_fn(variables, x)[0].astype(jnp.float32)))


def _rise_maps(probs_fn, images: np.ndarray, pair_img: np.ndarray, pair_cls: np.ndarray, r,
               progress: bool) -> tuple[np.ndarray, float]:
  """RISE map of every pair ``float32[P, H, W]`` and seconds per image (compile excluded)."""
  from rise_jax.rise import rise

  needed = np.unique(pair_img)
  maps, times = {}, []
  for i in tqdm.tqdm(needed, desc="RISE", disable=not progress, unit="img"):
    start = time.perf_counter()
    m = rise(probs_fn, images[i], jax.random.fold_in(jax.random.key(r.seed), int(i)),
             num_masks=r.num_masks, grid_size=r.grid_size, p1=r.p1, batch_size=r.batch_size)
    maps[int(i)] = np.asarray(m)
    times.append(time.perf_counter() - start)
  out = np.stack([maps[int(i)][c] for i, c in zip(pair_img, pair_cls)])
  return out, float(np.mean(times[1:] if len(times) > 1 else times))


def _iassa_maps(probs_fn, feature_fn, images: np.ndarray, pair_img: np.ndarray,
                pair_cls: np.ndarray, settings: dict, ic, mix: str, progress: bool
                ) -> tuple[np.ndarray, dict]:
  """IASSA records ``float32[P, R, H, W]`` of every pair for one ``mix``, with run stats."""
  from rise_jax.iassa import iassa

  records, iters, windows, times = [], [], [], []
  for i, c in tqdm.tqdm(list(zip(pair_img, pair_cls)), desc=f"IASSA mix={mix}",
                        disable=not progress, unit="pair"):
    start = time.perf_counter()
    res = iassa(probs_fn, feature_fn, images[i], class_id=int(c), window=settings["window"],
                stride=settings["stride"], window_step=settings["window_step"],
                stride_step=settings["stride_step"], beta=ic.beta, threshold=ic.threshold,
                max_iters=ic.max_iters, mix=mix, attention_scale=ic.attention_scale,
                batch_size=ic.batch_size, record=tuple(ic.record), substrate=ic.substrate)
    records.append(np.asarray(res.records))
    times.append(time.perf_counter() - start)
    iters.append(int(res.iterations))
    windows.append(np.asarray(res.windows))
  windows = np.stack(windows)
  stats = {"iterations_mean": float(np.mean(iters)),
           "windows_per_pair": float(windows.sum(1).mean()),
           "windows_per_iteration": windows.mean(0).tolist(),
           "seconds_per_pair": float(np.mean(times[1:] if len(times) > 1 else times)),
           "first_pair_seconds": float(times[0])}
  return np.stack(records), stats


def _check_config(config) -> None:
  ev, ic = config.eval, config.iassa
  if ev.classes not in CLASSES:
    raise ValueError(f"eval.classes must be one of {CLASSES}, got {ev.classes!r}")
  rec = tuple(ic.record)
  if not rec or any(r < 0 or r > ic.max_iters for r in rec):
    raise ValueError(f"iassa.record must be non-empty iterations in [0, max_iters="
                     f"{ic.max_iters}], got {rec}")
  if not ic.mixes or any(m not in ("paper", "code") for m in ic.mixes):
    raise ValueError(f"iassa.mixes must be a non-empty subset of ('paper', 'code'), got "
                     f"{tuple(ic.mixes)}")


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs the IASSA Table 1 evaluation (see the module docstring); reruns reuse the classifier.

  Args:
    config: An ``ml_collections`` config of ``configs/iassa.py``.
    workdir: Run folder.

  Returns:
    The results dict written to ``workdir/results.json``: ``table`` (``{"image"|"pixel":
    {row: {metric: value}}}``, rows ``"RISE"`` and ``"IASSA mix=<mix> k=<k>"``),
    ``vs_rise`` (paired image-level differences), ``settings``, ``seconds``, ``iassa_runs``,
    ``best_mix``, ``paper_table1`` and more.
  """
  from rise_jax.iassa import stage_feature_fn

  _check_config(config)
  os.makedirs(workdir, exist_ok=True)
  progress = config.progress
  ev, ic, d = config.eval, config.iassa, config.data
  apply_fn, variables, class_names, clf_info = _explanandum(config, workdir)
  test, names = load_test(config)
  class_names = class_names or names
  images = np.asarray(test["image"], np.float32)
  size = images.shape[1]
  if images.shape[1:3] != (d.image_size, d.image_size):
    raise ValueError(f"test images must be {d.image_size}x{d.image_size}, got "
                     f"{list(images.shape[1:3])}")
  pair_img, pair_cls = select_pairs(test["label"], ev.classes)
  if not pair_img.size:
    raise ValueError("no test image has a present class: nothing to explain")
  seg = np.asarray(test["segmentation"], bool)
  gt = seg[pair_img, :, :, pair_cls]  # [P, H, W]
  pair_images = images[pair_img]

  s = scaled_iassa_settings(ic.window, ic.stride, ic.window_step, ic.stride_step, size,
                            ev.paper_size, ic.get("scale"))
  step = ev.get("step") or max(1, _round_half_up(PAPER_SIZE * size / ev.paper_size))
  tolerance = float(ev.tolerance) * size / ev.paper_size
  probs_fn = _black_box(apply_fn, variables, config.explanandum.output)
  explain_fn = _black_box(apply_fn, variables, config.explanandum.explain_output)
  feature_fn = stage_feature_fn(apply_fn, variables, tuple(ic.stages))

  maps: dict[str, np.ndarray] = {}
  rows: dict[str, tuple[str, str | None, int | None]] = {}
  seconds, runs, records = {}, {}, {}
  maps["RISE"], seconds["RISE_per_image"] = _rise_maps(explain_fn, images, pair_img, pair_cls,
                                                       config.rise, progress)
  rows["RISE"] = ("RISE", None, None)
  for mix in ic.mixes:
    rec, runs[mix] = _iassa_maps(explain_fn, feature_fn, images, pair_img, pair_cls, s, ic, mix,
                                 progress)
    records[mix] = rec
    seconds[f"IASSA_{mix}_per_pair"] = runs[mix]["seconds_per_pair"]
    for j, k in enumerate(ic.record):
      name = row_name("IASSA", mix, int(k))
      maps[name], rows[name] = rec[:, j], ("IASSA", mix, int(k))

  scores, table = {}, {"image": {}, "pixel": {}}
  # TorchRay's accumulator on the RISE maps: its centre baseline and difficult subset.
  game = pointing.PointingGame(int(d.num_classes), tolerance)
  for m, g, c, n in zip(maps["RISE"], gt, pair_cls, np.asarray(test["label"])[pair_img].sum(1)):
    game.update(m, g, int(c), num_present=int(n))
  for name in tqdm.tqdm(maps, desc="metrics", disable=not progress, unit="row"):
    scores[name] = score_maps(probs_fn, pair_images, maps[name], gt, pair_cls, step=step,
                              tolerance=tolerance, threshold=ev.threshold,
                              deletion_substrate=ev.deletion_substrate,
                              insertion_substrate=ev.insertion_substrate,
                              batch_size=ev.batch_size, chunk=ev.chunk)
    summary = summarise(scores[name], pair_cls)
    table["image"][name], table["pixel"][name] = summary["image"], summary["pixel"]

  vs_rise = {name: {m: paired_difference(scores[name][m], scores["RISE"][m])
                    for m in METRICS} for name in maps if name != "RISE"}
  mix_score = {mix: float(np.mean([table["image"][row_name("IASSA", mix, int(k))][m]
                                   for k in ic.record for m in ("f1", "iou")]))
               for mix in ic.mixes}
  best_mix = max(mix_score, key=mix_score.get) if len(mix_score) > 1 else None

  results = {
      "table": table, "vs_rise": vs_rise, "rows": rows, "best_mix": best_mix,
      "mix_f1_iou_mean": mix_score,
      "pointing_centre": game.results()["centre"]["all"]["mean"],
      "pointing_difficult": {"RISE": game.results()["difficult"]["mean"],
                             "centre": game.results()["centre"]["difficult"]["mean"]},
      "num_images": int(np.unique(pair_img).size), "num_pairs": int(pair_img.size),
      "seconds": seconds, "iassa_runs": runs, "explanandum": clf_info,
      "class_names": class_names, "paper_table1": PAPER_TABLE1,
      "settings": {
          "dataset": d.name, "image_size": int(size), "classes": ev.classes,
          "output": config.explanandum.output,
          "explain_output": config.explanandum.explain_output, "paper_size": int(ev.paper_size),
          "step": int(step), "tolerance": tolerance, "tolerance_at_paper_size": float(ev.tolerance),
          "threshold": float(ev.threshold), "deletion_substrate": str(ev.deletion_substrate),
          "insertion_substrate": str(ev.insertion_substrate),
          "rise": {k: config.rise[k] for k in ("num_masks", "grid_size", "p1", "seed")},
          "iassa": {**s, "paper": {"window": ic.window, "stride": ic.stride,
                                   "window_step": ic.window_step,
                                   "stride_step": ic.stride_step},
                    "beta": ic.beta, "threshold": ic.threshold, "max_iters": ic.max_iters,
                    "record": [int(k) for k in ic.record], "mixes": list(ic.mixes),
                    "attention_scale": ic.attention_scale, "stages": list(ic.stages),
                    "substrate": str(ic.substrate)},
      },
  }
  pairs_rows = []
  for name, sc in scores.items():
    method, mix, k = rows[name]
    for p in range(pair_img.size):
      pairs_rows.append({"image": int(pair_img[p]), "class": int(pair_cls[p]),
                         "method": method, "mix": mix or "", "k": "" if k is None else k,
                         **{m: float(sc[m][p]) for m in METRICS + ("pointing_strict",)},
                         "area": int(sc["area"][p])})
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(workdir, "tables.md"), "w") as f:
    f.write(tables_markdown(results))
  _write_csvs(results, pairs_rows, workdir)
  fig_pairs = list(range(min(int(ev.figure_pairs), pair_img.size)))
  if fig_pairs:
    fig_rows, fig_idx = [], []
    for p in fig_pairs:
      cname = class_names[pair_cls[p]] if class_names else str(pair_cls[p])
      for mix in ic.mixes:
        fig_rows.append((f"image {pair_img[p]}, {cname}, mix={mix}",
                         np.concatenate([maps["RISE"][p][None], records[mix][p]])))
        fig_idx.append(p)
    save_figure(os.path.join(workdir, "iassa_maps.png"), pair_images, gt, fig_rows,
                ["RISE", *(f"k = {int(k)}" for k in ic.record)], fig_idx)
  return results
