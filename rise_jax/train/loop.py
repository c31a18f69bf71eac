"""The one epoch driver of rise_jax's trainers (:func:`run`).

:func:`rise_jax.train.classifier.fit`, :func:`rise_jax.explainer.train.train_explainer` and
:func:`rise_jax.train.captioner.fit_captioner` each build a state, a jitted step and a
validation function, and hand them to :func:`run`, which owns everything else:

* Epoch ``e`` visits the training set in the order ``permutation(fold_in(key, e))`` (the last
  partial batch is dropped); step ``s`` gets the key ``fold_in(fold_in(key, e), s)`` (dropout).
* After each epoch: validation, one history entry, the best state by a metric (a strict
  improvement, so of tied epochs the first), :func:`rise_jax.train.checkpoint.save_epoch`, and
  early stopping after ``patience`` epochs without improvement.
* Exact resume from the run folder (:func:`rise_jax.train.checkpoint.open_run`): a run killed
  at any point ends with exactly the result of an uninterrupted one.

Run folder safety (with a ``workdir``):

* ``train_fingerprint.json``: what the trained result depends on (the trainer's
  hyper-parameters and a SHA-256 of every input array, :func:`fingerprint`), recorded when the
  run starts. A run that finds a started run with another fingerprint refuses (a ValueError
  naming the differing entries) unless ``overwrite=True``, which clears the run and starts over.
* ``train.lock``: an exclusive ``flock`` held while the run uses the folder, so a second
  concurrent run on the folder fails at once (:class:`RunFolderBusy`) instead of interleaving
  its checkpoints. The kernel releases it when the process ends, however it ends; the (empty
  of meaning) file stays.
* Every JSON file is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import operator
import os
import re
import shutil
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from rise_jax.train import checkpoint

FINGERPRINT_FILE = "train_fingerprint.json"
LOCK_FILE = "train.lock"
HISTORY_FILE = "history.json"
CHECKPOINTS_DIR = "checkpoints"

# ``train_step(state, batch, rng) -> (state, loss)``: ``batch`` maps each name of ``data`` to
# its rows of the step; ``loss`` a scalar (the epoch's ``train_loss`` is the mean over steps).
TrainStep = Callable[[Any, dict[str, Any], jax.Array], tuple[Any, Any]]
# ``validate(state) -> {"val_loss": float, ...}``: the metrics of one history entry.
Validate = Callable[[Any], Mapping[str, Any]]


class RunFolderBusy(RuntimeError):
  """Another training run (another process, or another open file in this one) holds the run
  folder's lock."""


@dataclasses.dataclass(frozen=True)
class Result:
  """What :func:`run` returns.

  Attributes:
    state: The state after the last epoch (restored as is when nothing was left to train).
    best_state: The state of the best epoch by ``best_metric`` (``state`` before any epoch).
    history: One dict per finished epoch: ``{"epoch", "train_loss", **validate(state)}``.
    stopped_early: Training stopped (now or in an earlier run) after ``patience`` epochs
      without improvement.
  """

  state: Any
  best_state: Any
  history: list[dict]
  stopped_early: bool


# ----------------------------------------------------------------------------------------------
# Fingerprints.


def _describe(obj: Any) -> str:
  """A JSON stand-in for a non-JSON value (a module, a function, a dataclass): its repr without
  memory addresses (``<function f at 0x7f...>`` -> ``<function f>``)."""
  return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def digest(tree: Any) -> dict:
  """Content hash of an array or a pytree of arrays.

  Args:
    tree: An array (NumPy or JAX, fully addressable) or a pytree of them.

  Returns:
    ``{"sha256": hex digest of every leaf's path, shape, dtype and bytes}``, plus ``"shape"``
    and ``"dtype"`` for a single array or ``"leaves"`` (their number) for a pytree.
  """
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in leaves:
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.shape}|{a.dtype.str}|".encode())
    h.update(a.reshape(-1).view(np.uint8))
  out = {"sha256": h.hexdigest()}
  if len(leaves) == 1 and not leaves[0][0]:
    a = np.asarray(leaves[0][1])
    out.update(shape=list(a.shape), dtype=str(a.dtype))
  else:
    out["leaves"] = len(leaves)
  return out


