"""Run folders (experiments/tasks/run_folder.py): nothing stale is reused, nothing is lost."""

import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from configs import default
from experiments.tasks import main_job, run_folder


def _config(**kw):
  c = ml_collections.ConfigDict({"lr": 0.1, "seed": 0, "data": {"n": 10}, "progress": False,
                                 "overwrite": False})
  c.update(kw)
  return c


def _counting(results):
  calls = []

  def compute():
    calls.append(1)
    return dict(results)

  return compute, calls


def test_same_config_reuses_other_config_is_refused_naming_keys(tmp_path):
  folder = str(tmp_path / "run")
  compute, calls = _counting({"score": 1.0})
  assert run_folder.once(folder, _config(), compute) == {"score": 1.0}
  assert run_folder.once(folder, _config(progress=True), compute) == {"score": 1.0}
  assert len(calls) == 1  # progress/workdir/overwrite never change a result
  other = _config(lr=0.2, seed=3)
  other.data.n = 11
  with pytest.raises(run_folder.RunFolderError, match=r"data\.n, lr, seed"):
    run_folder.once(folder, other, compute)
  assert len(calls) == 1
  other.overwrite = True  # start over: the old results are gone, the new ones recorded
  assert run_folder.once(folder, other, _counting({"score": 2.0})[0]) == {"score": 2.0}
  assert run_folder.status(folder, other) == "done"
  assert run_folder.status(folder, _config()) == "other"


def test_upstream_configs_are_part_of_a_stage_fingerprint(tmp_path):
  def fingerprints(config):
    return {name: run_folder.config_fingerprint(c)[1]
            for name, c in main_job.stage_configs(config, str(tmp_path)).items()}

  base = fingerprints(default.get_config("quick"))
  changed = default.get_config("quick")
  changed.explainer.explainer.epochs += 1  # the Explainer that Segmentation RISE explains
  after = fingerprints(changed)
  assert after["segmentation_rise"] != base["segmentation_rise"]
  assert after["rise"] == base["rise"]
  changed = default.get_config("quick")
  changed.classifier.train.learning_rate *= 2  # the explanandum of every later stage
  after = fingerprints(changed)
  assert all(after[s] != base[s] for s in ("classifier", "rise", "explainer",
                                           "segmentation_rise", "iassa"))


def test_kill_between_results_and_marker_never_pairs_configs(tmp_path, monkeypatch):
  folder = str(tmp_path / "run")
  run_folder.once(folder, _config(), _counting({"score": 1.0})[0])
  real_write = run_folder.write_json

  def killed_on_marker(path, obj):
    if path.endswith(run_folder.MARKER) and obj.get("status") == "done":
      raise KeyboardInterrupt("killed")  # results.json of B is written, its marker is not
    real_write(path, obj)

  b = _config(lr=0.5, overwrite=True)
  monkeypatch.setattr(run_folder, "write_json", killed_on_marker)
  with pytest.raises(KeyboardInterrupt):
    run_folder.once(folder, b, _counting({"score": 5.0})[0])
  monkeypatch.setattr(run_folder, "write_json", real_write)
  with open(os.path.join(folder, run_folder.RESULTS)) as f:
    assert json.load(f) == {"score": 5.0}
  # A's config finds B's (unfinished) folder: refused, not paired with B's results.
  with pytest.raises(run_folder.RunFolderError, match="lr"):
    run_folder.once(folder, _config(), _counting({"score": 1.0})[0])
  # B reruns (its results were never marked finished) instead of reusing them.
  compute, calls = _counting({"score": 6.0})
  assert run_folder.once(folder, _config(lr=0.5), compute) == {"score": 6.0} and calls


def test_truncated_results_are_recomputed_with_a_warning(tmp_path):
  folder = str(tmp_path / "run")
  run_folder.once(folder, _config(), _counting({"score": 1.0})[0])
  with open(os.path.join(folder, run_folder.RESULTS), "w") as f:
    f.write('{"score": 1.')  # truncated
  compute, calls = _counting({"score": 1.0})
  with pytest.warns(UserWarning, match="not valid JSON"):
    assert run_folder.once(folder, _config(), compute) == {"score": 1.0}
  assert len(calls) == 1
  with open(os.path.join(folder, run_folder.RESULTS)) as f:
    assert json.load(f) == {"score": 1.0}


def test_a_second_concurrent_run_fails_at_once(tmp_path):
  folder = str(tmp_path / "run")
  holder = textwrap.dedent(f"""
      import sys, time
      from experiments.tasks import run_folder
      with run_folder.locked({folder!r}):
          print("locked", flush=True)
          time.sleep(60)
  """)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen([sys.executable, "-c", holder], cwd=root, stdout=subprocess.PIPE,
                          text=True)
  try:
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(run_folder.RunFolderBusy, match="in use by another run"):
      run_folder.once(folder, _config(), _counting({"score": 1.0})[0])
  finally:
    proc.kill()
    proc.wait()
  assert run_folder.once(folder, _config(), _counting({"score": 1.0})[0]) == {"score": 1.0}


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
  path = str(tmp_path / "a.json")
  run_folder.write_json(path, {"x": [1, 2]})
  run_folder.write_text(str(tmp_path / "t.md"), "# t\n")
  assert sorted(os.listdir(tmp_path)) == ["a.json", "t.md"]
  assert run_folder.read_json(path) == {"x": [1, 2]}
  assert run_folder.read_json(str(tmp_path / "missing.json")) is None
