"""The main job as a library function: synthetic data -> TinyCNN -> RISE -> figures + JSON.

``experiments/main.py`` only parses flags and calls :func:`run_demo`; tests call it directly
with the quick config.

Run folder layout (``workdir``)::

  classifier/params.msgpack   trained parameters (flax.serialization), reused on rerun
  classifier/fingerprint.json the config parts they were trained with (a mismatch retrains)
  figures/image_XXX.png       the image and one RISE overlay per explained class
  maps.npy                    float32[B, C, H, W] RISE maps of the test images (all classes)
  results.json                shapes, timings and the saliency-in-mask measurements

The measurement: for each explained image and true class ``c`` with ground-truth mask ``G``,
the fraction of saliency mass inside ``G``, ``sum(S * G) / sum(S)`` with ``S = S_c - min(S_c)``,
beside the area fraction ``mean(G)`` that a uniform map would score, and a pointing hit
(the argmax of ``S_c`` lies in ``G``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

import rise_jax
from rise_jax import viz
from rise_jax.data import synthetic
from rise_jax.models.tiny import TinyCNN
from rise_jax.train import classifier

_PARAMS_FILE = os.path.join("classifier", "params.msgpack")
_FINGERPRINT_FILE = os.path.join("classifier", "fingerprint.json")


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config entries that determine the trained parameters, JSON-normalised."""
  parts = {
    "seed": config.seed,
    "data": config.data.to_dict(),
    "model": config.model.to_dict(),
    "train": config.train.to_dict(),
  }
  parts["data"].pop("num_test", None)
  return json.loads(json.dumps(parts))


def _load_or_train(
  config: ml_collections.ConfigDict, workdir: str, module: TinyCNN, train: dict[str, np.ndarray]
) -> tuple[Any, bool]:
  """Returns ``(params, reused)``: cached parameters if the fingerprint matches, else trains."""
  params_path = os.path.join(workdir, _PARAMS_FILE)
  fp_path = os.path.join(workdir, _FINGERPRINT_FILE)
  fingerprint = _fingerprint(config)
  if os.path.exists(params_path) and os.path.exists(fp_path):
    with open(fp_path) as f:
      if json.load(f) == fingerprint:
        template = module.init(jax.random.key(0), train["image"][:1])
        with open(params_path, "rb") as g:
          return flax.serialization.from_bytes(template, g.read()), True
  params = classifier.train_classifier(
    module,
    train["image"],
    train["label"],
    steps=config.train.steps,
    batch_size=config.train.batch_size,
    learning_rate=config.train.learning_rate,
    seed=config.seed,
    progress=config.progress,
  )
  os.makedirs(os.path.dirname(params_path), exist_ok=True)
  with open(params_path, "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  with open(fp_path, "w") as f:
    json.dump(fingerprint, f, indent=2)
  return params, False


def _mass_in_mask(saliency: np.ndarray, mask: np.ndarray) -> float:
  """Fraction of the saliency mass above the map's minimum that lies inside ``mask``.

  RISE maps carry a large constant offset (the mean score), so the raw mass fraction is close
  to the area fraction for any map; measuring ``S - min(S)`` removes it. A constant map
  scores 0.
  """
  s = saliency - saliency.min()
  total = s.sum()
  return float((s * mask).sum() / total) if total > 0 else 0.0


def run_demo(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the main job and writes its run folder.

  Args:
    config: The config of ``configs/default.py``.
    workdir: Run folder; created if missing. Trained parameters cached there are reused when
      the data, model and training config are unchanged.

  Returns:
    The results dict, also written to ``workdir/results.json``. ``results["summary"]`` holds
    the headline numbers.

  Raises:
    ValueError: For an unsupported model name or ``rise.classes`` value.
  """
  if config.model.name != "TinyCNN":
    raise ValueError(f"model.name must be 'TinyCNN', got {config.model.name!r}")
  if config.rise.classes not in ("true", "all"):
    raise ValueError(f"rise.classes must be 'true' or 'all', got {config.rise.classes!r}")
  os.makedirs(workdir, exist_ok=True)
  names = synthetic.CLASS_NAMES[: config.data.num_classes]
  data_args = dict(
    seed=config.seed, image_size=config.data.image_size, num_classes=config.data.num_classes
  )
  train = synthetic.make("train", config.data.num_train, **data_args)
  test = synthetic.make("test", config.data.num_test, **data_args)

  module = TinyCNN(num_classes=config.data.num_classes, features=tuple(config.model.features))
  start = time.perf_counter()
  params, reused = _load_or_train(config, workdir, module, train)
  train_s = time.perf_counter() - start
  model_fn = classifier.black_box(module, params, output="sigmoid")
  probs = np.asarray(model_fn(test["image"]))

  start = time.perf_counter()
  maps = rise_jax.rise(
    model_fn,
    test["image"],
    jax.random.key(config.seed),
    num_masks=config.rise.num_masks,
    grid_size=config.rise.grid_size,
    p1=config.rise.p1,
    batch_size=config.rise.batch_size,
    substrate=config.rise.substrate,
  )
  maps = np.asarray(jax.block_until_ready(maps))  # float32[B, C, H, W]
  rise_s = time.perf_counter() - start
  np.save(os.path.join(workdir, "maps.npy"), maps)

  per_image, mass, area, hits = [], [], [], []
  figures_dir = os.path.join(workdir, "figures")
  for i in range(maps.shape[0]):
    true = [int(c) for c in np.flatnonzero(test["label"][i])]
    shown = true if config.rise.classes == "true" else list(range(len(names)))
    scores = []
    for c in true:
      gt = test["segmentation"][i, :, :, c]
      scores.append(
        {
          "class": c,
          "name": names[c],
          "probability": float(probs[i, c]),
          "mass_in_mask": _mass_in_mask(maps[i, c], gt),
          "mask_area_fraction": float(gt.mean()),
          "pointing_hit": bool(gt.flat[int(np.argmax(maps[i, c]))]),
        }
      )
      mass.append(scores[-1]["mass_in_mask"])
      area.append(scores[-1]["mask_area_fraction"])
      hits.append(scores[-1]["pointing_hit"])
    figure = viz.save_overlays(
      os.path.join(figures_dir, f"image_{i:03d}.png"),
      synthetic.denormalize(test["image"][i]),
      maps[i, shown],
      [f"{names[c]} p={probs[i, c]:.2f}" for c in shown],
    )
    per_image.append(
      {
        "index": i,
        "map_shape": list(maps[i].shape),
        "true_classes": true,
        "figure": os.path.relpath(figure, workdir),
        "classes": scores,
      }
    )

  summary = {
    "num_images": int(maps.shape[0]),
    "map_shape": list(maps.shape[1:]),
    "num_explained_classes": len(mass),
    "mean_mass_in_mask": float(np.mean(mass)),
    "mean_mask_area_fraction": float(np.mean(area)),
    "pointing_accuracy": float(np.mean(hits)),
    "test_label_accuracy": float(np.mean((probs > 0.5) == (test["label"] == 1))),
    "classifier_reused": reused,
    "classifier_seconds": train_s,
    "rise_seconds": rise_s,
    "rise_seconds_per_image": rise_s / maps.shape[0],
  }
  results = {"summary": summary, "config": config.to_dict(), "images": per_image}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=list)
  return results
