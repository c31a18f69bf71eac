"""RISE for captioning (RISE paper, eq. 7) on the synthetic shapes scenes.

:func:`train_and_evaluate` runs one config of ``configs/caption.py`` end to end
(``experiments/explain_caption.py`` only parses the flags):

1. Trains the small attention captioner (:mod:`rise_jax.models.captioner`) on captioned scenes
   (:mod:`rise_jax.data.captions`), or loads it from ``workdir/captioner`` when a finished run
   is there (a killed run resumes). ``workdir/captioner`` is a run folder
   (:mod:`experiments.tasks.run_folder`) of the config parts it was trained with (``seed``,
   ``data`` but ``num_test``, ``model``, ``train``); a rerun with other values raises instead
   of reusing or resuming the wrong captioner.
2. Captions the test images greedily; reports how often the caption names exactly the scene's
   shapes, and how often it is the reference caption word for word.
3. Explains every word of the generated caption of ``eval.num_explain`` test images with
   :func:`rise_jax.caption.caption_rise` (one pass per image) and plays the pointing game for
   the nouns that name an object of the scene against its segmentation mask, beside the centre
   baseline (nouns naming a shape absent from the scene are counted as hallucinated).
4. Words not in the scene: the next-word distribution after "a" (the first noun slot) is
   explained for all six shape names at once (:func:`rise_jax.rise` on
   :func:`~rise_jax.models.captioner.next_word_fn`); the maps of shapes absent from the scene
   are compared with those of the leftmost shape (the caption's first noun) and of the other
   present shapes: probability on the unmasked image, map range (max - min), how often the
   maximum falls on an object pixel (chance: the object pixel fraction), and the pointing game
   against the shape's own object.

Outputs under ``workdir``: ``results.json`` (see :func:`train_and_evaluate`), ``tables.md``
(:func:`tables_markdown`), ``training_curves.png`` (train / validation loss per epoch),
``overlays/<i>.png`` (the image and one overlay per word, titled with the word and its
probability) for the first ``eval.num_png`` images, and with ``eval.save_maps`` ``maps.npz``
(the scored noun maps and the slot maps, see :func:`train_and_evaluate`).

A rerun with the same config returns the stored ``results.json`` without loading the
captioner or running RISE (:mod:`experiments.tasks.run_folder`).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import tqdm

import rise_jax
from experiments.tasks import evidence, run_folder
from rise_jax import caption as caption_lib, viz
from rise_jax.data import captions, synthetic
from rise_jax.metrics import pointing
from rise_jax.models import captioner as captioner_lib
from rise_jax.train import captioner as train_lib

SLOT_GROUPS = ("leftmost", "other_present", "absent")
_SLOT_LABELS = {"leftmost": "leftmost (the caption's first noun)",
                "other_present": "other present shapes", "absent": "absent from the scene"}
CAPTIONER_DIR = "captioner"


def _jsonable(tree: Any) -> Any:
  """JSON-normalised copy (tuples become lists, as after a JSON round trip)."""
  return json.loads(json.dumps(tree))


def captioner_config(config) -> dict:
  """The config parts the trained captioner depends on (everything but ``data.num_test``)."""
  data = config.data.to_dict()
  data.pop("num_test", None)
  return _jsonable({"seed": config.seed, "data": data, "model": config.model.to_dict(),
                    "train": config.train.to_dict()})


def _int_at_least(value, name: str, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
    raise ValueError(f"config.{name} must be an integer >= {low}, got {value!r}")
  return int(value)


def check_config(config) -> None:
  """Validates a ``configs/caption.py`` config before anything is trained.

  Raises:
    ValueError: Naming the first bad entry (``config.<path>``), what is allowed and its value.
  """
  d, m, t, r, e = config.data, config.model, config.train, config.rise, config.eval
  _int_at_least(config.seed, "seed", 0)
  for name in ("num_train", "num_val", "num_test"):
    _int_at_least(d[name], f"data.{name}", 1)
  features = tuple(m.features) if isinstance(m.features, Sequence) else None
  if not features:
    raise ValueError(f"config.model.features must be a non-empty sequence of channel counts, "
                     f"got {m.features!r}")
  for f in features:
    _int_at_least(f, "model.features[i]", 1)
  pools = min(_int_at_least(m.num_pools, "model.num_pools", 0), len(features))
  for name in ("embed_dim", "hidden", "attn_dim"):
    _int_at_least(m[name], f"model.{name}", 1)
  _int_at_least(d.image_size, "data.image_size", max(8, 2 ** pools))
  _int_at_least(t.epochs, "train.epochs", 1)
  if _int_at_least(t.batch_size, "train.batch_size", 1) > d.num_train:
    raise ValueError(f"config.train.batch_size must be <= data.num_train ({d.num_train}), got "
                     f"{t.batch_size}")
  for name, low in (("learning_rate", None), ("bag_weight", 0.0)):
    v = t[name]
    ok = (not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
          and (v > 0 if low is None else v >= low))
    if not ok:
      raise ValueError(f"config.train.{name} must be a finite number "
                       f"{'> 0' if low is None else '>= 0'}, got {v!r}")
  _int_at_least(r.num_masks, "rise.num_masks", 1)
  if _int_at_least(r.grid_size, "rise.grid_size", 1) > d.image_size:
    raise ValueError(f"config.rise.grid_size must be <= data.image_size ({d.image_size}), got "
                     f"{r.grid_size}")
  _int_at_least(r.batch_size, "rise.batch_size", 1)
  if isinstance(r.p1, bool) or not isinstance(r.p1, numbers.Real) or not 0 < r.p1 < 1:
    raise ValueError(f"config.rise.p1 must be a number in (0, 1), got {r.p1!r}")
  _int_at_least(e.num_explain, "eval.num_explain", 1)
  _int_at_least(e.num_png, "eval.num_png", 0)
  tol = e.tolerance
  if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real)
                          or not math.isfinite(tol) or tol < 0):
    raise ValueError(f"config.eval.tolerance must be None (15 px scaled to the image) or a "
                     f"finite number >= 0 (pixels), got {tol!r}")


def build_module(config) -> captioner_lib.Captioner:
  """The :class:`~rise_jax.models.captioner.Captioner` of ``config.model``."""
  m = config.model
  return captioner_lib.Captioner(features=tuple(int(f) for f in m.features),
                                 num_pools=int(m.num_pools), embed_dim=int(m.embed_dim),
                                 hidden=int(m.hidden), attn_dim=int(m.attn_dim))


def load_or_train_captioner(config, module: captioner_lib.Captioner,
                            workdir: str) -> tuple[Any, dict]:
  """Loads the finished captioner run in ``workdir/captioner`` or trains (resumes) it there.

  Args:
    config: A ``configs/caption.py`` config.
    module: Its captioner (:func:`build_module`).
    workdir: The experiment's run folder.

  Returns:
    ``(variables, info)`` with ``info = {"history": [{"epoch", "train_loss", "val_loss",
    "val_token_acc"}], "cached": bool, "train_seconds": float (trained now) or None}``.

  Raises:
    ValueError: ``workdir/captioner`` holds a captioner trained with another config (the
      message names the differing entries), or one whose shapes do not match ``module``.
  """
  run = os.path.join(workdir, CAPTIONER_DIR)
  size = int(config.data.image_size)
  with run_folder.claim(run, captioner_config(config),
                        overwrite=bool(config.get("overwrite", False))) as claim:
    cached = claim.cached()
    if cached is not None:
      variables = train_lib.load_captioner(run, module, (size, size, 3))
      return variables, {"history": cached["history"], "cached": True, "train_seconds": None}
    d, t = config.data, config.train
    train = captions.make("train", d.num_train, seed=config.seed, image_size=size)
    val = captions.make("val", d.num_val, seed=config.seed, image_size=size)
    start = time.time()
    res = train_lib.fit_captioner(module, train, val, epochs=int(t.epochs),
                                  batch_size=t.batch_size, learning_rate=t.learning_rate,
                                  bag_weight=t.bag_weight, seed=config.seed, workdir=run,
                                  progress=config.progress)
    seconds = time.time() - start
    claim.done({"history": res["history"]}, seconds=seconds)
  return res["variables"], {"history": res["history"], "cached": False,
                            "train_seconds": seconds}


def _stats(values: list[float]) -> dict:
  arr = np.asarray(values, np.float64)
  return {"mean": float(arr.mean()) if arr.size else None, "count": int(arr.size)}


def slot_summary(slot_groups: dict[str, list[dict]]) -> dict:
  """Means of the "a ___" slot measurements per group (leftmost / other present / absent).

  Args:
    slot_groups: Group name -> entries ``{"prob", "range", "max_on_an_object", "hit_own"}``,
      one per (explained image, shape) in that group (``hit_own`` -1: no object pixel).

  Returns:
    Group -> ``{"prob", "map_range", "max_on_an_object_pixel", "pointing_own_object"}``, each
    ``{"mean" (None when empty), "count"}``.
  """
  return {
      name: {"prob": _stats([e["prob"] for e in group]),
             "map_range": _stats([e["range"] for e in group]),
             "max_on_an_object_pixel": _stats([float(e["max_on_an_object"]) for e in group]),
             "pointing_own_object": _stats([float(e["hit_own"]) for e in group
                                            if e["hit_own"] >= 0])}
      for name, group in slot_groups.items()}


def _fmt(v, digits: int = 3) -> str:
  if v is None:
    return "-"
  if isinstance(v, float) and math.isnan(v):
    return "nan"
  return f"{v:.{digits}f}"


def tables_markdown(results: dict) -> str:
  """Markdown of the caption accuracy, the noun pointing game (all / difficult, beside the
  centre baseline) and the "a ___" slot table of words not in the scene."""
  c, tr, p = results["config"], results["training"], results["pointing"]
  trained = ("reused from workdir/captioner" if tr["cached"] else
             f"trained in {tr['train_seconds']:.0f} s")
  lines = [
      "## RISE for captioning: synthetic shapes scenes", "",
      f"Captioner: {c['epochs']} epochs on {c['num_train']} scenes of {c['image_size']} px "
      f"({trained}; final validation loss {tr['final_val_loss']:.4f}, token accuracy "
      f"{tr['final_val_token_acc']:.4f}). RISE: {c['num_masks']} masks, grid {c['grid_size']}, "
      f"{c['num_explain']} of the {c['num_test']} test scenes explained; pointing tolerance "
      f"{c['tolerance']:.2f} px.", "",
      f"### Greedy captions ({c['num_test']} test scenes)", "",
      "| measure | value |", "|---|---|",
      f"| names exactly the scene's shapes | {_fmt(results['captions']['shapes_correct'])} |",
      f"| equals the reference caption | {_fmt(results['captions']['exact'])} |", "",
      "### Noun pointing game (nouns naming an object of the scene)", "",
      f"| method | all ({p['tolerance']:.2f} px) | difficult ({p['tolerance']:.2f} px) "
      "| all (15 px) |", "|---|---|---|---|",
      f"| RISE | {_fmt(p['method']['all'])} | {_fmt(p['method']['difficult'])} | "
      f"{_fmt(results['pointing_15px']['method'])} |",
      f"| centre | {_fmt(p['centre']['all'])} | {_fmt(p['centre']['difficult'])} | "
      f"{_fmt(results['pointing_15px']['centre'])} |", "",
      "All, with its 95% bootstrap CI over images: RISE "
      f"{evidence.fmt(results.get('pointing_ci', {}).get('method'))}, centre "
      f"{evidence.fmt(results.get('pointing_ci', {}).get('centre'))}.", "",
      *evidence.comparisons_markdown(results.get("comparisons", [])), "",
      f"{p['count']} nouns scored ({p.get('count_difficult', '-')} difficult: the object covers "
      f"< 1/4 of the image and the scene holds more than one); {p['hallucinated_nouns']} "
      "hallucinated nouns (a shape absent from the scene, not scored). Mean over classes of the "
      "per-class accuracy; RISE per class: "
      + ", ".join(f"{k} {_fmt(v)}" for k, v in p["method"]["per_class"].items()) + ".", "",
      "### Words not in the scene: the \"a ___\" slot (first noun), all shape names explained "
      "at once", "",
      "| shapes | n | P(word) | map range | max on an object pixel | pointing on its own object |",
      "|---|---|---|---|---|---|"]
  for name, s in results["not_in_scene_first_slot"].items():
    lines.append(f"| {_SLOT_LABELS.get(name, name)} | {s['prob']['count']} | "
                 f"{_fmt(s['prob']['mean'])} | {_fmt(s['map_range']['mean'], 4)} | "
                 f"{_fmt(s['max_on_an_object_pixel']['mean'])} | "
                 f"{_fmt(s['pointing_own_object']['mean'])} |")
  lines += ["", f"Chance of a maximum on an object pixel: {results['object_pixel_fraction']:.3f} "
            "(the object pixel fraction of the explained scenes).",
            f"RISE time: {results['rise_seconds']:.1f} s for {c['num_explain']} scenes "
            "(compilation included)."]
  return "\n".join(lines) + "\n"


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs the captioning experiment (see the module docstring); reruns reuse what they can.

  Args:
    config: A ``configs/caption.py`` config.
    workdir: Run folder (created if missing).

  Returns:
    The results dict written to ``workdir/results.json``:

    * ``config``: image size, training scenes, epochs, test / explained scenes, masks, grid,
      tolerance, seed.
    * ``training``: ``cached`` (captioner reused), ``train_seconds``, ``final_val_loss``,
      ``final_val_token_acc``, ``history`` (per epoch).
    * ``captions``: ``shapes_correct`` and ``exact`` fractions of the greedy test captions.
    * ``pointing``: ``tolerance``, ``method`` (RISE ``all``, ``difficult``, ``per_class``),
      ``centre`` (``all``, ``difficult``), ``count`` / ``count_difficult`` (scored nouns),
      ``hallucinated_nouns``; ``pointing_15px``: ``method`` / ``centre`` at 15 px.
    * ``not_in_scene_first_slot``: :func:`slot_summary` of the "a ___" slot maps;
      ``object_pixel_fraction``; ``rise_seconds``.
    * ``images``: per explained image its ``caption``, ``reference`` and ``nouns`` (``word``,
      ``position``, ``prob``, ``hit`` (1 / 0, -1 hallucinated), ``max_at``).
    * ``fingerprint``: the SHA-256 of the config (:func:`run_folder.config_fingerprint`).

    With ``eval.save_maps``, ``workdir/maps.npz`` holds ``noun_maps`` float32[P, H, W] (the P
    scored nouns in order), ``noun_image`` / ``noun_class`` / ``noun_position`` /
    ``noun_num_present`` int[P] and ``slot_maps`` float32[N, 6, H, W] (the "a ___" maps of the
    N explained images, one per shape).

  Raises:
    ValueError: A bad config entry (:func:`check_config`) or a captioner in
      ``workdir/captioner`` trained with another config.
  """
  check_config(config)
  return run_folder.once(workdir, config, lambda: _evaluate(config, workdir))


