"""Every valid trips dataset runs to a recorded decision: one daily run per shape.

  .venv/bin/python bench/shapes.py --json                  # every shape, ~25 min
  .venv/bin/python bench/shapes.py --only no_dropoff,tfx_sample --workdir /tmp/s

A shape is valid data that is thin or partial in one way. Each gets a fresh
home over a small simulated city (14 days from 2024-02-26, 0.3x demand,
seed 11) changed that one way, or the real 15k-trip sample that ships with
TFX, and one daily run (`runner_local.py --train-days 3 --train-steps N`,
the gates at their defaults) in a process of its own, as a schedule runs
it. The shapes:

  default        the city as simulated: no probes table rows (probes are
                 optional), every optional column present
  no_dropoff     trips without dropoff columns (no guidance)
  no_taxi_id     trips without taxi_id (no supply from trips)
  no_dropoff_no_taxi_id   both: the public sample's shape on a busy city
  tfx_sample     the TFX sample: ~10 trips a day, no unique_key, no
                 trip_end_timestamp, no taxi_id
  feed_gap       the run's day lacks its trips from 09:00 to 15:00
  dst            2024-03-10, Chicago's spring-forward day, with no trips
                 from 02:00 to 03:00 (that wall-clock hour does not exist)
  slots_60, slots_15     hourly and 15-minute slots
  grid_500       the 500 m grid instead of community areas
  arrival_end5m  trips known 5 minutes after they end

Prints one line per shape on stderr as it finishes (exit code, decision,
reasons, what GuidanceGate said), then one JSON object on stdout: per shape
its exit code, run status, blessed, pushed version, reasons, the checks
decided without, GuidanceGate's measured/reason, and wall seconds; "ok" is
true when every shape reached a recorded decision: exit 0 (blessed or not)
or 3 (the day refused by DataGate), with the decision in ML Metadata. Exit
0 either way; 1 if the bench itself fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

START, DAYS, SEED, SCALE = "2024-02-26", 14, 11, 0.3     # .. 2024-03-10
DAY, DST_DAY = "2024-03-09", "2024-03-10"
GAP_HOURS = (9, 15)
DST_HOUR = 2

# name: (trips columns left out, rows removed as (day, from hour, to hour),
#        runner flags, run day)
SHAPES = {
    "default": ((), None, [], DAY),
    "no_dropoff": (("dropoff",), None, [], DAY),
    "no_taxi_id": (("taxi_id",), None, [], DAY),
    "no_dropoff_no_taxi_id": (("dropoff", "taxi_id"), None, [], DAY),
    "tfx_sample": (None, None, ["--sample"], None),
    "feed_gap": ((), (DAY, *GAP_HOURS), [], DAY),
    "dst": ((), (DST_DAY, DST_HOUR, DST_HOUR + 1), [], DST_DAY),
    "slots_60": ((), None, ["--slot-minutes", "60"], DAY),
    "slots_15": ((), None, ["--slot-minutes", "15"], DAY),
    "grid_500": ((), None, ["--spatial-unit", "grid", "--grid-metres",
                            "500"], DAY),
    "arrival_end5m": ((), None, ["--arrival", "end+5m"], DAY),
}


def say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def city_files(out: Path) -> list:
  """The simulated city's trips and truth files, written once."""
  from taxi_demand.data import simulate  # noqa: PLC0415
  report = simulate.simulate_files(out, START, DAYS, seed=SEED, scale=SCALE)
  return report.files


def shaped_files(files: list, out: Path, without, cut) -> list:
  """The city's files with columns left out and a day's hours cut."""
  import pyarrow.compute as pc  # noqa: PLC0415
  import pyarrow.parquet as pq  # noqa: PLC0415
  from taxi_demand.data import contract  # noqa: PLC0415
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name in files:
    path = Path(name)
    target = out / path.name
    if not path.name.startswith("trips-"):
      shutil.copy(path, target)
      written.append(str(target))
      continue
    table = pq.read_table(path)
    table = table.drop([c for c in contract.optional_columns(without)
                        if c in table.column_names])
    if cut is not None:
      day, begin, end = cut
      midnight = datetime.datetime.fromisoformat(day)
      start = table.column("trip_start_timestamp")
      inside = pc.and_(
          pc.greater_equal(start, pc.cast(
              midnight + datetime.timedelta(hours=begin), start.type)),
          pc.less(start, pc.cast(
              midnight + datetime.timedelta(hours=end), start.type)))
      table = table.filter(pc.invert(inside))
    pq.write_table(table, target)
    written.append(str(target))
  return written


