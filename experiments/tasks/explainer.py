"""NN-Explainer experiment: train (or reuse) the explanandum and the Explainer, then score them.

:func:`train_and_evaluate` runs one config of ``configs/explainer*.py`` end to end:

1. The explanandum (frozen classifier): trained on the synthetic benchmark by
   :func:`rise_jax.train.classifier.train_and_evaluate` (cached in ``workdir/classifier``, or
   ``explanandum.classifier_dir`` when set), or
   for the paper settings a registry architecture whose fine-tuned multi-label weights are
   given as a file (``explanandum.weights``; see ``experiments/convert_weights.py`` and
   :func:`rise_jax.train.classifier.fit`).
2. The Explainer (:func:`rise_jax.explainer.train.train_explainer`, resumable in
   ``workdir/explainer``).
3. On the test split, the Table 2-style comparison (Stalder et al.): Acc, IoU, Sal and MAE of
   the Explainer, RISE and Grad-CAM, with the sanity rows "0", "0.5", "1", "G.T."; and the
   Table 1-style class-specific table of every method.

RISE and Grad-CAM maps become masks by min-max normalising each class map to ``[0, 1]``
(a constant map becomes 0); all methods' masks are aggregated as the Explainer's
(``max`` over the image's true classes, :func:`rise_jax.explainer.losses.aggregate_masks`).
Results: ``workdir/results.json`` and ``workdir/tables.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from experiments.tasks import datasets, evidence, explanandum, run_folder
from rise_jax import viz
from rise_jax.baselines import gradcam
from rise_jax.data import synthetic
from rise_jax.explainer import losses
from rise_jax.explainer.train import create_explainer, explain, train_explainer
from rise_jax.metrics.class_specific import class_specific_table
from rise_jax.metrics.explainer import explainer_scores, sanity_baselines
from rise_jax.models import common
from rise_jax.rise import rise

# Stalder et al., Table 2 (VOC-2007 test, VGG16), Acc / IoU / Sal / MAE in percent (Sal raw).
PAPER_TABLE2 = {
    "Explainer": {"acc": 74.60, "iou": 38.04, "sal": -1.32, "mae": 25.40},
    "RISE": {"acc": 56.98, "iou": 28.62, "sal": -0.82, "mae": 43.02},
    "Grad-CAM": {"acc": 70.53, "iou": 28.78, "sal": -1.41, "mae": 29.47},
    "0.5": {"acc": 50.00, "iou": 23.42, "sal": -0.53, "mae": 50.00},
}


def normalise_maps(maps: Any) -> np.ndarray:
  """Min-max normalises each map of ``float[B, C, H, W]`` to ``[0, 1]`` (constant maps -> 0)."""
  m = np.asarray(maps, np.float32)
  lo = m.min(axis=(-2, -1), keepdims=True)
  span = m.max(axis=(-2, -1), keepdims=True) - lo
  return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def _batched(fn: Callable, images: np.ndarray, batch_size: int, desc: str,
             progress: bool) -> np.ndarray:
  out = []
  for i in tqdm.trange(0, len(images), batch_size, desc=desc, disable=not progress):
    out.append(np.asarray(fn(jnp.asarray(images[i:i + batch_size]))))
  return np.concatenate(out)


def method_masks(config, explanandum, explainer, test: dict, progress: bool = True,
                 probs_fn: Callable | None = None) -> dict[str, np.ndarray]:
  """Class masks ``float32[B, C, H, W]`` in ``[0, 1]`` of every compared method on ``test``.

  Args:
    config: The experiment config (``eval`` section: ``methods``, ``rise``, ``gradcam_layer``,
      ``batch_size``).
    explanandum: ``(apply_fn, variables)`` of the frozen classifier.
    explainer: ``(module, variables)`` of the trained Explainer.
    test: ``{"image": float32[B, H, W, 3], ...}``.
    progress: Show progress bars.
    probs_fn: RISE's black box (default: the explanandum's softmax).

  Returns:
    ``{method name: masks}`` for the methods in ``config.eval.methods``.
  """
  apply_fn, variables = explanandum
  module, expl_vars = explainer
  images = np.asarray(test["image"], np.float32)
  ev = config.eval
  out = {}
  for name in ev.methods:
    start = time.perf_counter()
    if name == "Explainer":
      out[name] = _batched(functools.partial(explain, module, expl_vars), images, ev.batch_size,
                           "Explainer masks", progress)
    elif name == "RISE":
      probs = probs_fn or common.black_box(apply_fn, variables, "softmax")
      r = ev.rise
      maps = [np.asarray(rise(probs, images[i], jax.random.fold_in(jax.random.key(r.seed), i),
                              num_masks=r.num_masks, grid_size=r.grid_size, p1=r.p1,
                              batch_size=r.batch_size))
              for i in tqdm.trange(len(images), desc="RISE maps", disable=not progress)]
      out[name] = normalise_maps(np.stack(maps))
    elif name == "Grad-CAM":
      out[name] = normalise_maps(_batched(
          lambda x: gradcam(apply_fn, variables, x, layer=ev.gradcam_layer), images,
          ev.batch_size, "Grad-CAM maps", progress))
    else:
      raise ValueError(f"eval.methods must be among ('Explainer', 'RISE', 'Grad-CAM'), got "
                       f"{name!r}")
    out[name + "_seconds_per_image"] = (time.perf_counter() - start) / len(images)
  return out


def score_methods(probs_fn: Callable, test: dict, masks: dict[str, np.ndarray],
                  batch_size: int = 64) -> dict[str, Any]:
  """Table 2 (Acc/IoU/Sal/MAE with sanity rows) and Table 1 (class-specific) of each method.

  Args:
    probs_fn: ``float32[b, H, W, 3] -> softmax probabilities float32[b, C]``.
    test: ``{"image": float32[B, H, W, 3], "label": multi-hot [B, C], "segmentation":
      bool[B, H, W, C]}``; images without a true class are left out (Sal needs one).
    masks: ``{method: float32[B, C, H, W]}`` (keys ending in ``_seconds_per_image`` are
      carried over as timings).
    batch_size: Masked images per ``probs_fn`` call.

  Returns:
    ``{"table2": {row: {"acc", "iou", "sal", "mae"}}, "class_specific": {method: {"table",
    "diagonal_mean", "off_diagonal_mean", "none_mean"}}, "seconds_per_image": {...},
    "num_images"}``.
  """
  labels = np.asarray(test["label"]) > 0
  keep = labels.any(axis=1)
  images = np.asarray(test["image"], np.float32)[keep]
  labels = labels[keep]
  gt = (np.asarray(test["segmentation"], bool)[keep] & labels[:, None, None, :]).any(-1)
  table2, specific, timing, per_image = {}, {}, {}, {}
  for name, value in masks.items():
    if name.endswith("_seconds_per_image"):
      timing[name[:-len("_seconds_per_image")]] = value
      continue
    class_masks = np.asarray(value, np.float32)[keep]
    m, _ = losses.aggregate_masks(jnp.asarray(class_masks), jnp.asarray(labels, jnp.float32))
    m = np.asarray(m)
    probs = _batched(probs_fn, images * m[..., None], batch_size, "", False)
    scores = explainer_scores(m, gt, probs, labels)
    per_image[name] = {k: np.asarray(v) for k, v in scores.pop("per_image").items()}
    table2[name] = scores
    cs = class_specific_table(probs_fn, images, class_masks, labels, batch_size=batch_size)
    specific[name] = {"table": np.asarray(cs["table"]).tolist(),
                      "diagonal_mean": float(cs["diagonal_mean"]),
                      "off_diagonal_mean": float(cs["off_diagonal_mean"]),
                      "none_mean": float(cs["none_mean"])}
    gap = cs["per_image"]["diagonal"] - cs["per_image"]["off_diagonal"]
    specific[name]["gap_ci"] = evidence.ci(gap[np.isfinite(gap)])
  table2.update(sanity_baselines(probs_fn, images, gt, labels))
  ci, comparisons = _evidence(per_image, specific)
  return {"table2": table2, "table2_ci": ci, "comparisons": comparisons,
          "class_specific": specific, "seconds_per_image": timing,
          "num_images": int(keep.sum())}


_LABELS = {"acc": "Acc", "iou": "IoU", "mae": "MAE"}


def _evidence(per_image: dict, specific: dict) -> tuple[dict, list[dict]]:
  """CIs over images of Table 2, and Stalder's orderings on paired per-image differences:
  the Explainer above RISE and Grad-CAM on Acc and IoU, below them on MAE; its class-specific
  gap (diagonal minus off-diagonal) above 0.3."""
  ci = {name: {k: evidence.ci(v) for k, v in vals.items()} for name, vals in per_image.items()}
  comparisons = []
  ours = per_image.get("Explainer")
  for other in ("RISE", "Grad-CAM"):
    if ours is None or other not in per_image:
      continue
    for m, direction, word in (("acc", "greater", "above"), ("iou", "greater", "above"),
                               ("mae", "less", "below")):
      comparisons.append(evidence.compare(
          f"Explainer {_LABELS[m]} {word} {other}'s (Stalder Tab. 2)",
          ours[m], per_image[other][m], direction=direction, names=("Explainer", other),
          metric=m))
  gap = specific.get("Explainer", {}).get("gap_ci")
  if gap is not None and gap["n"]:
    verdict = ("holds" if gap["low"] > 0.3 else "reversed" if gap["high"] < 0.3
               else "not resolved")
    comparisons.append({
        "claim": "Explainer class-specific: diagonal minus off-diagonal above 0.3 (Stalder "
                 "Tab. 1)", "a": "diagonal", "b": "off-diagonal + 0.3", "metric": "probability",
        "direction": "greater", "difference": gap["mean"] - 0.3, "low": gap["low"] - 0.3,
        "high": gap["high"] - 0.3, "num_pairs": gap["n"], "num_images": gap["n"],
        "verdict": verdict})
  return ci, comparisons


def tables_markdown(results: dict, class_names: list[str] | None = None) -> str:
  """Markdown of Table 2 (ours beside the paper's VOC-VGG16 numbers) and Table 1 per method."""
  lines = ["## Explainer metrics (Stalder et al. Table 2 analogue)", "",
           f"Test images: {results['num_images']}. Acc, IoU, MAE in %; Sal lower is better. "
           "Paper: VOC-2007 test, VGG16.", "",
           "| method | Acc ↑ | IoU ↑ | Sal ↓ | MAE ↓ | paper Acc | paper IoU | paper Sal | "
           "paper MAE |", "|---|---|---|---|---|---|---|---|---|"]
  for name, s in results["table2"].items():
    p = PAPER_TABLE2.get(name, {})
    paper = " | ".join(f"{p[k]:.2f}" if k in p else "" for k in ("acc", "iou", "sal", "mae"))
    lines.append(f"| {name} | {100 * s['acc']:.2f} | {100 * s['iou']:.2f} | {s['sal']:.3f} | "
                 f"{100 * s['mae']:.2f} | {paper} |")
  if results.get("table2_ci"):
    lines += ["", "Mean [95% bootstrap CI over images] (Acc, IoU, MAE in %):", "",
              "| method | Acc ↑ | IoU ↑ | Sal ↓ | MAE ↓ |", "|---|---|---|---|---|"]
    for name, c in results["table2_ci"].items():
      lines.append(f"| {name} | {evidence.fmt(c['acc'], 2, 100)} | {evidence.fmt(c['iou'], 2, 100)}"
                   f" | {evidence.fmt(c['sal'], 3)} | {evidence.fmt(c['mae'], 2, 100)} |")
  if results.get("comparisons"):
    lines += ["", "### Stalder et al.'s orderings, decided on paired per-image differences", "",
              *evidence.comparisons_markdown(results["comparisons"])]
  for name, cs in results["class_specific"].items():
    table = np.asarray(cs["table"], np.float64)
    c = table.shape[0]
    names = class_names or [str(i) for i in range(c)]
    lines += ["", f"## Class-specific masking, {name} (Stalder et al. Table 1 analogue)", "",
              f"Rows: target class; columns: mask class. Diagonal mean "
              f"{cs['diagonal_mean']:.3f}, off-diagonal {cs['off_diagonal_mean']:.3f}, "
              f"none {cs['none_mean']:.3f}; per image with two or more classes, diagonal minus "
              f"off-diagonal {evidence.fmt(cs.get('gap_ci'), 3)}.", "",
              "| target \\ mask | " + " | ".join(names) + " | none |",
              "|---" * (c + 2) + "|"]
    for i in range(c):
      cells = " | ".join("" if np.isnan(v) else f"{v:.3f}" for v in table[i])
      lines.append(f"| {names[i]} | {cells} |")
  if results.get("seconds_per_image"):
    lines += ["", "Seconds per image: " + ", ".join(
        f"{k} {v:.4f}" for k, v in results["seconds_per_image"].items())]
  return "\n".join(lines) + "\n"


def _denormalize(config) -> Callable | None:
  """Display colours of the config's dataset (synthetic only; else min-max per image)."""
  return synthetic.denormalize if config.data.name == "synthetic" else None


def coefficients(config) -> losses.Coefficients:
  """The config's loss coefficients: a named preset, optionally with fields overridden."""
  c = config.explainer
  coeffs = losses.preset(c.preset)
  overrides = {k: v for k, v in c.get("coefficients", {}).items() if v is not None}
  return dataclasses.replace(coeffs, **overrides) if overrides else coeffs


def trained_explainer(config, workdir: str) -> dict:
  """Trains the config's Explainer in ``workdir/explainer`` (or reuses the finished run there).

  Args:
    config: An ``ml_collections`` config of ``configs/explainer*.py``.
    workdir: Run folder.

  Returns:
    ``{"explanandum": (apply_fn, variables, class_names), "module": the Explainer,
    "fit": train_explainer's result (``"variables"``, ``"history"``, ...), "test": the test
    split}``.
  """
  os.makedirs(workdir, exist_ok=True)
  model = explanandum.from_config(config, workdir)
  apply_fn, variables, class_names = model.apply_fn, model.variables, model.class_names
  train, val, test = datasets.load_splits(config)
  c = config.explainer
  module = create_explainer(train["label"].shape[1], backbone=c.backbone, width=c.width,
                            output_stride=c.output_stride, stem=c.get("stem", "imagenet"))
  fit = train_explainer(apply_fn, variables, train, val, coeffs=coefficients(config),
                        epochs=c.epochs, batch_size=c.batch_size,
                        learning_rate=c.get("learning_rate"), seed=config.seed,
                        patience=c.patience, workdir=os.path.join(workdir, "explainer"),
                        module=module, progress=config.progress)
  return {"explanandum": (apply_fn, variables, class_names), "module": module, "fit": fit,
          "test": test}


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs one Explainer experiment (see the module docstring); reruns reuse finished stages.

  Args:
    config: An ``ml_collections`` config of ``configs/explainer*.py``.
    workdir: Run folder.

  Returns:
    The results dict written to ``workdir/results.json``.
  """
  return run_folder.once(workdir, config, lambda: _evaluate(config, workdir))


def _evaluate(config, workdir: str) -> dict:
  run = trained_explainer(config, workdir)
  apply_fn, variables, class_names = run["explanandum"]
  module, fit, test = run["module"], run["fit"], run["test"]
  probs_fn = common.black_box(apply_fn, variables, "softmax")
  masks = method_masks(config, (apply_fn, variables), (module, fit["variables"]), test,
                       config.progress, probs_fn)
  results = score_methods(probs_fn, test, masks, config.eval.batch_size)
  results["explainer_training"] = {"best_epoch": fit["best_epoch"],
                                   "stopped_early": fit["stopped_early"],
                                   "history": fit["history"]}
  results["class_names"] = class_names
  results["figures"] = [os.path.relpath(p, workdir) for p in viz.save_mask_figures(
      os.path.join(workdir, "figures"), test, masks, config.eval.get("figure_images", 4),
      _denormalize(config))]
  run_folder.write_text(os.path.join(workdir, "tables.md"), tables_markdown(results, class_names))
  return results
