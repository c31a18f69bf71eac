"""NN-Explainer, the paper's four settings (Stalder et al.; SPEC §6).

``get_config("voc-vgg16")`` (or ``voc-resnet50``, ``coco-vgg16``, ``coco-resnet50``): a
DeepLabV3-ResNet50 Explainer (output stride 8) trained with Adam, batch 16, early stopping,
and the authors' coefficients for the setting, against a frozen registry classifier whose
multi-label fine-tuned weights are given by ``explanandum.weights`` (an Orbax folder of
:func:`rise_jax.train.checkpoint.save_variables`). Data: TFDS ``voc/2007`` / ``coco/2014`` in
``data.data_dir`` for train/val; the test split with segmentation from ``data.voc_root``
(VOCdevkit, segmentation ``test`` list) or ``data.coco_annotations`` + ``data.coco_images``.

Add ``,quick`` (e.g. ``voc-vgg16,quick``) to cap every split for a smoke run.
"""

from __future__ import annotations

import ml_collections

from configs import common

SETTINGS = ("voc-vgg16", "voc-resnet50", "coco-vgg16", "coco-resnet50")
_ARCH = {"vgg16": "vgg16", "resnet50": "resnet50"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = common.variants(arg, SETTINGS + ("quick",))
  settings = [v for v in variants if v in SETTINGS]
  if len(settings) != 1:
    raise ValueError(f"choose exactly one setting of {SETTINGS}, e.g. "
                     f"--config=configs/explainer_paper.py:voc-vgg16, got {arg!r}")
  setting = settings[0]
  dataset, arch = setting.split("-")
  config = ml_collections.ConfigDict()
  config.workdir = f"./runs/explainer_{dataset}_{arch}"
  config.seed = 0
  config.progress = True
  config.overwrite = False  # start over in a run folder of another config
  config.data = ml_collections.ConfigDict(dict(
      name=dataset, image_size=224, num_classes=20 if dataset == "voc" else 80, data_dir="",
      voc_root="", test_split="test", coco_annotations="", coco_images=""))
  config.data.max_train = ml_collections.FieldReference(None, field_type=int)
  config.data.max_val = ml_collections.FieldReference(None, field_type=int)
  config.data.max_test = ml_collections.FieldReference(None, field_type=int)
  config.explanandum = ml_collections.ConfigDict(dict(
      source="registry", arch=_ARCH[arch], weights=""))
  config.explainer = ml_collections.ConfigDict(dict(
      preset=setting, coefficients=ml_collections.ConfigDict(dict(
          le=None, ltv=None, l_bounds=None, l_area_m=None, l_area_n=None, a=None, b=None)),
      backbone="resnet50", width=64, output_stride=8, epochs=100, batch_size=16,
      learning_rate=None, patience=5))
  config.eval = ml_collections.ConfigDict(dict(
      methods=("Explainer", "RISE", "Grad-CAM"), batch_size=32, gradcam_layer="last_conv",
      figure_images=4,
      rise=ml_collections.ConfigDict(dict(num_masks=4000, grid_size=7, p1=0.5,
                                          batch_size=100, seed=0))))
  if "quick" in variants:
    config.workdir += "_quick"
    config.progress = False
    config.data.update(image_size=64, max_train=8, max_val=4, max_test=4)
    config.explainer.update(epochs=1, batch_size=2, width=8)
    config.eval.rise.update(num_masks=20, batch_size=10)
  return config
