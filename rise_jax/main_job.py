"""The main job: every method of the three papers on the synthetic benchmark, end to end.

``python -m experiments.main`` (``configs/default.py``) calls :func:`run`, which runs these
stages in order, each in its own subfolder of ``workdir``:

========================  ======================================================================
``classifier``            the explanandum: a small ResNet trained on the synthetic shapes
                          (:func:`rise_jax.train.classifier.train_and_evaluate`); every later
                          stage explains this one model (``explanandum.classifier_dir``)
``rise``                  RISE Table 1 (deletion / insertion AUC) and Table 2 (pointing game,
                          all / difficult, centre baseline) for RISE, Grad-CAM and occlusion
                          (:func:`rise_jax.rise_experiment.train_and_evaluate`)
``explainer``             NN-Explainer Tables 1-2 (class-specific masking; Acc / IoU / Sal / MAE
                          with the sanity rows) against RISE and Grad-CAM
                          (:func:`rise_jax.explainer.experiment.train_and_evaluate`)
``segmentation_rise``     Segmentation RISE (``mean`` and ``max`` merges) explaining the trained
                          Explainer, a DeepLabV3 that outputs per-pixel class scores
``iassa``                 IASSA Table 1 (image and pixel level) against RISE
                          (:func:`rise_jax.iassa_experiment.train_and_evaluate`)
``caption``               RISE for captioning: per-word maps of a small captioner, noun pointing
                          game (:func:`rise_jax.caption_experiment.train_and_evaluate`)
========================  ======================================================================

Then it writes ``tables.md`` (every stage's tables beside the papers' numbers, after a list of the
orderings the papers report and whether each holds here), ``results.json`` (headline numbers,
orderings, stage timings, figure paths), ``summary.csv`` (one row per headline number) and
``figures/training_curves.png``. Stage figures (overlays per method, deletion/insertion curves,
IASSA maps over iterations, Segmentation RISE maps) stay in their stage folders and are listed in
``results.json``.

Rerun reuse: a finished stage leaves ``<stage>/stage.json`` holding its config (JSON); a rerun
whose stage config is unchanged loads the stage's ``results.json`` instead of recomputing it. The
classifier, Explainer and captioner checkpoints are also reused (and a killed training run
resumes) by the stage functions themselves.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from rise_jax.fingerprint import config_fingerprint

STAGES = ("classifier", "rise", "explainer", "segmentation_rise", "iassa", "caption")
_NEEDS_EXPLAINER = ("segmentation_rise",)


def stage_configs(config: ml_collections.ConfigDict, workdir: str
                  ) -> dict[str, ml_collections.ConfigDict]:
  """Each stage's own config, with the shared classifier and the run's seed and progress.

  Args:
    config: The main job config (``configs/default.py``).
    workdir: The run folder.

  Returns:
    ``{stage: config}`` for the stages in ``config.stages``.

  Raises:
    ValueError: For an unknown stage name, or a stage listed before a stage it needs.
  """
  # "--config.stages=classifier,rise" arrives as ("classifier,rise",): split the entries.
  stages = tuple(s.strip() for entry in config.stages for s in str(entry).split(",") if s.strip())
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f"stages must be a subset of {STAGES}, got unknown {unknown}")
  if any(s in stages for s in _NEEDS_EXPLAINER) and "explainer" not in stages:
    raise ValueError("stage 'segmentation_rise' explains the trained Explainer: list "
                     "'explainer' in stages too")
  clf_dir = os.path.join(workdir, "classifier")
  out = {}
  for name in stages:
    if name == "classifier":
      c = ml_collections.ConfigDict(config.classifier.to_dict())
    elif name == "segmentation_rise":
      c = ml_collections.ConfigDict(config.segmentation_rise.to_dict())
    else:
      c = ml_collections.ConfigDict(config[name].to_dict())
      if "explanandum" in c:
        c.explanandum.classifier = ml_collections.ConfigDict(config.classifier.to_dict())
        c.explanandum.classifier_dir = clf_dir
    if "progress" in c:
      c.progress = config.progress
    c.workdir = os.path.join(workdir, name)
    out[name] = c
  return out


def _stage_cached(folder: str, config: ml_collections.ConfigDict) -> dict | None:
  """The stage's saved results when it finished with the same config, else ``None``."""
  try:
    with open(os.path.join(folder, "stage.json")) as f:
      saved = json.load(f)
    with open(os.path.join(folder, "results.json")) as f:
      results = json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None
  return results if saved.get("config") == config_fingerprint(config)[0] else None


