"""The test data of an experiment config: synthetic scenes, VOC, COCO or ImageNet.

Turns a config's ``data`` section into arrays or a stream of batches for the runners; the
loaders themselves (TFDS, VOCdevkit, COCO JSON, image folders) are :mod:`rise_jax.data`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from rise_jax.data import coco, imagenet, loaders, synthetic, voc
from rise_jax.data.preprocess import box_masks, preprocess_example


def _raw_examples(config) -> tuple[Any, list[str] | None]:
  """The real dataset's raw examples (lazy) and class names."""
  d = config.data
  data_dir = d.get("data_dir") or None
  if d.name == "voc":
    if d.get("voc_root"):
      ex = voc.load_segmentation(d.voc_root, d.get("test_split") or "test", annotations=True)
    else:
      ex = voc.tfds_examples(d.get("tfds_split") or "test", data_dir)
      if d.pointing_gt == "masks" and "pointing" in config.eval.metrics:
        raise ValueError("data.pointing_gt='masks' needs VOC segmentation masks: set "
                         "data.voc_root (VOCdevkit); TFDS voc/2007 only has boxes "
                         "(data.pointing_gt='boxes')")
    return ex, list(voc.CLASS_NAMES)
  if d.name == "coco":
    if d.get("coco_annotations") or d.get("coco_images"):
      if not (d.get("coco_annotations") and d.get("coco_images")):
        raise ValueError("data.coco_annotations (instances JSON, e.g. instances_val2014.json) "
                         "and data.coco_images (its image folder) go together")
      ex = coco.load_segmentation(d.coco_annotations, d.coco_images)
    else:
      ex = coco.tfds_examples(d.get("tfds_split") or "validation", data_dir)
      if d.pointing_gt == "masks" and "pointing" in config.eval.metrics:
        raise ValueError("data.pointing_gt='masks' needs COCO instance masks: set "
                         "data.coco_annotations and data.coco_images; TFDS coco/2014 only has "
                         "boxes (data.pointing_gt='boxes')")
    return ex, list(coco.CLASS_NAMES)
  if d.get("image_dir") or d.get("label_file"):
    if not (d.get("image_dir") and d.get("label_file")):
      raise ValueError("data.image_dir and data.label_file (one 'filename label' line per "
                       "image) go together")
    ex = imagenet.load_folder(d.image_dir, d.label_file, num_classes=d.num_classes)
  else:
    ex = imagenet.tfds_examples(d.get("tfds_split") or "validation", data_dir)
  return ex, imagenet.class_names()


def _prepare(ex: dict, config, need_gt: bool) -> dict:
  """One raw example -> ``{"image", "label", "gt"?}`` at ``data.image_size``."""
  d = config.data
  keys = {"image", "label"}
  if need_gt:
    keys |= {"segmentation"} if d.pointing_gt == "masks" else {"boxes", "box_label"}
  missing = keys - set(ex)
  if missing:
    raise ValueError(f"{d.name} example {ex.get('id', '?')!r} lacks {sorted(missing)} "
                     f"(data.pointing_gt={d.pointing_gt!r})")
  label = ex["label"]
  scalar = np.ndim(label) == 0
  out = preprocess_example(ex["image"], size=d.image_size, label=label,
                           num_classes=d.num_classes if scalar else None,
                           segmentation=ex.get("segmentation") if need_gt else None,
                           boxes=ex.get("boxes") if need_gt else None)
  if out["label"].shape != (d.num_classes,):
    raise ValueError(f"data.num_classes is {d.num_classes} but {d.name} labels have "
                     f"{out['label'].shape[0]} classes")
  res = {"image": out["image"], "label": out["label"]}
  if need_gt:
    res["gt"] = (out["segmentation"] if d.pointing_gt == "masks" else
                 box_masks(out["boxes"], ex["box_label"], d.num_classes, d.image_size))
  return res


def iter_test_batches(config) -> tuple[Iterator[dict], int | None, list[str] | None]:
  """Streams the test set in batches of ``eval.batch_images``.

  Returns:
    ``(batches, num_images or None, class_names)``; each batch is ``{"image": float32[B, S, S,
    3], "label": float32[B, C] multi-hot}`` plus ``"gt": bool[B, S, S, C]`` (the pointing
    ground truth) when the pointing game is scored.
  """
  d, ev = config.data, config.eval
  need_gt = "pointing" in ev.metrics
  bsz = int(ev.batch_images)
  max_test = d.get("max_test")
  if d.name == "synthetic":
    n = d.num_test if max_test is None else min(d.num_test, max_test)
    test = synthetic.make("test", n, seed=config.seed, image_size=d.image_size,
                          num_classes=d.num_classes)
    if need_gt and d.pointing_gt == "boxes":
      gt = np.stack([box_masks(b, np.arange(d.num_classes), d.num_classes, d.image_size)
                     & (lab > 0)[None, None] for b, lab in zip(test["boxes"], test["label"])])
    else:
      gt = test["segmentation"]

    def gen():
      for i in range(0, n, bsz):
        batch = {"image": test["image"][i:i + bsz], "label": test["label"][i:i + bsz]}
        if need_gt:
          batch["gt"] = gt[i:i + bsz]
        yield batch

    return gen(), n, list(synthetic.CLASS_NAMES[:d.num_classes])
  examples, names = _raw_examples(config)
  if names is not None and len(names) != d.num_classes:
    raise ValueError(f"data.num_classes must be {len(names)} for {d.name}, got {d.num_classes}")
  try:
    total = len(examples)
  except TypeError:
    total = None
  if max_test is not None:
    total = max_test if total is None else min(total, max_test)

  def gen():
    source = iter(examples) if max_test is None else itertools.islice(examples, max_test)
    while True:
      chunk = [_prepare(ex, config, need_gt) for ex in itertools.islice(source, bsz)]
      if not chunk:
        return
      yield {k: np.stack([c[k] for c in chunk]) for k in chunk[0]}

  return gen(), total, names


