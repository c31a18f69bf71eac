"""IASSA Table 1 experiment: helpers against hand-computed numbers, the quick config end to end."""

from __future__ import annotations

import csv
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import iassa as iassa_config
from experiments.tasks import datasets, iassa_table as ie
from rise_jax import viz
from rise_jax.metrics import causal, scoring, segmentation


def test_scaled_settings_by_hand():
  got = ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 64)
  assert (got["window"], got["stride"]) == (13, 2)  # 12.857 -> 13, 2.286 -> 2
  assert got["scale"] == pytest.approx(64 / 224)
  assert got["window_step"] == pytest.approx(1.5 * 64 / 224)  # 0.42857
  assert got["stride_step"] == pytest.approx(0.2 * 64 / 224)  # 0.05714
  assert ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 224) == {
      "scale": 1.0, "window": 45, "stride": 8, "window_step": 1.5, "stride_step": 0.2}
  small = ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 32)  # 6.43 -> 6, 1.14 -> 1
  assert (small["window"], small["stride"]) == (6, 1)
  half = ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 32, scale=0.5)  # 22.5 rounds half up
  assert (half["window"], half["stride"], half["window_step"]) == (23, 4, 0.75)
  assert ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 16, scale=1.0)["window"] == 16  # capped
  with pytest.raises(ValueError, match="scale"):
    ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 64, scale=0.0)
  with pytest.raises(ValueError, match="image_size"):
    ie.scaled_iassa_settings(45, 8, 1.5, 0.2, 0)


def test_select_pairs_all_and_first():
  labels = np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0]], np.float32)
  img, cls = scoring.select_pairs(labels, "all")
  np.testing.assert_array_equal(img, [0, 0, 2])
  np.testing.assert_array_equal(cls, [1, 2, 0])
  img, cls = scoring.select_pairs(labels, "first")
  np.testing.assert_array_equal(img, [0, 2])
  np.testing.assert_array_equal(cls, [1, 0])
  with pytest.raises(ValueError, match="classes must be one of"):
    scoring.select_pairs(labels, "top1")


def test_pixel_level_and_class_mean_by_hand():
  np.testing.assert_allclose(scoring.pixel_level([0.5, 0.2, 1.0], [10, 0, 4]), [0.05, 0.0, 0.25])
  # class 0: (1 + 0) / 2; classes 1 and 2: 1 -> (0.5 + 1 + 1) / 3
  assert scoring.class_mean([1, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(2.5 / 3)
  assert math.isnan(scoring.class_mean([], []))
  with pytest.raises(ValueError, match="same shape"):
    scoring.pixel_level([1.0], [1, 2])


def test_summarise_by_hand():
  scores = {"deletion": np.array([0.2, 0.4, 0.6]), "insertion": np.array([0.9, 0.6, 0.3]),
            "f1": np.array([0.5, 0.0, 1.0]), "iou": np.array([0.25, 0.0, 1.0]),
            "pointing": np.array([1.0, 0.0, -1.0]),  # the third pair has no GT pixel
            "pointing_strict": np.array([0.0, 0.0, -1.0]), "area": np.array([10, 0, 5])}
  out = scoring.summarise(scores, np.array([0, 1, 1]))
  assert out["image"]["deletion"] == pytest.approx(0.4)
  assert out["image"]["f1"] == pytest.approx(0.5)
  assert out["image"]["pointing"] == pytest.approx(0.5)  # class 0: 1, class 1: 0
  assert out["image"]["pointing_strict"] == 0.0
  assert out["image"]["area"] == pytest.approx(5.0)
  assert out["pixel"]["deletion"] == pytest.approx((0.02 + 0.0 + 0.12) / 3)
  assert out["pixel"]["iou"] == pytest.approx((0.025 + 0.0 + 0.2) / 3)
  assert out["pixel"]["pointing"] == pytest.approx((0.1 + 0.0) / 2)


def _toy(num=3, size=8):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(num, size, size, 3)).astype(np.float32)
  gt = np.zeros((num, size, size), bool)
  gt[:, 2:5, 3:6] = True
  maps = rng.random((num, size, size)).astype(np.float32)
  maps[1, 3, 4] = 2.0  # maximum on the object
  return images, gt, maps


def _probs(x):
  w = jnp.arange(1.0, 4.0)
  return jax.nn.sigmoid(jnp.stack([x.mean((1, 2)) @ w, -x.mean((1, 2)) @ w], axis=1))


def test_score_maps_matches_the_metric_functions():
  images, gt, maps = _toy()
  ids = np.array([0, 1, 0])
  got = scoring.score_maps(_probs, images, maps, gt, ids, step=8, tolerance=1.5, chunk=2)
  ref_del, _ = causal.deletion(_probs, images, maps, ids, step=8)
  ref_ins, _ = causal.insertion(_probs, images, maps, ids, step=8)
  np.testing.assert_allclose(got["deletion"], ref_del, rtol=1e-6)
  np.testing.assert_allclose(got["insertion"], ref_ins, rtol=1e-6)
  for p in range(3):
    s = segmentation.segmentation_scores(maps[p], gt[p])
    assert (got["f1"][p], got["iou"][p], got["area"][p]) == (s["f1"], s["iou"], s["area"])
  assert got["pointing"][1] == 1 and got["pointing_strict"][1] == 1
  with pytest.raises(ValueError, match="must agree"):
    scoring.score_maps(_probs, images, maps[:2], gt, ids, step=8, tolerance=1.0)


def test_save_figure_writes_a_png(tmp_path):
  images, gt, maps = _toy(2)
  path = viz.save_map_grid(str(tmp_path / "f.png"), images, gt,
                        [("a", maps[:2]), ("b", maps[:2])], ["m1", "m2"], [0, 1])
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="titles"):
    viz.save_map_grid(str(tmp_path / "g.png"), images, gt, [("a", maps[:2])], ["m1"], [0])


