"""`taxi-demand skew|next-day`: served features and served accuracy, checked."""

from __future__ import annotations

import argparse
import sys

from taxi_demand.monitoring import next_day_rules

_NEXT_DAY_EPILOG = """\
The model serving on day D is, per ML Metadata, the newest push (or rollback)
that took effect before D: a push by the run for day S serves from S + 1,
whether the runs were daily or a backfill. It is scored on D's actual demand
from the warehouse, beside the seasonal-naive forecast (same slot last week),
and the result is recorded in ML Metadata, linked to the model and D's
examples. A day the warehouse holds no trips of is not scored (exit 1,
nothing recorded): its demand is unknown, not zero.

Alerts (exit 3):
  sudden   MAE > the model's own eval MAE x (1 + --margin)
  gradual  over the last --trend-days daily results, MAE rises faster than
           --trend-slope (a fraction of its mean) per day
  supply   the supply forecasts served for D (predicted_idle_taxis), scored
           on D's idle taxis from its trips, have an MAE over the day above
           idle now carried forward's x (1 + --supply-margin); a day whose
           trips carry no taxi_id is "not scored", never an alert

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
Four signals, for the rows `predict` served for slots of D (the served
log; a `replay` records elsewhere), each model version on its own:

  join          every served row is keyed (cell, target slot, issued_at);
                the training path (the demand query's training form, at
                every lead, under the model's arrival rule) recomputes the
                same keys from the warehouse afterwards. Per feature: the
                share of joined rows that differ and the mean relative
                difference. Flagged above --max-differing. This is the check
                for a serving path that computes a feature otherwise (a
                partial slot read as complete, another unit, trips missed).
  data_age      each served row carries how long before its issue time the
                newest known trip arrived; flagged above --max-data-age (a
                stalled feed, even one that never resumed).
  distribution  TFDV's skew comparators (L-infinity for cell and hour,
                Jensen-Shannon for the history features), the served rows
                against the training statistics of the model version that
                served them, found through ML Metadata (pushed model ->
                Trainer -> its examples -> StatisticsGen). The training
                path's rows for the same keys are measured too, as a
                control: a partial day is far from a 28-day distribution by
                its hour mix alone, so a feature is flagged only beyond the
                schema's threshold and beyond the control's distance by half
                that threshold.
  predicted_idle_taxis
                the supply forecast served beside each demand forecast is
                made again at each served tick from the warehouse, by the
                serving code, with the rates its rows name (those recorded
                with the model version, or the fit at serving); flagged if
                more than --max-differing of the rows differ.

A log written before served rows carried their issue time cannot be joined:
its check is distribution skew only, and says so. Once the warehouse no
longer holds the day's history, likewise. Without a warehouse at all, skew
refuses (exit 1, nothing recorded): with no training path as a control, a
partial day would alert on its hour mix alone.

If several versions served on D, each is checked against its own training
statistics; the top-level result is the version that served the most rows,
`versions` lists all, and the alert is raised if any version skews.

Each check is recorded in ML Metadata (execution taxi_demand.SkewCheck:
training statistics + the day's ServingLog in, a SkewReport out, its JSON
under reports/skew/), so `skew --history` lists a version's past checks.
Unreadable log files are named on stderr and skipped.

Exit codes: 0 no skew, 3 a feature is skewed or the data stale, 1 error.

Examples:
  taxi-demand skew --date 2024-02-11
  taxi-demand skew --date 2024-02-11 --json
  taxi-demand skew --date 2024-02-11 --max-data-age 30m
  taxi-demand skew --history --model 1718000000
"""


def _table(result) -> None:
  print(f"{result.date}  model {result.model_version}  rows {result.rows:,}  "
        f"training statistics {result.training_statistics_uri}")
  join = result.join
  if join is not None:
    print(f"  join with the training path: {join.matched:,} of "
          f"{join.served:,} served rows matched")
  print(f"  {'feature':18} {'differ':>7} {'rel.diff':>8}   "
        f"{'distance':>8} {'control':>8} {'threshold':>9}")

  def num(x, width):
    return f"{'n/a':>{width}}" if x is None else f"{x:{width}.4f}"

  names = sorted(set(result.features) | set(join.features if join else ()))
  for name in names:
    d = join.features.get(name) if join else None
    f = result.features.get(name)
    cells = [f"{d.share:7.1%}" if d else f"{'':7}",
             f"{d.mean_relative_difference:8.3f}" if d else f"{'':8}"]
    if f is not None:
      cells += [num(f.distance, 8), num(f.control, 8),
                f"{f.threshold:9.4f}"]
    flag = "  SKEW" if name in result.flagged else ""
    print(f"  {name:18} {cells[0]} {cells[1]}   {' '.join(cells[2:])}{flag}")
  st = result.staleness
  if st is not None:
    print(f"  data age: up to {st.max_age_s / 60:.1f} min over {st.ticks} "
          f"ticks; {st.stale_ticks} beyond {st.limit_s // 60} min"
          f"{'  STALE' if st.flagged else ''}")
  for note in result.notes:
    print(f"  note: {note}")


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
  from taxi_demand.serving import predict  # noqa: PLC0415
  day = servelog.parse_date(args.date)
  given = {}
  if args.max_differing is not None:
    given["max_differing"] = args.max_differing
  if args.max_data_age is not None:
    given["max_data_age_s"] = predict.parse_every(args.max_data_age,
                                                  "--max-data-age")
  limits = skew.Limits(**given)
  report = skew.check_day(home, day, version=args.model, limits=limits)
  for path, reason in report.skipped:
    print(f"taxi-demand skew: skipped unreadable log file {path}: {reason}",
          file=sys.stderr)
  if args.json:
    cli.print_json(report.to_dict())
  else:
    for result in report.results:
      _table(result)
  if report.alert:
    reasons = [f"{why} (model {r.model_version})"
               for r in report.results for why in r.reasons()]
    raise AlertError(f"training-serving skew on {report.date}: "
                     f"{'; '.join(reasons)}")
  return 0


