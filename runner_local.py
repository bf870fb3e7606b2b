"""Runs the daily pipeline on this machine: flags -> PipelineConfig -> LocalDagRunner.

  python runner_local.py                      # newest day in the warehouse
  python runner_local.py --date 2024-02-05 --train-days 14
  python runner_local.py --backfill 2024-02-01 2024-02-10
  python runner_local.py --resume             # go on from the node that failed
                                              # or was killed, then the days
                                              # its run had not reached

A second daily run on the same home is refused while one runs. A run killed
mid-node (kill -9, power loss) is marked aborted in ML Metadata by the next
run on the home; `--resume` continues it.

Exit codes: 0 ok (blessed or not), 1 error, 3 data validation alert.
"""

from __future__ import annotations

import argparse
import os
import sys

import taxi_demand  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from pipeline import flags
from taxi_demand import arguments


def parse_args(argv=None) -> argparse.Namespace:
  parser = arguments.Parser(
      prog="runner_local.py",
      description=__doc__.split("\n")[0],
      epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  when = parser.add_mutually_exclusive_group()
  when.add_argument("--date", help="the day to run, YYYY-MM-DD (default: the "
                    "newest day in the warehouse)")
  when.add_argument("--backfill", nargs=2, metavar=("START", "END"),
                    help="one run per day from START to END inclusive, in "
                    "order, as a daily schedule would")
  when.add_argument("--resume", action="store_true",
                    help="continue the last run from the node that failed or "
                    "was killed, reusing every artifact it published; then "
                    "the days its invocation had not reached")
  parser.add_argument("--from-node", metavar="ID",
                      help="partial run starting at this node id")
  flags.add_model_flags(parser)
  parser.add_argument("--beam-workers", type=arguments.count(1), default=1,
                      help="Beam DirectRunner workers; > 1 uses "
                      "multi_processing mode")
  parser.add_argument("--sample", action="store_true",
                      help="with an empty warehouse, load the real Chicago "
                      "sample shipped with TFX instead of simulated days")
  parser.add_argument("--no-cache", action="store_true",
                      help="re-execute every node instead of reusing results")
  parser.add_argument("--home", help="state directory (default: "
                      "$TAXI_DEMAND_HOME or ./.taxi_demand)")
  parser.add_argument("--verbose", "-v", action="store_true",
                      help="show TFX/Beam logs and tracebacks")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  from pipeline import local_run  # noqa: PLC0415
  from taxi_demand import logs  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  # Outside guarded: a failure is logged to the run's log file before
  # logging is put back as the caller had it.
  with logs.preserved(), local_run.guarded(args.verbose) as outcome:
    home = Home.resolve(args.home)  # a bad $TAXI_DEMAND_STORE is one line
    with local_run.hold(home, argv) as run_lock:  # one daily run per home
      local_run.prepare(home, args)
      local_run.mark_aborted(home)
      local_run.run_all(args, home, run_lock, argv)
  return outcome.exit_code


if __name__ == "__main__":
  code = main()
  sys.stdout.flush()
  sys.stderr.flush()
  # Skip interpreter teardown: TensorFlow's function destructors print
  # "Exception ignored ... AtomicFunction.__del__" noise at exit.
  os._exit(code)
