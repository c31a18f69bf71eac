"""Sweeps (rise_jax.sweep, experiments/sweep.py): overrides, point names, combined tables and a
two-point sweep of the quick RISE config end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from configs import rise as rise_config
from experiments.tasks import rise_tables as rx, sweep


def _config():
  c = ml_collections.ConfigDict()
  c.workdir = "/w"
  c.a = ml_collections.ConfigDict(dict(n=1, x=0.5, s="text", t=(1, 2), flag=False,
                                       b=ml_collections.ConfigDict(dict(deep=3))))
  c.a.opt = ml_collections.FieldReference(None, field_type=int)
  return c


def test_apply_overrides_nested_keys_and_copies():
  base = _config()
  got = sweep.apply_overrides(base, {"a.n": 5, "a.x": 2, "a.b.deep": 7, "a.t": [3],
                                     "a.opt": 4, "a.flag": True, "workdir": "/v"})
  assert (got.a.n, got.a.x, got.a.b.deep, got.a.t, got.a.opt, got.a.flag, got.workdir) == (
      5, 2.0, 7, (3,), 4, True, "/v")
  assert isinstance(got.a.x, float)
  assert (base.a.n, base.a.b.deep, base.a.opt, base.workdir) == (1, 3, None, "/w")  # untouched
  assert sweep.apply_overrides(base, {}).to_dict() == base.to_dict()


@pytest.mark.parametrize("overrides, error, match", [
    ({"a.m": 1}, KeyError, r"unknown config key 'a.m': a has no field 'm'"),
    ({"z.n": 1}, KeyError, r"'z.n': the config has no field 'z'"),
    ({"a.n.deep": 1}, KeyError, r"'a.n.deep'"),
    ({"a..n": 1}, KeyError, "dotted field names"),
    ({"a.n": "five"}, TypeError, r"override 'a.n'"),
    ({"a.n": 2.5}, TypeError, r"override 'a.n'"),
    ({"a.s": 3}, TypeError, r"override 'a.s'"),
    ({"a.n": True}, TypeError, r"override 'a.n'.*bool"),
    ({"a.flag": 1}, TypeError, r"override 'a.flag'"),
    ({"a.b": 1}, TypeError, "whole section"),
    ({"a.opt": "x"}, TypeError, r"override 'a.opt'"),
])
def test_apply_overrides_errors_name_the_key(overrides, error, match):
  with pytest.raises(error, match=match):
    sweep.apply_overrides(_config(), overrides)


def test_overrides_on_the_rise_config():
  config = rise_config.get_config("quick")
  got = sweep.apply_overrides(config, {"rise.num_masks": 20, "rise.grid_size": 4,
                                       "eval.methods": ("RISE",), "data.max_test": 2})
  assert (got.rise.num_masks, got.rise.grid_size, got.eval.methods, got.data.max_test) == (
      20, 4, ("RISE",), 2)
  with pytest.raises(KeyError, match="rise.num_mask"):
    sweep.apply_overrides(config, {"rise.num_mask": 20})
  for point in rise_config.sweep("full"):  # every point of the module's grid applies
    sweep.apply_overrides(config, point)


def test_point_names_are_filesystem_safe_and_unique():
  assert sweep.point_name({"rise.num_masks": 500, "rise.grid_size": 4}) == (
      "rise.num_masks-500_rise.grid_size-4")
  assert sweep.point_name({"eval.methods": ("RISE", "Grad-CAM"), "rise.p1": 0.25}) == (
      "eval.methods-RISE+Grad-CAM_rise.p1-0.25")
  assert sweep.point_name({"data.dir": "/a b/c:d"}) == "data.dir--a-b-c-d"
  assert sweep.point_name({}) == "base"
  long = sweep.point_name({f"k{i}": "v" * 20 for i in range(10)})
  assert len(long) == 120 and "/" not in long
  assert long != sweep.point_name({f"k{i}": "v" * 20 for i in range(11)})
  points = [{"rise.num_masks": n, "data.num_test": 8} for n in (500, 1000)]
  assert sweep.varying_keys(points) == ["rise.num_masks"]
  assert sweep.point_names(points) == ["rise.num_masks-500", "rise.num_masks-1000"]
  assert sweep.varying_keys([{"a": 1}, {"a": 1, "b": 2}]) == ["b"]
  assert sweep.point_names([{"a": 1}, {"a": 1}]) == ["a-1", "a-1_2"]
  assert sweep.point_names([{"a": 1}]) == ["a-1"]


def test_headline_of_each_experiment():
  assert sweep.headline({"headline": {"deletion/RISE": 0.1, "n": "x"}}) == {"deletion/RISE": 0.1}
  iassa = {"table": {"image": {"RISE": {"f1": 0.2, "iou": 0.1}}, "pixel": {"RISE": {"f1": 9}}}}
  assert sweep.headline(iassa, "iassa") == {"f1/RISE": 0.2, "iou/RISE": 0.1}
  expl = {"table2": {"Explainer": {"acc": 0.7, "mae": 0.3}}, "class_specific": {}}
  assert sweep.headline(expl, "explainer") == {"acc/Explainer": 0.7, "mae/Explainer": 0.3}
  other = {"a": {"b": 1, "c": [1, 2], "d": {"e": 2.5, "f": True}}, "config": {"x": 1},
           "top": 3}
  assert sweep.headline(other, "unknown") == {"a/b": 1.0, "a/d/e": 2.5, "top": 3.0}


def test_combined_table_from_fake_results(tmp_path):
  rows = [{"point": "p1", "overrides": {"rise.num_masks": 500, "eval.methods": ("RISE",)},
           "metrics": {"deletion/RISE": 0.25, "pointing/RISE": 90.0}},
          {"point": "p2", "overrides": {"rise.num_masks": 1000, "rise.p1": 0.25},
           "metrics": {"deletion/RISE": 0.2, "insertion/RISE": 0.8}}]
  cols, flat = sweep.combine_rows(rows)
  assert cols == ["point", "rise.num_masks", "eval.methods", "rise.p1", "deletion/RISE",
                  "pointing/RISE", "insertion/RISE"]
  assert flat[1]["eval.methods"] is None and flat[0]["insertion/RISE"] is None
  md = sweep.sweep_markdown(rows, "T")
  assert md.splitlines()[0] == "## T"
  assert "| p1 | 500 | RISE |  | 0.2500 | 90.0000 |  |" in md
  paths = sweep.write_tables(str(tmp_path), rows, "T")
  with open(paths["csv"]) as f:
    got = list(csv.DictReader(f))
  assert [r["point"] for r in got] == ["p1", "p2"] and got[0]["eval.methods"] == '["RISE"]'
  assert got[1]["insertion/RISE"] == "0.8" and got[0]["insertion/RISE"] == ""
  with open(paths["json"]) as f:
    assert json.load(f)[0]["overrides"]["eval.methods"] == ["RISE"]


def test_runner_resolution_and_the_sweep_loader():
  config = rise_config.get_config("quick")
  assert sweep.experiment_name(config) == "rise"
  assert sweep.resolve_runner("rise") is rx.train_and_evaluate
  from experiments.tasks import explainer as experiment, iassa_table as iassa_experiment

  assert sweep.resolve_runner("iassa") is iassa_experiment.train_and_evaluate
  assert sweep.resolve_runner("explainer") is experiment.train_and_evaluate
  no_field = ml_collections.ConfigDict(dict(x=1))
  assert sweep.experiment_name(no_field, "configs/iassa.py:quick") == "iassa"
  with pytest.raises(ValueError, match="no 'experiment' field"):
    sweep.experiment_name(no_field)
  with pytest.raises(ValueError, match="no runner for experiment 'nope'"):
    sweep.resolve_runner("nope")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  fn = sweep.load_sweep(os.path.join(root, "configs", "rise.py") + ":quick")
  assert len(list(fn(None))) == 9
  with pytest.raises(ValueError, match="defines no sweep"):
    sweep.load_sweep(os.path.join(root, "configs", "iassa.py"))


def test_command_line_without_a_sweep_function_says_so():
  """experiments/sweep.py in a subprocess (its absl flags would clash with other entry points
  imported by the test session)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-m", "experiments.sweep",
                        "--config=configs/iassa.py:quick", "--workdir=/nonexistent"],
                       cwd=root, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0
  assert "configs/iassa.py defines no sweep() function" in out.stderr


