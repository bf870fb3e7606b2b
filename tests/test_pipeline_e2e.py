"""The daily pipeline end to end on a tiny simulated city, asserted through MLMD.

One warehouse and one state directory serve the whole module; the tests run
in file order, each one day later, as a daily schedule would. The first run
ingests its window's three days first; every later day ingests only itself.
"""

import datetime
import time
from pathlib import Path

import pytest

import runner_local
from taxi_demand import spans
from taxi_demand.data import simulate
from taxi_demand.data import warehouse as wh
from taxi_demand.home import Home
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.serving import registry
from taxi_demand.serving import servelog

pytestmark = pytest.mark.e2e

START = datetime.date(2024, 3, 1)
DAYS = 13                      # 2024-03-01 .. 2024-03-13
# A model of a few hundred steps on 3 days of a small city is too rough for
# the gates' margins: at 60 steps it beat the seasonal-naive forecast (MAE
# 1.67 against 1.85) but not by 10%, and at 150 steps one busy cell was
# twice its naive MAE. These tests are about the pipeline's mechanics; the
# gates are pinned by tests/test_forecast_gate.py, so here they only ask
# "better than naive" overall.
FAST = ["--train-days", "3", "--train-steps", "300", "--naive-margin", "0",
        "--cell-margin", "1.0"]
