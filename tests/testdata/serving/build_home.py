"""Builds a home whose daily runs all push: runner_local with a permissive gate.

  python tests/testdata/serving/build_home.py HOME DATE [DATE ...] \
      [--train-days N] [--train-steps N]

The serving tests need real pushed versions with real lineage, not a model
that beats the seasonal-naive forecast; with a small window and few steps the
ForecastGate would (rightly) refuse to push, so its thresholds are opened.
"""

import dataclasses
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

import runner_local  # noqa: E402  (imports taxi_demand first)


def main(argv) -> int:
  home_dir, rest = argv[0], argv[1:]
  dates = [a for a in rest if not a.startswith("--") and "-" in a[:5]]
  flags = [a for a in rest if a not in dates]
  from pipeline import local_run
  from pipeline.config import Thresholds
  from pipeline.pipeline import create_pipeline
  from taxi_demand.home import Home
  home = Home.resolve(home_dir)
  permissive = Thresholds(naive_margin=-1e9, change_tolerance=1e9,
                          cell_margin=1e9)
  for day in dates:
    args = runner_local.parse_args(["--home", home_dir, "--date", day] + flags)
    with local_run.guarded(args.verbose) as outcome:
      local_run.prepare(home, args)
      for span, options in local_run.plan(args, home):
        config = dataclasses.replace(local_run.build_config(args, home, span),
                                     thresholds=permissive)
        local_run.execute(create_pipeline(config), config, options, home)
        local_run.print_summary(home, config)
    if outcome["exit_code"]:
      return outcome["exit_code"]
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
