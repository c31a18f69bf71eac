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
import math
import os
import time

import jax
import numpy as np
import tqdm

from experiments.tasks import datasets, evidence, explanandum, run_folder
from rise_jax import viz
from rise_jax.iassa import iassa, stage_feature_fn
from rise_jax.metrics import pointing, scoring
from rise_jax.metrics.scoring import CLASSES, METRICS
from rise_jax.rise import rise

LOWER_IS_BETTER = ("deletion",)
PAPER_SIZE = 224

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


def row_name(method: str, mix: str | None = None, k: int | None = None,
             region: str = "paper") -> str:
  """Table row label: ``"RISE"`` or ``"IASSA mix=paper region=paper k=15"``."""
  return method if mix is None else f"{method} mix={mix} region={region} k={k}"


def _variants(ic) -> list[tuple[str, str]]:
  """The ``(mix, region)`` combinations the config runs."""
  return [(mix, region) for mix in ic.mixes for region in ic.get("regions", ("paper",))]


def _variant(mix: str, region: str) -> str:
  return f"mix={mix} region={region}"


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
  lines += ["### Image level with 95% bootstrap CIs over images", "",
            "| method | Deletion ↓ | Insertion ↑ | F1 ↑ | IoU ↑ | Pointing ↑ |",
            "|---|---|---|---|---|---|"]
  for name, row in results.get("ci", {}).items():
    lines.append(f"| {name} | " + " | ".join(evidence.fmt(row[c], 4) for c in cols) + " |")
  lines += ["", "### IASSA against RISE and against its own first recorded iteration "
            "(paired differences, image level)", "",
            *evidence.comparisons_markdown(results.get("comparisons", []))]
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
  it = results["iassa_runs"]
  lines.append("Seconds: RISE {:.3f} per image; ".format(t["RISE_per_image"]) + "; ".join(
      f"IASSA {v} {t[f'IASSA {v} per_pair']:.3f} per pair" for v in it)
      + " (compilation excluded).")
  lines.append("IASSA windows sent through the black box per pair: " + "; ".join(
      f"{v} {it[v]['windows_per_pair']:.0f}" for v in it) + ".")
  best = results.get("best_mix")
  if best:
    lines.append(f"Better mix (mean image-level F1 + IoU over k): {best}.")
  return "\n".join(lines) + "\n"


