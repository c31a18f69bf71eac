"""The one Orbax wrapper: the rest of rise_jax never sees Orbax details.

* :func:`save_variables` / :func:`load_variables`: one pytree of model variables in a folder
  (converted weights, trained classifiers). Loading checks every leaf's shape against a
  template and names the first mismatch.
* :class:`Manager`: step-numbered training checkpoints (``CheckpointManager`` with
  ``StandardSave`` / ``StandardRestore``), keeping the last ``max_to_keep`` and optionally the
  best by a metric, resumable after a crash (Orbax writes each step to a temporary folder and
  renames it when complete, so a killed write never becomes the latest step).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _abs(path: str | os.PathLike) -> str:
  return os.path.abspath(os.fspath(path))


def save_variables(path: str | os.PathLike, variables: Any, *, force: bool = True) -> str:
  """Saves a pytree of arrays to the folder ``path`` (overwritten when ``force``)."""
  path = _abs(path)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, jax.tree.map(np.asarray, variables), force=force)
  return path


def _mismatch(template: Any, tree: Any) -> str | None:
  t_flat = jax.tree_util.tree_flatten_with_path(template)[0]
  r_flat = dict(jax.tree_util.tree_flatten_with_path(tree)[0])
  t_keys = {k for k, _ in t_flat}
  for k, v in t_flat:
    if k not in r_flat:
      return f"missing {jax.tree_util.keystr(k)} (expected shape {tuple(np.shape(v))})"
    if tuple(np.shape(r_flat[k])) != tuple(np.shape(v)):
      return (f"{jax.tree_util.keystr(k)} has shape {tuple(np.shape(r_flat[k]))}, the module "
              f"expects {tuple(np.shape(v))}")
  extra = [jax.tree_util.keystr(k) for k in r_flat if k not in t_keys]
  if extra:
    return f"unexpected entries {extra[:5]}"
  return None


def load_variables(path: str | os.PathLike, template: Any | None = None) -> Any:
  """Loads what :func:`save_variables` wrote.

  Args:
    path: The checkpoint folder.
    template: Optional pytree with the expected structure and shapes (e.g. ``module.init``
      output or its ``jax.eval_shape``); a checkpoint that does not match raises.

  Returns:
    The pytree of arrays.

  Raises:
    FileNotFoundError: No checkpoint at ``path``.
    ValueError: The checkpoint does not match ``template`` (names the first difference).
  """
  path = _abs(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no checkpoint folder at {path}")
  with ocp.StandardCheckpointer() as ckpt:
    tree = ckpt.restore(path)
  if template is not None:
    problem = _mismatch(template, tree)
    if problem:
      raise ValueError(f"checkpoint {path} does not match the module: {problem}")
  return tree


class Manager:
  """Training checkpoints in ``directory/<step>``.

  Args:
    directory: Folder of the run's checkpoints.
    max_to_keep: Keep at most this many (the newest, or the best with ``best_metric``).
    best_metric: Optional metric name; with it the kept checkpoints are the best ones.
    best_mode: ``"min"`` or ``"max"`` for ``best_metric``.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2,
               best_metric: str | None = None, best_mode: str = "min"):
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        best_fn=(lambda m: m[best_metric]) if best_metric else None,
        best_mode=best_mode, create=True)
    self._manager = ocp.CheckpointManager(_abs(directory), options=options)

  def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
    """Saves ``state`` (any pytree of arrays) as ``step`` and waits until it is complete."""
    self._manager.save(step, args=ocp.args.StandardSave(jax.tree.map(np.asarray, state)),
                       metrics=metrics)
    self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, template: Any, step: int | None = None) -> Any:
    """Restores ``step`` (default: the latest) into the structure of ``template``."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self._manager.directory}")
    return self._manager.restore(
        step, args=ocp.args.StandardRestore(jax.tree.map(np.asarray, template)))

  def close(self) -> None:
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_run(workdir: str | os.PathLike | None, state: Any, *, best_metric: str,
             best_mode: str) -> tuple[Manager | None, Manager | None, Any, list[dict], str | None]:
  """Opens a training run folder for exact resume.

  ``workdir/checkpoints/latest`` keeps the newest epoch, ``workdir/checkpoints/best`` the best
  by ``best_metric``; ``workdir/history.json`` holds one dict per finished epoch.

  Args:
    workdir: Run folder, or ``None`` for an in-memory run (no managers).
    state: Freshly initialised state (its ``epoch`` field counts finished epochs); the template
      for restoring.
    best_metric: Metric name the best checkpoint is chosen by.
    best_mode: ``"min"`` or ``"max"``.

  Returns:
    ``(latest, best, state, history, history_path)``: the state and history restored from the
    latest checkpoint when one exists, else the given state and ``[]``.
  """
  import json

  if workdir is None:
    return None, None, state, [], None
  os.makedirs(workdir, exist_ok=True)
  latest = Manager(os.path.join(workdir, "checkpoints", "latest"), max_to_keep=1)
  best = Manager(os.path.join(workdir, "checkpoints", "best"), max_to_keep=1,
                 best_metric=best_metric, best_mode=best_mode)
  hist_path = os.path.join(os.fspath(workdir), "history.json")
  history: list[dict] = []
  if latest.latest_step() is not None:
    state = jax.tree.map(jax.numpy.asarray, latest.restore(state))
    with open(hist_path) as f:
      history = json.load(f)[: int(state.epoch)]
  return latest, best, state, history, hist_path



def best_so_far(best: Manager | None, state: Any, history: list[dict], metric: str,
                mode: str) -> tuple[Any, float]:
  """The best state of a resumed run and its metric value (``state`` and +-inf when none).

  Args:
    best: The ``best`` manager of :func:`open_run` (or ``None`` for an in-memory run).
    state: The current state (the template for restoring).
    history: The run's history (one dict per epoch with ``"epoch"`` and ``metric``).
    metric: Name of the metric the best checkpoint is chosen by.
    mode: ``"min"`` or ``"max"``.

  Returns:
    ``(best_state, best_value)``.
  """
  worst = np.inf if mode == "min" else -np.inf
  if best is None or best.best_step() is None:
    return state, worst
  step = best.best_step()
  restored = jax.tree.map(jax.numpy.asarray, best.restore(state, step=step))
  pick = min if mode == "min" else max
  return restored, pick(h[metric] for h in history if h["epoch"] == step)

def save_epoch(latest: Manager | None, best: Manager | None, epoch: int, state: Any,
               metrics: dict[str, float], history: list[dict], history_path: str | None) -> None:
  """Writes one finished epoch of a run opened by :func:`open_run` (no-op without a workdir)."""
  import json

  if latest is None:
    return
  latest.save(epoch, state, metrics)
  best.save(epoch, state, metrics)
  with open(history_path, "w") as f:
    json.dump(history, f, indent=2)
