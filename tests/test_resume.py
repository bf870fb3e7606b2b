"""A daily run killed mid-node: marked aborted in ML Metadata by the next
run on the home, shown so by `runs`, and resumed from that node, then the
days its invocation had not reached. On synthetic stores: the real kill and
resume are in tests/test_pipeline_e2e.py."""

import dataclasses
import json
import types

import pytest

from pipeline import local_run
from taxi_demand import cli
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand.lineage import nodes
from taxi_demand.lineage import queries
from taxi_demand.lineage import record
from taxi_demand.lineage import store
from taxi_demand.testing import synthetic


# The local pipeline's node ids, as run_options reads them off a tfx
# Pipeline: the nodes a synthetic run writes.
LOCAL_GRAPH = types.SimpleNamespace(components=[
    types.SimpleNamespace(id=node) for node in synthetic.EXECUTION_TYPES])


@pytest.fixture
def killed(tmp_path):
  """Three synthetic runs; the last one's process died inside its Trainer:
  the Trainer still RUNNING, its model PENDING."""
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  home = Home(tmp_path / "home")
  synthetic.build(home.root, 3)
  raw = record.open_writable(home.metadata)
  snap = store.load(home.metadata)
  last = snap.runs[-1]
  trainer = last.node(contract.TRAINER)
  [execution] = raw.get_executions_by_id([trainer.execution_id])
  execution.last_known_state = pb.Execution.RUNNING
  raw.put_executions([execution])
  [model] = snap.outputs(trainer.execution_id)[contract.MODEL]
  [artifact] = raw.get_artifacts_by_id([model.id])
  artifact.state = pb.Artifact.PENDING
  raw.put_artifacts([artifact])
  spans_ = [queries.run_span(snap, r) for r in snap.runs]
  return home, spans_, model.id


def test_the_next_run_marks_a_dead_runs_node_aborted(killed, capsys):
  home, _, model_id = killed
  assert queries.run_status(store.load(home.metadata),
                            store.load(home.metadata).runs[-1]) == "RUNNING"
  lines = local_run.mark_aborted(home)
  assert len(lines) == 1 and "killed in Trainer" in lines[0]
  snap = store.load(home.metadata)
  last = snap.runs[-1]
  trainer = last.node(contract.TRAINER)
  assert trainer.state == "CANCELED" and "process died" in trainer.properties[
      contract.ABORTED]
  assert queries.run_row(snap, last)["status"] == "ABORTED"
  # Its unpublished model is abandoned: no resolver or cache takes it.
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  [model] = record.open_writable(home.metadata).get_artifacts_by_id([model_id])
  assert model.state == pb.Artifact.ABANDONED
  # Marked once: the next run finds nothing left RUNNING.
  assert local_run.mark_aborted(home) == []
  capsys.readouterr()
  assert cli.main(["--home", str(home.root), "runs", "--json"]) == 0
  rows = json.loads(capsys.readouterr().out)
  assert [r["status"] for r in rows][-1] == "ABORTED"


def test_resume_goes_on_from_the_killed_node_then_the_days_left(killed):
  home, spans_, _ = killed
  local_run.mark_aborted(home)
  day = spans_[-1]
  previous = {"plan": [day, day + 1, day + 2], "done": False,
              "finished": [], "argv": ["--backfill", "a", "b"],
              "step": {"span": day, "for": day, "kind": "run"}}
  steps = local_run.resume_plan(home, previous)
  assert [(s.span, s.window, s.ingest) for s in steps] == [
      (day, False, False), (day + 1, True, False), (day + 2, True, False)]
  options = steps[0].run_options(LOCAL_GRAPH)
  assert list(options.from_nodes) == [contract.TRAINER]
  assert options.to_nodes is None


def test_a_killed_ingest_is_resumed_up_to_the_gate_then_its_day_runs(killed):
  home, spans_, _ = killed
  local_run.mark_aborted(home)
  day = spans_[-1]
  previous = {"plan": [day + 3], "done": False, "finished": [],
              "step": {"span": day, "for": day + 3, "kind": "ingest"}}
  steps = local_run.resume_plan(home, previous)
  assert [(s.span, s.window, s.ingest) for s in steps] == [
      (day, False, True), (day + 3, True, False)]
  options = steps[0].run_options(LOCAL_GRAPH)
  assert list(options.from_nodes) == [contract.TRAINER]
  assert list(options.to_nodes) == [contract.DATA_GATE]


