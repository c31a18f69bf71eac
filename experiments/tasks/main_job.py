"""The main job: every method of the three papers on the synthetic benchmark, end to end.

``python -m experiments.main`` (``configs/default.py``) calls :func:`run`, which runs these
stages in order, each in its own subfolder of ``workdir``:

========================  ======================================================================
``classifier``            the explanandum: a small ResNet trained on the synthetic shapes
                          (:func:`experiments.tasks.classifier.train_and_evaluate`); every later
                          stage explains this one model (``explanandum.classifier_dir``)
``rise``                  RISE Table 1 (deletion / insertion AUC) and Table 2 (pointing game,
                          all / difficult, centre baseline) for RISE, Grad-CAM and occlusion
                          (:func:`experiments.tasks.rise_tables.train_and_evaluate`)
``explainer``             NN-Explainer Tables 1-2 (class-specific masking; Acc / IoU / Sal / MAE
                          with the sanity rows) against RISE and Grad-CAM
                          (:func:`experiments.tasks.explainer.train_and_evaluate`)
``segmentation_rise``     Segmentation RISE (``mean`` and ``max`` merges) explaining the trained
                          Explainer, a DeepLabV3 that outputs per-pixel class scores
``iassa``                 IASSA Table 1 (image and pixel level) against RISE
                          (:func:`experiments.tasks.iassa_table.train_and_evaluate`)
``caption``               RISE for captioning: per-word maps of a small captioner, noun pointing
                          game (:func:`experiments.tasks.caption.train_and_evaluate`)
========================  ======================================================================

Then it writes ``tables.md`` (every stage's tables beside the papers' numbers, after a list of the
orderings the papers report and whether each holds here), ``results.json`` (headline numbers,
orderings, stage timings, figure paths), ``summary.csv`` (one row per headline number) and
``figures/training_curves.png``. Stage figures (overlays per method, deletion/insertion curves,
IASSA maps over iterations, Segmentation RISE maps) stay in their stage folders and are listed in
``results.json``.

Rerun reuse goes through :mod:`experiments.tasks.run_folder`: a stage folder finished with the
same config (which embeds every upstream stage's config) is reused; one of another config is
refused unless ``config.overwrite``; a killed training run resumes.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time
from typing import Any

import ml_collections

from experiments.tasks import evidence, run_folder, runners
from rise_jax import viz

STAGES = runners.STAGES
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
      c.explainer = ml_collections.ConfigDict(out["explainer"].to_dict())  # upstream stage
    else:
      c = ml_collections.ConfigDict(config[name].to_dict())
      if "explanandum" in c:
        c.explanandum.classifier = ml_collections.ConfigDict(config.classifier.to_dict())
        c.explanandum.classifier_dir = clf_dir
    if "progress" in c:
      c.progress = config.progress
    c.workdir = os.path.join(workdir, name)
    c.overwrite = bool(config.get("overwrite", False))
    out[name] = c
  return out


# ----------------------------------------------------------------------------------------------
# Headline numbers, orderings, tables.


def _get(d: Any, *path, default=None):
  for p in path:
    if not isinstance(d, dict) or p not in d:
      return default
    d = d[p]
  return d


def orderings(results: dict[str, dict]) -> list[dict]:
  """The orderings the papers report, each decided on its stage's paired difference.

  Every stage records its comparisons (:func:`experiments.tasks.evidence.compare`): the mean
  difference between two methods on the same pairs, its 95% bootstrap CI over images and the
  verdict "holds" / "reversed" / "not resolved". IASSA's are listed at the first recorded
  iteration and for "keeps improving" (its table holds every k).

  Args:
    results: ``{stage: stage results}``.

  Returns:
    The comparisons in stage order, each with its ``stage`` and ``holds`` (True for "holds",
    False for "reversed", None otherwise).
  """
  out = []
  for stage in STAGES:
    for c in _get(results, stage, "comparisons", default=[]) or []:
      if not c.get("headline", True):
        continue
      holds = {"holds": True, "reversed": False}.get(c["verdict"])
      out.append({**c, "stage": stage, "holds": holds})
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


# Images each stage's table should rest on to resolve its orderings (issue 18).
TARGET_IMAGES = {"rise": 100, "explainer": 200, "iassa": 20, "caption": 100}


def _images_used(stage: str, r: dict) -> int | None:
  if stage == "caption":
    return _get(r, "config", "num_explain")
  return r.get("num_images")


def _counts_markdown(results: dict[str, dict]) -> list[str]:
  """Images per table against the target count; below-target tables are flagged."""
  lines = ["## Images per table", "",
           "| stage | images | target | |", "|---|---|---|---|"]
  for stage, target in TARGET_IMAGES.items():
    if stage in results:
      n = _images_used(stage, results[stage])
      flag = "" if n is not None and n >= target else "**below target: the 20-minute CPU " \
          "budget does not reach it; read its CIs accordingly**"
      lines.append(f"| {stage} | {n} | {target} | {flag} |")
  return lines


def tables_markdown(results: dict[str, dict], workdir: str, order: list[dict],
                    seconds: dict[str, float]) -> str:
  """``tables.md``: the orderings, then every stage's own tables (with the papers' numbers)."""
  lines = ["# rise_jax main job: the synthetic benchmark", "",
           "Every table below is an analogue on synthetic shapes of a table of the RISE, IASSA "
           "or NN-Explainer paper; the papers' own numbers (ImageNet, VOC, COCO) are printed "
           "beside ours for orientation, not as targets.", "",
           "## Orderings the papers report", "",
           "Each ordering is decided on the paired difference between the two methods on the "
           "same (image, class) pairs: it holds when the 95% bootstrap CI of the difference "
           "(images resampled, 1000 resamples) excludes 0 in the paper's direction, is reversed "
           "when it excludes 0 the other way, and is not resolved when it contains 0.", "",
           *evidence.comparisons_markdown(order), "", *_counts_markdown(results)]
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
    workdir: Run folder; each stage reuses its folder's results when its config (with every
      upstream stage's config) is unchanged, and refuses a folder of another config unless
      ``config.overwrite``.

  Returns:
    The dict written to ``workdir/results.json``: ``{"orderings", "headline", "stages": {stage:
    results}, "seconds": {stage: {"seconds", "reused"}}, "figures"}``.
  """
  with run_folder.locked(workdir):
    results, seconds = _run_stages(config, workdir)
    return _report(config, workdir, results, seconds)


