"""`taxi-demand load` and `taxi-demand simulate`: trips into the warehouse."""

from __future__ import annotations

import argparse
import sys

from taxi_demand.data import contract

_LOAD_EPILOG = f"""\
Every row read is either loaded or quarantined (table `quarantine`, with the
rule it broke and its raw text): read = loaded + quarantined. A CSV row the
reader cannot split into the header's columns (too many or too few fields,
an unterminated quote, a line over 2,000,000 bytes, invalid UTF-8) is one
row read, quarantined as malformed_row, and the rest of its file loads. A
file already loaded (same bytes) is skipped, so loading twice adds nothing.
A file that is not a trips file at all (empty, binary, wrong delimiter, a
header missing a required column or with a repeated or empty name) stops the
load with one line naming it, and nothing is written.

Timestamps must lie from {contract.EARLIEST_TIMESTAMP:%Y-%m-%d} up to \
(not including) {contract.TIMESTAMP_LIMIT:%Y-%m-%d}, else
the row is quarantined as timestamp_out_of_range. A timestamp with a
non-zero UTC offset (2024-02-10T08:00-06:00) is converted to Chicago wall
clock; one labelled UTC or +00:00 is Chicago wall clock already, as in
BigQuery's export of the public table.

Values must be finite and within reach of a taxi (trip_miles up to \
{contract.MAX_TRIP_MILES:,.0f},
trip_seconds up to {contract.MAX_TRIP_SECONDS:,}, money columns within \
+/-{contract.MAX_DOLLARS:,.0f}), else the row
is quarantined as value_out_of_range.

A Parquet file with community_area, slot_start and intensity, and no
trip_start_timestamp, is simulator truth (`simulate` writes truth-*.parquet)
and fills the `truth` table, whatever its name. A truth row already loaded
is never changed: a file that would change one is refused.

Probes, an operator's vehicle pings, are optional. A file whose header has
no trip_start_timestamp but vehicle_id, ping_timestamp or occupied is a
probes file: it needs vehicle_id, ping_timestamp, latitude, longitude and
occupied (true/false, t/f, 1/0, yes/no), and may give community_area. Its
rows load into `probes` or go to the same quarantine, by rules of their own
(bad_timestamp, timestamp_out_of_range, missing_vehicle_id,
position_outside_chicago, community_area_out_of_range, bad_occupied_flag,
duplicate_ping). Where
probes cover a moment, `recommend` counts idle taxis from them instead of
from trips.

A load is one transaction: killed part-way, it leaves the warehouse as it
was, and the same files load again whole. It may run while the 5-minute job,
the daily run and other commands read the warehouse: it waits for the
readers already in (new ones wait for it), up to $TAXI_DEMAND_LOCK_WAIT
seconds (300), then fails in one line naming the processes in its way.

Examples:
  taxi-demand load trips/
  taxi-demand load .venv/lib/python3.10/site-packages/tfx/examples/\\
chicago_taxi_pipeline/data/simple/data.csv
  taxi-demand load a.csv b.parquet --json
  taxi-demand load pings-2024-02-10.csv
"""

_SIMULATE_EPILOG = """\
Trips are Poisson draws from a known intensity per community area and
15-minute slot, calibrated on the real Chicago sample. The intensity goes to
truth-*.parquet next to the trips: the oracle forecast any model should
approach. Same --seed, same trips.

A fleet drives them: each trip goes to the taxi idle longest in its pickup
area, else the nearest idle one within 15 minutes' drive, else a taxi
starting its shift, and waits empty at the dropoff. Trips carry its
taxi_id (s<seed>-<day>-t<k>; each day's fleet starts at midnight). With
--pings SECONDS, every taxi on shift also pings its position and occupied
flag that often, to probes-*.parquet, which `load` puts in the `probes`
table (at 60 s, about 35 pings per trip).

Drift (--drift), clauses joined by ';', each from a day onwards:
  area=8:x3@2024-02-05          area 8's demand times 3 (sudden)
  area=8:x3/14d@2024-02-05      ramps linearly to x3 over 14 days (gradual)
  area=8:drop@2024-02-05        area 8 has no more trips
  weekend=swap@2024-02-05       weekdays get the weekend profile, and back
  coords=0.01,-0.02@2024-02-05  pickup coordinates shift by degrees

Examples:
  taxi-demand simulate --start 2024-01-01 --days 35 --out trips/
  taxi-demand load trips/
  taxi-demand simulate --start 2024-01-01 --days 42 --seed 7 --load
  taxi-demand simulate --start 2024-02-01 --days 7 --pings 60 --load
  taxi-demand simulate --start 2024-01-01 --days 42 --out drifted/ \\
      --drift 'area=8:x3@2024-02-05;area=32:x2/14d@2024-02-01'
"""


