"""The one preprocessing path of the real datasets, and helpers shared by their loaders.

Every real-data loader (:mod:`rise_jax.data.voc`, :mod:`rise_jax.data.coco`,
:mod:`rise_jax.data.imagenet`) yields raw examples: a ``uint8[H, W, 3]`` photo plus its ground
truth at the photo's own size (boxes normalised to ``[0, 1]``). :func:`preprocess_example` turns
one into model input: the photo resized to ``size x size`` (bilinear, antialiased, as
:func:`rise_jax.models.registry.preprocess`) and normalised with a per-channel mean/std in
0..255 units, the masks resized with nearest neighbour, the boxes scaled to pixels of the
resized image. The whole image is resized (no crop) so that every pixel of the ground truth
keeps a place in the model input.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import PIL.Image

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Examples",
    "box_masks",
    "multi_hot",
    "preprocess_example",
    "read_image",
    "resize_image",
    "resize_nearest",
    "tfds_objects",
    "tfds_source",
    "tfds_text",
    "wrap_tfds",
]

_ERRORS = ("raise", "skip")


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """float64[out, in] weights of antialiased bilinear resizing along one axis.

  The triangle-kernel formula of ``jax.image.resize(..., "bilinear", antialias=True)``
  (``jax._src.image.scale.compute_weight_mat`` with translation 0), in NumPy so that photos of
  many different sizes need no per-shape XLA compilation.
  """
  scale = out_size / in_size
  kernel_scale = max(1.0 / scale, 1.0)
  sample = (np.arange(out_size) + 0.5) / scale - 0.5
  x = np.abs(sample[None, :] - np.arange(in_size)[:, None]) / kernel_scale
  w = np.maximum(0.0, 1.0 - x)
  total = w.sum(axis=0, keepdims=True)
  w = np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps,
               w / np.where(total != 0, total, 1), 0.0)
  inside = (sample >= -0.5) & (sample <= in_size - 0.5)
  return np.where(inside[None, :], w, 0.0).T


def resize_image(image, shape: tuple[int, int]) -> np.ndarray:
  """Antialiased bilinear resize of ``float[H, W, C]`` to ``float32[h, w, C]``.

  Equal (to float32 rounding) to ``jax.image.resize(image, (h, w, C), "bilinear",
  antialias=True)``, computed as two NumPy matrix products.
  """
  arr = np.asarray(image, np.float32)
  wh = _resize_weights(arr.shape[0], shape[0]).astype(np.float32)
  ww = _resize_weights(arr.shape[1], shape[1]).astype(np.float32)
  return np.einsum("ih,hwc,jw->ijc", wh, arr, ww, optimize=True).astype(np.float32)


def box_masks(boxes, box_label, num_classes: int, size: int) -> np.ndarray:
  """Per-class union of boxes as masks (TorchRay's box ground truth of the pointing game).

  Args:
    boxes: float[k, 4] ``(ymin, xmin, ymax, xmax)`` in pixels, end exclusive.
    box_label: int[k] class of each box.
    num_classes: ``C``.
    size: Image side ``S``.

  Returns:
    bool[S, S, C]: pixel ``[floor(ymin), ceil(ymax)) x [floor(xmin), ceil(xmax))`` of each box
    set in its class's channel.
  """
  out = np.zeros((size, size, num_classes), bool)
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  labels = np.asarray(box_label, np.int64).reshape(-1)
  if b.shape[0] != labels.shape[0]:
    raise ValueError(f"boxes [k, 4] and box_label [k] must agree, got {list(b.shape)} and "
                     f"{list(labels.shape)}")
  for (y0, x0, y1, x1), c in zip(b, labels):
    y0, x0 = max(int(np.floor(y0)), 0), max(int(np.floor(x0)), 0)
    y1, x1 = min(int(np.ceil(y1)), size), min(int(np.ceil(x1)), size)
    out[y0:y1, x0:x1, c] = True
  return out


def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads a photo as RGB.

  Greyscale, CMYK, palette and RGBA files (all occur in COCO and ImageNet) are converted to RGB.

  Args:
    path: Image file (any format Pillow decodes: JPEG, PNG, ...).

  Returns:
    uint8[H, W, 3].

  Raises:
    FileNotFoundError: The file does not exist.
    ValueError: The file cannot be decoded as an image (the message names it).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image file not found: {path}")
  try:
    with PIL.Image.open(path) as img:
      return np.asarray(img.convert("RGB"), np.uint8)
  except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as e:
    raise ValueError(f"cannot decode image {path}: {e}") from e


def multi_hot(class_ids, num_classes: int, *, where: str = "labels") -> np.ndarray:
  """Class ids -> multi-hot vector.

  Args:
    class_ids: int[k] (or a scalar) class ids in ``[0, num_classes)``; repeats are allowed.
    num_classes: ``C``.
    where: What the ids belong to, for the error message (e.g. a file name).

  Returns:
    float32[C], 1 at every id present.

  Raises:
    ValueError: An id out of range (the message names ``where`` and the ids).
  """
  ids = np.asarray(class_ids).reshape(-1)
  if ids.size and not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{where}: class ids must be integers, got dtype {ids.dtype}")
  bad = sorted({int(i) for i in ids if not 0 <= i < num_classes})
  if bad:
    raise ValueError(f"{where}: class ids {bad} out of range [0, {num_classes})")
  out = np.zeros(num_classes, np.float32)
  out[ids.astype(np.int64)] = 1.0
  return out


def resize_nearest(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of the two leading axes (pixel-centre aligned).

  Output pixel ``i`` takes input pixel ``floor((i + 0.5) * H / size)``, so an integer
  upscale repeats each pixel and an integer downscale keeps one pixel of each block. Values
  (class ids, the 255 void label, booleans) are never mixed.

  Args:
    array: [H, W, ...] of any dtype.
    size: Output side ``S`` (square) or ``(S_h, S_w)``.

  Returns:
    [S_h, S_w, ...] of the input dtype.
  """
  out_h, out_w = (size, size) if isinstance(size, int) else size
  h, w = array.shape[:2]
  rows = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.int64), h - 1)
  cols = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.int64), w - 1)
  return array[rows[:, None], cols[None, :]]


