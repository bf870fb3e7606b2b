"""`taxi-demand report`: the static HTML report of a home."""

from __future__ import annotations

import argparse
import time

# The runs the page shows unless told otherwise: half a year of daily runs.
REPORT_PAGE = 180

_EPILOG = """\
One self-contained HTML file (figures inlined as SVG, no script, no network),
to open from a file:// URL or a bucket:

  Runs over time     each run's eval-day MAE against seasonal naive and the
                     model serving then; blessed, pushed and refused days,
                     with the reasons
  The serving model  next-day MAE and its trend, served MAE by lead, lineage
  Data checks        drift and skew per feature and day, DataGate's lines
  Demand             the newest day's pickups by cell and hour, forecast
                     against actual for the busiest cells, and the cells on
                     a map coloured by the newest tick's next-slot forecast
  Compare            two runs' metrics and parameters side by side (the
                     `diff` data): --compare, else the newest trained run
                     against the run that pushed the serving model

It reads ML Metadata without TensorFlow, the warehouse as a reader (it waits
behind a running load), and the served log.

The runs and checks sections show the newest {page} runs (half a year of
daily runs) unless --last N or --all says otherwise; the serving model's
next-day history is shown whole.

Examples:
  taxi-demand report
  taxi-demand report --last 30 --out /tmp/report
  taxi-demand report --all
  taxi-demand report --compare 2024-02-10T06 2024-02-11T06
""".format(page=REPORT_PAGE)


def _report(args, home) -> int:
  from taxi_demand.report import build  # noqa: PLC0415
  started = time.monotonic()
  last = None if args.all else (
      REPORT_PAGE if args.last is None else args.last)
  report, path = build.build(home, args.out, last=last,
                             compare=args.compare)
  newest = report.runs[-1]["date"] if report.runs else "n/a"
  shown = (f"the newest {len(report.runs)} of {report.total_runs} runs"
           if len(report.runs) < report.total_runs else
           f"{len(report.runs)} runs")
  print(f"report: {shown} up to {newest}, written in "
        f"{time.monotonic() - started:.1f}s")
  print(path.resolve().as_uri())
  return 0


def register(subparsers, parents) -> None:
  """Adds `report`."""
  p = subparsers.add_parser(
      "report", parents=parents,
      help="write a static HTML report: runs, serving model, data checks, "
      "demand",
      description="Writes DIR/index.html, a static page of the home's runs, "
      "serving model, data checks and demand.", epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", metavar="DIR", default=None,
                 help="folder for index.html (default: HOME/report)")
  shown = p.add_mutually_exclusive_group()
  shown.add_argument("--last", type=int, metavar="N", default=None,
                     help="only the newest N runs in the runs and checks "
                     f"sections (default {REPORT_PAGE})")
  shown.add_argument("--all", action="store_true",
                     help="every run in the runs and checks sections")
  p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                 default=None,
                 help="the two runs of the compare section (run ids, unique "
                 "prefixes or 'last')")
  p.set_defaults(handler=_report, writes_logs=False)