def _run_stages(config, workdir: str) -> tuple[dict, dict]:
  results, seconds = {}, {}
  for name, cfg in stage_configs(config, workdir).items():
    folder = cfg.workdir
    if config.progress:
      print(f"[main] {name} ...", flush=True)
    start = time.perf_counter()
    runner = runners.RUNNERS[name]
    out, reused = run_folder.reuse_or_run(
        folder, cfg, lambda r=runner, c=cfg, f=folder, n=name: runners.jsonable_results(n, r(c, f)))
    took = time.perf_counter() - start
    if reused:
      took = (run_folder.read_json(os.path.join(folder, run_folder.MARKER)) or {}).get(
          "seconds") or took
    results[name] = json.loads(json.dumps(runners.jsonable_results(name, out), default=float))
    seconds[name] = {"seconds": took, "reused": reused}
    if config.progress:
      print(f"[main] {name}: {'reused' if reused else f'{took:.1f} s'}", flush=True)
  return results, seconds


def _report(config, workdir: str, results: dict, seconds: dict) -> dict:
  """``results.json``, ``summary.csv``, ``tables.md`` and the training curves."""
  histories = _histories(workdir)
  if histories:
    viz.save_training_curves(os.path.join(workdir, "figures", "training_curves.png"),
                             histories)
  order = orderings(results)
  rows = headline_rows(results)
  summary = {
      "orderings": order, "headline": rows, "seconds": seconds,
      "total_seconds": float(sum(s["seconds"] for s in seconds.values())),
      "figures": sorted(os.path.relpath(p, workdir) for p in
                        glob.glob(os.path.join(workdir, "**", "*.png"), recursive=True)),
      "stages": results,
  }
  run_folder.write_json(os.path.join(workdir, "results.json"), summary)
  with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["stage", "row", "metric", "value"])
    writer.writeheader()
    writer.writerows(rows)
  run_folder.write_text(os.path.join(workdir, "tables.md"),
                        tables_markdown(results, workdir, order, seconds))
  return summary
