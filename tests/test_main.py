"""The main job (rise_jax.main_job, configs/default.py): end to end on the quick config, plus its
orderings, tables and stage reuse on hand-made results."""

import csv
import json
import os

import numpy as np
import pytest

from configs import default
from experiments.tasks import evidence, main_job, run_folder, runners, segmentation_rise


def _fake_results():
  return {
      "classifier": {"test_map": 0.9},
      "rise": {"table1": {"RISE": {"deletion": 0.10, "insertion": 0.70},
                          "Grad-CAM": {"deletion": 0.12, "insertion": 0.65}},
               "table2": {"RISE": {"all": 0.80, "difficult": 0.7},
                          "centre": {"all": 0.85, "difficult": 0.5}}},
      "iassa": {"table": {"image": {"RISE": {"f1": 0.2, "iou": 0.1},
                                    "IASSA mix=paper k=5": {"f1": 0.1, "iou": 0.2},
                                    "IASSA mix=code k=5": {"f1": 0.3, "iou": 0.2},
                                    "IASSA mix=code k=10": {"f1": 0.0, "iou": 0.0}},
                          "pixel": {}}},
      "explainer": {"table2": {"Explainer": {"acc": 0.9, "mae": 0.1},
                               "RISE": {"acc": 0.6, "mae": 0.4},
                               "Grad-CAM": {"acc": 0.95, "mae": 0.05}},
                    "class_specific": {"Explainer": {"diagonal_mean": 0.7,
                                                     "off_diagonal_mean": 0.1}}},
      "segmentation_rise": {"table": {"mean": {"pointing": 0.9, "mass_in_object": 0.4},
                                      "max": {"pointing": 0.5, "mass_in_object": 0.3},
                                      "centre": {"pointing": 0.5, "mass_in_object": 0.1}}},
      "caption": {"pointing": {"method": {"all": 0.9}, "centre": {"all": 0.3}}},
  }


def _comparison(claim, a, b, direction="greater", headline=True):
  return evidence.compare(claim, a, b, direction=direction, names=("a", "b"), metric="m",
                          groups=np.arange(len(a)), headline=headline)


def test_orderings_are_decided_on_paired_differences():
  rng = np.random.default_rng(0)
  base = rng.random(40)
  results = {
      "rise": {"comparisons": [
          _comparison("deletion below", base - 0.2, base, "less"),  # clearly lower: holds
          _comparison("insertion above", base - 0.2, base)]},  # clearly lower: reversed
      "iassa": {"comparisons": [
          _comparison("k=5", base + rng.normal(0, 0.3, 40), base),  # noise: not resolved
          _comparison("k=10", base + 1, base, headline=False)]},  # only in the stage table
      "caption": {"comparisons": [_comparison("caption", [1.0], [0.0])]},
  }
  order = main_job.orderings(results)
  assert [o["claim"] for o in order] == ["deletion below", "insertion above", "k=5", "caption"]
  assert [o["verdict"] for o in order[:3]] == ["holds", "reversed", "not resolved"]
  assert [o["holds"] for o in order[:3]] == [True, False, None]
  assert order[0]["stage"] == "rise" and order[0]["num_pairs"] == 40
  assert order[0]["low"] <= order[0]["difference"] <= order[0]["high"] < 0
  assert main_job.orderings({}) == []
  md = "\n".join(evidence.comparisons_markdown(order))
  assert "| deletion below | holds | -0.2000 [" in md and "**reversed**" in md


def test_headline_rows_flatten_the_main_tables():
  rows = main_job.headline_rows(_fake_results())
  by_key = {(r["stage"], r["row"], r["metric"]): r["value"] for r in rows}
  assert by_key[("rise", "table1/RISE", "deletion")] == 0.10
  assert by_key[("iassa", "table/image/IASSA mix=code k=5", "f1")] == 0.3
  assert by_key[("classifier", "", "test_map")] == 0.9
  assert by_key[("segmentation_rise", "table/centre", "pointing")] == 0.5
  assert len(rows) == len(by_key)


def test_stage_configs_share_the_classifier_and_reject_bad_stages(tmp_path):
  config = default.get_config("quick")
  configs = main_job.stage_configs(config, str(tmp_path))
  assert tuple(configs) == tuple(config.stages)
  for name in ("rise", "explainer", "iassa"):
    e = configs[name].explanandum
    assert e.classifier_dir == str(tmp_path / "classifier")
    assert e.classifier.to_dict() == config.classifier.to_dict()
    assert configs[name].workdir == str(tmp_path / name)
  config.stages = ("classifier,rise",)  # how --config.stages=classifier,rise arrives
  assert tuple(main_job.stage_configs(config, str(tmp_path))) == ("classifier", "rise")
  config.stages = ("classifier", "lime")
  with pytest.raises(ValueError, match="unknown \\['lime'\\]"):
    main_job.stage_configs(config, str(tmp_path))
  config.stages = ("classifier", "segmentation_rise")
  with pytest.raises(ValueError, match="list 'explainer'"):
    main_job.stage_configs(config, str(tmp_path))


