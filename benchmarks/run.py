"""Runs every benchmark and collects their headline figures into one Markdown table.

python -m benchmarks.run [--device cpu|gpu|tpu] [--only rise,metrics] [--quick] [--collect]
    [--out-dir benchmarks/results]

Each benchmark (``benchmarks/<name>_bench.py``) runs in its own process, with ``JAX_PLATFORMS``
set from ``--device``, and writes ``<out-dir>/<name>.json`` (CPU) or ``<name>_<device>.json``
(``--tag h200``: ``<name>_h200.json``). ``peer`` (rise_jax vs TorchRay-style RISE and
interpret-segmentation) needs the PyTorch peers: ``pip install -e ".[bench]"``; ``scaling``
fits the slopes of RISE time vs N and vs image size.
``--collect`` runs nothing and only rebuilds the table from the JSON files already there. The
table (``<out-dir>/summary[_<device>].md``, also printed) has one row per headline figure: the
benchmark, the figure, its value, its target and the backend that measured it. Ratios are only
comparable within one file: each benchmark measures its own baseline in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

BENCHMARKS = ("rise", "metrics", "iassa", "explainer", "peer", "scaling")
DEVICES = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}  # --device -> JAX_PLATFORMS
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(_ROOT, "benchmarks", "results")


def result_path(name: str, device: str, out_dir: str = RESULTS, tag: str = "") -> str:
  """``<out_dir>/<name>.json`` on the CPU, ``<name>_<tag or device>.json`` elsewhere."""
  suffix = tag or ("" if device == "cpu" else device)
  return os.path.join(out_dir, f"{name}_{suffix}.json" if suffix else f"{name}.json")


def bench_command(name: str, out: str, quick: bool = False) -> list[str]:
  """The command line that runs benchmark ``name`` and writes its JSON to ``out``."""
  if name not in BENCHMARKS:
    raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {name!r}")
  return [sys.executable, "-m", f"benchmarks.{name}_bench", "--out", out,
          *(["--quick"] if quick else [])]


def bench_env(device: str) -> dict[str, str]:
  """This process's environment with ``JAX_PLATFORMS`` for ``device`` and the repo on the path."""
  if device not in DEVICES:
    raise ValueError(f"device must be one of {tuple(DEVICES)}, got {device!r}")
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = DEVICES[device]
  env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


def headline_rows(name: str, result: dict) -> list[dict]:
  """One row per figure that has a target in a benchmark's JSON (``"targets"`` entry)."""
  backend = result.get("environment", {}).get("backend", "?")
  rows = []
  for figure, target in result.get("targets", {}).items():
    value = result.get(figure)
    rows.append({"benchmark": name, "figure": figure,
                 "value": value if isinstance(value, int | float) else None,
                 "target": str(target), "backend": backend})
  return rows


def summary_markdown(rows: list[dict]) -> str:
  """The Markdown table of :func:`headline_rows` rows."""
  lines = ["| benchmark | figure | value | target | backend |", "|---|---|---|---|---|"]
  for r in rows:
    value = "missing" if r["value"] is None else f"{r['value']:.4g}"
    lines.append(f"| {r['benchmark']} | {r['figure']} | {value} | {r['target']} | "
                 f"{r['backend']} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--device", default="cpu", choices=tuple(DEVICES))
  parser.add_argument("--only", default=",".join(BENCHMARKS),
                      help=f"comma-separated subset of {','.join(BENCHMARKS)}")
  parser.add_argument("--quick", action="store_true", help="each benchmark's smoke sizes")
  parser.add_argument("--collect", action="store_true",
                      help="run nothing; tabulate the JSON files already in --out-dir")
  parser.add_argument("--out-dir", default=RESULTS)
  parser.add_argument("--tag", default="",
                      help="file suffix, e.g. h200 for <name>_h200.json (default: the device)")
  args = parser.parse_args(argv)
  names = [n for n in args.only.split(",") if n]
  unknown = [n for n in names if n not in BENCHMARKS]
  if unknown or not names:
    parser.error(f"--only must name some of {','.join(BENCHMARKS)}, got {args.only!r}")
  rows, failed = [], []
  for name in names:
    path = result_path(name, args.device, args.out_dir, args.tag)
    if not args.collect:
      print(f"[benchmarks.run] {name} on {args.device} -> {path}", flush=True)
      done = subprocess.run(bench_command(name, path, args.quick), cwd=_ROOT,
                            env=bench_env(args.device))
      if done.returncode:
        failed.append(name)
        continue
    if not os.path.exists(path):
      failed.append(name)
      continue
    with open(path) as f:
      rows += headline_rows(name, json.load(f))
  table = summary_markdown(rows)
  tag = args.tag or ("" if args.device == "cpu" else args.device)
  suffix = f"_{tag}" if tag else ""
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, f"summary{suffix}.md"), "w") as f:
    f.write(table)
  print(table)
  if failed:
    print(f"missing or failed: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