def preprocess_example(
    image: np.ndarray,
    *,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    segmentation: np.ndarray | None = None,
    void: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    label: np.ndarray | int | None = None,
    num_classes: int | None = None,
    difficult: np.ndarray | None = None,
    **metadata: Any,
) -> dict[str, Any]:
  """Resizes and normalises one raw example (the output of any real-data loader).

  Typical use: ``preprocess_example(**example, size=224)``.

  Args:
    image: uint8[H, W, 3] photo.
    size: Side ``S`` of the square output.
    mean: Per-channel mean in 0..255 units (default: ImageNet, as the registry's models).
    std: Per-channel scale in 0..255 units.
    segmentation: Either an integer class map int[H, W] (any integer dtype; special values
      such as 255 = void are kept) or per-class masks bool[H, W, C]. Resized with nearest
      neighbour.
    void: Optional bool[H, W] pixels to ignore (VOC's boundary label). Nearest neighbour.
    boxes: float[k, 4] ``(ymin, xmin, ymax, xmax)`` normalised to ``[0, 1]``.
    label: Multi-hot float/bool[C] (with ``num_classes=None``) or class ids int[k] / a scalar
      id (with ``num_classes`` given, turned into multi-hot).
    num_classes: See ``label``.
    difficult: bool[k] per-box flags, returned unchanged.
    **metadata: Non-spatial entries (ids, file names, per-box class ids, ...) returned
      unchanged.

  Returns:
    A dict with ``"image"`` float32[S, S, 3] ``(resized - mean) / std``, and, for each
    argument given: ``"segmentation"`` int[S, S] or bool[S, S, C], ``"void"`` bool[S, S],
    ``"boxes"`` float32[k, 4] in pixels of the resized image (``(ymin, xmin, ymax, xmax)``
    times ``S``), ``"label"`` float32[C] multi-hot, ``"difficult"`` bool[k]; plus
    ``metadata``.

  Raises:
    ValueError: A wrongly shaped or typed input, or a mask whose size differs from the image's.
  """
  img = np.asarray(image)
  if img.ndim != 3 or img.shape[-1] != 3:
    raise ValueError(f"image must be an RGB photo [H, W, 3], got shape {list(img.shape)}")
  if img.dtype != np.uint8:
    raise ValueError(f"image must be uint8 in 0..255, got {img.dtype}")
  if not isinstance(size, (int, np.integer)) or size < 1:
    raise ValueError(f"size must be a positive integer, got {size!r}")
  mean_arr = np.asarray(mean, np.float32)
  std_arr = np.asarray(std, np.float32)
  if mean_arr.shape != (3,) or std_arr.shape != (3,):
    raise ValueError(f"mean and std must have 3 entries, got {list(mean)} and {list(std)}")
  h, w = img.shape[:2]
  resized = resize_image(img, (size, size))
  out: dict[str, Any] = dict(metadata)
  out["image"] = ((resized - mean_arr) / std_arr).astype(np.float32)

  if segmentation is not None:
    seg = np.asarray(segmentation)
    if seg.shape[:2] != (h, w) or seg.ndim not in (2, 3):
      raise ValueError(f"segmentation must be int[{h}, {w}] or bool[{h}, {w}, C] like the "
                       f"image, got shape {list(seg.shape)}")
    if seg.ndim == 2 and not np.issubdtype(seg.dtype, np.integer):
      raise ValueError(f"a 2-D segmentation must be an integer class map, got {seg.dtype}")
    if seg.ndim == 3 and seg.dtype != bool:
      raise ValueError(f"a 3-D segmentation must be bool per-class masks, got {seg.dtype}")
    out["segmentation"] = resize_nearest(seg, size)
  if void is not None:
    v = np.asarray(void)
    if v.shape != (h, w) or v.dtype != bool:
      raise ValueError(f"void must be bool[{h}, {w}], got {v.dtype}{list(v.shape)}")
    out["void"] = resize_nearest(v, size)
  if boxes is not None:
    b = np.asarray(boxes, np.float32)
    if b.size == 0:
      b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
      raise ValueError(f"boxes must be float[k, 4] (ymin, xmin, ymax, xmax), got shape "
                       f"{list(b.shape)}")
    if b.size and (b.min() < -1e-6 or b.max() > 1 + 1e-6):
      raise ValueError(f"boxes must be normalised to [0, 1], got values in "
                       f"[{b.min()}, {b.max()}]")
    out["boxes"] = b * np.float32(size)
  if label is not None:
    if num_classes is not None:
      out["label"] = multi_hot(label, num_classes)
    else:
      lab = np.asarray(label)
      if lab.ndim != 1:
        raise ValueError(f"label must be multi-hot [C] (or class ids with num_classes=), got "
                         f"shape {list(lab.shape)}")
      out["label"] = lab.astype(np.float32)
  if difficult is not None:
    out["difficult"] = np.asarray(difficult, bool)
  return out


