"""An accelerated live day on a simulated city, killed and restarted, audited.

  .venv/bin/python bench/live.py --workdir /tmp/live            # ~10 min live
  .venv/bin/python bench/live.py --quick --workdir /tmp/liveq   # a smoke test

Setup (timed apart, not part of the live day): a fresh home in --workdir; a
small simulated city (--scale, seed --city-seed) from D-(2 + train days + 7)
to D-2 loaded; the daily run for D-2 with fast flags (a few hundred training
steps, gates that only ask "better than naive"), whose push is the "first
push": a model serves before the live day begins; then D-1's trips loaded in
full, the first few as single 5-minute files to time one `taxi-demand load`.

The live day (taxi_demand.testing.live.LiveDay): D's simulated trips cut into 288
five-minute Parquet files; a clock from D 00:00 running 86400 / (--minutes *
60) times as fast as real time, so the day takes --minutes of wall time
(--hours goes live with only the first hours of D; --quick: 6 hours at the
same speed, 2.5 minutes, a smaller city and one kill each).
At once, on the one home:
  * a `taxi-demand load` of each file once its 5 minutes are over;
  * the 5-minute job, `taxi-demand predict --every 5m --at T --speed X`;
  * the daily run for D-1 (`runner_local.py`, same fast flags), started at
    the day boundary and restarted with `--resume` after each kill;
  * read-only commands in a loop (`taxi-demand runs --json`, `show last`).
Each of load, predict and the daily run is killed with SIGKILL --kills times
(seeded by --seed) and restarted: the job at uniformly random real times of
the day; --kills random loads part-way (each, at random, after a random
fraction of a load's measured time or once inside its transaction); the
daily run at random ages of its process, drawn afresh at each restart within
what is left of its expected duration (start-up plus the setup run's time in
the nodes the day's runs have not finished), so a kill lands inside the run.
A run that finishes before all its kills happened is reported with fewer
kills done, not padded. The day ends when every file is loaded and the daily
run (with its resumes) has exited; the job, which on a busy machine runs
behind its fast clock, then has up to 2 minutes to serve the ticks due by
then before it is stopped.

Prints one JSON object (progress goes to stderr):
  ticks_scheduled/served/lost/served_twice  5-minute ticks from D 00:00 to
      the last tick before the stop (taxi_demand.testing.live.audit), lost_ticks
      (HH:MM, up to 20);
  trips_generated/in_warehouse/lost/duplicated  D's trips, simulated vs the
      warehouse (by unique_key);
  runs_left_running  ML Metadata executions still NEW or RUNNING;
  runs_listed_running, runs_aborted  `taxi-demand runs --json` statuses;
  longest_without_serving_model_s  the longest continuous stretch, in
      simulated seconds, in which no model resolved (polled every pass);
  longest_tick_wait_s  the longest a due tick waited for its forecast, in
      simulated seconds (a killed job's restart shows here; beside it the
      job's catch-up window, beyond which missed ticks are dropped);
  kills per process (planned, done, where), restarts, pipeline exit code,
  reads and failed reads, error lines of the loads, the job and the run;
  setup_s, live_s and the machine's load average before and after (on 2
  cores, other work stretches every timing);
  day_decision  D-1's newest run in ML Metadata: its status, pushed
      version, blessed and reasons;
  targets: 0 lost ticks, 0 lost or duplicated trips, 0 runs left RUNNING,
      a serving model at every tick after the first push, the daily run
      completed (exit 0, or 3 for a refused day) after its resumes, 0
      error lines from any process, and D-1 decided (a model pushed, or
      refused with a reason), each as {"target", "value", "met"}.

Exit 0 whether or not targets are met; 1 when setup fails (no push, a load
or the setup run failed: its log is named).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import taxi_demand  # noqa: E402,F401  (before TensorFlow)

LOOKBACK_DAYS = 7  # taxi_demand.features.LOOKBACK_DAYS
MARKER = ".bench-live"  # a workdir this bench made, safe to clear
DEFAULTS = {"minutes": 10.0, "hours": 24.0, "scale": 0.2, "kills": 3}
# A smoke test: the first hours of the day at the full run's speed. A whole
# day in 3 minutes (480x) is faster than this machine's processes: a
# 5-minute file's load takes ~1 s and a tick ~1 s, against 0.6 s of wall
# time each, so loads lag and the job falls behind its clock.
QUICK = {"minutes": 10.0, "hours": 6.0, "scale": 0.1, "kills": 1}


class SetupError(Exception):
  """Setup could not give the live day a serving model; one line why."""


def say(message: str) -> None:
  print(f"[live] {message}", file=sys.stderr, flush=True)


def fast_flags(args) -> list:
  """The daily run's flags: tests/test_pipeline_e2e.py's FAST."""
  return ["--train-days", str(args.train_days), "--train-steps",
          str(args.train_steps), "--naive-margin", "0", "--cell-margin", "1.0"]


def hhmm(epoch: int) -> str:
  return datetime.datetime.fromtimestamp(
      epoch, datetime.timezone.utc).strftime("%m-%d %H:%M")


# ---- setup ------------------------------------------------------------------


def clear_workdir(root: Path) -> None:
  """A fresh workdir: made here, or one this bench made before."""
  if root.exists() and any(root.iterdir()):
    if not (root / MARKER).exists():
      raise SetupError(f"--workdir {root} is not empty and was not made by "
                       "bench/live.py; give an empty or new folder")
    for child in root.iterdir():
      if child.is_dir():
        shutil.rmtree(child)
      else:
        child.unlink()
  root.mkdir(parents=True, exist_ok=True)
  (root / MARKER).write_text("made by bench/live.py; cleared on each run\n")


def timed_load(home, path: Path, logs: Path, name: str) -> float:
  """One `taxi-demand load` process, as the live day starts them."""
  from taxi_demand.testing import live  # noqa: PLC0415
  began = time.monotonic()
  with open(logs / f"{name}.out", "w") as out, \
      open(logs / f"{name}.err", "w") as err:
    code = subprocess.run(live.cli(home, "load", str(path)), stdout=out,
                          stderr=err, check=False).returncode
  if code != 0:
    raise SetupError(f"`taxi-demand load {path}` exited {code}; see "
                     f"{logs / name}.err")
  return time.monotonic() - began


def setup(args, root: Path) -> dict:
  """The home, the city, the first push and D-1's trips; the live chunks."""
  from taxi_demand.testing import live  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  day = spans.parse_span(args.date)
  home = Home(root / "home").ensure()
  logs = root / "logs"
  logs.mkdir(parents=True, exist_ok=True)
  seconds = {}

  # The city up to D-2: the D-2 run's window of train days, each with its
  # lookback, and D-2 itself (its eval day).
  first = day - 2 - args.train_days - LOOKBACK_DAYS
  began = time.monotonic()
  say(f"setup: simulating {spans.date_of(first)} .. {spans.date_of(day - 2)}"
      f" (scale {args.scale}, seed {args.city_seed}) into {home.warehouse}")
  with Warehouse(home.warehouse) as wh:
    report = simulate.simulate_into(wh, start=spans.date_of(first),
                                    days=day - 2 - first + 1,
                                    seed=args.city_seed, scale=args.scale)
  seconds["simulate"] = round(time.monotonic() - began, 1)
  say(f"setup: {report.loaded:,} trips loaded, {report.quarantined} "
      f"quarantined ({seconds['simulate']} s)")

  # The first push: the daily run for D-2, its own process as at night.
  argv = live.runner(home, *fast_flags(args), "--date",
                     spans.date_of(day - 2))
  say(f"setup: daily run for {spans.date_of(day - 2)} (the first push)")
  began = time.monotonic()
  with open(logs / "setup-run.out", "w") as out, \
      open(logs / "setup-run.err", "w") as err:
    code = subprocess.run(argv, stdout=out, stderr=err, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}
                          ).returncode
  run_s = time.monotonic() - began
  seconds["first_run"] = round(run_s, 1)
  if code != 0 or registry.serving_version(home.models) is None:
    raise SetupError(f"the setup run for {spans.date_of(day - 2)} exited "
                     f"{code} and pushed "
                     f"{registry.serving_version(home.models) or 'nothing'}; "
                     f"see {logs / 'setup-run.out'} and .err")
  snap = store.load(home.metadata)
  rows = [queries.run_row(snap, r) for r in snap.runs]
  main_run = snap.runs[-1]
  ingest_s = sum(r["wall_s"] for r in rows if r["status"] == "INGESTED")
  in_runs_s = sum(r["wall_s"] for r in rows)
  first_push = registry.serving_version(home.models)
  say(f"setup: pushed {first_push} in {run_s:.1f} s (ingests "
      f"{ingest_s:.1f} s, runs {in_runs_s:.1f} s in all)")

  # D-1 and D, simulated with the same seed (a day's trips depend only on
  # the seed and the day), cut into 5-minute files.
  began = time.monotonic()
  sim = root / "sim"
  simulate.simulate_files(sim, spans.date_of(day - 1), 2, seed=args.city_seed,
                          scale=args.scale)
  before = live.write_chunks(sim, root / "chunks-before", day - 1)
  chunks = live.write_chunks(sim, root / "chunks", day)
  # D-1 in full: three single 5-minute files, each timed as the live day
  # will start them, then the rest in one load (the three are skipped).
  load_s = [timed_load(home, path, logs, f"setup-load-{i}")
            for i, (_, path, _) in enumerate(before[:3])]
  timed_load(home, root / "chunks-before", logs, "setup-load-rest")
  seconds["day_before"] = round(time.monotonic() - began, 1)
  with Warehouse(home.warehouse, read_only=True) as wh:
    loaded_before = wh.trips_on(day - 1)
  if loaded_before != sum(n for _, _, n in before):
    raise SetupError(f"{spans.date_of(day - 1)}: {loaded_before} trips in "
                     f"the warehouse, {sum(n for _, _, n in before)} "
                     "simulated")
  say(f"setup: {spans.date_of(day - 1)} loaded ({loaded_before:,} trips); a "
      f"5-minute load takes {statistics.median(load_s):.2f} s")
  return {
      "home": home, "day": day, "chunks": chunks, "first_push": first_push,
      "runs_before": len(snap.runs), "seconds": seconds,
      "first_run_s": run_s,
      # Imports, prepare and the summary: what a resumed run pays again.
      "run_overhead_s": max(0.0, run_s - in_runs_s),
      "expected_run_s": max(10.0, run_s - ingest_s),
      "main_run_s": main_run.wall_s,
      "node_s": {n.node_id: n.wall_s for n in main_run.nodes},
      "load_s": statistics.median(load_s),
      "trips_before": loaded_before,
  }


