"""File locks that let several processes share one home without losing work.

Two kinds, both `flock(2)` locks, so the kernel drops them when their
process dies (a `kill -9` leaves no stale lock behind):

* `WarehouseLock`: the loader (a writer) and every reader of the warehouse
  (the 5-minute job, ExampleGen, read-only commands) take it around their
  DuckDB connection. DuckDB allows one writer or many readers per file and
  answers a conflicting open with an immediate error; this lock turns that
  error into a bounded wait. It is fair to writers: a writer that waits holds
  a turnstile that new readers must pass, so a stream of overlapping readers
  cannot starve a load, and a load waits only for the readers already in.
* `RunLock`: one daily run per home. A second one is refused at once, in one
  line naming the holder, instead of racing the first in ML Metadata.

A wait that runs out fails in one line naming the processes holding the lock.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

from taxi_demand.errors import TaxiDemandError

# How long a process waits for the warehouse before it gives up (seconds).
WAIT_ENV = "TAXI_DEMAND_LOCK_WAIT"
# Longer than the longest read it may wait behind: a day's ExampleGen query
# on a full-size city takes tens of seconds.
DEFAULT_WAIT_S = 300.0
_POLL_S = (0.01, 0.25)  # first and longest sleep between tries
# Warehouse locks this process holds: path -> [exclusive, users, fd].
_HELD: dict = {}
_HELD_GUARD = threading.Lock()


def default_wait() -> float:
  raw = os.environ.get(WAIT_ENV)
  if raw is None or not raw.strip():
    return DEFAULT_WAIT_S
  try:
    value = float(raw)
  except ValueError:
    raise TaxiDemandError(
        f"bad ${WAIT_ENV} {raw!r}: expected seconds, e.g. 300") from None
  if value < 0:
    raise TaxiDemandError(f"bad ${WAIT_ENV} {raw!r}: must be >= 0")
  return value


def _open(path: Path) -> int:
  path.parent.mkdir(parents=True, exist_ok=True)
  return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try(fd: int, op: int) -> bool:
  try:
    fcntl.flock(fd, op | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    return False


def poll(attempt: Callable[[], bool], deadline: float) -> bool:
  """Calls `attempt` until it returns True or `deadline` (monotonic) passes,
  sleeping a little longer each time."""
  pause = _POLL_S[0]
  while True:
    if attempt():
      return True
    if time.monotonic() >= deadline:
      return False
    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    pause = min(pause * 2, _POLL_S[1])


def holders(path: os.PathLike, include_self: bool = False) -> List[str]:
  """'pid N (command)' of each process holding a flock on `path`.

  Read from /proc/locks; empty where that is unavailable.
  """
  try:
    inode = os.stat(path).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
  except OSError:
    return []
  found = []
  for line in lines:
    parts = line.split()
    # 1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF   (-> may prefix)
    if "->" in parts:
      continue
    if len(parts) < 6 or parts[1] != "FLOCK":
      continue
    try:
      pid = int(parts[4])
      ino = int(parts[5].split(":")[-1])
    except ValueError:
      continue
    if ino == inode and (include_self or pid != os.getpid()):
      found.append(f"pid {pid} ({_command(pid)})")
  return sorted(set(found))


def _command(pid: int) -> str:
  try:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
  except OSError:
    return "?"
  words = [" ".join(w.decode(errors="replace").split())
           for w in raw.split(b"\0") if w]
  shown = " ".join(Path(words[0]).name if i == 0 else _cut(w)
                   for i, w in enumerate(words[:6]))
  return shown + (" ..." if len(words) > 6 else "")


def _cut(word: str, most: int = 40) -> str:
  return word if len(word) <= most else word[:most - 3] + "..."


class WarehouseLock:
  """A shared (reader) or exclusive (writer) lock on one warehouse file.

  Lock files sit next to the warehouse: `<name>.lock` (the lock itself) and
  `<name>.turnstile` (what a waiting writer holds to keep new readers out).
  """

  def __init__(self, warehouse: os.PathLike, exclusive: bool,
               wait_s: Optional[float] = None):
    warehouse = Path(warehouse)
    self.path = warehouse.with_name(warehouse.name + ".lock")
    self.turnstile = warehouse.with_name(warehouse.name + ".turnstile")
    self.exclusive = exclusive
    self.wait_s = default_wait() if wait_s is None else float(wait_s)
    self._fd: Optional[int] = None

  def acquire(self) -> "WarehouseLock":
    with _HELD_GUARD:
      held = _HELD.get(self.path)
      if held is not None:
        # flock would make this process wait for itself: share its lock
        # when DuckDB would share the file, else fail as DuckDB would.
        if held[0] != self.exclusive:
          how = "for writing" if held[0] else "read-only"
          raise TaxiDemandError(
              f"cannot open warehouse {self.path.with_suffix('')}: this "
              f"process has it open {how}; close that first")
        held[1] += 1
        self._fd = held[2]
        return self
    deadline = time.monotonic() + self.wait_s
    gate = _open(self.turnstile)
    fd = _open(self.path)
    mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
    try:
      if not poll(lambda: _try(gate, fcntl.LOCK_EX), deadline):
        self._give_up(self.turnstile)
      # Readers pass the turnstile at once; a writer keeps it while it
      # waits for the readers inside to leave.
      if not poll(lambda: _try(fd, mode), deadline):
        self._give_up(self.path)
    except BaseException:
      os.close(fd)
      raise
    finally:
      os.close(gate)  # closing the descriptor releases its flock
    with _HELD_GUARD:
      _HELD[self.path] = [self.exclusive, 1, fd]
    self._fd = fd
    return self

  def writer_waiting(self) -> bool:
    """Whether another process waits to write (it holds the turnstile).

    A long reader asks between steps and, if so, lets it in (see
    Warehouse.yield_to_writers). A reader passing the turnstile at that
    instant looks the same: the cost is one needless reopen.
    """
    gate = _open(self.turnstile)
    try:
      return not _try(gate, fcntl.LOCK_EX)
    finally:
      os.close(gate)

  def _give_up(self, path: Path) -> None:
    who = holders(path) or holders(self.path)
    raise TaxiDemandError(
        f"warehouse {self.path.with_suffix('')} is busy: waited "
        f"{self.wait_s:g} s for {'write' if self.exclusive else 'read'} "
        f"access; held by {', '.join(who) if who else 'another process'} "
        f"(${WAIT_ENV} sets the wait)")

  def release(self) -> None:
    if self._fd is None:
      return
    self._fd = None
    with _HELD_GUARD:
      held = _HELD[self.path]
      held[1] -= 1
      if held[1] == 0:
        del _HELD[self.path]
        os.close(held[2])

  def __enter__(self) -> "WarehouseLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


class RunLock:
  """One daily run per home: taken without waiting, or refused in one line.

  The holder keeps a small record in the lock file: who it is, and what it
  is doing (`note`). The kernel drops the lock when the holder dies, but the
  record stays; the next holder finds it in `previous`, which is how
  `--resume` knows what a killed run was in the middle of.
  """

  def __init__(self, path: os.PathLike, what: str):
    self.path = Path(path)
    self.what = what
    self.previous: dict = {}
    self.record: dict = {}
    self._fd: Optional[int] = None

  def acquire(self) -> "RunLock":
    fd = _open(self.path)
    if not _try(fd, fcntl.LOCK_EX):
      os.close(fd)
      raise TaxiDemandError(
          f"another daily run holds this home ({self._holder()}); wait for "
          "it to finish, then run again")
    self._fd = fd
    self.previous = _read_record(self.path)
    self.record = {
        "pid": os.getpid(), "what": self.what,
        "since": datetime.datetime.now().isoformat(timespec="seconds")}
    self._write()
    return self

  def note(self, **fields) -> None:
    """Adds `fields` to the record (JSON values), rewritten in place."""
    self.record.update(fields)
    self._write()

  def _write(self) -> None:
    data = json.dumps(self.record, sort_keys=True).encode()
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, data, 0)

  def _holder(self) -> str:
    info = _read_record(self.path)
    if not info:
      return ", ".join(holders(self.path)) or "another process"
    return (f"pid {info.get('pid')}: {info.get('what')}, since "
            f"{info.get('since')}")

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "RunLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read_record(path: Path) -> dict:
  try:
    record = json.loads(path.read_text() or "{}")
  except (OSError, ValueError):  # absent, or cut by a crash mid-write
    return {}
  return record if isinstance(record, dict) else {}
