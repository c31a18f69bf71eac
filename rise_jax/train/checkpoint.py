"""The one Orbax wrapper: the rest of rise_jax never sees Orbax details.

* :func:`save_variables` / :func:`load_variables`: one pytree of model variables in a folder
  (converted weights, trained classifiers). Loading checks every leaf's shape against a
  template and names the first mismatch.
* :class:`Manager`: step-numbered training checkpoints (``CheckpointManager`` with
  ``StandardSave`` / ``StandardRestore``), keeping the last ``max_to_keep`` and optionally the
  best by a metric, resumable after a crash (Orbax writes each step to a temporary folder and
  renames it when complete, so a killed write never becomes the latest step; leftover temporary
  folders are removed when a manager opens the folder). Restoring "the latest" skips, with a
  warning, a newest step that does not restore (damaged in place, e.g. by a file system
  without atomic renames) and takes the newest one that does.
* :func:`open_run` / :func:`save_epoch` / :func:`best_so_far`: a training run folder
  (``checkpoints/latest``, ``checkpoints/best``, ``history.json``) that a SIGKILL at any point
  of :func:`save_epoch` leaves resumable with exactly the result of an uninterrupted run (the
  write order that guarantees it is explained there).
"""

from __future__ import annotations

import json
import operator
import os
import time
import warnings
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
    want, got = getattr(v, "dtype", None), getattr(r_flat[k], "dtype", None)
    if want is not None and got is not None and np.dtype(got) != np.dtype(want):
      return (f"{jax.tree_util.keystr(k)} has dtype {np.dtype(got)}, the module expects "
              f"{np.dtype(want)}")
  extra = [jax.tree_util.keystr(k) for k in r_flat if k not in t_keys]
  if extra:
    return f"unexpected entries {extra[:5]}"
  return None


def _not_finite(tree: Any) -> str | None:
  """The first floating-point leaf holding NaN or inf, described, or None."""
  for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]:
    arr = np.asarray(v)
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
      count = int(arr.size - np.count_nonzero(np.isfinite(arr)))
      return f"{jax.tree_util.keystr(k)} holds {count} NaN or inf value(s)"
  return None


