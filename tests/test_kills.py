"""Crash points, killed on purpose: the load and the 5-minute job die with
SIGKILL at each named point (taxi_demand.faults) and are restarted; the end
state equals that of a run without the kill.

The whole matrix, with the daily run killed at every node, is
bench/kills.py; here is the representative subset the suite's budget
allows. The Pusher's point is tested on its executor in test_pusher.py.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taxi_demand import faults
from taxi_demand import features
from taxi_demand.data import simulate
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.home import Home
from taxi_demand.serving import predict
from taxi_demand.serving import servelog

KILLED = -signal.SIGKILL


def taxi_demand(home: Home, *args, crash: str = "", **popen):
  env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
  if crash:
    env[faults.ENV_VAR] = crash
  argv = [sys.executable, "-m", "taxi_demand", "--home", str(home.root),
          *args]
  if popen:
    return subprocess.Popen(argv, env=env, **popen)
  return subprocess.run(argv, env=env, capture_output=True, text=True,
                        timeout=300)


def test_points_are_named_and_unarmed_they_do_nothing(monkeypatch):
  assert faults.known("load.inside") and faults.known("node.start.Trainer")
  assert not faults.known("load.sideways") and not faults.known("node.start.")
  # The hit counts are the process's: start from none, and leave none
  # behind for a later test that arms a point in-process.
  monkeypatch.setattr(faults, "_hits", {})
  monkeypatch.delenv(faults.ENV_VAR, raising=False)
  faults.point("load.inside")  # still alive
  monkeypatch.setenv(faults.ENV_VAR, "load.inside@2")
  faults.point("load.before")
  faults.point("load.inside")  # the first hit of an @2 point: alive


# --- the load -------------------------------------------------------------------


@pytest.fixture(scope="module")
def load_case(tmp_path_factory):
  """A warehouse with two days, a file of the third, and the state one
  clean load of it leaves."""
  root = tmp_path_factory.mktemp("kills-load")
  base = Home(root / "base").ensure()
  with Warehouse(base.warehouse) as wh:
    simulate.simulate_into(wh, "2024-03-01", 2, seed=5, scale=0.02)
  [day_file, _] = simulate.simulate_files(root / "file", "2024-03-03", 1,
                                          seed=5, scale=0.02).files
  clean = copy(base, root / "clean")
  assert taxi_demand(clean, "load", day_file).returncode == 0
  return base, Path(day_file), state(clean)


def copy(home: Home, to: Path) -> Home:
  import shutil  # noqa: PLC0415
  shutil.copytree(home.root, to)
  return Home(to)


def state(home: Home):
  with Warehouse(home.warehouse, read_only=True) as wh:
    return (wh.con.execute("SELECT count(*), sum(hash(unique_key)) FROM trips"
                           ).fetchone(),
            wh.con.execute("SELECT count(*) FROM quarantine").fetchone(),
            wh.con.execute("SELECT count(*) FROM loads").fetchone())


@pytest.mark.parametrize("point", ["load.before", "load.inside",
                                   "load.after"])
def test_a_load_killed_at_each_point_then_run_again_equals_one_load(
    load_case, tmp_path, point):
  base, day_file, clean = load_case
  home = copy(base, tmp_path / "home")
  killed = taxi_demand(home, "load", str(day_file), crash=point)
  assert killed.returncode == KILLED, killed.stderr
  again = taxi_demand(home, "load", str(day_file))
  assert again.returncode == 0, again.stderr
  assert state(home) == clean
  if point == "load.after":  # it had committed: the file is not read twice
    assert "already loaded" in again.stdout + again.stderr


# --- the 5-minute job -----------------------------------------------------------


def job(home: Home, at: str, ticks, crash: str = "") -> int:
  """`predict --every 5m` on a clock from `at` at 300x (a tick a second),
  stopped with Ctrl-C once `ticks` are all in the log. Its catch-up
  reaches 12 simulated hours back: at 300x, the model's first load (the
  TensorFlow import) alone takes an hour of the job's clock on a busy
  machine, and a restart must still reach the tick it died in."""
  day = servelog.day_of_slot(min(ticks))
  log = home.root / "job.log"
  with open(log, "a") as out:
    # SIGINT at its default: a suite run in the background (`nohup ... &`)
    # hands its children SIGINT ignored, and the Ctrl-C below would not
    # stop the job.
    proc = taxi_demand(home, "predict", "--every", "5m", "--at", at,
                       "--speed", "300", "--catch-up", "12h", crash=crash, stdout=out,
                       stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(
                           signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.3)
      if set(ticks) <= set(servelog.served_ticks(home.serving_log, [day])):
        proc.send_signal(signal.SIGINT)
        break
    try:
      return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      raise AssertionError(
          f"the job did not stop; wanted {sorted(ticks)}, served "
          f"{sorted(servelog.served_ticks(home.serving_log, [day]))[:12]}:"
          "\n" + log.read_text()[:1500]) from None


def rows_of(home: Home, tick: int):
  day = servelog.day_of_slot(tick)
  files = [p for p in Path(servelog.partition(home.serving_log, day)).glob(
      f"part-i{tick}-*.parquet")]
  assert len(files) == 1, files
  # Everything but when it was written (the wall clock of the writer).
  table = pq.read_table(files[0]).drop(["predicted_at"])
  return table.sort_by([(features.CELL, "ascending"),
                        (features.SLOT_START, "ascending")]).to_pydict()


@pytest.mark.slow
def test_a_job_killed_writing_a_tick_serves_it_once_on_restart(city_copy,
                                                               tmp_path):
  """Killed with the second tick's file written but not renamed into
  place: the restarted job (its clock two minutes on) sweeps the dead
  writer's temporary and serves that tick, once, as of its own time."""
  home = city_copy
  clean = copy(home, tmp_path / "clean")
  t0 = predict.parse_at("2024-02-11T13:00")
  ticks = [t0, t0 + 300, t0 + 600]
  assert job(home, "2024-02-11T13:00", ticks,
             crash="servelog.written@2") == KILLED
  day = servelog.day_of_slot(t0)
  served = servelog.served_ticks(home.serving_log, [day])
  assert t0 in served and t0 + 300 not in served
  folder = servelog.partition(home.serving_log, day)
  assert [p.name for p in folder.glob(".*")]  # the dead writer's temporary
  assert job(home, "2024-02-11T13:07", ticks) in (0, 130)
  served = servelog.served_ticks(home.serving_log, [day])
  assert all(len(served[t]) == 1 for t in ticks), served
  assert not [p.name for p in folder.glob(".*")]
  # As a job that was never killed served it.
  assert job(clean, "2024-02-11T13:05", [t0 + 300]) in (0, 130)
  assert rows_of(home, t0 + 300) == rows_of(clean, t0 + 300)
