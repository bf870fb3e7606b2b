"""The console's node lines come from ML Metadata's execution states.

A synthetic store stands in for the one LocalDagRunner writes: each test
registers executions and changes their states by hand, as the launcher
does, and reads the lines the watcher prints. No log record is involved.
"""

import io
import re

from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline import progress
from taxi_demand.lineage import contract as c
from taxi_demand.testing import synthetic

RUN = "2024-02-10T06:00:00.000001"
NODES = [c.CURATED_SCHEMA, c.EXAMPLE_GEN, c.DATA_GATE, c.TRAINER, c.PUSHER]


def _state(writer, node, state):
  """Moves `node`'s newest execution to `state`, as the launcher does."""
  ctx = writer.context(c.NODE_CONTEXT, f"{writer.pipeline_name}.{node}")
  execution = max(writer.store.get_executions_by_context(ctx.id),
                  key=lambda e: e.id)
  execution.last_known_state = state
  writer.store.put_executions([execution])


def _watch(tmp_path, skipped=frozenset()):
  out = io.StringIO()
  # A day between reads: the test reads (poll) when it has written.
  watcher = progress.NodeProgress(tmp_path / "metadata.sqlite", stream=out,
                                  interval=86400)
  watcher.watch(RUN, NODES, skipped)
  return watcher, out


def _lines(out):
  return [re.sub(r"\s+", " ", line).strip()
          for line in out.getvalue().splitlines(keepends=True)]


def test_each_nodes_line_follows_its_execution_state(tmp_path, caplog):
  watcher, out = _watch(tmp_path)
  assert not watcher.poll()  # no store yet: read again next time
  writer = synthetic.Writer(tmp_path / "metadata.sqlite")
  writer.execute("an earlier run", c.EXAMPLE_GEN, synthetic.COMPLETE)
  assert watcher.poll() and out.getvalue() == ""  # the run has not begun

  writer.execute(RUN, c.CURATED_SCHEMA, synthetic.CACHED)
  writer.execute(RUN, c.EXAMPLE_GEN, pb.Execution.RUNNING)
  watcher.poll()
  assert _lines(out) == ["CuratedSchema cached 0.0 s", "ExampleGen"]
  assert out.getvalue().endswith(f"  {c.EXAMPLE_GEN:<24}")  # still running

  _state(writer, c.EXAMPLE_GEN, pb.Execution.COMPLETE)
  writer.execute(RUN, c.DATA_GATE, synthetic.COMPLETE)
  # The Trainer has no execution (its Cond said no) and the Pusher, after
  # it, runs: the Trainer was not triggered.
  writer.execute(RUN, c.PUSHER, pb.Execution.RUNNING)
  watcher.poll()
  _state(writer, c.PUSHER, pb.Execution.FAILED)
  watcher.poll()  # a failed node's line waits for the reason the run gives
  assert [r["outcome"] for r in watcher.rows] == [
      "cached", "ran", "ran", "skipped"]
  watcher.stop("ALERT")
  assert _lines(out) == [
      "CuratedSchema cached 0.0 s",
      f"ExampleGen ran {watcher.rows[1]['wall_s']:.1f} s",
      "DataGate ran 0.0 s", "Trainer skipped 0.0 s",
      f"Pusher ALERT {watcher.rows[-1]['wall_s']:.1f} s"]
  assert [r["node"] for r in watcher.rows] == NODES
  assert not [r for r in caplog.records if r.name.startswith("tfx")]


def test_a_partial_runs_reused_nodes_say_so_and_the_untriggered_skipped(
    tmp_path):
  """A partial run's snapshot records the nodes it reuses as CACHED in the
  new run: their lines say they were left out, as TFX's marking says."""
  writer = synthetic.Writer(tmp_path / "metadata.sqlite")
  watcher, out = _watch(tmp_path, skipped={c.CURATED_SCHEMA, c.EXAMPLE_GEN})
  writer.execute(RUN, c.CURATED_SCHEMA, synthetic.CACHED)
  writer.execute(RUN, c.EXAMPLE_GEN, synthetic.CACHED)
  writer.execute(RUN, c.DATA_GATE, pb.Execution.RUNNING)
  watcher.poll()
  _state(writer, c.DATA_GATE, pb.Execution.COMPLETE)
  watcher.stop()  # the run returned: the nodes with no execution were skipped
  assert _lines(out) == [
      "CuratedSchema skipped (partial run)", "ExampleGen skipped (partial run)",
      f"DataGate ran {watcher.rows[2]['wall_s']:.1f} s",
      "Trainer skipped 0.0 s", "Pusher skipped 0.0 s"]