# ---- kill plans -------------------------------------------------------------


class RunKills:
  """Kills of the daily run at random ages of its current process.

  Each kill's age is drawn when its process starts, uniformly within the
  run's expected remaining duration: the start-up (imports, the run lock,
  ML Metadata) plus the setup run's time in the nodes the day's runs have
  not finished yet. A resumed run goes on from the killed node, which
  starts over, so what it has left is known from ML Metadata at the kill.
  """

  def __init__(self, rng: random.Random, home, runs_before: int,
               node_s: dict, run_s: float, overhead_s: float,
               in_nodes: tuple = ()):
    self.rng = rng
    # The first kills land as soon as these nodes run (--run-kill-in).
    self.in_nodes = list(in_nodes)
    self.home = home
    self.runs_before = runs_before
    self.node_s = node_s  # the setup run's nodes: {node id: wall seconds}
    self.run_s = run_s    # its wall time in ML Metadata, gaps included
    self.overhead_s = overhead_s
    self.remaining_s = overhead_s + run_s
    self.start = None
    self.age_s = None
    self.done = []

  def when(self, day) -> bool:
    if self.in_nodes:
      return self._in_node(day)
    if self.start != day.pipeline.starts:
      self.start = day.pipeline.starts
      self.age_s = self.rng.uniform(0.0, self.remaining_s)
    age = day.pipeline.age()
    if age < self.age_s:
      return False
    running, finished = self.nodes()
    self.done.append({"start": self.start, "age_s": round(age, 1),
                      "window_s": round(self.remaining_s, 1),
                      "in": running})
    left = sum(s for node, s in self.node_s.items() if node not in finished)
    self.remaining_s = self.overhead_s + self.run_s * left / max(
        1e-9, sum(self.node_s.values()))
    self.start = None
    return True

  def _in_node(self, day) -> bool:
    """Whether the node the next planned kill waits for is RUNNING."""
    if not day.pipeline.running:
      return False
    running, _ = self.nodes()
    if not any(r.endswith(":" + self.in_nodes[0]) for r in running):
      return False
    self.done.append({"start": day.pipeline.starts,
                      "age_s": round(day.pipeline.age(), 1), "in": running})
    self.in_nodes.pop(0)
    return True

  def nodes(self):
    """The day's runs' nodes ML Metadata shows RUNNING, and those finished."""
    from taxi_demand.lineage import store  # noqa: PLC0415
    try:
      snap = store.load(self.home.metadata)
    except Exception:  # pylint: disable=broad-except  (mid-write)
      return ["?"], set()
    runs = snap.runs[self.runs_before:]
    running = [f"{r.run_id}:{n.node_id}" for r in runs for n in r.nodes
               if n.state == "RUNNING"]
    return (running or ["(no node: start-up or between runs)"],
            {n.node_id for r in runs for n in r.nodes if n.finished})


