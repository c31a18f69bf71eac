"""Run folders: the one place that decides whether a folder's results can be reused.

A run folder records, in ``run.json``, the fingerprint of everything its results depend on:
its config, which embeds every upstream stage's config (the explanandum's classifier, the
Explainer a Segmentation RISE stage explains). A run whose fingerprint equals the folder's
reuses its results; a different one is refused with the differing keys, unless the config asks
to start over (``overwrite=True``, which empties the folder). Results and markers are written
atomically (temp file, fsync, rename); the marker is set to ``"running"`` before a stage
(re)computes, so results of an interrupted run are never paired with a config; an undecodable
result file is treated as absent and recomputed, with a warning; a lock file makes a second
concurrent run on the same folder fail at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from rise_jax.train import checkpoint, loop

SKIP = ("progress", "workdir", "overwrite")  # entries that never change a run's results
MARKER = "run.json"
RESULTS = "results.json"
LOCK = ".run.lock"
_HELD: dict[str, int] = {}  # folder -> depth of this process's claims (re-entrant)


class RunFolderError(ValueError):
  """A run folder holds results of another configuration (and overwrite was not asked)."""


RunFolderBusy = loop.RunFolderBusy  # another process runs in the same folder


def _strip(d: Any) -> Any:
  if isinstance(d, dict):
    return {k: _strip(v) for k, v in d.items() if k not in SKIP}
  if isinstance(d, list | tuple):
    return [_strip(v) for v in d]
  return d


def config_fingerprint(config) -> tuple[dict, str]:
  """The config as a JSON-able dict without ``progress``/``workdir``/``overwrite`` (at any
  depth), and the SHA-256 of its sorted JSON: equal fingerprints give equal results."""
  d = _strip(config.to_dict() if hasattr(config, "to_dict") else dict(config))
  text = json.dumps(d, sort_keys=True, default=str)
  return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out: dict[str, Any] = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out or {prefix: {}}
  return {prefix: tree}


def differing_keys(a: dict, b: dict) -> list[str]:
  """Dotted keys whose values differ between two nested dicts (missing on one side included)."""
  return loop.differences(_flatten(a), _flatten(b))


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (:func:`rise_jax.train.checkpoint.write_json_atomic`);
  NumPy scalars become floats."""
  checkpoint.write_json_atomic(path, json.loads(json.dumps(obj, default=float)))


def write_text(path: str, text: str) -> None:
  """Writes a text file atomically (temp file, fsync, rename)."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
  with os.fdopen(fd, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Any | None:
  """The decoded JSON file, ``None`` when it is missing; an undecodable (e.g. truncated) file
  is treated as missing, with a warning."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    warnings.warn(f"{path} is not valid JSON ({e}); treating it as absent and recomputing",
                  stacklevel=2)
    return None


@contextlib.contextmanager
def locked(folder: str) -> Iterator[None]:
  """Holds the run folder's lock (:func:`rise_jax.train.loop.lock`, file ``.run.lock``),
  re-entrant within one process (a runner claims its folder inside the main job's claim).

  Raises:
    RunFolderBusy: At once, when another process holds the folder's lock.
  """
  key = os.path.realpath(folder)
  if key in _HELD:
    _HELD[key] += 1
    try:
      yield
    finally:
      _HELD[key] -= 1
    return
  with loop.lock(folder, LOCK):
    _HELD[key] = 1
    try:
      yield
    finally:
      _HELD.pop(key, None)


def _clear(folder: str) -> None:
  """Empties ``folder`` but for its lock and nested run folders (each guards itself)."""
  for name in os.listdir(folder):
    path = os.path.join(folder, name)
    if name == LOCK or os.path.exists(os.path.join(path, MARKER)):
      continue
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def status(folder: str, config) -> str:
  """``"done"`` (finished with this config), ``"running"`` (started with this config, not
  finished), ``"other"`` (another config's folder) or ``"absent"``."""
  marker = read_json(os.path.join(folder, MARKER))
  if not isinstance(marker, dict) or "sha" not in marker:
    return "absent"
  if marker["sha"] != config_fingerprint(config)[1]:
    return "other"
  return "done" if marker.get("status") == "done" else "running"


