"""Train an NN-Explainer against a frozen classifier and write its comparison tables.

python -m experiments.train_explainer [--config=configs/explainer.py[:quick]] [--workdir=DIR]
    [--config.explainer.epochs=20 ...]

Paper settings: ``--config=configs/explainer_paper.py:voc-vgg16`` (or ``voc-resnet50``,
``coco-vgg16``, ``coco-resnet50``) with ``--config.explanandum.weights=PATH`` and
``--config.data.data_dir=DIR``. A rerun resumes the Explainer and reuses finished stages.
"""

from absl import app

from experiments import _cli
from experiments.tasks import explainer as experiment

_CONFIG, _WORKDIR = _cli.define_flags("explainer.py", "Explainer experiment config.")
# A lambda, so that a patched experiment.train_and_evaluate is the one called.
main = _cli.tables_main(_CONFIG, _WORKDIR, lambda c, w: experiment.train_and_evaluate(c, w))

if __name__ == "__main__":
  app.run(main)