def _evaluate(config, workdir: str) -> dict:
  size, seed = int(config.data.image_size), int(config.seed)
  module = build_module(config)
  variables, train_info = load_or_train_captioner(config, module, workdir)
  # Greedy captions of the test set.
  test = captions.make("test", config.data.num_test, seed=seed, image_size=size)
  pred = captioner_lib.greedy_decode(module, variables, test["image"])
  explained = _explain(config, workdir, module, variables, test, pred)
  results = _assemble(config, train_info, test, pred, explained)
  if config.eval.save_maps:
    _save_maps(os.path.join(workdir, "maps.npz"), explained, size)
  run_folder.write_text(os.path.join(workdir, "tables.md"), tables_markdown(results))
  viz.save_training_curves(os.path.join(workdir, "training_curves.png"),
                           {"captioner": results["training"]["history"]})
  return results


def _tolerance(config) -> float:
  tol = config.eval.tolerance
  return float(tol) if tol is not None else 15.0 * int(config.data.image_size) / 224.0


def _explain(config, workdir: str, module, variables, test: dict, pred) -> dict:
  """Per-word RISE of the generated captions (pointing game for the nouns) and the maps of
  every shape name at the first noun slot ("a ___", words not in the scene)."""
  r, ev = config.rise, config.eval
  num_classes = len(synthetic.CLASS_NAMES)
  out = {"game": pointing.PointingGame(num_classes, _tolerance(config)),
         "game15": pointing.PointingGame(num_classes, 15), "hallucinated": 0, "images": [],
         "slot_groups": {g: [] for g in SLOT_GROUPS}, "noun_maps": [], "noun_meta": [],
         "slot_maps": [], "num_explain": min(int(ev.num_explain), len(pred)),
         "noun_hits": []}
  ctx = {"fn": captioner_lib.caption_model_fn(module, variables),
         "slot_fn": captioner_lib.next_word_fn(module, variables, [captions.WORD_TO_ID["a"]]),
         "noun_ids": [captions.noun_id(c) for c in range(num_classes)],
         "key": jax.random.key(int(config.seed)),
         "rise_kw": dict(num_masks=int(r.num_masks), grid_size=int(r.grid_size),
                         p1=float(r.p1), batch_size=int(r.batch_size))}
  start = time.time()
  for i in tqdm.trange(out["num_explain"], desc="caption RISE", unit="img",
                       disable=not config.progress):
    maps, words, probs = _explain_words(ctx, test, pred, i, out)
    _explain_slot(ctx, test, i, out, _tolerance(config))
    if i < ev.num_png:
      titles = [f"{captions.VOCAB[t]} {p:.2f}" for t, p in zip(words, probs)]
      viz.save_overlays(os.path.join(workdir, "overlays", f"{i:03d}.png"),
                        synthetic.denormalize(test["image"][i]), maps, titles)
  out["seconds"] = time.time() - start
  return out