class LoadKill:
  """Kills the load of file `chunk` (or the first later one that lasts long
  enough): once it has run `age_s`, or with `inside`, once its progress
  line shows it is inside its transaction (a kill by age alone mostly lands
  in the process's start-up, a small load's longest part)."""

  def __init__(self, chunk: int, age_s: float, inside: bool, chunks: list,
               done: list):
    self.chunk, self.age_s, self.inside = chunk, age_s, inside
    self.chunks, self.done = chunks, done

  def __call__(self, day) -> bool:
    age = day.loader.age()
    if day.next_chunk < self.chunk:
      return False
    if self.inside:
      err = day.loader.logs / f"load-{day.loader.starts:04d}.err"
      if "load 1/" not in (err.read_text() if err.exists() else ""):
        return False
    elif age < self.age_s:
      return False
    self.done.append({"file": day.next_chunk, "planned_file": self.chunk,
                      "ends": hhmm(self.chunks[day.next_chunk][0]),
                      "trigger": "inside" if self.inside else "age",
                      "age_s": round(age, 2), "start": day.loader.starts})
    return True


def load_phase(base: Path) -> str:
  """Where a killed load was, from its output: the progress line is
  printed inside the load's transaction, the report after its commit."""
  def read(p: Path) -> str:
    return p.read_text() if p.exists() else ""
  if read(base.with_suffix(".out")).startswith("read "):
    return "after its commit"
  if "load 1/" in read(base.with_suffix(".err")):
    return "inside its transaction"
  return "start-up or waiting for the warehouse"