class Claim:
  """A claimed run folder (see :func:`claim`): read cached results, or record new ones."""

  def __init__(self, folder: str, config_dict: dict, sha: str, cached: dict | None):
    self.folder, self.config, self.sha, self._cached = folder, config_dict, sha, cached

  def cached(self) -> dict | None:
    """The folder's results when it finished with this config (and they decode), else None."""
    return self._cached

  def done(self, results: dict, *, seconds: float | None = None) -> dict:
    """Writes ``results.json`` then marks the folder finished (both atomically)."""
    write_json(os.path.join(self.folder, RESULTS), results)
    write_json(os.path.join(self.folder, MARKER),
               {"sha": self.sha, "status": "done", "seconds": seconds, "config": self.config})
    return results


@contextlib.contextmanager
def claim(folder: str, config, *, overwrite: bool | None = None) -> Iterator[Claim]:
  """Locks ``folder`` and checks it against ``config``'s fingerprint.

  Same fingerprint and finished: :meth:`Claim.cached` returns its results. Same fingerprint,
  unfinished (or its results do not decode): the run continues there (a training run resumes
  its checkpoints). Another fingerprint: :class:`RunFolderError` naming the differing keys,
  unless ``overwrite`` (default: ``config.overwrite`` when the config has it), which empties
  the folder first (nested run folders, e.g. a trained classifier or captioner, stay: each is
  checked against its own config when it is used).

  Args:
    folder: The run folder (created if missing).
    config: The config (``ConfigDict`` or dict) the results depend on, with every upstream
      stage's config embedded.
    overwrite: Start over in a folder of another config.

  Yields:
    A :class:`Claim`; the folder stays locked until the ``with`` block ends.
  """
  if overwrite is None:
    overwrite = bool(config.get("overwrite", False)) if hasattr(config, "get") else False
  config_dict, sha = config_fingerprint(config)
  with locked(folder):
    marker_path = os.path.join(folder, MARKER)
    marker = read_json(marker_path)
    if isinstance(marker, dict) and marker.get("sha") not in (None, sha):
      if not overwrite:
        keys = differing_keys(marker.get("config", {}), config_dict)
        raise RunFolderError(
            f"run folder {folder} holds results of another configuration (differing keys: "
            f"{', '.join(keys[:12]) or 'unknown'}{' ...' if len(keys) > 12 else ''}); use "
            "another workdir, or pass --config.overwrite=True to start over there")
      _clear(folder)
      marker = None
    cached = None
    if isinstance(marker, dict) and marker.get("status") == "done":
      cached = read_json(os.path.join(folder, RESULTS))
    if cached is None:  # (re)computing: invalidate any earlier completion first
      write_json(marker_path, {"sha": sha, "status": "running", "config": config_dict})
    yield Claim(folder, config_dict, sha, cached)


def once(folder: str, config, compute: Callable[[], dict]) -> dict:
  """``compute()``'s results for ``config`` in ``folder``, reused when already finished there
  (see :func:`claim`); the computed results are recorded with the compute time."""
  with claim(folder, config) as c:
    cached = c.cached()
    if cached is not None:
      return cached
    start = time.perf_counter()
    results = compute()
    return c.done(results, seconds=time.perf_counter() - start)


def reuse_or_run(folder: str, config, compute: Callable[[], dict]) -> tuple[dict, bool]:
  """``(results, reused)``: the folder's results when it finished with ``config``, without
  calling ``compute``; else :func:`once` (which refuses a folder of another config)."""
  if status(folder, config) == "done":
    results = read_json(os.path.join(folder, RESULTS))
    if results is not None:
      return results, True
  return once(folder, config, compute), False
