"""`taxi-demand skew`: served features against the serving model's training data."""

from __future__ import annotations

import argparse
import sys

_SKEW_EPILOG = """\
Serving side: TFDV statistics of serving_log/date=D/ (the rows `predict`
served for slots of day D). Training side: the statistics of the data the
model version that served those rows was trained on, found through ML
Metadata (pushed model -> Trainer -> its examples -> StatisticsGen, train
split), never "the latest statistics". Comparators and thresholds are the
skew comparators of that model's schema: L-infinity for the categorical cell
and hour mix, Jensen-Shannon divergence for the numeric history features.

If several versions served on D, each is checked against its own training
statistics; the top-level result is the version that served the most rows,
`versions` lists all, and the alert is raised if any version skews.

Each check is recorded in ML Metadata (execution taxi_demand.SkewCheck:
training statistics + the day's ServingLog in, a SkewReport out, its JSON
under reports/skew/), so `skew --history` lists a version's past checks.
Unreadable log files are named on stderr and skipped.

Exit codes: 0 no skew, 3 a feature is skewed, 1 error.

Examples:
  taxi-demand skew --date 2024-02-11
  taxi-demand skew --date 2024-02-11 --json
  taxi-demand skew --history --model 1718000000
"""


def _table(result) -> None:
  print(f"{result.date}  model {result.model_version}  rows {result.rows:,}  "
        f"training statistics {result.training_statistics_uri}")
  print(f"  {'feature':20} {'comparator':26} {'distance':>9} {'threshold':>9}")
  for name, f in sorted(result.features.items()):
    distance = "n/a" if f.distance is None else f"{f.distance:.4f}"
    flag = "  SKEW" if f.flagged else ""
    print(f"  {name:20} {f.comparator:26} {distance:>9} {f.threshold:>9.4f}"
          f"{flag}")


def _history(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.lineage import store as lineage  # noqa: PLC0415
  from taxi_demand.monitoring import skew  # noqa: PLC0415
  version = args.model
  with lineage.open_store(home.metadata) as reader:
    rows = skew.history(reader, version)
  if args.json:
    cli.print_json(rows)
    return 0
  if not rows:
    print("no skew checks recorded" +
          (f" for model version {version}" if version else ""))
    return 0
  for r in rows:
    verdict = ("SKEW " + ",".join(r["flagged"])) if r["alert"] else "ok"
    print(f"{r['date']}  model {r['model_version']}  rows {r['rows']}  "
          f"{verdict}  {r['report_uri']}")
  return 0


def _skew(args, home) -> int:
  from taxi_demand.errors import AlertError  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  if args.history:
    return _history(args, home)
  if args.date is None:
    raise TaxiDemandError("give --date YYYY-MM-DD (or --history)")
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.monitoring import skew  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  day = servelog.parse_date(args.date)
  report = skew.check_day(home, day, version=args.model)
  for path, reason in report.skipped:
    print(f"taxi-demand skew: skipped unreadable log file {path}: {reason}",
          file=sys.stderr)
  if args.json:
    cli.print_json(report.to_dict())
  else:
    for result in report.results:
      _table(result)
  if report.alert:
    flagged = sorted({f"{n} (model {r.model_version})"
                      for r in report.results for n in r.flagged})
    raise AlertError(f"training-serving skew on {report.date}: "
                     f"{', '.join(flagged)}")
  return 0


def register(subparsers, parents) -> None:
  """Adds `skew`."""
  p = subparsers.add_parser(
      "skew", parents=parents,
      help="compare a day of served features with the serving model's "
      "training statistics",
      description="Training-serving skew of one day of the serving log, "
      "against the training statistics of the model that served it (found "
      "through ML Metadata).",
      epilog=_SKEW_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--date", metavar="D", default=None,
                 help="the slot day to check, YYYY-MM-DD")
  p.add_argument("--model", metavar="VERSION", default=None,
                 help="check only this version's rows (with --history: "
                 "list only its checks)")
  p.add_argument("--history", action="store_true",
                 help="list recorded skew checks instead of running one")
  p.add_argument("--json", action="store_true",
                 help="print machine-readable JSON")
  p.set_defaults(handler=_skew)
