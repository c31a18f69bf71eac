"""Every config of ``configs/`` builds; every paper setting of ``configs/rise.py``,
``configs/iassa.py`` (``coco``) and ``configs/explainer_paper.py`` runs one small step on mock data
in each dataset's real on-disk format (explainer ``voc-vgg16``: in
``tests/test_explainer_experiment.py``).

"One small step" of a paper setting: the variant's config unchanged except (a) the registry
architecture (ResNet50 / VGG16) replaced by ``tiny`` (TinyCNN, 64-px input, random weights with
the setting's 20 / 80 / 1000-class head saved as an Orbax folder, i.e. the same
``explanandum.weights`` path mechanism as real fine-tuned weights), so ``data.image_size=64``,
(b) the data paths pointing at miniature datasets written by ``tests/data_fixtures.py`` (TFDS
``imagenet2012`` / ``voc/2007`` / ``coco/2014`` array_record files, an ImageNet image folder with
its label file, a VOCdevkit, a COCO instances JSON), and (c) everything sized down:
``data.max_test=2`` images, 8 RISE masks, one occlusion window (``window = stride = 224`` at the
paper size, i.e. the whole 64-px image), deletion/insertion in 4 steps (``eval.step=1024``).
All three methods and all the variant's metrics then run through the real loaders,
preprocessing, pair selection (top-1 for ImageNet, true classes for VOC/COCO), scoring and
tables (no figures: ``tests/test_rise_experiment.py`` covers them).

The IASSA and Explainer settings get the same TinyCNN / mock-data substitution (IASSA: 2 of its
iterations at the paper's unscaled 45 / 8 windows, attention on TinyCNN's three stages; the
Explainer: one training step of 2 TFDS images, 8 RISE masks) and run through
``iassa_experiment.train_and_evaluate`` / ``explainer.experiment.train_and_evaluate``.
"""

from __future__ import annotations

import glob
import importlib
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import rise as rise_config
from experiments.tasks import datasets, rise_tables as rx
from rise_jax.data import preprocess
from rise_jax.metrics import scoring
from tests import data_fixtures as fx

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")