class JobKill:
  """Kills the 5-minute job `at_s` real seconds into the day."""

  def __init__(self, at_s: float, done: list):
    self.at_s, self.done = at_s, done

  def __call__(self, day) -> bool:
    if day.elapsed() < self.at_s:
      return False
    self.done.append({"at_s": round(day.elapsed(), 1),
                      "sim": hhmm(day.clock.now())})
    return True


# ---- after the day ----------------------------------------------------------


def slot_days(first_tick: int, last_tick: int) -> list:
  """The served log's day partitions holding ticks first..last: every day
  between, and the day after the last (a tick's slots start on its own day
  or the next). A busy machine stretches the live day over several."""
  import datetime  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  first, last = servelog.day_of_slot(first_tick), servelog.day_of_slot(
      last_tick)
  return [first + datetime.timedelta(days=k)
          for k in range((last - first).days + 2)]


def served_files(home, first_tick: int, last_tick: int) -> dict:
  """{tick: [(model version, predicted_at epoch)]} from the served log."""
  import pyarrow.parquet as pq  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  days = slot_days(first_tick, last_tick)
  out = {}
  for day in sorted(days):
    for path in servelog.partition(home.serving_log, day).glob(
        "part-i*-v*.parquet"):
      issued, _, version = path.stem[len("part-i"):].partition("-v")
      if not issued.isdigit() or not first_tick <= int(issued) <= last_tick:
        continue
      at = pq.read_table(path, columns=[servelog.PREDICTED_AT]).column(
          0)[0].as_py()
      out.setdefault(int(issued), []).append(
          (version, at.replace(tzinfo=datetime.timezone.utc).timestamp()))
  return out


