"""`taxi-demand` entry point: parse, call, print.

Each command group lives in a `commands` module beside the code it drives
(`taxi_demand/data/commands.py`, ...). Those modules import only argparse at
module level and defer heavy imports (TensorFlow, TFX, DuckDB) to the handler,
so `taxi-demand --help` and the metadata commands answer in about a second.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable, Sequence

from taxi_demand import __version__
from taxi_demand.arguments import Parser
from taxi_demand.errors import exit_codes
from taxi_demand.home import Home

# Modules that contribute subcommands through `register(subparsers)`.
COMMAND_MODULES = (
    "taxi_demand.data.commands",
    "taxi_demand.monitoring.commands",
    "taxi_demand.serving.commands",
    "taxi_demand.lineage.commands",
    "taxi_demand.report.commands",
    "taxi_demand.serving.recommend_commands",
)

_EPILOG = """\
State lives under --home, else $TAXI_DEMAND_HOME, else ./.taxi_demand.
On Google Cloud, --warehouse bq://PROJECT.DATASET.TABLE reads the trips
from BigQuery and --store gs://BUCKET/PREFIX keeps the models and the
served log on Cloud Storage (README: Run on Google Cloud).
Exit codes: 0 ok, 1 error (one line; --verbose for the traceback),
3 validation, skew or degradation alert.

Typical first session:
  taxi-demand simulate --start 2024-01-01 --days 35 --out trips/
  taxi-demand load trips/
  python runner_local.py            # train, validate, push
  taxi-demand predict --at 2024-02-04T08:00 --json
"""


def common_parent() -> argparse.ArgumentParser:
  """Flags every subcommand accepts, before or after its name."""
  parent = argparse.ArgumentParser(add_help=False)
  parent.add_argument(
      "--home", default=argparse.SUPPRESS,
      help="state directory (default: $TAXI_DEMAND_HOME or ./.taxi_demand)")
  _location_flags(parent, argparse.SUPPRESS)
  parent.add_argument("--verbose", "-v", action="store_true",
                      default=argparse.SUPPRESS,
                      help="show library logs and tracebacks")
  return parent


def _location_flags(parser: argparse.ArgumentParser, default) -> None:
  """--warehouse and --store: where the trips, and the models and logs, are."""
  parser.add_argument(
      "--warehouse", default=default, metavar="PATH|bq://P.D.T",
      help="the trips: a DuckDB file or a BigQuery table (default: "
      "$TAXI_DEMAND_WAREHOUSE, else HOME/warehouse.duckdb)")
  parser.add_argument(
      "--store", default=default, metavar="DIR|gs://BUCKET[/PREFIX]",
      help="where models/, serving_log/ and replay_log/ live (default: "
      "$TAXI_DEMAND_STORE, else the home)")


def json_parent() -> argparse.ArgumentParser:
  parent = argparse.ArgumentParser(add_help=False)
  parent.add_argument("--json", action="store_true",
                      help="print machine-readable JSON instead of a table")
  return parent


def build_parser() -> argparse.ArgumentParser:
  # Parser: a usage error is one line and exit 1, in every subcommand too.
  parser = Parser(
      prog="taxi-demand",
      description=("Continuously trained taxi demand forecasts on TFX: load "
                   "trips, train and validate daily, predict every 5 minutes, "
                   "and answer questions from ML Metadata lineage."),
      epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--version", action="version",
                      version=f"taxi-demand {__version__}")
  parser.add_argument("--home", default=None,
                      help="state directory (default: $TAXI_DEMAND_HOME or "
                      "./.taxi_demand)")
  _location_flags(parser, None)
  parser.add_argument("--verbose", "-v", action="store_true",
                      help="show library logs and tracebacks")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  parents = [common_parent()]
  for name in COMMAND_MODULES:
    try:
      module = importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name != name:
        raise
      continue  # that command group is not built yet
    module.register(subparsers, parents)
  return parser


def print_by_lead(by_lead) -> None:
  """A {lead: {"mae", "seasonal_naive_mae", "forecasts"}} table (replay,
  next-day)."""
  print(f"  {'lead':>4}  {'MAE':>7}  {'naive':>7}  forecasts")
  for lead, row in by_lead.items():
    print(f"  {lead:>4}  {row['mae']:7.3f}  {row['seasonal_naive_mae']:7.3f}"
          f"  {row['forecasts']}")


def print_json(obj) -> None:
  json.dump(obj, sys.stdout, indent=2, sort_keys=True, default=str)
  sys.stdout.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  handler: Callable | None = getattr(args, "handler", None)
  if handler is None:
    parser.print_help()
    return 0
  verbose = bool(getattr(args, "verbose", False))
  from taxi_demand import logs  # noqa: PLC0415 - cheap, keeps --help lean
  # preserved(): called in-process (tests, notebooks), main leaves logging
  # and warnings as it found them; it encloses exit_codes so an error's last
  # log lines still reach this command's log file.
  with logs.preserved(), exit_codes(f"taxi-demand {args.command}: ", verbose,
                                    broken_pipe_ok=True) as outcome:
    home = Home.resolve(getattr(args, "home", None),
                        getattr(args, "warehouse", None),
                        getattr(args, "store", None)).check()
    logs.configure(home.make(home.logs) if getattr(args, "writes_logs", True)
                   and home.root.exists() else None, verbose=verbose,
                   name=args.command)
    outcome.exit_code = int(handler(args, home) or 0)
  return outcome.exit_code


if __name__ == "__main__":
  sys.exit(main())
