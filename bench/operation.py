"""A month of operation: N days of the real daily run, and how the serving model held up.

  .venv/bin/python bench/operation.py                  # 14 days, ~40 min
  .venv/bin/python bench/operation.py --days 2 --train-steps 50 \\
      --replay-every 30m --workdir /tmp/op   # a quick check of the bench

On a simulated city (the `make run` city: seed 7 from 2024-01-01, made
N days longer), the bench runs the first day D0 = 2024-02-11 on a fresh
home, then D0+1 .. D0+N as `runner_local.py --backfill` runs them: each day
the real daily run (ingest, validate, train, gate, push) in its own child
process. It then reads ML Metadata and the warehouse, and prints one JSON:

  days        per day: blessed or refused, with the run's reasons; the
              candidate's and the serving model's MAE on the eval day, their
              difference and its noise (ForecastGate's paired comparison);
              the serving model's version and age on that day (the day minus
              the day whose run pushed it: 1 when every run pushes); the
              next-day MAE of the model serving on that day against the
              seasonal-naive forecast (same slot last week); beside it, the
              same ratio for the median of the simulator's true rate
              (`true_rate_over_naive`): no forecast can expect to do better
              (per slot it minimises the expected absolute error), so on a
              day where even it is above 0.75 no forecast can be expected
              to meet that target
  busy_cells  the ten cells with the most pickups over the N days: on how
              many days each beat its own seasonal-naive MAE (and on how
              many the true rate's median did)
  replay      served MAE by lead on the last day, from `taxi-demand replay`
              (point in time: each tick reads only what had happened)
  targets     serving model never more than 2 days old; next-day MAE <=
              0.75 x naive on every day; each busy cell beats its naive on
              >= 12 of 14 days (the same share of N); every refusal names
              its cause

With --workdir the home is kept, and a second invocation with the same
--days reuses the days its store already holds (it runs only those
missing), so the analysis can be re-read without re-training.
Progress goes to stderr. Exit 0 whether or not targets are met; 1 on an
error (a run that failed: its log's tail is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BUSY_CELLS = 10
MAX_AGE_DAYS = 2
NAIVE_RATIO = 0.75
BUSY_WINS_SHARE = 12 / 14
# What the runner prints for a refusal whose reason it could not find.
NO_CAUSE = ("", "see the run's log")


class BenchError(Exception):
  """A step of the bench failed; one line."""


def say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _runner(home: Path, args: List[str], log: Path) -> None:
  """runner_local.py with `args` on `home`; a refusal (exit 3) is a day's
  decision, anything else but 0 is an error."""
  cmd = [sys.executable, str(REPO / "runner_local.py"), "--home", str(home),
         *args]
  with open(log, "a") as out:
    out.write(f"$ {' '.join(cmd)}\n")
    out.flush()
    code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                           cwd=REPO)
  if code not in (0, 3):
    tail = log.read_text()[-3000:]
    raise BenchError(f"runner exited {code} ({' '.join(args)}):\n{tail}")


def build_city(home: Path, days: int) -> Dict[str, Any]:
  """The make-run city, `days` days long, in the home's warehouse."""
  from pipeline import local_run  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  path = Home(home).warehouse
  if path.exists():
    with wh.Warehouse(path, read_only=True) as warehouse:
      found = warehouse.span_range()
    return {"reused": True, "days": None if found is None
            else found[1] - found[0] + 1}
  say(f"operation: simulating {days} days from {local_run.DEFAULT_START} "
      f"(seed {local_run.DEFAULT_SEED}) ...")
  path.parent.mkdir(parents=True, exist_ok=True)
  started = time.monotonic()
  with contextlib.redirect_stdout(sys.stderr):
    with wh.Warehouse(path) as warehouse:
      report = simulate.simulate_into(warehouse, start=local_run.DEFAULT_START,
                                      days=days, seed=local_run.DEFAULT_SEED)
  return {"reused": False, "days": days, "trips": report.loaded,
          "seconds": round(time.monotonic() - started, 1)}


