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

from absl import app

from experiments import _cli
from experiments.tasks import rise_tables as rise_experiment

_CONFIG, _WORKDIR = _cli.define_flags("rise.py", "RISE tables config.")
# A lambda, so that a patched rise_experiment.train_and_evaluate is the one called.
main = _cli.tables_main(_CONFIG, _WORKDIR, lambda c, w: rise_experiment.train_and_evaluate(c, w))

if __name__ == "__main__":
  app.run(main)