def _write_csvs(results: dict, pairs_rows: list[dict], workdir: str) -> None:
  with open(os.path.join(workdir, "table.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["level", "method", "mix", "region", "k", *METRICS, "pointing_strict"])
    for level, rows in results["table"].items():
      for name, row in rows.items():
        method, mix, k, region = results["rows"][name]
        w.writerow([level, method, mix or "", region or "", "" if k is None else k,
                    *(f"{row[m]:.8g}" for m in METRICS + ("pointing_strict",))])
    for level, rows in PAPER_TABLE1.items():
      for method, row in rows.items():
        w.writerow([level, f"paper COCO {method}", "", "", 25 if method == "IASSA" else "",
                    *(f"{row[m]:.8g}" for m in METRICS), ""])
  with open(os.path.join(workdir, "pairs.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(pairs_rows[0]))
    w.writeheader()
    w.writerows(pairs_rows)


def _rise_maps(probs_fn, images: np.ndarray, pair_img: np.ndarray, pair_cls: np.ndarray, r,
               progress: bool) -> tuple[np.ndarray, float]:
  """RISE map of every pair ``float32[P, H, W]`` and seconds per image (compile excluded)."""
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
                pair_cls: np.ndarray, settings: dict, ic, mix: str, region: str,
                progress: bool) -> tuple[np.ndarray, dict]:
  """IASSA records ``float32[P, R, H, W]`` of every pair for one ``(mix, region)``, with run
  stats."""
  records, iters, windows, times = [], [], [], []
  for i, c in tqdm.tqdm(list(zip(pair_img, pair_cls)), desc=f"IASSA {_variant(mix, region)}",
                        disable=not progress, unit="pair"):
    start = time.perf_counter()
    res = iassa(probs_fn, feature_fn, images[i], class_id=int(c), window=settings["window"],
                stride=settings["stride"], window_step=settings["window_step"],
                stride_step=settings["stride_step"], beta=ic.beta, threshold=ic.threshold,
                max_iters=ic.max_iters, mix=mix, region=region,
                attention_scale=ic.attention_scale,
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
  regions = tuple(ic.get("regions", ("paper",)))
  if not regions or any(r not in ("paper", "code") for r in regions):
    raise ValueError(f"iassa.regions must be a non-empty subset of ('paper', 'code'), got "
                     f"{regions}")
  if not ic.mixes or any(m not in ("paper", "code") for m in ic.mixes):
    raise ValueError(f"iassa.mixes must be a non-empty subset of ('paper', 'code'), got "
                     f"{tuple(ic.mixes)}")


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs the IASSA Table 1 evaluation (see the module docstring) in ``workdir``.

  A rerun with the same config reuses the folder's results (:mod:`experiments.tasks.run_folder`).

  Args:
    config: An ``ml_collections`` config of ``configs/iassa.py``.
    workdir: Run folder.

  Returns:
    The results dict written to ``workdir/results.json``: ``table`` (``{"image"|"pixel":
    {row: {metric: value}}}``, rows ``"RISE"`` and ``"IASSA mix=<mix> k=<k>"``),
    ``vs_rise`` (paired image-level differences), ``settings``, ``seconds``, ``iassa_runs``,
    ``best_mix``, ``paper_table1`` and more.
  """
  _check_config(config)
  return run_folder.once(workdir, config, lambda: _evaluate(config, workdir))


def _evaluate(config, workdir: str) -> dict:
  data = _load(config, workdir)
  maps, rows, records, seconds, runs = _explain(config, data)
  data["rise_maps"] = maps["RISE"]
  scores, table, game = _score(config, data, maps)
  results = _assemble(config, data, rows, scores, table, game, seconds, runs)
  _report(config, workdir, data, results, scores, records)
  return results


def _load(config, workdir: str) -> dict:
  """The explanandum, test pairs, scaled settings and black boxes of the config."""
  ev, ic, d = config.eval, config.iassa, config.data
  model = explanandum.from_config(config, workdir)
  test, names = datasets.load_test(config)
  images = np.asarray(test["image"], np.float32)
  size = images.shape[1]
  if images.shape[1:3] != (d.image_size, d.image_size):
    raise ValueError(f"test images must be {d.image_size}x{d.image_size}, got "
                     f"{list(images.shape[1:3])}")
  pair_img, pair_cls = scoring.select_pairs(test["label"], ev.classes)
  if not pair_img.size:
    raise ValueError("no test image has a present class: nothing to explain")
  seg = np.asarray(test["segmentation"], bool)
  return {
      "model": model, "class_names": model.class_names or names, "images": images,
      "size": size, "labels": np.asarray(test["label"]), "pair_img": pair_img,
      "pair_cls": pair_cls, "gt": seg[pair_img, :, :, pair_cls],
      "pair_images": images[pair_img],
      "settings": scaled_iassa_settings(ic.window, ic.stride, ic.window_step, ic.stride_step,
                                        size, ev.paper_size, ic.get("scale")),
      "step": ev.get("step") or max(1, _round_half_up(PAPER_SIZE * size / ev.paper_size)),
      "tolerance": float(ev.tolerance) * size / ev.paper_size,
      "probs_fn": model.black_box(config.explanandum.output),
      "explain_fn": model.black_box(config.explanandum.explain_output),
      "feature_fn": stage_feature_fn(model.apply_fn, model.variables, tuple(ic.stages)),
  }


def _explain(config, data: dict):
  """RISE and IASSA maps of every pair: ``(maps, rows, records, seconds, runs)``."""
  ic = config.iassa
  maps, rows, seconds, runs, records = {}, {}, {}, {}, {}
  maps["RISE"], seconds["RISE_per_image"] = _rise_maps(
      data["explain_fn"], data["images"], data["pair_img"], data["pair_cls"], config.rise,
      config.progress)
  rows["RISE"] = ("RISE", None, None, None)
  for mix, region in _variants(ic):
    v = _variant(mix, region)
    rec, runs[v] = _iassa_maps(data["explain_fn"], data["feature_fn"], data["images"],
                               data["pair_img"], data["pair_cls"], data["settings"], ic, mix,
                               region, config.progress)
    records[v] = rec
    seconds[f"IASSA {v} per_pair"] = runs[v]["seconds_per_pair"]
    for j, k in enumerate(ic.record):
      name = row_name("IASSA", mix, int(k), region)
      maps[name], rows[name] = rec[:, j], ("IASSA", mix, int(k), region)
  return maps, rows, records, seconds, runs


def _score(config, data: dict, maps: dict):
  """Per-pair scores and the image/pixel-level table of every row, and the RISE pointing game
  (TorchRay's accumulator: its centre baseline and difficult subset)."""
  ev = config.eval
  game = pointing.PointingGame(int(config.data.num_classes), data["tolerance"])
  present = data["labels"][data["pair_img"]].sum(1)
  for m, g, c, n in zip(maps["RISE"], data["gt"], data["pair_cls"], present):
    game.update(m, g, int(c), num_present=int(n))
  scores, table = {}, {"image": {}, "pixel": {}}
  for name in tqdm.tqdm(maps, desc="metrics", disable=not config.progress, unit="row"):
    scores[name] = scoring.score_maps(
        data["probs_fn"], data["pair_images"], maps[name], data["gt"], data["pair_cls"],
        step=data["step"], tolerance=data["tolerance"], threshold=ev.threshold,
        deletion_substrate=ev.deletion_substrate, insertion_substrate=ev.insertion_substrate,
        batch_size=ev.batch_size, chunk=ev.chunk)
    summary = scoring.summarise(scores[name], data["pair_cls"])
    table["image"][name], table["pixel"][name] = summary["image"], summary["pixel"]
  return scores, table, game


def _settings(config, data: dict) -> dict:
  ev, ic = config.eval, config.iassa
  return {
      "dataset": config.data.name, "image_size": int(data["size"]), "classes": ev.classes,
      "output": config.explanandum.output,
      "explain_output": config.explanandum.explain_output, "paper_size": int(ev.paper_size),
      "step": int(data["step"]), "tolerance": data["tolerance"],
      "tolerance_at_paper_size": float(ev.tolerance), "threshold": float(ev.threshold),
      "deletion_substrate": str(ev.deletion_substrate),
      "insertion_substrate": str(ev.insertion_substrate),
      "rise": {k: config.rise[k] for k in ("num_masks", "grid_size", "p1", "seed")},
      "iassa": {**data["settings"],
                "paper": {"window": ic.window, "stride": ic.stride,
                          "window_step": ic.window_step, "stride_step": ic.stride_step},
                "beta": ic.beta, "threshold": ic.threshold, "max_iters": ic.max_iters,
                "record": [int(k) for k in ic.record], "mixes": list(ic.mixes),
                "regions": list(ic.get("regions", ("paper",))),
                "attention_scale": ic.attention_scale, "stages": list(ic.stages),
                "substrate": str(ic.substrate)},
  }


def _evidence(config, data: dict, scores: dict) -> tuple[dict, list[dict]]:
  """Image-level CIs of every row, and paired comparisons: each IASSA variant against RISE
  (F1, IoU) at every recorded k, and at its last recorded k against its first (does IASSA keep
  improving with iterations?)."""
  image, cls = data["pair_img"], data["pair_cls"]
  ci = {}
  for name, sc in scores.items():
    seen = sc["pointing"] >= 0
    ci[name] = {m: evidence.ci(sc[m], image) for m in ("deletion", "insertion", "f1", "iou")}
    ci[name]["pointing"] = evidence.ci(sc["pointing"][seen], image[seen], cls[seen])
  comparisons = []
  ks = [int(k) for k in config.iassa.record]
  for mix, region in _variants(config.iassa):
    for k in ks:
      name = row_name("IASSA", mix, k, region)
      for m, word in (("f1", "F1"), ("iou", "IoU")):
        comparisons.append(evidence.compare(
            f"{name}: {word} above RISE's (IASSA Tab. 1)", scores[name][m],
            scores["RISE"][m], direction="greater", names=(name, "RISE"), metric=m,
            groups=image, headline=k == ks[0]))
    if len(ks) > 1:
      first, last = row_name("IASSA", mix, ks[0], region), row_name("IASSA", mix, ks[-1], region)
      for m, word in (("f1", "F1"), ("iou", "IoU")):
        comparisons.append(evidence.compare(
            f"IASSA {_variant(mix, region)}: {word} at k={ks[-1]} above k={ks[0]} (keeps "
            "improving)", scores[last][m], scores[first][m], direction="greater",
            names=(last, first), metric=m, groups=image))
  return ci, comparisons


def _assemble(config, data, rows, scores, table, game, seconds, runs) -> dict:
  ic = config.iassa
  mix_score = {_variant(mix, region): float(np.mean(
      [table["image"][row_name("IASSA", mix, int(k), region)][m]
       for k in ic.record for m in ("f1", "iou")])) for mix, region in _variants(ic)}
  games = game.results()
  ci, comparisons = _evidence(config, data, scores)
  return {
      "table": table, "ci": ci, "comparisons": comparisons, "rows": rows,
      "best_mix": max(mix_score, key=mix_score.get) if len(mix_score) > 1 else None,
      "mix_f1_iou_mean": mix_score, "pointing_centre": games["centre"]["all"]["mean"],
      "pointing_difficult": {"RISE": games["difficult"]["mean"],
                             "centre": games["centre"]["difficult"]["mean"]},
      "num_images": int(np.unique(data["pair_img"]).size),
      "num_pairs": int(data["pair_img"].size), "seconds": seconds, "iassa_runs": runs,
      "explanandum": data["model"].info, "class_names": data["class_names"],
      "paper_table1": PAPER_TABLE1, "settings": _settings(config, data),
  }


def _report(config, workdir: str, data: dict, results: dict, scores: dict,
            records: dict) -> None:
  """``tables.md``, ``table.csv``, ``pairs.csv`` and ``iassa_maps.png``."""
  pair_img, pair_cls, names = data["pair_img"], data["pair_cls"], data["class_names"]
  pairs_rows = []
  for name, sc in scores.items():
    method, mix, k, region = results["rows"][name]
    for p in range(pair_img.size):
      pairs_rows.append({"image": int(pair_img[p]), "class": int(pair_cls[p]),
                         "method": method, "mix": mix or "", "region": region or "",
                         "k": "" if k is None else k,
                         **{m: float(sc[m][p]) for m in METRICS + ("pointing_strict",)},
                         "area": int(sc["area"][p])})
  run_folder.write_text(os.path.join(workdir, "tables.md"), tables_markdown(results))
  _write_csvs(results, pairs_rows, workdir)
  fig_rows, fig_idx = [], []
  for p in range(min(int(config.eval.figure_pairs), pair_img.size)):
    cname = names[pair_cls[p]] if names else str(pair_cls[p])
    for v in records:
      fig_rows.append((f"image {pair_img[p]}, {cname}, {v}",
                       np.concatenate([data["rise_maps"][p][None], records[v][p]])))
      fig_idx.append(p)
  if fig_rows:
    viz.save_map_grid(os.path.join(workdir, "iassa_maps.png"), data["pair_images"], data["gt"],
                      fig_rows, ["RISE", *(f"k = {int(k)}" for k in config.iassa.record)],
                      fig_idx)
