"""RISE for captioning (RISE paper, eq. 7) on the synthetic shapes scenes.

python -m experiments.explain_caption [--workdir=./runs/caption] [--num_masks=1000]
    [--num_explain=100] [--epochs=12] [--num_train=10000] [--image_size=64]

1. Trains the small attention captioner (:mod:`rise_jax.models.captioner`) on captioned scenes
   (:mod:`rise_jax.data.captions`), or loads it from ``WORKDIR/captioner`` when a finished run is
   there (a killed run resumes).
2. Captions the test images greedily; reports how often the caption names exactly the scene's
   shapes, and how often it is the reference caption word for word.
3. Explains every word of the generated caption of ``num_explain`` test images with
   :func:`rise_jax.caption.caption_rise` (one pass per image) and plays the pointing game for
   the nouns that name an object of the scene against its segmentation mask, beside the centre
   baseline.
4. Words not in the scene: the next-word distribution after "a" (the first noun slot) is
   explained for all six shape names at once (:func:`rise_jax.rise` on
   :func:`~rise_jax.models.captioner.next_word_fn`); the maps of shapes absent from the scene
   are compared with those of the leftmost shape (the caption's first noun) and of the other
   present shapes: probability on the unmasked image, map range (max - min), how often the
   maximum falls on an object pixel (chance: the object pixel fraction), and the pointing game
   against the shape's own object.

Writes ``WORKDIR/overlays/<i>.png`` (the image and one overlay per word, titled with the word
and its probability) for the first ``num_png`` images and ``WORKDIR/results.json``.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app, flags

import rise_jax
from rise_jax import caption as caption_lib, viz
from rise_jax.data import captions, synthetic
from rise_jax.metrics import pointing
from rise_jax.models import captioner as captioner_lib
from rise_jax.train import captioner as train_lib

_WORKDIR = flags.DEFINE_string("workdir", "./runs/caption", "Output folder.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Side of the synthetic images.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 10000, "Training scenes.")
_NUM_VAL = flags.DEFINE_integer("num_val", 300, "Validation scenes.")
_NUM_TEST = flags.DEFINE_integer("num_test", 300, "Test scenes captioned.")
_EPOCHS = flags.DEFINE_integer("epochs", 12, "Captioner training epochs.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Training batch size.")
_LR = flags.DEFINE_float("learning_rate", 3e-3, "Peak Adam learning rate.")
_NUM_EXPLAIN = flags.DEFINE_integer("num_explain", 100, "Test scenes explained with RISE.")
_NUM_MASKS = flags.DEFINE_integer("num_masks", 1000, "RISE masks per scene.")
_GRID = flags.DEFINE_integer("grid_size", 7, "RISE grid size.")
_RISE_BATCH = flags.DEFINE_integer("rise_batch_size", 250, "Masked images per forward pass.")
_TOLERANCE = flags.DEFINE_float(
    "tolerance", -1.0, "Pointing tolerance in pixels; < 0: 15 px scaled to the image size "
    "(15 * image_size / 224, the TorchRay tolerance for 224 px images).")
_NUM_PNG = flags.DEFINE_integer("num_png", 12, "Scenes written as overlay PNGs.")
_SEED = flags.DEFINE_integer("seed", 0, "Dataset, training and mask seed.")


def get_captioner(module, workdir: str, size: int) -> tuple[dict, dict]:
  """Loads the finished captioner run in ``workdir`` or trains (resumes) it there."""
  run = os.path.join(workdir, "captioner")
  try:
    variables = train_lib.load_captioner(run, module, (size, size, 3))
    with open(os.path.join(run, "history.json")) as f:
      history = json.load(f)
    if len(history) >= _EPOCHS.value:
      print(f"loaded the captioner from {run}")
      return variables, {"history": history, "cached": True}
  except FileNotFoundError:
    pass
  train = captions.make("train", _NUM_TRAIN.value, seed=_SEED.value, image_size=size)
  val = captions.make("val", _NUM_VAL.value, seed=_SEED.value, image_size=size)
  start = time.time()
  res = train_lib.fit_captioner(module, train, val, epochs=_EPOCHS.value,
                                batch_size=_BATCH.value, learning_rate=_LR.value,
                                seed=_SEED.value, workdir=run)
  return res["variables"], {"history": res["history"], "cached": False,
                            "train_seconds": time.time() - start}


def _stats(values: list[float]) -> dict:
  arr = np.asarray(values, np.float64)
  return {"mean": float(arr.mean()) if arr.size else None, "count": int(arr.size)}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  size = _IMAGE_SIZE.value
  workdir = _WORKDIR.value
  tolerance = _TOLERANCE.value if _TOLERANCE.value >= 0 else 15.0 * size / 224.0
  module = captioner_lib.Captioner()
  variables, train_info = get_captioner(module, workdir, size)
  history = train_info["history"]
  print(f"captioner: {len(history)} epochs, val loss {history[-1]['val_loss']:.4f}")

  # Greedy captions of the test set.
  test = captions.make("test", _NUM_TEST.value, seed=_SEED.value, image_size=size)
  pred = captioner_lib.greedy_decode(module, variables, test["image"])
  shapes_ok = train_lib.shape_set_correct(pred, test["label"])
  exact = np.asarray([captions.decode(p) == captions.decode(r)
                      for p, r in zip(pred, test["tokens"])])
  print(f"greedy captions: shapes correct {shapes_ok.mean():.3f}, exact {exact.mean():.3f} "
        f"({len(pred)} test scenes)")

  # Per-word RISE of the generated captions, pointing game for the nouns.
  fn = captioner_lib.caption_model_fn(module, variables)
  num_classes = len(synthetic.CLASS_NAMES)
  noun_ids = [captions.noun_id(c) for c in range(num_classes)]
  slot_fn = captioner_lib.next_word_fn(module, variables, [captions.WORD_TO_ID["a"]])
  key = jax.random.key(_SEED.value)
  game = pointing.PointingGame(num_classes, tolerance)
  game15 = pointing.PointingGame(num_classes, 15)
  hallucinated, per_image = 0, []
  slot_groups = {"leftmost": [], "other_present": [], "absent": []}
  rise_kw = dict(num_masks=_NUM_MASKS.value, grid_size=_GRID.value,
                 batch_size=_RISE_BATCH.value)
  start = time.time()
  num_explain = min(_NUM_EXPLAIN.value, len(pred))
  for i in range(num_explain):
    image, seg, labels = test["image"][i], test["segmentation"][i], test["label"][i]
    words = captions.words_of(pred[i])
    maps, info = caption_lib.caption_rise(fn, image, words, key, return_info=True, **rise_kw)
    maps = np.asarray(maps)
    record = {"caption": " ".join(captions.decode(pred[i])), "reference": test["caption"][i],
              "nouns": []}
    for k, t in enumerate(words):
      c = captions.noun_class(t)
      if c is None:
        continue
      if labels[c] > 0:
        res = game.update(maps[k], seg[..., c], c, num_present=int(labels.sum()))
        game15.update(maps[k], seg[..., c], c, num_present=int(labels.sum()))
      else:
        hallucinated, res = hallucinated + 1, -1
      record["nouns"].append({"word": captions.VOCAB[t], "position": k,
                              "prob": float(info.probs[k]), "hit": int(res),
                              "max_at": list(pointing.max_point(maps[k]))})
    # Words not in the scene: every shape name at the first noun slot ("a ___").
    slot_maps = np.asarray(rise_jax.rise(slot_fn, image, key, classes=noun_ids, **rise_kw))
    slot_probs = np.asarray(slot_fn(image[None]))[0, noun_ids]
    for c in range(num_classes):
      m = slot_maps[c]
      entry = {"prob": float(slot_probs[c]), "range": float(m.max() - m.min()),
               "max_on_an_object": bool(seg.any(-1)[pointing.max_point(m)]),
               "hit_own": pointing.pointing_game(m, seg[..., c], tolerance=tolerance)}
      group = ("absent" if labels[c] == 0 else
               "leftmost" if c == test["order"][i][0] else "other_present")
      slot_groups[group].append(entry)
    per_image.append(record)
    if i < _NUM_PNG.value:
      titles = [f"{captions.VOCAB[t]} {p:.2f}" for t, p in zip(words, info.probs)]
      viz.save_overlays(os.path.join(workdir, "overlays", f"{i:03d}.png"),
                        synthetic.denormalize(image), maps, titles)
  rise_seconds = time.time() - start
  object_fraction = float(test["segmentation"][:num_explain].any(-1).mean())

  res = game.results()
  res15 = game15.results()
  not_in_scene = {
      name: {"prob": _stats([e["prob"] for e in group]),
             "map_range": _stats([e["range"] for e in group]),
             "max_on_an_object_pixel": _stats([float(e["max_on_an_object"]) for e in group]),
             "pointing_own_object": _stats([float(e["hit_own"]) for e in group
                                            if e["hit_own"] >= 0])}
      for name, group in slot_groups.items()}
  summary = {
      "config": {"image_size": size, "num_train": _NUM_TRAIN.value, "epochs": _EPOCHS.value,
                 "num_test": len(pred), "num_explain": num_explain,
                 "num_masks": _NUM_MASKS.value, "grid_size": _GRID.value,
                 "tolerance": tolerance, "seed": _SEED.value},
      "training": {"cached": train_info["cached"],
                   "train_seconds": train_info.get("train_seconds"),
                   "final_val_loss": history[-1]["val_loss"],
                   "final_val_token_acc": history[-1]["val_token_acc"]},
      "captions": {"shapes_correct": float(shapes_ok.mean()), "exact": float(exact.mean())},
      "pointing": {"tolerance": tolerance,
                   "method": {"all": res["method"]["all"]["mean"],
                              "difficult": res["method"]["difficult"]["mean"],
                              "per_class": dict(zip(synthetic.CLASS_NAMES,
                                                    res["method"]["all"]["per_class"]))},
                   "centre": {"all": res["centre"]["all"]["mean"],
                              "difficult": res["centre"]["difficult"]["mean"]},
                   "count": res["method"]["all"]["count"],
                   "hallucinated_nouns": hallucinated},
      "pointing_15px": {"method": res15["method"]["all"]["mean"],
                        "centre": res15["centre"]["all"]["mean"]},
      "not_in_scene_first_slot": not_in_scene,
      "object_pixel_fraction": object_fraction,
      "rise_seconds": rise_seconds,
      "images": per_image,
  }
  os.makedirs(workdir, exist_ok=True)
  out = os.path.join(workdir, "results.json")
  with open(out, "w") as f:
    json.dump(summary, f, indent=2)
  print(f"pointing (tolerance {tolerance:.1f} px, {res['method']['all']['count']} nouns): "
        f"RISE {res['method']['all']['mean']:.3f} / centre {res['centre']['all']['mean']:.3f}; "
        f"difficult {res['method']['difficult']['mean']:.3f} / "
        f"{res['centre']['difficult']['mean']:.3f}; hallucinated nouns {hallucinated}")
  print(f"pointing (15 px): RISE {res15['method']['all']['mean']:.3f} / centre "
        f"{res15['centre']['all']['mean']:.3f}")
  print(f"object pixels: {object_fraction:.3f} of the image (chance of a maximum on one)")
  for name, s in not_in_scene.items():
    own = s["pointing_own_object"]["mean"]
    print(f"'a ___' slot, {name} shapes: P {s['prob']['mean']:.3f}, map range "
          f"{s['map_range']['mean']:.3f}, max on an object pixel "
          f"{s['max_on_an_object_pixel']['mean']:.3f}, pointing on its own object "
          f"{'-' if own is None else f'{own:.3f}'} (n={s['prob']['count']})")
  print(f"RISE time {rise_seconds:.1f} s for {num_explain} scenes; wrote {out}")


if __name__ == "__main__":
  app.run(main)
