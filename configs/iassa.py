"""IASSA Table 1 (Vasu & Long, WACV 2020; issue 8): RISE vs IASSA at k = 5..25, both mixes.

``get_config()``: the synthetic shapes benchmark (64 px) with the classifier of
``configs/classifier.py`` (trained or reused in ``workdir/classifier``, or in
``explanandum.classifier_dir`` when set, so that several experiments share one classifier), the
paper's IASSA settings scaled from 224 px to 64 px (``s = 64 / 224``: W0 13, S0 2, steps 0.43 /
0.057), and only 2 test images (5 (image, class) pairs) so that the whole evaluation takes about
5 minutes on a quiet 2-core CPU once the classifier exists: IASSA sends 8000-13000 windows per
pair and mix through the black box at this scaling (about a minute per pair for both mixes on
such a CPU). That is a smoke-sized table; for numbers to compare, raise
``--config.data.num_test`` on a GPU (150 images, 299 pairs: about 1.5 minutes on one H200 with
``--config.iassa.batch_size=128 --config.eval.chunk=64``).

``get_config("quick")``: a smoke run (32 px quick classifier, 2 test images, 50 RISE masks,
the 64-px window settings on the 32-px images).

``get_config("coco")``: the paper's setting: ResNet50 (registry ``resnet50``, 80-class
multi-label fine-tuned weights in ``explanandum.weights``), 224 px, COCO 2014 val with instance
masks (``data.coco_annotations`` = ``instances_val2014.json``, ``data.coco_images`` =
``val2014/``; needs ``pycocotools``), RISE with 8000 masks, IASSA unscaled (45 / 8 / 1.5 / 0.2),
IASSA batches of 256 windows. Cap the images with ``--config.data.max_test``.
"""

from __future__ import annotations

import ml_collections

from configs import classifier, common

_VARIANTS = ("quick", "coco")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = common.variants(arg, _VARIANTS)
  if "quick" in variants and "coco" in variants:
    raise ValueError("choose one of the variants 'quick' and 'coco', got both")
  config = ml_collections.ConfigDict()
  config.workdir = "./runs/iassa"
  config.seed = 0
  config.progress = True
  config.overwrite = False  # start over in a run folder of another config
  clf = classifier.get_config("quick" if "quick" in variants else None)
  config.data = ml_collections.ConfigDict(dict(
      name="synthetic", image_size=clf.data.image_size, num_classes=clf.data.num_classes,
      num_test=2, data_dir="", coco_annotations="", coco_images="", voc_root="",
      test_split="test"))
  config.data.max_test = ml_collections.FieldReference(None, field_type=int)
  # Metrics score the classifier's sigmoid (multi-label, BCE); RISE and IASSA explain its logit
  # (float32 sigmoids saturate to 1 on windowed images, which flattens IASSA's estimate).
  config.explanandum = ml_collections.ConfigDict(dict(
      source="train", classifier=clf, classifier_dir="", arch="", weights="", output="sigmoid",
      explain_output="logits"))
  config.eval = ml_collections.ConfigDict(dict(
      classes="all",  # every present class of an image ("first": its first present class)
      paper_size=224,  # the size the paper's window / tolerance / step settings are for
      tolerance=15.0,  # pointing-game radius at paper_size (scaled to the image)
      threshold=0.3, deletion_substrate="zeros", insertion_substrate="blur",
      batch_size=65, chunk=16, figure_pairs=3))
  # Pixels per deletion/insertion step; None: one row (the paper's 224 at 224 px).
  config.eval.step = ml_collections.FieldReference(None, field_type=int)
  config.rise = ml_collections.ConfigDict(dict(
      num_masks=1000, grid_size=7, p1=0.5, batch_size=100, seed=0))
  config.iassa = ml_collections.ConfigDict(dict(
      window=45, stride=8, window_step=1.5, stride_step=0.2,  # the paper's, at paper_size
      beta=0.5, threshold=0.3, max_iters=25, record=(5, 10, 15, 20, 25),
      mixes=("paper", "code"), regions=("paper", "code"), attention_scale="sqrt",
      stages=("stage1", "stage2", "stage3", "stage4"), batch_size=32, substrate="zeros"))
  # Scale of the window settings; None: image_size / paper_size.
  config.iassa.scale = ml_collections.FieldReference(None, field_type=float)
  if "quick" in variants:
    config.workdir = "./runs/iassa_quick"
    config.progress = False
    config.data.num_test = 2
    config.eval.update(chunk=8, figure_pairs=1)
    config.rise.update(num_masks=50, batch_size=25)
    config.iassa.scale = 64 / 224  # the 64-px windows on 32-px images: coarser, faster
    config.iassa.regions = ("paper",)
  if "coco" in variants:
    config.workdir = "./runs/iassa_coco"
    config.data.update(name="coco", image_size=224, num_classes=80)
    config.explanandum.update(source="registry", arch="resnet50")
    config.eval.update(batch_size=64, chunk=8)
    config.rise.update(num_masks=8000, batch_size=100)
    config.iassa.batch_size = 256
  return config
