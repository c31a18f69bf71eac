"""IASSA Table 1: RISE against IASSA (k = 5..25, both mixes) at image and pixel level.

python -m experiments.iassa_table [--config=configs/iassa.py[:quick]] [--workdir=DIR]
    [--config.data.num_test=20 ...]

Paper setting: ``--config=configs/iassa.py:coco`` with ``--config.explanandum.weights=PATH``
(80-class multi-label ResNet50), ``--config.data.coco_annotations=instances_val2014.json`` and
``--config.data.coco_images=val2014``. A rerun reuses the trained classifier
(``workdir/classifier``). Writes ``results.json``, ``tables.md``, ``table.csv``, ``pairs.csv``
and ``iassa_maps.png`` under the workdir.
"""

import pathlib

from absl import app, flags
from ml_collections import config_flags

from rise_jax import iassa_experiment

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "iassa.py"),
    "IASSA evaluation config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")


def main(argv):
  del argv
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir
  iassa_experiment.train_and_evaluate(config, workdir)
  print((pathlib.Path(workdir) / "tables.md").read_text())


if __name__ == "__main__":
  app.run(main)
