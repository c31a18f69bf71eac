"""The synthetic classifier experiment: train the explanandum, evaluate its test mAP.

``python -m experiments.train_classifier`` and the main job's ``classifier`` stage call
:func:`train_and_evaluate`; every runner that explains the trained classifier loads it through
:mod:`experiments.tasks.explanandum`.
"""

from __future__ import annotations

import numpy as np
from flax import linen as nn

from experiments.tasks import run_folder
from rise_jax.data import synthetic
from rise_jax.metrics.classification import mean_average_precision
from rise_jax.models import common
from rise_jax.models.resnet import ResNet
from rise_jax.models.tiny import TinyCNN
from rise_jax.train.classifier import fit


def build_module(config) -> nn.Module:
  """The classifier module a config's ``model`` section names (``resnet`` or ``tiny``)."""
  m, num_classes = config.model, config.data.num_classes
  if m.name == "resnet":
    return ResNet(stage_sizes=tuple(m.stage_sizes), block=m.get("block", "basic"),
                  num_classes=num_classes, width=m.width, stem=m.get("stem", "imagenet"))
  if m.name == "tiny":
    return TinyCNN(num_classes=num_classes, features=tuple(m.features))
  raise ValueError(f"model.name must be 'resnet' or 'tiny', got {m.name!r}")


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the config's classifier on its dataset, evaluates test mAP, writes the run folder.

  Run folder: ``checkpoints/{latest,best}`` (Orbax; a rerun resumes or reuses them),
  ``history.json`` and ``results.json`` (test mAP, per-class AP, best epoch).

  Args:
    config: See ``configs/classifier.py``.
    workdir: The run folder.

  Returns:
    ``{"module", "variables" (best epoch), "test_map", "per_class_ap", "history"}``.
  """
  if config.data.name != "synthetic":
    raise ValueError(f"data.name must be 'synthetic' here, got {config.data.name!r} (real "
                     "datasets load through rise_jax.data.voc / coco / imagenet)")
  d = config.data
  kw = dict(seed=config.seed, image_size=d.image_size, num_classes=d.num_classes)
  module = build_module(config)
  with run_folder.claim(workdir, config) as claim:
    # fit resumes (or, when finished, reuses) the folder's checkpoints; the claim refuses a
    # folder of another config and records the results once they are complete.
    train = synthetic.make("train", d.num_train, **kw)
    out = fit(module, train, synthetic.make("val", d.num_val, **kw),
              epochs=config.train.epochs, batch_size=config.train.batch_size,
              learning_rate=config.train.learning_rate, seed=config.seed,
              head_only=config.train.head_only,
              schedule=config.train.get("schedule", "constant"), workdir=workdir,
              progress=config.progress,
              keep_masks=train["segmentation"].any(-1) if config.train.get("mask_prob") else None,
              mask_prob=config.train.get("mask_prob", 0.0))
    results = claim.cached()
    if results is None:
      results = claim.done(_evaluate(module, out, synthetic.make("test", d.num_test, **kw)))
  return {"module": module, "variables": out["variables"], **results}


def _evaluate(module: nn.Module, out: dict, test: dict) -> dict:
  scores = common.black_box(module.apply, out["variables"], "logits")
  logits = np.concatenate([np.asarray(scores(test["image"][i:i + 256]))
                           for i in range(0, len(test["image"]), 256)])
  test_map, per_class = mean_average_precision(logits, test["label"])
  return {"test_map": test_map, "per_class_ap": per_class.tolist(),
          "best_epoch": out["best_epoch"], "val_map": out["val_map"], "history": out["history"]}