def test_a_run_killed_before_it_reached_ml_metadata_is_run_again(tmp_path):
  home = Home(tmp_path / "home")
  synthetic.build(home.root, 2)
  day = queries.run_span(store.load(home.metadata),
                         store.load(home.metadata).runs[-1])
  previous = {"plan": [day + 1], "done": False, "finished": [],
              "step": {"span": day + 1, "for": day + 1, "kind": "run"}}
  assert [s.span for s in local_run.resume_plan(home, previous)] == [day + 1]
  # A finished invocation and a complete last run: nothing to resume.
  with pytest.raises(TaxiDemandError, match="did not fail; nothing"):
    local_run.resume_plan(home, {**previous, "done": True})
  # A refused day is a decision, not work left: not run again.
  with pytest.raises(TaxiDemandError, match="nothing to resume"):
    local_run.resume_plan(home, {**previous, "finished": [day + 1]})


def test_a_second_daily_run_on_a_home_is_refused_in_one_line(tmp_path, capsys):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  import textwrap  # noqa: PLC0415
  import runner_local  # noqa: PLC0415
  home = Home(tmp_path / "home").ensure()
  holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import time
      from taxi_demand import locks
      locks.RunLock({str(home.run_lock)!r}, "runner_local.py --date 2024-02-10"
                    ).acquire()
      print("held", flush=True)
      time.sleep(60)
      """)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    code = runner_local.main(["--home", str(home.root), "--date", "2024-02-11"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert f"pid {holder.pid}: runner_local.py --date 2024-02-10" in err[0]
    assert not home.metadata.exists()  # refused before anything was written
  finally:
    holder.kill()
    holder.wait()


def test_runs_shows_a_dead_run_aborted_before_anything_records_it(killed,
                                                                  capsys):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  import textwrap  # noqa: PLC0415
  home, _, _ = killed

  def status():
    capsys.readouterr()
    assert cli.main(["--home", str(home.root), "runs", "--json"]) == 0
    return json.loads(capsys.readouterr().out)[-1]["status"]

  assert status() == "ABORTED"  # RUNNING in ML Metadata, nobody running it
  holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
      import time
      from taxi_demand import locks
      locks.RunLock({str(home.run_lock)!r}, "a live run").acquire()
      print("held", flush=True)
      time.sleep(60)
      """)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    assert status() == "RUNNING"  # a daily run is alive: it may be this one
  finally:
    holder.kill()
    holder.wait()
  assert status() == "ABORTED"


@pytest.mark.parametrize("kind", ["run", "ingest"])
def test_a_run_killed_before_it_recorded_its_day_runs_again_whole(tmp_path,
                                                                  kind):
  """Killed inside ExampleGen's first second: ML Metadata holds a RUNNING
  ExampleGen with no span and no output. The run lock's step says which
  day it was; --resume runs that step again from its start."""
  from ml_metadata.proto import metadata_store_pb2  # noqa: PLC0415
  home = Home(tmp_path / "home")
  synthetic.build(home.root, 2)
  day = queries.run_span(store.load(home.metadata),
                         store.load(home.metadata).runs[-1]) + 1
  writer = synthetic.Writer(home.metadata, home.pipeline_root)
  writer.execute("killed-at-once", contract.EXAMPLE_GEN,
                 state=metadata_store_pb2.Execution.RUNNING)
  assert len(local_run.mark_aborted(home)) == 1
  main = day + 1 if kind == "ingest" else day
  previous = {"plan": [main], "done": False, "finished": [],
              "step": {"span": day, "for": main, "kind": kind}}
  steps = local_run.resume_plan(home, previous)
  if kind == "run":
    assert [(s.span, s.options, s.window, s.ingest) for s in steps] == [
        (day, None, True, False)]
  else:
    assert [(s.span, s.window, s.ingest) for s in steps] == [
        (day, False, True), (main, True, False)]
    assert list(steps[0].options.to_nodes) == [contract.DATA_GATE]
    assert not steps[0].options.from_nodes


def test_a_resumed_ingest_that_is_refused_lets_its_day_run(tmp_path,
                                                          monkeypatch, capsys):
  """A resumed window day that DataGate refuses is left out of the window,
  as a fresh ingest's is: the invocation goes on to the day it was for,
  and the ingest prints its verdict, not a run's summary."""
  from pipeline import pipeline as graph  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.errors import AlertError  # noqa: PLC0415
  home = Home(tmp_path / "home").ensure()
  day = spans.parse_span("2024-03-08")
  steps = [local_run.Step(day - 3, window=False, ingest=True),
           local_run.Step(day)]
  ran = []

  def execute(pipeline_, config, options, home_):
    del pipeline_, options, home_
    ran.append(config)
    if config == day - 3:
      raise AlertError("data validation refused span ...")

  monkeypatch.setattr(local_run, "plan", lambda *a: steps)
  monkeypatch.setattr(local_run, "build_config", lambda a, h, span: span)
  monkeypatch.setattr(local_run, "ingest_window", lambda *a, **k: None)
  monkeypatch.setattr(local_run, "execute", execute)
  monkeypatch.setattr(local_run, "ingest_verdict",
                      lambda h: "refused, left out of every window: drift")
  monkeypatch.setattr(local_run, "print_summary",
                      lambda h, config: ran.append(("summary", config)))
  monkeypatch.setattr(graph, "create_pipeline", lambda config: None)
  lock = types.SimpleNamespace(previous={}, record={"finished": []})
  lock.note = lambda **kw: lock.record.update(kw)
  local_run.run_all(types.SimpleNamespace(resume=True), home, lock, [])
  assert ran == [day - 3, day, ("summary", day)]
  assert lock.record["finished"] == [day] and lock.record["done"]
  assert "  ingest 2024-03-05: refused, left out of every window: drift" in \
      capsys.readouterr().out.splitlines()


