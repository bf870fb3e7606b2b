"""`taxi-demand recommend`: where an idle taxi should wait."""

from __future__ import annotations

import argparse
import csv

_EPILOG = """\
For an idle taxi in CELL at --at, every reachable cell is ranked by the
pickups forecast there between the taxi's arrival and --horizon minutes
ahead, shared with the idle taxis already there. Those are known from probe
pings where the warehouse has pings near --at (the newest fresh ping is
unoccupied), else from trips (dropped off, not picked up since). With
--supply forecast (the default) the taxis expected to become idle there
within 20 minutes count too: trips under way to the cell by their expected
end, and arrivals learned from the four weeks before; --supply idle-now
counts the idle taxis only. Driving time counts against a cell: a far one
must be worth more. The taxi stays unless another cell is.

Forecasts are those the 5-minute job served at the newest tick at or before
--at when they cover every slot of --horizon (serve with `predict --every
5m --horizon 2` for the default hour), else the serving model's at that
tick. Travel time is the straight line between the cells' located pickups
at --speed, or --travel-times.
Every recommendation is recorded with the model version that made it, under
HOME/guidance/.

Bulk: --idle FILE (CSV with taxi_id,cell) or --all-idle (every taxi idle at
--at, from probes or trips) places the taxis one after another, each
seeing where the ones before it went.

Examples:
  taxi-demand recommend --at 2024-02-10T08:00 --cell 8
  taxi-demand recommend --at 2024-02-10T08:00 --cell 8 --json --top 10
  taxi-demand recommend --at 2024-02-10T08:00 --idle idle.csv --json
  taxi-demand recommend --at 2024-02-10T08:00 --all-idle --speed 15
"""


def _read_idle(path: str):
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  try:
    with open(path, newline="") as f:
      rows = list(csv.DictReader(f))
  except OSError as e:
    raise TaxiDemandError(f"cannot read --idle {path}: {e.strerror}") from None
  if not rows or not {"taxi_id", "cell"} <= set(rows[0]):
    raise TaxiDemandError(
        f"--idle {path} needs a header with taxi_id,cell and one row per "
        "idle taxi")
  ids, cells = [], []
  for line, row in enumerate(rows, start=2):
    try:
      cells.append(int(row["cell"]))
    except (TypeError, ValueError):
      raise TaxiDemandError(
          f"--idle {path}, line {line}: cell must be an integer, got "
          f"{row['cell']!r}") from None
    ids.append(row["taxi_id"])
  return ids, cells


def _recommend(args, home) -> int:
  from taxi_demand.cli import print_json  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import recommend  # noqa: PLC0415
  at = predict.parse_at(args.at) if args.at is not None else \
      predict.now_epoch()
  if not 5 <= args.horizon <= 180:
    raise TaxiDemandError(
        f"--horizon must be 5..180 minutes, got {args.horizon}")
  if args.cell is not None:
    ids, cells = [args.taxi_id or "taxi-1"], [args.cell]
  elif args.idle is not None:
    ids, cells = _read_idle(args.idle)
  else:
    cfg = predict.LoadedModel(home, args.model).cfg
    ids, cells, supply = recommend.idle_taxis(home, cfg, at)
    if not ids:
      why = ("no fresh unoccupied ping" if supply == "probes" else
             "the trips before it carry no taxi_id, or none has dropped off "
             "within 2 hours")
      raise TaxiDemandError(
          f"no taxi is known idle at {predict.format_epoch(at)} ({supply}: "
          f"{why}); pass --cell or --idle")
  from taxi_demand import supply as supply_forecast  # noqa: PLC0415
  result = recommend.recommend(
      home, at, cells, ids, version=args.model, speed_kmh=args.speed,
      travel_table=args.travel_times, horizon_minutes=args.horizon,
      top=args.top if args.cell is not None else 0,
      basis=supply_forecast.Basis(args.supply))
  if args.json:
    print_json(result.to_dict())
    return 0
  f = result.forecasts
  print(f"forecasts issued {predict.format_epoch(f.issued_at)} by "
        f"{f.model_version} ({f.source}); {result.idle_known} idle taxis "
        f"known from {result.supply}, {result.arriving:.1f} expected idle "
        f"soon (supply: {result.basis.value})")
  if result.ranking is not None:
    print(f"  {'cell':>6}  {'drive min':>9}  {'pickups/taxi':>12}  idle")
    for row in result.ranking:
      print(f"  {row['cell']:>6}  {row['travel_minutes']:>9.1f}  "
            f"{row['expected_pickups']:>12.3f}  {row['idle_taxis']}")
  for taxi, choice in zip(result.taxi_ids, result.choices):
    verb = "stay in" if choice.to_cell == choice.from_cell else "go to"
    print(f"{taxi}: {verb} cell {choice.to_cell} "
          f"({choice.travel_minutes:.0f} min, {choice.expected_pickups:.2f} "
          f"pickups per idle taxi, {choice.stay_pickups:.2f} staying)")
  return 0


def register(subparsers, parents) -> None:
  """Adds `recommend`."""
  from taxi_demand.arguments import count  # noqa: PLC0415 - argparse only
  from taxi_demand.arguments import number  # noqa: PLC0415
  from taxi_demand.cli import json_parent  # noqa: PLC0415 - argparse only
  p = subparsers.add_parser(
      "recommend", parents=parents + [json_parent()],
      help="tell an idle taxi where to wait: forecast demand per idle taxi, "
      "net of the drive",
      description="Driver guidance from the served forecasts and the idle "
      "taxis known from probes or trips.", epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--at", metavar="TIMESTAMP", default=None,
                 help="the moment (YYYY-MM-DD[THH:MM], city wall clock; "
                 "default: now)")
  which = p.add_mutually_exclusive_group(required=True)
  which.add_argument("--cell", type=int, metavar="C",
                     help="one idle taxi, in this cell")
  which.add_argument("--idle", metavar="FILE",
                     help="idle taxis: CSV with taxi_id,cell")
  which.add_argument("--all-idle", action="store_true",
                     help="every taxi idle at --at, from probes or trips")
  p.add_argument("--taxi-id", default=None, help="with --cell: its id")
  p.add_argument("--top", type=count(1), default=5, metavar="K",
                 help="with --cell: rank the K best cells (default 5)")
  p.add_argument("--horizon", type=int, default=60, metavar="MINUTES",
                 help="how far ahead pickups count (default 60)")
  p.add_argument("--supply", choices=("forecast", "idle-now"),
                 default="forecast",
                 help="share a cell's pickups with the taxis idle there and "
                 "those expected idle soon (forecast, the default), or with "
                 "those idle now only")
  p.add_argument("--speed", type=number(positive=True), default=20.0,
                 metavar="KMH",
                 help="straight-line driving speed (default 20 km/h)")
  p.add_argument("--travel-times", metavar="FILE", default=None,
                 help="CSV from_cell,to_cell,minutes instead of straight "
                 "lines (pairs it lacks are unreachable)")
  p.add_argument("--model", metavar="VERSION", default=None,
                 help="a pushed version (default: the serving one)")
  p.set_defaults(handler=_recommend)
