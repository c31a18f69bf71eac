"""The explanandum of an experiment config: the frozen classifier every method explains.

One loader for every runner: the synthetic classifier trained (or reused) in
``explanandum.classifier_dir``, or a registry architecture with its weights. Black boxes are
built by the library's one builder, :func:`rise_jax.models.common.black_box`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax

from experiments.tasks import classifier as classifier_task, run_folder
from rise_jax.data import synthetic
from rise_jax.models import common, registry

SOURCES = ("train", "registry")
_CLASSIFIERS: dict[tuple[str, str], tuple[Callable, Any, float]] = {}


@dataclasses.dataclass
class Explanandum:
  """A loaded explanandum.

  Attributes:
    apply_fn: ``apply_fn(variables, images) -> (logits, features)``.
    variables: Its frozen variables.
    class_names: Class names, or ``None`` when unknown.
    info: JSON-able provenance (source, classifier folder and test mAP, or arch and weights).
  """

  apply_fn: Callable
  variables: Any
  class_names: list[str] | None
  info: dict

  def black_box(self, output: str) -> Callable[[jax.Array], jax.Array]:
    """The jitted black box of this classifier's ``output`` (sigmoid, softmax or logits)."""
    return common.black_box(self.apply_fn, self.variables, output)


def _trained(config, workdir: str) -> Explanandum:
  e, d = config.explanandum, config.data
  c = e.classifier
  if d.name != "synthetic":
    raise ValueError(f"explanandum.source='train' trains the synthetic classifier; for "
                     f"data.name={d.name!r} set explanandum.source='registry' with "
                     "explanandum.arch and explanandum.weights")
  if (c.data.image_size, c.data.num_classes) != (d.image_size, d.num_classes):
    raise ValueError(
        f"data.image_size/num_classes ({d.image_size}, {d.num_classes}) must match the "
        f"classifier's ({c.data.image_size}, {c.data.num_classes})")
  folder = os.path.abspath(e.get("classifier_dir") or os.path.join(workdir, "classifier"))
  key = (folder, run_folder.config_fingerprint(c)[1])
  if key not in _CLASSIFIERS:  # a sweep's points share one classifier: load it once
    out = classifier_task.train_and_evaluate(c, folder)
    _CLASSIFIERS[key] = (out["module"].apply, out["variables"], float(out["test_map"]))
  apply_fn, variables, test_map = _CLASSIFIERS[key]
  return Explanandum(apply_fn, variables, list(synthetic.CLASS_NAMES[:d.num_classes]),
                     {"source": "train", "classifier_dir": folder, "test_map": test_map})


def _registry(config) -> Explanandum:
  e, d = config.explanandum, config.data
  if not e.arch:
    raise ValueError("explanandum.arch must name a registry architecture (e.g. 'resnet50')")
  size = registry.spec(e.arch).input_size
  if size != d.image_size:
    raise ValueError(f"data.image_size must be the architecture's input size {size} for "
                     f"{e.arch!r}, got {d.image_size}")
  clf = registry.load(e.arch, e.weights or None, num_classes=d.num_classes)
  names = list(clf.class_names) if clf.class_names else None
  return Explanandum(clf.module.apply, clf.variables, names,
                     {"source": "registry", "arch": e.arch, "weights": e.weights})


def from_config(config, workdir: str) -> Explanandum:
  """The frozen classifier of ``config.explanandum`` (trained or reused, or loaded).

  Args:
    config: An experiment config with ``explanandum`` and ``data`` sections.
    workdir: The experiment's run folder (default home of the trained classifier:
      ``workdir/classifier``).

  Returns:
    An :class:`Explanandum`.

  Raises:
    ValueError: For an unknown source, or a classifier that does not fit the data.
  """
  source = config.explanandum.source
  if source == "train":
    return _trained(config, workdir)
  if source == "registry":
    return _registry(config)
  raise ValueError(f"explanandum.source must be one of {SOURCES}, got {source!r}")