def fingerprint(config: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict:
  """What a trained result depends on, as recorded in ``train_fingerprint.json``.

  Args:
    config: JSON-able hyper-parameters; other values (modules, functions, dataclasses) are
      recorded by their repr without memory addresses.
    arrays: Named arrays or pytrees of arrays (data, frozen variables), recorded by
      :func:`digest`. ``None`` entries are skipped.

  Returns:
    A JSON-able dict (as it reads back from JSON) with the entries of both.

  Raises:
    ValueError: A name is in both.
  """
  clash = sorted(set(config) & set(arrays))
  if clash:
    raise ValueError(f"fingerprint entries {clash} are both config and arrays")
  fp = {**config, **{k: digest(v) for k, v in arrays.items() if v is not None}}
  return json.loads(json.dumps(fp, sort_keys=True, default=_describe))


def _short(value: Any) -> str:
  if isinstance(value, dict) and "sha256" in value:
    where = {k: v for k, v in value.items() if k != "sha256"}
    return f"sha256 {value['sha256'][:12]} {where}"
  text = json.dumps(value)
  return text if len(text) <= 80 else text[:77] + "..."


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """The entries of two fingerprints that differ (or are in one only), sorted."""
  missing = object()
  return sorted(k for k in set(old) | set(new) if old.get(k, missing) != new.get(k, missing))


# ----------------------------------------------------------------------------------------------
# The run folder.


def _lock_name() -> str:
  i = jax.process_index()  # each process of a multi-process run holds its own lock
  return LOCK_FILE if i == 0 else f"{LOCK_FILE}.{i}"


@contextlib.contextmanager
def lock(workdir: str | os.PathLike, name: str | None = None) -> Iterator[str]:
  """Holds the exclusive lock of a run folder (created if missing) for the ``with`` block.

  Args:
    workdir: The run folder.
    name: The lock file's name (default: this process's training lock, ``train.lock``); the
      experiments' run folders use their own name, so that a stage and the training inside
      it each hold one.

  Yields:
    The lock file's path (it names the holder: process id and host).

  Raises:
    RunFolderBusy: Another process, or another open file of this one, holds the lock; raised at
      once, without waiting.
  """
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name or _lock_name())
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
      raise RunFolderBusy(
          f"the run folder {os.path.abspath(workdir)} is in use by another run "
          f"({holder}; lock {path}): wait for it to finish or use another workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    yield path
  finally:
    os.close(fd)  # releases the lock


def _started(workdir: str) -> bool:
  """Whether the folder holds a run's history or checkpoint steps."""
  if os.path.exists(os.path.join(workdir, HISTORY_FILE)):
    return True
  ckpts = os.path.join(workdir, CHECKPOINTS_DIR)
  return any(os.listdir(os.path.join(ckpts, d)) for d in ("latest", "best")
             if os.path.isdir(os.path.join(ckpts, d)))


def _clear(workdir: str, extra: Sequence[str]) -> None:
  for name in (CHECKPOINTS_DIR, HISTORY_FILE, f"{HISTORY_FILE}.tmp", *extra):
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)


def _read_fingerprint(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except ValueError:
    return {}  # unreadable: differs in every entry


def prepare(workdir: str, fp: dict, *, overwrite: bool = False,
            clear: Sequence[str] = ()) -> None:
  """Checks (or clears) a run folder against a fingerprint and records it.

  Call with the folder's :func:`lock` held. In a multi-process run only process 0 clears and
  records; every process checks, and all wait for each other before returning.

  Args:
    workdir: The run folder.
    fp: The new run's :func:`fingerprint`.
    overwrite: Clear a started run (``checkpoints/``, ``history.json`` and ``clear``) instead
      of resuming it, whatever its fingerprint.
    clear: Further names in the folder that the trainer writes (removed with ``overwrite``).

  Raises:
    ValueError: The folder holds a started run with another fingerprint (and not
      ``overwrite``); the message names the differing entries.
  """
  path = os.path.join(workdir, FINGERPRINT_FILE)
  primary = jax.process_index() == 0
  old = _read_fingerprint(path)
  if _started(workdir) and not overwrite:
    if old is None:
      warnings.warn(f"{workdir} holds a run without {FINGERPRINT_FILE} (written before runs "
                    "recorded one): resumed without checking its settings", stacklevel=3)
    elif old != fp:
      diff = differences(old, fp)
      detail = "; ".join(f"{k}: {_short(old.get(k))} -> {_short(fp.get(k))}" for k in diff[:8])
      raise ValueError(
          f"{workdir} holds a run trained with other settings (differs in {', '.join(diff)}: "
          f"{detail}); pass overwrite=True to discard it and train anew, or use another "
          "workdir")
  elif overwrite and primary and _started(workdir):
    _clear(workdir, clear)
  if primary and old != fp:
    checkpoint.write_json_atomic(path, fp)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"rise_jax.train.loop.prepare:{workdir}")


