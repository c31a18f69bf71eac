"""End-to-end test of the main job (quick config) and of its config."""

import json
import os

import matplotlib.image as mpimg
import numpy as np
import pytest

from configs import default
from rise_jax import demo


def test_run_demo_quick(tmp_path):
  config = default.get_config("quick")
  workdir = str(tmp_path / "run")
  results = demo.run_demo(config, workdir)

  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert saved["summary"] == results["summary"]
  summary = saved["summary"]
  n, c, s = config.data.num_test, config.data.num_classes, config.data.image_size
  assert summary["num_images"] == n
  assert summary["map_shape"] == [c, s, s]
  assert summary["num_explained_classes"] == sum(len(im["true_classes"]) for im in saved["images"])
  assert summary["num_explained_classes"] >= n
  for key in (
    "mean_mass_in_mask",
    "mean_mask_area_fraction",
    "pointing_accuracy",
    "test_label_accuracy",
  ):
    assert 0.0 <= summary[key] <= 1.0, (key, summary[key])
  assert 0.0 < summary["mean_mask_area_fraction"] < 0.5
  assert summary["rise_seconds"] > 0 and summary["classifier_reused"] is False
  maps = np.load(os.path.join(workdir, "maps.npy"))
  assert maps.shape == (n, c, s, s) and np.isfinite(maps).all()

  assert len(saved["images"]) == n
  for image in saved["images"]:
    assert image["map_shape"] == [c, s, s]
    assert 1 <= len(image["true_classes"]) <= 3
    for entry in image["classes"]:
      assert entry["class"] in image["true_classes"]
      assert 0.0 <= entry["mass_in_mask"] <= 1.0
      assert 0.0 < entry["mask_area_fraction"] < 1.0
      assert 0.0 <= entry["probability"] <= 1.0
    png = mpimg.imread(os.path.join(workdir, image["figure"]))
    panels = 1 + len(image["true_classes"])
    assert png.shape[:2] == (demo.viz.PANEL_PX + demo.viz.TITLE_PX, panels * demo.viz.PANEL_PX)

  # A rerun reuses the cached classifier and reproduces the numbers exactly.
  again = demo.run_demo(config, workdir)["summary"]
  assert again["classifier_reused"] is True
  for key in ("mean_mass_in_mask", "pointing_accuracy", "test_label_accuracy"):
    assert again[key] == summary[key]


def test_mass_in_mask():
  sal = np.array([[1.0, 3.0], [-2.0, 0.0]])
  mask = np.array([[False, True], [True, True]])
  # Shifted by the minimum (-2): [[3, 5], [0, 2]] -> (5 + 0 + 2) / 10.
  assert demo._mass_in_mask(sal, mask) == pytest.approx(0.7)
  assert demo._mass_in_mask(np.full((2, 2), 4.0), mask) == 0.0


def test_config_variants():
  full, quick = default.get_config(), default.get_config("quick")
  assert full.workdir == "./runs/default" and full.data.image_size == 64
  assert full.rise.num_masks == 2000 and full.rise.grid_size == 7 and full.rise.p1 == 0.5
  assert quick.data.num_train < full.data.num_train
  assert quick.rise.num_masks < full.rise.num_masks
  assert quick.train.steps < full.train.steps
  with pytest.raises(ValueError, match="config variant"):
    default.get_config("huge")


def test_run_demo_rejects_unknown_model(tmp_path):
  config = default.get_config("quick")
  config.model.name = "ResNet50"
  with pytest.raises(ValueError, match="model.name"):
    demo.run_demo(config, str(tmp_path))
