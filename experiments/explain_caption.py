"""RISE for captioning (RISE paper, eq. 7) on the synthetic shapes scenes.

python -m experiments.explain_caption [--config=configs/caption.py[:small|:quick]]
    [--workdir=DIR] [--config.rise.num_masks=500 --config.eval.num_explain=20 ...]

Trains (or reuses, from ``WORKDIR/captioner``) the small Flax attention captioner, captions the
test scenes greedily, explains every word of ``eval.num_explain`` captions with
:func:`rise_jax.caption_rise`, plays the noun pointing game against the object masks beside the
centre baseline, and explains all shape names at the "a ___" slot (words not in the scene);
see :mod:`rise_jax.caption_experiment`. Writes ``results.json``, ``tables.md``,
``training_curves.png``, ``maps.npz`` and ``overlays/<i>.png`` under the workdir (default: the
config's ``workdir``) and prints ``tables.md``. A rerun with an unchanged config returns the
saved results.
"""

import pathlib

from absl import app, flags
from ml_collections import config_flags

from rise_jax import caption_experiment

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "caption.py"),
    "Captioning experiment config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir
  caption_experiment.train_and_evaluate(config, workdir)
  print((pathlib.Path(workdir) / "tables.md").read_text())


if __name__ == "__main__":
  app.run(main)
