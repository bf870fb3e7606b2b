"""`taxi-demand predict`: the batch prediction job, once or every few minutes."""

from __future__ import annotations

import argparse
import sys

_PREDICT_EPILOG = """\
Scores every cell for the K slots starting at or after --at (default: now,
Chicago wall clock), with the serving model (models/CURRENT) or --model.
Features come from the demand query in its serving form, read from the
warehouse; the SavedModel's transform graph does the preprocessing.

The forecasts and the exact served feature rows, with the model version,
go to serving_log/date=YYYY-MM-DD/ (the slot's day), one file per tick and
model, written whole or not at all; serving a tick again replaces its file.
`taxi-demand skew` and `validate` read them. The job only reads the
warehouse, so a load running at the same time delays it by at most the
load, and it never delays a load.

--due serves the current tick and every tick of the last --catch-up that
the log lacks, then exits: the container's job on Google Cloud, run every 5
minutes by Cloud Scheduler or Composer, with --warehouse bq://... and
--store gs://... (README: Run on Google Cloud). A tick that failed is served
by the next run. --every serves every tick on that interval (ticks are its multiples) in one
process: the model loads once and reloads only when another version is
pushed (unless --model pins one). A restarted job first serves the ticks the
log lacks, up to --catch-up back, each as of its own time: a crash loses no
tick. With --at as well, the job's clock starts at --at and runs --speed
times as fast as real time (a past day, live). Ctrl-C stops it.

Examples:
  taxi-demand predict --at 2024-02-11T08:00 --json
  taxi-demand predict --at 2024-02-11T08:05 --horizon 2  # 08:30 and 09:00
  taxi-demand predict --model 1718000000 --at 2024-02-10T17:30
  taxi-demand predict --every 5m
  taxi-demand predict --due --at 2024-02-11T08:05   # as the 08:05 run would
  taxi-demand predict --every 5m --at 2024-02-11 --speed 60   # a day in 24 min
"""


_ROLLBACK_EPILOG = """\
Points models/CURRENT at an earlier pushed (hence blessed) version and records
a taxi_demand.Rollback execution in ML Metadata. Nothing is retrained and no
folder is removed. Default --to: the version pushed before the serving one.
The next successful push serves again as usual.

Examples:
  taxi-demand rollback
  taxi-demand rollback --to 1732000000 --json
"""


