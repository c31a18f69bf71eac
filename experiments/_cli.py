"""The shared command line of the experiment entry points: ``--config`` and ``--workdir``."""

import pathlib
from collections.abc import Callable
from typing import Any

from absl import app, flags
from ml_collections import config_flags

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def quiet_by_default() -> None:
  """Logs warnings and errors only (orbax and absl log every checkpoint step at INFO);
  ``--verbosity=0`` (or ``-v 0``) brings the INFO logs back."""
  flags.FLAGS.set_default("verbosity", -1)


quiet_by_default()  # every entry point imports this module


def define_flags(config_file: str, help_text: str) -> tuple[Any, Any]:
  """Defines ``--config`` (default ``configs/<config_file>``, overridable per field) and
  ``--workdir`` (default: the config's ``workdir``); returns both flag holders."""
  config = config_flags.DEFINE_config_file("config", str(CONFIGS / config_file), help_text)
  workdir = flags.DEFINE_string("workdir", None, "Run folder (default: the config's workdir).")
  return config, workdir


def tables_main(config_flag, workdir_flag, run: Callable[[Any, str], Any]
                ) -> Callable[[list[str]], None]:
  """An absl ``main(argv)`` that calls ``run(config, workdir)`` and prints its ``tables.md``."""

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = config_flag.value
    workdir = workdir_flag.value or config.workdir
    run(config, workdir)
    print((pathlib.Path(workdir) / "tables.md").read_text())

  return main
