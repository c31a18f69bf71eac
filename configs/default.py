"""Main job (``python -m experiments.main``): every method on the synthetic shapes benchmark.

Each stage's section is the config of its own experiment (``configs/classifier.py``,
``configs/rise.py``, ``configs/explainer.py``, ``configs/iassa.py``, ``configs/caption.py``)
shrunk so that the whole job fits in about 20 minutes on a quiet 2-core CPU; every stage explains
the one classifier of the ``classifier`` section (trained in ``workdir/classifier``). Override
any entry from the command line, e.g. ``--config.rise.rise.num_masks=2000`` or
``--config.stages=classifier,rise``.

``get_config("quick")`` shrinks every stage to a smoke run (about a minute; used by the tests).
"""

from __future__ import annotations

import ml_collections

from configs import caption, classifier, common, explainer, iassa, rise

_VARIANTS = ("quick",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the main job's config.

  Args:
    arg: ``None`` for the full run, or ``"quick"`` for a smoke run.

  Returns:
    The config.

  Raises:
    ValueError: For an unknown variant.
  """
  variants = common.variants(arg, _VARIANTS)
  quick = "quick" in variants
  config = ml_collections.ConfigDict()
  config.workdir = "./runs/quick" if quick else "./runs/default"
  config.seed = 0
  config.progress = not quick
  config.overwrite = False  # start over in a run folder of another config
  config.stages = ("classifier", "rise", "explainer", "segmentation_rise", "iassa", "caption")
  config.classifier = classifier.get_config("quick" if quick else None)
  config.rise = rise.get_config("quick" if quick else None)
  config.explainer = explainer.get_config("quick" if quick else None)
  config.iassa = iassa.get_config("quick" if quick else None)
  config.caption = caption.get_config("quick" if quick else "small")
  config.segmentation_rise = ml_collections.ConfigDict(dict(
      num_images=6, num_masks=500, grid_size=7, p1=0.5, batch_size=100,
      merges=("mean", "max"), threshold=0.5, figure_images=3, seed=0, progress=True))
  if not quick:
    # The Explainer stage trains 4 epochs (about 1 minute each) and scores 100 test images
    # with 500-mask RISE; configs/explainer.py trains 40 epochs for the issue-7 tables.
    config.explainer.explainer.update(epochs=4)
    config.explainer.data.num_test = 100
    config.explainer.eval.rise.num_masks = 500
    # IASSA: 2 test images, 10 iterations (k = 5 and 10) of both mixes.
    config.iassa.iassa.update(max_iters=10, record=(5, 10))
  else:
    config.segmentation_rise.update(num_images=2, num_masks=50, batch_size=25, figure_images=1,
                                    progress=False)
    config.iassa.iassa.update(max_iters=2, record=(1, 2))
  return config