def _explain_words(ctx: dict, test: dict, pred, i: int, out: dict):
  image, seg, labels = test["image"][i], test["segmentation"][i], test["label"][i]
  num_present = int(labels.sum())
  words = captions.words_of(pred[i])
  maps, info = caption_lib.caption_rise(ctx["fn"], image, words, ctx["key"], return_info=True,
                                        **ctx["rise_kw"])
  maps = np.asarray(maps)
  record = {"caption": " ".join(captions.decode(pred[i])), "reference": test["caption"][i],
            "nouns": []}
  for k, t in enumerate(words):
    c = captions.noun_class(t)
    if c is None:
      continue
    if labels[c] > 0:
      res = out["game"].update(maps[k], seg[..., c], c, num_present=num_present)
      if res >= 0:  # the pair for the CIs: (image, class, RISE hit, centre hit)
        out["noun_hits"].append((i, c, res, pointing.centre_hit(
            seg[..., c], seg.shape[:2], tolerance=out["game"].tolerance)))
      out["game15"].update(maps[k], seg[..., c], c, num_present=num_present)
      out["noun_maps"].append(maps[k])
      out["noun_meta"].append((i, c, k, num_present))
    else:
      out["hallucinated"], res = out["hallucinated"] + 1, -1
    record["nouns"].append({"word": captions.VOCAB[t], "position": k,
                            "prob": float(info.probs[k]), "hit": int(res),
                            "max_at": list(pointing.max_point(maps[k]))})
  out["images"].append(record)
  return maps, words, info.probs


