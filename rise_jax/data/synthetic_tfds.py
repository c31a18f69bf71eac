"""The synthetic shapes benchmark as a TFDS builder (``array_record``, no TensorFlow needed).

The same pipeline code can then read synthetic and real data through ``tfds.data_source``::

  ds = synthetic_tfds.prepare("/tmp/tfds", image_size=64, num_train=2000)
  ex = ds["train"][0]  # ex["image"] == synthetic.make("train", ...)["image"][ex["index"]]

Examples are exactly those of :func:`rise_jax.data.synthetic.make` for the same arguments;
TFDS stores them in its own (hashed) order, so each carries its ``"index"`` in ``make``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from rise_jax.data import synthetic


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  """Arguments of :func:`synthetic.make` that define one prepared dataset."""

  image_size: int = 64
  num_classes: int = 6
  seed: int = 0
  spurious: bool = False
  num_train: int = 2000
  num_val: int = 200
  num_test: int = 200


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Multi-label shapes with exact per-class masks, boxes and difficult flags."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [ShapesConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    c: ShapesConfig = self.builder_config
    s, k = c.image_size, c.num_classes
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.float32),
        "label": tfds.features.Tensor(shape=(k,), dtype=np.float32),
        "segmentation": tfds.features.Tensor(shape=(s, s, k), dtype=np.bool_),
        "boxes": tfds.features.Tensor(shape=(k, 4), dtype=np.float32),
        "difficult": tfds.features.Tensor(shape=(k,), dtype=np.bool_),
        "cue": tfds.features.Tensor(shape=(), dtype=np.bool_),
        "index": tfds.features.Tensor(shape=(), dtype=np.int64),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    c: ShapesConfig = self.builder_config
    return {split: self._generate_examples(split, n)
            for split, n in (("train", c.num_train), ("val", c.num_val), ("test", c.num_test))}

  def _generate_examples(self, split: str, num_examples: int):
    c: ShapesConfig = self.builder_config
    data = synthetic.make(split, num_examples, seed=c.seed, image_size=c.image_size,
                          num_classes=c.num_classes, spurious=c.spurious)
    for i in range(num_examples):
      example = {k: data[k][i] for k in ("image", "label", "segmentation", "boxes",
                                         "difficult", "cue")}
      yield i, {**example, "index": np.int64(i)}


def prepare(data_dir: str, **config) -> dict:
  """Prepares the dataset under ``data_dir`` (once) and returns its data sources by split.

  Args:
    data_dir: TFDS data directory.
    **config: Fields of :class:`ShapesConfig` (image_size, num_classes, seed, spurious,
      num_train, num_val, num_test).

  Returns:
    ``{"train", "val", "test"}`` random-access data sources of example dicts.
  """
  unknown = set(config) - {f.name for f in dataclasses.fields(ShapesConfig)} - {
      "name", "version", "release_notes", "supported_versions", "description", "tags"}
  if unknown:
    raise ValueError(f"unknown synthetic dataset options {sorted(unknown)}")
  name = "s{image_size}_c{num_classes}_seed{seed}_{sp}_{num_train}_{num_val}_{num_test}".format(
      sp="spurious" if config.get("spurious") else "plain",
      **{f.name: config.get(f.name, f.default) for f in dataclasses.fields(ShapesConfig)
         if f.name in ("image_size", "num_classes", "seed", "num_train", "num_val", "num_test")})
  builder = SyntheticShapes(config=ShapesConfig(name=name, **config), data_dir=data_dir,
                            file_format="array_record")
  builder.download_and_prepare()
  return builder.as_data_source()
