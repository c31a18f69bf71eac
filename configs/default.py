"""Main job: RISE on the synthetic shapes benchmark with a TinyCNN trained on it.

``get_config()`` is the full run (a few minutes on a laptop CPU);
``get_config("quick")`` (``--config=configs/default.py:quick``) shrinks everything for a
smoke test that finishes in well under a minute.
"""

from __future__ import annotations

import ml_collections

from configs import common

_VARIANTS = ("quick",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the main job's config.

  Args:
    arg: ``None`` for the full run, or ``"quick"`` for a tiny, fast run.

  Returns:
    The config.

  Raises:
    ValueError: For an unknown variant.
  """
  variants = common.variants(arg, _VARIANTS)

  config = ml_collections.ConfigDict()
  config.workdir = "./runs/default"
  config.seed = 0
  config.progress = True  # tqdm progress bars

  config.data = ml_collections.ConfigDict()
  config.data.image_size = 64
  config.data.num_classes = 6
  config.data.num_train = 2000
  config.data.num_test = 16  # test images explained with RISE

  config.model = ml_collections.ConfigDict()
  config.model.name = "TinyCNN"
  config.model.features = (16, 32, 64)

  config.train = ml_collections.ConfigDict()
  config.train.steps = 1500
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3

  config.rise = ml_collections.ConfigDict()
  config.rise.num_masks = 2000
  config.rise.grid_size = 7
  config.rise.p1 = 0.5
  config.rise.batch_size = 100
  config.rise.substrate = "zeros"  # the mean colour in normalised space
  config.rise.classes = "true"  # figures and scores for: "true" labels or "all" classes

  if "quick" in variants:
    config.workdir = "./runs/quick"
    config.progress = False
    config.data.image_size = 32
    config.data.num_train = 200
    config.data.num_test = 2
    config.model.features = (8, 16)
    config.train.steps = 50
    config.train.batch_size = 32
    config.rise.num_masks = 200
    config.rise.batch_size = 50
  return config