def _say(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _summary(result) -> str:
  from taxi_demand.serving import predict  # noqa: PLC0415
  total = float(result.predictions.column("predicted_pickups").to_numpy().sum())
  slots = (predict.format_epoch(result.slot_start) if result.horizon == 1 else
           f"{result.horizon} slots from {predict.format_epoch(result.slot_start)}")
  return (f"model {result.model_version}: {result.predictions.num_rows} "
          f"predictions for {slots}, {total:,.1f} pickups in all "
          f"({result.seconds['total']:.2f}s)")


def _print_once(args, result) -> None:
  from taxi_demand import cli  # noqa: PLC0415
  if args.json:
    cli.print_json(result.rows())
    return
  print(_summary(result))
  rows = sorted(result.rows(), key=lambda r: -r["predicted_pickups"])
  print(f"  {'cell':>6}  {'slot':16}  {'predicted':>9}")
  from taxi_demand.serving import predict  # noqa: PLC0415
  for r in rows[:10]:
    print(f"  {r['cell']:>6}  {predict.format_epoch(r['slot_start']):16}  "
          f"{r['predicted_pickups']:>9.2f}")
  if len(rows) > 10:
    print(f"  ... {len(rows) - 10} more (--json for all)")
  print(f"served features logged to {', '.join(result.log_files)}")


def _predict(args, home) -> int:
  from taxi_demand.serving import predict  # noqa: PLC0415
  at = predict.parse_at(args.at) if args.at is not None else None
  if args.due:
    return _predict_due(args, home, at)
  if args.every is None:
    model = predict.LoadedModel(home, args.model)
    result = predict.run_job(home, model,
                             at if at is not None else predict.now_epoch(),
                             args.horizon)
    _print_once(args, result)
    return 0

  interval = predict.parse_every(args.every)
  import json  # noqa: PLC0415

  def on_result(result):
    if args.json:
      print(json.dumps(result.rows()), flush=True)
    else:
      print(_summary(result), flush=True)

  def on_reload(version, previous):
    _say(f"loaded model {version}" +
         (f" (was {previous})" if previous else ""))

  if args.speed != 1 and at is None:
    from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
    raise TaxiDemandError("--speed needs --at: only a replayed clock can run "
                          "faster than real time")
  catch_up = _catch_up(args)
  jobs = predict.serve_every(
      home, interval, version=args.model, at_epoch=at, horizon=args.horizon,
      on_result=on_result, on_error=lambda m: _say(f"predict: {m}"),
      on_reload=on_reload, speed=args.speed, catch_up_s=catch_up)
  _say(f"stopped after {jobs} job(s)")
  return 0


def _catch_up(args) -> int:
  from taxi_demand.serving import predict  # noqa: PLC0415
  return (0 if args.catch_up.strip().rstrip("smh") == "0"
          else predict.parse_every(args.catch_up, "--catch-up"))


def _predict_due(args, home, at) -> int:
  """--due: the ticks due now, then exit (1 if any failed: the next run
  serves it)."""
  import json  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  if args.speed != 1:
    raise TaxiDemandError("--speed runs a clock; --due serves once and exits")
  interval = predict.parse_every(args.every or "5m")

  def on_error(message: str) -> None:
    _say(f"taxi-demand predict: {message}")

  served, failed = predict.serve_due(
      home, interval, version=args.model, at_epoch=at, horizon=args.horizon,
      on_result=lambda r: print(json.dumps(r.rows()) if args.json
                                else _summary(r), flush=True),
      on_error=on_error,
      on_reload=lambda v, _: None,  # each tick's own line names its model
      catch_up_s=_catch_up(args))
  if not failed:
    _say(f"served {served} tick(s)")
  elif served:  # a lone failure is its own one line, above
    _say(f"served {served} tick(s), {failed} failed (the next run serves "
         "them)")
  return 1 if failed else 0


# --- rollback ----------------------------------------------------------------


def _rollback(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.serving import rollback  # noqa: PLC0415
  done = rollback.rollback(home, args.to)
  if args.json:
    cli.print_json(done)
    return 0
  print(f"serving version {done['to_version']} (was "
        f"{done['from_version'] or 'n/a'}); recorded as execution "
        f"{done['execution_id']}")
  return 0


_REPLAY_EPILOG = """\
At each tick of day D (every 5 minutes by default, from 55 minutes before
midnight so the first slots get every lead), the serving model forecasts
the slots 0..55 minutes ahead from the warehouse as it was at that tick: no
trip that started later is read, and only trips known by then under the
model's arrival rule count. The forecasts are recorded as the live job
records them (forecasts with their features), but in the replay log,
replay_log/date=YYYY-MM-DD/, never in the served log: that one is what
drivers saw, and skew, next-day, report, recommend and predict read it
alone. A replay sees the warehouse as it is now, late trips included, so
its features for a tick can differ from what the tick served. The day is
then scored on D's actual pickups by lead, beside the seasonal-naive
forecast (same slot last week) and the model's complete-information
forecast (issued at the slot's start with every earlier trip known).

Examples:
  taxi-demand replay --date 2024-02-11
  taxi-demand replay --date 2024-02-11 --every 15m --json
  taxi-demand replay --date 2024-02-11 --between 07:00-10:00
"""


def _replay(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import replay  # noqa: PLC0415
  every = predict.parse_every(args.every)
  result = replay.replay(home, args.date, every, version=args.model,
                         record=not args.no_record,
                         progress=None if args.json else _say,
                         between=replay.parse_between(args.between))
  summary = result.summary()
  if args.json:
    cli.print_json(summary)
    return 0
  print(f"{summary['date']}: model {summary['model_version']}, "
        f"{summary['ticks']} ticks, {summary['forecasts']} forecasts in "
        f"{summary['seconds']} s")
  cli.print_by_lead(summary["by_lead"])
  print(f"  complete information MAE {summary['complete_information_mae']:.3f}"
        f"; seasonal naive MAE {summary['seasonal_naive_mae']:.3f}")
  return 0


def register(subparsers, parents) -> None:
  """Adds `predict`, `replay` and `rollback`."""
  from taxi_demand.arguments import count  # noqa: PLC0415 - argparse only
  from taxi_demand.arguments import number  # noqa: PLC0415
  from taxi_demand.cli import json_parent  # noqa: PLC0415 - argparse only
  with_json = parents + [json_parent()]
  fmt = argparse.RawDescriptionHelpFormatter
  p = subparsers.add_parser(
      "predict", parents=parents,
      help="predict pickups for every cell for the next slot(s)",
      description="Batch prediction: serving features from the warehouse, "
      "scored by a pushed model; forecasts and served features to the "
      "served log.",
      epilog=_PREDICT_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--at", metavar="TIMESTAMP", default=None,
                 help="predict the slot(s) starting at or after this time "
                 "(YYYY-MM-DD[THH:MM], city wall clock; default: now)")
  p.add_argument("--horizon", type=count(1), default=1, metavar="K",
                 help="number of slots (default 1); each must start within "
                 "55 minutes of the tick at --at, the longest lead a model "
                 "is trained for")
  p.add_argument("--model", metavar="VERSION", default=None,
                 help="a pushed version (default: the serving one, CURRENT)")
  p.add_argument("--every", metavar="INTERVAL", default=None,
                 help="serve every tick on this interval (e.g. 5m) until "
                 "Ctrl-C")
  p.add_argument("--due", action="store_true",
                 help="serve the current tick and the ticks the log lacks "
                 "(up to --catch-up back), then exit: what a scheduler "
                 "runs every --every (default 5m); exit 1 if a tick failed")
  p.add_argument("--catch-up", metavar="INTERVAL", default="1h",
                 help="with --every or --due: serve the ticks the log "
                 "lacks up to this far back (default 1h; 0 serves only the "
                 "current tick)")
  p.add_argument("--speed", type=number(positive=True), default=1.0,
                 metavar="X",
                 help="with --every and --at: run the clock X times as fast "
                 "as real time (default 1)")
  p.add_argument("--json", action="store_true",
                 help="print the prediction rows as JSON (one line per job "
                 "with --every)")
  p.set_defaults(handler=_predict)

  rollback = subparsers.add_parser(
      "rollback", parents=with_json,
      help="serve an earlier blessed version again (no retraining)",
      description="Make an earlier pushed version the serving one.",
      epilog=_ROLLBACK_EPILOG, formatter_class=fmt)
  rollback.add_argument("--to", metavar="VERSION", default=None,
                        help="the version to serve (default: the previous)")
  rollback.set_defaults(handler=_rollback, writes_logs=False)

  replay = subparsers.add_parser(
      "replay", parents=with_json,
      help="run the 5-minute job over a past day, as of each tick",
      description="Honest replay of a past day: forecasts issued as of each "
      "tick, recorded in the replay log (never the served log), and scored "
      "by lead.",
      epilog=_REPLAY_EPILOG, formatter_class=fmt)
  replay.add_argument("--date", required=True, metavar="D",
                      help="the day to replay, YYYY-MM-DD")
  replay.add_argument("--every", default="5m", metavar="INTERVAL",
                      help="between ticks, a multiple of 5m (default 5m)")
  replay.add_argument("--between", metavar="HH:MM-HH:MM", default=None,
                      help="only the target slots starting in this part of "
                      "the day, e.g. 07:00-10:00 (default: the whole day)")
  replay.add_argument("--model", metavar="VERSION", default=None,
                      help="a pushed version (default: the serving one)")
  replay.add_argument("--no-record", action="store_true",
                      help="score only; write nothing to the replay log")
  replay.set_defaults(handler=_replay)
