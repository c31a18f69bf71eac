"""RISE paper Tables 1 and 2 (Petsiuk et al., BMVC 2018): RISE against Grad-CAM and occlusion.

:func:`train_and_evaluate` runs one config of ``configs/rise.py`` end to end:

1. The explanandum: the synthetic classifier of ``configs/classifier.py``, trained or reused in
   ``explanandum.classifier_dir`` (default ``workdir/classifier``; several runs, e.g. the points
   of a sweep, can share one), or a registry architecture (``explanandum.arch``: ``resnet50``,
   ``vgg16``, ...) with its weights (``explanandum.weights``; empty: the registry's cache
   folder, i.e. the converted ImageNet weights). The causal metrics score its
   ``explanandum.output`` (softmax for ImageNet, sigmoid for the multi-label sets, which are
   fine-tuned with BCE); RISE and occlusion explain its ``explanandum.explain_output`` (the
   same by default: RISE explains the class probability, as in the paper).
2. The test images, streamed in batches of ``eval.batch_images`` (never all held in memory:
   ImageNet val at 224 px is 30 GB as float32): the synthetic test split, VOC 2007 test (TFDS
   ``voc/2007`` in ``data.data_dir``, boxes; or a VOCdevkit segmentation list, masks), COCO 2014
   val (an instances JSON with its image folder, masks; or TFDS ``coco/2014``, boxes) or
   ImageNet val (TFDS ``imagenet2012`` or an image folder with a ``filename label`` file).
   Real images are resized to ``data.image_size`` (a plain square resize, as the RISE
   reference code's ``Resize((224, 224))``) with ImageNet normalisation;
   ``data.max_test`` caps them.
3. The explained (image, class) pairs: every true class (``eval.classes="true"``, the
   multi-label sets and the pointing game) or the top-1 predicted class (``"top1"``, ImageNet
   as in the paper's Table 1).
4. Maps of every method for the pair's class: RISE (:func:`rise_jax.rise`, mask key
   ``fold_in(key(rise.seed), image index)``), Grad-CAM (:func:`rise_jax.baselines.gradcam` of
   the logit, white-box, layer ``gradcam.layer``) and occlusion / sliding window
   (:func:`rise_jax.baselines.occlusion`; the paper's 64 x 64 window with stride 8).
5. Metrics per pair (SPEC §3): deletion AUC (pixels set to ``eval.deletion_substrate``, default
   zeros = the mean colour) and insertion AUC (onto ``eval.insertion_substrate``, default the
   Gaussian blur), one row of pixels per step; the pointing game with TorchRay's protocol
   (:class:`rise_jax.metrics.PointingGame`: per-class accuracy, then the mean over classes, on
   all pairs and the difficult subset, and the centre baseline). The ground truth of the
   pointing game is the class's pixel mask (``data.pointing_gt="masks"``: synthetic, COCO
   instances) or the union of its boxes (``"boxes"``: VOC 2007 test, as TorchRay), every
   object included (VOC's "difficult" ones too).

Settings given for 224-pixel images (the occlusion window and stride, the pointing tolerance
of 15 px and the deletion/insertion step of 224 px = one row) are scaled by
``s = image_size / eval.paper_size`` (rounding half up, at least 1 px); every scaled value is
recorded in ``results["settings"]``.

Design notes. The maps are computed once per image and method and scored by all metrics in
one pass over the data; :func:`rise_jax.evaluation.evaluate` is not called because it returns
no deletion/insertion curves (needed for the mean-curve figures) and would recompute the maps
per call, but the per-method :class:`rise_jax.evaluation.Results` (rows + TorchRay pointing
results) are the same objects it builds, and the tests check that ``evaluate`` on the saved
maps reproduces our numbers. Every method computes all classes at once when the model has at
most 100 outputs (RISE's and occlusion's cost is their forward passes, the same for any class
subset; Grad-CAM's backward pass per class only runs through the head; and one compiled program
then serves every image); with more outputs (ImageNet) the pair's class ids are padded to a
power of two so that only a few shapes compile.

Outputs under ``workdir``: ``results.json``, ``tables.md`` (each table beside the paper's
numbers), ``table.csv`` (one row per method: ours and the paper's), ``pairs.csv`` (one row per
pair x method), ``maps.npz`` (images, class ids and every method's map of the first
``eval.save_maps`` pairs), ``figures/maps_image<i>_<class>.png`` (the methods' maps side by
side, and the pointing ground truth, for the first ``eval.figure_images`` images) and
``figures/curves_deletion.png`` / ``figures/curves_insertion.png`` (mean curves per method).

Rerun reuse: :mod:`experiments.tasks.run_folder` (the same config returns the stored results
without loading anything; another config is refused unless ``config.overwrite``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from experiments.tasks import datasets, evidence, explanandum, run_folder
from rise_jax import evaluation, viz
from rise_jax.baselines import gradcam, occlusion
from rise_jax.metrics import causal, pointing
from rise_jax.rise import rise

METHODS = ("RISE", "Grad-CAM", "Occlusion")
METRICS = ("deletion", "insertion", "pointing")
DATASETS = ("synthetic", "voc", "coco", "imagenet")
CLASSES = ("true", "top1")
OUTPUTS = ("sigmoid", "softmax", "logits")
POINTING_GT = ("masks", "boxes")
PAPER_SIZE = 224
ALL_CLASSES_MAX = 100  # RISE / occlusion compute every class at once up to this many outputs

# RISE Table 1 (ImageNet val, 224 px): (deletion, insertion); RISE is the mean of 3 runs.
PAPER_TABLE1 = {
    "ResNet50": {"Grad-CAM": (0.1232, 0.6766), "Sliding window": (0.1421, 0.6618),
                 "LIME": (0.1217, 0.6940), "RISE": (0.1076, 0.7267)},
    "VGG16": {"Grad-CAM": (0.1087, 0.6149), "Sliding window": (0.1158, 0.5917),
              "LIME": (0.1014, 0.6167), "RISE": (0.0980, 0.6663)},
}
# RISE Table 2 (pointing accuracy %, VOC07 test / COCO14 val, "all"), and TorchRay's re-run.
PAPER_TABLE2 = {"VGG16": {"voc": 87.33, "coco": 50.71},
                "ResNet50": {"voc": 88.94, "coco": 55.58}}
TORCHRAY_TABLE2 = {"RISE VGG16": {"voc": 86.9, "coco": 50.8},
                   "RISE ResNet50": {"voc": 86.4, "coco": 54.7},
                   "centre": {"voc": 69.6, "coco": 27.8}}



def _round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def scaled_settings(image_size: int, *, paper_size: int = PAPER_SIZE, window: int = 64,
                    stride: int = 8, tolerance: float = 15.0, step: int | None = None
                    ) -> dict[str, float]:
  """The paper's 224-pixel settings scaled to ``image_size`` pixels.

  With ``s = image_size / paper_size``: occlusion window ``min(max(round(window * s), 1),
  image_size)``, stride ``max(round(stride * s), 1)``, pointing tolerance ``tolerance * s``
  pixels and deletion/insertion step ``max(round(224 * s), 1)`` pixels (one row of a
  224-pixel image; ``step`` overrides it). At 64 px: window 18, stride 2, tolerance 4.29,
  step 64.

  Args:
    image_size: Side of the evaluated images.
    paper_size: Side the settings are given for (224).
    window: Occlusion window at ``paper_size`` (paper: 64).
    stride: Occlusion stride at ``paper_size`` (paper: 8).
    tolerance: Pointing-game radius at ``paper_size`` (TorchRay: 15).
    step: Explicit pixels per deletion/insertion step (``None``: scaled).

  Returns:
    ``{"scale", "window", "stride", "tolerance", "step"}``.
  """
  for name, v in (("image_size", image_size), ("paper_size", paper_size)):
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  s = image_size / paper_size
  if step is not None and (isinstance(step, bool) or not isinstance(step, int | np.integer)
                           or step < 1):
    raise ValueError(f"eval.step must be None or an int >= 1, got {step!r}")
  return {"scale": float(s),
          "window": min(max(_round_half_up(window * s), 1), int(image_size)),
          "stride": max(_round_half_up(stride * s), 1),
          "tolerance": float(tolerance * s),
          "step": int(step) if step is not None else max(_round_half_up(PAPER_SIZE * s), 1)}


def _is_int(v) -> bool:
  return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_config(config) -> None:
  """Raises ``ValueError`` naming the field for a config value the experiment cannot run."""
  d, e, r, ev = config.data, config.explanandum, config.rise, config.eval
  if d.name not in DATASETS:
    raise ValueError(f"data.name must be one of {DATASETS}, got {d.name!r}")
  methods = tuple(ev.methods)
  bad = [m for m in methods if m not in METHODS]
  if not methods or bad:
    raise ValueError(f"eval.methods must be a non-empty subset of {METHODS}, got unknown "
                     f"{bad or methods!r}")
  if len(set(methods)) != len(methods):
    raise ValueError(f"eval.methods has repeated entries: {methods}")
  metrics = tuple(ev.metrics)
  bad = [m for m in metrics if m not in METRICS]
  if not metrics or bad:
    raise ValueError(f"eval.metrics must be a non-empty subset of {METRICS}, got unknown "
                     f"{bad or metrics!r}")
  if "pointing" in metrics and d.name == "imagenet":
    raise ValueError("eval.metrics: the pointing game needs object masks or boxes, which "
                     "ImageNet val has not here; use ('deletion', 'insertion')")
  if ev.classes not in CLASSES:
    raise ValueError(f"eval.classes must be one of {CLASSES}, got {ev.classes!r}")
  if d.get("pointing_gt", "masks") not in POINTING_GT:
    raise ValueError(f"data.pointing_gt must be one of {POINTING_GT}, got {d.pointing_gt!r}")
  for name in ("output", "explain_output"):
    if e.get(name) not in OUTPUTS:
      raise ValueError(f"explanandum.{name} must be one of {OUTPUTS}, got {e.get(name)!r}")
  if not _is_int(r.num_masks) or r.num_masks < 1:
    raise ValueError(f"rise.num_masks must be an int >= 1, got {r.num_masks!r}")
  grid = tuple(r.grid_size) if isinstance(r.grid_size, list | tuple) else (r.grid_size,)
  if not grid or len(grid) > 2 or not all(_is_int(g) and g >= 1 for g in grid):
    raise ValueError(f"rise.grid_size must be an int >= 1 or a pair of them, got "
                     f"{r.grid_size!r}")
  if isinstance(r.p1, bool) or not isinstance(r.p1, int | float) or not 0 < r.p1 < 1:
    raise ValueError(f"rise.p1 must be in (0, 1), got {r.p1!r}")
  positive = (("rise.batch_size", r.batch_size), ("occlusion.window", config.occlusion.window),
              ("occlusion.stride", config.occlusion.stride),
              ("occlusion.batch_size", config.occlusion.batch_size),
              ("eval.batch_size", ev.batch_size), ("eval.chunk", ev.chunk),
              ("eval.batch_images", ev.batch_images), ("eval.paper_size", ev.paper_size),
              ("data.image_size", d.image_size), ("data.num_classes", d.num_classes))
  for name, v in positive:
    if not _is_int(v) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  for name, v in (("eval.figure_images", ev.figure_images), ("eval.save_maps", ev.save_maps)):
    if not _is_int(v) or v < 0:
      raise ValueError(f"{name} must be an int >= 0, got {v!r}")
  max_test = d.get("max_test")
  if max_test is not None and (not _is_int(max_test) or max_test < 1):
    raise ValueError(f"data.max_test must be None or an int >= 1, got {max_test!r}")
  if e.source not in ("train", "registry"):
    raise ValueError(f"explanandum.source must be 'train' or 'registry', got {e.source!r}")
  if e.source == "train" and d.name != "synthetic":
    raise ValueError(f"explanandum.source='train' trains the synthetic classifier; for "
                     f"data.name={d.name!r} set explanandum.source='registry' with "
                     "explanandum.arch and explanandum.weights")


# ------------------------------------------------------------------------------------ data


def pair_classes(labels: np.ndarray, probs: np.ndarray | None, classes: str) -> list[np.ndarray]:
  """The explained class ids of each image: its true classes or its top-1 prediction.

  Args:
    labels: float[B, C] multi-hot.
    probs: float[B, C] black-box scores (needed for ``"top1"``).
    classes: ``"true"`` or ``"top1"``.

  Returns:
    ``B`` int64 arrays (empty for an image without a true class in ``"true"`` mode).
  """
  if classes == "true":
    return [np.flatnonzero(np.asarray(lab) > 0).astype(np.int64) for lab in labels]
  if classes == "top1":
    return [np.asarray([int(np.argmax(p))], np.int64) for p in np.asarray(probs)]
  raise ValueError(f"classes must be one of {CLASSES}, got {classes!r}")


# --------------------------------------------------------------------------------- methods


def _bucket(ids: np.ndarray) -> np.ndarray:
  """``ids`` padded with its last id to the next power of two (few compiled shapes)."""
  k = 1 << max(int(ids.size) - 1, 0).bit_length()
  return np.concatenate([ids, np.full(k - ids.size, ids[-1], ids.dtype)]).astype(np.int32)


def make_methods(config, apply_fn: Callable, variables, explain_fn: Callable,
                 num_classes: int, settings: dict) -> dict[str, Callable]:
  """The compared methods as ``fn(image float32[H, W, 3], ids int[K], index) -> float32[K, H,
  W]`` (the maps of classes ``ids``; ``index`` is the image's position in the test set)."""
  r, o = config.rise, config.occlusion
  grid = tuple(r.grid_size) if isinstance(r.grid_size, list | tuple) else int(r.grid_size)
  all_at_once = num_classes <= ALL_CLASSES_MAX

  def pick(fn):
    def run(image, ids, index):
      if all_at_once:
        return np.asarray(fn(image, None, index))[ids]
      return np.asarray(fn(image, _bucket(ids), index))[:ids.size]
    return run

  def rise_fn(image, classes, index):
    key = jax.random.fold_in(jax.random.key(r.seed), int(index))
    return rise(explain_fn, image, key, num_masks=r.num_masks, grid_size=grid, p1=r.p1,
                batch_size=r.batch_size, substrate=r.substrate, normalize=r.normalize,
                classes=classes)

  def occlusion_fn(image, classes, index):
    del index
    return occlusion(explain_fn, image, window=settings["window"], stride=settings["stride"],
                     substrate=o.substrate, classes=classes, batch_size=o.batch_size)

  def gradcam_fn(image, classes, index):
    del index
    return gradcam(apply_fn, variables, image, layer=config.gradcam.layer, classes=classes)

  table = {"RISE": pick(rise_fn), "Grad-CAM": pick(gradcam_fn), "Occlusion": pick(occlusion_fn)}
  return {m: table[m] for m in config.eval.methods}


# --------------------------------------------------------------------------------- scoring


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs the RISE Table 1 / Table 2 evaluation (see the module docstring).

  A rerun with the same config fingerprint returns the stored ``results.json`` without
  recomputing.

  Args:
    config: An ``ml_collections`` config of ``configs/rise.py``.
    workdir: Run folder.

  Returns:
    The results dict written to ``workdir/results.json``: ``table1`` (``{method: {"deletion",
    "insertion", "pairs"}}``), ``table2`` (``{method: {"all", "difficult"}}`` in %, plus
    ``"centre"``), ``summary`` (each method's :meth:`rise_jax.evaluation.Results.summary`),
    ``headline`` (flat ``"<metric>/<method>"`` numbers), ``mean_curves``, ``settings``,
    ``seconds``, ``paper``, ``config`` and ``fingerprint``.
  """
  check_config(config)
  return run_folder.once(workdir, config, lambda: _evaluate(config, workdir))


def _evaluate(config, workdir: str) -> dict:
  start = time.perf_counter()
  ctx = _load(config, workdir)
  state = _new_state(config, ctx)
  bar = tqdm.tqdm(total=ctx["total"], desc="RISE tables", disable=not config.progress,
                  unit="img")
  for batch in ctx["batches"]:
    _explain_and_score_batch(config, ctx, state, batch, bar)
  bar.close()
  if not state["num_pairs"]:
    raise ValueError("no (image, class) pair to explain: the test images have no true class")
  results_objs, curves = _finish_scores(config, ctx, state)
  cfg_dict, fingerprint = run_folder.config_fingerprint(config)
  results = _assemble(config, results_objs, curves, ctx["settings"], ctx["model"].info,
                      ctx["class_names"], state["times"], state["num_images"],
                      state["num_pairs"], state["top1_true"], cfg_dict, fingerprint)
  results["summary_table"] = evaluation.summary_markdown(results_objs)
  results["ci"], results["comparisons"] = _evidence(config, results_objs, state["centre_hits"])
  results["seconds"]["total"] = time.perf_counter() - start
  results = json.loads(json.dumps(results, default=_jsonable))
  _write_outputs(workdir, results, results_objs, state["saved"], state["figures"],
                 ctx["class_names"])
  return results


def _load(config, workdir: str) -> dict:
  """Explanandum, test-batch stream, scaled settings, black boxes and methods of the config."""
  d, ev = config.data, config.eval
  model = explanandum.from_config(config, workdir)
  batches, total, data_names = datasets.iter_test_batches(config)
  st = scaled_settings(int(d.image_size), paper_size=int(ev.paper_size),
                       window=int(config.occlusion.window), stride=int(config.occlusion.stride),
                       tolerance=float(ev.tolerance), step=ev.get("step"))
  explain_fn = model.black_box(config.explanandum.explain_output)
  return {"model": model, "batches": batches, "total": total,
          "class_names": data_names or model.class_names, "settings": st,
          "probs_fn": model.black_box(config.explanandum.output),
          "methods": make_methods(config, model.apply_fn, model.variables, explain_fn,
                                  int(d.num_classes), st)}


def _new_state(config, ctx: dict) -> dict:
  ev, methods = config.eval, ctx["methods"]
  return {
      "games": {m: pointing.PointingGame(int(config.data.num_classes), ctx["settings"]["tolerance"])
                for m in methods},
      "scorers": {m: causal.CausalAccumulator(
          ctx["probs_fn"], step=ctx["settings"]["step"], chunk=ev.chunk,
          batch_size=ev.batch_size,
          modes=[k for k in ("deletion", "insertion") if k in ev.metrics],
          deletion_substrate=ev.deletion_substrate,
          insertion_substrate=ev.insertion_substrate) for m in methods},
      "rows": {m: [] for m in methods}, "times": {m: [] for m in methods},
      "saved": {"image": [], "image_index": [], "class_id": [], **{m: [] for m in methods}},
      "figures": [], "num_images": 0, "num_pairs": 0, "top1_true": 0, "centre_hits": [],
      "tolerance": ctx["settings"]["tolerance"]}


def _explain_and_score_batch(config, ctx: dict, state: dict, batch: dict, bar) -> None:
  """Maps of every method for each image of ``batch``, scored at once (memory O(batch))."""
  d, ev = config.data, config.eval
  images = np.asarray(batch["image"], np.float32)
  labels = np.asarray(batch["label"])
  if images.shape[1:] != (d.image_size, d.image_size, 3):
    raise ValueError(f"test images must be [B, {d.image_size}, {d.image_size}, 3], got "
                     f"{list(images.shape)}")
  probs = np.asarray(ctx["probs_fn"](jnp.asarray(images))) if ev.classes == "top1" else None
  for b, ids in enumerate(pair_classes(labels, probs, ev.classes)):
    index = state["num_images"]
    state["num_images"] += 1
    bar.update(1)
    if not ids.size:
      continue
    maps = _explain_image(ctx, state, images[b], ids, index)
    _score_image(config, state, batch, b, images[b], labels[b], ids, index, maps)


def _explain_image(ctx: dict, state: dict, image, ids, index: int) -> dict[str, np.ndarray]:
  maps = {}
  for name, fn in ctx["methods"].items():
    t0 = time.perf_counter()
    maps[name] = np.asarray(fn(image, ids, index), np.float32)
    state["times"][name].append(time.perf_counter() - t0)
    if not np.all(np.isfinite(maps[name])):
      raise FloatingPointError(f"{name} returned NaN or inf maps for image {index}")
  return maps


def _score_image(config, state: dict, batch: dict, b: int, image, label, ids, index: int,
                 maps: dict) -> None:
  ev = config.eval
  metrics, saved = tuple(ev.metrics), state["saved"]
  present = int((label > 0).sum())
  for k, c in enumerate(ids):
    state["num_pairs"] += 1
    if "pointing" in metrics:
      state["centre_hits"].append(pointing.centre_hit(batch["gt"][b, :, :, c], image.shape[:2],
                                                      tolerance=state["tolerance"]))
    hit_true = bool(label[c] > 0)
    state["top1_true"] += hit_true
    for name in maps:
      sal = maps[name][k]
      row = {"image": index, "class": int(c)}
      if ev.classes == "top1":
        row["top1_is_true"] = int(hit_true)
      if "pointing" in metrics:
        row["pointing_hit"] = state["games"][name].update(sal, batch["gt"][b, :, :, c], int(c),
                                                          num_present=present)
      state["rows"][name].append(row)
      if "deletion" in metrics or "insertion" in metrics:
        state["scorers"][name].add(image, sal, c)
    if len(saved["class_id"]) < ev.save_maps:
      saved["image"].append(image)
      saved["image_index"].append(index)
      saved["class_id"].append(int(c))
      for name in maps:
        saved[name].append(maps[name][k])
  if len(state["figures"]) < ev.figure_images:
    gt = batch["gt"][b, :, :, ids[0]] if "gt" in batch else None
    state["figures"].append((index, int(ids[0]), image, {m: maps[m][0] for m in maps}, gt))


def _finish_scores(config, ctx: dict, state: dict):
  """Per-method :class:`rise_jax.evaluation.Results` and mean deletion/insertion curves."""
  metrics = tuple(config.eval.metrics)
  results_objs, curves = [], {"deletion": {}, "insertion": {}}
  for name in ctx["methods"]:
    scorer, rows = state["scorers"][name], state["rows"][name]
    scorer.flush()
    for mode in ("deletion", "insertion"):
      if mode in metrics:
        for row, a in zip(rows, scorer.auc[mode]):
          row[mode] = a
        curves[mode][name] = (scorer.curve_sum[mode] / state["num_pairs"]).tolist()
    game = state["games"][name].results() if "pointing" in metrics else None
    results_objs.append(evaluation.Results(name, rows, game))
  return results_objs, curves


def _column(res, key: str) -> np.ndarray:
  return np.asarray([r[key] for r in res.rows], np.float64)


def _evidence(config, results_objs, centre_hits: list[int]) -> tuple[dict, list[dict]]:
  """95% bootstrap CIs over images of every table entry, and the paper's orderings decided on
  paired differences (RISE vs Grad-CAM deletion and insertion, RISE vs centre pointing)."""
  metrics = tuple(config.eval.metrics)
  by_name = {res.name: res for res in results_objs}
  first = results_objs[0]
  image = _column(first, "image").astype(np.int64)
  cls = _column(first, "class").astype(np.int64)
  out: dict[str, dict] = {}
  for res in results_objs:
    out[res.name] = {m: evidence.ci(_column(res, m), image) for m in ("deletion", "insertion")
                     if m in metrics}
    if "pointing" in metrics:
      hits = _column(res, "pointing_hit")
      seen = hits >= 0
      out[res.name]["pointing"] = evidence.ci(hits[seen], image[seen], cls[seen])
  comparisons = []
  if "RISE" in by_name and "Grad-CAM" in by_name:
    for m, direction, word in (("deletion", "less", "below"), ("insertion", "greater", "above")):
      if m in metrics:
        comparisons.append(evidence.compare(
            f"RISE {m} AUC {word} Grad-CAM's (RISE Tab. 1)", _column(by_name["RISE"], m),
            _column(by_name["Grad-CAM"], m), direction=direction, names=("RISE", "Grad-CAM"),
            metric=m, groups=image))
  if "pointing" in metrics:
    centre = np.asarray(centre_hits, np.float64)
    seen = centre >= 0
    out["centre"] = {"pointing": evidence.ci(centre[seen], image[seen], cls[seen])}
    if "RISE" in by_name:
      comparisons.append(evidence.compare(
          "RISE pointing accuracy above the centre baseline (RISE Tab. 2)",
          _column(by_name["RISE"], "pointing_hit")[seen], centre[seen], direction="greater",
          names=("RISE", "centre"), metric="pointing", groups=image[seen],
          class_ids=cls[seen]))
  return out, comparisons


def _mean_after_first(t: list[float]) -> float:
  return float(np.mean(t[1:] if len(t) > 1 else t)) if t else float("nan")


def _assemble(config, results_objs, curves, st, clf_info, class_names, times, num_images,
              num_pairs, top1_true, cfg_dict, fingerprint) -> dict:
  ev, d = config.eval, config.data
  metrics = tuple(ev.metrics)
  table1, table2, summary, headline = {}, {}, {}, {}
  for res in results_objs:
    s = res.summary()
    summary[res.name] = s
    if "deletion" in metrics or "insertion" in metrics:
      table1[res.name] = {m: s.get(m, float("nan")) for m in ("deletion", "insertion")
                          if m in metrics}
      table1[res.name]["pairs"] = len(res.rows)
      for m in ("deletion", "insertion"):
        if m in metrics:
          headline[f"{m}/{res.name}"] = s[m]
    if res.pointing is not None:
      table2[res.name] = {"all": 100 * s["pointing_all"],
                          "difficult": 100 * s["pointing_difficult"],
                          "pairs": res.pointing["all"]["count"],
                          "difficult_pairs": res.pointing["difficult"]["count"]}
      headline[f"pointing/{res.name}"] = 100 * s["pointing_all"]
      headline[f"pointing_difficult/{res.name}"] = 100 * s["pointing_difficult"]
  if table2:
    first = results_objs[0]
    table2["centre"] = {"all": 100 * first.summary()["pointing_centre_all"],
                        "difficult": 100 * first.summary()["pointing_centre_difficult"],
                        "pairs": first.pointing["all"]["count"],
                        "difficult_pairs": first.pointing["difficult"]["count"]}
    headline["pointing/centre"] = table2["centre"]["all"]
    headline["pointing_difficult/centre"] = table2["centre"]["difficult"]
  arch = {"resnet50": "ResNet50", "vgg16": "VGG16"}.get(config.explanandum.get("arch", ""))
  r = config.rise
  return {
      "table1": table1, "table2": table2, "summary": summary, "headline": headline,
      "mean_curves": {k: v for k, v in curves.items() if v},
      "num_images": int(num_images), "num_pairs": int(num_pairs),
      "top1_is_true": (top1_true / num_pairs) if ev.classes == "top1" else None,
      "explanandum": clf_info, "class_names": class_names,
      "seconds": {f"{m}_per_image": _mean_after_first(t) for m, t in times.items()},
      "paper": {"architecture": arch, "table1": PAPER_TABLE1, "table2": PAPER_TABLE2,
                "torchray_table2": TORCHRAY_TABLE2},
      "settings": {
          "dataset": d.name, "image_size": int(d.image_size), "classes": ev.classes,
          "methods": list(ev.methods), "metrics": list(metrics),
          "output": config.explanandum.output,
          "explain_output": config.explanandum.explain_output,
          "paper_size": int(ev.paper_size), **st,
          "tolerance_at_paper_size": float(ev.tolerance),
          "occlusion_at_paper_size": {"window": int(config.occlusion.window),
                                      "stride": int(config.occlusion.stride)},
          "deletion_substrate": str(ev.deletion_substrate),
          "insertion_substrate": str(ev.insertion_substrate),
          "pointing_gt": d.get("pointing_gt", "masks"),
          "rise": {"num_masks": int(r.num_masks), "grid_size": r.grid_size, "p1": float(r.p1),
                   "seed": int(r.seed), "normalize": r.normalize, "substrate": str(r.substrate)},
          "gradcam_layer": config.gradcam.layer,
      },
      "config": cfg_dict, "fingerprint": fingerprint,
  }


# --------------------------------------------------------------------------------- outputs


_jsonable = evaluation.to_jsonable


def _fmt(v, digits: int = 4) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "-"
  return f"{v:.{digits}f}"


def tables_markdown(results: dict) -> str:
  """Markdown of the Table 1 and Table 2 analogues beside the paper's numbers, the per-method
  summary (:func:`rise_jax.evaluation.summary_markdown` columns) and the settings."""
  st = results["settings"]
  paper = results.get("paper", {})
  arch = paper.get("architecture")
  which = "top-1 predicted class" if st["classes"] == "top1" else "every true class"
  lines = ["## RISE paper tables (Petsiuk et al. 2018), our analogue", "",
           f"Dataset: {st['dataset']}, {results['num_images']} images, {results['num_pairs']} "
           f"(image, class) pairs ({which}); "
           f"{st['image_size']} px. The metrics score the classifier's {st['output']}; RISE "
           f"and occlusion explain its {st['explain_output']}. RISE: "
           f"N = {st['rise']['num_masks']}, s = {st['rise']['grid_size']}, "
           f"p1 = {st['rise']['p1']}. Settings scaled from {st['paper_size']} px by "
           f"{st['scale']:.4f}: occlusion window {st['window']} / stride {st['stride']} "
           f"(paper 64 / 8), pointing tolerance {st['tolerance']:.2f} px (15 at 224), "
           f"deletion/insertion step {st['step']} px (substrates: deletion "
           f"{st['deletion_substrate']}, insertion {st['insertion_substrate']}).", ""]
  if results.get("top1_is_true") is not None:
    lines += [f"Top-1 prediction is a true class on {100 * results['top1_is_true']:.1f}% of "
              "the images.", ""]
  if results["table1"]:
    lines += ["### Table 1 analogue: deletion (lower is better) and insertion (higher is "
              "better) AUC", "",
              "Mean [95% bootstrap CI over images].", "",
              "| method | Deletion ↓ | Insertion ↑ | pairs |", "|---|---|---|---|"]
    cis = results.get("ci", {})
    for name, row in results["table1"].items():
      c = cis.get(name, {})
      dl = evidence.fmt(c["deletion"], 4) if "deletion" in c else _fmt(row.get("deletion"))
      ins = evidence.fmt(c["insertion"], 4) if "insertion" in c else _fmt(row.get("insertion"))
      lines.append(f"| {name} | {dl} | {ins} | {row['pairs']} |")
    for net, rows in PAPER_TABLE1.items():
      mark = " (this setting)" if net == arch else ""
      for name, (dl, ins) in rows.items():
        lines.append(f"| paper ImageNet {net}{mark}: {name} | {dl:.4f} | {ins:.4f} | |")
    lines.append("")
  if results["table2"]:
    lines += ["### Table 2 analogue: pointing game accuracy (%), TorchRay protocol (per-class "
              "accuracy, mean over classes)", "",
              "Column \"all\": mean [95% bootstrap CI over images].", "",
              "| method | all | difficult | pairs (all / difficult) |", "|---|---|---|---|"]
    for name, row in results["table2"].items():
      label = "centre baseline" if name == "centre" else name
      c = results.get("ci", {}).get(name, {}).get("pointing")
      every = evidence.fmt(c, 2, 100.0) if c else _fmt(row["all"], 2)
      lines.append(f"| {label} | {every} | {_fmt(row['difficult'], 2)} | "
                   f"{row['pairs']} / {row['difficult_pairs']} |")
    for net, row in PAPER_TABLE2.items():
      mark = " (this setting)" if net == arch else ""
      lines.append(f"| paper RISE {net}{mark} | VOC07 {row['voc']:.2f}, COCO14 "
                   f"{row['coco']:.2f} | | |")
    for name, row in TORCHRAY_TABLE2.items():
      lines.append(f"| TorchRay re-run: {name} | VOC07 {row['voc']:.1f}, COCO14 "
                   f"{row['coco']:.1f} | | |")
    lines.append("")
  if results.get("comparisons"):
    lines += ["### The paper's orderings, decided on paired differences", "",
              *evidence.comparisons_markdown(results["comparisons"]), ""]
  if results.get("summary_table"):
    lines += ["### All summary figures per method (rise_jax.evaluation.summary_markdown)", "",
              results["summary_table"], ""]
  t = results["seconds"]
  lines.append("Seconds per image for the maps (first image, with compilation, excluded): "
               + ", ".join(f"{k[:-len('_per_image')]} {v:.3f}" for k, v in t.items()
                           if k.endswith("_per_image"))
               + (f"; whole run {t['total']:.1f} s." if "total" in t else "."))
  return "\n".join(lines) + "\n"


def _write_outputs(workdir: str, results: dict, results_objs, saved: dict, figures: list,
                   class_names) -> None:
  run_folder.write_text(os.path.join(workdir, "tables.md"), tables_markdown(results))
  cols = ["image", "class", "method", "deletion", "insertion", "pointing_hit", "top1_is_true"]
  with open(os.path.join(workdir, "pairs.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for res in results_objs:
      for row in res.rows:
        w.writerow({"method": res.name, **row})
  with open(os.path.join(workdir, "table.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "method", "deletion", "insertion", "pointing_all",
                "pointing_difficult", "pairs"])
    for name, s in results["summary"].items():
      t2 = results["table2"].get(name, {})
      w.writerow(["ours", name, s.get("deletion", ""), s.get("insertion", ""),
                  t2.get("all", ""), t2.get("difficult", ""), s["pairs"]])
    if "centre" in results["table2"]:
      c = results["table2"]["centre"]
      w.writerow(["ours", "centre", "", "", c["all"], c["difficult"], c["pairs"]])
    for net, rows in PAPER_TABLE1.items():
      for name, (dl, ins) in rows.items():
        w.writerow([f"paper ImageNet {net}", name, dl, ins, "", "", ""])
    for net, row in PAPER_TABLE2.items():
      for ds, v in row.items():
        w.writerow([f"paper {ds} {net}", "RISE", "", "", v, "", ""])
    for name, row in TORCHRAY_TABLE2.items():
      for ds, v in row.items():
        w.writerow([f"TorchRay {ds}", name, "", "", v, "", ""])
  if saved["class_id"]:
    np.savez_compressed(
        os.path.join(workdir, "maps.npz"), image=np.stack(saved["image"]),
        image_index=np.asarray(saved["image_index"], np.int64),
        class_id=np.asarray(saved["class_id"], np.int64),
        **{f"maps_{r.name}": np.stack(saved[r.name]) for r in results_objs})
  for index, c, image, maps, gt in figures:
    cname = class_names[c] if class_names and c < len(class_names) else str(c)
    safe = "".join(ch if ch.isalnum() else "_" for ch in cname)
    panels, titles = list(maps.values()), [f"{m} ({cname})" for m in maps]
    if gt is not None:
      panels.append(np.asarray(gt, np.float32))
      titles.append("pointing GT")
    viz.save_overlays(os.path.join(workdir, "figures", f"maps_image{index:05d}_{safe}.png"),
                      image, np.stack(panels), titles)
  for mode, per in results["mean_curves"].items():
    viz.save_curves(os.path.join(workdir, "figures", f"curves_{mode}.png"),
                    {m: np.asarray(c) for m, c in per.items()},
                    f"mean {mode} curve ({results['num_pairs']} pairs)")

