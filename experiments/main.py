"""Main job: every method of the three papers on the synthetic benchmark (see rise_jax.main_job).

python -m experiments.main [--config=configs/default.py[:quick]] [--workdir=DIR]
    [--config.stages=classifier,rise] [--config.rise.rise.num_masks=2000]
"""

from absl import app

from experiments import _cli
from experiments.tasks import main_job

_CONFIG, _WORKDIR = _cli.define_flags("default.py", "Main job config.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir
  summary = main_job.run(config, workdir)
  for o in summary["orderings"]:
    print(f"{o['verdict']:>13}  {o['claim']} (difference {o['difference']:+.4g}, 95% CI "
          f"[{o['low']:+.4g}, {o['high']:+.4g}], {o['num_pairs']} pairs)")
  print(f"total {summary['total_seconds']:.0f} s; tables: {workdir}/tables.md")


if __name__ == "__main__":
  app.run(main)
