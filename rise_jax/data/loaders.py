"""Arrays of real datasets for the experiments (VOC 2007, COCO 2014), from the raw loaders.

:func:`to_arrays` turns any :class:`~rise_jax.data.preprocess.Examples` into the in-memory
arrays the experiments use (``{"image", "label", "segmentation"}``); :func:`explainer_splits`
assembles the NN-Explainer's train/val/test splits of a config's ``data`` section:

* train and val: TFDS ``voc/2007`` (``train`` / ``validation``) or ``coco/2014`` (``train`` /
  ``validation``), labels only;
* test with segmentation ground truth: the VOC-2007 segmentation ``test`` list of a local
  VOCdevkit (the paper's 210 images) or a COCO instances file with its image folder.

The splits are held in memory as float32 (VOC train at 224 px: about 3 GB); ``max_train``,
``max_val`` and ``max_test`` cap them (e.g. for COCO's 82k training images).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import tqdm

from rise_jax.data import coco, voc
from rise_jax.data.preprocess import preprocess_example


def to_arrays(examples: Iterable[dict], *, size: int, num_classes: int, limit: int | None = None,
              segmentation: bool = False, desc: str = "loading", progress: bool = True) -> dict:
  """Preprocesses examples (resize to ``size``, ImageNet normalisation) into stacked arrays.

  Args:
    examples: Raw examples with ``"image"`` uint8[H, W, 3], ``"label"`` float[C] multi-hot and,
      with ``segmentation``, ``"segmentation"`` bool[H, W, C].
    size: Output side ``S``.
    num_classes: ``C``; every label must have this width.
    limit: Keep only the first ``limit`` examples (``None``: all).
    segmentation: Also stack the per-class masks.
    desc: Progress-bar label.
    progress: Show a progress bar.

  Returns:
    ``{"image": float32[N, S, S, 3], "label": float32[N, C]}`` plus ``"segmentation":
    bool[N, S, S, C]`` with ``segmentation``.

  Raises:
    ValueError: No examples, a label of the wrong width, or a missing/mis-shaped segmentation.
  """
  images, labels, segs = [], [], []
  source = examples if limit is None else itertools.islice(examples, limit)
  for ex in tqdm.tqdm(source, desc=desc, disable=not progress, unit="img"):
    keys = {"image", "label"} | ({"segmentation"} if segmentation else set())
    out = preprocess_example(**{k: ex[k] for k in keys if k in ex}, size=size)
    if out.get("label") is None or out["label"].shape != (num_classes,):
      got = None if out.get("label") is None else list(out["label"].shape)
      raise ValueError(f"{desc}: every example needs a multi-hot label of {num_classes} "
                       f"classes, got shape {got}")
    images.append(out["image"])
    labels.append(out["label"])
    if segmentation:
      seg = out.get("segmentation")
      if seg is None or seg.shape != (size, size, num_classes) or seg.dtype != bool:
        raise ValueError(f"{desc}: every test example needs per-class masks bool[H, W, "
                         f"{num_classes}]")
      segs.append(seg)
  if not images:
    raise ValueError(f"{desc}: no examples")
  out = {"image": np.stack(images), "label": np.stack(labels).astype(np.float32)}
  if segmentation:
    out["segmentation"] = np.stack(segs)
  return out


def explainer_splits(data, progress: bool = True) -> tuple[dict, dict, dict]:
  """Train/val/test arrays of a config's ``data`` section (``name`` ``"voc"`` or ``"coco"``).

  Args:
    data: ``ml_collections`` section with ``name``, ``image_size``, ``num_classes``,
      ``data_dir`` (TFDS folder), ``max_train``, ``max_val``, ``max_test`` and, for the test
      split, ``voc_root`` + ``test_split`` (VOC segmentation list, default ``"test"``) or
      ``coco_annotations`` + ``coco_images`` (COCO).
    progress: Show progress bars.

  Returns:
    ``(train, val, test)`` as :func:`to_arrays` (test with segmentation).

  Raises:
    ValueError: An unknown dataset name or a missing test-set path.
    FileNotFoundError: A dataset that is not prepared (the message names the folder).
  """
  kw = dict(size=data.image_size, num_classes=data.num_classes, progress=progress)
  data_dir = data.get("data_dir") or None
  if data.name == "voc":
    tr, va = voc.tfds_examples("train", data_dir), voc.tfds_examples("validation", data_dir)
    if not data.get("voc_root"):
      raise ValueError("data.voc_root must name the VOCdevkit folder (its segmentation test "
                       "list is the test split)")
    te = voc.load_segmentation(data.voc_root, data.get("test_split") or "test",
                                annotations=False)
  elif data.name == "coco":
    tr, va = coco.tfds_examples("train", data_dir), coco.tfds_examples("validation", data_dir)
    if not data.get("coco_annotations") or not data.get("coco_images"):
      raise ValueError("data.coco_annotations and data.coco_images must name the instances "
                       "JSON and the image folder of the test split")
    te = coco.load_segmentation(data.coco_annotations, data.coco_images)
  else:
    raise ValueError(f"data.name must be 'synthetic', 'voc' or 'coco', got {data.name!r}")
  return (to_arrays(tr, limit=data.get("max_train"), desc=f"{data.name} train", **kw),
          to_arrays(va, limit=data.get("max_val"), desc=f"{data.name} val", **kw),
          to_arrays(te, limit=data.get("max_test"), segmentation=True,
                    desc=f"{data.name} test", **kw))
