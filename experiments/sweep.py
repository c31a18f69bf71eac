"""Runs a config module's ``sweep()`` and writes one combined table.

python -m experiments.sweep --config=configs/rise.py[:VARIANT] [--workdir=runs/sweep_rise]
    [--sweep_arg=full] [--config.x=...]

Each override dict that the config module's ``sweep(arg)`` yields (dotted key -> value) is
applied to a copy of the (command-line overridden) config and the experiment runs in
``workdir/<point name>``; finished points are reused on a rerun. The experiment is the
config's ``experiment`` field (or the config file's stem), looked up in
:data:`experiments.tasks.runners.RUNNERS`. A config with ``explanandum.classifier_dir`` left
empty gets ``workdir/classifier``, so that all points share one trained classifier. Writes
``sweep.md``, ``sweep.csv`` and ``sweep.json`` under the workdir and prints the table.
"""

import os
import pathlib

from absl import app, flags
from ml_collections import config_flags

from experiments import _cli  # noqa: F401 (quiet logs by default)
from experiments.tasks import sweep

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "rise.py"),
    "Experiment config whose module defines sweep().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder (default: runs/sweep_<config>).")
_SWEEP_ARG = flags.DEFINE_string("sweep_arg", None, "Argument passed to the module's sweep().")


def main(argv):
  del argv
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  config = _CONFIG.value
  points = list(sweep.load_sweep(path)(_SWEEP_ARG.value))
  experiment = sweep.experiment_name(config, path)
  runner = sweep.resolve_runner(experiment)
  workdir = _WORKDIR.value or os.path.join("runs", f"sweep_{pathlib.Path(path).stem}")
  explanandum = config.get("explanandum")
  if explanandum is not None and "classifier_dir" in explanandum and not (
      explanandum.classifier_dir):
    explanandum.classifier_dir = os.path.join(workdir, "classifier")
  sweep.run_sweep(config, points, workdir, runner, experiment=experiment,
                  progress=bool(config.get("progress", True)))
  print((pathlib.Path(workdir) / "sweep.md").read_text())


if __name__ == "__main__":
  app.run(main)