def load_variables(path: str | os.PathLike, template: Any | None = None, *,
                   check_finite: bool = True) -> Any:
  """Loads what :func:`save_variables` wrote.

  Args:
    path: The checkpoint folder.
    template: Optional pytree with the expected structure, shapes and dtypes (e.g.
      ``module.init`` output or its ``jax.eval_shape``); a checkpoint that does not match
      raises.
    check_finite: Refuse floating-point leaves holding NaN or inf (a diverged or damaged
      checkpoint predicts NaN); ``False`` loads them anyway, e.g. to inspect them.

  Returns:
    The pytree of arrays.

  Raises:
    FileNotFoundError: No checkpoint at ``path``.
    ValueError: The checkpoint does not match ``template`` (names the first leaf whose
      presence, shape or dtype differs), or a leaf is not finite (names it).
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
  problem = _not_finite(tree) if check_finite else None
  if problem:
    raise ValueError(f"checkpoint {path} is not finite: {problem} (pass check_finite=False "
                     "to load it anyway)")
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
    self.directory = _abs(directory)
    self.best_metric, self.best_mode = best_metric, best_mode
    # cleanup_tmp_directories: a save killed mid-write leaves "<step>.orbax-checkpoint-tmp";
    # Orbax never lists it as a step, and this removes it when the folder is opened again.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        best_fn=(lambda m: m[best_metric]) if best_metric else None,
        best_mode=best_mode, create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

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
    """Restores ``step`` into the structure of ``template``.

    Args:
      template: Pytree with the structure, shapes and dtypes of the saved state.
      step: The step to restore (an error if it does not restore). Default: the newest step
        that restores cleanly; each newer step that does not is skipped with a warning naming
        it (it is left on disk).

    Returns:
      The restored pytree.

    Raises:
      FileNotFoundError: No checkpoint in the folder.
      ValueError: With ``step=None``, no step restores (each step's error is named).
    """
    if step is not None:
      return self._restore(step, template)
    if not self.all_steps():
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    return _restore_newest([(self, s) for s in self.all_steps()], template)[1]

  def _restore(self, step: int, template: Any) -> Any:
    return self._manager.restore(
        step, args=ocp.args.StandardRestore(jax.tree.map(np.asarray, template)))

  def set_aside(self, step: int) -> str | None:
    """Renames the folder of ``step`` to ``<step>.set-aside-<ns>`` (kept, no longer a step).

    For a step that must not be resumed from but would block saving ``step`` again.

    Returns:
      The new folder, or ``None`` when ``step`` has no folder.
    """
    path = os.path.join(self.directory, str(step))
    if not os.path.isdir(path):
      return None
    target = f"{path}.set-aside-{time.time_ns()}"
    os.rename(path, target)
    self._manager.reload()
    return target

  def close(self) -> None:
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _restore_newest(candidates: list[tuple[Manager, int]],
                    template: Any) -> tuple[int, Any, list[tuple[Manager, int]]]:
  """Restores the newest of ``(manager, step)`` candidates that restores cleanly.

  Candidates are tried by decreasing step (in the given order for equal steps); every one that
  raises is skipped with a warning naming its folder and step.

  Returns:
    ``(step, tree, skipped)`` with the skipped candidates.

  Raises:
    ValueError: None restores; the message names each step and its error.
  """
  order = sorted(range(len(candidates)), key=lambda i: (-candidates[i][1], i))
  failed = []
  for i in order:
    mgr, step = candidates[i]
    try:
      tree = mgr._restore(step, template)
    except Exception as e:  # any failure: damaged files, a wrong structure...
      failed.append((mgr, step, e))
      continue
    for m, s, e in failed:
      warnings.warn(f"checkpoint step {s} in {m.directory} does not restore ({_brief(e)}); "
                    f"skipped, restored step {step} of {mgr.directory} instead", stacklevel=3)
    return step, tree, [(m, s) for m, s, _ in failed]
  where = sorted({m.directory for m, _ in candidates})
  raise ValueError(f"no readable checkpoint in {', '.join(where)}: "
                   + "; ".join(f"{m.directory} step {s}: {_brief(e)}" for m, s, e in failed)
                   ) from failed[0][2]


def _brief(error: Exception) -> str:
  return f"{type(error).__name__}: {str(error)[:300]}"


def _first_best(history: list[dict], metric: str, mode: str) -> tuple[int | None, float]:
  """``(epoch, value)`` of the best ``metric`` in ``history`` as the trainers track it.

  Strict improvements from the worst value (+-inf): of tied epochs the first is the best, and
  NaN never is. ``(None, worst)`` when no epoch qualifies.
  """
  better = operator.lt if mode == "min" else operator.gt
  epoch, value = None, (np.inf if mode == "min" else -np.inf)
  for h in history:
    if better(h[metric], value):
      epoch, value = h["epoch"], h[metric]
  return epoch, value


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON to ``path`` through ``path.tmp``, fsync and a rename: ``path`` is
  never a half-written file (the folder is fsynced too, so the rename survives a power cut)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _read_history(path: str) -> list[dict]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} is missing, but its run folder holds checkpoints: the "
                            "run cannot be resumed exactly (move the folder away to restart)")
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON ({e}): the run cannot be resumed exactly (move "
                     "the folder away to restart)") from e


def open_run(workdir: str | os.PathLike | None, state: Any, *, best_metric: str,
             best_mode: str) -> tuple[Manager | None, Manager | None, Any, list[dict], str | None]:
  """Opens a training run folder for exact resume.

  ``workdir/checkpoints/latest`` keeps the newest epoch, ``workdir/checkpoints/best`` the best
  by ``best_metric``; ``workdir/history.json`` holds one dict per finished epoch.

  The run resumes from the newest epoch that both restores cleanly and is recorded in
  ``history.json``: normally ``latest``; if that step is damaged (or lies beyond the history,
  as a run written before the current :func:`save_epoch` order may leave it), the same or an
  older epoch of ``best``, with a warning. Steps newer than the resumed epoch, and the ones that
  did not restore, are set aside (:meth:`Manager.set_aside`), since the resumed run saves those
  epochs again.

  Args:
    workdir: Run folder, or ``None`` for an in-memory run (no managers).
    state: Freshly initialised state (its ``epoch`` field counts finished epochs); the template
      for restoring.
    best_metric: Metric name the best checkpoint is chosen by.
    best_mode: ``"min"`` or ``"max"``.

  Returns:
    ``(latest, best, state, history, history_path)``: the state and history restored from the
    newest usable checkpoint when one exists, else the given state and ``[]``.

  Raises:
    FileNotFoundError, ValueError: Checkpoints exist but ``history.json`` is missing or not
      valid JSON, or no checkpoint recorded in it restores.
  """
  if workdir is None:
    return None, None, state, [], None
  os.makedirs(workdir, exist_ok=True)
  latest = Manager(os.path.join(workdir, "checkpoints", "latest"), max_to_keep=1)
  best = Manager(os.path.join(workdir, "checkpoints", "best"), max_to_keep=1,
                 best_metric=best_metric, best_mode=best_mode)
  hist_path = os.path.join(os.fspath(workdir), "history.json")
  history: list[dict] = []
  steps = [(m, s) for m in (latest, best) for s in m.all_steps()]
  if steps:
    history = _read_history(hist_path)
    usable = [(m, s) for m, s in steps if s <= len(history)]
    for m, s in steps:
      if s > len(history):
        warnings.warn(f"checkpoint step {s} in {m.directory} is not recorded in {hist_path} "
                      f"({len(history)} epochs); not resumed from", stacklevel=2)
    if not usable:
      raise ValueError(f"no checkpoint in {workdir}/checkpoints is recorded in {hist_path} "
                       f"({len(history)} epochs): the run cannot be resumed exactly")
    step, restored, skipped = _restore_newest(usable, state)
    for m, s in skipped + [(m, s) for m, s in steps if s > step]:
      m.set_aside(s)
    state = jax.tree.map(jax.numpy.asarray, restored)
    history = history[: int(state.epoch)]
  return latest, best, state, history, hist_path


def best_so_far(best: Manager | None, state: Any, history: list[dict], metric: str,
                mode: str) -> tuple[Any, float]:
  """The best state of a resumed run and its metric value (``state`` and +-inf when none).

  The best epoch is the one the trainer would have picked from ``history`` (the first strict
  improvement, see :func:`_first_best`). When ``best`` lacks it and it is the resumed epoch
  itself (the run was killed after ``latest`` of that epoch was complete but before ``best``
  was), ``state`` is that best and is saved to ``best`` now.

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
  if best is None:
    return state, worst
  epoch, value = _first_best(history, metric, mode)
  if epoch is None:
    return state, worst
  if epoch in best.all_steps():
    return jax.tree.map(jax.numpy.asarray, best.restore(state, step=epoch)), value
  if epoch == int(state.epoch):
    best.save(epoch, state, {metric: value})
    return state, value
  # Not reachable with runs written by save_epoch; older ones saved every epoch to ``best``,
  # where Orbax kept the later of tied epochs.
  step = best.best_step()
  warnings.warn(f"the best epoch {epoch} of {metric} has no checkpoint in {best.directory}; "
                f"using step {step}", stacklevel=2)
  if step is None:
    return state, worst
  restored = jax.tree.map(jax.numpy.asarray, best.restore(state, step=step))
  return restored, next(h[metric] for h in history if h["epoch"] == step)


def save_epoch(latest: Manager | None, best: Manager | None, epoch: int, state: Any,
               metrics: dict[str, float], history: list[dict], history_path: str | None) -> None:
  """Writes one finished epoch of a run opened by :func:`open_run` (no-op without a workdir).

  The write order makes a SIGKILL anywhere in here resumable exactly:

  1. ``history.json`` (``history`` ends with this epoch), atomically (temporary file, rename):
     it may run ahead of the checkpoints, never behind; :func:`open_run` cuts it to the
     resumed epoch.
  2. ``latest/<epoch>``: the commit point. Before its rename completes, the run resumes from
     ``epoch - 1``.
  3. ``best/<epoch>``, only when this epoch is a new best by the trainers' rule (a strict
     improvement, so ties keep the earlier epoch, as the trainers do). Killed before it
     completes, the run resumes from ``latest/<epoch>`` and :func:`best_so_far` sees that
     ``epoch`` is the best and saves it then. (``best`` after ``latest``: saved first, a new
     best would delete the previous one while ``latest`` could still roll back before it.)
  """
  if latest is None:
    return
  write_json_atomic(history_path, history)
  latest.save(epoch, state, metrics)
  if best.best_metric is None or _first_best(history, best.best_metric,
                                             best.best_mode)[0] == epoch:
    best.save(epoch, state, metrics)