def test_default_config_builds_and_rejects_unknown_variants():
  full = default.get_config()
  assert full.workdir == "./runs/default" and full.stages[0] == "classifier"
  assert full.iassa.iassa.record == (5, 10) and full.explainer.explainer.epochs == 4
  with pytest.raises(ValueError, match="variant"):
    default.get_config("huge")


def test_demote_shifts_headings():
  assert main_job._demote("# A\ntext\n## B") == "## A\ntext\n### B\n"


def test_mass_in_mask():
  sal = np.array([[0.0, 1.0], [2.0, 4.0]])
  mask = np.array([[0, 1], [0, 1]])
  assert segmentation_rise._mass_in_mask(sal, mask) == pytest.approx(5 / 7)
  assert segmentation_rise._mass_in_mask(np.full((2, 2), 4.0), mask) == 0.0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  config = default.get_config("quick")
  workdir = str(tmp_path_factory.mktemp("main") / "run")
  return config, workdir, main_job.run(config, workdir)


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_quick_run_writes_every_table_and_figure(quick_run):
  config, workdir, summary = quick_run
  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert saved["orderings"] == summary["orderings"]
  assert set(saved["stages"]) == set(config.stages)
  assert all(not s["reused"] for s in saved["seconds"].values())
  tables = open(os.path.join(workdir, "tables.md")).read()
  for heading in ("Orderings the papers report", "Segmentation RISE", "Stage times"):
    assert heading in tables
  claims = {o["claim"] for o in summary["orderings"]}
  assert any("deletion" in c for c in claims) and any("IASSA" in c for c in claims)
  assert any("Explainer Acc" in c for c in claims) and any("Captioning" in c for c in claims)
  with open(os.path.join(workdir, "summary.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(summary["headline"]) > 10
  # The untrained quick captioner may name no object: its pointing numbers are NaN (untested).
  assert all(np.isfinite(float(r["value"])) for r in rows if r["stage"] != "caption")
  figures = summary["figures"]
  assert "figures/training_curves.png" in figures
  assert any(p.startswith("segmentation_rise/figures/") for p in figures)
  assert any(p.startswith("explainer/figures/") for p in figures)
  for p in figures:
    assert os.path.getsize(os.path.join(workdir, p)) > 1000


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_quick_run_segmentation_rise_numbers(quick_run):
  _, workdir, summary = quick_run
  seg = summary["stages"]["segmentation_rise"]
  rows = seg["rows"]
  assert seg["num_segments"] == len(rows) >= 1
  for merge in ("mean", "max"):
    assert seg["table"][merge]["pointing"] == pytest.approx(np.mean([r[f"{merge}_hit"]
                                                                     for r in rows]))
    assert all(0 <= r[f"{merge}_mass_in_object"] <= 1 for r in rows)
  assert seg["table"]["centre"]["mass_in_object"] == pytest.approx(
      np.mean([r["object_area"] for r in rows]))


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_rerun_reuses_every_stage(quick_run, monkeypatch):
  config, workdir, summary = quick_run

  def fail(*args, **kwargs):
    raise AssertionError("a finished stage was recomputed")

  for name in runners.RUNNERS:
    monkeypatch.setitem(runners.RUNNERS, name, fail)
  again = main_job.run(config, workdir)
  assert all(s["reused"] for s in again["seconds"].values())
  assert again["orderings"] == summary["orderings"]
  # A changed stage config is refused (never reused) unless asked to start over; then only
  # that stage reruns.
  config = default.get_config("quick")
  config.segmentation_rise.num_masks = 60
  with pytest.raises(run_folder.RunFolderError, match="num_masks"):
    monkeypatch.setitem(runners.RUNNERS, "segmentation_rise",
                        segmentation_rise.train_and_evaluate)
    main_job.run(config, workdir)
  calls = []
  monkeypatch.setitem(runners.RUNNERS, "segmentation_rise",
                      lambda *a: calls.append(a) or summary["stages"]["segmentation_rise"])
  config.overwrite = True
  third = main_job.run(config, workdir)
  assert len(calls) == 1 and not third["seconds"]["segmentation_rise"]["reused"]
  assert third["seconds"]["rise"]["reused"]


def test_orderings_without_pairs_are_untested():
  none = evidence.compare("caption", [], [], direction="greater", names=("RISE", "centre"),
                          metric="pointing")
  order = main_job.orderings({"caption": {"comparisons": [none]}})
  assert order[0]["verdict"] == "no data" and order[0]["holds"] is None
