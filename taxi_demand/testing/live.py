"""A live day on one home, accelerated: loads, the 5-minute job, the daily
run and read-only commands at once, killed and restarted, then audited.

What production runs on one machine, as separate processes on one home:
* a load of each 5 minutes' new trips (`taxi-demand load`, one process each);
* the 5-minute job (`taxi-demand predict --every 5m`);
* the daily run (`runner_local.py`, restarted with `--resume`);
* read-only commands (`taxi-demand runs`, `show`).

The simulated clock runs `speed` times as fast as real time. `Day` drives
them, kills them with SIGKILL when told, restarts them, and `audit` counts
what was lost. `bench/live.py` and the end-to-end tests use it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from taxi_demand import features
from taxi_demand import spans
from taxi_demand.data import sql as demand_sql
from taxi_demand.home import Home

TICK_S = demand_sql.TICK_SECONDS
ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "runner_local.py"


def cli(home: Home, *args: str) -> List[str]:
  return [sys.executable, "-m", "taxi_demand", "--home", str(home.root), *args]


def runner(home: Home, *args: str) -> List[str]:
  return [sys.executable, str(RUNNER), "--home", str(home.root), *args]


def resume_flags(flags: List[str]) -> List[str]:
  """A daily run's flags to resume it: `--resume` instead of its days
  (`--date`, `--backfill`), which runner_local.py refuses beside it; the
  model flags stay, as the resumed run is configured from them."""
  kept, skip = [], 0
  for arg in flags:
    name = arg.split("=", 1)[0]
    if skip:
      skip -= 1
    elif name in ("--date", "--backfill"):
      skip = 0 if "=" in arg else {"--date": 1, "--backfill": 2}[name]
    else:
      kept.append(arg)
  return kept + ["--resume"]


def write_chunks(trips_dir: Path, out: Path, day: int,
                 minutes: int = 5) -> List[tuple]:
  """Day `day`'s simulated trips, cut into one Parquet file per `minutes`
  of pickup time: [(end epoch, path, trips)], oldest first."""
  import pyarrow.compute as pc  # noqa: PLC0415
  import pyarrow.dataset as ds  # noqa: PLC0415
  import pyarrow.parquet as pq  # noqa: PLC0415
  table = ds.dataset(sorted(trips_dir.glob("trips-*.parquet"))).to_table()
  start = pc.cast(table.column("trip_start_timestamp"), "int64").to_numpy()
  unit = 1 if table.schema.field("trip_start_timestamp").type == "int64" \
      else None
  seconds = start if unit else start // 1_000_000
  out.mkdir(parents=True, exist_ok=True)
  chunks = []
  first = spans.start_of(day)
  for end in range(first + minutes * 60, first + features.SECONDS_PER_DAY + 1,
                   minutes * 60):
    mask = (seconds >= end - minutes * 60) & (seconds < end)
    path = out / f"trips-{end}.parquet"
    pq.write_table(table.filter(mask), path)
    chunks.append((end, path, int(mask.sum())))
  return chunks


class Process:
  """One supervised command: started, killed with SIGKILL, restarted."""

  def __init__(self, name: str, logs: Path):
    self.name = name
    self.logs = logs
    self.proc: Optional[subprocess.Popen] = None
    self.kills = 0
    self.starts = 0
    self.exits: List[int] = []

  def start(self, argv: List[str]) -> None:
    self.logs.mkdir(parents=True, exist_ok=True)
    self.starts += 1
    self.argv = argv
    self.started = time.monotonic()
    base = self.logs / f"{self.name}-{self.starts:04d}"
    self.proc = subprocess.Popen(
        argv, stdout=open(f"{base}.out", "w"), stderr=open(f"{base}.err", "w"),
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

  def age(self) -> float:
    """Seconds since its last start."""
    return time.monotonic() - self.started if self.running else 0.0

  @property
  def running(self) -> bool:
    return self.proc is not None and self.proc.poll() is None

  def poll(self) -> Optional[int]:
    """The exit code once it ended by itself (recorded once), else None."""
    if self.proc is None:
      return None
    code = self.proc.poll()
    if code is not None:
      self.exits.append(code)
      self.proc = None
    return code

  def kill(self) -> None:
    """SIGKILL to the process and any child it started."""
    if self.running:
      os.killpg(self.proc.pid, signal.SIGKILL)
      self.proc.wait()
      self.kills += 1
      self.proc = None

  def wait(self, timeout: Optional[float] = None) -> int:
    code = self.proc.wait(timeout)
    self.exits.append(code)
    self.proc = None
    return code

  def errors(self, latest: bool = False) -> List[str]:
    """Error lines of every start, or only of the latest one."""
    pattern = f"{self.name}-{self.starts:04d}.err" if latest else \
        f"{self.name}-*.err"
    return [line for f in sorted(self.logs.glob(pattern))
            for line in f.read_text().splitlines()
            if line.startswith(("error:", "predict:", "Traceback"))]


@dataclasses.dataclass
class Clock:
  """Simulated time: `start` at the real moment `began`, `speed` times as
  fast as real time."""
  start: int
  speed: float
  began: float = dataclasses.field(default_factory=time.monotonic)

  def now(self) -> int:
    return int(self.start + (time.monotonic() - self.began) * self.speed)


def running_executions(home: Home) -> int:
  """Executions ML Metadata still shows NEW or RUNNING."""
  if not home.metadata.exists():
    return 0
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = store.load(home.metadata)
  return sum(1 for n in snap.executions.values()
             if n.state in ("NEW", "RUNNING"))


def node_running(home: Home, node_id: str, after_run: int) -> bool:
  """Whether a run newer than the first `after_run` runs is executing
  `node_id` now."""
  from taxi_demand.lineage import store  # noqa: PLC0415
  try:
    snap = store.load(home.metadata)
  except Exception:  # pylint: disable=broad-except  (being created)
    return False
  return any(n.node_id == node_id and n.state == "RUNNING"
             for r in snap.runs[after_run:] for n in r.nodes)


def audit(home: Home, chunks: List[tuple], first_tick: int, last_tick: int,
          interval_s: int = TICK_S) -> Dict[str, int]:
  """What a live stretch left behind: ticks and trips, scheduled vs kept."""
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  days = sorted({servelog.day_of_slot(t) for t in
                 (first_tick - features.SECONDS_PER_DAY, first_tick,
                  last_tick, last_tick + features.SECONDS_PER_DAY)})
  served = servelog.served_ticks(home.serving_log, days)
  scheduled = list(range(first_tick, last_tick + 1, interval_s))
  begin = min(end for end, _, _ in chunks) - TICK_S
  end = max(end for end, _, _ in chunks)
  with Warehouse(home.warehouse, read_only=True) as wh:
    total, distinct = wh.con.execute(
        "SELECT count(*), count(DISTINCT unique_key) FROM trips WHERE "
        "trip_start_timestamp >= make_timestamp(CAST(? AS BIGINT) * 1000000) "
        "AND trip_start_timestamp < make_timestamp(CAST(? AS BIGINT) * "
        "1000000)", [begin, end]).fetchone()
  generated = sum(n for _, _, n in chunks)
  return {
      "ticks_scheduled": len(scheduled),
      "ticks_served": sum(1 for t in scheduled if t in served),
      "ticks_lost": sum(1 for t in scheduled if t not in served),
      "ticks_served_twice": sum(1 for t in scheduled
                                if len(served.get(t, [])) > 1),
      "trips_generated": generated,
      "trips_in_warehouse": int(total),
      "trips_lost": generated - int(distinct),
      "trips_duplicated": int(total) - int(distinct),
      "executions_left_running": running_executions(home),
  }


def at(epoch: int) -> str:
  return datetime.datetime.fromtimestamp(
      epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def catch_up_s(speed: float) -> int:
  """The 5-minute job's --catch-up under a clock `speed` times real time.

  The window is simulated time; what it must cover is a restart's real
  seconds (imports, model load), which do not shrink when the clock runs
  fast. Three real minutes, never less than the default hour.
  """
  return max(3600, round(speed * 180))


def after(seconds: float) -> Callable[["LiveDay"], bool]:
  """A kill that falls `seconds` of real time into the day."""
  return lambda day: day.elapsed() >= seconds


READERS = (("runs", "--json"), ("show", "last", "--json"))


class LiveDay:
  """Drives the processes of a live stretch from one loop.

  Args:
    home: the home they share.
    chunks: write_chunks' files; each is loaded once its 5 minutes are over.
    clock: the simulated clock.
    logs: where each process's stdout/stderr go.
    daily_run: runner_local.py flags of the daily run, started at
      `run_at` (simulated epoch); None for no run.
    kills: {"load"|"predict"|"pipeline": [when]}, each `when(day) -> bool`
      taken in order: the process is killed with SIGKILL the first time it
      holds while the process runs, then restarted (the daily run with
      --resume, the job at the clock's time, the load of the same file).
    read_every_s: real seconds from one read-only command's start to the
      next one's; 0 starts the next as soon as one ends (the most pressure
      on the locks, and a core's worth of start-ups).
  """

  def __init__(self, home: Home, chunks: List[tuple], clock: Clock,
               logs: Path, daily_run: Optional[List[str]] = None,
               run_at: Optional[int] = None,
               kills: Optional[Dict[str, List[Callable]]] = None,
               read_every_s: float = 0.0):
    self.home = home
    self.chunks = chunks
    self.clock = clock
    self.daily_run = daily_run
    self.run_at = run_at
    self.kills = {k: list(v) for k, v in (kills or {}).items()}
    self.loader = Process("load", logs)
    self.job = Process("predict", logs)
    self.pipeline = Process("pipeline", logs)
    self.reader = Process("reader", logs)
    self.next_chunk = 0
    self.pipeline_done: Optional[int] = None  # its exit code once finished
    self.reads = 0
    self.failed_reads: List[int] = []
    self.read_every_s = read_every_s
    self._read_started = float("-inf")
    self.began = time.monotonic()
    self.no_model_s = 0.0  # real seconds in all with no model to resolve
    self.longest_no_model_s = 0.0  # the longest of those stretches

  def elapsed(self) -> float:
    return time.monotonic() - self.began

  def _kill_due(self, name: str, process: Process) -> bool:
    plan = self.kills.get(name)
    if plan and process.running and plan[0](self):
      plan.pop(0)
      process.kill()
      return True
    return False

  def step(self) -> None:
    """One pass over every process: start, reap, kill, restart."""
    self._step_loads()
    self._step_job()
    self._step_pipeline()
    self._step_reader()

  def _step_loads(self) -> None:
    if self._kill_due("load", self.loader):
      return  # the same file is loaded again on the next pass
    code = self.loader.poll()
    if code is not None:
      if code != 0:
        raise RuntimeError(f"a load exited {code}: {self.loader.errors()[-1:]}")
      self.next_chunk += 1
    if (not self.loader.running and self.next_chunk < len(self.chunks)
        and self.chunks[self.next_chunk][0] <= self.clock.now()):
      self.loader.start(cli(self.home, "load",
                            str(self.chunks[self.next_chunk][1])))

  def _step_job(self) -> None:
    self._kill_due("predict", self.job)
    if self.job.poll() is not None or not self.job.running:
      self.job.start(cli(self.home, "predict", "--every", "5m", "--at",
                         at(self.clock.now()), "--speed",
                         f"{self.clock.speed:g}", "--catch-up",
                         f"{catch_up_s(self.clock.speed)}s"))

  def _step_pipeline(self) -> None:
    if self.daily_run is None or self.pipeline_done is not None:
      return
    if self._kill_due("pipeline", self.pipeline):
      self.pipeline.start(runner(self.home, *resume_flags(self.daily_run)))
      return
    code = self.pipeline.poll()
    if code and "--resume" in self.pipeline.argv and any(
        "nothing to resume" in line or "no earlier run" in line
        for line in self.pipeline.errors(latest=True)[-1:]):
      # Killed before it had started any run: run the day afresh.
      self.pipeline.start(runner(self.home, *self.daily_run))
    elif code is not None:
      self.pipeline_done = code
    elif not self.pipeline.running and self.clock.now() >= self.run_at:
      self.pipeline.start(runner(self.home, *self.daily_run))

  def _step_reader(self) -> None:
    code = self.reader.poll()
    if code is not None:
      self.reads += 1
      if code != 0:
        self.failed_reads.append(code)
    if (not self.reader.running and
        time.monotonic() - self._read_started >= self.read_every_s):
      self._read_started = time.monotonic()
      self.reader.start(cli(self.home, *READERS[self.reads % len(READERS)]))

  def run(self, until: Callable[["LiveDay"], bool],
          pause_s: float = 0.05) -> None:
    """Steps until `until(self)`, then stops every process (the job and
    the reader with SIGKILL: how a live system stops is beside the point)."""
    from taxi_demand.serving import registry  # noqa: PLC0415
    last = time.monotonic()
    gap_began = None  # when the current stretch without a model began
    try:
      while not until(self):
        self.step()
        time.sleep(pause_s)
        now = time.monotonic()
        try:
          registry.resolve(self.home.models)
          gap_began = None
        except Exception:  # pylint: disable=broad-except  (no serving model)
          self.no_model_s += now - last
          gap_began = last if gap_began is None else gap_began
          self.longest_no_model_s = max(self.longest_no_model_s,
                                        now - gap_began)
        last = now
    except BaseException:
      # Its processes run in sessions of their own: left alone, they would
      # outlive a failed test or an interrupted bench.
      for process in (self.job, self.reader, self.loader, self.pipeline):
        process.kill()
      raise
    for process in (self.job, self.reader, self.loader):
      if process.running:
        process.kill()
        process.kills -= 1  # a stop, not one of the planned kills
    if self.pipeline.running:
      self.pipeline.wait()

  def loads_done(self) -> bool:
    return self.next_chunk >= len(self.chunks)
