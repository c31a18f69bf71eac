"""Segmentation RISE on the trained Explainer: the main job's ``segmentation_rise`` stage.

The Explainer is a DeepLabV3 whose sigmoid outputs are per-pixel class scores, i.e. a small
segmentation model of the synthetic scenes. For each of the first ``config.num_images`` test
images and each present class ``c`` whose Explainer segment (pixels with score > ``threshold``)
is not empty, the segment's score is explained with :func:`rise_jax.segmentation_rise` under
each merge in ``config.merges``. Each merged map is scored against the ground-truth object of
``c``: the pointing game (tolerance 15 px at 224, scaled), with the image centre as the
baseline, and the fraction of the map's mass above its minimum inside the object (beside the
object's area fraction, which a constant map would score).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from experiments.tasks import evidence, explainer, run_folder
from rise_jax import viz
from rise_jax.data import synthetic
from rise_jax.metrics import pointing
from rise_jax.rise import segmentation_rise


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs the stage in ``workdir`` (reused when finished with the same config).

  Args:
    config: ``segmentation_rise`` section of ``configs/default.py`` with the upstream Explainer
      stage's config as ``config.explainer`` (its ``workdir`` holds the finished Explainer), so
      that the fingerprint covers the Explainer and its classifier.
    workdir: This stage's run folder.

  Returns:
    The results dict written to ``workdir/results.json``.
  """
  if config.num_images < 1 or not 0 < config.threshold < 1:
    raise ValueError(f"segmentation_rise.num_images must be >= 1 and threshold in (0, 1), got "
                     f"{config.num_images} and {config.threshold}")
  return run_folder.once(workdir, config, lambda: _evaluate(config, workdir))


def _mass_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
  """Fraction of the saliency mass above the map's minimum inside ``mask`` (0 for a constant)."""
  s = saliency - saliency.min()
  total = s.sum()
  return float((s * mask).sum() / total) if total > 0 else 0.0


def _evaluate(config, workdir: str) -> dict:
  run = explainer.trained_explainer(config.explainer, config.explainer.workdir)
  module, variables = run["module"], run["fit"]["variables"]

  @jax.jit
  def seg_fn(x):  # float32[b, H, W, 3] -> per-pixel class scores float32[b, H, W, C]
    logits, _ = module.apply(variables, x, train=False)
    return jax.nn.sigmoid(logits)

  test, class_names = run["test"], run["explanandum"][2]
  images = np.asarray(test["image"], np.float32)
  tolerance = 15.0 * images.shape[1] / 224.0
  rows, figures = [], []
  start = time.perf_counter()
  for i in tqdm.trange(min(int(config.num_images), len(images)), desc="segmentation RISE",
                       disable=not config.progress):
    panels, titles = _explain_image(config, seg_fn, test, i, tolerance, class_names, rows)
    if panels and len(figures) < config.figure_images:
      figures.append(viz.save_overlays(os.path.join(workdir, "figures", f"image_{i:03d}.png"),
                                       synthetic.denormalize(images[i]), np.stack(panels),
                                       titles))
  seconds = time.perf_counter() - start
  if not rows:
    raise ValueError("the Explainer segments no present class in the explained test images "
                     f"(threshold {config.threshold}); nothing to explain")
  results = _summarise(config, rows, tolerance, seconds)
  results["figures"] = [os.path.relpath(p, workdir) for p in figures]
  run_folder.write_text(os.path.join(workdir, "tables.md"), tables_markdown(results))
  return results


