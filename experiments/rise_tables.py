"""RISE paper Tables 1 and 2: deletion/insertion AUC and the pointing game, RISE vs baselines.

python -m experiments.rise_tables [--config=configs/rise.py[:VARIANT]] [--workdir=DIR]
    [--config.rise.num_masks=2000 ...]

Variants: the synthetic default, ``quick``, and the paper settings ``imagenet-resnet50``,
``imagenet-vgg16``, ``voc07-vgg16``, ``voc07-resnet50``, ``coco14-vgg16``, ``coco14-resnet50``
(see ``configs/rise.py`` for the data and weight paths they need). Writes ``results.json``,
``tables.md``, ``table.csv``, ``pairs.csv``, ``maps.npz``, ``figures/maps_*.png`` and
``figures/curves_{deletion,insertion}.png`` under the workdir; a rerun with the same config returns
the stored results without recomputing.
"""

import pathlib

from absl import app, flags
from ml_collections import config_flags

from rise_jax import rise_experiment

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "rise.py"),
    "RISE tables config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")


def main(argv):
  del argv
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir
  rise_experiment.train_and_evaluate(config, workdir)
  print((pathlib.Path(workdir) / "tables.md").read_text())


if __name__ == "__main__":
  app.run(main)
