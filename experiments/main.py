"""Main job: train a classifier on synthetic shapes and explain it with RISE.

python -m experiments.main [--config=configs/default.py:quick] [--workdir=DIR]
"""

import json
import pathlib

from absl import app, flags
from ml_collections import config_flags

from rise_jax import demo

_DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "default.py"
_CONFIG = config_flags.DEFINE_config_file("config", str(_DEFAULT_CONFIG), "Main job config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  results = demo.run_demo(config, _WORKDIR.value or config.workdir)
  print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
  app.run(main)