def test_configs_and_clear_errors_for_missing_coco_paths(tmp_path):
  default = iassa_config.get_config()
  assert default.data.image_size == default.explanandum.classifier.data.image_size == 64
  assert tuple(default.iassa.record) == (5, 10, 15, 20, 25)
  coco = iassa_config.get_config("coco")
  assert (coco.data.name, coco.data.image_size, coco.explanandum.arch) == ("coco", 224,
                                                                          "resnet50")
  with pytest.raises(ValueError, match="variant"):
    iassa_config.get_config("imagenet")
  with pytest.raises(ValueError, match="coco_annotations"):
    datasets.load_test(coco)
  bad = iassa_config.get_config("quick")
  bad.data.name = "coco"
  with pytest.raises(ValueError, match="source='registry'"):
    ie.train_and_evaluate(bad, str(tmp_path))
  bad = iassa_config.get_config("quick")
  bad.eval.classes = "top1"
  with pytest.raises(ValueError, match="eval.classes"):
    ie.train_and_evaluate(bad, str(tmp_path))


def test_quick_config_end_to_end(tmp_path):
  config = iassa_config.get_config("quick")
  config.iassa.update(mixes=("code",), regions=("paper", "code"), max_iters=4, record=(2, 4))
  results = ie.train_and_evaluate(config, str(tmp_path))
  rows = ["RISE"] + [f"IASSA mix=code region={r} k={k}" for r in ("paper", "code")
                     for k in (2, 4)]
  for level in ("image", "pixel"):
    assert list(results["table"][level]) == rows
    for row in rows:
      values = results["table"][level][row]
      for metric in scoring.METRICS:
        assert np.isfinite(values[metric]), (level, row, metric)
        if level == "image":
          assert 0.0 <= values[metric] <= 1.0, (row, metric, values[metric])
        else:
          assert values[metric] >= 0.0
  p = results["num_pairs"]
  assert p >= results["num_images"] >= 1
  assert results["best_mix"] in ("mix=code region=paper", "mix=code region=code")
  # F1 and IoU against RISE at every k, and k=25 against k=5, for both variants.
  assert len(results["comparisons"]) == 2 * (2 * 2 + 2)
  assert {c["verdict"] for c in results["comparisons"]} <= {"holds", "reversed", "not resolved"}
  assert set(results["ci"]) == set(rows)
  for row in rows:
    c = results["ci"][row]["f1"]
    assert c["low"] <= c["mean"] <= c["high"]
    assert c["mean"] == pytest.approx(results["table"]["image"][row]["f1"])
  s = results["settings"]["iassa"]
  assert (s["window"], s["stride"]) == (13, 2) and s["paper"]["window"] == 45
  assert results["settings"]["step"] == 32 and results["settings"]["tolerance"] == pytest.approx(
      15 * 32 / 224)
  for name in ("results.json", "tables.md", "table.csv", "pairs.csv", "iassa_maps.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  assert json.loads((tmp_path / "results.json").read_text())["num_pairs"] == p
  md = (tmp_path / "tables.md").read_text()
  assert "| IASSA mix=code region=code k=4 |" in md and "| paper COCO IASSA |" in md
  with open(tmp_path / "table.csv") as f:
    assert len(list(csv.DictReader(f))) == 2 * len(rows) + 6
  with open(tmp_path / "pairs.csv") as f:
    assert len(list(csv.DictReader(f))) == len(rows) * p
  assert os.path.isdir(tmp_path / "classifier" / "checkpoints")