def days_on_record(home: Path) -> Dict[int, Dict[str, Any]]:
  """{span: the newest run_summary of a run that trained on that day}."""
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.lineage import contract  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  metadata = Home(home).metadata
  if not metadata.exists():
    return {}
  snap = store.load(metadata)
  out: Dict[int, Dict[str, Any]] = {}
  for run in snap.runs:
    summary = queries.run_summary(snap, run)
    if summary["span"] is None or summary["status"] in ("INGESTED",
                                                        "FAILED", "RUNNING"):
      continue
    gate = snap.run_output(run, contract.DATA_GATE, contract.REPORT)
    report = (Path(gate.uri) / contract.DATA_GATE_FILE) if gate else None
    summary["data_lines"] = (
        json.loads(report.read_text()).get("lines") or []
        if report is not None and report.is_file() else [])
    out[summary["span"]] = summary   # runs() is oldest first
  return out


def run_days(home: Path, first: int, last: int, flags: List[str],
             log: Path) -> float:
  """Runs every day of first..last the store does not hold yet; seconds."""
  from taxi_demand import spans  # noqa: PLC0415
  started = time.monotonic()
  held = days_on_record(home)
  missing = [s for s in range(first, last + 1) if s not in held]
  if not missing:
    say("operation: every day is on record; nothing to run")
    return 0.0
  # A gap is run as one backfill from its first day: the daily order.
  begin = missing[0]
  if begin == first and first not in held:
    say(f"operation: first day {spans.date_of(first)} on a fresh home "
        "(ingests its window) ...")
    _runner(home, ["--date", spans.date_of(first), *flags], log)
    begin += 1
  if begin <= last:
    say(f"operation: backfill {spans.date_of(begin)} .. "
        f"{spans.date_of(last)}, one daily run each (log: {log}) ...")
    _runner(home, ["--backfill", spans.date_of(begin), spans.date_of(last),
                   *flags], log)
  return time.monotonic() - started


def _refusal_cause(summary: Dict[str, Any]) -> Optional[str]:
  """The gate's reasons, or DataGate's anomaly lines for a refused day."""
  lines = summary.get("data_lines") or []
  if summary.get("status") == "REFUSED" and lines:
    return "data validation: " + "; ".join(lines)
  return summary.get("reasons") or None