class Examples:
  """A lazily loaded, re-iterable collection of examples with a report of what was skipped.

  Iterating calls ``load(key)`` for each key in order. With ``errors="raise"`` the first
  failing example raises (its message names the offending file); with ``errors="skip"`` it is
  left out, recorded in :attr:`skipped` as ``(key, message)`` and counted in a warning logged
  at the end of the pass. Nothing is ever left out silently.

  Attributes:
    keys: The keys (sample ids, file names, indices) in iteration order.
    skipped: ``(key, message)`` of every example left out so far (reset at each full pass);
      entries known to be bad before loading (e.g. missing files) are listed from the start.
  """

  def __init__(self, keys: Sequence[Any] | Iterable[Any], load: Callable[[Any], dict],
               *, errors: str = "raise", name: str = "examples",
               skipped: Sequence[tuple[Any, str]] = ()):
    """Creates the collection.

    Args:
      keys: Keys passed to ``load`` (a sequence gives ``len`` and indexing).
      load: ``key -> example dict``; raises ``OSError``/``ValueError`` on bad data.
      errors: ``"raise"`` or ``"skip"``.
      name: What the examples are, for log messages (e.g. ``"VOC2007 val"``).
      skipped: Keys already known to be bad, with their messages.
    """
    if errors not in _ERRORS:
      raise ValueError(f"errors must be one of {_ERRORS}, got {errors!r}")
    self.keys = keys
    self._load = load
    self.errors = errors
    self.name = name
    self._known_bad = list(skipped)
    self.skipped: list[tuple[Any, str]] = list(skipped)

  def __len__(self) -> int:
    """Number of keys (examples skipped while loading are included)."""
    return len(self.keys)  # type: ignore[arg-type]

  def __getitem__(self, index: int) -> dict:
    """Loads example ``index`` (always raises on bad data)."""
    return self._load(self.keys[index])  # type: ignore[index]

  def __iter__(self) -> Iterator[dict]:
    self.skipped = list(self._known_bad)
    for key in self.keys:
      try:
        example = self._load(key)
      except (OSError, ValueError) as e:
        if self.errors == "raise":
          raise
        self.skipped.append((key, str(e)))
        continue
      yield example
    if self.skipped:
      logging.warning("%s: skipped %d example(s); first: %s", self.name, len(self.skipped),
                      self.skipped[0][1])

  def __repr__(self) -> str:
    n = len(self.keys) if isinstance(self.keys, Sequence) else "?"
    return f"Examples({self.name!r}, {n} keys, errors={self.errors!r})"


