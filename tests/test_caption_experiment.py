"""The captioning experiment as a library function: the quick config end to end, the pointing
numbers recomputed from the saved maps, rerun reuse, config overrides and bad config values."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys

import numpy as np
import pytest

import rise_jax
from configs import caption as caption_config
from experiments.tasks import caption as ce, run_folder
from rise_jax import caption as caption_lib
from rise_jax.data import captions, synthetic
from rise_jax.metrics import pointing
from rise_jax.train import captioner as train_lib


def _fail(*args, **kwargs):
  raise AssertionError("should have been reused, not recomputed")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """One quick run (shared by the tests below): ``(config, workdir, results)``."""
  config = caption_config.get_config("quick")
  workdir = str(tmp_path_factory.mktemp("caption_quick"))
  return config, workdir, ce.train_and_evaluate(config, workdir)


def _in_unit(v) -> bool:
  return v is None or (isinstance(v, float) and math.isnan(v)) or 0.0 <= v <= 1.0


def test_quick_run_writes_everything_in_range(quick_run):
  config, workdir, res = quick_run
  for name in ("results.json", "tables.md", "training_curves.png", "maps.npz",
               "captioner/run.json", "overlays/000.png", "overlays/001.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert not os.path.exists(os.path.join(workdir, "overlays", "002.png"))  # num_png = 2
  with open(os.path.join(workdir, "training_curves.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert saved.keys() == res.keys()
  assert {"config", "training", "captions", "pointing", "pointing_15px",
          "not_in_scene_first_slot", "object_pixel_fraction", "rise_seconds", "images",
          "fingerprint"} <= set(res)
  c = res["config"]
  assert (c["image_size"], c["num_test"], c["num_explain"], c["num_masks"]) == (32, 16, 3, 40)
  assert c["tolerance"] == pytest.approx(15 * 32 / 224)
  tr = res["training"]
  assert tr["cached"] is False and tr["train_seconds"] > 0
  assert [h["epoch"] for h in tr["history"]] == [1] and math.isfinite(tr["final_val_loss"])
  for v in res["captions"].values():
    assert 0.0 <= v <= 1.0
  p = res["pointing"]
  for v in (p["method"]["all"], p["method"]["difficult"], p["centre"]["all"],
            p["centre"]["difficult"], *p["method"]["per_class"].values(),
            *res["pointing_15px"].values()):
    assert _in_unit(v)
  assert 0.0 < res["object_pixel_fraction"] < 1.0
  # Counts agree with the per-image records.
  hits = [n["hit"] for im in res["images"] for n in im["nouns"]]
  assert len(res["images"]) == 3
  assert p["count"] == sum(h >= 0 for h in hits)
  assert p["hallucinated_nouns"] == sum(h < 0 for h in hits)
  assert p["count_difficult"] <= p["count"]
  slots = res["not_in_scene_first_slot"]
  assert list(slots) == ["leftmost", "other_present", "absent"]
  assert sum(s["prob"]["count"] for s in slots.values()) == 3 * len(synthetic.CLASS_NAMES)
  assert slots["leftmost"]["prob"]["count"] == 3  # one leftmost shape per scene
  for s in slots.values():
    assert _in_unit(s["prob"]["mean"]) and _in_unit(s["max_on_an_object_pixel"]["mean"])
    assert s["map_range"]["mean"] is None or s["map_range"]["mean"] >= 0
  tables = open(os.path.join(workdir, "tables.md")).read()
  for text in ("Greedy captions", "Noun pointing game", "| centre |", "a ___",
               "absent from the scene"):
    assert text in tables


def test_pointing_numbers_equal_a_recomputation_from_the_saved_maps(quick_run):
  config, workdir, res = quick_run
  test = captions.make("test", config.data.num_test, seed=config.seed,
                       image_size=config.data.image_size)
  saved = np.load(os.path.join(workdir, "maps.npz"))
  tol = res["pointing"]["tolerance"]
  num_classes = len(synthetic.CLASS_NAMES)
  game, game15 = pointing.PointingGame(num_classes, tol), pointing.PointingGame(num_classes, 15)
  assert saved["noun_maps"].shape == (res["pointing"]["count"], 32, 32)
  scored = [n for im in res["images"] for n in im["nouns"] if n["hit"] >= 0]
  for m, i, c, k, n, rec in zip(saved["noun_maps"], saved["noun_image"], saved["noun_class"],
                                saved["noun_position"], saved["noun_num_present"], scored):
    seg = test["segmentation"][i][..., c]
    assert (k, captions.noun_id(int(c))) == (rec["position"], captions.WORD_TO_ID[rec["word"]])
    assert n == int(test["label"][i].sum())
    assert game.update(m, seg, int(c), num_present=int(n)) == rec["hit"]
    game15.update(m, seg, int(c), num_present=int(n))
    assert list(pointing.max_point(m)) == rec["max_at"]
  ref, ref15 = game.results(), game15.results()
  p = res["pointing"]
  np.testing.assert_equal([p["method"]["all"], p["method"]["difficult"], p["centre"]["all"],
                           p["centre"]["difficult"], p["count"], p["count_difficult"]],
                          [ref["method"]["all"]["mean"], ref["method"]["difficult"]["mean"],
                           ref["centre"]["all"]["mean"], ref["centre"]["difficult"]["mean"],
                           ref["method"]["all"]["count"], ref["method"]["difficult"]["count"]])
  np.testing.assert_equal([res["pointing_15px"]["method"], res["pointing_15px"]["centre"]],
                          [ref15["method"]["all"]["mean"], ref15["centre"]["all"]["mean"]])
  # The slot table from the saved slot maps.
  slot = saved["slot_maps"]
  assert slot.shape == (3, num_classes, 32, 32)
  absent = [float(slot[i, c].max() - slot[i, c].min()) for i in range(3)
            for c in range(num_classes) if test["label"][i][c] == 0]
  absent_stats = res["not_in_scene_first_slot"]["absent"]["map_range"]
  assert absent_stats["count"] == len(absent)
  if absent:
    assert absent_stats["mean"] == pytest.approx(np.mean(absent), rel=1e-5)


def test_rerun_reuses_results_and_captioner(quick_run, monkeypatch, tmp_path):
  config, original, res = quick_run
  workdir = str(tmp_path / "run")
  shutil.copytree(original, workdir)  # the shared run folder stays as the first run left it
  monkeypatch.setattr(caption_lib, "caption_rise", _fail)
  monkeypatch.setattr(train_lib, "fit_captioner", _fail)
  again = ce.train_and_evaluate(config, workdir)  # unchanged fingerprint: the saved results
  assert json.dumps(again, sort_keys=True) == json.dumps(res, sort_keys=True)
  # progress / workdir are not part of the fingerprint.
  other = caption_config.get_config("quick")
  other.progress, other.workdir = True, "/elsewhere"
  assert run_folder.config_fingerprint(other)[0] == run_folder.config_fingerprint(config)[0]
  assert ce.train_and_evaluate(other, workdir)["images"] == res["images"]
  # Another setting is refused; with overwrite it reruns the evaluation but reuses the trained
  # captioner, a run folder of its own (RISE is faked: only the reuse is tested here).
  monkeypatch.undo()
  monkeypatch.setattr(train_lib, "fit_captioner", _fail)
  calls = []

  def fake_caption_rise(fn, image, words, key, *, return_info, num_masks, **kw):
    calls.append(num_masks)
    maps = np.random.default_rng(0).random((len(words), *image.shape[:2]), np.float32)
    return maps, caption_lib.CaptionRiseInfo(np.full(len(words), 0.5, np.float32), num_masks)

  monkeypatch.setattr(caption_lib, "caption_rise", fake_caption_rise)
  monkeypatch.setattr(rise_jax, "rise", lambda fn, image, key, *, classes, **kw: np.zeros(
      (len(classes), *image.shape[:2]), np.float32))
  changed = caption_config.get_config("quick")
  changed.rise.num_masks = 8
  changed.eval.update(num_explain=1, num_png=0, save_maps=False)
  with pytest.raises(run_folder.RunFolderError, match="rise.num_masks"):
    ce.train_and_evaluate(changed, workdir)
  changed.overwrite = True
  out = ce.train_and_evaluate(changed, workdir)
  assert calls == [8]
  assert out["training"]["cached"] is True and out["training"]["train_seconds"] is None
  assert out["training"]["history"] == res["training"]["history"]
  assert out["captions"] == res["captions"]  # same captioner, same greedy captions
  assert out["images"][0]["caption"] == res["images"][0]["caption"]
  assert (out["config"]["num_explain"], out["config"]["num_masks"]) == (1, 8)
  assert out["fingerprint"] != res["fingerprint"]


def test_a_captioner_trained_with_another_config_is_not_reused(quick_run, monkeypatch):
  _, workdir, _ = quick_run
  monkeypatch.setattr(train_lib, "fit_captioner", _fail)
  config = caption_config.get_config("quick")
  config.train.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"another config.*train\.learning_rate"):
    ce.train_and_evaluate(config, workdir)


def test_configs_and_overrides():
  default = caption_config.get_config()
  assert (default.data.image_size, default.data.num_train, default.train.epochs,
          default.eval.num_explain, default.rise.num_masks) == (64, 10000, 12, 100, 1000)
  assert default.eval.tolerance is None and default.progress
  small = caption_config.get_config("small")
  assert small.workdir == "./runs/caption_small" and 10 <= small.eval.num_explain <= 20
  quick = caption_config.get_config("quick")
  assert not quick.progress and quick.data.image_size == 32
  for cfg in (default, small, quick):
    ce.check_config(cfg)
  quick.rise.num_masks = 500
  quick.eval.tolerance = 2.5
  assert run_folder.config_fingerprint(quick)[0]["rise"]["num_masks"] == 500
  assert run_folder.config_fingerprint(quick)[0]["eval"]["tolerance"] == 2.5
  assert ce.build_module(quick).features == (8, 16)


def test_command_line_overrides(tmp_path, monkeypatch):
  from absl import flags

  from experiments import explain_caption

  calls = []
  monkeypatch.setattr(ce, "train_and_evaluate",
                      lambda config, workdir: calls.append((config, workdir)))
  monkeypatch.setattr("builtins.print", lambda *a, **k: None)
  (tmp_path / "tables.md").write_text("")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  argv = ["explain_caption", f"--config={root}/configs/caption.py:small",
          "--config.rise.num_masks=250", "--config.eval.tolerance=3.0", f"--workdir={tmp_path}"]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the overrides from sys.argv
  flags.FLAGS(argv)
  try:
    explain_caption.main(["explain_caption"])
  finally:
    flags.FLAGS.unparse_flags()
  (config, workdir), = calls
  assert workdir == str(tmp_path)
  assert (config.rise.num_masks, config.eval.tolerance) == (250, 3.0)
  assert config.data.num_train == caption_config.get_config("small").data.num_train


@pytest.mark.parametrize("path,value,match", [
    ("rise.num_masks", 0, r"config\.rise\.num_masks must be an integer >= 1, got 0"),
    ("rise.num_masks", -5, r"rise\.num_masks"),
    ("rise.grid_size", 0, r"rise\.grid_size"),
    ("rise.p1", 1.0, r"rise\.p1 must be a number in \(0, 1\)"),
    ("rise.batch_size", 0, r"rise\.batch_size"),
    ("eval.num_explain", 0, r"eval\.num_explain"),
    ("eval.num_png", -1, r"eval\.num_png"),
    ("eval.tolerance", -1.0, r"eval\.tolerance"),
    ("train.epochs", 0, r"train\.epochs"),
    ("train.batch_size", 1000, r"train\.batch_size must be <= data\.num_train"),
    ("train.learning_rate", 0.0, r"train\.learning_rate"),
    ("data.num_test", 0, r"data\.num_test"),
    ("data.image_size", 2, r"data\.image_size"),
])
def test_bad_config_values_raise_clear_errors(tmp_path, monkeypatch, path, value, match):
  monkeypatch.setattr(train_lib, "fit_captioner", _fail)
  config = caption_config.get_config("quick")
  section, name = path.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=match):
    ce.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing trained or written


def test_unknown_or_conflicting_variants():
  with pytest.raises(ValueError, match="variant must be one of"):
    caption_config.get_config("tiny")
  with pytest.raises(ValueError, match="choose one"):
    caption_config.get_config("small,quick")
