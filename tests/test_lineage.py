"""The ML Metadata read layer: snapshots, serving timeline, old layouts, walks."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage import nodes
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.testing import synthetic as synth
from taxi_demand.serving import registry
from taxi_demand.serving import rollback

REPO = Path(__file__).resolve().parent.parent


def _snap(path):
  return store.load(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  """A TFX-layout store of 6 runs, written with ml_metadata only."""
  home = tmp_path_factory.mktemp("synthetic") / "home"
  versions = synth.build(home, 6)
  return home, versions


@pytest.fixture
def synthetic_copy(synthetic, tmp_path):
  home, versions = synthetic
  copy = tmp_path / "home"
  shutil.copytree(home, copy)
  from taxi_demand.home import Home  # noqa: PLC0415
  return Home(copy), versions


def test_snapshot_reads_runs_spans_and_parameters(synthetic):
  home, _ = synthetic
  snap = _snap(home / "metadata.sqlite")
  assert len(snap.runs) == 6
  rows = [queries.run_row(snap, r) for r in snap.runs]
  assert [r["span"] for r in rows] == [synth.FIRST_SPAN + i for i in range(6)]
  assert all(r["status"] == "COMPLETE" and r["blessed"] for r in rows)
  assert rows[0]["mae"] == pytest.approx(2.5)
  params = queries.parameters(snap, snap.runs[1])
  assert params["train_days"] == 28 and params["code_version"] == "0.1.0"
  first = snap.runs[1].node("CuratedSchema")
  assert first.cached


def test_training_inputs_agree_with_the_upstream_tree(synthetic):
  home, _ = synthetic
  snap = _snap(home / "metadata.sqlite")
  push = queries.pushes(snap)[-1]
  walked = queries.training_inputs(snap, push.model.id)
  tree = queries.upstream(snap, push.model)
  trainer_inputs = tree["producer"]["inputs"]
  assert walked["trainer"].node_id == contract.TRAINER
  assert trainer_inputs["transform_graph"][0]["id"] == \
      walked["transform_graph"].id
  assert trainer_inputs["schema"][0]["id"] == walked["schema"].id
  # The window: the days before the push's, one ExampleGen output each,
  # newest last; the run's own day is never trained on.
  days = trainer_inputs["examples"]
  assert [d["id"] for d in days] == [a.id for a in walked["window"]]
  assert [d["span"] for d in days] == list(range(synth.FIRST_SPAN,
                                                push.span))
  assert {d["producer"]["node"] for d in days} == {"ExampleGen"}
  assert days[-1]["id"] == walked["examples"].id
  assert days[-1]["statistics"]["id"] == walked["statistics"].id
  # The base model is the previous push's model, shown but not walked.
  assert walked["base_model"].id == queries.pushes(snap)[-2].model.id
  assert "producer" not in trainer_inputs["base_model"][0]


def test_serving_on_day_is_the_newest_push_of_an_earlier_span(synthetic):
  home, versions = synthetic
  snap = _snap(home / "metadata.sqlite")
  # The run for span S pushes versions[S - FIRST_SPAN]; it serves from S + 1.
  assert queries.serving_on(snap, synth.FIRST_SPAN) is None
  assert queries.serving_on(snap, synth.FIRST_SPAN + 1).version == versions[0]
  assert queries.serving_on(snap, synth.FIRST_SPAN + 3).version == versions[2]
  assert queries.serving_version(snap) == versions[-1]


@pytest.mark.parametrize("recent", [2, 32])
def test_an_older_push_of_a_later_day_outranks_the_newest_pushes(
    tmp_path, monkeypatch, recent):
  """A backfill that ran later days before earlier ones: what serves on
  each day is the push of the greatest earlier day, however few of the
  newest pushes are read first (they fall back to every push when an
  older blessed day outranks them)."""
  first = synth.FIRST_SPAN
  order = [5, 6, 1, 2, 3, 4]
  specs = [synth.RunSpec(span=first + d, blessed=d != 4,
                         run_id=f"2024-01-01T00:00:0{i}")
           for i, d in enumerate(order)]
  home = tmp_path / "home"
  versions = synth.build(home, specs)
  monkeypatch.setattr(queries, "RECENT_PUSHES", recent)
  by_day = {d: v for d, v in zip([d for d in order if d != 4], versions)}
  assert queries.serving_version(_snap(home / "metadata.sqlite")) == by_day[6]
  for day, expected in [(1, None), (2, 1), (4, 3), (5, 3), (6, 5), (7, 6),
                        (9, 6)]:
    event = queries.serving_on(_snap(home / "metadata.sqlite"), first + day)
    assert (event and event.version) == (expected and by_day[expected]), day


def test_rollback_serves_the_previous_version_and_is_recorded(synthetic_copy):
  home, versions = synthetic_copy
  done = rollback.rollback(home)
  assert done == {**done, "from_version": versions[-1],
                  "to_version": versions[-2]}
  assert registry.serving_version(home.models) == versions[-2]
  snap = _snap(home.metadata)
  assert queries.serving_version(snap) == versions[-2]
  rb = snap.executions_of(contract.ROLLBACK)[-1]
  assert rb.properties["from_version"] == versions[-1]
  pushed = snap.first_input(rb.execution_id, "pushed_model")
  assert pushed.properties["pushed_version"] == versions[-2]
  # Rolling back again goes one further, not back to where we were.
  assert rollback.rollback(home)["to_version"] == versions[-3]
  # A rollback takes effect after the newest push, i.e. from the day after
  # the last run's day; that day itself was served by the previous push.
  snap = _snap(home.metadata)
  last_span = synth.FIRST_SPAN + len(versions) - 1
  assert queries.serving_on(snap, last_span + 1).version == versions[-3]
  assert queries.serving_on(snap, last_span).version == versions[-2]
  assert sorted(registry.versions(home.models)) == sorted(versions[-5:])


def test_rollback_refuses_unknown_pruned_and_current_versions(synthetic_copy):
  home, versions = synthetic_copy
  with pytest.raises(TaxiDemandError, match="no push of model version"):
    rollback.rollback(home, "123")
  with pytest.raises(TaxiDemandError, match="does not exist"):
    rollback.rollback(home, versions[0])  # pruned from the registry
  with pytest.raises(TaxiDemandError, match="already serving"):
    rollback.rollback(home, versions[-1])


def test_next_day_results_are_one_per_day_and_per_version(synthetic):
  home, versions = synthetic
  snap = _snap(home / "metadata.sqlite")
  results = queries.next_day_results(snap)
  # The first run's NextDayValidator found no serving model and said so.
  assert [r["span"] for r in results] == [synth.FIRST_SPAN + i
                                          for i in range(6)]
  assert results[0].get("model_version") is None and results[0]["reason"] == (
      "no model was serving before this day")
  assert [r["model_version"] for r in results[1:]] == versions[:-1]
  mine = queries.next_day_results(snap, versions[2])
  assert [r["span"] for r in mine] == [synth.FIRST_SPAN + 3]


def test_an_old_layout_store_still_lists_its_runs(tmp_path, old_layout_store):
  path = tmp_path / "metadata.sqlite"
  old_layout_store(path)
  snap = _snap(path)
  rows = [queries.run_row(snap, r) for r in snap.runs]
  assert [r["run_id"] for r in rows] == ["old-run-0", "old-run-1", "old-run-2"]
  assert rows[0]["span"] == 19000 and rows[0]["mae"] is None
  assert rows[0]["blessed"] is None and rows[1]["pushed_version"] == "1"
  assert rows[2]["status"] == "FAILED" and rows[2]["span"] is None
  assert queries.run_detail(snap, snap.runs[0])["parameters"] is None
  diff = queries.diff_runs(snap, snap.runs[0], snap.runs[1])
  assert "parameters" not in diff and diff["data"]["eval_span"] == {
      "a": 19000, "b": 19001}
  tree = queries.lineage_of_version(snap, "1")
  assert tree["model"]["producer"]["inputs"]["examples"][0]["span"] == 19001


def test_missing_and_corrupt_stores_fail_in_one_line(tmp_path):
  with pytest.raises(TaxiDemandError, match="no metadata store"):
    store.load(tmp_path / "none.sqlite")
  bad = tmp_path / "metadata.sqlite"
  bad.write_bytes(b"this is not sqlite" * 100)
  with pytest.raises(TaxiDemandError, match="cannot read") as e:
    store.load(bad)
  assert "\n" not in str(e.value)


def test_unknown_and_ambiguous_run_ids(synthetic):
  home, _ = synthetic
  snap = _snap(home / "metadata.sqlite")
  with pytest.raises(TaxiDemandError, match="no run 'nope'"):
    snap.run("nope")
  with pytest.raises(TaxiDemandError, match="ambiguous"):
    snap.run("2024-01-01")
  assert snap.run("last") is snap.runs[-1]
  assert snap.run(snap.runs[0].run_id[:-1] + "0") is snap.runs[0]


def test_schema_features_parse_the_curated_schema():
  found = queries.schema_features(
      str(REPO / "pipeline" / "schema"))
  assert "pickups" in found and "cell" in found
  assert json.dumps(found)  # plain text, printable


def _events_by_node(path, run_id):
  """{node id: {(event kind, key)}} of run `run_id` in the store at `path`,
  in the order the run's executions were written."""
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  raw = store.connect(path)
  [run_ctx] = [ctx for ctx in raw.get_contexts_by_type(
      contract.PIPELINE_RUN_CONTEXT) if ctx.name == run_id]
  found = {}
  for ex in sorted(raw.get_executions_by_context(run_ctx.id),
                   key=lambda e: e.id):
    [node_ctx] = [ctx for ctx in raw.get_contexts_by_execution(ex.id)
                  if ctx.name.startswith(contract.PIPELINE_NAME + ".")]
    found[node_ctx.name.split(".", 1)[1]] = {
        (pb.Event.Type.Name(e.type), e.path.steps[0].key)
        for e in raw.get_events_by_execution_ids([ex.id])}
  return found


