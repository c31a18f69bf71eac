"""Tests of the real-dataset loaders (VOC, COCO, ImageNet, TFDS) and their preprocessing.

No dataset host is reachable, so every test builds a miniature dataset in its real on-disk
format (tests/data_fixtures.py) and checks the loaders' output exactly against what it wrote.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

from rise_jax.data import coco, imagenet, preprocess, voc
from rise_jax.models import registry
from tests import data_fixtures as fx

HAS_TF = importlib.util.find_spec("tensorflow") is not None

# pycocotools' C extension trips a NumPy 2 deprecation inside its own decode().
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _write_bytes(path, data: bytes):
  with open(path, "wb") as f:
    f.write(data)


# ------------------------------------------------------------------------------ preprocessing


def test_preprocess_normalises_like_a_hand_computation():
  photo = fx.random_photo(0, 6, 6)
  out = preprocess.preprocess_example(photo, size=6)  # same size: the resize is the identity
  mean = np.array([0.485, 0.456, 0.406]) * 255
  std = np.array([0.229, 0.224, 0.225]) * 255
  expected = (photo.astype(np.float64) - mean) / std
  assert out["image"].dtype == np.float32 and out["image"].shape == (6, 6, 3)
  np.testing.assert_allclose(out["image"], expected, rtol=1e-5, atol=1e-5)
  assert registry.spec("resnet50").mean == preprocess.IMAGENET_MEAN
  assert registry.spec("resnet50").std == preprocess.IMAGENET_STD


def test_preprocess_resizes_constant_image_and_custom_mean_std():
  photo = np.zeros((10, 30, 3), np.uint8) + np.array([10, 20, 30], np.uint8)
  out = preprocess.preprocess_example(photo, size=7, mean=(1, 2, 3), std=(3, 6, 9))
  assert out["image"].shape == (7, 7, 3)
  np.testing.assert_allclose(out["image"], np.broadcast_to([3, 3, 3], (7, 7, 3)), atol=1e-5)


def test_preprocess_bilinear_matches_registry_preprocess():
  photo = fx.random_photo(1, 64, 64)
  spec = registry.Spec("unused:Model", input_size=24, resize=24)
  out = preprocess.preprocess_example(photo, size=24)
  np.testing.assert_allclose(out["image"], registry.preprocess(photo, spec), atol=1e-5)


def test_preprocess_nearest_for_masks_and_box_scaling():
  photo = fx.random_photo(2, 4, 4)
  class_map = np.array([[0, 0, 3, 255],
                        [0, 1, 3, 255],
                        [2, 2, 3, 3],
                        [2, 2, 3, 3]], np.uint8)
  out = preprocess.preprocess_example(
      photo, size=8, segmentation=class_map, void=class_map == 255,
      boxes=np.array([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 1.0, 1.0]]),
      label=np.array([1.0, 0.0, 1.0]), difficult=np.array([False, True]), id="x")
  np.testing.assert_array_equal(out["segmentation"], np.repeat(np.repeat(class_map, 2, 0), 2, 1))
  assert out["segmentation"].dtype == np.uint8
  np.testing.assert_array_equal(out["void"], out["segmentation"] == 255)
  np.testing.assert_array_equal(out["boxes"], [[2, 4, 6, 8], [0, 0, 8, 8]])
  assert out["boxes"].dtype == np.float32
  np.testing.assert_array_equal(out["label"], [1, 0, 1])
  np.testing.assert_array_equal(out["difficult"], [False, True])
  assert out["id"] == "x"
  # Downscale by 2 keeps the pixel at odd positions (pixel centres), never mixing values.
  down = preprocess.preprocess_example(photo, size=2, segmentation=class_map)["segmentation"]
  np.testing.assert_array_equal(down, class_map[1::2, 1::2])
  # Non-integer factor, per-class bool masks.
  masks = class_map[..., None] == np.array([1, 2, 3], np.uint8)
  out = preprocess.preprocess_example(photo, size=6, segmentation=masks)
  assert out["segmentation"].dtype == bool and out["segmentation"].shape == (6, 6, 3)
  rows = cols = np.array([0, 1, 1, 2, 3, 3])  # floor((i + 0.5) * 4 / 6)
  np.testing.assert_array_equal(out["segmentation"], masks[rows][:, cols])


def test_preprocess_label_ids_to_multi_hot_and_errors():
  photo = fx.random_photo(3, 5, 5)
  out = preprocess.preprocess_example(photo, size=4, label=np.array([2, 0, 2]), num_classes=4)
  np.testing.assert_array_equal(out["label"], [1, 0, 1, 0])
  out = preprocess.preprocess_example(photo, size=4, label=np.int64(3), num_classes=4,
                                      boxes=np.zeros((0, 4)))
  np.testing.assert_array_equal(out["label"], [0, 0, 0, 1])
  assert out["boxes"].shape == (0, 4)
  with pytest.raises(ValueError, match="out of range"):
    preprocess.preprocess_example(photo, label=[5], num_classes=4)
  with pytest.raises(ValueError, match="uint8"):
    preprocess.preprocess_example(photo.astype(np.float32))
  with pytest.raises(ValueError, match="segmentation must be"):
    preprocess.preprocess_example(photo, segmentation=np.zeros((4, 5), np.uint8))
  with pytest.raises(ValueError, match="bool per-class"):
    preprocess.preprocess_example(photo, segmentation=np.zeros((5, 5, 2), np.uint8))
  with pytest.raises(ValueError, match="normalised"):
    preprocess.preprocess_example(photo, boxes=[[0, 0, 5, 5]])


def test_read_image_errors_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.jpg"):
    preprocess.read_image(tmp_path / "nope.jpg")
  bad = tmp_path / "broken.jpg"
  _write_bytes(bad, b"\xff\xd8 definitely not a jpeg")
  with pytest.raises(ValueError, match="broken.jpg"):
    preprocess.read_image(bad)
  grey = tmp_path / "grey.png"
  fx.PIL.Image.fromarray(np.full((3, 4), 77, np.uint8)).save(grey)
  np.testing.assert_array_equal(preprocess.read_image(grey), np.full((3, 4, 3), 77, np.uint8))


# ---------------------------------------------------------------------------------------- VOC


@pytest.fixture
def devkit(tmp_path):
  return fx.make_voc_devkit(str(tmp_path))


def _voc_expected(sample):
  cmap = sample["class_map"]
  h, w = cmap.shape
  masks = cmap[..., None] == np.arange(1, 21)
  boxes = [((y0 - 1) / h, (x0 - 1) / w, y1 / h, x1 / w)
           for x0, y0, x1, y1 in (o["bndbox"] for o in sample["objects"])]
  return {
      "label": masks.any((0, 1)).astype(np.float32),
      "segmentation": masks,
      "void": cmap == 255,
      "boxes": np.asarray(boxes, np.float32),
      "box_label": np.array([voc.CLASS_NAMES.index(o["name"]) for o in sample["objects"]]),
      "difficult": np.array([o["difficult"] for o in sample["objects"]]),
  }


def test_voc_class_names():
  assert len(voc.CLASS_NAMES) == voc.NUM_CLASSES == 20
  assert voc.CLASS_NAMES[0] == "aeroplane" and voc.CLASS_NAMES[11] == "dog"
  assert voc.CLASS_NAMES[-1] == "tvmonitor"


def test_voc_segmentation_matches_fixture_exactly(devkit):
  for split in ("val", "train", "trainval"):
    examples = voc.load_segmentation(devkit["root"], split)
    assert len(examples) == len(devkit["splits"][split])
    got = list(examples)
    assert [e["id"] for e in got] == devkit["splits"][split]
    assert examples.skipped == []
    for ex in got:
      sample = devkit["samples"][ex["id"]]
      expected = _voc_expected(sample)
      np.testing.assert_array_equal(ex["image"], sample["image"])
      assert ex["image"].dtype == np.uint8
      for key, value in expected.items():
        np.testing.assert_allclose(ex[key], value, err_msg=f"{ex['id']} {key}")
        assert ex[key].dtype == np.asarray(value).dtype, (ex["id"], key)
      assert ex["segmentation"].shape == (sample["height"], sample["width"], 20)
  val = list(voc.load_segmentation(devkit["root"], "val"))
  dog, person = voc.CLASS_NAMES.index("dog"), voc.CLASS_NAMES.index("person")
  assert set(np.flatnonzero(val[0]["label"])) == {dog, person}
  assert val[0]["segmentation"][5:20, 6:25, dog].all()
  assert val[0]["segmentation"][..., dog].sum() == 15 * 19
  assert val[0]["void"][4, 5] and not val[0]["void"][5, 6]
  # A difficult object without pixels: in the boxes, not in the (pixel) label.
  train = voc.load_segmentation(devkit["root"], "train")[0]
  np.testing.assert_array_equal(train["difficult"], [False, False, True])
  assert train["label"][voc.CLASS_NAMES.index("cat")] == 1


def test_voc_accepts_year_folder_and_preprocesses(devkit):
  ex = voc.load_segmentation(devkit["year_dir"], "val", annotations=False)[1]
  assert ex["id"] == "000007" and "boxes" not in ex
  out = preprocess.preprocess_example(**ex, size=16)
  assert out["image"].shape == (16, 16, 3) and out["segmentation"].shape == (16, 16, 20)
  np.testing.assert_array_equal(
      out["segmentation"], preprocess.resize_nearest(ex["segmentation"], 16))


def test_voc_missing_directory_and_split_file(devkit, tmp_path):
  with pytest.raises(FileNotFoundError, match="not_there"):
    voc.load_segmentation(tmp_path / "not_there", "val")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=os.path.join("empty", "VOC2007")):
    voc.load_segmentation(empty, "val")
  os.remove(os.path.join(devkit["year_dir"], "ImageSets", "Segmentation", "val.txt"))
  with pytest.raises(FileNotFoundError, match=r"Segmentation.val\.txt"):
    voc.load_segmentation(devkit["root"], "val")
  with pytest.raises(ValueError, match="split must be one of"):
    voc.load_segmentation(devkit["root"], "validation")
  os.rename(os.path.join(devkit["year_dir"], "SegmentationClass"),
            os.path.join(devkit["year_dir"], "Moved"))
  with pytest.raises(FileNotFoundError, match="SegmentationClass"):
    voc.load_segmentation(devkit["root"], "train")


def test_voc_missing_sample_file_raises_or_is_reported(devkit):
  png = os.path.join(devkit["year_dir"], "SegmentationClass", "000005.png")
  os.remove(png)
  with pytest.raises(FileNotFoundError, match="000005.png"):
    voc.load_segmentation(devkit["root"], "val")
  examples = voc.load_segmentation(devkit["root"], "val", errors="skip")
  assert [e["id"] for e in examples] == ["000007"]
  assert len(examples.skipped) == 1 and examples.skipped[0][0] == "000005"
  assert "000005.png" in examples.skipped[0][1]


def test_voc_undecodable_image_names_the_file(devkit):
  jpg = os.path.join(devkit["year_dir"], "JPEGImages", "000007.jpg")
  _write_bytes(jpg, b"not an image at all")
  examples = voc.load_segmentation(devkit["root"], "val")
  with pytest.raises(ValueError, match="000007.jpg"):
    list(examples)
  skipping = voc.load_segmentation(devkit["root"], "val", errors="skip")
  assert [e["id"] for e in skipping] == ["000005"]
  assert [k for k, _ in skipping.skipped] == ["000007"]
  assert "000007.jpg" in skipping.skipped[0][1]


def test_voc_unknown_class_ids_name_file_and_ids(devkit):
  png = os.path.join(devkit["year_dir"], "SegmentationClass", "000009.png")
  cmap = devkit["samples"]["000009"]["class_map"].copy()
  cmap[0, 0], cmap[0, 1] = 30, 100
  fx.write_palette_png(png, cmap)
  with pytest.raises(ValueError, match=r"000009\.png has unknown class ids \[30, 100\]"):
    voc.load_segmentation(devkit["root"], "train")[0]


def test_voc_rgb_png_and_size_mismatch_and_bad_xml(devkit):
  base = devkit["year_dir"]
  png = os.path.join(base, "SegmentationClass", "000009.png")
  fx.PIL.Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(png)
  with pytest.raises(ValueError, match=r"000009\.png has mode 'RGB'"):
    voc.load_segmentation(devkit["root"], "train")[0]
  fx.write_palette_png(png, np.zeros((20, 24), np.uint8))
  with pytest.raises(ValueError, match=r"000009\.png is 20x24 but image .*000009\.jpg is 24x24"):
    voc.load_segmentation(devkit["root"], "train")[0]
  xml = os.path.join(base, "Annotations", "000005.xml")
  fx.write_voc_annotation(xml, "000005.jpg", 40, 48, [
      {"name": "unicorn", "difficult": False, "bndbox": (1, 1, 2, 2)}])
  with pytest.raises(ValueError, match=r"000005\.xml: unknown class name 'unicorn'"):
    voc.load_segmentation(devkit["root"], "val")[0]
  fx.write_voc_annotation(xml, "000005.jpg", 40, 48, [
      {"name": "dog", "difficult": False, "bndbox": (1, 1, "12,5", 2)}])
  with pytest.raises(ValueError, match=r"000005\.xml: <xmax> is '12,5', not a number"):
    voc.load_segmentation(devkit["root"], "val")[0]
  with open(xml, "w") as f:
    f.write("<annotation><object>")
  with pytest.raises(ValueError, match=r"cannot parse annotation .*000005\.xml"):
    voc.load_segmentation(devkit["root"], "val")[0]


# --------------------------------------------------------------------------------------- COCO


@pytest.fixture
def coco_files(tmp_path):
  pytest.importorskip("pycocotools")
  return fx.make_coco(str(tmp_path))


def test_coco_categories():
  assert len(coco.CATEGORIES) == coco.NUM_CLASSES == 80
  assert len(set(coco.CATEGORY_IDS)) == 80 and max(coco.CATEGORY_IDS) == 90
  assert list(coco.CATEGORY_IDS) == sorted(coco.CATEGORY_IDS)
  assert coco.CLASS_NAMES[0] == "person" and coco.CLASS_NAMES[-1] == "toothbrush"
  assert coco.CLASS_NAMES[coco.CATEGORY_IDS.index(18)] == "dog"


def test_coco_masks_match_pycocotools_and_hand_drawn(coco_files):
  from pycocotools.coco import COCO

  api = COCO(coco_files["json"])
  examples = coco.load_segmentation(coco_files["json"], coco_files["image_dir"])
  got = list(examples)
  assert [e["id"] for e in got] == [42, 73, 99] and examples.skipped == []
  for ex in got:
    info = api.imgs[ex["id"]]
    h, w = info["height"], info["width"]
    np.testing.assert_array_equal(ex["image"], coco_files["images"][ex["id"]])
    assert ex["filename"] == info["file_name"]
    assert ex["segmentation"].shape == (h, w, 80) and ex["segmentation"].dtype == bool
    anns = api.loadAnns(api.getAnnIds(imgIds=[ex["id"]]))
    expected = np.zeros((h, w, 80), bool)
    for ann in anns:
      expected[..., coco.CATEGORY_IDS.index(ann["category_id"])] |= api.annToMask(ann) > 0
    np.testing.assert_array_equal(ex["segmentation"], expected)
    classes = sorted({coco.CATEGORY_IDS.index(a["category_id"]) for a in anns})
    np.testing.assert_array_equal(np.flatnonzero(ex["label"]), classes)
    np.testing.assert_array_equal(ex["box_label"],
                                  [coco.CATEGORY_IDS.index(a["category_id"]) for a in anns])
    boxes = [(y / h, x / w, (y + bh) / h, (x + bw) / w) for x, y, bw, bh in
             (a["bbox"] for a in anns)]
    np.testing.assert_allclose(ex["boxes"], np.asarray(boxes).reshape(-1, 4), rtol=1e-6)
    np.testing.assert_array_equal(ex["is_crowd"], [bool(a["iscrowd"]) for a in anns])
  first = got[0]
  dog = coco.CATEGORY_IDS.index(18)
  hand = coco_files["hand_drawn"]
  np.testing.assert_array_equal(first["segmentation"][..., dog], hand["crowd_dog"] | hand["dog"])
  assert first["segmentation"][..., 0].sum() > 0 and first["segmentation"][..., 2].sum() > 0
  assert got[1]["label"][79] == 1 and got[1]["label"].sum() == 1
  assert got[2]["label"].sum() == 0 and not got[2]["segmentation"].any()
  assert got[2]["boxes"].shape == (0, 4)


def test_coco_without_crowd_and_preprocess(coco_files):
  ex = coco.load_segmentation(coco_files["json"], coco_files["image_dir"],
                              include_crowd=False)[0]
  dog = coco.CATEGORY_IDS.index(18)
  np.testing.assert_array_equal(ex["segmentation"][..., dog], coco_files["hand_drawn"]["dog"])
  assert not ex["is_crowd"].any() and len(ex["boxes"]) == 3
  out = preprocess.preprocess_example(**ex, size=20)
  assert out["segmentation"].shape == (20, 20, 80) and out["boxes"].shape == (3, 4)
  np.testing.assert_allclose(out["boxes"], ex["boxes"] * 20)
  assert out["id"] == 42 and out["is_crowd"].shape == (3,)


def _rewrite(coco_files, edit):
  data = json.loads(json.dumps(coco_files["data"]))
  edit(data)
  with open(coco_files["json"], "w") as f:
    json.dump(data, f)


def test_coco_unknown_category_id_and_name(coco_files):
  _rewrite(coco_files, lambda d: d["categories"].append({"id": 12, "name": "street sign"}))
  with pytest.raises(ValueError, match=r"instances_val2014\.json: unknown category id 12"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])
  _rewrite(coco_files, lambda d: d["categories"][0].update(name="people"))
  with pytest.raises(ValueError, match=r"instances_val2014\.json: category id 1 is named "
                                       r"'people'.*'person'"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])
  _rewrite(coco_files, lambda d: d["annotations"][0].update(category_id=2))
  with pytest.raises(ValueError, match=r"instances_val2014\.json: annotation 1 has category id "
                                       r"2 \(bicycle\)"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])
  _rewrite(coco_files, lambda d: d["annotations"][0].update(image_id=5))
  with pytest.raises(ValueError, match="refers to image id 5"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])


def test_coco_missing_and_bad_files(coco_files, tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.json"):
    coco.load_segmentation(tmp_path / "nope.json", coco_files["image_dir"])
  with pytest.raises(FileNotFoundError, match="no_images"):
    coco.load_segmentation(coco_files["json"], tmp_path / "no_images")
  bad_json = tmp_path / "bad.json"
  bad_json.write_text("{not json")
  with pytest.raises(ValueError, match="bad.json"):
    coco.load_segmentation(bad_json, coco_files["image_dir"])
  missing = os.path.join(coco_files["image_dir"], "COCO_val2014_000000000073.jpg")
  os.remove(missing)
  with pytest.raises(FileNotFoundError, match="COCO_val2014_000000000073.jpg"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])
  examples = coco.load_segmentation(coco_files["json"], coco_files["image_dir"], errors="skip")
  assert [e["id"] for e in examples] == [42, 99]
  assert [k for k, _ in examples.skipped] == [73]
  _write_bytes(os.path.join(coco_files["image_dir"], "COCO_val2014_000000000099.jpg"), b"xx")
  examples = coco.load_segmentation(coco_files["json"], coco_files["image_dir"], errors="skip")
  assert [e["id"] for e in examples] == [42]
  assert [k for k, _ in examples.skipped] == [73, 99]
  assert "COCO_val2014_000000000099.jpg" in examples.skipped[1][1]


def test_coco_bad_rle_and_image_size(coco_files):
  def bad_rle(d):
    d["annotations"][1]["segmentation"]["size"] = [29, 40]
  _rewrite(coco_files, bad_rle)
  with pytest.raises(ValueError, match=r"instances_val2014\.json: annotation 2 .*RLE size"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])[0]
  _rewrite(coco_files, lambda d: d["annotations"][0].update(bbox="3 4 10 15"))
  with pytest.raises(ValueError, match=r"annotation 1 .*bbox must be \[x, y, width, height\]"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])[0]
  _rewrite(coco_files, lambda d: d["annotations"][1].pop("bbox"))
  ex = coco.load_segmentation(coco_files["json"], coco_files["image_dir"])[0]
  np.testing.assert_allclose(ex["boxes"][1], [2 / 30, 20 / 40, 10 / 30, 30 / 40], rtol=1e-6)
  _rewrite(coco_files, lambda d: d["images"][0].update(height=31))
  with pytest.raises(ValueError, match=r"COCO_val2014_000000000042\.jpg is 30x40 but"):
    coco.load_segmentation(coco_files["json"], coco_files["image_dir"])[0]


# ----------------------------------------------------------------------------------- ImageNet


@pytest.fixture
def imagenet_files(tmp_path):
  return fx.make_imagenet_folder(str(tmp_path))


def test_imagenet_folder_matches_label_file(imagenet_files):
  examples = imagenet.load_folder(imagenet_files["image_dir"], imagenet_files["label_file"])
  got = list(examples)
  assert [e["id"] for e in got] == list(imagenet_files["labels"])
  for ex in got:
    assert ex["label"] == imagenet_files["labels"][ex["id"]]
    np.testing.assert_array_equal(ex["image"], imagenet_files["images"][ex["id"]])
  out = preprocess.preprocess_example(**got[1], size=8, num_classes=1000)
  assert out["image"].shape == (8, 8, 3)
  np.testing.assert_array_equal(np.flatnonzero(out["label"]), [970])


@pytest.mark.parametrize("line, message", [
    ("a.JPEG", r"val_labels\.txt:5: expected 'filename label'"),
    ("a.JPEG dog", r"val_labels\.txt:5: label 'dog' is not an integer"),
    ("a.JPEG 1000", r"val_labels\.txt:5: label 1000 out of range"),
    ("ILSVRC2012_val_00000001.JPEG 3", r"val_labels\.txt:5: .*already listed on line 1"),
])
def test_imagenet_bad_label_file_names_file_and_line(imagenet_files, line, message):
  with open(imagenet_files["label_file"]) as f:
    lines = f.read().splitlines()
  lines.insert(4, line)
  with open(imagenet_files["label_file"], "w") as f:
    f.write("\n".join(lines))
  with pytest.raises(ValueError, match=message):
    imagenet.load_folder(imagenet_files["image_dir"], imagenet_files["label_file"])


def test_imagenet_missing_unlisted_and_broken_images(imagenet_files, tmp_path):
  image_dir, label_file = imagenet_files["image_dir"], imagenet_files["label_file"]
  with pytest.raises(FileNotFoundError, match="labels_nope.txt"):
    imagenet.load_folder(image_dir, tmp_path / "labels_nope.txt")
  with pytest.raises(FileNotFoundError, match="no_dir"):
    imagenet.load_folder(tmp_path / "no_dir", label_file)
  _write_bytes(os.path.join(image_dir, "ILSVRC2012_val_00000001.JPEG"), b"garbage")
  with pytest.raises(ValueError, match=r"cannot decode image .*ILSVRC2012_val_00000001\.JPEG"):
    list(imagenet.load_folder(image_dir, label_file))
  extra = os.path.join(image_dir, "ILSVRC2012_val_00000009.JPEG")
  fx.write_jpeg(extra, fx.random_photo(5, 8, 8))
  with pytest.raises(ValueError, match=r"have no line in .*ILSVRC2012_val_00000009\.JPEG"):
    imagenet.load_folder(image_dir, label_file)
  os.remove(os.path.join(image_dir, "ILSVRC2012_val_00000002.JPEG"))
  with pytest.raises(FileNotFoundError, match=r"ILSVRC2012_val_00000002\.JPEG"):
    imagenet.load_folder(image_dir, label_file)
  examples = imagenet.load_folder(image_dir, label_file, errors="skip")
  ids = [e["id"] for e in examples]
  assert ids == [os.path.join("sub", "ILSVRC2012_val_00000003.JPEG"),
                 "ILSVRC2012_val_00000004.png"]
  skipped = dict(examples.skipped)
  assert set(skipped) == {"ILSVRC2012_val_00000009.JPEG", "ILSVRC2012_val_00000002.JPEG",
                          "ILSVRC2012_val_00000001.JPEG"}
  assert "cannot decode image" in skipped["ILSVRC2012_val_00000001.JPEG"]


# --------------------------------------------------------------------------------------- TFDS


def test_voc_tfds_reads_prepared_array_record(devkit, tmp_path):
  data_dir = str(tmp_path / "tfds")
  fx.write_tfds(data_dir, "voc/2007", "5.0.0", fx.voc_tfds_features(),
                fx.voc_tfds_examples(devkit), split="validation")
  examples = voc.tfds_examples("validation", data_dir=data_dir)
  assert len(examples) == 3
  got = {e["id"]: e for e in examples}
  assert sorted(got) == sorted(devkit["samples"])
  for sample_id, s in devkit["samples"].items():
    ex, h, w = got[sample_id], s["height"], s["width"]
    np.testing.assert_array_equal(ex["image"], s["image"])
    classes = [voc.CLASS_NAMES.index(o["name"]) for o in s["objects"]]
    np.testing.assert_array_equal(ex["box_label"], classes)
    np.testing.assert_array_equal(np.flatnonzero(ex["label"]), sorted(set(classes)))
    np.testing.assert_array_equal(ex["difficult"], [o["difficult"] for o in s["objects"]])
    boxes = [(y0 / h, x0 / w, y1 / h, x1 / w) for x0, y0, x1, y1 in
             (o["bndbox"] for o in s["objects"])]
    np.testing.assert_allclose(ex["boxes"], boxes, rtol=1e-6)
  out = preprocess.preprocess_example(**examples[0], size=10)
  assert out["image"].shape == (10, 10, 3) and out["boxes"].shape[1] == 4


def test_coco_tfds_reads_prepared_array_record(coco_files, tmp_path):
  from tensorflow_datasets.core.features import BBox

  data = coco_files["data"]
  examples = []
  for info in data["images"]:
    h, w = info["height"], info["width"]
    anns = [a for a in data["annotations"] if a["image_id"] == info["id"]]
    examples.append({
        "image": os.path.join(coco_files["image_dir"], info["file_name"]),
        "image/filename": info["file_name"],
        "image/id": info["id"],
        "objects": [{"id": a["id"], "area": int(a["area"]), "is_crowd": bool(a["iscrowd"]),
                     "label": coco.CATEGORY_IDS.index(a["category_id"]),
                     "bbox": BBox(ymin=a["bbox"][1] / h, xmin=a["bbox"][0] / w,
                                  ymax=(a["bbox"][1] + a["bbox"][3]) / h,
                                  xmax=(a["bbox"][0] + a["bbox"][2]) / w)} for a in anns],
    })
  data_dir = str(tmp_path / "tfds")
  fx.write_tfds(data_dir, "coco/2014", "1.1.0", fx.coco_tfds_features(), examples)
  from_json = {e["id"]: e for e in coco.load_segmentation(coco_files["json"],
                                                           coco_files["image_dir"])}
  got = {e["id"]: e for e in coco.tfds_examples("validation", data_dir=data_dir)}
  assert sorted(got) == [42, 73, 99]
  for image_id, ex in got.items():
    ref = from_json[image_id]
    assert ex["filename"] == ref["filename"]
    np.testing.assert_array_equal(ex["image"], ref["image"])
    for key in ("label", "box_label", "is_crowd"):
      np.testing.assert_array_equal(ex[key], ref[key], err_msg=f"{image_id} {key}")
    np.testing.assert_allclose(ex["boxes"], ref["boxes"], rtol=1e-6)


def test_imagenet_tfds_reads_prepared_array_record(imagenet_files, tmp_path):
  jpegs = {n: y for n, y in imagenet_files["labels"].items() if not n.endswith(".png")}
  examples = [{"image": os.path.join(imagenet_files["image_dir"], n), "label": y,
               "file_name": os.path.basename(n)} for n, y in jpegs.items()]
  data_dir = str(tmp_path / "tfds")
  fx.write_tfds(data_dir, "imagenet2012", "5.1.0", fx.imagenet_tfds_features(), examples)
  got = {e["id"]: e for e in imagenet.tfds_examples("validation", data_dir=data_dir)}
  assert sorted(got) == sorted(os.path.basename(n) for n in jpegs)
  for name, label in jpegs.items():
    ex = got[os.path.basename(name)]
    assert ex["label"] == label
    np.testing.assert_array_equal(ex["image"], imagenet_files["images"][name])


def test_tfds_mock_data_imagenet_and_voc():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    examples = imagenet.tfds_examples("validation", data_dir="/nonexistent")
    got = list(examples)
  assert len(got) == 4
  for ex in got:
    assert ex["image"].dtype == np.uint8 and ex["image"].ndim == 3
    assert 0 <= ex["label"] < 1000 and isinstance(ex["id"], str)
  # The mock draws each per-object field with its own random length: the VOC converter
  # rejects such an example with a message naming it instead of misaligning boxes and flags.
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    examples = voc.tfds_examples("test", data_dir="/nonexistent")
    with pytest.raises(ValueError, match=r"TFDS voc/2007 example .*different lengths"):
      list(examples)


def test_tfds_not_prepared_names_expected_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match=os.path.join("voc", "2007", "5.0.0")):
    voc.tfds_examples("test", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match=os.path.join("imagenet2012", "5.1.0")):
    imagenet.tfds_examples("validation", data_dir=str(tmp_path))
  if not HAS_TF:  # TFDS's COCO builder code needs TensorFlow; the message must still be clear.
    with pytest.raises(FileNotFoundError, match=os.path.join("coco", "2014", "1.1.0")):
      coco.tfds_examples("validation", data_dir=str(tmp_path))


@pytest.mark.skipif(HAS_TF, reason="checks the message shown when TensorFlow is missing")
def test_tfds_tfrecord_without_tensorflow_asks_for_it(imagenet_files, tmp_path):
  examples = [{"image": os.path.join(imagenet_files["image_dir"], "ILSVRC2012_val_00000001.JPEG"),
               "label": 65, "file_name": "ILSVRC2012_val_00000001.JPEG"}]
  data_dir = str(tmp_path / "tfds")
  folder = fx.write_tfds(data_dir, "imagenet2012", "5.1.0", fx.imagenet_tfds_features(),
                         examples)
  info_path = os.path.join(folder, "dataset_info.json")
  with open(info_path) as f:
    info = json.load(f)
  info["fileFormat"] = "tfrecord"  # as written by a default `tfds build`
  with open(info_path, "w") as f:
    json.dump(info, f)
  with pytest.raises(ImportError, match="install tensorflow to read TFDS datasets"):
    imagenet.tfds_examples("validation", data_dir=data_dir)


@pytest.mark.parametrize("shape,out", [((37, 53), (224, 224)), ((500, 375), (224, 224)),
                                       ((10, 30), (7, 7)), ((5, 300), (256, 17))])
def test_numpy_bilinear_resize_equals_jax_image_resize(shape, out):
  import jax
  import jax.numpy as jnp

  x = np.random.default_rng(0).uniform(0, 255, (*shape, 3)).astype(np.float32)
  want = jax.image.resize(jnp.asarray(x), (*out, 3), "bilinear", antialias=True)
  np.testing.assert_allclose(preprocess.resize_image(x, out), want, rtol=0, atol=5e-3)
