"""NN-Explainer on the synthetic shapes benchmark (issue 7).

The explanandum is the classifier of ``configs/classifier.py`` (a small ResNet, trained or
reused in ``workdir/classifier``, or in ``explanandum.classifier_dir`` when set); the Explainer
is a small DeepLabV3 (ResNet-18 layout, base width 8, small stem, output stride 16, i.e. mask
logits at stride 4) so that it trains on a 2-core CPU in minutes. The loss coefficients are the
paper's VOC-VGG16 preset with the learning rate raised for the short (40-epoch) schedule; early
stopping after 10 epochs without a better validation loss. On a 2-core CPU (about 70-160 s per
epoch) this run gives the issue-7 tables in docs/results/explainer_synthetic_cpu_40ep_vgg16.md:
the VOC-ResNet50 preset (area weight 0.01 instead of 0.1) grew target masks to a third of the
image by epoch 40 and fell just behind Grad-CAM's Acc/MAE (docs/DECISIONS.md).

``get_config("quick")`` is a smoke run on a few tiny images.
"""

from __future__ import annotations

import ml_collections

from configs import classifier, common

_VARIANTS = ("quick",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = common.variants(arg, _VARIANTS)
  config = ml_collections.ConfigDict()
  config.workdir = "./runs/explainer"
  config.seed = 0
  config.progress = True
  config.overwrite = False  # start over in a run folder of another config
  clf = classifier.get_config("quick" if "quick" in variants else None)
  config.data = ml_collections.ConfigDict(dict(
      name="synthetic", image_size=clf.data.image_size, num_classes=clf.data.num_classes,
      num_train=clf.data.num_train, num_val=clf.data.num_val, num_test=200))
  config.explanandum = ml_collections.ConfigDict(dict(
      source="train", classifier=clf, classifier_dir="", arch="", weights=""))
  config.explainer = ml_collections.ConfigDict(dict(
      preset="voc-vgg16", coefficients=ml_collections.ConfigDict(dict(
          le=None, ltv=None, l_bounds=None, l_area_m=None, l_area_n=None, a=None, b=None)),
      backbone="resnet18", width=8, output_stride=16, stem="small", epochs=40, batch_size=32,
      learning_rate=1e-3, patience=10))
  config.eval = ml_collections.ConfigDict(dict(
      methods=("Explainer", "RISE", "Grad-CAM"), batch_size=64, gradcam_layer="last_conv",
      figure_images=4,
      rise=ml_collections.ConfigDict(dict(num_masks=1000, grid_size=7, p1=0.5,
                                          batch_size=100, seed=0))))
  if "quick" in variants:
    config.workdir = "./runs/explainer_quick"
    config.progress = False
    config.data.update(num_test=8)
    config.explainer.update(epochs=1, batch_size=8)
    config.eval.rise.update(num_masks=50, batch_size=25)
  return config