def test_synthetic_runs_are_the_node_tables_local_nodes(synthetic):
  """Each synthetic run writes the table's local nodes, in the order TFX
  runs them, each with the table's input and output keys."""
  home, _ = synthetic
  snap = _snap(home / "metadata.sqlite")
  written = _events_by_node(home / "metadata.sqlite", snap.runs[-1].run_id)
  table = nodes.run_order(nodes.LOCAL)
  assert list(written) == [n.id for n in table]
  for node in table:
    kind = "INTERNAL_OUTPUT" if node.resolver else "OUTPUT"
    inputs = {} if node.resolver else node.inputs
    assert {key for k, key in written[node.id] if k == kind} == set(
        node.outputs), node.id
    assert {key for k, key in written[node.id] if k == "INPUT"} == set(
        inputs) | ({synth.COND_INPUT} if node.gated else set()), node.id


def test_a_node_added_to_the_table_appears_in_synthetic_stores(tmp_path,
                                                                monkeypatch):
  """No hand edit of the writer: a new row of the node table is written,
  after what it reads, with its input and its (property-less) output; a
  gated one is skipped on a day the gate refused."""
  added = nodes.Node(
      "DayCount", "pipeline.components.day_count.DayCount", nodes.MONITOR,
      inputs={contract.EXAMPLES: nodes.Input(contract.EXAMPLE_GEN,
                                             contract.EXAMPLES)},
      outputs={"count": "taxi_demand.DayCount"},
      platforms=nodes.LOCAL_ONLY, gated=True)
  monkeypatch.setattr(nodes, "TABLE", nodes.TABLE + [added])
  specs = synth.default_runs(2)
  specs[1] = dataclasses.replace(specs[1], anomaly_count=1)  # refused
  synth.build(tmp_path / "home", specs)
  path = tmp_path / "home" / "metadata.sqlite"
  first = _events_by_node(path, specs[0].run_id)
  assert first["DayCount"] == {("INPUT", contract.EXAMPLES),
                               ("INPUT", synth.COND_INPUT),
                               ("OUTPUT", "count")}
  assert list(first).index("DayCount") > list(first).index(
      contract.DATA_GATE)
  [count] = store.connect(path).get_artifacts_by_type("taxi_demand.DayCount")
  assert count.uri.startswith(str(tmp_path / "home" / "pipeline" /
                                  "DayCount" / "count"))
  assert "DayCount" not in _events_by_node(path, specs[1].run_id)