def _explain_slot(ctx: dict, test: dict, i: int, out: dict, tolerance: float) -> None:
  image, seg, labels = test["image"][i], test["segmentation"][i], test["label"][i]
  slot_maps = np.asarray(rise_jax.rise(ctx["slot_fn"], image, ctx["key"],
                                       classes=ctx["noun_ids"], **ctx["rise_kw"]))
  slot_probs = np.asarray(ctx["slot_fn"](image[None]))[0, ctx["noun_ids"]]
  out["slot_maps"].append(slot_maps)
  for c in range(len(synthetic.CLASS_NAMES)):
    m = slot_maps[c]
    entry = {"prob": float(slot_probs[c]), "range": float(m.max() - m.min()),
             "max_on_an_object": bool(seg.any(-1)[pointing.max_point(m)]),
             "hit_own": pointing.pointing_game(m, seg[..., c], tolerance=tolerance)}
    group = ("absent" if labels[c] == 0 else
             "leftmost" if c == test["order"][i][0] else "other_present")
    out["slot_groups"][group].append(entry)


def _assemble(config, train_info: dict, test: dict, pred, ex: dict) -> dict:
  r, size = config.rise, int(config.data.image_size)
  history = train_info["history"]
  shapes_ok = train_lib.shape_set_correct(pred, test["label"])
  exact = np.asarray([captions.decode(p) == captions.decode(ref)
                      for p, ref in zip(pred, test["tokens"])])
  res, res15 = ex["game"].results(), ex["game15"].results()
  return {
      "config": {"image_size": size, "num_train": int(config.data.num_train),
                 "epochs": int(config.train.epochs), "num_test": len(pred),
                 "num_explain": ex["num_explain"], "num_masks": int(r.num_masks),
                 "grid_size": int(r.grid_size), "tolerance": _tolerance(config),
                 "seed": int(config.seed)},
      "training": {"cached": train_info["cached"],
                   "train_seconds": train_info["train_seconds"],
                   "final_val_loss": history[-1]["val_loss"],
                   "final_val_token_acc": history[-1]["val_token_acc"],
                   "history": history},
      "captions": {"shapes_correct": float(shapes_ok.mean()), "exact": float(exact.mean())},
      "pointing": {"tolerance": _tolerance(config),
                   "method": {"all": res["method"]["all"]["mean"],
                              "difficult": res["method"]["difficult"]["mean"],
                              "per_class": dict(zip(synthetic.CLASS_NAMES,
                                                    res["method"]["all"]["per_class"]))},
                   "centre": {"all": res["centre"]["all"]["mean"],
                              "difficult": res["centre"]["difficult"]["mean"]},
                   "count": res["method"]["all"]["count"],
                   "count_difficult": res["method"]["difficult"]["count"],
                   "hallucinated_nouns": ex["hallucinated"]},
      "pointing_15px": {"method": res15["method"]["all"]["mean"],
                        "centre": res15["centre"]["all"]["mean"]},
      "not_in_scene_first_slot": slot_summary(ex["slot_groups"]),
      "object_pixel_fraction": float(
          test["segmentation"][:ex["num_explain"]].any(-1).mean()),
      "rise_seconds": ex["seconds"],
      "images": ex["images"],
      **_evidence(ex["noun_hits"]),
      "fingerprint": run_folder.config_fingerprint(config)[1],
  }


