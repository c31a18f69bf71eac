"""ImageNet (ILSVRC 2012) validation images: a TFDS ``imagenet2012`` folder or plain JPEGs.

- :func:`tfds_examples`: a user-prepared TFDS ``imagenet2012`` dataset (TFDS cannot download
  ImageNet; it is prepared from the user's own archives).
- :func:`load_folder`: a folder of images plus a label file with one ``filename label`` line
  per image, ``label`` being the 0-based class index in the sorted-synset order used by TFDS
  and torchvision (e.g. ``ILSVRC2012_val_00000001.JPEG 65``). The devkit's
  ``ILSVRC2012_validation_ground_truth.txt`` uses 1-based ILSVRC ids in another order and
  must be converted first.

Class names in that order: :func:`class_names`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rise_jax import _checks
from rise_jax.data.preprocess import Examples, read_image, tfds_source, tfds_text, wrap_tfds

NUM_CLASSES = 1000
TFDS_NAME = "imagenet2012"
TFDS_VERSION = "5.1.0"
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpeg", ".jpg", ".png")

_MAX_LISTED = 5


def class_names() -> list[str] | None:
  """The 1000 class names in label order (``None`` if the packaged list is absent)."""
  path = os.path.join(os.path.dirname(__file__), "imagenet_classes.txt")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def read_label_file(path: str | os.PathLike, num_classes: int = NUM_CLASSES
                    ) -> list[tuple[str, int]]:
  """Parses a ``filename label`` file.

  Args:
    path: Text file, one ``filename label`` per line (blank lines ignored); ``filename`` is
      relative to the image folder and may not contain spaces.
    num_classes: Labels must be in ``[0, num_classes)``.

  Returns:
    ``[(filename, label)]`` in file order.

  Raises:
    FileNotFoundError: The file is missing.
    ValueError: A malformed line, a label that is not an integer in range, a repeated file
      name, or no entry at all (the message names the file and line).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"label file not found: {path}")
  entries: list[tuple[str, int]] = []
  first_line: dict[str, int] = {}
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2:
        raise ValueError(f"{path}:{lineno}: expected 'filename label', got {line.rstrip()!r}")
      name, label_text = fields
      try:
        label = int(label_text)
      except ValueError:
        raise ValueError(f"{path}:{lineno}: label {label_text!r} is not an integer") from None
      if not 0 <= label < num_classes:
        raise ValueError(f"{path}:{lineno}: label {label} out of range [0, {num_classes})")
      name = os.path.normpath(name)
      if name in first_line:
        raise ValueError(f"{path}:{lineno}: {name} already listed on line {first_line[name]}")
      first_line[name] = lineno
      entries.append((name, label))
  if not entries:
    raise ValueError(f"label file {path} lists no image")
  return entries


def _image_files(image_dir: str) -> list[str]:
  """Image files under ``image_dir`` (recursive), relative and sorted."""
  found = []
  for folder, _, files in os.walk(image_dir):
    for file in files:
      if file.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(folder, file), image_dir))
  return sorted(found)