# The live day's audit wants at least this many 5-minute ticks served.
MIN_LIVE_TICKS = 20
TICK_SECONDS = 300
EVERY_NODE = {"ExampleGen", "StatisticsGen", "SchemaGen", "CuratedSchema",
              "ExampleValidator", "DataGate", "Transform", "Trainer",
              "Evaluator", "GuidanceGate", "ForecastGate", "Pusher",
              "NextDayValidator", "SkewValidator"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
  home = Home(tmp_path_factory.mktemp("e2e") / "home").ensure()
  with wh.Warehouse(home.warehouse) as warehouse:
    simulate.simulate_into(warehouse, start=START, days=DAYS, seed=11,
                           scale=0.3)
  return home


def run(home, *args):
  return runner_local.main(["--home", str(home.root), *FAST, *args])


def last_run(home):
  return store.load(home.metadata).last_run()


def executed(run_):
  """Node ids that really executed (not cached, not resolvers)."""
  return {n.node_id for n in run_.nodes if n.state == "COMPLETE"} & EVERY_NODE


def test_a_first_run_executes_every_node_and_pushes(home):
  assert run(home, "--date", "2024-03-09") == 0
  snap = store.load(home.metadata)
  # First the window's three days, each ingested and checked by a run of
  # its own up to DataGate (the curated schema imported by the first).
  *ingests, r = snap.runs
  assert [queries.run_row(snap, i)["status"] for i in ingests] == [
      "INGESTED"] * 3
  assert [queries.run_span(snap, i) for i in ingests] == [
      spans.parse_span(f"2024-03-0{d}") for d in (6, 7, 8)]
  assert executed(r) == EVERY_NODE - {"CuratedSchema"}
  assert r.status == "COMPLETE"
  summary = queries.run_summary(snap, snap.run(r.run_id))
  assert summary["span"] == spans.parse_span("2024-03-09")
  assert summary["blessed"] is True
  # The mark the Vertex baseline query keeps (the Evaluator's has none).
  assert queries.blessing_record(snap, snap.run(r.run_id)).forecast_gate
  assert summary["train_examples"] == 3 * 77 * 48
  assert summary["eval_examples"] == 77 * 48
  assert len(queries.pushes(snap)) == 1
  assert registry.versions(home.models) == [summary["pushed_version"]]


def test_a_rerun_with_nothing_changed_is_served_from_the_cache(home):
  before = registry.versions(home.models)
  assert run(home, "--date", "2024-03-09") == 0
  r = last_run(home)
  assert executed(r) == set()
  assert {n.node_id for n in r.nodes if n.cached} >= EVERY_NODE
  assert registry.versions(home.models) == before


def test_a_served_day_is_joined_with_the_training_path_and_scored_by_lead(
    home, serving_log_tools):
  """The 5-minute job served the morning of 03-10 (a replay moved into the
  served log, as the live job writes it); the run for 03-10 checks those
  rows by join and data age, and scores the served forecasts by lead.

  That run's Trainer then fails (an unknown hyperparameter) after the data
  side and its checks ran; the next test resumes it.
  """
  import json  # noqa: PLC0415
  from taxi_demand.serving import replay  # noqa: PLC0415
  served = serving_log_tools.serve_as_live(
      home, "2024-03-10", between=replay.parse_between("07:00-08:00"))
  assert run(home, "--date", "2024-03-10", "--hparam", "no_such_knob=1") == 1
  r = last_run(home)
  assert {"SkewValidator", "NextDayValidator", "Transform"} <= executed(r)
  assert [n.node_id for n in r.nodes if n.state == "FAILED"] == ["Trainer"]
  snap = store.load(home.metadata)
  [report] = snap.outputs(r.node("SkewValidator").execution_id)["report"]
  assert report.properties["checked"] == 1
  assert report.properties["alert"] == 0, report.properties["flagged"]
  body = json.loads(open(f"{report.uri}/skew_report.json").read())
  assert body["join"]["matched"] == body["join"]["served"] == 2 * 77 * 12
  assert body["staleness"]["ticks"] == 18 and not body["staleness"]["flagged"]
  [result] = snap.outputs(r.node("NextDayValidator").execution_id)["result"]
  by_lead = json.loads(result.properties["served_by_lead"])
  assert {int(k): v["mae"] for k, v in by_lead.items()} == {
      k: v["mae"] for k, v in served.by_lead.items()}
  assert [r_["served_by_lead"] for r_ in queries.next_day_results(snap)
          if r_["span"] == spans.parse_span("2024-03-10")] == [by_lead]


def test_a_failed_trainer_resumes_from_the_failed_node_only(home):
  failed = last_run(home)
  assert failed.node("Trainer").state == "FAILED"
  assert run(home, "--resume") == 0
  resumed = last_run(home)
  assert resumed.run_id != failed.run_id
  assert executed(resumed) == {"Trainer", "Evaluator", "GuidanceGate",
                               "ForecastGate", "Pusher"}
  snap = store.load(home.metadata)
  summary = queries.run_summary(snap, snap.run(resumed.run_id))
  # The resumed run judged its model: 03-10 is a Sunday, a day on which
  # seasonal naive (last Sunday's count) is hard to beat, and this model
  # does not beat it, so nothing is pushed and 03-09's model still serves.
  assert summary["span"] == spans.parse_span("2024-03-10")
  assert summary["mae"] is not None
  assert summary["blessed"] is False, summary
  assert "does not beat seasonal-naive MAE" in summary["reasons"], summary
  assert summary["pushed_version"] is None
  assert len(queries.pushes(snap)) == 1


def test_a_deliberately_worse_model_is_not_blessed_nor_pushed(home):
  serving = registry.serving_version(home.models)
  # One step at an absurd learning rate wrecks the warm-started weights.
  assert run(home, "--date", "2024-03-11", "--train-steps", "1",
             "--hparam", "learning_rate=50.0") == 0
  r = last_run(home)
  assert {"Trainer", "Evaluator", "ForecastGate", "Pusher"} <= executed(r)
  snap = store.load(home.metadata)
  summary = queries.run_summary(snap, snap.run(r.run_id))
  assert summary["blessed"] is False and summary["reasons"]
  assert summary["pushed_version"] is None
  assert registry.serving_version(home.models) == serving
  # GuidanceGate: a fleet following its forecasts on 03-11 did worse than
  # one following the serving model's; both figures are recorded, and the
  # refusal is among ForecastGate's reasons.
  [guidance] = snap.outputs(r.node("GuidanceGate").execution_id)["result"]
  props = guidance.properties
  assert props["baseline_pickups_per_taxi_hour"] > 0
  assert props["candidate_pickups_per_taxi_hour"] < props[
      "baseline_pickups_per_taxi_hour"] * (1 - props["margin"])
  assert props["passed"] == 0 and props["reason"].startswith("guidance:")
  assert abs(props["stay_empty_share"] - 0.5) < 0.05
  assert "guidance:" in summary["reasons"]


def test_a_broken_day_stops_at_the_gate_and_keeps_the_serving_model(home):
  serving = registry.serving_version(home.models)
  # A partial export: nine trips in ten of the newest day never arrive.
  with wh.Warehouse(home.warehouse) as warehouse:
    warehouse.con.execute(
        "DELETE FROM trips WHERE trip_start_timestamp >= TIMESTAMP "
        "'2024-03-12' AND trip_start_timestamp < TIMESTAMP '2024-03-13' "
        "AND hash(unique_key) % 10 <> 0")
  assert run(home, "--date", "2024-03-12") == 3
  r = last_run(home)
  # A refusal is a recorded decision, not a crash: DataGate completed, the
  # Cond skipped everything that would train on the day.
  assert [n.node_id for n in r.nodes if n.state == "FAILED"] == []
  assert r.node("DataGate").state == "COMPLETE"
  assert not {"Transform", "Trainer", "Pusher"} & {n.node_id for n in r.nodes}
  snap = store.load(home.metadata)
  assert queries.run_row(snap, snap.run(r.run_id))["status"] == "REFUSED"
  assert registry.serving_version(home.models) == serving


def _cache_entries(artifact):
  return {p.name: b"".join(f.read_bytes() for f in sorted(p.rglob("*"))
                           if f.is_file())
          for p in Path(artifact.uri).iterdir()}


def _day_key(examples):
  """How Transform's cache names a day: from its examples' file pattern."""
  return "-".join(Path(examples.uri).parts[-3:]) + "-Split-day-"


def test_the_next_day_runs_live_through_a_kill_and_trains_on_the_passed_window(
    home, tmp_path):
  """Day D+1 after a refused D, run the way production runs it.

  03-14 goes live while the run for 03-13 trains: a load of each 5
  simulated minutes' trips, the 5-minute job and read-only commands, all at
  once on one home. The run is killed with SIGKILL inside its Trainer and
  resumed; a load and the job are killed too and restarted. Nothing fails
  for a lock, nothing is lost or doubled, and ML Metadata tells the killed
  run apart and leaves nothing RUNNING.

  And the run itself: ExampleGen and StatisticsGen run for the new day only,
  Transform reuses its cache for the days it analysed before, and the
  Trainer reads the last three days that passed.
  """
  from taxi_demand.testing import live  # noqa: PLC0415
  from taxi_demand.lineage import contract  # noqa: PLC0415
  before = store.load(home.metadata)
  # A Snapshot reads ML Metadata when asked: count the ingests now, before
  # the live day adds its own.
  ingested_before = len([e for e in before.executions_of("ExampleGen")
                         if e.state == "COMPLETE"])
  live_day = spans.parse_span("2024-03-14")
  simulate.simulate_files(tmp_path / "sim", "2024-03-14", 1, seed=12,
                          scale=0.3)
  clock = live.Clock(start=spans.start_of(live_day) + 7 * 3600, speed=60)
  chunks = [c for c in live.write_chunks(tmp_path / "sim", tmp_path / "chunks",
                                         live_day)
            if c[0] > clock.start - 3600]  # from 06:00 on

  looked = [0.0]

  def in_trainer(_):  # ML Metadata read twice a second, not every step
    if time.monotonic() - looked[0] < 0.5:
      return False
    looked[0] = time.monotonic()
    return live.node_running(home, "Trainer", len(before.runs))

  liveday = live.LiveDay(
      home, chunks, clock, tmp_path / "logs",
      daily_run=[*FAST, "--date", "2024-03-13"], run_at=clock.start,
      kills={"pipeline": [in_trainer],
             "load": [lambda d: d.next_chunk >= 2 and d.loader.age() > 0.4],
             "predict": [live.after(25)]},
      read_every_s=3.0)
  # Served long enough for MIN_LIVE_TICKS ticks of the job, however soon
  # the pipeline finishes: the audit below needs a day's stretch, not the
  # pipeline's own duration (it shrank as the Trainer got faster).
  liveday.run(until=lambda d: d.pipeline_done is not None and (
      d.elapsed() > MIN_LIVE_TICKS * TICK_SECONDS / clock.speed + 15))
  assert liveday.pipeline_done == 0, liveday.pipeline.errors()
  assert (liveday.loader.kills, liveday.job.kills,
          liveday.pipeline.kills) == (1, 1, 1)

  snap = store.load(home.metadata)
  # Two runs, no ingest run (every day of the window was ingested already):
  # the killed one, ABORTED in its Trainer, and the resumed one, which went
  # on from there. No execution is left RUNNING.
  assert len(snap.runs) == len(before.runs) + 2
  killed, resumed = snap.runs[-2:]
  assert queries.run_row(snap, killed)["status"] == "ABORTED"
  trainer = killed.node("Trainer")
  assert trainer.state == "CANCELED" and trainer.properties[contract.ABORTED]
  assert resumed.status == "COMPLETE"
  assert {"Trainer", "Evaluator", "ForecastGate", "Pusher"} <= executed(
      resumed)
  assert not {"ExampleGen", "StatisticsGen", "Transform"} & executed(resumed)
  assert live.running_executions(home) == 0
  # Every tick from the first to the last served, once; every loaded trip
  # once; every read-only command answered.
  served = sorted(servelog.served_ticks(home.serving_log,
                                        [spans.day_of(live_day)]))
  report = live.audit(home, chunks[:liveday.next_chunk], served[0],
                      served[-1])
  assert report["ticks_scheduled"] >= MIN_LIVE_TICKS
  assert (report["ticks_lost"], report["ticks_served_twice"]) == (0, 0)
  assert (report["trips_lost"], report["trips_duplicated"]) == (0, 0)
  assert report["trips_generated"] > 0
  assert liveday.reads > 5 and liveday.failed_reads == []
  assert liveday.job.errors() == [] and liveday.loader.errors() == []

  day = spans.parse_span("2024-03-13")
  for node, key in (("ExampleGen", "examples"),
                    ("StatisticsGen", "statistics")):
    assert killed.node(node).state == "COMPLETE"
    assert [a.span for a in snap.outputs(killed.node(node).execution_id)[
        key]] == [day]
  def ingests(snap_):  # a resumed run records its skipped nodes too
    return [e for e in snap_.executions_of("ExampleGen")
            if e.state == "COMPLETE"]

  assert len(ingests(snap)) == ingested_before + 1
  # The window: the three newest days that passed; 2024-03-12 was refused.
  trained_on = snap.inputs(resumed.node("Trainer").execution_id)["examples"]
  window = sorted(trained_on, key=lambda a: a.span)
  assert [spans.date_of(a.span) for a in window] == [
      "2024-03-09", "2024-03-10", "2024-03-11"]
  for examples in window:  # each ingested once, by an earlier run
    producer = snap.producer(examples.id)
    assert producer.node_id == "ExampleGen"
    assert snap.run_of[producer.execution_id] not in (killed.run_id,
                                                     resumed.run_id)
  transform = killed.node("Transform")
  assert [a.id for a in snap.inputs(transform.execution_id)["examples"]] == [
      a.id for a in trained_on]
  # Transform read its cache: the newest one before this run, which holds
  # the two older days; only the newest day of the window was analysed.
  [cache_in] = snap.inputs(transform.execution_id)["analyzer_cache"]
  assert queries.producer_span(snap, cache_in.id) == spans.parse_span(
      "2024-03-11")  # the newest earlier day that trained
  [cache_out] = snap.outputs(transform.execution_id)["updated_analyzer_cache"]
  given, updated = _cache_entries(cache_in), _cache_entries(cache_out)
  keys = [_day_key(a) for a in window]
  assert [any(k in name for name in updated) for k in keys] == [True] * 3
  assert [any(k in name for name in given) for k in keys] == [
      True, True, False]
  for name, content in updated.items():
    if any(k in name for k in keys[:2]):
      assert given[name] == content, name  # reused, not recomputed


def test_a_reload_re_ingests_only_the_days_that_read_it(home):
  """Each day is keyed on the trips its query reads: its own and the 7 days
  before. A changed day 03-05 is read by 03-05 .. 03-12, not by 03-13."""
  from pipeline import local_run  # noqa: PLC0415
  from pipeline.components import duckdb_example_gen as gen  # noqa: PLC0415
  from taxi_demand.data.sql import QueryConfig  # noqa: PLC0415
  day = spans.parse_span("2024-03-14")
  key = gen.query_key(gen.input_config_for(QueryConfig()))
  assert local_run.window_to_ingest(home, day, 3, key) == []  # all there
  # Another query (hourly slots) has ingested nothing: a window never mixes
  # days made by two queries.
  hourly = gen.query_key(gen.input_config_for(QueryConfig(slot_minutes=60)))
  assert len(local_run.window_to_ingest(home, day, 3, hourly)) == 3
  assert queries.training_window(store.load(home.metadata), day, 3,
                                 hourly) == []
  with wh.Warehouse(home.warehouse) as warehouse:
    warehouse.con.execute(
        "DELETE FROM trips WHERE unique_key = (SELECT min(unique_key) FROM "
        "trips WHERE trip_start_timestamp >= TIMESTAMP '2024-03-05' AND "
        "trip_start_timestamp < TIMESTAMP '2024-03-06')")
  assert local_run.window_to_ingest(home, day, 3, key) == [
      spans.parse_span("2024-03-11"), spans.parse_span("2024-03-12")]


# --- the synthetic stores the other tests use, against this real one ----------


def _layout(path):
  """Per node id: execution type names, exec property names, and each event
  (kind, key, artifact type) with the property names of the artifacts the
  node output under it."""
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  raw = store.connect(path)
  exec_types = {t.id: t.name for t in raw.get_execution_types()}
  artifact_types = {t.id: t.name for t in raw.get_artifact_types()}
  artifacts = {a.id: a for a in raw.get_artifacts()}
  out = {}
  for ctx in raw.get_contexts_by_type("node"):
    node = out.setdefault(ctx.name.split(".", 1)[-1],
                          {"types": set(), "exec_props": set(), "events": {}})
    executions = raw.get_executions_by_context(ctx.id)
    for ex in executions:
      node["types"].add(exec_types[ex.type_id])
      node["exec_props"] |= set(ex.properties) | set(ex.custom_properties)
    for e in raw.get_events_by_execution_ids([ex.id for ex in executions]):
      art = artifacts[e.artifact_id]
      props = node["events"].setdefault(
          (pb.Event.Type.Name(e.type), e.path.steps[0].key,
           artifact_types[art.type_id]), set())
      if e.type == pb.Event.OUTPUT:  # properties belong to their producer
        props |= set(art.properties) | set(art.custom_properties)
  return out


def test_synthetic_stores_are_laid_out_like_a_real_run(home, tmp_path):
  """taxi_demand.testing.synthetic writes what LocalDagRunner wrote here.

  Same node ids, the same execution types, the same input and output keys
  with the same artifact types; every property it writes, a real run writes
  too (a real run writes more). Runs last: the module's runs by then
  include a first run, cached, unblessed, failed, resumed and refused ones.
  """
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  synthetic.build(tmp_path / "synthetic", 3)
  real = _layout(home.metadata)
  fake = _layout(tmp_path / "synthetic" / "metadata.sqlite")

  def keys(events):
    # A resolver's result is an INTERNAL_OUTPUT, but the resolvers a resumed
    # run reuses (CACHED) record theirs as OUTPUT events.
    return {("INPUT" if kind == "INPUT" else "OUTPUT", key, type_name)
            for kind, key, type_name in events}

  assert set(fake) == set(real)
  for node_id in sorted(real):
    want, got = real[node_id], fake[node_id]
    assert got["types"] == want["types"], node_id
    assert keys(got["events"]) == keys(want["events"]), (
        node_id, keys(got["events"]) ^ keys(want["events"]))
    assert set(got["events"]) <= set(want["events"]), (
        node_id, set(got["events"]) - set(want["events"]))
    assert got["exec_props"] <= want["exec_props"], (
        node_id, got["exec_props"] - want["exec_props"])
    for event, props in got["events"].items():
      assert props <= want["events"][event], (
          node_id, event, props - want["events"][event])


def test_the_report_reads_what_the_real_runs_left(home, tmp_path):
  """`taxi-demand report` on the module's real home: TFDV's own drift
  files, DataGate's and ForecastGate's reasons, the live day's forecasts."""
  from taxi_demand.report import build  # noqa: PLC0415
  report, page = build.build(home, tmp_path / "report")
  snap = store.load(home.metadata)
  assert [r["run_id"] for r in report.runs] == [r.run_id for r in snap.runs]
  refused = [r for r in report.runs if r["status"] == "REFUSED"]
  assert refused and all(r["reasons"] and "DataGate refused" not in
                         r["reasons"] for r in refused)
  unblessed = [r for r in report.runs if r["blessed"] is False]
  assert unblessed and all(r["reasons"] for r in unblessed)
  # TFDV writes a measurement for every feature with a drift comparator.
  measured = [c for c in report.checks if c["drift_checked"]]
  assert measured and all(c["drift"] for c in measured)
  assert all(f["threshold"] > 0 and f["distance"] is not None
             for c in measured for f in c["drift"].values())
  assert report.serving["lineage"][0].startswith("model version")
  assert report.demand is not None and report.demand.total > 0
  assert report.plane is not None and "forecast pickups" in report.plane.label
  assert page.stat().st_size > 100_000
