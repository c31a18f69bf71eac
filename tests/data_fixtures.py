"""Builders of miniature real-format datasets for tests/test_data_real.py.

Each builder writes files in the dataset's own on-disk format (VOCdevkit tree, COCO annotation
JSON, ImageNet folder + label file, prepared TFDS ``array_record`` datasets) and returns what it
wrote, so that the tests can compare the loaders' output exactly.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import PIL.Image

from rise_jax.data import voc

# ----------------------------------------------------------------------------------- images


def write_jpeg(path: str, image: np.ndarray) -> np.ndarray:
  """Writes uint8[H, W, 3] as JPEG and returns the pixels as decoded back (JPEG is lossy)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  PIL.Image.fromarray(image).save(path, quality=95)
  with PIL.Image.open(path) as img:
    return np.asarray(img.convert("RGB"))


def random_photo(seed: int, height: int, width: int) -> np.ndarray:
  """A smooth uint8[H, W, 3] test photo."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
  base = rng.uniform(40, 200, size=3)
  photo = base + 50 * np.stack([yy, xx, yy * xx], -1) + rng.normal(0, 5, (height, width, 3))
  return np.clip(photo, 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------- VOC


def voc_palette() -> list[int]:
  """The 256-colour VOC palette (bit-interleaved colour map), flat [768]."""
  palette = []
  for i in range(256):
    r = g = b = 0
    c = i
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    palette += [r, g, b]
  return palette


def write_palette_png(path: str, class_map: np.ndarray) -> None:
  """Writes a uint8[H, W] class map as a VOC-style palette ('P') PNG."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  h, w = class_map.shape
  img = PIL.Image.frombytes("P", (w, h), np.ascontiguousarray(class_map, np.uint8).tobytes())
  img.putpalette(voc_palette())
  img.save(path)


