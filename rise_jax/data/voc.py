"""PASCAL VOC 2007: labels and boxes through TFDS, segmentation from a local VOCdevkit.

Two sources, both yielding raw examples for :func:`rise_jax.data.preprocess.preprocess_example`:

- :func:`tfds_examples`: TFDS ``voc/2007`` (splits ``train``, ``validation``, ``test``):
  multi-hot labels, boxes and per-object ``is_difficult`` flags.
- :func:`load_segmentation`: the segmentation ground truth of a local ``VOCdevkit`` folder::

    VOCdevkit/VOC2007/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png         palette PNG: 0 background, c + 1 class c, 255 void
      Annotations/<id>.xml               boxes and difficult flags
      ImageSets/Segmentation/{train,val,trainval,test}.txt

Boxes are ``(ymin, xmin, ymax, xmax)`` normalised to ``[0, 1]``. VOC's XML stores 1-based
inclusive pixel corners; the devkit loader maps them to 0-based, end-exclusive edges
(``(ymin - 1) / H, (xmin - 1) / W, ymax / H, xmax / W``), whereas TFDS divides the raw numbers
(``ymin / H, ...``), so the two sources' top/left edges differ by one pixel.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import PIL.Image

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

CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
BACKGROUND = 0
VOID = 255
SEGMENTATION_SPLITS: tuple[str, ...] = ("train", "val", "trainval", "test")
TFDS_NAME = "voc/2007"
TFDS_VERSION = "5.0.0"

_CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}


def year_dir(voc_root: str | os.PathLike, year: str = "2007") -> str:
  """The ``VOC<year>`` folder of a devkit.

  Args:
    voc_root: The ``VOCdevkit`` folder (holding ``VOC<year>/``) or ``VOC<year>`` itself.
    year: Challenge year.

  Returns:
    The path of the ``VOC<year>`` folder.

  Raises:
    FileNotFoundError: Neither layout is found (the message names the path expected).
  """
  root = os.fspath(voc_root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"VOC root folder not found: {root} (expected the VOCdevkit folder "
                            f"holding VOC{year}/)")
  nested = os.path.join(root, f"VOC{year}")
  if os.path.isdir(nested):
    return nested
  if os.path.isdir(os.path.join(root, "SegmentationClass")):
    return root
  raise FileNotFoundError(f"no VOC{year} data in {root}: expected the folder {nested} (with "
                          f"JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)")


def read_split(path: str | os.PathLike) -> list[str]:
  """Sample ids of an ``ImageSets`` split file (one id per line).

  Raises:
    FileNotFoundError: The file is missing (the message lists the splits present).
    ValueError: The file lists no id, or a line with more than one field.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    folder = os.path.dirname(path)
    present = (sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt"))
               if os.path.isdir(folder) else [])
    raise FileNotFoundError(f"split file not found: {path} (splits present: {present})")
  ids = []
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 1:
        raise ValueError(f"{path}:{lineno}: expected one sample id per line, got {line!r}")
      ids.append(fields[0])
  if not ids:
    raise ValueError(f"split file {path} lists no sample id")
  return ids