# --- next-day ----------------------------------------------------------------


def _served(result) -> None:
  """The forecasts actually served for the day, by lead."""
  from taxi_demand import cli  # noqa: PLC0415
  if not result.get("served_by_lead"):
    print(f"served forecasts: {result.get('served_note')}")
    return
  print(f"served forecasts ({result['served_forecasts']:,}, versions "
        f"{result['served_versions']}), by lead:")
  cli.print_by_lead(result["served_by_lead"])


def _served_supply(result) -> None:
  """The supply forecasts served for the day, by lead, beside naive."""
  by_lead = result.get("served_supply_by_lead")
  if not by_lead:
    print(f"served supply forecasts: {result.get('served_supply_note')}")
    return
  print(f"served supply forecasts (idle taxis): MAE "
        f"{result['served_supply_mae']:.3f} against naive (idle now) "
        f"{result['served_supply_naive_mae']:.3f}, by lead:")
  print(f"  {'lead':>4}  {'MAE':>7}  {'naive':>7}  forecasts")
  for lead, row in by_lead.items():
    print(f"  {lead:>4}  {row['mae']:7.3f}  {row['naive_mae']:7.3f}"
          f"  {row['forecasts']}")


def _next_day(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.errors import EXIT_ALERT  # noqa: PLC0415
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  rules = nextday.Rules(margin=args.margin, trend_days=args.trend_days,
                        trend_slope=args.trend_slope,
                        supply_margin=args.supply_margin)
  result = nextday.validate(home, args.date, rules,
                            warehouse_path=None,
                            record=not args.no_record)
  if args.json:
    cli.print_json({k: result.get(k) for k in (
        "date", "model_version", "mae", "rmse", "seasonal_naive_mae",
        "seasonal_naive_rmse", "eval_mae", "examples", "alert", "reason",
        "served_by_lead", "served_forecasts", "served_versions",
        "served_note", "served_supply_by_lead", "served_supply_mae",
        "served_supply_naive_mae", "served_supply_note", "supply_alert")})
  else:
    print(f"{result['date']}: model {result['model_version']} MAE "
          f"{result['mae']:.4f} RMSE {result['rmse']:.4f}; seasonal naive MAE "
          f"{result['seasonal_naive_mae']:.4f} RMSE "
          f"{result['seasonal_naive_rmse']:.4f}; eval MAE "
          f"{'n/a' if result['eval_mae'] is None else format(result['eval_mae'], '.4f')}")
    print(("ALERT: " if result["alert"] else "") + result["reason"])
    _served(result)
    _served_supply(result)
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
  p.add_argument("--max-differing", type=float, default=None, metavar="SHARE",
                 help="join skew: flag a feature if more than this share of "
                 "served rows differ from the training path, and the supply "
                 "forecast if more than this share differ from its "
                 "recomputation (default 0.05)")
  p.add_argument("--max-data-age", default=None, metavar="INTERVAL",
                 help="flag a tick that served data whose newest trip "
                 "arrived longer ago than this, e.g. 15m, 1h (default 15m)")
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
  rules = next_day_rules.Rules()   # the flags' defaults are the rules'
  next_day.add_argument("--margin", type=float, default=rules.margin,
                        help="sudden alert above eval MAE x (1 + margin) "
                        "(default %(default)s)")
  next_day.add_argument("--trend-days", type=int, default=rules.trend_days,
                        metavar="K",
                        help="daily results in the trend (default "
                        "%(default)s)")
  next_day.add_argument("--trend-slope", type=float,
                        default=rules.trend_slope,
                        help="gradual alert above this relative MAE rise "
                        "per day (default %(default)s)")
  next_day.add_argument("--supply-margin", type=float,
                        default=rules.supply_margin,
                        help="alert if the served supply forecast's MAE over "
                        "the day exceeds idle now carried forward's x (1 + "
                        "this) (default %(default)s)")
  next_day.add_argument("--no-record", action="store_true",
                        help="do not record the result in ML Metadata")
  next_day.set_defaults(handler=_next_day)
