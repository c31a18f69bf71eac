"""Arrays of real datasets for the experiments (VOC 2007, COCO 2014), from the raw loaders.

:func:`to_arrays` turns any :class:`~rise_jax.data.preprocess.Examples` into the in-memory
arrays the experiments use (``{"image", "label", "segmentation"}``), held in memory as
float32 (VOC train at 224 px: about 3 GB; ``limit`` caps them). Which splits a config uses is
decided in ``experiments/tasks/datasets.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import tqdm

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
