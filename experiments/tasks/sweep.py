"""Hyper-parameter sweeps over any experiment config: overrides, point names, combined tables.

A sweep is a base ``ml_collections`` config plus a list of override dicts (dotted key ->
value, e.g. ``{"rise.num_masks": 500, "rise.grid_size": 4}``), usually yielded by the config
module's ``sweep()``. :func:`run_sweep` runs the experiment once per point in
``workdir/<point name>`` and writes one combined table (``sweep.md``, ``sweep.csv``,
``sweep.json``) with a row per point: its overrides and the headline metrics of its results
(:func:`headline`). Finished points are reused through their run folders
(:mod:`experiments.tasks.run_folder`).

Which experiment runs is named by the config's ``experiment`` field (or, without one, by the
config file's stem) and looked up in :data:`experiments.tasks.runners.RUNNERS`.

Everything except :func:`run_sweep` and :func:`write_tables` is a pure function.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections
import tqdm

from experiments.tasks import run_folder, runners

_MAX_NAME = 120


def experiment_name(config, config_path: str | None = None) -> str:
  """The config's ``experiment`` field, else the stem of its file (``configs/iassa.py`` ->
  ``"iassa"``)."""
  name = config.get("experiment") if hasattr(config, "get") else None
  if name:
    return str(name)
  if not config_path:
    raise ValueError("the config has no 'experiment' field and no config file was given to "
                     f"name the experiment; known experiments: {sorted(runners.RUNNERS)}")
  return os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]


def resolve_runner(name: str) -> Callable[[Any, str], dict]:
  """The ``train_and_evaluate`` function of experiment ``name`` (see
  :data:`experiments.tasks.runners.RUNNERS`)."""
  return runners.resolve(name)


def load_sweep(config_path: str) -> Callable[..., Iterable[Mapping[str, Any]]]:
  """The ``sweep`` function of a config file (``path`` or ``path:arg``).

  Raises:
    ValueError: The file defines no ``sweep()``.
  """
  path = config_path.split(":")[0]
  spec = importlib.util.spec_from_file_location(
      "_sweep_config_" + os.path.splitext(os.path.basename(path))[0], path)
  if spec is None or spec.loader is None:
    raise ValueError(f"cannot load config file {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  fn = getattr(module, "sweep", None)
  if not callable(fn):
    raise ValueError(f"config file {path} defines no sweep() function: nothing to sweep")
  return fn


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
                    ) -> ml_collections.ConfigDict:
  """A copy of ``config`` with each dotted key set to its value.

  The config's own type checks apply (an int field takes an int, a float field an int or a
  float, a tuple field a list or tuple, ...); a bool is only accepted by a bool field (or one
  that is ``None``).

  Args:
    config: The base config (not modified).
    overrides: ``{"section.field": value}``; keys may be nested to any depth.

  Returns:
    The new config.

  Raises:
    KeyError: A key that names no field (the message names the key and the known fields).
    TypeError: A value of the wrong type (the message names the key).
  """
  out = copy.deepcopy(config)  # keeps typed FieldReferences (e.g. an int field set to None)
  for key, value in overrides.items():
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
      raise KeyError(f"override keys must be dotted field names like 'rise.num_masks', got "
                     f"{key!r}")
    parts = key.split(".")
    node = out
    for i, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        where = ".".join(parts[:i]) or "the config"
        known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise KeyError(f"unknown config key {key!r}: {where} has no field {part!r}"
                       + (f" (fields: {known})" if known else ""))
      if i < len(parts) - 1:
        node = node[part]
    old = node[parts[-1]]
    if isinstance(old, ml_collections.ConfigDict):
      raise TypeError(f"override {key!r} names a whole section; override its fields instead")
    if isinstance(value, bool) != isinstance(old, bool) and old is not None:
      raise TypeError(f"override {key!r}: {value!r} ({type(value).__name__}) does not fit the "
                      f"field's type {type(old).__name__}")
    try:
      node[parts[-1]] = value
    except (TypeError, ValueError) as e:
      raise TypeError(f"override {key!r}: {value!r} ({type(value).__name__}) does not fit the "
                      f"field's type {type(old).__name__}: {e}") from e
  return out


def _value_text(v: Any) -> str:
  if isinstance(v, list | tuple):
    return "+".join(_value_text(x) for x in v) or "none"
  if isinstance(v, float):
    return f"{v:g}"
  return str(v)


def point_name(overrides: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
  """A filesystem-safe folder name of a point: ``key-value`` parts joined by ``_``.

  Args:
    overrides: The point's overrides.
    keys: The keys to name it by (default all, in order); e.g. only the keys that vary
      between the points (:func:`varying_keys`).

  Returns:
    E.g. ``"rise.num_masks-500_rise.grid_size-4"`` (sequence values joined by ``+``);
    characters other than letters, digits, ``.``, ``_``, ``-``, ``+`` become ``-``;
    ``"base"`` for no keys; names longer than 120 characters are cut and end with a hash of
    the full name.
  """
  keys = list(overrides) if keys is None else [k for k in keys if k in overrides]
  if not keys:
    return "base"
  parts = [re.sub(r"[^A-Za-z0-9._+\-]", "-", f"{k}-{_value_text(overrides[k])}") for k in keys]
  name = "_".join(parts).strip(".") or "point"
  if len(name) > _MAX_NAME:
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    name = name[:_MAX_NAME - 11] + "-" + digest
  return name


def varying_keys(points: Sequence[Mapping[str, Any]]) -> list[str]:
  """Keys whose value differs between the points (or is missing in some), in first-seen
  order; all keys when there is a single point."""
  keys: list[str] = []
  for p in points:
    keys += [k for k in p if k not in keys]
  if len(points) <= 1:
    return keys

  def value(p, k):
    return json.dumps(p[k], sort_keys=True, default=str) if k in p else "<missing>"

  return [k for k in keys if len({value(p, k) for p in points}) > 1]


def point_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
  """Unique folder names of the points, named by the keys that vary between them (by all their
  keys when none varies); repeated names get ``_2``, ``_3``, ..."""
  keys = varying_keys(points) or list(dict.fromkeys(k for p in points for k in p))
  names = [point_name(p, keys) for p in points]
  seen: dict[str, int] = {}
  out = []
  for n in names:
    seen[n] = seen.get(n, 0) + 1
    out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
  return out


def _numeric(v) -> bool:
  return isinstance(v, int | float) and not isinstance(v, bool)


def _flatten(d: Mapping, prefix: str = "", depth: int = 3) -> dict[str, float]:
  out: dict[str, float] = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if _numeric(v):
      out[key] = float(v)
    elif isinstance(v, Mapping) and depth > 1:
      out.update(_flatten(v, key + "/", depth - 1))
  return out


def headline(results: Mapping[str, Any], experiment: str | None = None) -> dict[str, float]:
  """The headline numbers of an experiment's results as flat ``"metric/row"`` columns.

  * ``results["headline"]`` when present (the RISE tables: ``deletion/RISE``,
    ``insertion/Grad-CAM``, ``pointing/centre``, ...);
  * ``"iassa"``: the image-level Table 1 (``deletion/RISE``, ``iou/IASSA mix=paper k=25``);
  * ``"explainer"``: Table 2 (``acc/Explainer``, ``mae/0.5``, ...);
  * otherwise: every number in the results' nested dicts (up to 3 levels, lists skipped),
    except the ``config`` and ``settings`` entries.

  Args:
    results: The dict an experiment's ``train_and_evaluate`` returns.
    experiment: Its name (see :data:`RUNNERS`).

  Returns:
    ``{column: value}``.
  """
  if isinstance(results.get("headline"), Mapping):
    return {k: float(v) for k, v in results["headline"].items() if _numeric(v)}
  if experiment == "iassa" and "table" in results:
    return {f"{m}/{row}": float(v) for row, vals in results["table"]["image"].items()
            for m, v in vals.items() if _numeric(v)}
  if experiment in ("explainer", "explainer_paper") and "table2" in results:
    return {f"{m}/{row}": float(v) for row, vals in results["table2"].items()
            for m, v in vals.items() if _numeric(v)}
  return _flatten({k: v for k, v in results.items() if k not in ("config", "settings")})


def combine_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict]]:
  """The columns (``point`` first, then the override keys, then the metrics, each in
  first-seen order) and the rows, missing cells as ``None``."""
  front = ["point"]
  over: list[str] = []
  metrics: list[str] = []
  for r in rows:
    over += [k for k in r.get("overrides", {}) if k not in over]
    metrics += [k for k in r.get("metrics", {}) if k not in metrics]
  cols = front + over + metrics
  out = []
  for r in rows:
    flat = {"point": r.get("point")}
    flat.update({k: r.get("overrides", {}).get(k) for k in over})
    flat.update({k: r.get("metrics", {}).get(k) for k in metrics})
    out.append(flat)
  return cols, out


def _cell(v) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    return "nan" if math.isnan(v) else f"{v:.4f}"
  if isinstance(v, list | tuple):
    return ", ".join(str(x) for x in v)
  return str(v)


def sweep_markdown(rows: Sequence[Mapping[str, Any]], title: str = "Sweep") -> str:
  """A Markdown table of :func:`run_sweep` rows (``{"point", "overrides", "metrics"}``)."""
  cols, flat = combine_rows(rows)
  lines = [f"## {title}", "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
  for r in flat:
    lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
  return "\n".join(lines) + "\n"


def write_tables(workdir: str, rows: Sequence[Mapping[str, Any]], title: str = "Sweep"
                 ) -> dict[str, str]:
  """Writes ``sweep.md``, ``sweep.csv`` and ``sweep.json`` under ``workdir``."""
  os.makedirs(workdir, exist_ok=True)
  paths = {ext: os.path.join(workdir, f"sweep.{ext}") for ext in ("md", "csv", "json")}
  with open(paths["md"], "w") as f:
    f.write(sweep_markdown(rows, title))
  cols, flat = combine_rows(rows)
  with open(paths["csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for r in flat:
      w.writerow(["" if r[c] is None else (json.dumps(list(r[c])) if isinstance(r[c], tuple)
                                           else r[c]) for c in cols])
  with open(paths["json"], "w") as f:
    json.dump(list(rows), f, indent=2, default=list)
  return paths


def run_sweep(config: ml_collections.ConfigDict, points: Iterable[Mapping[str, Any]],
              workdir: str, runner: Callable[[Any, str], dict], *, experiment: str | None = None,
              progress: bool = True, point_progress: bool = False) -> list[dict]:
  """Runs ``runner`` once per point and writes the combined table.

  Args:
    config: The base config.
    points: Override dicts (all are applied before anything runs, so a bad key fails fast).
    workdir: Sweep folder; point ``i`` runs in ``workdir/<point name>``.
    runner: ``train_and_evaluate(config, workdir) -> results``.
    experiment: Experiment name, for :func:`headline`.
    progress: A progress bar over the points.
    point_progress: Keep each point's own progress bars (sets ``progress`` in the point
      configs that have the field; it is not part of the fingerprint).

  Returns:
    One row per point: ``{"point", "overrides", "metrics", "workdir", "reused"}``.
  """
  points = [dict(p) for p in points]
  if not points:
    raise ValueError("the sweep has no points")
  configs = [apply_overrides(config, p) for p in points]
  names = point_names(points)
  rows = []
  for name, p, cfg in tqdm.tqdm(list(zip(names, points, configs)), desc="sweep",
                                disable=not progress, unit="point"):
    folder = os.path.join(workdir, name)
    if "workdir" in cfg:
      cfg.workdir = folder
    if "progress" in cfg:
      cfg.progress = bool(point_progress)
    results, reused = run_folder.reuse_or_run(folder, cfg,
                                              lambda r=runner, c=cfg, f=folder: r(c, f))
    rows.append({"point": name, "overrides": p, "metrics": headline(results, experiment),
                 "workdir": folder, "reused": reused})
  write_tables(workdir, rows, f"Sweep of {experiment or 'experiment'} ({len(rows)} points)")
  return rows
