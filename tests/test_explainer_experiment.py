"""NN-Explainer experiment: mask normalisation, scoring tables, configs run end to end."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import explainer as explainer_config, explainer_paper
from experiments.tasks import datasets, explainer as experiment
from rise_jax.metrics.explainer import explainer_scores
from tests import data_fixtures as fx


def test_normalise_maps_min_max_per_map_and_constant_maps_to_zero():
  maps = np.array([[[[1.0, 3.0], [2.0, 5.0]], [[7.0, 7.0], [7.0, 7.0]]]])
  got = experiment.normalise_maps(maps)
  np.testing.assert_allclose(got[0, 0], [[0.0, 0.5], [0.25, 1.0]])
  np.testing.assert_array_equal(got[0, 1], 0.0)
  assert got.dtype == np.float32


def _toy_split(num=6, size=8, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  seg = np.zeros((num, size, size, classes), bool)
  for i in range(num):
    c = i % classes
    y, x = rng.integers(0, size - 3, 2)
    seg[i, y:y + 3, x:x + 3, c] = True
  seg[0, 5:8, 5:8, (1 + 0) % classes] = True  # one image with two classes
  labels = seg.any((1, 2)).astype(np.float32)
  images = rng.normal(size=(num, size, size, 3)).astype(np.float32)
  return {"image": images, "label": labels, "segmentation": seg}


def _probs_fn(weights):
  w = jnp.asarray(weights)

  def fn(x):
    return jax.nn.softmax(jnp.einsum("bhwc,k->bk", jnp.abs(x), w[:3]) * w[3:], axis=-1)

  return fn


def test_score_methods_gt_masks_equal_the_gt_sanity_row_and_formulas():
  test = _toy_split()
  probs_fn = _probs_fn(np.array([0.1, 0.2, 0.3, 1.0, 2.0, 3.0], np.float32))
  perfect = np.transpose(test["segmentation"], (0, 3, 1, 2)).astype(np.float32)
  noisy = np.clip(perfect + 0.3, 0, 1)
  out = experiment.score_methods(probs_fn, test, {"perfect": perfect, "noisy": noisy,
                                                  "noisy_seconds_per_image": 0.5})
  t2 = out["table2"]
  assert set(t2) == {"perfect", "noisy", "0", "0.5", "1", "G.T."}
  for k in ("acc", "iou", "sal", "mae"):
    assert t2["perfect"][k] == pytest.approx(t2["G.T."][k], abs=1e-9)
  assert t2["perfect"]["acc"] == pytest.approx(1.0) and t2["perfect"]["mae"] == 0.0
  # The noisy row is explainer_scores of the max over true classes of the noisy masks.
  gt = (test["segmentation"] & (test["label"] > 0)[:, None, None, :]).any(-1)
  m = (noisy * test["label"][:, :, None, None]).max(1)
  probs = np.asarray(probs_fn(jnp.asarray(test["image"] * m[..., None])))
  ref = explainer_scores(m, gt, probs, test["label"])
  for k in ("acc", "iou", "sal", "mae"):
    assert t2["noisy"][k] == pytest.approx(ref[k], rel=1e-5)
  assert out["seconds_per_image"] == {"noisy": 0.5} and out["num_images"] == 6
  cs = out["class_specific"]["perfect"]
  assert np.asarray(cs["table"]).shape == (3, 4)
  md = experiment.tables_markdown(out, ["a", "b", "c"])
  assert "| G.T. | 100.00 |" in md and "| a |" in md and "paper Acc" in md


def test_score_methods_leaves_out_images_without_a_class():
  test = _toy_split()
  test["label"][2] = 0
  test["segmentation"][2] = False
  masks = {"m": np.full((6, 3, 8, 8), 0.5, np.float32)}
  out = experiment.score_methods(_probs_fn(np.ones(6, np.float32)), test, masks)
  assert out["num_images"] == 5
  assert out["table2"]["m"]["mae"] == pytest.approx(0.5)


def test_coefficients_preset_with_overrides():
  config = explainer_config.get_config()
  assert experiment.coefficients(config) == experiment.losses.preset("voc-vgg16")
  config.explainer.coefficients.le = 7.0
  got = experiment.coefficients(config)
  assert got.le == 7.0 and got.ltv == experiment.losses.preset("voc-vgg16").ltv
  config.explainer.coefficients.le = -1.0
  with pytest.raises(ValueError, match="le"):
    experiment.coefficients(config)


def test_paper_configs_pick_the_authors_coefficients():
  for setting in explainer_paper.SETTINGS:
    config = explainer_paper.get_config(setting)
    assert experiment.coefficients(config) == experiment.losses.preset(setting)
    assert config.explainer.backbone == "resnet50" and config.explainer.output_stride == 8
    assert config.explainer.batch_size == 16
    assert config.data.num_classes == (20 if setting.startswith("voc") else 80)
  with pytest.raises(ValueError, match="exactly one setting"):
    explainer_paper.get_config("quick")
  with pytest.raises(ValueError, match="variant must be one of"):
    explainer_paper.get_config("voc-vgg")


def test_synthetic_quick_config_runs_end_to_end_and_reuses_stages(tmp_path):
  config = explainer_config.get_config("quick")
  workdir = str(tmp_path / "run")
  results = experiment.train_and_evaluate(config, workdir)
  assert set(results["table2"]) == {"Explainer", "RISE", "Grad-CAM", "0", "0.5", "1", "G.T."}
  for row in results["table2"].values():
    assert 0 <= row["acc"] <= 1 and 0 <= row["iou"] <= 1 and np.isfinite(row["sal"])
  assert results["table2"]["0.5"]["mae"] == pytest.approx(0.5)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["num_images"] == results["num_images"]
  assert "Explainer metrics" in open(os.path.join(workdir, "tables.md")).read()
  again = experiment.train_and_evaluate(config, workdir)  # checkpoints reused, same numbers
  assert again["table2"]["Explainer"] == pytest.approx(results["table2"]["Explainer"])


@pytest.mark.slow  # end to end: runs in .ci/run's slow set
def test_paper_config_runs_on_mock_voc(tmp_path):
  from rise_jax.models import registry
  from rise_jax.train import checkpoint

  devkit = fx.make_voc_devkit(str(tmp_path))
  data_dir = str(tmp_path / "tfds")
  fx.write_tfds(data_dir, "voc/2007", "5.0.0", fx.voc_tfds_features(),
                fx.voc_tfds_examples(devkit), split=("train", "validation"))
  module = registry.build("tiny", num_classes=20)
  variables = module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  weights = checkpoint.save_variables(str(tmp_path / "tiny_voc"), variables)
  config = explainer_paper.get_config("voc-vgg16,quick")
  config.explanandum.update(arch="tiny", weights=weights)
  config.data.update(data_dir=data_dir, voc_root=devkit["root"], test_split="val")
  results = experiment.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["num_images"] == 2  # VOC val: 000005 (dog, person), 000007 (aeroplane)
  assert len(results["class_specific"]["Explainer"]["table"]) == 20
  assert results["explainer_training"]["history"][0]["epoch"] == 1


def test_paper_config_without_test_paths_says_what_is_missing(tmp_path):
  config = explainer_paper.get_config("coco-vgg16,quick")
  with pytest.raises((ValueError, FileNotFoundError)):
    datasets.real_splits(config.data)
  config = explainer_paper.get_config("voc-vgg16,quick")
  config.data.name = "imagenet"
  with pytest.raises(ValueError, match="data.name must be"):
    datasets.real_splits(config.data)
