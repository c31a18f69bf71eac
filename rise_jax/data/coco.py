"""MS COCO 2014: labels and boxes through TFDS, instance masks from the annotation JSON.

- :func:`tfds_examples`: TFDS ``coco/2014`` (splits ``train``, ``validation``, ``test``,
  ``test2015``): multi-hot labels over the 80 categories, boxes, crowd flags.
- :func:`load_segmentation`: an ``instances_<split>2014.json`` annotation file and its image
  folder; per-class union masks decoded with ``pycocotools`` (``pip install pycocotools``).

Class index ``c`` in ``[0, 80)`` is the ``c``-th of COCO's 80 categories sorted by category id
(:data:`CATEGORIES`), as in TFDS. Boxes are ``(ymin, xmin, ymax, xmax)`` normalised to
``[0, 1]``.
"""

from __future__ import annotations

import collections
import json
import os
import warnings
from typing import Any

import numpy as np

from rise_jax import _checks
from rise_jax.data.preprocess import (
  Examples,
  drop_missing,
  multi_hot,
  read_image,
  tfds_image_and_objects,
  tfds_source,
  wrap_tfds,
)

# (COCO category id, name), sorted by id: 80 of the ids 1..90 are used.
CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"),
    (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"),
    (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for _, name in CATEGORIES)
CATEGORY_IDS: tuple[int, ...] = tuple(cid for cid, _ in CATEGORIES)
NUM_CLASSES = len(CATEGORIES)
TFDS_NAME = "coco/2014"
TFDS_VERSION = "1.1.0"

_INDEX_OF_ID = {cid: i for i, cid in enumerate(CATEGORY_IDS)}


def _mask_utils():
  try:
    from pycocotools import mask as mask_utils
  except ImportError as e:
    raise ImportError("decoding COCO masks needs pycocotools: pip install pycocotools") from e
  return mask_utils


def annotation_mask(segmentation, height: int, width: int, where: str = "annotation"
                    ) -> np.ndarray:
  """Decodes one COCO ``segmentation`` (polygons, uncompressed or compressed RLE).

  Same decoding as ``pycocotools.coco.COCO.annToMask``. Polygons with fewer than 3 points
  have no area and are ignored.

  Args:
    segmentation: A list of polygons ``[x0, y0, x1, y1, ...]``, or an RLE dict
      ``{"size": [H, W], "counts": list[int] | str}``.
    height: Image height ``H``.
    width: Image width ``W``.
    where: The annotation (file and id), for error messages.

  Returns:
    bool[H, W].

  Raises:
    ValueError: A malformed polygon or RLE, or an RLE size different from ``(H, W)``.
  """
  mask_utils = _mask_utils()
  if isinstance(segmentation, list):
    polygons = []
    for poly in segmentation:
      if not isinstance(poly, list) or len(poly) % 2:
        raise ValueError(f"{where}: a polygon must be a flat list of x, y pairs, got {poly!r}")
      if len(poly) >= 6:
        polygons.append([float(v) for v in poly])
    if not polygons:
      return np.zeros((height, width), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
  elif isinstance(segmentation, dict) and {"size", "counts"} <= set(segmentation):
    if [int(v) for v in segmentation["size"]] != [height, width]:
      raise ValueError(f"{where}: RLE size {list(segmentation['size'])} differs from the image "
                       f"size [{height}, {width}]")
    counts = segmentation["counts"]
    if isinstance(counts, list):
      if sum(counts) != height * width or min(counts, default=0) < 0:
        raise ValueError(f"{where}: uncompressed RLE counts sum to {sum(counts)}, expected "
                         f"{height} * {width} = {height * width}")
      rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(counts, (str, bytes)):
      rle = {"size": [height, width],
             "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
      raise ValueError(f"{where}: RLE counts must be a list or a string, got "
                       f"{type(counts).__name__}")
  else:
    raise ValueError(f"{where}: segmentation must be a list of polygons or an RLE dict with "
                     f"'size' and 'counts', got {type(segmentation).__name__}")
  try:
    with warnings.catch_warnings():  # raised inside pycocotools' own decode under NumPy 2
      warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy",
                              DeprecationWarning)
      return mask_utils.decode(rle).astype(bool)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{where}: cannot decode RLE: {e}") from e


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"COCO annotation file not found: {path}")
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot parse COCO annotation file {path}: {e}") from e
  if not isinstance(data, dict):
    raise ValueError(f"COCO annotation file {path} must hold a JSON object")
  for key in ("images", "annotations", "categories"):
    if not isinstance(data.get(key), list):
      raise ValueError(f"COCO annotation file {path} has no {key!r} list")
  return data


def _check_categories(categories: list, path: str) -> dict[int, int]:
  """Maps the file's category ids to class indices, checking them against :data:`CATEGORIES`."""
  known = dict(CATEGORIES)
  index = {}
  for cat in categories:
    if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
      raise ValueError(f"COCO annotation file {path}: a category must have 'id' and 'name', "
                       f"got {cat!r}")
    cid, name = cat["id"], cat["name"]
    if cid not in known:
      raise ValueError(f"COCO annotation file {path}: unknown category id {cid} ({name!r}); "
                       f"COCO's 80 category ids are {list(CATEGORY_IDS)}")
    if name != known[cid]:
      raise ValueError(f"COCO annotation file {path}: category id {cid} is named {name!r}, but "
                       f"COCO's category {cid} is {known[cid]!r}")
    index[cid] = _INDEX_OF_ID[cid]
  return index


def load_segmentation(annotation_json: str | os.PathLike, image_dir: str | os.PathLike, *,
                      include_crowd: bool = True, errors: str = "raise") -> Examples:
  """COCO images with per-class union instance masks.

  Args:
    annotation_json: An instances annotation file, e.g. ``instances_val2014.json``.
    image_dir: Folder of the images named by the file's ``file_name`` entries.
    include_crowd: Include ``iscrowd`` annotations (crowd regions) in masks, labels, boxes.
    errors: ``"raise"`` (default) stops at the first bad image with a message naming the file;
      ``"skip"`` leaves bad images out and records them in ``.skipped``.

  Returns:
    :class:`~rise_jax.data.preprocess.Examples` (lazy, re-iterable, indexable), in the file's
    image order, of dicts:
      ``"id"``: int COCO image id; ``"filename"``: str.
      ``"image"``: uint8[H, W, 3].
      ``"label"``: float32[80] multi-hot: 1 iff the image has an annotation of the class
        (images without annotations have all zeros).
      ``"segmentation"``: bool[H, W, 80] union of the instance masks of each class.
      ``"boxes"``: float32[k, 4] normalised ``(ymin, xmin, ymax, xmax)`` per annotation
        (from its ``bbox``; the tight box of its mask if it has none).
      ``"box_label"``: int64[k] class index per annotation.
      ``"is_crowd"``: bool[k].

  Raises:
    ImportError: pycocotools is not installed.
    FileNotFoundError: A missing annotation file, image folder or (with ``errors="raise"``)
      image; the message names the path.
    ValueError: A malformed annotation file, an unknown category id or name, or an annotation
      that names a category or image absent from the file (the message names the file).
  """
  _mask_utils()  # fail early without pycocotools
  path = os.fspath(annotation_json)
  image_dir = os.fspath(image_dir)
  data = _read_json(path)
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f"COCO image folder not found: {image_dir}")
  class_of = _check_categories(data["categories"], path)

  images = {}
  for info in data["images"]:
    if not isinstance(info, dict) or not {"id", "file_name", "height", "width"} <= set(info):
      raise ValueError(f"COCO annotation file {path}: an image needs 'id', 'file_name', "
                       f"'height' and 'width', got {info!r}")
    if info["id"] in images:
      raise ValueError(f"COCO annotation file {path}: duplicate image id {info['id']}")
    _checks.contained_path(image_dir, info["file_name"],
                           f"COCO annotation file {path}, image {info['id']!r}")
    images[info["id"]] = info
  per_image = collections.defaultdict(list)
  for ann in data["annotations"]:
    if not isinstance(ann, dict) or not {"image_id", "category_id", "segmentation"} <= set(ann):
      raise ValueError(f"COCO annotation file {path}: an annotation needs 'image_id', "
                       f"'category_id' and 'segmentation', got keys "
                       f"{sorted(ann) if isinstance(ann, dict) else ann!r}")
    if ann["category_id"] not in class_of:
      known = dict(CATEGORIES).get(ann["category_id"], "not a COCO category")
      raise ValueError(f"COCO annotation file {path}: annotation {ann.get('id')} has category id "
                       f"{ann['category_id']} ({known}), which the file's 'categories' do not "
                       f"list")
    if ann["image_id"] not in images:
      raise ValueError(f"COCO annotation file {path}: annotation {ann.get('id')} refers to "
                       f"image id {ann['image_id']}, which the file's 'images' do not list")
    if include_crowd or not ann.get("iscrowd", 0):
      per_image[ann["image_id"]].append(ann)

  ids = list(images)
  missing = [(i, os.path.join(image_dir, images[i]["file_name"])) for i in ids]
  missing = [(i, p) for i, p in missing if not os.path.isfile(p)]
  ids, known_bad = drop_missing(ids, missing, errors, f"COCO images of {path}")

  def load(image_id: int) -> dict[str, Any]:
    info = images[image_id]
    file = os.path.join(image_dir, info["file_name"])
    image = read_image(file)
    h, w = image.shape[:2]
    if (h, w) != (int(info["height"]), int(info["width"])):
      raise ValueError(f"image {file} is {h}x{w} but {path} says "
                       f"{info['height']}x{info['width']}")
    anns = per_image[image_id]
    seg = np.zeros((h, w, NUM_CLASSES), bool)
    boxes = np.zeros((len(anns), 4), np.float32)
    box_label = np.zeros(len(anns), np.int64)
    for k, ann in enumerate(anns):
      cls = class_of[ann["category_id"]]
      where = f"{path}: annotation {ann.get('id')} (image {info['file_name']})"
      mask = annotation_mask(ann["segmentation"], h, w, where)
      seg[..., cls] |= mask
      box_label[k] = cls
      if "bbox" not in ann and mask.any():  # the tight box of the mask
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes[k] = (rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w)
      elif "bbox" in ann:
        try:
          if not isinstance(ann["bbox"], (list, tuple)) or len(ann["bbox"]) != 4:
            raise TypeError
          x, y, bw, bh = (float(v) for v in ann["bbox"])
        except (TypeError, ValueError):
          raise ValueError(f"{where}: bbox must be [x, y, width, height], got "
                           f"{ann['bbox']!r}") from None
        boxes[k] = (y / h, x / w, (y + bh) / h, (x + bw) / w)
    return {
        "id": image_id,
        "filename": info["file_name"],
        "image": image,
        "label": multi_hot(box_label, NUM_CLASSES),
        "segmentation": seg,
        "boxes": np.clip(boxes, 0.0, 1.0),
        "box_label": box_label,
        "is_crowd": np.asarray([bool(a.get("iscrowd", 0)) for a in anns], bool),
    }

  return Examples(ids, load, errors=errors, name=f"COCO {os.path.basename(path)}",
                  skipped=known_bad)


