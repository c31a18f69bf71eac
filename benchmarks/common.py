"""Shared helpers of the benchmark scripts: timing, peak RSS in a child process, JSON output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable

import jax

from benchmarks.memory import peak_rss_mb  # noqa: F401 - re-exported

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def best_time(fn: Callable[[], object], repeats: int = 2, warmup: int = 1) -> float:
  """Minimum wall time in seconds of ``fn()`` (its result blocked on) after ``warmup`` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def interleaved_best(fns: list[Callable[[], object]], repeats: int = 2) -> list[float]:
  """Best wall time of each function, timed in interleaved rounds after one warm-up each."""
  for fn in fns:
    jax.block_until_ready(fn())
  best = [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      best[i] = min(best[i], time.perf_counter() - start)
  return best


def interleaved_best_wall_cpu(fns: list[Callable[[], object]], repeats: int = 2
                              ) -> tuple[list[float], list[float]]:
  """Like ``common.interleaved_best``, timing wall and process CPU time of each call."""
  for fn in fns:
    jax.block_until_ready(fn())
  wall, cpu = [float("inf")] * len(fns), [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      w, c = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn())
      wall[i] = min(wall[i], time.perf_counter() - w)
      cpu[i] = min(cpu[i], time.process_time() - c)
  return wall, cpu


def headline_clock() -> str:
  """Which clock a benchmark's headline ratios use: process CPU time on a CPU backend (robust to
  other jobs sharing the cores), wall time on an accelerator (host CPU time misses device work).
  """
  return "cpu" if jax.default_backend() == "cpu" else "wall"


def run_child(module: str, args: list[str]) -> dict:
  """Runs ``python -m module args`` and parses the JSON object on its last stdout line."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ)
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  out = subprocess.run([sys.executable, "-m", module, *args], check=True, cwd=root, env=env,
                       stdout=subprocess.PIPE, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def environment() -> dict:
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "python": platform.python_version(),
  }


def write_json(name: str, payload: dict, path: str | None = None) -> str:
  path = path or os.path.join(RESULTS, f"{name}.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.write("\n")
  return path


def print_table(rows: list[tuple[str, str, str]], header=("figure", "value", "target")) -> None:
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
  line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
  print(line)
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in rows:
    print("| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |")