# --- on the city home: ten synthetic daily runs over the session's city --------


@pytest.mark.slow
def test_lineage_of_the_pushed_model_reaches_examplegen_schema_and_graph(
    city_home):
  root = city_home.root
  snap = _snap(root / "metadata.sqlite")
  push = queries.pushes(snap)[-1]
  run = [r for r in snap.runs if r.run_id == push.run_id][0]
  tree = queries.lineage_of_version(snap, push.version)
  trainer = tree["model"]["producer"]
  assert trainer["node"] == "Trainer" and trainer["run_id"] == push.run_id
  window = trainer["inputs"]["examples"]
  # The serving model's window: the runs before it (6 days), oldest first.
  assert [d["span"] for d in window] == list(range(push.span - 6, push.span))
  examples = window[-1]
  assert examples["producer"]["node"] == "ExampleGen"
  trips = examples["producer"]["trips"]
  assert trips["date"] == queries.date_of(push.span - 1)
  assert trips["lookback_from"] == queries.date_of(push.span - 8)
  assert trips["warehouse"] == str(root / "warehouse.duckdb")
  assert examples["statistics"]["artifact"] == "ExampleStatistics"
  # The files are there: ExampleGen's day, StatisticsGen's statistics.
  assert {p.name for p in Path(examples["uri"]).iterdir()} == {"Split-day"}
  assert (Path(examples["statistics"]["uri"]) / "Split-day" /
          "FeatureStats.pb").is_file()
  schema = trainer["inputs"]["schema"][0]
  assert schema["artifact"] == "Schema"
  assert schema["uri"] == queries.schema_of(snap, run).uri
  assert "pickups" in queries.schema_features(schema["uri"])
  graph = trainer["inputs"]["transform_graph"][0]
  assert graph["artifact"] == "TransformGraph"
  assert graph["uri"].startswith(str(root / "pipeline" / "Transform"))
  # Downstream: the day before the push's span trained that model.
  trained = queries.models_trained_on(snap, push.span - 1)
  assert push.version in [m["pushed_version"] for m in trained]
  assert push.version not in [m["pushed_version"] for m in
                              queries.models_trained_on(snap, push.span)]


