"""Crash at every point: the daily run, the load and the 5-minute job, each
killed at every named crash point (taxi_demand.faults), then restarted.

  .venv/bin/python bench/kills.py --json --workdir /tmp/kills   # ~60 min
  .venv/bin/python bench/kills.py --only load,job,pusher         # minutes
  .venv/bin/python bench/kills.py --only run --nodes Trainer,Pusher

Each point runs on a fresh copy of a prepared home, in processes of their
own. TAXI_DEMAND_CRASH_AT makes the process SIGKILL itself exactly there (no
cleanup, as kill -9 or a power loss); then the work is restarted as an
operator would, and the outcome is compared with the same work done without
a kill. Groups (--only):

  run     the daily run of D (2024-03-09) on a home that ran D-1 (and, if
          D-1 pushed a model, served D's morning): killed as each node
          starts (node.start.<id>) and once its execution is RUNNING
          (node.inside.<id>; --with-end adds node.end.<id>: its executor
          returned, its outputs not yet published), then `--resume` until it
          exits. Matches when it ends (exit 0 or 3) in the decision of the
          uninterrupted run (blessed or refused, with the same reasons, their
          figures aside: a resumed run retrains, not bit for bit,
          pushed or not), its model trained on the same days with the
          same examples, no execution is left RUNNING, no node executed
          twice (a node before the kill point is reused, the killed one
          runs once more), and the registry's serving version is the one
          ML Metadata records, with no version it does not know.
  ingest  the first run on a new home, killed in its window's ingest runs
          (the first day's ExampleGen as it starts and inside, DataGate
          inside, and the schema's import inside, which later runs take
          from the cache), then `--resume`; the same checks against the
          uninterrupted first run.
  pusher  the Pusher between moving the registry and ML Metadata's record
          (pusher.moved), then `--resume`; the same checks.
  load    `taxi-demand load` killed before, inside and just after its
          transaction, then the same load again. Matches when trips,
          quarantine and the loads record equal one clean load's.
  job     the 5-minute job (D+1's afternoon, the model D's run pushed)
          killed while writing a tick's file (after the
          write, before the rename) and just after publishing one, then
          restarted. Matches when every tick is served exactly once, and a
          served tick's rows equal a clean job's for that tick.

Prints one line per point on stderr as it finishes (and appends its result
to WORKDIR/results.jsonl, so a matrix stopped early keeps what it found),
then one JSON object:
each point's outcome and what did not match, "matched" and "points", and
"ok" when every point matched. Exit 0 either way; 1 if the setup fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import taxi_demand  # noqa: E402,F401  (before TensorFlow)

START, DAYS, SEED, SCALE = "2024-03-01", 10, 11, 0.3     # .. 2024-03-10
# D is a day this city's model is blessed on, so the Pusher's point is
# reached (on 2024-03-10, a Sunday, seasonal naive wins and nothing pushes).
DAY_BEFORE, DAY, DAY_AFTER = "2024-03-08", "2024-03-09", "2024-03-10"
FLAGS = ["--train-days", "3", "--train-steps", "300", "--naive-margin", "0",
         "--cell-margin", "1.0"]
SERVED = ("2024-03-09T07:00", 6)      # the job's morning of D: 6 ticks
NODES = ("ExampleGen", "StatisticsGen", "SchemaGen", "CuratedSchema",
         "ExampleValidator", "DataGate", "Transform", "Trainer", "Evaluator",
         "GuidanceGate", "ForecastGate", "Pusher", "NextDayValidator",
         "SkewValidator")
# CuratedSchema's import executes only in a home's first run (a cache hit
# after): its inside point is reached here, never in the run group.
INGEST_POINTS = ("node.start.ExampleGen", "node.inside.ExampleGen",
                 "node.inside.DataGate", "node.inside.CuratedSchema")
LOAD_POINTS = ("load.before", "load.inside", "load.after")
JOB_POINTS = ("servelog.written", "servelog.published")
GROUPS = ("run", "ingest", "pusher", "load", "job")
MAX_RESUMES = 3


def say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def run(argv, log: Path, crash: str = "", timeout: float = 1800) -> int:
  env = dict(os.environ)
  env.pop("TAXI_DEMAND_CRASH_AT", None)
  if crash:
    env["TAXI_DEMAND_CRASH_AT"] = crash
  with open(log, "a") as out:
    out.write(f"$ {' '.join(map(str, argv))}  # crash at {crash or '-'}\n")
    out.flush()
    return subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT,
                           env=env, cwd=REPO, timeout=timeout)


def cli(home, *args) -> list:
  return [sys.executable, "-m", "taxi_demand", "--home", str(home.root),
          *args]


def runner(home, *args) -> list:
  return [sys.executable, str(REPO / "runner_local.py"), "--home",
          str(home.root), *FLAGS, *args]


def copy_home(src, dst: Path):
  from taxi_demand.home import Home  # noqa: PLC0415
  if dst.exists():
    shutil.rmtree(dst)
  shutil.copytree(src.root, dst, symlinks=True)
  return Home(dst)


# --- what a run leaves ------------------------------------------------------------


def outcome(home, span: int) -> dict:
  """The day's decision and the state checks, from ML Metadata and the
  registry."""
  from taxi_demand.testing import live  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  snap = store.load(home.metadata)
  runs = [r for r in snap.runs if queries.run_span(snap, r) == span]
  last = queries.run_summary(snap, runs[-1]) if runs else {}
  executed = {}
  for r in runs:
    for n in r.nodes:
      if n.node_id in NODES and n.state == "COMPLETE":
        executed[n.node_id] = executed.get(n.node_id, 0) + 1
  recorded = {p.version for p in queries.pushes(snap)}
  return {
      "trained_on": trained_on(snap, runs),
      "status": last.get("status"), "blessed": last.get("blessed"),
      "reasons": last.get("reasons"),
      "pushed": bool(last.get("pushed_version")),
      "executed_twice": sorted(k for k, v in executed.items() if v > 1),
      "left_running": live.running_executions(home),
      "serving": registry.serving_version(home.models),
      "serving_recorded": queries.serving_version(snap),
      "unrecorded_versions": sorted(set(registry.versions(home.models)) -
                                    recorded),
  }


def trained_on(snap, runs) -> list:
  """[[span, examples], ...]: the days the day's model was trained on, by
  the last Trainer that ran in `runs` (a resumed run's reused Trainer
  records no inputs), each with the examples DataGate counted in it."""
  from taxi_demand.lineage import contract  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  ran = [n for r in runs for n in r.nodes
         if n.node_id == contract.TRAINER and n.state == "COMPLETE"]
  if not ran:
    return []
  days = snap.inputs(ran[-1].execution_id).get(contract.EXAMPLES, [])
  return sorted([a.span, queries.examples_count(snap, a)] for a in days)


def same_reasons(a: str, b: str) -> bool:
  """The same reasons, figures aside: a resumed run retrains, and
  TensorFlow's training is not bit-identical from one process to the next
  (MAE 2.0993 against 2.0966), so the decision and which checks refused it
  must match, not the third decimal."""
  figure = re.compile(r"-?\d+\.\d+")
  return figure.sub("#", a or "") == figure.sub("#", b or "")


def mismatches(got: dict, want: dict, code: int) -> list:
  out = []
  if code not in (0, 3):
    out.append(f"exit {code}")
  for key in ("status", "blessed", "pushed"):
    if got[key] != want[key]:
      out.append(f"{key} {got[key]!r} != {want[key]!r}")
  if not same_reasons(got["reasons"], want["reasons"]):
    out.append(f"reasons {got['reasons']!r} != {want['reasons']!r}")
  if got["trained_on"] != want["trained_on"]:
    out.append(f"trained on {got['trained_on']} != {want['trained_on']}")
  if got["executed_twice"]:
    out.append(f"executed twice: {', '.join(got['executed_twice'])}")
  if got["left_running"]:
    out.append(f"{got['left_running']} executions left RUNNING")
  if got["serving"] != got["serving_recorded"]:
    out.append(f"registry serves {got['serving']}, ML Metadata says "
               f"{got['serving_recorded']}")
  if got["unrecorded_versions"]:
    out.append(f"versions ML Metadata does not know: "
               f"{got['unrecorded_versions']}")
  return out


def crash_then_resume(home, args_, crash: str, log: Path) -> tuple:
  """(exit code of the last process, kills, resumes)."""
  code = run(runner(home, *args_), log, crash)
  if code != -signal.SIGKILL:
    return code, 0, 0  # the point was not reached
  resumes = 0
  while resumes < MAX_RESUMES:
    resumes += 1
    code = run(runner(home, "--resume"), log)
    if code != -signal.SIGKILL:
      break
  return code, 1, resumes


# --- setup ------------------------------------------------------------------------


def setup(root: Path, reference: bool = True) -> dict:
  """An empty home with the city; the same after D-1's run and D's served
  morning; the uninterrupted outcomes of both runs (D's only if
  `reference`). Kept in the workdir (setup.json) and reused by a later
  call on the same --workdir."""
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  logs = root / "logs"
  logs.mkdir(parents=True, exist_ok=True)
  saved = root / "setup.json"
  ready = json.loads(saved.read_text()) if saved.is_file() else {}
  empty, served = Home(root / "empty"), Home(root / "served")
  if "first" not in ready:
    empty.ensure()
    with wh.Warehouse(empty.warehouse) as warehouse:
      simulate.simulate_into(warehouse, START, DAYS, seed=SEED, scale=SCALE)
    say(f"setup: {DAYS} days from {START} simulated; the first run, of "
        f"{DAY_BEFORE}")
    copy_home(empty, served.root)
    first_s = daily_run(served, DAY_BEFORE, logs / "setup.log")
    at, ticks = SERVED
    if registry.serving_version(served.models) is not None:
      job(served, at, logs / "setup.log", "", ticks)
    say(f"setup: {DAY_BEFORE} ran in {first_s:.0f} s; {DAY}'s morning "
        "served" if registry.serving_version(served.models) else
        f"setup: {DAY_BEFORE} ran in {first_s:.0f} s, pushed nothing: no "
        f"morning of {DAY} to serve")
    ready.update(first=outcome(served, spans.parse_span(DAY_BEFORE)),
                 first_run_s=round(first_s, 1))
    saved.write_text(json.dumps(ready))
  if reference and "reference" not in ready:
    say(f"setup: the uninterrupted run of {DAY}")
    home = copy_home(served, root / "reference")
    day_s = daily_run(home, DAY, logs / "reference.log")
    ready.update(reference=outcome(home, spans.parse_span(DAY)),
                 day_run_s=round(day_s, 1))
    saved.write_text(json.dumps(ready))
  if "trained_on" not in ready.get("first", {"trained_on": 0}):
    # A setup kept by an older bench: what its runs trained on, from them.
    ready["first"] = outcome(served, spans.parse_span(DAY_BEFORE))
    if "reference" in ready:
      ready["reference"] = outcome(Home(root / "reference"),
                                   spans.parse_span(DAY))
    saved.write_text(json.dumps(ready))
  return {**ready, "empty": empty, "served": served}


def daily_run(home, day: str, log: Path) -> float:
  """An uninterrupted daily run of `day`; its wall seconds."""
  began = time.monotonic()
  code = run(runner(home, "--date", day), log)
  if code not in (0, 3):
    raise RuntimeError(f"the uninterrupted run of {day} exited {code}; see "
                       f"{log}")
  return time.monotonic() - began


# --- the groups -------------------------------------------------------------------


def run_points(group: str, ready: dict, root: Path, points, base_key: str,
               want_key: str, args_: list, span: int,
               keep_homes: bool = False) -> list:
  """Each of `points` on a copy of ready[base_key], against
  ready[want_key]; the copies are kept under root/points if `keep_homes`."""
  results = []
  for point in points:
    # By group: the ingest and run groups share point names.
    home = copy_home(ready[base_key], root / "points" / group / point)
    log = root / "logs" / group / f"{point}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    code, kills, resumes = crash_then_resume(home, args_, point, log)
    if not kills:
      result = {"group": group, "point": point, "reached": False,
                "exit": code,
                "matched": code in (0, 3), "why": [] if code in (0, 3) else
                [f"exit {code}"]}
    else:
      why = mismatches(outcome(home, span), ready[want_key], code)
      result = {"group": group, "point": point, "reached": True,
                "exit": code,
                "resumes": resumes, "matched": not why, "why": why}
    result["wall_s"] = round(time.monotonic() - began, 1)
    say(line(result))
    results.append(result)
    keep(root, result)
    if not keep_homes:
      shutil.rmtree(home.root, ignore_errors=True)
  return results


def keep(root: Path, result: dict) -> None:
  """Appends a point's result to WORKDIR/results.jsonl as it finishes, so a
  long matrix stopped early still has what it found."""
  with open(root / "results.jsonl", "a") as f:
    f.write(json.dumps(result) + "\n")


def warehouse_state(path: Path) -> dict:
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  with wh.Warehouse(path, read_only=True) as warehouse:
    con = warehouse.con
    return {
        "trips": con.execute("SELECT count(*), coalesce(sum(hash(unique_key))"
                             ", 0) FROM trips").fetchone(),
        "quarantine": con.execute("SELECT count(*) FROM quarantine"
                                  ).fetchone()[0],
        "loads": con.execute("SELECT count(*) FROM loads").fetchone()[0],
    }


def load_points(root: Path) -> list:
  """A day's trips file into a warehouse that has the days before."""
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  base = Home(root / "load-base").ensure()
  with wh.Warehouse(base.warehouse) as warehouse:
    simulate.simulate_into(warehouse, START, 2, seed=SEED, scale=0.05)
  day_file = Path(simulate.simulate_files(
      root / "load-file", "2024-03-03", 1, seed=SEED, scale=0.05).files[0])
  clean = copy_home(base, root / "load-clean")
  run(cli(clean, "load", str(day_file)), root / "logs" / "load-clean.log")
  want = warehouse_state(clean.warehouse)
  results = []
  for point in LOAD_POINTS:
    home = copy_home(base, root / "points" / point)
    log = root / "logs" / f"{point}.log"
    killed = run(cli(home, "load", str(day_file)), log, point)
    again = run(cli(home, "load", str(day_file)), log)
    got = warehouse_state(home.warehouse)
    why = ([] if killed == -signal.SIGKILL else [f"not killed ({killed})"])
    why += [] if again == 0 else [f"the load again exited {again}"]
    why += [f"{k} {got[k]} != {want[k]}" for k in want if got[k] != want[k]]
    results.append({"group": "load", "point": point,
                    "reached": killed == -signal.SIGKILL,
                    "exit": again, "matched": not why, "why": why})
    say(line(results[-1]))
    keep(root, results[-1])
  return results