def judge_days(home: Path, first: int, last: int) -> Dict[str, Any]:
  """The per-day table and the busy cells' record, from ML Metadata and the
  warehouse: the model that served each day scored on that day."""
  import numpy as np  # noqa: PLC0415
  from taxi_demand import features  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.lineage import contract  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  h = Home(home)
  held = days_on_record(home)
  snap = store.load(h.metadata)
  rows, per_cell = [], {}
  for span in range(first + 1, last + 1):
    summary = held.get(span, {})
    row: Dict[str, Any] = {
        "date": spans.date_of(span), "status": summary.get("status"),
        "blessed": summary.get("blessed"),
        "pushed_version": summary.get("pushed_version"),
        "reasons": _refusal_cause(summary) if not summary.get("blessed")
        else None,
        # The candidate against the serving model on the eval day: MAE
        # difference and its noise (ForecastGate's paired comparison).
        "eval_mae": summary.get("mae"),
        "eval_serving_mae": summary.get("baseline_model_mae"),
        "change_mae": summary.get("change_mae"),
        "change_noise": summary.get("change_noise")}
    event = queries.serving_on(snap, span)
    if event is None:
      row.update(serving_version=None, serving_age_days=None)
      rows.append(row)
      continue
    push = queries.push_of(snap, event.version)
    row.update(serving_version=push.version,
               serving_age_days=span - push.span)
    subject = nextday.find_subject(h, span)
    cfg = (subject.params or contract.RunParameters()).query_config()
    columns = nextday.day_columns(h.warehouse, cfg, span)
    predicted = nextday.predict(subject.model_dir, columns)
    labels = columns[features.LABEL]
    naive = columns[features.SEASONAL_NAIVE]
    model_mae = baselines.mae(labels, predicted)
    naive_mae = baselines.mae(labels, naive)
    cells = columns[features.CELL]
    true_rate = true_rate_forecast(h.warehouse, cfg, span, cells,
                                   columns[features.SLOT_START])
    row.update(next_day_mae=round(model_mae, 4),
               next_day_naive_mae=round(naive_mae, 4),
               next_day_over_naive=round(model_mae / naive_mae, 4)
               if naive_mae else None,
               true_rate_over_naive=round(
                   baselines.mae(labels, true_rate) / naive_mae, 4)
               if naive_mae and true_rate is not None else None)
    for cell in np.unique(cells):
      at = cells == cell
      entry = per_cell.setdefault(int(cell), {"pickups": 0.0, "days": []})
      entry["pickups"] += float(np.sum(labels[at]))
      entry["days"].append((
          row["date"], baselines.mae(labels[at], predicted[at]),
          baselines.mae(labels[at], naive[at]),
          None if true_rate is None else baselines.mae(labels[at],
                                                       true_rate[at])))
    rows.append(row)
    say(f"  {row['date']}: {row['status']}, serving {push.version} "
        f"(age {row['serving_age_days']} d), next-day MAE "
        f"{model_mae:.3f} vs naive {naive_mae:.3f}")
  busiest = sorted(per_cell, key=lambda c: -per_cell[c]["pickups"])
  busy = []
  for cell in busiest[:BUSY_CELLS]:
    days = per_cell[cell]["days"]
    busy.append({
        "cell": cell, "pickups": round(per_cell[cell]["pickups"]),
        "days_beating_naive": sum(m < n for _, m, n, _ in days),
        "days_true_rate_beating_naive": (
            None if any(t is None for *_, t in days)
            else sum(t < n for _, _, n, t in days)),
        "days_losing": [d for d, m, n, _ in days if m >= n],
        "days": len(days),
        "mae": round(float(np.mean([m for _, m, _, _ in days])), 4),
        "seasonal_naive_mae": round(float(np.mean([n for _, _, n, _ in days])),
                                    4)})
  return {"days": rows, "busy_cells": busy}


def replay_last(home: Path, span: int, every: str) -> Dict[str, Any]:
  """`taxi-demand replay` of day `span`, without recording it."""
  from taxi_demand import spans  # noqa: PLC0415
  say(f"operation: replaying {spans.date_of(span)} every {every} ...")
  cmd = [str(Path(sys.executable).parent / "taxi-demand"), "--home",
         str(home), "replay", "--date", spans.date_of(span), "--every",
         every, "--no-record", "--json"]
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  if done.returncode != 0:
    # Nothing to replay (no model was ever pushed) is a finding, not an
    # error of the bench: the JSON says so.
    return {"error": done.stderr.strip()[-2000:] or
            f"replay exited {done.returncode}"}
  return json.loads(done.stdout)


def true_rate_forecast(warehouse: Path, cfg, span: int, cells, slots):
  """The Poisson median of the simulator's true rate for each (cell, slot),
  or None where the warehouse holds no truth (real trips) or cells are not
  community areas (the truth's unit)."""
  import numpy as np  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data.sql import SpatialUnit  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.modeling import model as model_lib  # noqa: PLC0415
  from taxi_demand.testing import benches  # noqa: PLC0415
  if cfg.spatial_unit is not SpatialUnit.COMMUNITY_AREA:
    return None
  begin = spans.start_of(span)
  with Warehouse(warehouse, read_only=True) as wh:
    truth = benches.true_rates(wh, begin, begin + 24 * 3600, cfg.slot_seconds)
  if truth.empty:
    return None
  rate = {(int(c), int(s)): float(r) for c, s, r in zip(
      truth["cell"], truth["slot_start"], truth["rate"])}
  rates = np.array([rate.get((int(c), int(s)), 0.0)
                    for c, s in zip(cells, slots)])
  return model_lib.poisson_median(rates).numpy()


def _target(value, limit, ok) -> Dict[str, Any]:
  return {"value": value, "limit": limit, "ok": bool(ok)}