def load_test(config) -> tuple[dict, list[str] | None]:
  """The test split ``{"image", "label", "segmentation"}`` of the config and its class names.

  Synthetic: :func:`rise_jax.data.synthetic.make` (``data.num_test`` images). COCO: the
  instances file ``data.coco_annotations`` with the image folder ``data.coco_images`` (the
  paper: ``instances_val2014.json`` + ``val2014/``; needs ``pycocotools``). VOC: the
  segmentation list ``data.test_split`` of the VOCdevkit ``data.voc_root``. Real images are
  resized to ``data.image_size`` with ImageNet normalisation; ``data.max_test`` caps them.
  """
  d = config.data
  if d.name == "synthetic":
    test = synthetic.make("test", d.num_test, seed=config.seed, image_size=d.image_size,
                          num_classes=d.num_classes)
    return test, list(synthetic.CLASS_NAMES[:d.num_classes])
  if d.name == "coco":
    if not d.get("coco_annotations") or not d.get("coco_images"):
      raise ValueError("data.name='coco' needs data.coco_annotations (an instances JSON, e.g. "
                       "annotations/instances_val2014.json) and data.coco_images (its image "
                       "folder, e.g. val2014/); pycocotools must be installed")
    examples, names = coco.load_segmentation(d.coco_annotations, d.coco_images), coco.CLASS_NAMES
  elif d.name == "voc":
    if not d.get("voc_root"):
      raise ValueError("data.name='voc' needs data.voc_root (the VOCdevkit folder)")
    examples = voc.load_segmentation(d.voc_root, d.get("test_split") or "test",
                                     annotations=False)
    names = voc.CLASS_NAMES
  else:
    raise ValueError(f"data.name must be 'synthetic', 'coco' or 'voc', got {d.name!r}")
  if len(names) != d.num_classes:
    raise ValueError(f"data.num_classes must be {len(names)} for {d.name}, got {d.num_classes}")
  test = loaders.to_arrays(examples, size=d.image_size, num_classes=d.num_classes,
                           limit=d.get("max_test"), segmentation=True, desc=f"{d.name} test",
                           progress=config.progress)
  return test, list(names)


def synthetic_splits(config) -> tuple[dict, dict, dict]:
  d = config.data
  kw = dict(seed=config.seed, image_size=d.image_size, num_classes=d.num_classes)
  return (synthetic.make("train", d.num_train, **kw), synthetic.make("val", d.num_val, **kw),
          synthetic.make("test", d.num_test, **kw))


def load_splits(config) -> tuple[dict, dict, dict]:
  """Train/val/test arrays ``{"image", "label", "segmentation"}`` of the config's dataset."""
  if config.data.name == "synthetic":
    return synthetic_splits(config)
  return real_splits(config.data, progress=config.get("progress", True))


def real_splits(data, progress: bool = True) -> tuple[dict, dict, dict]:
  """Train/val/test arrays of a config's ``data`` section (``name`` ``"voc"`` or ``"coco"``).

  Args:
    data: ``ml_collections`` section with ``name``, ``image_size``, ``num_classes``,
      ``data_dir`` (TFDS folder), ``max_train``, ``max_val``, ``max_test`` and, for the test
      split, ``voc_root`` + ``test_split`` (VOC segmentation list, default ``"test"``) or
      ``coco_annotations`` + ``coco_images`` (COCO).
    progress: Show progress bars.

  Returns:
    ``(train, val, test)`` as :func:`rise_jax.data.loaders.to_arrays` (test with
    segmentation).

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
  return (loaders.to_arrays(tr, limit=data.get("max_train"), desc=f"{data.name} train", **kw),
          loaders.to_arrays(va, limit=data.get("max_val"), desc=f"{data.name} val", **kw),
          loaders.to_arrays(te, limit=data.get("max_test"), segmentation=True,
                    desc=f"{data.name} test", **kw))
