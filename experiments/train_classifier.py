"""Train the explanandum classifier (multi-label BCE, Orbax checkpoints, resumable).

python -m experiments.train_classifier [--config=configs/classifier.py:quick] [--workdir=DIR]
"""

from absl import app

from experiments import _cli
from experiments.tasks import classifier

_CONFIG, _WORKDIR = _cli.define_flags("classifier.py", "Classifier training config.")


def main(argv):
  del argv
  config = _CONFIG.value
  out = classifier.train_and_evaluate(config, _WORKDIR.value or config.workdir)
  print(f"test mAP {out['test_map']:.4f} (best epoch {out['best_epoch']})")


if __name__ == "__main__":
  app.run(main)