def decision(home) -> dict:
  """What ML Metadata recorded for the home's last run."""
  from taxi_demand.lineage import contract  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  if not home.metadata.exists():
    return {"status": None}
  snap = store.load(home.metadata)
  run = snap.last_run()
  if run is None:
    return {"status": None}
  summary = queries.run_summary(snap, run)
  guidance = snap.run_output(run, contract.GUIDANCE_GATE, contract.RESULT)
  from taxi_demand.lineage.records import GuidanceRecord  # noqa: PLC0415
  gresult = GuidanceRecord.read(guidance) if guidance is not None else None
  failed = [n.node_id for n in run.nodes if n.state == "FAILED"]
  return {"status": summary["status"], "date": summary["date"],
          "blessed": summary["blessed"],
          "pushed_version": summary["pushed_version"],
          "reasons": summary["reasons"],
          "unmeasured": summary["unmeasured"],
          "eval_examples": summary["eval_examples"],
          "mae": summary["mae"],
          "seasonal_naive_mae": summary["seasonal_naive_mae"],
          "guidance_measured": gresult and gresult.measured,
          "guidance_reason": gresult and gresult.reason,
          "failed_nodes": failed}


def run_shape(name: str, base_files: list, workdir: Path, train_steps: int
              ) -> dict:
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  without, cut, flags, day = SHAPES[name]
  home = Home(workdir / name / "home")
  if home.root.exists():
    shutil.rmtree(home.root)
  home.ensure()
  if without is not None:
    files = shaped_files(base_files, workdir / name / "trips", without, cut)
    with wh.Warehouse(home.warehouse) as warehouse:
      warehouse.load(files)
  argv = [sys.executable, str(REPO / "runner_local.py"), "--home",
          str(home.root), "--train-days", "3", "--train-steps",
          str(train_steps), *flags] + (["--date", day] if day else [])
  began = time.monotonic()
  with open(workdir / name / "run.log", "w") as log:
    code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT,
                           cwd=REPO)
  wall = time.monotonic() - began
  out = {"shape": name, "exit": code, "wall_s": round(wall, 1),
         **decision(home)}
  # A recorded decision: the run completed (exit 0) or DataGate refused
  # the day (exit 3), and ML Metadata holds what was decided.
  out["decided"] = bool(
      (code == 0 and out["status"] in ("COMPLETE",) and
       out["blessed"] is not None) or
      (code == 3 and out["status"] == "REFUSED"))
  if not out["decided"]:
    out["log_tail"] = (workdir / name / "run.log").read_text().splitlines(
    )[-5:]
  return out


def line(r: dict) -> str:
  if r["status"] == "REFUSED":
    what = "refused by DataGate"
  elif r.get("blessed") is None:
    what = f"no decision ({r['status']}; failed: {r.get('failed_nodes')})"
  else:
    what = ("blessed, pushed " + str(r["pushed_version"])
            if r["blessed"] else "not blessed")
  extra = f"  [{r['reasons']}]" if r.get("reasons") else ""
  if r.get("guidance_measured") is False:
    extra += "  guidance: not measured"
  return f"{r['shape']:<24} exit {r['exit']}  {what}{extra}  ({r['wall_s']} s)"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", help="comma-separated shapes (default: all)")
  parser.add_argument("--workdir", help="keep the homes here (default: a "
                      "temporary folder, removed)")
  parser.add_argument("--train-steps", type=int, default=300)
  parser.add_argument("--json", action="store_true",
                      help="(the JSON is always printed; accepted for "
                      "`make bench`)")
  args = parser.parse_args(argv)
  names = args.only.split(",") if args.only else list(SHAPES)
  unknown = [n for n in names if n not in SHAPES]
  if unknown:
    say(f"bench/shapes.py: unknown shape {unknown[0]!r}; shapes: "
        f"{', '.join(SHAPES)}")
    return 1
  import taxi_demand  # noqa: F401,PLC0415
  tmp = None
  if args.workdir:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
  else:
    tmp = tempfile.TemporaryDirectory(prefix="taxi-shapes-")
    workdir = Path(tmp.name)
  try:
    say(f"shapes: simulating {DAYS} days from {START} into {workdir}")
    base = city_files(workdir / "city")
    results = []
    for name in names:
      say(f"shapes: {name} ...")
      results.append(run_shape(name, base, workdir, args.train_steps))
      say(line(results[-1]))
  finally:
    if tmp is not None:
      tmp.cleanup()
  print(json.dumps({"shapes": results,
                    "decided": sum(r["decided"] for r in results),
                    "of": len(results),
                    "ok": all(r["decided"] for r in results)}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