def load_folder(image_dir: str | os.PathLike, label_file: str | os.PathLike, *,
                num_classes: int = NUM_CLASSES, errors: str = "raise") -> Examples:
  """Images of a folder with their labels from a ``filename label`` file.

  Every image file in ``image_dir`` (``.jpeg``, ``.jpg``, ``.png``, searched recursively) must
  be listed in ``label_file`` and every listed file must exist: with ``errors="raise"`` a
  mismatch raises; with ``errors="skip"`` the unlisted or missing files (and, while iterating,
  undecodable ones) are left out and recorded in ``.skipped``.

  Args:
    image_dir: The image folder.
    label_file: See :func:`read_label_file`.
    num_classes: Labels must be in ``[0, num_classes)``.
    errors: ``"raise"`` or ``"skip"``.

  Returns:
    :class:`~rise_jax.data.preprocess.Examples` (lazy, re-iterable, indexable), in label-file
    order, of dicts ``{"id": str file name, "image": uint8[H, W, 3], "label": int64 class}``
    (``preprocess_example(**example, num_classes=1000)`` makes the label multi-hot).

  Raises:
    FileNotFoundError: A missing folder, label file or (with ``errors="raise"``) listed image.
    ValueError: A malformed label file, a listed file name leading out of ``image_dir``
      (``..`` or an absolute path), or (with ``errors="raise"``) images in the folder that
      the label file does not list (the message names them).
  """
  image_dir = os.fspath(image_dir)
  label_file = os.fspath(label_file)
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f"image folder not found: {image_dir}")
  entries = read_label_file(label_file, num_classes)
  for name, _ in entries:  # '../x.png' or an absolute path would read outside image_dir
    _checks.contained_path(image_dir, name, f"label file {label_file}")
  listed = {name for name, _ in entries}
  unlisted = [f for f in _image_files(image_dir) if os.path.normpath(f) not in listed]
  missing = [name for name, _ in entries
             if not os.path.isfile(os.path.join(image_dir, name))]

  def names(files: list[str]) -> str:
    return ", ".join(files[:_MAX_LISTED]) + (", ..." if len(files) > _MAX_LISTED else "")

  if errors == "raise":
    if missing:
      raise FileNotFoundError(f"{len(missing)} image(s) listed in {label_file} are missing "
                              f"from {image_dir}: {names(missing)}")
    if unlisted:
      raise ValueError(f"{len(unlisted)} image(s) in {image_dir} have no line in {label_file}: "
                       f"{names(unlisted)} (pass errors='skip' to leave them out)")
  known_bad = ([(f, f"not listed in {label_file}") for f in unlisted]
               + [(f, f"image file not found: {os.path.join(image_dir, f)}") for f in missing])
  missing_set = set(missing)
  labels = {name: label for name, label in entries if name not in missing_set}
  keys = [name for name, _ in entries if name not in missing_set]

  def load(name: str) -> dict[str, Any]:
    return {"id": name, "image": read_image(os.path.join(image_dir, name)),
            "label": np.int64(labels[name])}

  return Examples(keys, load, errors=errors, name=f"ImageNet folder {image_dir}",
                  skipped=known_bad)


def _convert_tfds(features: dict) -> dict[str, Any]:
  """A TFDS ``imagenet2012`` feature dict -> example dict (see :func:`tfds_examples`)."""
  filename = tfds_text(features.get("file_name", ""))
  image = np.asarray(features["image"])
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"TFDS {TFDS_NAME} example {filename!r}: image must be uint8[H, W, 3], "
                     f"got {image.dtype}{list(image.shape)}")
  return {"id": filename, "image": image, "label": np.int64(np.asarray(features["label"]))}


def tfds_examples(split: str = "validation", data_dir: str | os.PathLike | None = None, *,
                  version: str = TFDS_VERSION, download: bool = False) -> Examples:
  """ImageNet through a user-prepared TFDS ``imagenet2012`` folder.

  Args:
    split: TFDS split, e.g. ``"validation"`` or ``"validation[:1000]"``.
    data_dir: TFDS data folder holding ``imagenet2012/<version>/``.
    version: Prepared dataset version.
    download: Let TFDS prepare it (from the archives in its manual folder) if missing.

  Returns:
    :class:`~rise_jax.data.preprocess.Examples` of dicts ``{"id": str file name,
    "image": uint8[H, W, 3], "label": int64 class}``.

  Raises:
    FileNotFoundError: The dataset is not prepared (the message names the folder expected).
    ImportError: Reading it needs TensorFlow, which is not installed.
  """
  source = tfds_source(TFDS_NAME, version, split, data_dir, download)
  return wrap_tfds(source, _convert_tfds, f"TFDS {TFDS_NAME} {split}")