def runs_json(home, logs: Path) -> list:
  """`taxi-demand runs --json`, as an operator would ask after the day."""
  from taxi_demand.testing import live  # noqa: PLC0415
  done = subprocess.run(live.cli(home, "runs", "--json"), capture_output=True,
                        text=True, check=False)
  (logs / "after-runs.json").write_text(done.stdout + done.stderr)
  if done.returncode != 0:
    raise SetupError(f"`taxi-demand runs --json` exited {done.returncode}: "
                     f"{done.stderr.strip()[-300:]}")
  return json.loads(done.stdout)


# Once the loads and the daily run are done, how long (real seconds) the
# job may take to serve the ticks due by then before it is stopped. On a
# busy machine it runs behind its fast clock (a tick's forecast can take
# longer than a tick's real time at 144x, and a restart's TensorFlow
# import costs simulated hours): stopped at once, its backlog would count
# as lost ticks though nothing was lost.
BACKLOG_GRACE_S = 120


def backlog_served(home, first_tick: int, end: int) -> bool:
  """Whether every tick from `first_tick` to the last one due before `end`
  (see the audit's last tick) is in the served log."""
  from taxi_demand.testing import live  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  last = (end - live.TICK_S) // live.TICK_S * live.TICK_S
  served = servelog.served_ticks(home.serving_log, slot_days(first_tick, last))
  return all(t in served for t in range(first_tick, last + 1, live.TICK_S))


def target(value, goal=0) -> dict:
  return {"target": goal, "value": value, "met": value == goal}


