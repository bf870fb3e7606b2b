"""The warehouse's reader/writer lock and the daily run's lock, across
processes: waits are bounded, writers are not starved, a killed holder
frees the lock, and a wait that runs out is one line naming the holder."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from taxi_demand import locks
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.errors import TaxiDemandError


def hold(path, mode: str, seconds: float) -> subprocess.Popen:
  """Another process that opens the warehouse (`r` or `w`), says `held`,
  and keeps it for `seconds`."""
  code = textwrap.dedent(f"""
      import sys, time
      from taxi_demand.data.warehouse import Warehouse
      with Warehouse({str(path)!r}, read_only={mode == 'r'}):
        print('held', flush=True)
        time.sleep({seconds})
      """)
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def wait_for_a_waiting_writer(path) -> None:
  probe = locks.WarehouseLock(path, exclusive=False)
  deadline = time.monotonic() + 30
  while not probe.writer_waiting():
    assert time.monotonic() < deadline, "the writer never waited"
    time.sleep(0.05)


@pytest.fixture
def warehouse(tmp_path):
  path = tmp_path / "w.duckdb"
  Warehouse(path).close()
  return path


def test_a_writer_waits_for_a_reader_instead_of_failing(warehouse):
  reader = hold(warehouse, "r", 3.0)
  started = time.monotonic()
  with Warehouse(warehouse, wait_s=30) as wh:
    waited = time.monotonic() - started
    wh.con.execute("INSERT INTO quarantine VALUES ('f', 'r', 'x', now())")
  assert reader.wait() == 0
  assert 0.5 < waited < 30


def test_readers_share_and_a_waiting_writer_goes_first(warehouse):
  first = hold(warehouse, "r", 6.0)
  with Warehouse(warehouse, read_only=True, wait_s=1) as wh:  # shared: at once
    assert wh.count("trips") == 0
  order = []
  writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import time
      from taxi_demand.data.warehouse import Warehouse
      with Warehouse({str(warehouse)!r}, wait_s=30):
        print(time.monotonic(), flush=True)
        time.sleep(1.0)
      """)], stdout=subprocess.PIPE, text=True)
  wait_for_a_waiting_writer(warehouse)  # it holds the turnstile
  with Warehouse(warehouse, read_only=True, wait_s=30):
    order.append(time.monotonic())
  writer_in = float(writer.stdout.readline())
  assert writer.wait() == 0 and first.wait() == 0
  # The later reader got in only after the writer had been in and out.
  assert order[0] > writer_in + 0.9


def test_a_wait_that_runs_out_is_one_line_naming_the_holder(warehouse):
  writer = hold(warehouse, "w", 30)
  try:
    with pytest.raises(TaxiDemandError) as e:
      Warehouse(warehouse, read_only=True, wait_s=0.5)
    message = str(e.value)
    assert "\n" not in message and "busy" in message
    assert f"pid {writer.pid}" in message and locks.WAIT_ENV in message
  finally:
    writer.kill()
    writer.wait()


def test_a_killed_writer_frees_the_warehouse_as_it_was(warehouse):
  """kill -9 inside a load's transaction: the next open waits for nothing
  and finds the warehouse as before the load."""
  code = textwrap.dedent(f"""
      import time
      from taxi_demand.data.warehouse import Warehouse
      wh = Warehouse({str(warehouse)!r})
      wh.con.execute("BEGIN TRANSACTION")
      wh.con.execute("INSERT INTO quarantine VALUES ('f', 'r', 'x', now())")
      print('held', flush=True)
      time.sleep(60)
      """)
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "held"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  with Warehouse(warehouse, wait_s=5) as wh:
    assert wh.count("quarantine") == 0


def test_one_process_cannot_wait_for_itself(warehouse):
  with Warehouse(warehouse, read_only=True):
    with pytest.raises(TaxiDemandError, match="this process has it open"):
      Warehouse(warehouse, wait_s=30)
    with Warehouse(warehouse, read_only=True) as again:  # shared, at once
      assert again.count("trips") == 0
  with Warehouse(warehouse, wait_s=1) as wh:  # released: free again
    assert wh.count("trips") == 0


def test_a_second_daily_run_is_refused_and_a_killed_one_frees_the_home(
    tmp_path):
  path = tmp_path / "pipeline.lock"
  code = textwrap.dedent(f"""
      import time
      from taxi_demand import locks
      locks.RunLock({str(path)!r}, "run for 2024-02-10").acquire()
      print('held', flush=True)
      time.sleep(60)
      """)
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "held"
  with pytest.raises(TaxiDemandError) as e:
    locks.RunLock(path, "another").acquire()
  assert f"pid {proc.pid}: run for 2024-02-10" in str(e.value)
  assert "\n" not in str(e.value)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  with locks.RunLock(path, "after the kill"):
    pass


def test_the_wait_comes_from_the_environment(monkeypatch):
  monkeypatch.setenv(locks.WAIT_ENV, "12.5")
  assert locks.default_wait() == 12.5
  monkeypatch.setenv(locks.WAIT_ENV, "soon")
  with pytest.raises(TaxiDemandError, match="expected seconds"):
    locks.default_wait()


def test_a_long_reader_lets_a_waiting_load_in_between_its_steps(warehouse):
  with Warehouse(warehouse, read_only=True) as wh:
    wh.yield_to_writers()  # nobody waits: keeps its connection
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from taxi_demand.data.warehouse import Warehouse
        with Warehouse({str(warehouse)!r}, wait_s=30) as w:
          w.con.execute("INSERT INTO quarantine VALUES ('f', 'r', 'x', now())")
        """)])
    wait_for_a_waiting_writer(warehouse)
    wh.yield_to_writers()  # the load goes first; then this reader is back
    assert wh.count("quarantine") == 1
  assert writer.wait() == 0
