"""Shared helpers of the benchmark scripts: the one timing loop, run metadata, JSON output.

Every headline figure of every benchmark is a ratio of wall times measured by :func:`timed`:
each function is called once as a warm-up (that first call, compilation included for JAX, is
timed and kept as its own row), then ``repeats >= 3`` interleaved rounds (the order rotated
each round) time every function, and the headline uses the median wall time of each. Process
CPU time is recorded beside it, never used instead of it.

Each JSON carries ``meta`` (:func:`start_meta` / :func:`write_result`): the git commit the run
was made at, whether tracked files outside ``benchmarks/results`` differed from it, the command
line, the machine (cores, backend, device name) and the load average before and after the run.
Results files are written only here; a correction is a rerun.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax

from benchmarks.memory import peak_rss_mb  # noqa: F401 - re-exported

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
MIN_REPEATS = 3
# Set by benchmarks.run for its children, so that each JSON names the command that made it.
RUN_COMMAND_ENV = "RISE_JAX_BENCH_RUN_COMMAND"
CLOCK = "wall"
# Where there is no .git (a copy of the tree on another machine): the commit it was copied from.
COMMIT_ENV = "RISE_JAX_BENCH_COMMIT"


class Timing(dict):
  """One function's timings (a dict, stored as is in the JSON ``timings`` section).

  Keys: ``first_call_seconds`` (the warm-up call), ``wall_seconds`` / ``cpu_seconds`` (one per
  round), ``wall_median`` / ``cpu_median``.
  """

  @property
  def wall(self) -> float:
    return self["wall_median"]

  @property
  def cpu(self) -> float:
    return self["cpu_median"]

  @property
  def first(self) -> float:
    return self["first_call_seconds"]


def _call(fn: Callable[[], object]) -> tuple[float, float]:
  w, c = time.perf_counter(), time.process_time()
  jax.block_until_ready(fn())
  return time.perf_counter() - w, time.process_time() - c


def timed(fns: dict[str, Callable[[], object]], repeats: int = MIN_REPEATS) -> dict[str, Timing]:
  """Wall (and process CPU) time of each function: one warm-up call each, then interleaved rounds.

  Args:
    fns: name -> zero-argument callable; JAX results are blocked on.
    repeats: Timed rounds, at least :data:`MIN_REPEATS`. Round ``r`` calls the functions in the
      order rotated by ``r``, so no function always runs first or after the same neighbour.

  Returns:
    name -> :class:`Timing`; compare functions by ``.wall`` (the median wall time).
  """
  if repeats < MIN_REPEATS:
    raise ValueError(f"repeats must be >= {MIN_REPEATS}, got {repeats}")
  names = list(fns)
  out = {}
  for name in names:  # the same warm-up for every side: one full call, timed
    out[name] = Timing(first_call_seconds=_call(fns[name])[0], wall_seconds=[], cpu_seconds=[])
  for r in range(repeats):
    k = r % len(names)
    for name in names[k:] + names[:k]:
      w, c = _call(fns[name])
      out[name]["wall_seconds"].append(w)
      out[name]["cpu_seconds"].append(c)
  for t in out.values():
    t["wall_median"] = statistics.median(t["wall_seconds"])
    t["cpu_median"] = statistics.median(t["cpu_seconds"])
  return out


def clock_note(repeats: int) -> str:
  return (f"wall time, median of {repeats} interleaved rounds after one warm-up call of each "
          "side (first calls reported separately)")


def headline(value: float, target: str | None = None, *, extrapolated_from: str | None = None,
             note: str | None = None, clock: str = CLOCK) -> dict:
  """One headline figure of a result JSON (the ``headlines`` section).

  Args:
    value: The figure.
    target: ``"<= 1.1"``, ``">= 20"``, ``"~ 1 +- 0.1"`` or None (a figure shown without one).
    extrapolated_from: How the figure was extrapolated from what was measured (None: measured).
    note: Anything a reader needs beside the number.
    clock: ``"wall"`` for times, ``"memory"`` for peak-RSS ratios, ``"fit"`` for fitted slopes.
  """
  out = {"value": float(value), "target": target, "holds": target_holds(value, target),
         "clock": clock}
  if extrapolated_from:
    out["extrapolated_from"] = extrapolated_from
  if note:
    out["note"] = note
  return out


def target_holds(value: float, target: str | None) -> bool | None:
  """Whether ``value`` meets ``target`` (see :func:`headline`); None without a target."""
  if target is None:
    return None
  op, rest = target.split(None, 1)
  if op == "<=":
    return bool(value <= float(rest))
  if op == ">=":
    return bool(value >= float(rest))
  if op == "~":
    centre, tol = (float(x) for x in rest.split("+-"))
    return bool(abs(value - centre) <= tol)
  raise ValueError(f"target must start with <=, >= or ~, got {target!r}")


def git_state() -> dict:
  """``{"commit", "dirty", "dirty_files", "commit_source"}`` of the checkout.

  ``dirty_files``: tracked files that differ from the commit, outside ``benchmarks/results``
  (a run writes its JSONs there while later benchmarks still run). Without git, the commit is
  ``$RISE_JAX_BENCH_COMMIT`` (``commit_source`` "env", ``dirty`` None) or None.
  """
  def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, check=True).stdout

  try:
    commit = git("rev-parse", "HEAD").strip()
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no")
               .splitlines() if not line[3:].startswith("benchmarks/results/")]
  except (OSError, subprocess.CalledProcessError):
    # A copy without .git (e.g. an accelerator machine given the working tree): the commit
    # comes from whoever launched the run, and whether the copy was clean is unknown.
    return {"commit": os.environ.get(COMMIT_ENV), "dirty": None, "dirty_files": [],
            "commit_source": "env" if os.environ.get(COMMIT_ENV) else None}
  return {"commit": commit, "dirty": bool(changed), "dirty_files": changed,
          "commit_source": "git"}


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "?"


def machine() -> dict:
  """Cores, CPU model, JAX backend and device name, library versions."""
  devices = jax.devices()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  out = {"cpu_count": os.cpu_count(), "usable_cores": usable, "cpu_model": _cpu_model(),
         "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
         "devices": [str(d) for d in devices], "platform": platform.platform(),
         "python": platform.python_version(), "jax": jax.__version__}
  if "torch" in sys.modules:
    out["torch"] = sys.modules["torch"].__version__
  return out


def load_average() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def start_meta(module: str, argv: list[str] | None, quick: bool) -> dict:
  """The ``meta`` section, begun when a benchmark starts (before any timing)."""
  argv = sys.argv[1:] if argv is None else list(argv)
  return {"benchmark_command": shlex.join(["python", "-m", module, *argv]),
          "run_command": os.environ.get(RUN_COMMAND_ENV), "quick": bool(quick),
          **git_state(), "started": _now(), "load_before": load_average(),
          "_start": time.perf_counter()}


def write_result(name: str, meta: dict, headlines: dict, details: dict,
                 timings: dict | None = None, path: str | None = None) -> str:
  """Writes ``{"benchmark", "meta", "headlines", "details", "timings"}`` and returns its path.

  ``meta`` gets the machine, the load average after the run and the run's duration.
  """
  meta = dict(meta)
  meta["benchmark_seconds"] = time.perf_counter() - meta.pop("_start")
  meta.update(finished=_now(), load_after=load_average(), machine=machine())
  payload = {"benchmark": name, "meta": meta, "headlines": headlines, "details": details,
             "timings": timings or {}}
  path = path or os.path.join(RESULTS, f"{name}.json")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.write("\n")
  return path


def run_child(module: str, args: list[str]) -> dict:
  """Runs ``python -m module args`` and parses the JSON object on its last stdout line."""
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  out = subprocess.run([sys.executable, "-m", module, *args], check=True, cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(rows: list[tuple[str, str, str]], header=("figure", "value", "target")) -> None:
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
  line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
  print(line)
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in rows:
    print("| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |")


def print_headlines(headlines: dict, extra: list[tuple[str, str]] = ()) -> None:
  """The headline figures (value, target, holds) and extra ``(label, value)`` rows."""
  rows = []
  for figure, h in headlines.items():
    label = figure + (" (extrapolated)" if "extrapolated_from" in h else "")
    mark = {True: " ok", False: " NOT MET", None: ""}[h["holds"]]
    rows.append((label, f"{h['value']:.4g}", (h["target"] or "") + mark))
  rows += [(label, value, "") for label, value in extra]
  print_table(rows)