def _mark_done(folder: str, config: ml_collections.ConfigDict, seconds: float) -> None:
  with open(os.path.join(folder, "stage.json"), "w") as f:
    json.dump({"config": config_fingerprint(config)[0], "seconds": seconds}, f, indent=2)


# ----------------------------------------------------------------------------------------------
# Stages.


def _run_classifier(config, workdir: str, context: dict) -> dict:
  from rise_jax.train import classifier

  out = classifier.train_and_evaluate(config, workdir)
  return {k: v for k, v in out.items() if k not in ("module", "variables")}


def _run_rise(config, workdir: str, context: dict) -> dict:
  from rise_jax import rise_experiment

  return rise_experiment.train_and_evaluate(config, workdir)


def _run_explainer(config, workdir: str, context: dict) -> dict:
  from rise_jax.explainer import experiment

  return experiment.train_and_evaluate(config, workdir)


def _run_iassa(config, workdir: str, context: dict) -> dict:
  from rise_jax import iassa_experiment

  return iassa_experiment.train_and_evaluate(config, workdir)


def _run_caption(config, workdir: str, context: dict) -> dict:
  from rise_jax import caption_experiment

  return caption_experiment.train_and_evaluate(config, workdir)


def _mass_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
  """Fraction of the saliency mass above the map's minimum inside ``mask`` (0 for a constant)."""
  s = saliency - saliency.min()
  total = s.sum()
  return float((s * mask).sum() / total) if total > 0 else 0.0


def segmentation_rise_stage(config, explainer_config, explainer_dir: str, workdir: str) -> dict:
  """Segmentation RISE on the trained Explainer (a per-pixel class-score model).

  The Explainer is a DeepLabV3 whose sigmoid outputs are per-pixel class scores, i.e. a small
  segmentation model of the synthetic scenes. For each of the first ``config.num_images`` test
  images and each present class ``c`` whose Explainer segment (pixels with score > ``threshold``)
  is not empty, the segment's score is explained with :func:`rise_jax.segmentation_rise` under
  each merge in ``config.merges``. Each merged map is scored against the ground-truth object of
  ``c``: the pointing game (tolerance 15 px at 224, scaled), with the image centre as the
  baseline, and the fraction of the map's mass above its minimum inside the object (beside the
  object's area fraction, which a constant map would score).

  Args:
    config: ``segmentation_rise`` section of ``configs/default.py``.
    explainer_config: The Explainer stage's config (model and data).
    explainer_dir: The Explainer stage's run folder (its finished checkpoint is loaded).
    workdir: This stage's run folder.

  Returns:
    The results dict written to ``workdir/results.json``.
  """
  from rise_jax import viz
  from rise_jax.data import synthetic
  from rise_jax.explainer import experiment
  from rise_jax.metrics import pointing
  from rise_jax.rise import segmentation_rise

  if config.num_images < 1 or not 0 < config.threshold < 1:
    raise ValueError(f"segmentation_rise.num_images must be >= 1 and threshold in (0, 1), got "
                     f"{config.num_images} and {config.threshold}")
  os.makedirs(workdir, exist_ok=True)
  run = experiment.trained_explainer(explainer_config, explainer_dir)
  module, variables = run["module"], run["fit"]["variables"]
  test = run["test"]
  class_names = run["explanandum"][2]

  @jax.jit
  def seg_fn(x):  # float32[b, H, W, 3] -> per-pixel class scores float32[b, H, W, C]
    logits, _ = module.apply(variables, x, train=False)
    return jax.nn.sigmoid(logits)

  images = np.asarray(test["image"], np.float32)
  size = images.shape[1]
  tolerance = 15.0 * size / 224.0
  key = jax.random.key(config.seed)
  rows, figures = [], []
  count = min(int(config.num_images), len(images))
  start = time.perf_counter()
  for i in tqdm.trange(count, desc="segmentation RISE", disable=not config.progress):
    scores = np.asarray(seg_fn(jnp.asarray(images[i:i + 1])))[0]
    panels, titles = [], []
    for c in np.flatnonzero(np.asarray(test["label"][i]) > 0):
      region = scores[..., c] > config.threshold
      if not region.any():
        continue
      gt = np.asarray(test["segmentation"][i, :, :, c], bool)
      row = {"image": int(i), "class": int(c), "segment_area": float(region.mean()),
             "object_area": float(gt.mean()),
             "segment_iou": float((region & gt).sum() / max((region | gt).sum(), 1)),
             "centre_hit": int(pointing.pointing_game(np.zeros_like(gt, np.float32), gt,
                                                      tolerance=tolerance))}
      panels.append(region.astype(np.float32))
      titles.append(f"segment {class_names[c] if class_names else c}")
      for merge in config.merges:
        m = np.asarray(segmentation_rise(
            seg_fn, images[i], jax.random.fold_in(key, i), target_class=int(c), region=region,
            merge=merge, num_masks=config.num_masks, grid_size=config.grid_size, p1=config.p1,
            batch_size=config.batch_size))
        row[f"{merge}_hit"] = int(pointing.pointing_game(m, gt, tolerance=tolerance))
        row[f"{merge}_mass_in_object"] = _mass_in_mask(m, gt)
        panels.append(m)
        titles.append(f"merge={merge}")
      rows.append(row)
    if panels and len(figures) < config.figure_images:
      figures.append(viz.save_overlays(os.path.join(workdir, "figures", f"image_{i:03d}.png"),
                                       synthetic.denormalize(images[i]), np.stack(panels),
                                       titles))
  seconds = time.perf_counter() - start
  if not rows:
    raise ValueError("the Explainer segments no present class in the explained test images "
                     f"(threshold {config.threshold}); nothing to explain")

  def mean(key: str) -> float:
    return float(np.mean([r[key] for r in rows]))

  table = {merge: {"pointing": mean(f"{merge}_hit"),
                   "mass_in_object": mean(f"{merge}_mass_in_object")}
           for merge in config.merges}
  table["centre"] = {"pointing": mean("centre_hit"), "mass_in_object": mean("object_area")}
  results = {"table": table, "num_segments": len(rows), "segment_iou": mean("segment_iou"),
             "tolerance": tolerance, "seconds_per_segment": seconds / len(rows),
             "rows": rows, "figures": [os.path.relpath(p, workdir) for p in figures],
             "settings": {k: config[k] for k in ("num_masks", "grid_size", "p1", "threshold",
                                                 "num_images", "seed")}
             | {"merges": list(config.merges)}}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(workdir, "tables.md"), "w") as f:
    f.write(segmentation_table_markdown(results))
  return results


