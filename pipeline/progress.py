"""One console line per pipeline node, from ML Metadata's execution states."""

from __future__ import annotations

import datetime
import logging
import os
import re
import sys
import threading
import time
from typing import AbstractSet, Any, Dict, List, Optional, Sequence, TextIO

from taxi_demand import faults

_log = logging.getLogger(__name__)

# A node's line, from its execution's state in the run (never from log
# text, which a TFX release may reword): COMPLETE and CACHED end it; a
# FAILED or CANCELED one is ended by `stop`, which knows why (an alert or
# an error).
_OUTCOMES = {"COMPLETE": "ran", "CACHED": "cached"}
_OPEN = ("NEW", "RUNNING", "FAILED", "CANCELED")
# The last reads, once the run has returned: the store may still be
# locked by the writer's last commit for a moment.
_LAST_TRIES = 5


class NodeProgress:
  """Console lines for one LocalDagRunner run, from ML Metadata.

  A thread reads the run's executions (lineage.store.RunStates: its
  pipeline_run context, by name) every `interval` seconds, on a connection
  of its own, and writes each node's line in the order the runner runs
  them: the node's name as its execution is RUNNING, then its outcome
  ("ran" for COMPLETE, "cached" for CACHED) and wall time (its execution's
  create to last update) once it ends. A node that a partial run leaves
  out says "skipped (partial run)"; a node with no execution while a later
  one has one, or once the run is over, was not triggered (its inputs or
  a Cond said no) and says "skipped". A read that fails (the pipeline
  holds the SQLite store's lock, or has not created it yet) is tried again
  at the next one.

  Args:
    metadata: the MLMD SQLite file the run writes.
    stream: where lines go.
    interval: seconds between reads.
  """

  def __init__(self, metadata: os.PathLike, stream: TextIO = sys.stdout,
               interval: float = 0.5):
    self._metadata = metadata
    self._stream = stream
    self._interval = interval
    self._states = None          # lineage.store.RunStates, once connected
    self._run_id: Optional[str] = None
    self._nodes: Sequence[str] = ()
    self._skipped: AbstractSet[str] = frozenset()
    self._next = 0               # index of the first node without a line
    self._opened: Optional[str] = None
    self._since = time.time()    # when the node at _next became next
    self._thread: Optional[threading.Thread] = None
    self._done = threading.Event()
    self._lock = threading.Lock()
    self.rows: List[dict] = []

  def watch(self, run_id: str, nodes: Sequence[str],
            skipped: AbstractSet[str] = frozenset()) -> None:
    """Starts following run `run_id`: its `nodes` in the order they run,
    `skipped` those a partial run leaves out."""
    self._run_id, self._nodes, self._skipped = run_id, list(nodes), skipped
    self._since = time.time()
    self._thread = threading.Thread(target=self._follow, daemon=True,
                                    name=f"progress {run_id}")
    self._thread.start()

  def _follow(self) -> None:
    while not self._done.wait(self._interval):
      self.poll()

  def poll(self, over: bool = False) -> bool:
    """Reads the run's states once and writes the lines they end.

    `over`: the run has returned, so a node with no execution was not
    triggered. Returns False if the store could not be read this time.
    """
    with self._lock:
      try:
        states = self._read()
      except Exception as e:  # pylint: disable=broad-except
        _log.debug("progress: ML Metadata not readable yet: %s", e)
        return False
      self._advance(states or {}, over)
      return True

  def stop(self, failed: Optional[str] = None) -> None:
    """Ends the watch: the last states' lines, then, with `failed` (the
    reason the run raised: "ALERT" or "FAILED"), the line of the node it
    died in. Safe to call twice."""
    if self._run_id is None or self._done.is_set():
      return
    self._done.set()
    if self._thread is not None:
      self._thread.join()
    for attempt in range(_LAST_TRIES):
      if self.poll(over=failed is None):
        break
      time.sleep(0.1 * (attempt + 1))
    if failed is not None and self._next < len(self._nodes):
      node = self._nodes[self._next]
      self._line(node, failed, time.time() - self._since)

  def _read(self):
    if self._states is None:
      from taxi_demand.lineage import store  # noqa: PLC0415
      self._states = store.RunStates(store.connect(self._metadata),
                                     self._run_id)
    return self._states.read()

  def _advance(self, states: Dict[str, Any], over: bool) -> None:
    ran = [n for n in self._nodes if n not in self._skipped]
    while self._next < len(self._nodes):
      node = self._nodes[self._next]
      execution = states.get(node)
      if node in self._skipped:
        # A partial run's snapshot records these CACHED: not this run's.
        self._stream.write(f"  {node:<24}skipped (partial run)\n")
        self._stream.flush()
        self.rows.append({"node": node, "outcome": "skipped",
                          "wall_s": 0.0})
        self._next += 1
      elif execution is None:
        later = ran[ran.index(node) + 1:]
        if not (over or any(n in states for n in later)):
          return
        self._line(node, "skipped", 0.0)  # not triggered
      elif execution.state in _OPEN:
        self._open(node)
        self._since = execution.start_ms / 1000.0
        return
      else:
        self._line(node, _OUTCOMES.get(execution.state,
                                       execution.state.lower()),
                   execution.wall_s)

  def _open(self, node: str) -> None:
    if self._opened != node:
      self._opened = node
      self._stream.write(f"  {node:<24}")
      self._stream.flush()

  def _line(self, node: str, outcome: str, wall: float) -> None:
    self._open(node)
    self._stream.write(f"{outcome:<8}{wall:7.1f} s\n")
    self._stream.flush()
    self.rows.append({"node": node, "outcome": outcome,
                      "wall_s": round(wall, 2)})
    self._next += 1
    self._since = time.time()