def _declared_variants() -> list[tuple[str, str | None]]:
  """``(module, variant)`` for every config module with ``get_config``: ``None`` (the default)
  when the module has one, and each declared variant (``_VARIANTS``, else ``SETTINGS``)."""
  out = []
  for path in sorted(glob.glob(os.path.join(_CONFIG_DIR, "*.py"))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name.startswith("_"):
      continue
    module = importlib.import_module(f"configs.{name}")
    if not hasattr(module, "get_config"):
      continue
    declared = getattr(module, "_VARIANTS", None)
    if declared is not None:
      out += [(name, None)] + [(name, v) for v in declared]
    else:
      out += [(name, v) for v in getattr(module, "SETTINGS", (None,))]
  return out


@pytest.mark.parametrize("module, variant", _declared_variants())
def test_every_config_variant_builds(module, variant):
  config = importlib.import_module(f"configs.{module}").get_config(variant)
  assert isinstance(config, ml_collections.ConfigDict)
  assert config.to_json_best_effort()  # serialisable, as config_flags and the runs need


def test_rise_config_variants_and_overrides():
  assert set(rise_config._VARIANTS) == {"quick", *rise_config.PAPER_SETTINGS}
  paper = {"imagenet-resnet50": ("imagenet", "resnet50", 8000, "top1", 1000),
           "imagenet-vgg16": ("imagenet", "vgg16", 4000, "top1", 1000),
           "voc07-vgg16": ("voc", "vgg16", 4000, "true", 20),
           "voc07-resnet50": ("voc", "resnet50", 8000, "true", 20),
           "coco14-vgg16": ("coco", "vgg16", 4000, "true", 80),
           "coco14-resnet50": ("coco", "resnet50", 8000, "true", 80)}
  for setting, (data, arch, n, classes, num_classes) in paper.items():
    c = rise_config.get_config(setting)
    assert (c.data.name, c.explanandum.arch, c.rise.num_masks, c.eval.classes) == (
        data, arch, n, classes)
    assert (c.data.image_size, c.data.num_classes) == (224, num_classes)
    assert (c.rise.grid_size, c.rise.p1, c.explanandum.source) == (7, 0.5, "registry")
    assert ("pointing" in c.eval.metrics) == (data != "imagenet")
    rx.check_config(c)
  c = rise_config.get_config()
  assert c.experiment == "rise" and c.explanandum.classifier_dir == ""
  rx.check_config(c)
  c.data.max_test = 5  # a typed FieldReference: command-line overridable
  with pytest.raises(TypeError):
    c.data.max_test = "five"
  with pytest.raises(ValueError, match="at most one"):
    rise_config.get_config("quick,voc07-vgg16")
  with pytest.raises(ValueError, match="variant must be one of"):
    rise_config.get_config("voc12-vgg16")


def test_rise_sweep_grid():
  points = list(rise_config.sweep())
  assert len(points) == 9
  assert {(p["rise.num_masks"], p["rise.grid_size"]) for p in points} == {
      (n, s) for n in (500, 1000, 2000) for s in (4, 7, 10)}
  assert all(p["eval.methods"] == ("RISE",) for p in points)
  full = list(rise_config.sweep("full"))
  assert len(full) == 18 and {p["rise.p1"] for p in full} == {0.25, 0.5}
  with pytest.raises(ValueError, match="sweep argument"):
    list(rise_config.sweep("huge"))


# ------------------------------------------------------------------------ paper settings


@pytest.fixture(scope="module")
def mock_root(tmp_path_factory):
  return tmp_path_factory.mktemp("rise_mock")


@pytest.fixture(scope="module")
def tiny_weights(mock_root):
  """``weights(num_classes)``: an Orbax folder of random TinyCNN variables with that head."""
  from rise_jax.models import registry
  from rise_jax.train import checkpoint

  cache = {}

  def weights(num_classes: int) -> str:
    if num_classes not in cache:
      module = registry.build("tiny", num_classes=num_classes)
      variables = module.init(jax.random.key(num_classes), jnp.zeros((1, 64, 64, 3)))
      cache[num_classes] = checkpoint.save_variables(str(mock_root / f"tiny{num_classes}"),
                                                     variables)
    return cache[num_classes]

  return weights


@pytest.fixture(scope="module")
def imagenet_mock(mock_root):
  """An ImageNet image folder + label file, and the same JPEGs as TFDS ``imagenet2012``."""
  inet = fx.make_imagenet_folder(str(mock_root / "imagenet"))
  jpegs = {n: y for n, y in inet["labels"].items() if not n.endswith(".png")}
  fx.write_tfds(str(mock_root / "tfds"), "imagenet2012", "5.1.0", fx.imagenet_tfds_features(),
                [{"image": os.path.join(inet["image_dir"], n), "label": y,
                  "file_name": os.path.basename(n)} for n, y in jpegs.items()])
  return {**inet, "tfds": str(mock_root / "tfds")}


@pytest.fixture(scope="module")
def voc_mock(mock_root):
  """A VOCdevkit, and its samples as each TFDS ``voc/2007`` split (the Explainer trains on
  ``train`` / ``validation``)."""
  devkit = fx.make_voc_devkit(str(mock_root / "voc"))
  fx.write_tfds(str(mock_root / "tfds"), "voc/2007", "5.0.0", fx.voc_tfds_features(),
                fx.voc_tfds_examples(devkit), split=("train", "validation", "test"))
  return {**devkit, "tfds": str(mock_root / "tfds")}


@pytest.fixture(scope="module")
def coco_mock(mock_root):
  """A COCO instances JSON with its images, and the same images as the TFDS ``coco/2014``
  ``validation`` (and, for the Explainer, ``train``) split."""
  from tensorflow_datasets.core.features import BBox

  from rise_jax.data import coco as coco_lib

  pytest.importorskip("pycocotools")
  coco = fx.make_coco(str(mock_root / "coco"))
  data = coco["data"]
  examples = []
  for info in data["images"]:
    h, w = info["height"], info["width"]
    anns = [a for a in data["annotations"] if a["image_id"] == info["id"]]
    examples.append({
        "image": os.path.join(coco["image_dir"], info["file_name"]),
        "image/filename": info["file_name"], "image/id": info["id"],
        "objects": [{"id": a["id"], "area": int(a["area"]), "is_crowd": bool(a["iscrowd"]),
                     "label": coco_lib.CATEGORY_IDS.index(a["category_id"]),
                     "bbox": BBox(ymin=a["bbox"][1] / h, xmin=a["bbox"][0] / w,
                                  ymax=(a["bbox"][1] + a["bbox"][3]) / h,
                                  xmax=(a["bbox"][0] + a["bbox"][2]) / w)} for a in anns]})
  fx.write_tfds(str(mock_root / "tfds"), "coco/2014", "1.1.0", fx.coco_tfds_features(),
                examples, split=("train", "validation"))
  return {**coco, "tfds": str(mock_root / "tfds")}


def _small_step(config, weights: str) -> None:
  config.progress = False
  config.explanandum.update(arch="tiny", weights=weights)
  config.data.update(image_size=64, max_test=2)
  config.rise.update(num_masks=8, batch_size=8)
  config.occlusion.update(window=224, stride=224, batch_size=4)
  config.eval.update(step=1024, batch_size=5, chunk=2, batch_images=2, figure_images=0,
                     save_maps=2)


# setting -> (data source, expected pairs or None: the first 2 examples' labels); 2 images each.
_SOURCES = {
    "imagenet-resnet50": ("tfds", 2),  # the top-1 class of each image
    "imagenet-vgg16": ("folder", 2),
    "voc07-vgg16": ("tfds", None),  # box ground truth (TFDS reading order)
    "voc07-resnet50": ("devkit", 3),  # val list: 000005 dog + person, 000007 aeroplane; masks
    "coco14-vgg16": ("json", 4),  # image 42: person, dog, car; image 73: toothbrush; masks
    "coco14-resnet50": ("tfds", None),  # box ground truth (TFDS reading order)
}
_DEFAULT_SETTINGS = ("imagenet-resnet50", "coco14-vgg16")


@pytest.mark.parametrize("setting", [
    s if s in _DEFAULT_SETTINGS else pytest.param(s, marks=pytest.mark.slow)
    for s in rise_config.PAPER_SETTINGS])
def test_paper_setting_runs_one_small_step_on_mock_data(setting, request, tiny_weights,
                                                        tmp_path):
  """Two settings run by default (ImageNet via TFDS with the top-1 class and 1000 outputs,
  COCO via the instances JSON with mask ground truth); the other four (the other loader of
  each dataset, VOC's boxes) are marked slow."""
  from rise_jax.data import coco as coco_lib, voc as voc_lib

  config = rise_config.get_config(setting)
  source, num_pairs = _SOURCES[setting]
  _small_step(config, tiny_weights(config.data.num_classes))
  mock = request.getfixturevalue(f"{config.data.name}_mock")
  if source == "tfds":
    config.data.data_dir = mock["tfds"]
  elif source == "folder":
    config.data.update(image_dir=mock["image_dir"], label_file=mock["label_file"])
  elif source == "devkit":
    config.data.update(voc_root=mock["root"], test_split="val", pointing_gt="masks")
  else:
    config.data.update(coco_annotations=mock["json"], coco_images=mock["image_dir"])
  if source == "tfds" and config.data.name == "coco":
    config.data.pointing_gt = "boxes"
  if num_pairs is None:
    lib = voc_lib if config.data.name == "voc" else coco_lib
    split = "test" if config.data.name == "voc" else "validation"
    first = list(lib.tfds_examples(split, mock["tfds"]))[:2]
    num_pairs = int(sum((np.asarray(e["label"]) > 0).sum() for e in first))
  results = rx.train_and_evaluate(config, str(tmp_path / setting))
  assert (results["num_images"], results["num_pairs"]) == (2, num_pairs)
  assert set(results["summary"]) == {"RISE", "Grad-CAM", "Occlusion"}
  if config.data.name == "imagenet":
    assert not results["table2"] and results["top1_is_true"] is not None
  else:
    assert results["table2"]["centre"]["pairs"] == num_pairs
    assert all(0 <= results["table2"][m]["all"] <= 100 for m in results["summary"])
  for m in results["summary"]:
    assert 0 <= results["table1"][m]["deletion"] <= 1 and 0 <= results["table1"][m]["insertion"]
    assert len(results["mean_curves"]["deletion"][m]) == 5  # 4096 px / 1024 per step + 1
  assert os.path.exists(tmp_path / setting / "tables.md")


# Explainer (configs/explainer_paper.py) and IASSA (configs/iassa.py:coco) paper settings.
# explainer voc-vgg16 runs in tests/test_explainer_experiment.py::test_paper_config_runs_on_mock_voc
# (TFDS voc/2007 train/validation, VOCdevkit val list); here voc-resnet50 takes the devkit's
# trainval list instead.
_OTHER_SETTINGS = ("iassa:coco", "explainer_paper:coco-vgg16", "explainer_paper:voc-resnet50",
                   "explainer_paper:coco-resnet50")
_OTHER_DEFAULT = "iassa:coco"


def _coco_pairs(coco: dict) -> list[tuple[int, int]]:
  """(image index, class index) of every class present in the mock COCO JSON, file order."""
  from rise_jax.data import coco as coco_lib

  data = coco["data"]
  return [(i, c) for i, info in enumerate(data["images"])
          for c in sorted({coco_lib.CATEGORY_IDS.index(a["category_id"])
                           for a in data["annotations"] if a["image_id"] == info["id"]})]


def _run_iassa_coco(config, weights: str, coco: dict, workdir) -> None:
  """IASSA Table 1 on the COCO instances JSON: every image, all present classes."""
  import csv

  from experiments.tasks import iassa_table as ie

  config.progress = False
  config.explanandum.update(arch="tiny", weights=weights)
  config.data.update(image_size=64, coco_annotations=coco["json"],
                     coco_images=coco["image_dir"])
  config.rise.update(num_masks=8, batch_size=8)
  # The paper's unscaled 45 / 8 windows on the 64-px image (3 x 3 windows); TinyCNN has three
  # stages, not ResNet50's four.
  config.iassa.update(max_iters=2, record=(1, 2), batch_size=16, scale=1.0, regions=("paper",),
                      stages=("stage1", "stage2", "stage3"))
  config.eval.update(step=1024, batch_size=8, chunk=4, figure_pairs=0)
  results = ie.train_and_evaluate(config, str(workdir))

  pairs = _coco_pairs(coco)  # 42: person, car, dog (crowd + not); 73: toothbrush; 99: none
  assert len(pairs) == 4
  assert (results["num_images"], results["num_pairs"]) == (2, len(pairs))
  rows = ["RISE"] + [f"IASSA mix={m} region=paper k={k}" for m in ("paper", "code")
                     for k in (1, 2)]
  for level in ("image", "pixel"):
    assert list(results["table"][level]) == rows
    for row in rows:
      for metric in scoring.METRICS:
        v = results["table"][level][row][metric]
        assert np.isfinite(v) and v >= 0, (level, row, metric, v)
        if level == "image":
          assert v <= 1, (row, metric, v)
  assert len(results["comparisons"]) == 2 * (2 * 2 + 2)
  s = results["settings"]
  assert (s["dataset"], s["image_size"], s["step"]) == ("coco", 64, 1024)
  assert (s["iassa"]["window"], s["iassa"]["stride"]) == (45, 8)
  assert all(1 <= r["iterations_mean"] <= 2 and r["windows_per_pair"] > 0
             for r in results["iassa_runs"].values())
  assert results["explanandum"] == {"source": "registry", "arch": "tiny", "weights": weights}
  assert len(results["class_names"]) == 80
  with open(workdir / "results.json") as f:
    assert json.load(f)["num_pairs"] == len(pairs)
  assert "| IASSA mix=code region=paper k=2 |" in (workdir / "tables.md").read_text()
  with open(workdir / "pairs.csv") as f:
    got = list(csv.DictReader(f))
  assert len(got) == len(rows) * len(pairs)
  assert sorted({(int(r["image"]), int(r["class"])) for r in got}) == pairs
  assert not os.path.exists(workdir / "iassa_maps.png")  # eval.figure_pairs=0


def _run_explainer(config, weights: str, mock: dict, workdir) -> None:
  """The Explainer trained for one step (2 TFDS train images, batch 2), then Table 2 and the
  class-specific table of the Explainer, RISE and Grad-CAM on the segmentation test split."""
  from experiments.tasks import explainer as ex

  config.progress = False
  config.explanandum.update(arch="tiny", weights=weights)
  config.data.update(image_size=64, max_train=2, max_val=2, data_dir=mock["tfds"])
  if config.data.name == "coco":
    config.data.update(coco_annotations=mock["json"], coco_images=mock["image_dir"])
    num_images = len({i for i, _ in _coco_pairs(mock)})  # 42 and 73; 99 has no class
  else:
    config.data.update(voc_root=mock["root"], test_split="trainval")
    num_images = len(mock["splits"]["trainval"])  # 000005, 000007, 000009: all with classes
  config.explainer.update(epochs=1, batch_size=2, width=8)
  config.eval.update(batch_size=4, figure_images=0)
  config.eval.rise.update(num_masks=8, batch_size=8)
  results = ex.train_and_evaluate(config, str(workdir))

  assert results["num_images"] == num_images
  methods = {"Explainer", "RISE", "Grad-CAM"}
  assert set(results["table2"]) == methods | {"0", "0.5", "1", "G.T."}
  for name, row in results["table2"].items():
    assert all(0 <= row[k] <= 1 for k in ("acc", "iou", "mae")), (name, row)
    assert np.isfinite(row["sal"]), (name, row)
  assert results["table2"]["0.5"]["mae"] == pytest.approx(0.5)
  assert results["table2"]["G.T."]["acc"] == pytest.approx(1.0)
  c = config.data.num_classes
  assert set(results["class_specific"]) == methods
  for name, cs in results["class_specific"].items():
    table = np.asarray(cs["table"], np.float64)
    assert table.shape == (c, c + 1), name
    seen = table[~np.isnan(table)]
    assert seen.size and np.all((seen >= 0) & (seen <= 1)), name
    assert 0 <= cs["diagonal_mean"] <= 1, name
  assert set(results["seconds_per_image"]) == methods
  history = results["explainer_training"]["history"]
  assert [h["epoch"] for h in history] == [1] and results["explainer_training"]["best_epoch"] == 1
  assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])
  assert results["figures"] == []
  with open(workdir / "results.json") as f:
    assert json.load(f)["num_images"] == num_images
  md = (workdir / "tables.md").read_text()
  assert "| Explainer |" in md and "Class-specific masking, Grad-CAM" in md