def _convert_tfds(features: dict) -> dict[str, Any]:
  """A TFDS ``coco/2014`` feature dict -> example dict (see :func:`tfds_examples`)."""
  filename, where, image, objects = tfds_image_and_objects(
      features, TFDS_NAME, ("label", "bbox", "is_crowd"))
  labels = objects["label"].astype(np.int64)
  return {
      "id": int(np.asarray(features["image/id"])),
      "filename": filename,
      "image": image,
      "label": multi_hot(labels, NUM_CLASSES, where=where),
      "boxes": objects["bbox"],
      "box_label": labels,
      "is_crowd": objects["is_crowd"].astype(bool),
  }


def tfds_examples(split: str = "validation", data_dir: str | os.PathLike | None = None, *,
                  version: str = TFDS_VERSION, download: bool = False) -> Examples:
  """COCO 2014 through TFDS ``coco/2014`` (read without TensorFlow when stored as array_record).

  TFDS's COCO builder code imports TensorFlow, so without it only a prepared dataset can be
  read (the version is pinned so that TFDS opens the prepared files, not the builder code).

  Args:
    split: TFDS split: ``"train"``, ``"validation"``, ``"test"``, ``"test2015"``.
    data_dir: TFDS data folder (``None``: the TFDS default).
    version: Prepared dataset version.
    download: Let TFDS download and prepare the dataset if missing (needs TensorFlow).

  Returns:
    :class:`~rise_jax.data.preprocess.Examples` of dicts: ``"id"`` int image id,
    ``"filename"``, ``"image"`` uint8[H, W, 3], ``"label"`` float32[80] multi-hot,
    ``"boxes"`` float32[k, 4] normalised ``(ymin, xmin, ymax, xmax)``, ``"box_label"``
    int64[k], ``"is_crowd"`` bool[k].

  Raises:
    FileNotFoundError: The dataset is not prepared (the message names the folder expected).
    ImportError: Reading it needs TensorFlow, which is not installed.
  """
  source = tfds_source(TFDS_NAME, version, split, data_dir, download)
  return wrap_tfds(source, _convert_tfds, f"TFDS {TFDS_NAME} {split}")