def served_rows(home) -> dict:
  """{tick: digest of its rows} from the served log; and ticks served more
  than once."""
  import pyarrow.compute as pc  # noqa: PLC0415
  import pyarrow.parquet as pq  # noqa: PLC0415
  from taxi_demand import features  # noqa: PLC0415
  files = sorted(p for p in home.serving_log.rglob("*.parquet")
                 if not p.name.startswith("."))
  by_tick, twice = {}, []
  for path in files:
    table = pq.read_table(path)
    table = table.drop([c for c in table.column_names
                        if c == "predicted_at"])  # the writer's wall clock
    for tick in set(table.column(features.ISSUED_AT).to_pylist()):
      if tick in by_tick:
        twice.append(tick)
      rows = table.filter(pc.equal(
          table.column(features.ISSUED_AT), tick)).sort_by(
              [(features.CELL, "ascending"),
               (features.SLOT_START, "ascending")])
      by_tick[tick] = hashlib.sha256(
          json.dumps(rows.to_pydict(), sort_keys=True, default=str).encode()
      ).hexdigest()[:16]
  return {"rows": by_tick, "twice": sorted(twice)}


def job_points(ready: dict, root: Path) -> list:
  """Six ticks of D+1's afternoon by `predict --every 5m` on a replayed
  clock, with the model D's uninterrupted run pushed; killed at the third
  tick's file, restarted two minutes after it (a restart's clock goes on
  from the crash), against a clean job's."""
  import datetime  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  at, ticks, crash_tick = f"{DAY_AFTER}T13:00", 6, 2
  restart = (datetime.datetime.fromisoformat(at) + datetime.timedelta(
      minutes=5 * crash_tick + 2)).isoformat()
  served = Home(root / "reference")
  clean = copy_home(served, root / "job-clean")
  job(clean, at, root / "logs" / "job-clean.log", "", ticks)
  want = served_rows(clean)["rows"]
  results = []
  for point in JOB_POINTS:
    home = copy_home(served, root / "points" / point)
    log = root / "logs" / f"{point.replace('@', '-')}.log"
    killed = job(home, at, log, f"{point}@{crash_tick + 1}", ticks)
    again = job(home, restart, log, "", ticks, first=at)
    got = served_rows(home)
    why = ([] if killed == -signal.SIGKILL else [f"not killed ({killed})"])
    why += [] if again in (0, 130) else [f"the restarted job exited {again}"]
    why += [f"served twice: {got['twice']}"] if got["twice"] else []
    missing = sorted(set(want) - set(got["rows"]))
    why += [f"{len(missing)} ticks not served"] if missing else []
    differ = sorted(t for t in want if t in got["rows"] and
                    got["rows"][t] != want[t])
    why += [f"{len(differ)} ticks differ from a clean job's"] if differ \
        else []
    results.append({"group": "job", "point": point,
                    "reached": killed == -signal.SIGKILL,
                    "exit": again, "matched": not why, "why": why})
    say(line(results[-1]))
    keep(root, results[-1])
  return results


