"""A window ingested in one Beam pass records, per day, what per-day runs record.

The window's days are staged by one Beam pipeline (examples and
statistics, pipeline/staged_ingest.py) and each day's partial run
adopts its day. One home ingests a small window that way, another the old
way (one-pass switched off), over copies of one warehouse: ML Metadata
(executions, artifacts, properties, events, contexts), DataGate's verdicts,
the training window and the files' content must be the same.
"""

from __future__ import annotations

import datetime
import gzip
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest

import runner_local
from pipeline import local_run
from pipeline.components import duckdb_example_gen
from pipeline import staged_ingest
from taxi_demand import spans
from taxi_demand.data import simulate
from taxi_demand.data import warehouse as wh
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.lineage.records import DataGateRecord
from taxi_demand.lineage.records import IngestFingerprint

START, DAYS = datetime.date(2024, 3, 1), 10     # 2024-03-01 .. 2024-03-10
DAY = spans.parse_span("2024-03-10")
TRAIN_DAYS = 3                                   # 03-07 .. 03-09


@pytest.fixture(scope="module")
def warehouse_file(tmp_path_factory) -> Path:
  path = tmp_path_factory.mktemp("onepass") / "warehouse.duckdb"
  with wh.Warehouse(path) as warehouse:
    simulate.simulate_into(warehouse, start=START, days=DAYS, seed=11,
                           scale=0.3)
  return path


def _home(root: Path, warehouse_file: Path) -> Home:
  home = Home(root).ensure()
  shutil.copy(warehouse_file, home.warehouse)
  return home


def _args(home: Home):
  return runner_local.parse_args(["--home", str(home.root), "--train-days",
                                  str(TRAIN_DAYS)])


def _key(home: Home) -> str:
  return duckdb_example_gen.query_key(duckdb_example_gen.input_config_for(
      local_run.build_config(_args(home), home, DAY).query))


def _value(value, root: str) -> Any:
  kind = value.WhichOneof("value")
  plain = getattr(value, kind) if kind else None
  if kind == "proto_value" or kind == "struct_value":
    plain = str(plain)
  return plain.replace(root, "HOME") if isinstance(plain, str) else plain


def _properties(record, root: str) -> Dict[str, Any]:
  return {("custom:" if custom else "") + name: _value(value, root)
          for custom, props in ((False, record.properties),
                                (True, record.custom_properties))
          for name, value in props.items()}


def _records(home: Home) -> Dict[str, Any]:
  """Everything ML Metadata holds, ids as ordinals, the home's path as
  HOME, run ids, cache keys and times left out (they differ between any
  two homes)."""
  from ml_metadata.metadata_store import metadata_store  # noqa: PLC0415
  from ml_metadata.proto import metadata_store_pb2  # noqa: PLC0415
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = str(home.metadata)
  config.sqlite.connection_mode = 1  # read-only
  mlmd = metadata_store.MetadataStore(config)
  root = str(home.root)
  types = {t.id: t.name for t in (mlmd.get_artifact_types() +
                                  mlmd.get_execution_types() +
                                  mlmd.get_context_types())}
  artifacts = sorted(mlmd.get_artifacts(), key=lambda a: a.id)
  executions = sorted(mlmd.get_executions(), key=lambda e: e.id)
  contexts = sorted(mlmd.get_contexts(), key=lambda c: c.id)
  ordinal = {a.id: i for i, a in enumerate(artifacts)}
  runs = [c.id for c in contexts if types[c.type_id] == "pipeline_run"]

  def context_name(c):
    # A cache key digests paths (the home's) and the executor's class.
    if types[c.type_id] == "execution_cache":
      return "cache"
    return (f"run#{runs.index(c.id)}" if c.id in runs else c.name)

  return {
      "artifacts": [(types[a.type_id], a.uri.replace(root, "HOME"), a.state,
                     _properties(a, root)) for a in artifacts],
      "executions": [
          (types[e.type_id], e.last_known_state, _properties(e, root),
           sorted(context_name(c) for c in
                  mlmd.get_contexts_by_execution(e.id)),
           sorted((ev.type, ordinal[ev.artifact_id],
                   str(ev.path).replace(root, "HOME"))
                  for ev in mlmd.get_events_by_execution_ids([e.id])))
          for e in executions],
      "contexts": [(types[c.type_id], context_name(c), _properties(c, root))
                   for c in contexts],
  }


