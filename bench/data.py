"""Data-layer bench: simulate 10M trips, load them, query one day; peak RSS each.

Usage: python bench/data.py --json [--trips N] [--workdir DIR]

Each step runs in its own subprocess so its peak RSS (ru_maxrss) is its own.
Targets (2 cores): simulate >= 1M trips/s and < 2 GB, load < 60 s,
one-day query < 5 s.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

START = "2024-01-01"
TRIPS_PER_DAY = 62_700  # measured mean at scale 1.0 (trend, weather, events)


def _step(name: str, workdir: Path, trips: int) -> dict:
  """Runs in the child: one step, timed."""
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data.sql import QueryConfig  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  began = time.perf_counter()
  out: dict = {}
  if name == "simulate":
    days = math.ceil(trips / TRIPS_PER_DAY)
    report = simulate.simulate_files(workdir / "trips", START, days, seed=0)
    out["trips"] = report.trips
  elif name == "load":
    with Warehouse(workdir / "w.duckdb") as wh:
      report = wh.load([workdir / "trips"])
      out["loaded"] = report.loaded
  elif name == "query_day":
    with Warehouse(workdir / "w.duckdb", read_only=True) as wh:
      span = wh.newest_span()
      began = time.perf_counter()  # time the query, not the open
      out["rows"] = wh.query_demand(QueryConfig(), span).num_rows
  out["seconds"] = round(time.perf_counter() - began, 3)
  out["peak_rss_mb"] = round(
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true", help="print JSON")
  parser.add_argument("--trips", type=int, default=10_000_000)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.step:
    print(json.dumps(_step(args.step, Path(args.workdir), args.trips)))
    return 0
  if args.workdir:
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="bench-data-",
                                   dir=args.workdir) as tmp:
    results = {}
    for step in ("simulate", "load", "query_day"):
      print(f"bench/data.py: {step} ...", file=sys.stderr, flush=True)
      proc = subprocess.run(
          [sys.executable, __file__, "--step", step, "--workdir", tmp,
           "--trips", str(args.trips)],
          capture_output=True, text=True, check=False)
      if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        return 1
      results[step] = json.loads(proc.stdout.strip().splitlines()[-1])
  trips = results["simulate"]["trips"]
  summary = {
      "simulate_s": results["simulate"]["seconds"],
      "load_s": results["load"]["seconds"],
      "query_day_s": results["query_day"]["seconds"],
      "trips": trips,
      "simulate_trips_per_s": round(trips / results["simulate"]["seconds"]),
      "peak_rss_mb": {s: r["peak_rss_mb"] for s, r in results.items()},
      "targets_met": {
          "simulate_1m_per_s": trips / results["simulate"]["seconds"] >= 1e6,
          "simulate_under_2gb": results["simulate"]["peak_rss_mb"] < 2048,
          "load_under_60s": results["load"]["seconds"] < 60,
          "query_day_under_5s": results["query_day"]["seconds"] < 5,
      },
  }
  if args.json:
    print(json.dumps(summary, indent=2, sort_keys=True))
  else:
    for key, value in summary.items():
      print(f"{key}: {value}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