def test_run_sweep_calls_the_runner_once_per_new_point(tmp_path):
  calls = []

  def runner(config, workdir):
    calls.append((config.a.n, workdir))
    return {"headline": {"score": float(config.a.n) * 2}}

  points = [{"a.n": 1, "a.s": "same"}, {"a.n": 2, "a.s": "same"}]
  rows = sweep.run_sweep(_config(), points, str(tmp_path), runner, progress=False)
  assert calls == [(1, str(tmp_path / "a.n-1")), (2, str(tmp_path / "a.n-2"))]
  assert [r["metrics"] for r in rows] == [{"score": 2.0}, {"score": 4.0}]
  assert not any(r["reused"] for r in rows)
  again = sweep.run_sweep(_config(), points + [{"a.n": 3, "a.s": "same"}], str(tmp_path),
                          runner, progress=False)
  assert [r["reused"] for r in again] == [True, True, False] and len(calls) == 3
  with pytest.raises(KeyError, match="a.zz"):  # checked before anything runs
    sweep.run_sweep(_config(), [{"a.n": 4}, {"a.zz": 1}], str(tmp_path), runner)
  assert len(calls) == 3
  with pytest.raises(ValueError, match="no points"):
    sweep.run_sweep(_config(), [], str(tmp_path), runner)


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_quick_rise_sweep_end_to_end(tmp_path_factory, monkeypatch):
  from tests.test_rise_experiment import shared_classifier_dir

  config = rise_config.get_config("quick")
  config.explanandum.classifier_dir = shared_classifier_dir(tmp_path_factory)
  config.eval.update(methods=("RISE",), figure_images=0)
  points = [{"rise.num_masks": 20}, {"rise.num_masks": 30}]
  workdir = str(tmp_path_factory.mktemp("sweep_rise"))
  rows = sweep.run_sweep(config, points, workdir, rx.train_and_evaluate, experiment="rise",
                         progress=False)
  assert [r["point"] for r in rows] == ["rise.num_masks-20", "rise.num_masks-30"]
  for name in ("sweep.md", "sweep.csv", "sweep.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "sweep.csv")) as f:
    table = list(csv.DictReader(f))
  assert len(table) == 2 and [r["rise.num_masks"] for r in table] == ["20", "30"]
  for r in table:
    assert 0 <= float(r["deletion/RISE"]) <= 1 and 0 <= float(r["insertion/RISE"]) <= 1
    assert 0 <= float(r["pointing/RISE"]) <= 100 and "pointing/centre" in r
  for point in rows:
    assert os.path.exists(os.path.join(point["workdir"], "results.json"))
  assert "| rise.num_masks-20 | 20 |" in open(os.path.join(workdir, "sweep.md")).read()

  def fail(*args, **kwargs):
    raise RuntimeError("recomputed")

  monkeypatch.setattr(rx, "train_and_evaluate", fail)
  again = sweep.run_sweep(config, points, workdir, fail, experiment="rise", progress=False)
  assert all(r["reused"] for r in again)
  assert [r["metrics"] for r in again] == [r["metrics"] for r in rows]