def _depth(value, level=0):
  if isinstance(value, dict):
    return max([_depth(v, level + 1) for v in value.values()] + [level])
  if isinstance(value, list):
    return max([_depth(v, level + 1) for v in value] + [level])
  return level


@pytest.mark.slow
def test_lineage_after_most_of_a_year_of_runs_is_one_runs_tree(tmp_path,
                                                               capsys):
  """Each day's Transform reads the analyzer cache the day before wrote.
  Walked into, that cache nested every earlier run's tree in each model's
  lineage: 39.7 MB of JSON at 180 runs, a RecursionError from about 250.
  It is shown, not walked, like the warm-start model; the tree keeps its
  depth and size whatever the history behind it."""
  from taxi_demand import cli  # noqa: PLC0415
  sizes = {}
  for runs in (20, 260):
    home = tmp_path / str(runs)
    synth.build(home, runs)
    assert cli.main(["--home", str(home), "lineage", "serving",
                     "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    sizes[runs] = (len(json.dumps(tree["model"])), _depth(tree["model"]))
    transform = tree["model"]["producer"]["inputs"]["transform_graph"][0][
        "producer"]
    [cache] = transform["inputs"][contract.ANALYZER_CACHE]
    assert "producer" not in cache  # shown, not walked
  # The same depth; the size only as longer ids and dates make it.
  assert sizes[260][1] == sizes[20][1] and sizes[260][0] < 2 * sizes[20][0], \
      sizes
