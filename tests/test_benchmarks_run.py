"""benchmarks/run.py: commands, environment and the collected table (nothing is timed here)."""

import json
import os
import sys

import pytest

from benchmarks import run


def test_paths_commands_and_environment(tmp_path):
  assert run.result_path("rise", "cpu", str(tmp_path)) == str(tmp_path / "rise.json")
  assert run.result_path("iassa", "gpu", str(tmp_path)) == str(tmp_path / "iassa_gpu.json")
  assert run.result_path("iassa", "gpu", str(tmp_path), "h200") == str(tmp_path / "iassa_h200.json")
  cmd = run.bench_command("metrics", "/x/m.json", quick=True)
  assert cmd == [sys.executable, "-m", "benchmarks.metrics_bench", "--out", "/x/m.json",
                 "--quick"]
  assert run.bench_env("gpu")["JAX_PLATFORMS"] == "cuda"
  assert run.bench_env("cpu")["PYTHONPATH"].split(os.pathsep)[0] == run._ROOT
  with pytest.raises(ValueError, match="benchmark must be one of"):
    run.bench_command("lime", "/x.json")
  with pytest.raises(ValueError, match="device must be one of"):
    run.bench_env("ipu")


def test_every_benchmark_accepts_out_and_quick():
  for name in run.BENCHMARKS:
    source = open(os.path.join(run._ROOT, "benchmarks", f"{name}_bench.py")).read()
    assert '"--out"' in source and '"--quick"' in source, name


def test_collect_tabulates_the_stored_figures(tmp_path, capsys):
  fake = {"overhead": 1.05, "mask_speedup": 25.0, "details": {},
          "targets": {"overhead": "<= 1.10", "mask_speedup": ">= 20", "memory_ratio": "<= 1.1"},
          "environment": {"backend": "cpu"}}
  (tmp_path / "rise.json").write_text(json.dumps(fake))
  assert run.main(["--collect", "--only", "rise", "--out-dir", str(tmp_path)]) == 0
  table = (tmp_path / "summary.md").read_text()
  assert "| rise | overhead | 1.05 | <= 1.10 | cpu |" in table
  assert "| rise | mask_speedup | 25 | >= 20 | cpu |" in table
  assert "| rise | memory_ratio | missing | <= 1.1 | cpu |" in table  # no value: shown, not hidden
  assert table in capsys.readouterr().out
  # A benchmark without results fails the run.
  assert run.main(["--collect", "--only", "rise,iassa", "--out-dir", str(tmp_path)]) == 1
  with pytest.raises(SystemExit):
    run.main(["--collect", "--only", "lime"])


def test_headline_rows_of_the_committed_results():
  with open(os.path.join(run.RESULTS, "explainer.json")) as f:
    rows = run.headline_rows("explainer", json.load(f))
  by_figure = {r["figure"]: r for r in rows}
  assert by_figure["explainer_speedup"]["value"] >= 1000
  assert by_figure["explainer_speedup"]["backend"] == "cpu"