def segmentation_table_markdown(results: dict) -> str:
  """The Segmentation RISE table of :func:`segmentation_rise_stage`'s results."""
  lines = ["# Segmentation RISE on the Explainer (DeepLabV3) segments", "",
           f"{results['num_segments']} segments (one per present class the Explainer segments; "
           f"segment IoU with the object {results['segment_iou']:.3f}). Pointing game at "
           f"{results['tolerance']:.1f} px; mass in object = fraction of the map's mass above "
           "its minimum inside the ground-truth object (the centre row gives the object's area "
           "fraction, what a constant map scores). The RISE repository reports no numbers for "
           "this mode.", "", "| merge | pointing ↑ | mass in object ↑ |", "|---|---|---|"]
  for name, row in results["table"].items():
    label = "centre / constant baseline" if name == "centre" else name
    lines.append(f"| {label} | {row['pointing']:.3f} | {row['mass_in_object']:.3f} |")
  return "\n".join(lines) + "\n"


_RUNNERS: dict[str, Callable[..., dict]] = {
    "classifier": _run_classifier, "rise": _run_rise, "explainer": _run_explainer,
    "iassa": _run_iassa, "caption": _run_caption,
}


# ----------------------------------------------------------------------------------------------
# Headline numbers, orderings, tables.


def _get(d: Any, *path, default=None):
  for p in path:
    if not isinstance(d, dict) or p not in d:
      return default
    d = d[p]
  return d