def ctrl_c_stops() -> None:
  """In the job's process before it starts: SIGINT back to its default. A
  bench started in the background (`nohup ... &`) has SIGINT ignored, and
  its children inherit that: the job would never see the Ctrl-C that
  stops it, and be killed two minutes later (exit -9)."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def job(home, at: str, log: Path, crash: str, ticks: int,
        first: str = "") -> int:
  """`predict --every 5m` with its clock from `at` at 300x (a tick a
  second), stopped with Ctrl-C once the `ticks` ticks from `first` (default
  `at`) are in the log; its exit code (-9 when it was killed)."""
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  begin = predict.parse_at(first or at)
  wanted = {begin + 300 * i for i in range(ticks)}
  env = dict(os.environ)
  env.pop("TAXI_DEMAND_CRASH_AT", None)
  if crash:
    env["TAXI_DEMAND_CRASH_AT"] = crash
  day = servelog.day_of_slot(begin)
  with open(log, "a") as out:
    out.write(f"$ predict --every 5m --at {at}  # crash at {crash or '-'}\n")
    out.flush()
    proc = subprocess.Popen(
        cli(home, "predict", "--every", "5m", "--at", at, "--speed", "300",
            "--catch-up", "12h"),
        stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        preexec_fn=ctrl_c_stops)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.5)
      if wanted <= set(servelog.served_ticks(home.serving_log, [day])):
        proc.send_signal(signal.SIGINT)
        break
    try:
      return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
      proc.kill()
      return proc.wait()


def line(r: dict) -> str:
  what = ("matched" if r["matched"] else "DIFFERS: " + "; ".join(r["why"]))
  where = "" if r.get("reached", True) else " (point not reached)"
  extra = f", {r['resumes']} resume(s)" if r.get("resumes") else ""
  return f"{r['point']:<34} exit {r['exit']}{extra}  {what}{where}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", help=f"comma-separated groups of "
                      f"{','.join(GROUPS)} (default: all)")
  parser.add_argument("--nodes", help="with `run`: only these node ids")
  parser.add_argument("--with-end", action="store_true",
                      help="with `run`: also node.end.<id> points")
  parser.add_argument("--workdir", help="keep everything here, each point's "
                      "home under points/ (default: a temporary folder, "
                      "removed)")
  parser.add_argument("--json", action="store_true",
                      help="accepted for `make bench`; the output is JSON")
  args = parser.parse_args(argv)
  groups = args.only.split(",") if args.only else list(GROUPS)
  if set(groups) - set(GROUPS):
    say(f"bench/kills.py: unknown group in {args.only!r}; groups: "
        f"{', '.join(GROUPS)}")
    return 1
  nodes = args.nodes.split(",") if args.nodes else list(NODES)
  from taxi_demand import spans  # noqa: PLC0415
  tmp = None
  if args.workdir:
    root = Path(args.workdir).absolute()
    root.mkdir(parents=True, exist_ok=True)
  else:
    tmp = tempfile.TemporaryDirectory(prefix="bench-kills-")
    root = Path(tmp.name)
  try:
    results = []
    if "load" in groups:
      (root / "logs").mkdir(parents=True, exist_ok=True)
      results += load_points(root)
    if set(groups) & {"run", "ingest", "pusher", "job"}:
      try:
        ready = setup(root, reference=bool(set(groups) & {"run", "pusher",
                                                          "job"}))
      except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
      day, before = spans.parse_span(DAY), spans.parse_span(DAY_BEFORE)
      keep_homes = bool(args.workdir)  # each point's home, to look into
      if "pusher" in groups:
        results += run_points("pusher", ready, root, ["pusher.moved"], "served",
                              "reference", ["--date", DAY], day, keep_homes)
      if "ingest" in groups:
        results += run_points("ingest", ready, root, INGEST_POINTS, "empty",
                              "first",
                              ["--date", DAY_BEFORE], before, keep_homes)
      if "run" in groups:
        kinds = ("start", "inside") + (("end",) if args.with_end else ())
        points = [f"node.{k}.{n}" for n in nodes for k in kinds]
        results += run_points("run", ready, root, points, "served", "reference",
                              ["--date", DAY], day, keep_homes)
      if "job" in groups:
        results += job_points(ready, root)
      summary = {k: ready.get(k) for k in ("first_run_s", "day_run_s")}
      if "reference" in ready:
        summary["reference"] = {k: ready["reference"][k] for k in (
            "status", "blessed", "reasons", "pushed")}
    else:
      summary = {}
  finally:
    if tmp is not None:
      tmp.cleanup()
  print(json.dumps({**summary, "points": len(results),
                    "reached": sum(r["reached"] for r in results),
                    "matched": sum(r["matched"] for r in results),
                    "ok": all(r["matched"] for r in results),
                    "results": results}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
