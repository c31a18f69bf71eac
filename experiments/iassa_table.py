"""IASSA Table 1: RISE against IASSA (k = 5..25, both mixes) at image and pixel level.

python -m experiments.iassa_table [--config=configs/iassa.py[:quick]] [--workdir=DIR]
    [--config.data.num_test=20 ...]

Paper setting: ``--config=configs/iassa.py:coco`` with ``--config.explanandum.weights=PATH``
(80-class multi-label ResNet50), ``--config.data.coco_annotations=instances_val2014.json`` and
``--config.data.coco_images=val2014``. A rerun reuses the trained classifier
(``workdir/classifier``). Writes ``results.json``, ``tables.md``, ``table.csv``, ``pairs.csv``
and ``iassa_maps.png`` under the workdir.
"""

from absl import app

from experiments import _cli
from experiments.tasks import iassa_table as iassa_experiment

_CONFIG, _WORKDIR = _cli.define_flags("iassa.py", "IASSA evaluation config.")
# A lambda, so that a patched iassa_experiment.train_and_evaluate is the one called.
main = _cli.tables_main(_CONFIG, _WORKDIR, lambda c, w: iassa_experiment.train_and_evaluate(c, w))

if __name__ == "__main__":
  app.run(main)