def _explain_image(config, seg_fn, test: dict, i: int, tolerance: float, class_names,
                   rows: list) -> tuple[list, list]:
  """Rows (appended to ``rows``) and figure panels of image ``i``'s segments."""
  image = np.asarray(test["image"][i], np.float32)
  scores = np.asarray(seg_fn(jnp.asarray(image[None])))[0]
  key = jax.random.fold_in(jax.random.key(config.seed), i)
  panels, titles = [], []
  for c in np.flatnonzero(np.asarray(test["label"][i]) > 0):
    region = scores[..., c] > config.threshold
    if not region.any():
      continue
    gt = np.asarray(test["segmentation"][i, :, :, c], bool)
    row = {"image": int(i), "class": int(c), "segment_area": float(region.mean()),
           "object_area": float(gt.mean()),
           "segment_iou": float((region & gt).sum() / max((region | gt).sum(), 1)),
           "centre_hit": pointing.centre_hit(gt, gt.shape, tolerance=tolerance)}
    panels.append(region.astype(np.float32))
    titles.append(f"segment {class_names[c] if class_names else c}")
    for merge in config.merges:
      m = np.asarray(segmentation_rise(
          seg_fn, image, key, target_class=int(c), region=region, merge=merge,
          num_masks=config.num_masks, grid_size=config.grid_size, p1=config.p1,
          batch_size=config.batch_size))
      row[f"{merge}_hit"] = int(pointing.pointing_game(m, gt, tolerance=tolerance))
      row[f"{merge}_mass_in_object"] = _mass_in_mask(m, gt)
      panels.append(m)
      titles.append(f"merge={merge}")
    rows.append(row)
  return panels, titles


def _summarise(config, rows: list[dict], tolerance: float, seconds: float) -> dict:
  def mean(key: str) -> float:
    return float(np.mean([r[key] for r in rows]))

  table = {merge: {"pointing": mean(f"{merge}_hit"),
                   "mass_in_object": mean(f"{merge}_mass_in_object")}
           for merge in config.merges}
  table["centre"] = {"pointing": mean("centre_hit"), "mass_in_object": mean("object_area")}
  image = np.asarray([r["image"] for r in rows])
  column = {k: np.asarray([r[k] for r in rows], np.float64) for k in rows[0] if k != "image"}
  ci = {merge: {"pointing": evidence.ci(column[f"{merge}_hit"], image),
                "mass_in_object": evidence.ci(column[f"{merge}_mass_in_object"], image)}
        for merge in config.merges}
  ci["centre"] = {"pointing": evidence.ci(column["centre_hit"], image),
                  "mass_in_object": evidence.ci(column["object_area"], image)}
  comparisons = [evidence.compare(
      f"Segmentation RISE (merge={merge}) pointing above the centre baseline",
      column[f"{merge}_hit"], column["centre_hit"], direction="greater",
      names=(merge, "centre"), metric="pointing", groups=image) for merge in config.merges]
  return {"table": table, "ci": ci, "comparisons": comparisons, "num_segments": len(rows),
          "segment_iou": mean("segment_iou"),
          "tolerance": tolerance, "seconds_per_segment": seconds / len(rows), "rows": rows,
          "settings": {k: config[k] for k in ("num_masks", "grid_size", "p1", "threshold",
                                              "num_images", "seed")}
          | {"merges": list(config.merges)}}


def tables_markdown(results: dict) -> str:
  """The Segmentation RISE table of :func:`train_and_evaluate`'s results."""
  lines = ["# Segmentation RISE on the Explainer (DeepLabV3) segments", "",
           f"{results['num_segments']} segments (one per present class the Explainer segments; "
           f"segment IoU with the object {results['segment_iou']:.3f}). Pointing game at "
           f"{results['tolerance']:.1f} px; mass in object = fraction of the map's mass above "
           "its minimum inside the ground-truth object (the centre row gives the object's area "
           "fraction, what a constant map scores). The RISE repository reports no numbers for "
           "this mode. Mean [95% bootstrap CI over images].", "",
           "| merge | pointing ↑ | mass in object ↑ |", "|---|---|---|"]
  for name, row in results["table"].items():
    label = "centre / constant baseline" if name == "centre" else name
    c = results.get("ci", {}).get(name)
    cells = ((evidence.fmt(c["pointing"]), evidence.fmt(c["mass_in_object"])) if c else
             (f"{row['pointing']:.3f}", f"{row['mass_in_object']:.3f}"))
    lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
  if results.get("comparisons"):
    lines += ["", *evidence.comparisons_markdown(results["comparisons"])]
  return "\n".join(lines) + "\n"