# ----------------------------------------------------------------------------------------------
# The driver.


def _epochs_since_best(history: list[dict], metric: str, mode: str) -> int:
  """Epochs after the first best one (``min``/``max`` of ``metric``; 0 without history)."""
  if not history:
    return 0
  pick = min if mode == "min" else max
  best = pick(range(len(history)), key=lambda i: history[i][metric])
  return len(history) - 1 - best


def _one_epoch(state: Any, train_step: TrainStep, data: Mapping[str, Any], epoch: int,
               batch_size: int, key: jax.Array) -> tuple[Any, float]:
  """One pass over ``data`` in the order of epoch ``epoch``; ``(state, mean step loss)``."""
  n = len(next(iter(data.values())))
  ekey = jax.random.fold_in(key, epoch)
  perm = jax.random.permutation(ekey, n)
  if any(isinstance(v, np.ndarray) for v in data.values()):
    perm = np.asarray(perm)  # host data (e.g. for a mesh): host indices
  losses = []
  for s in range(n // batch_size):
    idx = perm[s * batch_size:(s + 1) * batch_size]
    state, loss = train_step(state, {k: v[idx] for k, v in data.items()},
                             jax.random.fold_in(ekey, s))
    losses.append(loss)
  return state, float(np.mean(losses))


def _train(train_step: TrainStep, validate: Validate, data: Mapping[str, Any],
           run_folder: tuple, *, epochs: int, batch_size: int, key: jax.Array, best_metric: str,
           mode: str, patience: int | None, place_state: Callable, progress: bool,
           desc: str) -> Result:
  """The epochs of :func:`run` after the run folder is open."""
  latest, best, state, history, hist_path = run_folder
  state = place_state(state)
  best_state, best_value = checkpoint.best_so_far(best, state, history, best_metric, mode)
  better = operator.lt if mode == "min" else operator.gt

  def stopped():
    return patience is not None and _epochs_since_best(history, best_metric, mode) >= patience

  done = stopped()
  bar = tqdm.trange(int(state.epoch), epochs, desc=desc, disable=not progress or done)
  for epoch in bar:
    if done:
      break
    state, train_loss = _one_epoch(state, train_step, data, epoch, batch_size, key)
    state = state.replace(epoch=place_state(jnp.asarray(epoch + 1, jnp.int32)))
    metrics = dict(validate(state))
    history.append({"epoch": epoch + 1, "train_loss": train_loss, **metrics})
    value = metrics[best_metric]
    if better(value, best_value):
      best_state, best_value = state, value
    checkpoint.save_epoch(latest, best, epoch + 1, state, {best_metric: value}, history,
                          hist_path)
    if progress:
      bar.set_postfix(train=f"{train_loss:.4f}", **{best_metric: f"{value:.4f}"})
    done = stopped()
  return Result(state=state, best_state=best_state, history=history, stopped_early=done)


def _check_args(data: Mapping[str, Any], epochs: int, batch_size: int, mode: str,
                patience: int | None) -> None:
  if not data:
    raise ValueError("data must map at least one name to an array [N, ...]")
  sizes = {k: len(v) for k, v in data.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"every array of data must have the same number of rows, got {sizes}")
  n = next(iter(sizes.values()))
  for value, name, low, high in ((epochs, "epochs", 1, None), (batch_size, "batch_size", 1, n),
                                 (patience, "patience", 1, None)):
    if name == "patience" and value is None:
      continue
    if (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low
        or (high is not None and value > high)):
      bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
      raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
  if mode not in ("min", "max"):
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")


def run(state: Any, train_step: TrainStep, validate: Validate, data: Mapping[str, Any], *,
        epochs: int, batch_size: int, key: jax.Array, best_metric: str, mode: str,
        workdir: str | os.PathLike | None = None, patience: int | None = None,
        config: Mapping[str, Any] | None = None, inputs: Mapping[str, Any] | None = None,
        overwrite: bool = False, clear: Sequence[str] = (),
        finish: Callable[[Result], None] | None = None,
        place_state: Callable[[Any], Any] | None = None, progress: bool = True,
        desc: str = "epochs") -> Result:
  """Trains ``state`` for ``epochs`` epochs (see the module docstring), resumable in ``workdir``.

  Args:
    state: The initial state: a ``flax.struct`` dataclass with an int32 ``epoch`` field (the
      number of finished epochs) and whatever the step updates; the template for restoring.
    train_step: ``(state, batch, rng) -> (state, loss)`` (see :data:`TrainStep`).
    validate: ``state -> {best_metric: float, ...}`` (see :data:`Validate`).
    data: The training arrays by name, each with the N examples as rows (NumPy arrays are
      indexed on the host, e.g. for a mesh). They are part of the fingerprint.
    epochs: Total epochs, ``>= 1`` (a resumed run continues up to this number).
    batch_size: Examples per step, in ``[1, N]``.
    key: PRNG key of the data order and of each step's ``rng``.
    best_metric: Entry of ``validate``'s dict that picks the best epoch.
    mode: ``"min"`` or ``"max"`` for ``best_metric``.
    workdir: Run folder (``checkpoints/{latest,best}``, ``history.json``,
      ``train_fingerprint.json``, ``train.lock``); ``None`` trains in memory.
    patience: Stop after this many epochs without a better ``best_metric``; ``None`` never.
    config: JSON-able hyper-parameters the result depends on (for :func:`fingerprint`; with
      ``batch_size`` added). Leave out what only says when to stop (``epochs`` unless a
      schedule depends on it, ``patience``) so that a run can be extended.
    inputs: Further arrays or pytrees the result depends on (validation data, frozen or initial
      variables), for :func:`fingerprint`; ``data`` is added as ``train.<name>``.
    overwrite: Discard a started run in ``workdir`` and train anew (see :func:`prepare`).
    clear: Further names in ``workdir`` to remove with ``overwrite``.
    finish: Called with the result while the run folder is still locked (``workdir`` only),
      e.g. to export the best variables into it.
    place_state: Applied to the (restored) state and to each new ``epoch`` counter, e.g. to
      replicate them over a mesh; default the identity.
    progress: Show a progress bar.
    desc: Its label.

  Returns:
    The :class:`Result`.

  Raises:
    ValueError: For out-of-range arguments, or a started run in ``workdir`` with another
      fingerprint (see :func:`prepare`).
    RunFolderBusy: Another run holds ``workdir``.
  """
  _check_args(data, epochs, batch_size, mode, patience)
  kw = dict(epochs=epochs, batch_size=batch_size, key=key, best_metric=best_metric, mode=mode,
            patience=patience, place_state=place_state or (lambda t: t), progress=progress,
            desc=desc)
  if workdir is None:
    opened = checkpoint.open_run(None, state, best_metric=best_metric, best_mode=mode)
    return _train(train_step, validate, data, opened, **kw)
  workdir = os.fspath(workdir)
  arrays = {**{f"train.{k}": v for k, v in data.items()}, **(inputs or {})}
  fp = fingerprint({"batch_size": batch_size, **(config or {})}, arrays)
  with lock(workdir):
    prepare(workdir, fp, overwrite=overwrite, clear=clear)
    opened = checkpoint.open_run(workdir, state, best_metric=best_metric, best_mode=mode)
    try:
      result = _train(train_step, validate, data, opened, **kw)
      if finish is not None:
        finish(result)
    finally:
      for manager in opened[:2]:
        manager.close()
  return result