def run(pipeline, run_options, progress: NodeProgress) -> None:
  """LocalDagRunner's run of `pipeline` (a tfx Pipeline), watched by
  `progress`.

  LocalDagRunner offers no callback per node, so its one step that sees
  the compiled pipeline, `run_with_ir`, is wrapped: it names the run (the
  pipeline_run context the watch reads, set as LocalDagRunner would set
  it) and learns the node order and which nodes a partial run skips from
  TFX's own marking of a copy of the pipeline.
  """
  from tfx.dsl.compiler import constants  # noqa: PLC0415
  from tfx.orchestration.local import local_dag_runner  # noqa: PLC0415
  from tfx.orchestration.portable import partial_run_utils  # noqa: PLC0415
  from tfx.orchestration.portable import runtime_parameter_utils  # noqa: PLC0415

  class Watched(local_dag_runner.LocalDagRunner):

    def run_with_ir(self, ir, run_options=None):
      run_id = datetime.datetime.now().isoformat()
      runtime_parameter_utils.substitute_runtime_parameter(
          ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
      marked = type(ir)()
      marked.CopyFrom(ir)
      if run_options:
        options = run_options.partial_run
        partial_run_utils.mark_pipeline(
            marked, from_nodes=options.from_nodes or None,
            to_nodes=options.to_nodes or None,
            snapshot_settings=options.snapshot_settings)
      nodes = [n.pipeline_node for n in marked.nodes]
      progress.watch(run_id, [n.node_info.id for n in nodes],
                     {n.node_info.id for n in nodes
                      if n.execution_options.HasField("skip")})
      return super().run_with_ir(ir, run_options=run_options)

  Watched().run(pipeline, run_options=run_options)


# The kill matrix's points (CrashPoints) still follow LocalDagRunner's and
# its launcher's log records: they must fire inside the node, at an exact
# step, which no state in ML Metadata marks. A reworded line is not silent
# there: bench/kills.py reports each point its run did not die at.
_RUNNING = re.compile(r"^Component (\S+) is running\.$")
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