def targets(judged: Dict[str, Any], n_days: int) -> Dict[str, Any]:
  rows = judged["days"]
  ages = [r["serving_age_days"] for r in rows]
  ratios = [r.get("next_day_over_naive") for r in rows]
  true_ratios = [r.get("true_rate_over_naive") for r in rows]
  need = math.ceil(BUSY_WINS_SHARE * n_days)
  wins = [c["days_beating_naive"] for c in judged["busy_cells"]]
  refusals = [r for r in rows if r["blessed"] is not True]
  uncaused = [r["date"] for r in refusals
              if (r["reasons"] or "").strip() in NO_CAUSE]
  next_day = _target(
      None if None in ratios else max(ratios, default=None), NAIVE_RATIO,
      None not in ratios and max(ratios, default=0) <= NAIVE_RATIO)
  # What the simulator's true rate reaches on the same days: on a day where
  # it is above the limit, no forecast can be expected to meet it.
  next_day["true_rate_value"] = (None if None in true_ratios
                                 else max(true_ratios, default=None))
  return {
      "serving_age_max_days": _target(
          None if None in ages else max(ages, default=None), MAX_AGE_DAYS,
          None not in ages and max(ages, default=0) <= MAX_AGE_DAYS),
      "next_day_over_naive_max": next_day,
      "busy_cells_min_days_beating_naive": _target(
          min(wins, default=None), need, bool(wins) and min(wins) >= need),
      "refusals_without_cause": _target(uncaused, [], not uncaused),
  }


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n", 1)[0],
      epilog=__doc__.split("\n\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--days", type=int, default=14,
                      help="days of operation after the first (default 14)")
  parser.add_argument("--workdir", type=Path,
                      help="keep the home here, and reuse it (default: a "
                           "temporary folder, deleted)")
  parser.add_argument("--train-steps", type=int,
                      help="the first run's training steps (default: the "
                           "model's); later runs warm-start")
  parser.add_argument("--warm-start-steps", type=int,
                      help="steps of the warm-started daily runs (default: "
                           "the runner's)")
  parser.add_argument("--json", action="store_true",
                      help="(the output is always one JSON object; for "
                           "`make bench`)")
  parser.add_argument("--replay-every", default="5m",
                      help="the replay's tick interval (default 5m, as the "
                           "5-minute job)")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.days < 1:
    say("operation: --days must be >= 1")
    return 1
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  from pipeline import local_run  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  first = spans.span_of(local_run.DEFAULT_START) + local_run.DEFAULT_DAYS - 1
  last = first + args.days
  flags = []
  if args.train_steps:
    flags += ["--train-steps", str(args.train_steps)]
  if args.warm_start_steps is not None:
    flags += ["--warm-start-steps", str(args.warm_start_steps)]
  with contextlib.ExitStack() as stack:
    work = args.workdir or Path(stack.enter_context(
        tempfile.TemporaryDirectory(prefix="taxi-operation-")))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    started = time.monotonic()
    try:
      city = build_city(home, local_run.DEFAULT_DAYS + args.days)
      run_s = run_days(home, first, last, flags, work / "runs.log")
      judged = judge_days(home, first, last)
      replay = replay_last(home, last, args.replay_every)
    except BenchError as e:
      say(f"operation: {e}")
      return 1
    result = {
        "bench": "operation", "operation_days": args.days,
        "first_day": spans.date_of(first), "last_day": spans.date_of(last),
        "flags": flags, "city": city, "run_seconds": round(run_s, 1),
        "blessed_days": sum(r["blessed"] is True for r in judged["days"]),
        "refused_days": [{"date": r["date"], "reason": r["reasons"]}
                         for r in judged["days"] if r["blessed"] is not True],
        **judged,
        "replay": {k: replay.get(k) for k in (
            "date", "model_version", "ticks", "by_lead",
            "complete_information_mae", "seasonal_naive_mae", "error")
                   if k in replay},
        "targets": targets(judged, args.days),
        "seconds": round(time.monotonic() - started, 1),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
    }
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
