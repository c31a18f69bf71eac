"""Train an NN-Explainer against a frozen classifier and write its comparison tables.

python -m experiments.train_explainer [--config=configs/explainer.py[:quick]] [--workdir=DIR]
    [--config.explainer.epochs=20 ...]

Paper settings: ``--config=configs/explainer_paper.py:voc-vgg16`` (or ``voc-resnet50``,
``coco-vgg16``, ``coco-resnet50``) with ``--config.explanandum.weights=PATH`` and
``--config.data.data_dir=DIR``. A rerun resumes the Explainer and reuses finished stages.
"""

import pathlib

from absl import app, flags
from ml_collections import config_flags

from rise_jax.explainer import experiment

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "explainer.py"),
    "Explainer experiment config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")


def main(argv):
  del argv
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir
  experiment.train_and_evaluate(config, workdir)
  print((pathlib.Path(workdir) / "tables.md").read_text())


if __name__ == "__main__":
  app.run(main)