def live_day(args, ready: dict, root: Path) -> dict:
  from taxi_demand import features  # noqa: PLC0415
  from taxi_demand.testing import live  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  home, day = ready["home"], ready["day"]
  speed = features.SECONDS_PER_DAY / (args.minutes * 60)
  chunks = [c for c in ready["chunks"]
            if c[0] <= spans.start_of(day) + args.hours * 3600]
  live_s = args.hours * 3600 / speed
  rng = random.Random(args.seed)
  # The plans, drawn before the day: the same --seed kills the same way.
  job_done, load_done = [], []
  job_kills = [JobKill(t, job_done) for t in
               sorted(rng.uniform(0, live_s) for _ in range(args.kills))]
  load_kills = [LoadKill(c, rng.uniform(0.15, 0.85) * ready["load_s"],
                         rng.random() < 0.5, chunks, load_done)
                for c in sorted(rng.sample(range(len(chunks)), args.kills))]
  run_kills = RunKills(random.Random(rng.random()), home, ready["runs_before"],
                       ready["node_s"], ready["main_run_s"],
                       ready["run_overhead_s"], args.run_kill_in)
  daily_run = [*fast_flags(args), "--date", spans.date_of(day - 1)]
  logs = root / "logs"
  say(f"live day {spans.date_of(day)}: {len(chunks)} files, speed "
      f"{speed:g}x ({live_s / 60:g} min), the daily run for "
      f"{spans.date_of(day - 1)} at 00:00 (expected "
      f"{ready['expected_run_s']:.0f} s); kills: job at "
      f"{[round(k.at_s) for k in job_kills]} s, loads of files "
      f"{[k.chunk for k in load_kills]}, the run {args.kills}x")
  load_before = os.getloadavg()
  wall_began = time.time()
  clock = live.Clock(start=spans.start_of(day), speed=speed)
  liveday = live.LiveDay(
      home, chunks, clock, logs, daily_run=daily_run, run_at=clock.start,
      kills={"predict": job_kills, "load": load_kills,
             "pipeline": [run_kills.when] * args.kills})
  timeout_s = live_s * 3 + ready["expected_run_s"] * 4
  next_line = [0.0]
  timed_out = []
  first_tick = -(-clock.start // live.TICK_S) * live.TICK_S
  ended = []  # (clock, elapsed) when the loads and the daily run were done

  def until(d) -> bool:
    if d.elapsed() >= next_line[0]:
      next_line[0] += args.progress_every
      state = ("done, exit %s" % d.pipeline_done
               if d.pipeline_done is not None else
               f"running (start {d.pipeline.starts}, age "
               f"{d.pipeline.age():.0f} s)" if d.pipeline.running else
               "not started")
      say(f"{d.elapsed():5.0f} s  sim {hhmm(d.clock.now())}  files "
          f"{d.next_chunk}/{len(chunks)}  kills load {d.loader.kills} job "
          f"{d.job.kills} run {d.pipeline.kills}  run {state}  reads "
          f"{d.reads}")
    if d.elapsed() > timeout_s:
      timed_out.append(round(d.elapsed()))
      return True
    if not ended:
      if d.loads_done() and d.pipeline_done is not None:
        ended.append((d.clock.now(), d.elapsed()))
      return False
    return (backlog_served(home, first_tick, ended[0][0]) or
            d.elapsed() - ended[0][1] > BACKLOG_GRACE_S)

  liveday.run(until=until)
  # The stretch audited ends when its work did; the job then had up to
  # BACKLOG_GRACE_S to serve the ticks due by then.
  stop = ended[0][0] if ended else clock.now()
  for kill in load_done:
    kill["phase"] = load_phase(logs / f"load-{kill.pop('start'):04d}")
  elapsed = liveday.elapsed()
  say(f"live day over after {elapsed:.0f} s (sim {hhmm(stop)}); auditing")

  # The last tick before the stop whose forecast had a tick's time to be
  # written: the tick due at the very moment of the stop may be mid-write.
  last_tick = (stop - live.TICK_S) // live.TICK_S * live.TICK_S
  report = live.audit(home, chunks, first_tick, last_tick)
  # Every day between too: a stretch the load made longer than a day
  # spans three partitions or more.
  served = servelog.served_ticks(home.serving_log,
                                 slot_days(first_tick, last_tick))
  lost = [t for t in range(first_tick, last_tick + 1, live.TICK_S)
          if t not in served]
  files = served_files(home, first_tick, last_tick)
  waits = {t: (min(at for _, at in rows) - (wall_began + (t - clock.start) /
                                            speed)) * speed
           for t, rows in files.items()}
  worst = max(waits, key=waits.get) if waits else None
  versions = {}
  for rows in files.values():
    for version, _ in rows:
      versions[version] = versions.get(version, 0) + 1
  rows = runs_json(home, logs)
  day_runs = rows[ready["runs_before"]:]
  statuses = [r["status"] for r in rows]
  longest_gap_s = round(getattr(liveday, "longest_no_model_s",
                                liveday.no_model_s) * speed)
  errors = {name: p.errors() for name, p in (
      ("load", liveday.loader), ("predict", liveday.job),
      ("pipeline", liveday.pipeline), ("reader", liveday.reader))}
  runs_left = live.running_executions(home)
  out = {
      "date": spans.date_of(day), "hours": args.hours,
      "speed": round(speed, 3),
      "scale": args.scale, "seed": args.seed, "city_seed": args.city_seed,
      **{k: report[k] for k in (
          "ticks_scheduled", "ticks_served", "ticks_lost",
          "ticks_served_twice")},
      "first_tick": hhmm(first_tick), "last_tick": hhmm(last_tick),
      "lost_ticks": [hhmm(t) for t in lost[:20]],
      **{k: report[k] for k in ("trips_generated", "trips_in_warehouse",
                                "trips_lost", "trips_duplicated")},
      "files_loaded": liveday.next_chunk, "files": len(chunks),
      "runs_left_running": runs_left,
      "runs_listed_running": statuses.count("RUNNING"),
      "runs_aborted": statuses.count("ABORTED"),
      "runs_of_the_day": [{k: r[k] for k in ("run_id", "date", "status",
                                             "wall_s", "pushed_version")}
                          for r in day_runs],
      "longest_without_serving_model_s": longest_gap_s,
      "without_serving_model_total_s": round(liveday.no_model_s * speed),
      "longest_tick_wait_s": round(waits[worst]) if worst else None,
      "longest_tick_wait_at": hhmm(worst) if worst else None,
      "median_tick_wait_s": (round(statistics.median(waits.values()))
                             if waits else None),
      # A restarted job serves the ticks it missed up to this far back (by
      # its own clock; live.catch_up_s: 3 real minutes at this speed).
      "job_catch_up_s": live.catch_up_s(speed),
      "first_push": ready["first_push"],
      "ticks_by_model_version": versions,
      "kills": {
          "load": {"planned": args.kills, "done": liveday.loader.kills,
                   "where": load_done},
          "predict": {"planned": args.kills, "done": liveday.job.kills,
                      "where": job_done},
          "pipeline": {"planned": args.kills, "done": liveday.pipeline.kills,
                       "where": run_kills.done},
      },
      "restarts": {"load": liveday.loader.kills,
                   "predict": liveday.job.starts - 1,
                   "pipeline": liveday.pipeline.starts - 1},
      "pipeline_exit_code": liveday.pipeline_done,
      "pipeline_starts": run_starts(logs),
      "reads": liveday.reads, "failed_reads": len(liveday.failed_reads),
      "day_decision": day_decision(home, day - 1),
      "error_lines": {k: len(v) for k, v in errors.items()},
      "error_samples": {k: v[:3] for k, v in errors.items() if v},
      "timed_out_after_s": timed_out[0] if timed_out else None,
      "setup_s": ready["setup_s"], "setup_parts_s": ready["seconds"],
      "live_s": round(elapsed, 1), "live_target_s": round(live_s, 1),
      "load_average_before": [round(x, 2) for x in load_before],
      "load_average_after": [round(x, 2) for x in os.getloadavg()],
      "workdir": str(root),
  }
  out["targets"] = {
      "ticks_lost": target(report["ticks_lost"]),
      "trips_lost_or_duplicated": target(
          report["trips_lost"] + report["trips_duplicated"]),
      # Executions ML Metadata shows NEW/RUNNING, or runs listed RUNNING.
      "runs_left_running": target(max(runs_left,
                                      statuses.count("RUNNING"))),
      # Simulated seconds without a model to resolve, after the first push.
      "serving_model_at_every_tick": target(longest_gap_s),
      # The day's run finished (0, or 3: DataGate refused the day) after
      # its resumes; a run left failed counts however many ticks served.
      "daily_run_completed": target(
          0 if liveday.pipeline_done in (0, 3) else 1),
      "error_lines": target(sum(len(v) for v in errors.values())),
      # D-1 has a pushed model, or a recorded refusal with its reason.
      "day_decided": target(0 if out["day_decision"]["decided"] else 1),
  }
  return out


def day_decision(home, span: int) -> dict:
  """What ML Metadata holds for day `span`'s newest run: pushed, or
  refused with a reason (DataGate's, or ForecastGate's not blessing)."""
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = store.load(home.metadata)
  runs = [r for r in snap.runs if queries.run_span(snap, r) == span]
  if not runs:
    return {"decided": False, "why": "no run of the day in ML Metadata"}
  summary = queries.run_summary(snap, runs[-1])
  pushed, status = summary["pushed_version"], summary["status"]
  refused = status == "REFUSED" or (
      summary["blessed"] is False and bool(summary["reasons"]))
  return {"decided": bool(pushed) or refused, "status": status,
          "pushed_version": pushed, "blessed": summary["blessed"],
          "reasons": summary["reasons"] or None}


def run_starts(logs: Path) -> list:
  """Each start of the daily run, in order: its telling lines."""
  keys = ("resuming", "marked aborted", "then the days", "run taxi",
          "ingest ", "blessed:", "error:", "ALERT")
  found = []
  for out in sorted(logs.glob("pipeline-*.out")):
    err = out.with_suffix(".err")
    lines = out.read_text().splitlines() + (
        err.read_text().splitlines() if err.exists() else [])
    found.append([line.strip() for line in lines
                  if any(k in line for k in keys)][:8])
  return found


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default=None,
                      help="keep the home, files and process logs here "
                      "(cleared first if this bench made it; default: a "
                      "temporary folder, removed after)")
  parser.add_argument("--date", default="2024-03-14",
                      help="the live day D (default %(default)s)")
  parser.add_argument("--minutes", type=float, default=None,
                      help="wall minutes a whole simulated day takes: speed ="
                      " 86400 / (minutes * 60) (default 10)")
  parser.add_argument("--hours", type=float, default=None,
                      help="hours of D that go live, from 00:00 (default 24;"
                      f" --quick {QUICK['hours']:g})")
  parser.add_argument("--scale", type=float, default=None,
                      help="city size, 1.0 = 60k trips a day (default 0.2; "
                      f"--quick {QUICK['scale']:g})")
  parser.add_argument("--kills", type=int, default=None,
                      help="SIGKILLs of each of load, job and daily run "
                      f"(default 3; --quick {QUICK['kills']})")
  parser.add_argument("--seed", type=int, default=1,
                      help="seeds the kill plan (default %(default)s)")
  parser.add_argument("--city-seed", type=int, default=11,
                      help="seeds the simulated city (default %(default)s)")
  parser.add_argument("--train-days", type=int, default=3,
                      help="the daily runs' window (default %(default)s)")
  parser.add_argument("--train-steps", type=int, default=300,
                      help="the daily runs' training steps "
                      "(default %(default)s)")
  parser.add_argument("--run-kill-in", default=(), metavar="NODE[,NODE...]",
                      type=lambda v: tuple(x for x in v.split(",") if x),
                      help="the daily run's first kills as soon as these "
                      "nodes are RUNNING, one kill each, instead of at "
                      "random ages (e.g. ExampleGen: inside its first node, "
                      "before anything recorded the run's day)")
  parser.add_argument("--progress-every", type=float, default=30.0,
                      help="seconds between progress lines on stderr")
  parser.add_argument("--quick", action="store_true",
                      help=f"a smoke test: the first {QUICK['hours']:g} hours "
                      "of D at the same speed "
                      f"({QUICK['hours'] / 24 * QUICK['minutes']:g} min), "
                      f"scale {QUICK['scale']:g}, {QUICK['kills']} kill each "
                      "(flags given still win)")
  parser.add_argument("--json", action="store_true",
                      help="accepted for `make bench`; the output is JSON")
  args = parser.parse_args(argv)
  for name, value in (QUICK if args.quick else DEFAULTS).items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  if args.minutes <= 0 or not 0 < args.hours <= 24 or args.kills < 0:
    parser.error("--minutes must be > 0, --hours in (0, 24], --kills >= 0")

  with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
    root = Path(args.workdir).absolute() if args.workdir else Path(tmp)
    try:
      clear_workdir(root)
      began = time.monotonic()
      ready = setup(args, root)
      ready["setup_s"] = round(time.monotonic() - began, 1)
      out = live_day(args, ready, root)
    except SetupError as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
  print(json.dumps(out, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