def _evidence(noun_hits: list) -> dict:
  """CIs over images of the noun pointing accuracy (RISE and centre, mean of per-class means)
  and the paired comparison RISE vs centre."""
  h = np.asarray(noun_hits, np.float64).reshape(-1, 4)
  image, cls = h[:, 0].astype(np.int64), h[:, 1].astype(np.int64)
  ids = cls if cls.size else None
  return {"pointing_ci": {"method": evidence.ci(h[:, 2], image, ids),
                          "centre": evidence.ci(h[:, 3], image, ids)},
          "comparisons": [evidence.compare(
              "Captioning RISE: noun maps point at their object more often than the centre",
              h[:, 2], h[:, 3], direction="greater", names=("RISE", "centre"),
              metric="pointing", groups=image, class_ids=ids)]}


def _save_maps(path: str, ex: dict, size: int) -> None:
  meta = np.asarray(ex["noun_meta"], np.int64).reshape(-1, 4)
  np.savez_compressed(
      path, noun_maps=np.asarray(ex["noun_maps"], np.float32).reshape(-1, size, size),
      noun_image=meta[:, 0], noun_class=meta[:, 1], noun_position=meta[:, 2],
      noun_num_present=meta[:, 3], slot_maps=np.stack(ex["slot_maps"]).astype(np.float32))