def _without_times(records: Dict[str, Any]) -> Dict[str, Any]:
  """Execution properties that are timestamps or paths of one run only."""
  def keep(name):
    return not any(t in name for t in ("time", "pipeline_run_id",
                                       "__execution_set_"))
  return {**records, "executions": [
      (t, state, {k: v for k, v in props.items() if keep(k)}, ctx, events)
      for t, state, props, ctx, events in records["executions"]]}


def _examples(uri: str) -> List[bytes]:
  """A day's tf.Examples, sorted (TFX's WriteSplit shuffles them), each
  serialized deterministically (the encoder's feature order varies)."""
  from tensorflow.core.example import example_pb2  # noqa: PLC0415
  records = []
  for path in sorted(Path(uri).glob(f"Split-{contract.DAY_SPLIT}/*.gz")):
    data = gzip.decompress(path.read_bytes())
    while data:  # TFRecord framing: length, crc, payload, crc
      length = int.from_bytes(data[:8], "little")
      records.append(data[12:12 + length])
      data = data[16 + length:]
  return sorted(example_pb2.Example.FromString(r).SerializeToString(
      deterministic=True) for r in records)


def _statistics(uri: str) -> Dict[str, Any]:
  from google.protobuf import json_format  # noqa: PLC0415
  from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: PLC0415
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  stats.ParseFromString((Path(uri) / f"Split-{contract.DAY_SPLIT}" /
                         contract.STATISTICS_FILE).read_bytes())
  return json_format.MessageToDict(stats)


def _close(a, b, path="") -> None:
  """`a` == `b`, floats up to rounding (the examples' order differs)."""
  if isinstance(a, float) or isinstance(b, float):
    assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), path
  elif isinstance(a, dict):
    assert sorted(a) == sorted(b), path
    for k in a:
      _close(a[k], b[k], f"{path}.{k}")
  elif isinstance(a, list):
    assert len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      _close(x, y, f"{path}[{i}]")
  else:
    assert a == b, path


def _ingest(home: Home) -> None:
  local_run.ingest_window(_args(home), home, DAY)


def _window(home: Home):
  snap = store.load(home.metadata)
  examples = queries.training_window(snap, DAY, TRAIN_DAYS, _key(home))
  return snap, examples


@pytest.mark.e2e
def test_a_window_ingested_in_one_pass_records_what_per_day_runs_do(
    tmp_path, warehouse_file, monkeypatch, capsys):
  old = _home(tmp_path / "old", warehouse_file)
  new = _home(tmp_path / "new", warehouse_file)
  with monkeypatch.context() as m:  # today's path: a Beam run per node a day
    m.setattr(local_run, "stage_window", lambda *a, **k: {})
    _ingest(old)
  assert "one pass" not in capsys.readouterr().out

  # A pass killed before it marked the first day complete left that day
  # half-written: it is computed again, not adopted.
  first = DAY - TRAIN_DAYS
  with wh.Warehouse(new.warehouse, read_only=True) as warehouse:
    fingerprint = duckdb_example_gen.ingest_fingerprint(
        warehouse.span_fingerprint(first), _key(new))
  half = staged_ingest.day_dir(str(new.pipeline_root), first, fingerprint)
  (half / "examples" / f"Split-{contract.DAY_SPLIT}").mkdir(parents=True)
  (half / "examples" / f"Split-{contract.DAY_SPLIT}" /
   "data_tfrecord-00000-of-00001.gz").write_bytes(b"half")
  moved = []  # each executor's adoption: its day's files moved, or not
  real_move = staged_ingest._move_splits  # pylint: disable=protected-access
  monkeypatch.setattr(staged_ingest, "_move_splits",
                      lambda *a: moved.append(real_move(*a)) or moved[-1])
  _ingest(new)
  out = capsys.readouterr().out
  # Both Beam nodes of every day took their staged files, the half-written
  # day's recomputed ones too: no Beam ran in the days' runs.
  assert moved == [True] * 2 * TRAIN_DAYS
  assert f"staged {TRAIN_DAYS} day(s)' examples and statistics in one pass" \
      in out
  # Every staged day was adopted: nothing is left staged.
  assert not staged_ingest.staging_root(str(new.pipeline_root)).exists()

  assert _without_times(_records(new)) == _without_times(_records(old))
  (snap_old, window_old), (snap_new, window_new) = _window(old), _window(new)
  assert [e.span for e in window_new] == [e.span for e in window_old] == [
      DAY - 3, DAY - 2, DAY - 1]
  for a, b in zip(window_old, window_new):
    assert IngestFingerprint.read(a) == IngestFingerprint.read(b)
    assert _examples(b.uri) and _examples(a.uri) == _examples(b.uri)
    stats_a = queries.consumer_output(snap_old, a.id, contract.STATISTICS_GEN,
                                      contract.STATISTICS)
    stats_b = queries.consumer_output(snap_new, b.id, contract.STATISTICS_GEN,
                                      contract.STATISTICS)
    _close(_statistics(stats_a.uri), _statistics(stats_b.uri))
    gate_a = queries.data_gate_report(snap_old, a.id)
    gate_b = queries.data_gate_report(snap_new, b.id)
    assert DataGateRecord.read(gate_a) == DataGateRecord.read(gate_b)
    assert (Path(gate_a.uri) / contract.DATA_GATE_FILE).read_text() == (
        Path(gate_b.uri) / contract.DATA_GATE_FILE).read_text()


