"""Explanandum training: multi-label BCE fine-tuning of a classifier (issue 6).

``get_config()`` trains a small Flax ResNet on the synthetic shapes benchmark (a few minutes on
a 2-core CPU); ``get_config("quick")`` shrinks it to a smoke run. Half of the training images
have part of their background masked to 0 (``train.mask_prob``, objects kept): a classifier
trained from scratch on synthetic scenes otherwise misreads any masked image (its softmax on
ground-truth-masked images was ~1e-3 for the true class), which breaks every masking-based
explanation; ImageNet-pretrained explananda have this tolerance already.
"""

from __future__ import annotations

import ml_collections

from configs import common

_VARIANTS = ("quick",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = common.variants(arg, _VARIANTS)
  config = ml_collections.ConfigDict()
  config.workdir = "./runs/classifier"
  config.seed = 0
  config.progress = True
  config.overwrite = False  # start over in a run folder of another config
  config.data = ml_collections.ConfigDict(dict(
      name="synthetic", image_size=64, num_classes=6, num_train=3000, num_val=300,
      num_test=300))
  config.model = ml_collections.ConfigDict(dict(
      name="resnet", stage_sizes=(1, 1, 1, 1), width=16, stem="small"))
  config.train = ml_collections.ConfigDict(dict(
      epochs=8, batch_size=64, learning_rate=3e-3, schedule="cosine", head_only=False,
      mask_prob=0.5))
  if "quick" in variants:
    config.workdir = "./runs/classifier_quick"
    config.progress = False
    config.data.update(image_size=32, num_train=64, num_val=16, num_test=16)
    config.model.width = 8
    config.train.update(epochs=2, batch_size=16)
  return config
