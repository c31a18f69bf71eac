"""RISE paper tables experiment: helpers by hand, the quick config end to end, its numbers
recomputed independently, rerun reuse and config errors."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from configs import rise as rise_config
from experiments.tasks import datasets, explanandum, rise_tables as rx, run_folder
from rise_jax import evaluation
from rise_jax.data import preprocess, synthetic
from rise_jax.metrics import causal, pointing


def shared_classifier_dir(tmp_path_factory) -> str:
  """One quick classifier folder for the whole test session (test_sweep.py uses it too)."""
  return str(tmp_path_factory.getbasetemp() / "rise_quick_classifier")


def test_scaled_settings_by_hand():
  got = rx.scaled_settings(64)
  # 64 * 64/224 = 18.29 -> 18; 8 * 64/224 = 2.29 -> 2; 15 * 64/224; one 64-px row.
  assert got == pytest.approx({"scale": 64 / 224, "window": 18, "stride": 2,
                               "tolerance": 15 * 64 / 224, "step": 64})
  assert rx.scaled_settings(224) == {"scale": 1.0, "window": 64, "stride": 8,
                                     "tolerance": 15.0, "step": 224}
  small = rx.scaled_settings(32, stride=16, step=100)  # 9.14 -> 9, 2.29 -> 2
  assert (small["window"], small["stride"], small["step"]) == (9, 2, 100)
  assert rx.scaled_settings(8, window=448)["window"] == 8  # capped at the image
  assert rx.scaled_settings(16)["stride"] == 1  # 0.57 -> at least 1
  with pytest.raises(ValueError, match="image_size"):
    rx.scaled_settings(0)
  with pytest.raises(ValueError, match="eval.step"):
    rx.scaled_settings(64, step=0)


def test_box_masks_union_per_class():
  boxes = np.array([[0.5, 1.0, 2.2, 3.0], [3.0, 3.0, 4.0, 9.0], [0.0, 0.0, 1.0, 1.0]])
  got = preprocess.box_masks(boxes, [1, 1, 0], num_classes=3, size=5)
  want = np.zeros((5, 5, 3), bool)
  want[0:3, 1:3, 1] = True  # floor(0.5)=0 .. ceil(2.2)=3
  want[3:4, 3:5, 1] = True  # clipped at the image edge
  want[0:1, 0:1, 0] = True
  np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match="agree"):
    preprocess.box_masks(boxes, [1, 2], 3, 5)


def test_pair_classes_and_bucket():
  labels = np.array([[0, 1, 1], [0, 0, 0]], np.float32)
  got = rx.pair_classes(labels, None, "true")
  assert [g.tolist() for g in got] == [[1, 2], []]
  probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
  assert [g.tolist() for g in rx.pair_classes(labels, probs, "top1")] == [[2], [0]]
  with pytest.raises(ValueError, match="classes"):
    rx.pair_classes(labels, probs, "all")
  assert rx._bucket(np.array([3])).tolist() == [3]
  assert rx._bucket(np.array([3, 1, 4])).tolist() == [3, 1, 4, 4]
  assert rx._bucket(np.arange(5)).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_fingerprint_ignores_progress_and_workdir():
  a = rise_config.get_config("quick")
  b = rise_config.get_config("quick")
  b.progress, b.workdir = True, "/elsewhere"
  b.explanandum.classifier.workdir = "/also/elsewhere"
  assert run_folder.config_fingerprint(a)[1] == run_folder.config_fingerprint(b)[1]
  assert "workdir" not in run_folder.config_fingerprint(a)[0]
  b.rise.num_masks = 51
  assert run_folder.config_fingerprint(a)[1] != run_folder.config_fingerprint(b)[1]


@pytest.mark.parametrize("field, value, match", [
    ("eval.methods", ("RISE", "LIME"), "eval.methods"),
    ("eval.methods", (), "eval.methods"),
    ("rise.num_masks", 0, "rise.num_masks"),
    ("rise.num_masks", -5, "rise.num_masks"),
    ("data.name", "cifar", "data.name"),
    ("rise.p1", 1.0, "rise.p1"),
    ("eval.metrics", ("deletion", "iou"), "eval.metrics"),
    ("eval.classes", "all", "eval.classes"),
    ("explanandum.output", "probs", "explanandum.output"),
    ("data.pointing_gt", "points", "data.pointing_gt"),
])
def test_bad_config_values_raise_clear_errors(tmp_path, field, value, match):
  config = rise_config.get_config("quick")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=match):
    rx.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # rejected before anything ran


def test_pointing_on_imagenet_and_training_on_real_data_are_rejected():
  config = rise_config.get_config("imagenet-vgg16")
  config.eval.metrics = ("deletion", "pointing")
  with pytest.raises(ValueError, match="pointing game needs"):
    rx.check_config(config)
  config = rise_config.get_config("quick")
  config.data.name = "voc"
  with pytest.raises(ValueError, match="source='train'"):
    rx.check_config(config)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  config = rise_config.get_config("quick")
  config.explanandum.classifier_dir = shared_classifier_dir(tmp_path_factory)
  workdir = str(tmp_path_factory.mktemp("rise_quick"))
  return config, workdir, rx.train_and_evaluate(config, workdir)


def _pairs(workdir):
  with open(os.path.join(workdir, "pairs.csv")) as f:
    return list(csv.DictReader(f))


def test_quick_config_end_to_end_writes_tables_and_figures(quick_run):
  config, workdir, results = quick_run
  for name in ("results.json", "tables.md", "table.csv", "pairs.csv", "maps.npz",
               "figures/curves_deletion.png", "figures/curves_insertion.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert len([f for f in os.listdir(os.path.join(workdir, "figures"))
              if f.startswith("maps_")]) == config.eval.figure_images
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["headline"] == results["headline"]
  tables = open(os.path.join(workdir, "tables.md")).read()
  for text in ("Table 1 analogue", "Table 2 analogue", "centre baseline", "| RISE |",
               "| Grad-CAM |", "| Occlusion |", "paper ImageNet ResNet50: RISE | 0.1076",
               "VOC07 87.33"):
    assert text in tables, text
  methods = ("RISE", "Grad-CAM", "Occlusion")
  assert set(results["table1"]) == set(methods)
  assert set(results["table2"]) == set(methods) | {"centre"}
  assert results["num_images"] == config.data.num_test and results["num_pairs"] >= 3
  for m in methods:
    for k in ("deletion", "insertion"):
      assert 0.0 <= results["table1"][m][k] <= 1.0
    assert 0.0 <= results["table2"][m]["all"] <= 100.0
    assert len(results["mean_curves"]["deletion"][m]) == 33  # 32 one-row steps + 1
  assert all(np.isfinite(v) for v in results["headline"].values())
  assert results["settings"]["window"] == 9 and results["settings"]["step"] == 32
  rows = _pairs(workdir)
  assert len(rows) == 3 * results["num_pairs"]
  assert {r["method"] for r in rows} == set(methods)


def test_numbers_equal_an_independent_recomputation(quick_run):
  config, workdir, results = quick_run
  d = config.data
  rows = _pairs(workdir)
  saved = np.load(os.path.join(workdir, "maps.npz"))
  assert len(saved["class_id"]) == results["num_pairs"]  # save_maps is above the pair count
  model = explanandum.from_config(config, workdir)
  probs_fn = model.black_box("sigmoid")
  test = synthetic.make("test", d.num_test, seed=config.seed, image_size=d.image_size,
                        num_classes=d.num_classes)
  img, cls = saved["image_index"], saved["class_id"]
  np.testing.assert_array_equal(saved["image"], test["image"][img])
  st = results["settings"]
  for method in ("RISE", "Grad-CAM", "Occlusion"):
    maps = saved[f"maps_{method}"]
    mine = [r for r in rows if r["method"] == method]
    assert [(int(r["image"]), int(r["class"])) for r in mine] == list(zip(img, cls))
    # Causal metrics directly with rise_jax.metrics (one call, no padding).
    dele, _ = causal.deletion(probs_fn, saved["image"], maps, cls, step=st["step"],
                              substrate="zeros", batch_size=33)
    ins, _ = causal.insertion(probs_fn, saved["image"], maps, cls, step=st["step"],
                              substrate="blur", batch_size=33)
    np.testing.assert_allclose([float(r["deletion"]) for r in mine], dele, atol=1e-6)
    np.testing.assert_allclose([float(r["insertion"]) for r in mine], ins, atol=1e-6)
    assert results["table1"][method]["deletion"] == pytest.approx(np.mean(dele), abs=1e-6)
    # Pointing by brute force: the map's argmax within the tolerance of a GT pixel.
    gt = test["segmentation"][img, :, :, cls]
    hits = []
    for m, g in zip(maps, gt):
      y, x = np.unravel_index(np.argmax(m), m.shape)
      ys, xs = np.nonzero(g)
      hits.append(int(np.min((ys - y) ** 2 + (xs - x) ** 2) <= st["tolerance"] ** 2))
    assert [int(r["pointing_hit"]) for r in mine] == hits
    per_class = [np.mean([h for h, c in zip(hits, cls) if c == k]) for k in np.unique(cls)]
    assert results["table2"][method]["all"] == pytest.approx(100 * np.mean(per_class))
    # rise_jax.evaluation.evaluate on the saved maps gives the same rows.
    one_hot = np.eye(d.num_classes, dtype=np.float32)[cls]
    full = np.zeros((len(cls), d.num_classes) + maps.shape[1:], np.float32)
    full[np.arange(len(cls)), cls] = maps
    seg = np.zeros(gt.shape + (d.num_classes,), bool)
    seg[np.arange(len(cls)), :, :, cls] = gt
    batch = {"image": saved["image"], "label": one_hot, "segmentation": seg}
    ref = evaluation.evaluate(lambda x, full=full: full, probs_fn, [batch], step=st["step"],
                              tolerance=st["tolerance"], batch_size=33, progress=False,
                              metrics=("deletion", "insertion", "pointing"))
    np.testing.assert_allclose([r["deletion"] for r in ref.rows], dele, atol=1e-6)
    assert [r["pointing_hit"] for r in ref.rows] == hits
  centre = pointing.PointingGame(d.num_classes, st["tolerance"])
  for g, c, i in zip(gt, cls, img):
    centre.update(np.zeros(g.shape), g, int(c), num_present=int(test["label"][i].sum()))
  want = centre.results()["centre"]
  assert results["table2"]["centre"]["all"] == pytest.approx(100 * want["all"]["mean"])
  assert results["table2"]["RISE"]["difficult_pairs"] == want["difficult"]["count"]


def test_rerun_reuses_results_without_recomputing(quick_run, monkeypatch):
  config, workdir, results = quick_run

  def fail(*args, **kwargs):
    raise RuntimeError("recomputed")

  monkeypatch.setattr(explanandum, "from_config", fail)
  monkeypatch.setattr(datasets, "iter_test_batches", fail)
  again = rx.train_and_evaluate(config, workdir)
  assert again["headline"] == results["headline"]
  assert again["fingerprint"] == results["fingerprint"]
  changed = config.copy_and_resolve_references()
  changed.progress = True  # not part of the fingerprint: still reused
  assert rx.train_and_evaluate(changed, workdir)["headline"] == results["headline"]
  changed.rise.num_masks = 60  # a different config is refused, naming the key ...
  with pytest.raises(run_folder.RunFolderError, match="rise.num_masks"):
    rx.train_and_evaluate(changed, workdir)
  changed.overwrite = True  # ... unless asked to start over
  with pytest.raises(RuntimeError, match="recomputed"):
    rx.train_and_evaluate(changed, workdir)
