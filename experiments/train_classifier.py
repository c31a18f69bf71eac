"""Train the explanandum classifier (multi-label BCE, Orbax checkpoints, resumable).

python -m experiments.train_classifier [--config=configs/classifier.py:quick] [--workdir=DIR]
"""

import pathlib

from absl import app, flags
from ml_collections import config_flags

from rise_jax.train import classifier

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "classifier.py"),
    "Classifier training config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")


def main(argv):
  del argv
  config = _CONFIG.value
  out = classifier.train_and_evaluate(config, _WORKDIR.value or config.workdir)
  print(f"test mAP {out['test_map']:.4f} (best epoch {out['best_epoch']})")


if __name__ == "__main__":
  app.run(main)