@pytest.mark.parametrize("name", [
    n if n == _OTHER_DEFAULT else pytest.param(n, marks=pytest.mark.slow)
    for n in _OTHER_SETTINGS])
def test_other_paper_settings_run_one_small_step_on_mock_data(name, request, tiny_weights,
                                                               tmp_path):
  """IASSA's COCO setting runs by default (registry explanandum, COCO instances JSON, both
  mixes); the Explainer's other settings (TFDS ``coco/2014`` or ``voc/2007`` train/validation,
  JSON or VOCdevkit test split) are marked slow. TinyCNN replaces ResNet50 / VGG16 as in
  :func:`test_paper_setting_runs_one_small_step_on_mock_data`."""
  module, setting = name.split(":")
  config = importlib.import_module(f"configs.{module}").get_config(setting)
  weights = tiny_weights(config.data.num_classes)
  mock = request.getfixturevalue(f"{config.data.name}_mock")
  workdir = tmp_path / setting
  if module == "iassa":
    _run_iassa_coco(config, weights, mock, workdir)
  else:
    _run_explainer(config, weights, mock, workdir)


def test_missing_data_paths_say_what_is_needed(tmp_path):
  config = rise_config.get_config("coco14-vgg16")
  config.data.update(coco_annotations="x.json")
  with pytest.raises(ValueError, match="go together"):
    datasets.iter_test_batches(config)
  config = rise_config.get_config("voc07-vgg16")
  config.data.update(pointing_gt="masks", data_dir=str(tmp_path))
  with pytest.raises((ValueError, FileNotFoundError)):
    datasets.iter_test_batches(config)
  config = rise_config.get_config("imagenet-vgg16")
  config.data.update(data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="imagenet2012"):
    datasets.iter_test_batches(config)
  config.data.update(image_dir=str(tmp_path))
  with pytest.raises(ValueError, match="go together"):
    datasets.iter_test_batches(config)
  np.testing.assert_array_equal(preprocess.box_masks(np.zeros((0, 4)), [], 2, 3), False)