def tfds_source(name: str, version: str, split: str, data_dir: str | os.PathLike | None = None,
                download: bool = False) -> Sequence[dict] | Iterable[dict]:
  """Opens a split of a TFDS dataset, without TensorFlow where TFDS allows it.

  TFDS reads datasets prepared in the ``array_record`` (or ``parquet``) format through
  ``tfds.data_source`` with NumPy only; the version is pinned so that the dataset is opened
  from its prepared files (``features.json``) rather than from its builder code, which for
  some datasets (COCO) imports TensorFlow. Datasets stored as TFRecord (the default of
  ``tfds build``) need TensorFlow and are read with ``tfds.load`` when it is installed.

  Args:
    name: Dataset name with its config, e.g. ``"voc/2007"``.
    version: Prepared version, e.g. ``"5.0.0"``.
    split: Split name (TFDS split syntax, e.g. ``"validation[:100]"``).
    data_dir: TFDS data folder; ``None``: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    download: Let TFDS download and prepare the dataset if it is missing.

  Returns:
    A random-access sequence (``array_record``) or an iterable (TFRecord, via TensorFlow) of
    NumPy feature dicts.

  Raises:
    FileNotFoundError: The dataset is not prepared in ``data_dir`` (the message names the
      folder expected) and ``download`` is False.
    ImportError: Reading it needs TensorFlow, which is not installed.
  """
  import importlib.util

  import tensorflow_datasets as tfds

  full = f"{name}:{version}"
  try:
    return tfds.data_source(full, split=split, data_dir=data_dir, download=download)
  except (NotImplementedError, ImportError) as e:
    if isinstance(e, ImportError) and "tensorflow" not in str(e):
      raise
    error = e
  root = os.fspath(data_dir) if data_dir is not None else os.environ.get(
      "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
  prepared = os.path.join(root, *name.split("/"), version)
  is_prepared = os.path.isfile(os.path.join(prepared, "dataset_info.json"))
  if not is_prepared and not download:
    raise FileNotFoundError(
        f"TFDS dataset {full} is not prepared: expected {prepared}/dataset_info.json. Prepare "
        f"it with `tfds build {name} --data_dir {root} --file_format array_record` (readable "
        f"without TensorFlow) or pass download=True") from error
  if importlib.util.find_spec("tensorflow") is None:
    what = (f"read {full} at {prepared}: it is stored in a format that only TensorFlow reads "
            f"(TFRecord); without TensorFlow, prepare it with --file_format array_record"
            if is_prepared else f"download and prepare {full}")
    raise ImportError(f"install tensorflow to read TFDS datasets (needed to {what}); "
                      f"TFDS said: {error}") from error
  return tfds.as_numpy(tfds.load(full, split=split, data_dir=data_dir, download=download))


def tfds_text(value) -> str:
  """A TFDS ``Text`` feature (bytes from files, str from mocks) as str."""
  value = value.item() if isinstance(value, np.ndarray) else value
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def tfds_objects(objects: dict, keys: Sequence[str], where: str) -> dict[str, np.ndarray]:
  """The per-object arrays of a TFDS ``Sequence`` feature, checked for equal lengths.

  Args:
    objects: The feature dict (lists or arrays, as TFDS returns them).
    keys: Entries to return.
    where: The example, for error messages.

  Returns:
    ``{key: np.ndarray[k, ...]}``; ``"bbox"`` is float32[k, 4].

  Raises:
    ValueError: A missing entry or entries of different lengths.
  """
  out = {}
  for key in keys:
    if key not in objects:
      raise ValueError(f"{where}: objects have no {key!r} (have {sorted(objects)})")
    value = np.asarray(objects[key])
    if key == "bbox":
      value = value.astype(np.float32).reshape(-1, 4)
    out[key] = value.reshape(-1, *value.shape[1:]) if value.ndim else value.reshape(1)
  lengths = {key: len(v) for key, v in out.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"{where}: per-object entries have different lengths {lengths}")
  return out


def wrap_tfds(source: Sequence[dict] | Iterable[dict], convert: Callable[[dict], dict],
              name: str) -> Examples:
  """:class:`Examples` over a TFDS source (from :func:`tfds_source`), converted lazily.

  Args:
    source: A random-access data source (indexable) or an iterable of feature dicts.
    convert: ``feature dict -> example dict``.
    name: For log messages.

  Returns:
    :class:`Examples` (``errors="raise"``; indexable when ``source`` is).
  """
  if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
    return Examples(range(len(source)), lambda i: convert(source[i]), name=name)
  return Examples(source, convert, name=name)


def tfds_image_and_objects(features: dict, dataset: str, fields: tuple[str, ...]
                           ) -> tuple[str, str, np.ndarray, dict[str, np.ndarray]]:
  """The common part of a TFDS detection example: ``(filename, where, image, objects)``.

  ``where`` names the example for error messages; the image must be uint8[H, W, 3].
  """
  filename = tfds_text(features.get("image/filename", ""))
  where = f"TFDS {dataset} example {filename!r}"
  image = np.asarray(features["image"])
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"{where}: image must be uint8[H, W, 3], got {image.dtype}"
                     f"{list(image.shape)}")
  return filename, where, image, tfds_objects(features["objects"], fields, where)


_MAX_LISTED = 5


def drop_missing(ids: list, missing: list[tuple[Any, str]], errors: str, what: str
                 ) -> tuple[list, list[tuple[Any, str]]]:
  """Handles samples whose files are missing: raise (naming up to 5 files) or drop them.

  Args:
    ids: Sample ids.
    missing: ``(id, path)`` of every missing file.
    errors: ``"raise"`` or ``"skip"``.
    what: Dataset description for the message (e.g. ``"VOC2007 val"``).

  Returns:
    ``(ids without the missing samples, [(id, reason)] of the dropped ones)``.
  """
  if not missing:
    return ids, []
  if errors == "raise":
    listed = ", ".join(p for _, p in missing[:_MAX_LISTED])
    raise FileNotFoundError(f"{what}: {len(missing)} file(s) missing: {listed}"
                            + (", ..." if len(missing) > _MAX_LISTED else ""))
  bad = {i for i, _ in missing}
  return [i for i in ids if i not in bad], [(i, f"file not found: {p}") for i, p in missing]
