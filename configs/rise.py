"""RISE paper Tables 1 and 2 (Petsiuk et al. 2018): RISE vs Grad-CAM vs occlusion.

Run with ``python -m experiments.rise_tables [--config=configs/rise.py[:VARIANT]]
[--config.rise.num_masks=2000 ...]``; every field can be overridden on the command line.

``get_config()``: the synthetic shapes benchmark (64 px, 6 classes) with the classifier of
``configs/classifier.py`` (trained or reused in ``explanandum.classifier_dir``, default
``workdir/classifier``), 12 test images (every true class explained: about 20 pairs), RISE with
N = 1000 masks, s = 7, p1 = 0.5, occlusion with the paper's 64 / 8 window scaled to 18 / 2,
deletion/insertion one row (64 px) per step, pointing tolerance 15 * 64 / 224 = 4.3 px. Once
the classifier exists: 2 min 54 s wall, 91 s of CPU time, measured on a 2-core CPU shared with
other jobs (load average 5-7), of which about 35 s load the classifier (data generation and
eager initialisation in ``rise_jax.train.classifier``); a quiet 2-core CPU needs about 2
minutes. Raise ``--config.data.num_test`` for tighter numbers.

``get_config("quick")``: a smoke run (the 32-px quick classifier, 3 test images, 50 masks).

Paper settings (224 px, the paper's N per network, s = 7, p1 = 0.5):

* ``"imagenet-resnet50"`` (N = 8000), ``"imagenet-vgg16"`` (N = 4000): Table 1, deletion and
  insertion on the top-1 predicted class of ImageNet val, softmax probabilities. Registry
  weights from ``explanandum.weights`` (empty: the registry's cache folder, where
  ``experiments/convert_weights.py`` puts the converted torchvision ImageNet weights). Data:
  a prepared TFDS ``imagenet2012`` in ``data.data_dir``, or ``data.image_dir`` +
  ``data.label_file`` (``filename label`` lines, 0-based sorted-synset labels).
* ``"voc07-vgg16"``, ``"voc07-resnet50"``: Table 2 (pointing game, plus deletion/insertion on
  every true class) on VOC 2007 test: TFDS ``voc/2007`` in ``data.data_dir`` with box ground
  truth (TorchRay's protocol), or a VOCdevkit segmentation list (``data.voc_root``,
  ``data.test_split``; set ``data.pointing_gt="masks"`` to point at masks). Explanandum:
  multi-label fine-tuned weights in ``explanandum.weights`` (20-class head, sigmoid).
* ``"coco14-vgg16"``, ``"coco14-resnet50"``: the same on COCO 2014 val with instance masks
  (``data.coco_annotations`` = ``instances_val2014.json``, ``data.coco_images`` =
  ``val2014/``; needs pycocotools), or TFDS ``coco/2014`` with ``data.pointing_gt="boxes"``;
  80-class multi-label weights.

Cap the images with ``--config.data.max_test``. The paper variants' N makes RISE the dominant
cost (N forward passes per image).

``sweep()`` (for ``python -m experiments.sweep --config=configs/rise.py``) varies RISE's
``num_masks`` x ``grid_size`` (x ``p1`` with ``sweep("full")``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import ml_collections

from configs import classifier, common

PAPER_SETTINGS = ("imagenet-resnet50", "imagenet-vgg16", "voc07-vgg16", "voc07-resnet50",
                  "coco14-vgg16", "coco14-resnet50")
_VARIANTS = ("quick",) + PAPER_SETTINGS
_NUM_MASKS = {"resnet50": 8000, "vgg16": 4000}  # the paper's N per network


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = common.variants(arg, _VARIANTS)
  paper = [v for v in variants if v in PAPER_SETTINGS]
  if len(paper) > 1 or (paper and "quick" in variants):
    raise ValueError(f"choose at most one of the variants {_VARIANTS}, got {arg!r}")
  config = ml_collections.ConfigDict()
  config.experiment = "rise"  # experiments/sweep.py: which runner this config is for
  config.workdir = "./runs/rise"
  config.seed = 0
  config.progress = True
  config.overwrite = False  # start over in a run folder of another config
  clf = classifier.get_config("quick" if "quick" in variants else None)
  config.data = ml_collections.ConfigDict(dict(
      name="synthetic",  # synthetic | voc | coco | imagenet
      image_size=clf.data.image_size, num_classes=clf.data.num_classes, num_test=12,
      pointing_gt="masks",  # masks | boxes: the pointing game's ground truth
      data_dir="", tfds_split="",  # TFDS folder / split ("": test for VOC, validation else)
      voc_root="", test_split="test",  # VOCdevkit and its segmentation list
      coco_annotations="", coco_images="",  # COCO instances JSON and its image folder
      image_dir="", label_file=""))  # ImageNet folder + "filename label" file
  config.data.max_test = ml_collections.FieldReference(None, field_type=int)
  config.explanandum = ml_collections.ConfigDict(dict(
      source="train",  # train (the synthetic classifier) | registry
      classifier=clf,
      classifier_dir="",  # "": workdir/classifier; set it to share one trained classifier
      arch="", weights="",
      output="sigmoid",  # what the causal metrics score (multi-label: BCE-trained)
      explain_output="sigmoid"))  # what RISE and occlusion explain
  config.rise = ml_collections.ConfigDict(dict(
      num_masks=1000, grid_size=7, p1=0.5, batch_size=100, seed=0, substrate="zeros",
      normalize="expected"))
  config.gradcam = ml_collections.ConfigDict(dict(layer="last_conv"))
  config.occlusion = ml_collections.ConfigDict(dict(
      window=64, stride=8,  # the paper's sliding window at eval.paper_size (scaled)
      substrate="zeros", batch_size=64))
  config.eval = ml_collections.ConfigDict(dict(
      methods=("RISE", "Grad-CAM", "Occlusion"),
      metrics=("deletion", "insertion", "pointing"),
      classes="true",  # true: every true class | top1: the top-1 predicted class
      paper_size=224,  # the size the window / tolerance / step settings are given for
      tolerance=15.0,  # pointing radius at paper_size (TorchRay)
      deletion_substrate="zeros", insertion_substrate="blur",
      batch_size=65,  # perturbed images per black-box call of deletion/insertion
      chunk=16,  # pairs per deletion/insertion call
      batch_images=8,  # test images loaded at a time
      figure_images=4,  # images with overlay figures
      save_maps=512))  # pairs whose maps go to maps.npz
  # Pixels per deletion/insertion step; None: one row (the paper's 224 at 224 px).
  config.eval.step = ml_collections.FieldReference(None, field_type=int)
  if "quick" in variants:
    config.workdir = "./runs/rise_quick"
    config.progress = False
    config.data.num_test = 3
    config.rise.update(num_masks=50, batch_size=25)
    config.occlusion.stride = 16  # 32 px: window 9, stride 2 (the paper's 8 would give 1)
    config.eval.update(chunk=4, figure_images=1, batch_images=2)
  if paper:
    setting = paper[0]
    dataset, arch = setting.split("-")
    name = {"imagenet": "imagenet", "voc07": "voc", "coco14": "coco"}[dataset]
    config.workdir = f"./runs/rise_{dataset}_{arch}"
    config.data.update(name=name, image_size=224,
                       num_classes={"imagenet": 1000, "voc": 20, "coco": 80}[name],
                       pointing_gt="boxes" if name == "voc" else "masks")
    config.explanandum.update(source="registry", arch=arch)
    config.rise.num_masks = _NUM_MASKS[arch]
    config.eval.update(batch_size=75, chunk=8, save_maps=32)
    if name == "imagenet":
      config.explanandum.update(output="softmax", explain_output="softmax")
      config.eval.update(classes="top1", metrics=("deletion", "insertion"))
  return config


def sweep(arg: str | None = None) -> Iterator[dict]:
  """Override dicts (dotted key -> value) of the RISE hyper-parameter sweep.

  Default: ``rise.num_masks`` in (500, 1000, 2000) x ``rise.grid_size`` in (4, 7, 10) at
  p1 = 0.5: 9 points of RISE alone (``eval.methods=("RISE",)``; Grad-CAM and occlusion do not
  depend on these settings) on 8 synthetic test images (17 pairs), with the classifier shared
  by all points: 9 min 40 s wall (5 min CPU) measured on a 2-core CPU shared with other jobs.
  ``sweep("full")`` adds ``rise.p1`` in (0.25, 0.5) (18 points) with all three methods on the
  config's own test set (about an hour).
  """
  if arg not in (None, "", "full"):
    raise ValueError(f"sweep argument must be None or 'full', got {arg!r}")
  full = arg == "full"
  p1s = (0.25, 0.5) if full else (0.5,)
  for n, s, p1 in itertools.product((500, 1000, 2000), (4, 7, 10), p1s):
    point = {"rise.num_masks": n, "rise.grid_size": s}
    if full:
      point["rise.p1"] = p1
    else:
      point.update({"eval.methods": ("RISE",), "data.num_test": 8})
    yield point