def nodes_run(pipeline_, options) -> set:
  """The nodes LocalDagRunner runs of `pipeline_` with `options`: TFX's
  own partial-run marking of the compiled pipeline."""
  from tfx.dsl.compiler import compiler  # noqa: PLC0415
  from tfx.orchestration.portable import partial_run_utils  # noqa: PLC0415
  ir = compiler.Compiler().compile(pipeline_)
  if options is not None:
    partial_run_utils.mark_pipeline(ir, from_nodes=options.from_nodes,
                                    to_nodes=options.to_nodes)
  return {n.pipeline_node.node_info.id for n in ir.nodes
          if not n.pipeline_node.execution_options.HasField("skip")}


@pytest.mark.parametrize("node", [contract.NEXT_DAY_VALIDATOR,
                                  contract.SKEW_VALIDATOR])
def test_a_run_killed_off_the_training_path_resumes_all_it_had_not_run(
    tmp_path, monkeypatch, node):
  """NextDayValidator and SkewValidator run before Transform and do not
  feed it. A run killed in either is resumed from every node it had not
  finished, so it still trains, blesses and pushes; the nodes it finished
  are reused, not run twice."""
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  home = Home(tmp_path / "home")
  specs = synthetic.default_runs(3)
  specs[-1] = dataclasses.replace(specs[-1], killed_in=node)
  synthetic.build(home.root, specs)
  assert len(local_run.mark_aborted(home)) == 1
  killed = store.load(home.metadata).runs[-1]
  finished = {n.node_id for n in killed.nodes} - {node}
  ran = []

  def execute(pipeline_, config, options, home_):
    del config, home_
    every = {c.id for c in pipeline_.components}
    ran.append((nodes_run(pipeline_, options), every - finished))

  monkeypatch.setattr(local_run, "build_config", lambda a, h, span: (
      PipelineConfig(
          pipeline_name=contract.PIPELINE_NAME, span=span,
          pipeline_root=str(home.pipeline_root),
          warehouse_path=str(home.warehouse),
          metadata_path=str(home.metadata), serving_dir=str(home.models),
          serving_log_dir=str(home.serving_log))))
  monkeypatch.setattr(local_run, "execute", execute)
  monkeypatch.setattr(local_run, "print_summary", lambda h, config: None)
  lock = types.SimpleNamespace(previous={}, record={"finished": []})
  lock.note = lambda **kw: lock.record.update(kw)
  local_run.run_all(types.SimpleNamespace(resume=True), home, lock, [])
  [(run, not_finished)] = ran
  assert {contract.TRANSFORM, contract.TRAINER, contract.FORECAST_GATE,
          contract.PUSHER, node} <= run
  assert run == not_finished


def test_the_window_ingest_runs_the_node_tables_ingest_group(tmp_path,
                                                            monkeypatch):
  """A day of a later window runs the table's INGEST nodes and nothing
  else; an ingest check added to the table runs there too."""
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  from pipeline.pipeline import create_pipeline  # noqa: PLC0415
  pipe = create_pipeline(PipelineConfig(
      pipeline_name=contract.PIPELINE_NAME, span=19757,
      pipeline_root=str(tmp_path / "root"),
      warehouse_path=str(tmp_path / "w.duckdb"),
      metadata_path=str(tmp_path / "m.sqlite"),
      serving_dir=str(tmp_path / "models")))
  assert nodes_run(pipe, local_run.ingest_options()) == {
      n.id for n in nodes.on(nodes.LOCAL) if n.group == nodes.INGEST}
  check = nodes.Node(
      "DayCheck", "pipeline.components.day_check.DayCheck", nodes.INGEST,
      inputs={contract.STATISTICS: nodes.Input(contract.STATISTICS_GEN,
                                               contract.STATISTICS)},
      outputs={contract.RESULT: "taxi_demand.DayCheck"})
  monkeypatch.setattr(nodes, "TABLE", nodes.TABLE + [check])
  assert set(local_run.ingest_options().to_nodes) == {
      contract.DATA_GATE, "DayCheck"}
  resumed = local_run.Step(19757, ingest=True, reuse=frozenset(
      [contract.EXAMPLE_GEN]))
  assert set(resumed.run_options(LOCAL_GRAPH).to_nodes) == {
      contract.DATA_GATE, "DayCheck"}