def orderings(results: dict[str, dict]) -> list[dict]:
  """The orderings the papers report, checked on this run's numbers.

  Args:
    results: ``{stage: stage results}``.

  Returns:
    A list of ``{"claim", "holds" (bool or None when the stage did not run), "values"}``.
  """
  out = []

  def add(claim: str, values: dict, holds: bool | None):
    # A missing or NaN number (e.g. no noun to point at) leaves the claim untested.
    if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in values.values()):
      holds = None
    out.append({"claim": claim, "values": values, "holds": None if holds is None else bool(holds)})

  r = results.get("rise")
  t1 = _get(r, "table1") if r else None
  if t1:
    rd, gd = _get(t1, "RISE", "deletion"), _get(t1, "Grad-CAM", "deletion")
    ri, gi = _get(t1, "RISE", "insertion"), _get(t1, "Grad-CAM", "insertion")
    add("RISE deletion AUC below Grad-CAM's (RISE Tab. 1)",
        {"RISE": rd, "Grad-CAM": gd}, None if None in (rd, gd) else rd < gd)
    add("RISE insertion AUC above Grad-CAM's (RISE Tab. 1)",
        {"RISE": ri, "Grad-CAM": gi}, None if None in (ri, gi) else ri > gi)
  t2 = _get(r, "table2") if r else None
  if t2:
    rp, cp = _get(t2, "RISE", "all"), _get(t2, "centre", "all")
    add("RISE pointing accuracy above the centre baseline (RISE Tab. 2)",
        {"RISE": rp, "centre": cp}, None if None in (rp, cp) else rp > cp)
  ia = results.get("iassa")
  if ia:
    img = ia["table"]["image"]
    by_mix: dict[str, dict[int, str]] = {}
    for name in img:
      if name.startswith("IASSA mix="):
        mix, _, k = name[len("IASSA mix="):].partition(" k=")
        by_mix.setdefault(mix, {})[int(k)] = name
    for ks in by_mix.values():  # k = 5 (the paper's first column), else the first recorded k
      name = ks.get(5, ks[min(ks)])
      f1, iou = img[name]["f1"], img[name]["iou"]
      add(f"{name}: F1 and IoU above RISE's (IASSA Tab. 1, image level)",
          {"IASSA F1": f1, "RISE F1": img["RISE"]["f1"], "IASSA IoU": iou,
           "RISE IoU": img["RISE"]["iou"]},
          f1 > img["RISE"]["f1"] and iou > img["RISE"]["iou"])
  ex = results.get("explainer")
  if ex:
    t = ex["table2"]
    for other in ("RISE", "Grad-CAM"):
      if other not in t or "Explainer" not in t:
        continue
      add(f"Explainer Acc above and MAE below {other}'s (Stalder Tab. 2)",
          {"Explainer Acc": t["Explainer"]["acc"], f"{other} Acc": t[other]["acc"],
           "Explainer MAE": t["Explainer"]["mae"], f"{other} MAE": t[other]["mae"]},
          t["Explainer"]["acc"] > t[other]["acc"] and t["Explainer"]["mae"] < t[other]["mae"])
    cs = _get(ex, "class_specific", "Explainer")
    if cs:
      diff = cs["diagonal_mean"] - cs["off_diagonal_mean"]
      add("Explainer class-specific masks: diagonal above off-diagonal (Stalder Tab. 1)",
          {"diagonal": cs["diagonal_mean"], "off_diagonal": cs["off_diagonal_mean"]}, diff > 0)
  sr = results.get("segmentation_rise")
  if sr:
    t = sr["table"]
    for merge in (m for m in t if m != "centre"):
      add(f"Segmentation RISE (merge={merge}) pointing above the centre baseline",
          {merge: t[merge]["pointing"], "centre": t["centre"]["pointing"]},
          t[merge]["pointing"] > t["centre"]["pointing"])
  cap = results.get("caption")
  if cap:
    m, c = _get(cap, "pointing", "method", "all"), _get(cap, "pointing", "centre", "all")
    add("Captioning RISE: noun maps point at their object more often than the centre",
        {"RISE": m, "centre": c}, None if None in (m, c) else m > c)
  return out


def headline_rows(results: dict[str, dict]) -> list[dict]:
  """Flat ``{"stage", "row", "metric", "value"}`` rows of every stage's main table."""
  rows = []

  def walk(stage: str, prefix: str, d: Any):
    if isinstance(d, dict):
      for k, v in d.items():
        walk(stage, f"{prefix}/{k}" if prefix else str(k), v)
    elif isinstance(d, int | float) and not isinstance(d, bool):
      row, _, metric = prefix.rpartition("/")
      rows.append({"stage": stage, "row": row, "metric": metric, "value": float(d)})

  picks = {"classifier": ("test_map",), "rise": ("table1", "table2"),
           "explainer": ("table2",), "segmentation_rise": ("table",), "iassa": ("table",),
           "caption": ("captions", "pointing")}
  for stage, keys in picks.items():
    if stage in results:
      for k in keys:
        if k in results[stage]:
          walk(stage, k, results[stage][k])
  return rows


def _demote(markdown: str) -> str:
  """Shifts every markdown heading one level down (``#`` -> ``##``)."""
  return "\n".join("#" + line if line.startswith("#") else line
                   for line in markdown.splitlines()) + "\n"