def read_segmentation_png(path: str | os.PathLike) -> np.ndarray:
  """Reads a ``SegmentationClass`` PNG as a class-id map.

  Args:
    path: Palette (``P``) or greyscale (``L``) PNG whose pixel values are class ids.

  Returns:
    uint8[H, W]: 0 background, ``c + 1`` for class ``c`` of :data:`CLASS_NAMES`, 255 void.

  Raises:
    FileNotFoundError: The file is missing.
    ValueError: Undecodable, not an index PNG, or ids outside ``{0..20, 255}`` (the message
      names the file and the ids).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"segmentation file not found: {path}")
  try:
    with PIL.Image.open(path) as img:
      mode = img.mode
      seg = np.asarray(img)
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f"cannot decode segmentation {path}: {e}") from e
  if mode not in ("P", "L"):
    raise ValueError(f"segmentation {path} has mode {mode!r}; expected a palette ('P') or "
                     f"greyscale ('L') PNG whose values are class ids")
  ids = np.unique(seg)
  bad = [int(i) for i in ids if not (i <= NUM_CLASSES or i == VOID)]
  if bad:
    raise ValueError(f"segmentation {path} has unknown class ids {bad}; expected 0 "
                     f"(background), 1..{NUM_CLASSES} or {VOID} (void)")
  return seg.astype(np.uint8)


def read_annotation(path: str | os.PathLike, height: int, width: int) -> dict[str, np.ndarray]:
  """Reads the objects of a VOC annotation XML.

  Args:
    path: ``Annotations/<id>.xml``.
    height: Image height ``H`` (checked against the XML's ``<size>``).
    width: Image width ``W``.

  Returns:
    ``{"boxes": float32[k, 4] normalised (ymin, xmin, ymax, xmax), "box_label": int64[k],
    "difficult": bool[k]}``.

  Raises:
    FileNotFoundError: The file is missing.
    ValueError: Malformed XML, a missing field, an unknown class name or a size that differs
      from the image's (the message names the file).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"annotation file not found: {path}")
  try:
    root = ET.parse(path).getroot()
  except ET.ParseError as e:
    raise ValueError(f"cannot parse annotation {path}: {e}") from e

  def text(node, tag: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
      raise ValueError(f"annotation {path}: missing <{tag}>")
    return child.text.strip()

  def number(node, tag: str) -> float:
    value = text(node, tag)
    try:
      return float(value)
    except ValueError:
      raise ValueError(f"annotation {path}: <{tag}> is {value!r}, not a number") from None

  size = root.find("size")
  if size is not None:
    xml_hw = (int(number(size, "height")), int(number(size, "width")))
    if xml_hw != (height, width):
      raise ValueError(f"annotation {path} gives size {xml_hw[0]}x{xml_hw[1]} but the image is "
                       f"{height}x{width}")
  boxes, labels, difficult = [], [], []
  for obj in root.findall("object"):
    name = text(obj, "name").lower()
    if name not in _CLASS_INDEX:
      raise ValueError(f"annotation {path}: unknown class name {name!r}; known: "
                       f"{list(CLASS_NAMES)}")
    bndbox = obj.find("bndbox")
    if bndbox is None:
      raise ValueError(f"annotation {path}: object {name!r} has no <bndbox>")
    xmin, ymin, xmax, ymax = (number(bndbox, t) for t in ("xmin", "ymin", "xmax", "ymax"))
    boxes.append(((ymin - 1) / height, (xmin - 1) / width, ymax / height, xmax / width))
    labels.append(_CLASS_INDEX[name])
    difficult.append(text(obj, "difficult") == "1")
  return {
      "boxes": np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0.0, 1.0),
      "box_label": np.asarray(labels, np.int64),
      "difficult": np.asarray(difficult, bool),
  }


def load_segmentation(voc_root: str | os.PathLike, split: str = "val", *, year: str = "2007",
                      annotations: bool = True, errors: str = "raise") -> Examples:
  """The segmentation set of a local VOCdevkit.

  Args:
    voc_root: The ``VOCdevkit`` folder (or its ``VOC<year>`` folder).
    split: ``ImageSets/Segmentation/<split>.txt``: one of :data:`SEGMENTATION_SPLITS`.
    year: Challenge year (the layout is the same for 2007 and 2012).
    annotations: Also read boxes and difficult flags from ``Annotations/<id>.xml``.
    errors: ``"raise"`` (default) stops at the first bad sample with a message naming the
      file; ``"skip"`` leaves bad samples out and records them in ``.skipped``.

  Returns:
    :class:`~rise_jax.data.preprocess.Examples` (lazy, re-iterable, indexable) of dicts:
      ``"id"``: str sample id.
      ``"image"``: uint8[H, W, 3].
      ``"label"``: float32[20] multi-hot; 1 iff the class has at least one pixel.
      ``"segmentation"``: bool[H, W, 20] pixels of each class.
      ``"void"``: bool[H, W] boundary/void pixels (value 255), to ignore in evaluation.
      ``"boxes"``: float32[k, 4] normalised ``(ymin, xmin, ymax, xmax)`` (with annotations).
      ``"box_label"``: int64[k] class of each box (with annotations).
      ``"difficult"``: bool[k] VOC difficult flag of each box (with annotations).

  Raises:
    FileNotFoundError: A missing folder, split file or (with ``errors="raise"``) sample file;
      the message names the path expected.
    ValueError: An unknown split name or an empty split file.
  """
  if split not in SEGMENTATION_SPLITS:
    raise ValueError(f"split must be one of {SEGMENTATION_SPLITS}, got {split!r}")
  base = year_dir(voc_root, year)
  folders = {"image": "JPEGImages", "segmentation": "SegmentationClass",
             "split": os.path.join("ImageSets", "Segmentation")}
  if annotations:
    folders["annotation"] = "Annotations"
  for folder in folders.values():
    path = os.path.join(base, folder)
    if not os.path.isdir(path):
      raise FileNotFoundError(f"VOC folder not found: {path}")
  split_file = os.path.join(base, folders["split"], f"{split}.txt")
  ids = read_split(split_file)
  for sample_id in ids:  # '../x' would read outside the VOC folders
    _checks.contained_path(os.path.join(base, "JPEGImages"), f"{sample_id}.jpg",
                           f"split file {split_file}")

  def files(sample_id: str) -> dict[str, str]:
    out = {"image": os.path.join(base, "JPEGImages", f"{sample_id}.jpg"),
           "segmentation": os.path.join(base, "SegmentationClass", f"{sample_id}.png")}
    if annotations:
      out["annotation"] = os.path.join(base, "Annotations", f"{sample_id}.xml")
    return out

  missing = [(i, p) for i in ids for p in files(i).values() if not os.path.isfile(p)]
  ids, known_bad = drop_missing(ids, missing, errors, f"VOC{year} {split}")

  def load(sample_id: str) -> dict[str, Any]:
    paths = files(sample_id)
    image = read_image(paths["image"])
    seg = read_segmentation_png(paths["segmentation"])
    if seg.shape != image.shape[:2]:
      raise ValueError(f"segmentation {paths['segmentation']} is {seg.shape[0]}x{seg.shape[1]} "
                       f"but image {paths['image']} is {image.shape[0]}x{image.shape[1]}")
    masks = seg[..., None] == np.arange(1, NUM_CLASSES + 1, dtype=np.uint8)
    example = {
        "id": sample_id,
        "image": image,
        "label": masks.any(axis=(0, 1)).astype(np.float32),
        "segmentation": masks,
        "void": seg == VOID,
    }
    if annotations:
      example.update(read_annotation(paths["annotation"], *image.shape[:2]))
    return example

  return Examples(ids, load, errors=errors, name=f"VOC{year} {split}", skipped=known_bad)


def _convert_tfds(features: dict) -> dict[str, Any]:
  """A TFDS ``voc/2007`` feature dict -> example dict (see :func:`tfds_examples`)."""
  filename, where, image, objects = tfds_image_and_objects(
      features, TFDS_NAME, ("label", "bbox", "is_difficult"))
  labels = objects["label"].astype(np.int64)
  return {
      "id": os.path.splitext(filename)[0],
      "image": image,
      "label": multi_hot(labels, NUM_CLASSES, where=where),
      "boxes": objects["bbox"],
      "box_label": labels,
      "difficult": objects["is_difficult"].astype(bool),
  }


def tfds_examples(split: str = "test", data_dir: str | os.PathLike | None = None, *,
                  version: str = TFDS_VERSION, download: bool = False) -> Examples:
  """VOC2007 through TFDS ``voc/2007`` (read without TensorFlow when stored as array_record).

  Args:
    split: TFDS split: ``"train"``, ``"validation"``, ``"test"`` (slicing allowed).
    data_dir: TFDS data folder (``None``: the TFDS default).
    version: Prepared dataset version.
    download: Let TFDS download and prepare the dataset if missing.

  Returns:
    :class:`~rise_jax.data.preprocess.Examples` of dicts:
      ``"id"``: str file stem; ``"image"``: uint8[H, W, 3];
      ``"label"``: float32[20] multi-hot over all objects (difficult ones included);
      ``"boxes"``: float32[k, 4] normalised ``(ymin, xmin, ymax, xmax)``;
      ``"box_label"``: int64[k]; ``"difficult"``: bool[k].

  Raises:
    FileNotFoundError: The dataset is not prepared (the message names the folder expected).
    ImportError: Reading it needs TensorFlow, which is not installed.
  """
  source = tfds_source(TFDS_NAME, version, split, data_dir, download)
  return wrap_tfds(source, _convert_tfds, f"TFDS {TFDS_NAME} {split}")