def _progress(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _load(args, home) -> int:
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  path = home.local_warehouse("taxi-demand load")
  home.ensure()
  with Warehouse(path) as wh:
    report = wh.load(args.paths, progress=_progress)
    _print_report(args, report, wh)
  return 0


def _print_report(args, report, wh) -> None:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.data.warehouse import shown  # noqa: PLC0415
  if args.json:
    cli.print_json({**report.to_dict(), "warehouse": str(wh.path),
                    "span_range": wh.span_range()})
    return
  if report.read or not report.probes_read:
    print(f"read {report.read:,}  loaded {report.loaded:,}  "
          f"quarantined {report.quarantined:,}")
    for rule, n in report.per_rule.items():
      if n:
        print(f"  {rule}: {n:,}")
  for path in report.skipped:
    print(f"  already loaded, skipped: {shown(path)}")
  if report.probes_read:
    print(f"probes: read {report.probes_read:,}  loaded "
          f"{report.probes_loaded:,}  quarantined "
          f"{report.probes_quarantined:,}")
    for rule, n in report.probes_per_rule.items():
      if n:
        print(f"  {rule}: {n:,}")
  if report.truth_rows:
    print(f"truth rows {report.truth_rows:,}")
  spans = wh.span_range()
  if spans:
    from taxi_demand.spans import day_of  # noqa: PLC0415
    print(f"warehouse {shown(wh.path)}: trips from {day_of(spans[0])} to "
          f"{day_of(spans[1])} (spans {spans[0]}..{spans[1]})")


def _simulate(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  from taxi_demand.data.warehouse import shown  # noqa: PLC0415
  if args.out is None and not args.load:
    raise TaxiDemandError("give --out DIR to write files, or --load to load "
                          "straight into the warehouse")
  if args.out is not None:
    report = simulate.simulate_files(args.out, args.start, args.days,
                                     seed=args.seed, scale=args.scale,
                                     drift=args.drift, progress=_progress,
                                     pings_every_s=args.pings,
                                     without=args.without)
    if args.json and not args.load:
      cli.print_json(report.to_dict())
    elif not args.load:
      pings = f", {report.pings:,} pings" if report.pings else ""
      print(f"simulated {report.trips:,} trips{pings} over {report.days} "
            f"days by up to {report.taxis:,} taxis a day in "
            f"{report.seconds:.1f}s -> {', '.join(map(shown, report.files))}")
      print(f"next: taxi-demand load {shown(args.out)}")
  if args.load:
    from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
    path = home.local_warehouse("taxi-demand simulate --load")
    home.ensure()
    with Warehouse(path) as wh:
      if args.out is not None:
        load_report = wh.load([args.out], progress=_progress)
      else:
        load_report = simulate.simulate_into(
            wh, args.start, args.days, seed=args.seed, scale=args.scale,
            drift=args.drift, progress=_progress, pings_every_s=args.pings,
            without=args.without)
      _print_report(args, load_report, wh)
  return 0


def register(subparsers, parents) -> None:
  """Adds `load` and `simulate`."""
  from taxi_demand.arguments import count  # noqa: PLC0415 - argparse only
  load = subparsers.add_parser(
      "load", parents=parents, help="load trips (CSV/Parquet) into the warehouse",
      description="Load Chicago-schema trips into the warehouse, checking "
      "every row.", epilog=_LOAD_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  load.add_argument("paths", nargs="+", metavar="PATH",
                    help="CSV or Parquet files, or folders of them")
  load.add_argument("--json", action="store_true",
                    help="print machine-readable JSON instead of a table")
  load.set_defaults(handler=_load)

  sim = subparsers.add_parser(
      "simulate", parents=parents,
      help="write calibrated simulated trips (and their true intensity)",
      description="Simulate Chicago taxi trips with a known intensity.",
      epilog=_SIMULATE_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  sim.add_argument("--start", required=True, metavar="DATE",
                   help="first day, YYYY-MM-DD")
  sim.add_argument("--days", required=True, type=int, metavar="N",
                   help="number of days")
  sim.add_argument("--seed", type=count(0), default=0, help="random seed (0)")
  sim.add_argument("--scale", type=float, default=1.0,
                   help="demand multiplier; 1.0 is ~60k trips a day")
  sim.add_argument("--drift", metavar="SPEC", default=None,
                   help="inject a change from a day on (see below)")
  sim.add_argument("--pings", type=int, metavar="SECONDS", default=None,
                   help="also write the fleet's probe pings, one per taxi "
                   "this often (10..3600; default: no pings)")
  sim.add_argument("--without", metavar="COLUMNS", default=[],
                   type=lambda v: [c for c in v.split(",") if c.strip()],
                   help="leave optional columns out of the trips, as a feed "
                   "that lacks them: 'dropoff' (every dropoff column; no "
                   "guidance then), 'taxi_id' (no supply from trips), or "
                   "column names, comma-separated")
  sim.add_argument("--out", metavar="DIR", default=None,
                   help="folder for trips-*.parquet and truth-*.parquet")
  sim.add_argument("--load", action="store_true",
                   help="also load the result into the warehouse")
  sim.add_argument("--json", action="store_true",
                   help="print machine-readable JSON")
  sim.set_defaults(handler=_simulate)