def tables_markdown(results: dict[str, dict], workdir: str, order: list[dict],
                    seconds: dict[str, float]) -> str:
  """``tables.md``: the orderings, then every stage's own tables (with the papers' numbers)."""
  lines = ["# rise_jax main job: the synthetic benchmark", "",
           "Every table below is an analogue on synthetic shapes of a table of the RISE, IASSA "
           "or NN-Explainer paper; the papers' own numbers (ImageNet, VOC, COCO) are printed "
           "beside ours for orientation, not as targets.", "",
           "## Orderings the papers report", "", "| claim | holds here | values |",
           "|---|---|---|"]
  for o in order:
    holds = "n/a" if o["holds"] is None else ("yes" if o["holds"] else "**no**")
    vals = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in o["values"].items())
    lines.append(f"| {o['claim']} | {holds} | {vals} |")
  lines += ["", "## Stage times", "", "| stage | seconds | reused |", "|---|---|---|"]
  for name, s in seconds.items():
    lines.append(f"| {name} | {s['seconds']:.1f} | {'yes' if s['reused'] else 'no'} |")
  if "classifier" in results:
    lines += ["", f"Explanandum: synthetic-shapes ResNet, test mAP "
              f"{results['classifier']['test_map']:.3f}."]
  for name in results:
    path = os.path.join(workdir, name, "tables.md")
    if os.path.exists(path):
      with open(path) as f:
        lines += ["", _demote(f.read()).rstrip()]
  return "\n".join(lines) + "\n"


def _histories(workdir: str) -> dict[str, list]:
  found = {}
  for name, rel in (("classifier", "classifier/history.json"),
                    ("Explainer", "explainer/explainer/history.json"),
                    ("captioner", "caption/captioner/history.json")):
    path = os.path.join(workdir, rel)
    if os.path.exists(path):
      with open(path) as f:
        history = json.load(f)
      if history:
        found[name] = history
  return found


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the main job (see the module docstring) and writes its run folder.

  Args:
    config: The config of ``configs/default.py``.
    workdir: Run folder; finished stages found there with the same config are reused.

  Returns:
    The dict written to ``workdir/results.json``: ``{"orderings", "headline", "stages": {stage:
    results}, "seconds": {stage: {"seconds", "reused"}}, "figures"}``.
  """
  from rise_jax import viz

  os.makedirs(workdir, exist_ok=True)
  configs = stage_configs(config, workdir)
  results, seconds = {}, {}
  for name, cfg in configs.items():
    folder = cfg.workdir
    cached = _stage_cached(folder, cfg)
    if cached is not None:
      with open(os.path.join(folder, "stage.json")) as f:
        seconds[name] = {"seconds": json.load(f)["seconds"], "reused": True}
      results[name] = cached
      if config.progress:
        print(f"[main] {name}: reused {folder}/results.json", flush=True)
      continue
    if config.progress:
      print(f"[main] {name} ...", flush=True)
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    if name == "segmentation_rise":
      out = segmentation_rise_stage(cfg, configs["explainer"], configs["explainer"].workdir,
                                    folder)
    else:
      out = _RUNNERS[name](cfg, folder, results)
      if name == "classifier":  # its results.json is written by train_and_evaluate
        with open(os.path.join(folder, "results.json"), "w") as f:
          json.dump(out, f, indent=2)
    took = time.perf_counter() - start
    _mark_done(folder, cfg, took)
    results[name] = json.loads(json.dumps(out, default=float))
    seconds[name] = {"seconds": took, "reused": False}
    if config.progress:
      print(f"[main] {name}: {took:.1f} s", flush=True)

  figures_dir = os.path.join(workdir, "figures")
  histories = _histories(workdir)
  if histories:
    viz.save_training_curves(os.path.join(figures_dir, "training_curves.png"), histories)
  order = orderings(results)
  rows = headline_rows(results)
  summary = {
      "orderings": order, "headline": rows, "seconds": seconds,
      "total_seconds": float(sum(s["seconds"] for s in seconds.values())),
      "figures": sorted(os.path.relpath(p, workdir) for p in
                        glob.glob(os.path.join(workdir, "**", "*.png"), recursive=True)),
      "stages": results,
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2, default=float)
  with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["stage", "row", "metric", "value"])
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(workdir, "tables.md"), "w") as f:
    f.write(tables_markdown(results, workdir, order, seconds))
  return summary
