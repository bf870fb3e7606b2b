"""One console line per pipeline node, with its wall time and outcome."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Callable, Dict, List, Optional, TextIO

from taxi_demand import faults

_RUNNING = re.compile(r"^Component (\S+) is running\.$")
_FINISHED = re.compile(r"^Component (\S+) is finished\.$")
_SKIPPED = re.compile(r"^Skipping component (\S+)\.$")
# The launcher's word for a node whose inputs or Cond did not trigger it.
_NOT_TRIGGERED = re.compile(r"^Skipping execution for (\S+)$")
# The launcher's words once a node's execution is registered RUNNING and
# its executor is about to run, and once the executor returned (its outputs
# written, not yet published).
_EXECUTING = re.compile(r"^Going to run a new execution \d+$")
_SUCCEEDED = re.compile(r"^Execution \d+ succeeded\.$")


def _message(record: logging.LogRecord) -> str:
  """The record's text; '' if it cannot be formatted (not ours to fix)."""
  try:
    return record.getMessage()
  except Exception:  # pylint: disable=broad-except
    return ""


class NodeProgress(logging.Handler):
  """Turns LocalDagRunner's per-node log records into console lines.

  LocalDagRunner runs nodes one by one and logs "Component X is running." and
  "... is finished." through absl; this handler listens for exactly those, so
  the console stays quiet while the logs go to the run's log file.

  Args:
    outcome: called with a node id when it finishes; returns "ran" or
      "cached" (read from ML Metadata by the caller).
    stream: where lines go.
  """

  def __init__(self, outcome: Callable[[str], str],
               stream: TextIO = sys.stdout):
    super().__init__(logging.INFO)
    self._outcome = outcome
    self._stream = stream
    self._started: Dict[str, float] = {}
    self.rows: List[dict] = []
    self.current: Optional[str] = None
    self._not_triggered: set = set()

  def emit(self, record: logging.LogRecord) -> None:
    message = _message(record)
    if m := _RUNNING.match(message):
      self.current = m.group(1)
      self._started[self.current] = time.monotonic()
      self._stream.write(f"  {self.current:<24}")
      self._stream.flush()
    elif m := _FINISHED.match(message):
      node = m.group(1)
      wall = time.monotonic() - self._started.get(node, time.monotonic())
      outcome = ("skipped" if node in self._not_triggered
                 else self._outcome(node))
      self._line(node, outcome, wall)
      self.current = None
    elif m := _NOT_TRIGGERED.match(message):
      self._not_triggered.add(m.group(1))
    elif m := _SKIPPED.match(message):
      self._stream.write(f"  {m.group(1):<24}skipped (partial run)\n")
      self.rows.append({"node": m.group(1), "outcome": "skipped",
                        "wall_s": 0.0})

  def fail_current(self, reason: str) -> None:
    """Ends the line of the node that raised."""
    if self.current is not None:
      wall = time.monotonic() - self._started[self.current]
      self._line(self.current, reason, wall)
      self.current = None

  def _line(self, node: str, outcome: str, wall: float) -> None:
    self._stream.write(f"{outcome:<8}{wall:7.1f} s\n")
    self._stream.flush()
    self.rows.append({"node": node, "outcome": outcome,
                      "wall_s": round(wall, 2)})


class CrashPoints(logging.Handler):
  """The daily run's crash points (taxi_demand.faults), from the same log
  records: `node.start.<id>` as LocalDagRunner starts a node,
  `node.inside.<id>` once its execution is RUNNING in ML Metadata, and
  `node.end.<id>` once its executor returned, before its outputs are
  published. Installed only while TAXI_DEMAND_CRASH_AT names a node point.
  """

  def __init__(self):
    super().__init__(logging.INFO)
    self.current: Optional[str] = None

  def emit(self, record: logging.LogRecord) -> None:
    message = _message(record)
    if m := _RUNNING.match(message):
      self.current = m.group(1)
      faults.point(f"node.start.{self.current}")
    elif self.current and _EXECUTING.match(message):
      faults.point(f"node.inside.{self.current}")
    elif self.current and _SUCCEEDED.match(message):
      faults.point(f"node.end.{self.current}")