def _box_with_border(class_map: np.ndarray, value: int, y0: int, x0: int, y1: int, x1: int):
  """Fills [y0, y1) x [x0, x1) with ``value`` inside a 1-pixel 255 (void) border."""
  class_map[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = voc.VOID
  class_map[y0:y1, x0:x1] = value


def write_voc_annotation(path: str, filename: str, height: int, width: int,
                         objects: list[dict[str, Any]]) -> None:
  """Writes a VOC annotation XML; objects: name, difficult, (xmin, ymin, xmax, ymax) 1-based."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  parts = [f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>",
           f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
           "<segmented>1</segmented>"]
  for obj in objects:
    xmin, ymin, xmax, ymax = obj["bndbox"]
    parts.append(
        f"<object><name>{obj['name']}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(obj['difficult'])}</difficult><bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
  parts.append("</annotation>")
  with open(path, "w") as f:
    f.write("\n".join(parts))


def make_voc_devkit(root: str) -> dict[str, Any]:
  """A miniature ``VOCdevkit/VOC2007`` segmentation set under ``root``.

  Samples: ``000005`` and ``000007`` in ``val``, ``000009`` in ``train``; ``trainval`` has all.

  Returns:
    ``{"root": VOCdevkit path, "year_dir": VOC2007 path, "samples": {id: {"image": decoded
    uint8[H, W, 3], "class_map": uint8[H, W], "objects": [...], "height", "width"}}, "splits":
    {split: [ids]}}``.
  """
  devkit = os.path.join(root, "VOCdevkit")
  base = os.path.join(devkit, "VOC2007")
  samples: dict[str, dict[str, Any]] = {}

  # 000005: a dog (class 11 -> value 12) and a person (14 -> 15), each with a void border.
  h, w = 40, 48
  cmap = np.zeros((h, w), np.uint8)
  _box_with_border(cmap, 12, 5, 6, 20, 25)
  _box_with_border(cmap, 15, 22, 30, 36, 44)
  samples["000005"] = {"class_map": cmap, "height": h, "width": w, "objects": [
      {"name": "dog", "difficult": False, "bndbox": (7, 6, 25, 20)},
      {"name": "person", "difficult": True, "bndbox": (31, 23, 44, 36)},
  ]}
  # 000007: an aeroplane (0 -> 1) touching the image edge, void border inside the image only.
  h, w = 32, 36
  cmap = np.zeros((h, w), np.uint8)
  cmap[0:12, 0:20] = voc.VOID
  cmap[0:11, 0:19] = 1
  samples["000007"] = {"class_map": cmap, "height": h, "width": w, "objects": [
      {"name": "aeroplane", "difficult": False, "bndbox": (1, 1, 19, 11)},
  ]}
  # 000009: a tvmonitor (19 -> 20), a cat (7 -> 8) and a difficult cat with no pixels.
  h, w = 24, 24
  cmap = np.zeros((h, w), np.uint8)
  _box_with_border(cmap, 20, 2, 2, 10, 10)
  _box_with_border(cmap, 8, 13, 12, 22, 22)
  samples["000009"] = {"class_map": cmap, "height": h, "width": w, "objects": [
      {"name": "tvmonitor", "difficult": False, "bndbox": (3, 3, 10, 10)},
      {"name": "cat", "difficult": False, "bndbox": (13, 14, 22, 22)},
      {"name": "cat", "difficult": True, "bndbox": (1, 1, 2, 2)},
  ]}

  for k, (sample_id, s) in enumerate(sorted(samples.items())):
    s["image"] = write_jpeg(os.path.join(base, "JPEGImages", f"{sample_id}.jpg"),
                            random_photo(k, s["height"], s["width"]))
    write_palette_png(os.path.join(base, "SegmentationClass", f"{sample_id}.png"), s["class_map"])
    write_voc_annotation(os.path.join(base, "Annotations", f"{sample_id}.xml"),
                         f"{sample_id}.jpg", s["height"], s["width"], s["objects"])
  splits = {"val": ["000005", "000007"], "train": ["000009"],
            "trainval": ["000005", "000007", "000009"]}
  seg_sets = os.path.join(base, "ImageSets", "Segmentation")
  os.makedirs(seg_sets, exist_ok=True)
  for split, ids in splits.items():
    with open(os.path.join(seg_sets, f"{split}.txt"), "w") as f:
      f.write("\n".join(ids) + "\n")
  return {"root": devkit, "year_dir": base, "samples": samples, "splits": splits}


# ------------------------------------------------------------------------------------- COCO


def rle_counts(mask: np.ndarray) -> list[int]:
  """Uncompressed COCO RLE counts of a bool[H, W] mask (column-major, starting with zeros)."""
  flat = np.asarray(mask, bool).flatten(order="F")
  counts, current, run = [], False, 0
  for v in flat:
    if v == current:
      run += 1
    else:
      counts.append(run)
      current, run = v, 1
  counts.append(run)
  return counts


def make_coco(root: str) -> dict[str, Any]:
  """A miniature COCO instances file (polygon, uncompressed and compressed RLE, crowd).

  Needs pycocotools (to write the compressed RLE).

  Returns:
    ``{"json": path, "image_dir": path, "images": {image_id: decoded uint8[H, W, 3]},
    "expected": {image_id: {"masks": {class_index: bool[H, W]}, "boxes", "box_label",
    "is_crowd"}}, "data": the JSON dict}``.
  """
  from pycocotools import mask as mask_utils

  image_dir = os.path.join(root, "val2014")
  images = {}
  infos = [(42, "COCO_val2014_000000000042.jpg", 30, 40),
           (73, "COCO_val2014_000000000073.jpg", 20, 24),
           (99, "COCO_val2014_000000000099.jpg", 16, 16)]
  for k, (image_id, name, h, w) in enumerate(infos):
    images[image_id] = write_jpeg(os.path.join(image_dir, name), random_photo(10 + k, h, w))

  # Image 42 (30 x 40): person polygon, dog as crowd (uncompressed RLE) + dog (compressed RLE)
  # overlapping it, and a car made of two polygons.
  h, w = 30, 40
  crowd_dog = np.zeros((h, w), bool)
  crowd_dog[2:10, 20:30] = True
  dog = np.zeros((h, w), bool)
  dog[8:14, 25:38] = True
  dog_rle = mask_utils.encode(np.asfortranarray(dog.astype(np.uint8)))
  annotations = [
      {"id": 1, "image_id": 42, "category_id": 1, "iscrowd": 0, "area": 150.0,
       "bbox": [3.0, 4.0, 10.0, 15.0],
       "segmentation": [[3.0, 4.0, 13.0, 4.0, 13.0, 19.0, 3.0, 19.0]]},
      {"id": 2, "image_id": 42, "category_id": 18, "iscrowd": 1, "area": 80.0,
       "bbox": [20.0, 2.0, 10.0, 8.0],
       "segmentation": {"size": [h, w], "counts": rle_counts(crowd_dog)}},
      {"id": 3, "image_id": 42, "category_id": 18, "iscrowd": 0, "area": 78.0,
       "bbox": [25.0, 8.0, 13.0, 6.0],
       "segmentation": {"size": [h, w], "counts": dog_rle["counts"].decode("ascii")}},
      {"id": 4, "image_id": 42, "category_id": 3, "iscrowd": 0, "area": 40.0,
       "bbox": [1.0, 22.0, 30.0, 6.0],
       "segmentation": [[1.0, 22.0, 6.0, 22.0, 6.0, 27.0, 1.0, 27.0],
                        [20.5, 23.0, 31.0, 23.0, 25.0, 28.0]]},
      # Image 73: a toothbrush (id 90, the last class).
      {"id": 5, "image_id": 73, "category_id": 90, "iscrowd": 0, "area": 12.0,
       "bbox": [4.0, 5.0, 6.0, 3.0],
       "segmentation": [[4.0, 5.0, 10.0, 5.0, 10.0, 8.0, 4.0, 8.0]]},
  ]
  categories = [{"supercategory": "x", "id": cid, "name": name}
                for cid, name in [(1, "person"), (3, "car"), (18, "dog"), (90, "toothbrush")]]
  data = {
      "info": {"description": "fixture"},
      "images": [{"id": i, "file_name": n, "height": hh, "width": ww}
                 for i, n, hh, ww in infos],
      "annotations": annotations,
      "categories": categories,
  }
  path = os.path.join(root, "annotations", "instances_val2014.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(data, f)
  return {"json": path, "image_dir": image_dir, "images": images, "data": data,
          "hand_drawn": {"crowd_dog": crowd_dog, "dog": dog}}


# ------------------------------------------------------------------------------------ ImageNet


def make_imagenet_folder(root: str) -> dict[str, Any]:
  """An image folder (one image in a sub-folder, one PNG) and its ``filename label`` file.

  Returns:
    ``{"image_dir", "label_file", "labels": {name: label}, "images": {name: uint8[H, W, 3]}}``.
  """
  image_dir = os.path.join(root, "val")
  entries = {"ILSVRC2012_val_00000001.JPEG": 65, "ILSVRC2012_val_00000002.JPEG": 970,
             os.path.join("sub", "ILSVRC2012_val_00000003.JPEG"): 0,
             "ILSVRC2012_val_00000004.png": 999}
  images = {}
  for k, name in enumerate(entries):
    photo = random_photo(20 + k, 12 + k, 16)
    path = os.path.join(image_dir, name)
    if name.endswith(".png"):
      os.makedirs(os.path.dirname(path), exist_ok=True)
      PIL.Image.fromarray(photo).save(path)
      images[name] = photo
    else:
      images[name] = write_jpeg(path, photo)
  label_file = os.path.join(root, "val_labels.txt")
  with open(label_file, "w") as f:
    for name, label in entries.items():
      f.write(f"{name} {label}\n")
    f.write("\n")  # a trailing blank line is allowed
  return {"image_dir": image_dir, "label_file": label_file, "labels": entries, "images": images}


# ----------------------------------------------------------------------------------------- TFDS


def write_tfds(data_dir: str, name: str, version: str, features, examples: list[dict],
               split: str | tuple[str, ...] = "validation") -> str:
  """Prepares a real TFDS dataset in the ``array_record`` format, without TensorFlow.

  Images must be given as paths of encoded files (TFDS encodes arrays with TensorFlow).

  Args:
    data_dir: TFDS data folder.
    name: ``"dataset"`` or ``"dataset/config"``; the builder class is named after it.
    version: Version string.
    features: The ``tfds.features.FeaturesDict``.
    examples: Example dicts, keyed by their position.
    split: Split name, or several names that each get all the examples.

  Returns:
    The prepared dataset folder.
  """
  import tensorflow_datasets as tfds

  dataset, _, config = name.partition("/")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    del dl_manager
    splits = (split,) if isinstance(split, str) else split
    return {s: self._generate_examples() for s in splits}

  def _generate_examples(self):
    yield from enumerate(examples)

  attrs = {"VERSION": tfds.core.Version(version), "_info": _info,
           "_split_generators": _split_generators, "_generate_examples": _generate_examples,
           # A one-part module name: TFDS then looks for no checksums file next to the code
           # (that lookup imports importlib_resources, which etils may lack).
           "__module__": "tfds_fixture_builder"}
  if config:
    attrs["BUILDER_CONFIGS"] = [tfds.core.BuilderConfig(name=config)]
  class_name = "".join(part.capitalize() for part in dataset.split("_"))
  cls = type(class_name, (tfds.core.GeneratorBasedBuilder,), attrs, skip_registration=True)
  assert cls.name == dataset, (cls.name, dataset)
  builder = cls(data_dir=data_dir, config=config or None, file_format="array_record")
  builder.download_and_prepare()
  return os.fspath(builder.data_dir)


def voc_tfds_examples(devkit: dict[str, Any]) -> list[dict]:
  """TFDS ``voc/2007`` examples (image paths) of the samples of :func:`make_voc_devkit`."""
  from tensorflow_datasets.core.features import BBox

  examples = []
  for sample_id, s in sorted(devkit["samples"].items()):
    h, w = s["height"], s["width"]
    objects = [{"label": o["name"], "pose": "unspecified", "is_truncated": False,
                "is_difficult": o["difficult"],
                "bbox": BBox(ymin=o["bndbox"][1] / h, xmin=o["bndbox"][0] / w,
                             ymax=o["bndbox"][3] / h, xmax=o["bndbox"][2] / w)}
               for o in s["objects"]]
    examples.append({
        "image": os.path.join(devkit["year_dir"], "JPEGImages", f"{sample_id}.jpg"),
        "image/filename": f"{sample_id}.jpg",
        "objects": objects,
        "labels": sorted({o["name"] for o in s["objects"]}, key=voc.CLASS_NAMES.index),
        "labels_no_difficult": [],
    })
  return examples


def voc_tfds_features():
  """The feature spec of TFDS ``voc/2007`` 5.0.0."""
  import tensorflow_datasets as tfds

  poses = ("frontal", "rear", "left", "right", "unspecified")
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(),
      "image/filename": tfds.features.Text(),
      "objects": tfds.features.Sequence({
          "label": tfds.features.ClassLabel(names=voc.CLASS_NAMES),
          "bbox": tfds.features.BBoxFeature(),
          "pose": tfds.features.ClassLabel(names=poses),
          "is_truncated": np.bool_,
          "is_difficult": np.bool_,
      }),
      "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=voc.CLASS_NAMES)),
      "labels_no_difficult": tfds.features.Sequence(
          tfds.features.ClassLabel(names=voc.CLASS_NAMES)),
  })


def coco_tfds_features():
  """The feature spec of TFDS ``coco/2014`` 1.1.0."""
  import tensorflow_datasets as tfds

  from rise_jax.data import coco

  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(encoding_format="jpeg"),
      "image/filename": tfds.features.Text(),
      "image/id": np.int64,
      "objects": tfds.features.Sequence({
          "id": np.int64,
          "area": np.int64,
          "bbox": tfds.features.BBoxFeature(),
          "label": tfds.features.ClassLabel(names=coco.CLASS_NAMES),
          "is_crowd": np.bool_,
      }),
  })


def imagenet_tfds_features():
  """The feature spec of TFDS ``imagenet2012`` 5.1.0 (class names left generic)."""
  import tensorflow_datasets as tfds

  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(encoding_format="jpeg"),
      "label": tfds.features.ClassLabel(num_classes=1000),
      "file_name": tfds.features.Text(),
  })
