"""The one registry of experiment runners, used by the main job and by sweeps.

Each runner is ``train_and_evaluate(config, workdir) -> results``; it reuses its run folder
through :mod:`experiments.tasks.run_folder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from experiments.tasks import (
    caption,
    classifier,
    explainer,
    iassa_table,
    rise_tables,
    segmentation_rise,
)

# The main job's stages, in the order they run.
STAGES = ("classifier", "rise", "explainer", "segmentation_rise", "iassa", "caption")

RUNNERS: dict[str, Callable[[Any, str], dict]] = {
    "classifier": classifier.train_and_evaluate,
    "rise": rise_tables.train_and_evaluate,
    "explainer": explainer.train_and_evaluate,
    "explainer_paper": explainer.train_and_evaluate,
    "segmentation_rise": segmentation_rise.train_and_evaluate,
    "iassa": iassa_table.train_and_evaluate,
    "caption": caption.train_and_evaluate,
}


def resolve(name: str) -> Callable[[Any, str], dict]:
  """The runner of experiment ``name`` (see :data:`RUNNERS`)."""
  if name not in RUNNERS:
    raise ValueError(f"no runner for experiment {name!r}; known: {sorted(RUNNERS)}")
  return RUNNERS[name]


def jsonable_results(name: str, results: dict) -> dict:
  """A runner's results without the in-memory objects some return (the classifier's module
  and variables)."""
  if name == "classifier":
    return {k: v for k, v in results.items() if k not in ("module", "variables")}
  return results
