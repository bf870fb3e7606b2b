"""`taxi-demand skew|next-day`: served features and served accuracy, checked."""

from __future__ import annotations

import argparse
import sys

_NEXT_DAY_EPILOG = """\
The model serving on day D is, per ML Metadata, the newest push (or rollback)
that took effect before D: a push by the run for day S serves from S + 1,
whether the runs were daily or a backfill. It is scored on D's actual demand
from the warehouse, beside the seasonal-naive forecast (same slot last week),
and the result is recorded in ML Metadata, linked to the model and D's
examples.

Alerts (exit 3):
  sudden   MAE > the model's own eval MAE x (1 + --margin)
  gradual  over the last --trend-days daily results, MAE rises faster than
           --trend-slope (a fraction of its mean) per day

The defaults are meant to fire when a model goes stale. On the simulated
full-size city, a model left serving for a week without a retrain reached
1.40x its eval MAE on its fourth day and a +7.6%/day trend; retrained daily,
the serving model is one day old. A weekday after a quiet eval day (Sunday)
scores worse with no drift at all, so raise --margin where retraining is
not daily.

Examples:
  taxi-demand next-day --date 2024-02-08
  taxi-demand next-day --date 2024-02-08 --margin 0.5 --json
"""


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
  rows = skew.history(lineage.load(home.metadata), version)
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


# --- next-day ----------------------------------------------------------------


def _next_day(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.errors import EXIT_ALERT  # noqa: PLC0415
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  rules = nextday.Rules(margin=args.margin, trend_days=args.trend_days,
                        trend_slope=args.trend_slope)
  result = nextday.validate(home, args.date, rules,
                            warehouse_path=args.warehouse,
                            record=not args.no_record)
  if args.json:
    cli.print_json({k: result.get(k) for k in (
        "date", "model_version", "mae", "rmse", "seasonal_naive_mae",
        "seasonal_naive_rmse", "eval_mae", "examples", "alert", "reason")})
  else:
    print(f"{result['date']}: model {result['model_version']} MAE "
          f"{result['mae']:.4f} RMSE {result['rmse']:.4f}; seasonal naive MAE "
          f"{result['seasonal_naive_mae']:.4f} RMSE "
          f"{result['seasonal_naive_rmse']:.4f}; eval MAE "
          f"{'n/a' if result['eval_mae'] is None else format(result['eval_mae'], '.4f')}")
    print(("ALERT: " if result["alert"] else "") + result["reason"])
  return EXIT_ALERT if result["alert"] else 0


def register(subparsers, parents) -> None:
  """Adds `skew` and `next-day`."""
  from taxi_demand.cli import json_parent  # noqa: PLC0415 - argparse only
  with_json = parents + [json_parent()]
  fmt = argparse.RawDescriptionHelpFormatter
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

  next_day = subparsers.add_parser(
      "next-day", parents=with_json,
      help="score the model serving on day D on D's actual demand",
      description="Next-day validation of the serving model.",
      epilog=_NEXT_DAY_EPILOG, formatter_class=fmt)
  next_day.add_argument("--date", required=True, metavar="D",
                        help="the day, YYYY-MM-DD")
  next_day.add_argument("--margin", type=float, default=0.25,
                        help="sudden alert above eval MAE x (1 + margin) "
                        "(default 0.25)")
  next_day.add_argument("--trend-days", type=int, default=5, metavar="K",
                        help="daily results in the trend (default 5)")
  next_day.add_argument("--trend-slope", type=float, default=0.05,
                        help="gradual alert above this relative MAE rise "
                        "per day (default 0.05)")
  next_day.add_argument("--warehouse", default=None, metavar="PATH",
                        help="score on this DuckDB file instead of the "
                        "home's warehouse")
  next_day.add_argument("--no-record", action="store_true",
                        help="do not record the result in ML Metadata")
  next_day.set_defaults(handler=_next_day)