@pytest.mark.parametrize("marked", [True, False])
def test_an_executor_adopts_a_staged_day_only_if_marked_complete(tmp_path,
                                                                 marked):
  """Unit: what an executor writing to ROOT/NODE/KEY/ID may adopt."""
  root = tmp_path / "root"
  fingerprint = IngestFingerprint(trips="t", query="q")
  staged = staged_ingest.day_dir(str(root), 19790, fingerprint)
  split = staged / staged_ingest.EXAMPLES_DIR / "Split-day"
  split.mkdir(parents=True)
  (split / "data").write_bytes(b"x")
  if marked:
    (staged / staged_ingest.COMPLETE_FILE).write_text("{}")
  output = root / "ExampleGen" / "examples" / "7"

  for other in (IngestFingerprint(trips="t2", query="q"), None):
    assert staged_ingest.staged_for(str(output), 19790, other) is None
  assert staged_ingest.staged_for(f"gs://b/{output}", 19790,
                                  fingerprint) is None
  found = staged_ingest.staged_for(str(output), 19790, fingerprint)
  assert found == (staged if marked else None)
  ran = []
  executor = staged_ingest.AdoptsStaged()
  executor.run_adopting(found, staged_ingest.EXAMPLES_DIR, str(output),
                        lambda: ran.append(executor._adopted))
  assert ran == [marked]
  assert (output / "Split-day" / "data").exists() is marked
  assert split.exists() is not marked



def test_one_query_over_consecutive_days_gives_each_day_its_own_rows(
    warehouse_file, tmp_path, monkeypatch):
  from pipeline.components.duckdb_example_gen import executor  # noqa: PLC0415
  from pipeline.pipeline import SCHEMA_FILE  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  config = duckdb_example_gen.input_config_for(sql.QueryConfig())
  days = [DAY - 3, DAY - 2, DAY - 1]
  alone = [staged_ingest._day_records(  # noqa: SLF001
      config.splits[0].pattern, [day], str(warehouse_file))[0]
      for day in days]
  queries_run = []
  read = executor.query_record_batches
  monkeypatch.setattr(executor, "query_record_batches",
                      lambda *a: queries_run.append(a) or read(*a))
  fingerprints = {day: IngestFingerprint(trips=str(day), query="q")
                  for day in days}
  root = tmp_path / "root"
  assert staged_ingest.stage(str(root), str(warehouse_file), config,
                             fingerprints, SCHEMA_FILE,
                             one_query=True) == days
  assert len(queries_run) == 1  # one query read the three days
  from tensorflow.core.example import example_pb2  # noqa: PLC0415
  for day, rows in zip(days, alone):
    folder = staged_ingest.day_dir(str(root), day, fingerprints[day])
    assert rows and _examples(str(folder / "examples")) == sorted(
        example_pb2.Example.FromString(r).SerializeToString(
            deterministic=True) for r in rows)


def test_only_a_query_whose_days_do_not_depend_on_its_range_reads_many():
  from taxi_demand.data import sql  # noqa: PLC0415
  assert sql.range_independent(sql.QueryConfig())
  assert not sql.range_independent(sql.QueryConfig(
      spatial_unit=sql.SpatialUnit.GRID, grid_metres=500))
  assert staged_ingest.consecutive([3, 4, 5, 7, 9, 10]) == [
      [3, 4, 5], [7], [9, 10]]
