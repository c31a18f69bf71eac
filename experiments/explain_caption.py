"""RISE for captioning (RISE paper, eq. 7) on the synthetic shapes scenes.

python -m experiments.explain_caption [--config=configs/caption.py[:small|:quick]]
    [--workdir=DIR] [--config.rise.num_masks=500 --config.eval.num_explain=20 ...]

Trains (or reuses, from ``WORKDIR/captioner``) the small Flax attention captioner, captions the
test scenes greedily, explains every word of ``eval.num_explain`` captions with
:func:`rise_jax.caption_rise`, plays the noun pointing game against the object masks beside the
centre baseline, and explains all shape names at the "a ___" slot (words not in the scene);
see :mod:`experiments.tasks.caption`. Writes ``results.json``, ``tables.md``,
``training_curves.png``, ``maps.npz`` and ``overlays/<i>.png`` under the workdir (default: the
config's ``workdir``) and prints ``tables.md``. A rerun with an unchanged config returns the
saved results.
"""

from absl import app

from experiments import _cli
from experiments.tasks import caption as caption_experiment

_CONFIG, _WORKDIR = _cli.define_flags("caption.py", "Captioning experiment config.")
# A lambda, so that a patched caption_experiment.train_and_evaluate is the one called.
main = _cli.tables_main(_CONFIG, _WORKDIR, lambda c, w: caption_experiment.train_and_evaluate(c, w))

if __name__ == "__main__":
  app.run(main)
