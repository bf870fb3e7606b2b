"""DuckDBExampleGen: executor splits and counts, same rows -> same examples as
row_to_example (BigQueryExampleGen's converter; NULLs and every mapped type),
and (e2e) TFX's driver filling the span in a one-node LocalDagRunner
pipeline."""

import datetime
import os
from pathlib import Path

import pytest

import taxi_demand  # noqa: F401  (before TensorFlow)
import tensorflow as tf
from tfx.components.example_gen import utils as example_gen_utils
from tfx.extensions.google_cloud_big_query import utils as bigquery_utils
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from pipeline.components.duckdb_example_gen import DuckDBExampleGen
from pipeline.components.duckdb_example_gen import executor
from pipeline.components.duckdb_example_gen import input_config_for
from pipeline.components.duckdb_example_gen import range_config_for
from taxi_demand.data import simulate
from taxi_demand.data import sql
from taxi_demand.data.warehouse import Warehouse
from taxi_demand import features

DATA = Path(__file__).resolve().parent / "testdata" / "data"
SUNDAY = (datetime.date(2024, 1, 7) - datetime.date(1970, 1, 1)).days
HOURLY = sql.QueryConfig(slot_minutes=60)


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("wh") / "w.duckdb"
  with Warehouse(path) as w:
    w.load([DATA / "tiny_trips.csv"])
  return str(path)


def _read_split(examples, split):
  uri = artifact_utils.get_split_uri([examples], split)
  files = [os.path.join(uri, f) for f in os.listdir(uri)]
  return [tf.train.Example.FromString(r.numpy()) for r in
          tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _run_executor(warehouse_path, tmp_path, input_config):
  component = DuckDBExampleGen(warehouse_path, input_config,
                               range_config_for(SUNDAY))
  # What the query-based driver does before the executor runs.
  for split in input_config.splits:
    split.pattern = sql.substitute_span(split.pattern, SUNDAY)
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  exec_properties = {
      "input_config": proto_utils.proto_to_json(input_config),
      "output_config": component.exec_properties["output_config"],
      "output_data_format": component.exec_properties["output_data_format"],
      "output_file_format": component.exec_properties["output_file_format"],
      "warehouse_path": warehouse_path,
  }
  executor.Executor().Do({}, {"examples": [examples]}, exec_properties)
  return examples


def slots(split):
  return {e.features.feature["slot_start"].int64_list.value[0] for e in split}


def test_a_span_is_its_own_day_in_one_split(warehouse_path, tmp_path):
  """One span, one day: never re-split at random, never the days before."""
  examples = _run_executor(warehouse_path, tmp_path, input_config_for(HOURLY))
  assert artifact_utils.decode_split_names(examples.split_names) == ["day"]
  evals = _read_split(examples, "day")
  assert len(evals) == 77 * 24
  assert min(slots(evals)) == SUNDAY * 86_400
  assert max(slots(evals)) == SUNDAY * 86_400 + 23 * 3600
  assert sum(e.features.feature["pickups"].int64_list.value[0]
             for e in evals) == 5
  assert set(evals[0].features.feature) == set(features.RAW_COLUMNS)


def test_the_vertex_window_form_reads_the_days_before(warehouse_path,
                                                      tmp_path):
  examples = _run_executor(warehouse_path, tmp_path,
                           input_config_for(HOURLY, days_before=2))
  window = _read_split(examples, "day")
  assert len(window) == 77 * 24 * 2
  assert max(slots(window)) < SUNDAY * 86_400
  assert min(slots(window)) == (SUNDAY - 2) * 86_400


def _parsed(serialized):
  return [tf.train.Example.FromString(s) for s in serialized]


def test_same_rows_same_examples_as_bigquery_converter(warehouse_path):
  query = sql.substitute_span(sql.render_bigquery(HOURLY, lead_minutes=0),
                              SUNDAY)
  # The types BigQuery reports for the demand query's columns.
  bigquery_types = {c: "INTEGER" if c in features.INT_COLUMNS else "FLOAT"
                    for c in features.RAW_COLUMNS}
  got = _parsed(executor.read_examples(query, warehouse_path))
  rows = [row for _, row in executor.query_rows(warehouse_path, query)]
  want = [bigquery_utils.row_to_example(bigquery_types, row) for row in rows]
  assert len(got) == 77 * 24
  assert got == want
  busy = [e for e in got
          if e.features.feature["pickups"].int64_list.value[0] == 3]
  assert busy[0].features.feature["mean_24h"].float_list.value[0] == \
      pytest.approx(1 / 24)


@pytest.fixture(scope="module")
def simulated_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("sim") / "w.duckdb"
  with Warehouse(path) as w:
    simulate.simulate_into(w, start=datetime.date(2024, 1, 1), days=9,
                           seed=3, scale=0.02)
  return str(path)


# The demand query's lag and mean columns are never NULL (LAG defaults to 0,
# means are COALESCEd), so NULLs, BOOLEAN and STRING come from a query of
# their own: the Arrow path must match row_to_example on every type the
# executor maps, not only on the two the demand query uses today.
_EVERY_TYPE_QUERY = """
SELECT
  unique_key,
  payment_type,  -- the simulator leaves it NULL: a column with no value
  trip_seconds,
  pickup_community_area,
  trip_miles,
  fare,
  trip_miles > 1 AS long_trip,
  IF(MOD(trip_seconds, 3) = 0, NULL, trip_miles / 3) AS third_or_null,
  IF(MOD(trip_seconds, 3) = 1, NULL, trip_seconds) AS seconds_or_null,
  IF(MOD(trip_seconds, 3) = 2, NULL, unique_key) AS key_or_null,
  IF(MOD(trip_seconds, 5) = 0, NULL, trip_miles > 1) AS long_or_null
FROM trips
ORDER BY unique_key
"""


def test_arrow_examples_equal_row_to_example_with_nulls(simulated_path):
  got = list(executor.read_examples(_EVERY_TYPE_QUERY, simulated_path))
  # BigQuery would report these columns' types as bigquery_type maps them.
  want = [bigquery_utils.row_to_example(types, row) for types, row in
          executor.query_rows(simulated_path, _EVERY_TYPE_QUERY)]
  # More than one Arrow batch, so batch boundaries are covered too.
  assert len(got) == len(want) > executor._ROWS_PER_BATCH  # pylint: disable=protected-access
  assert all(isinstance(s, bytes) for s in got)
  assert _parsed(got) == want

  def kinds(column):
    return {e.features.feature[column].WhichOneof("kind") for e in want}
  # Every mapped type and a NULL in each, or the comparison proves little.
  assert kinds("unique_key") == {"bytes_list"}
  assert kinds("long_trip") == {"int64_list"}
  assert kinds("third_or_null") == {"float_list", None}
  assert kinds("seconds_or_null") == {"int64_list", None}
  assert kinds("key_or_null") == {"bytes_list", None}
  assert kinds("payment_type") == {None}
  assert kinds("long_or_null") == {"int64_list", None}


def test_demand_query_on_a_simulated_city_equals_row_to_example(
    simulated_path):
  # The last of 9 days: a full week of lag history, 15-minute slots.
  cfg = sql.QueryConfig(slot_minutes=15)
  span = (datetime.date(2024, 1, 9) - datetime.date(1970, 1, 1)).days
  query = sql.substitute_span(sql.render_bigquery(cfg), span)
  bigquery_types = {c: "INTEGER" if c in features.INT_COLUMNS else "FLOAT"
                    for c in features.RAW_COLUMNS}
  got = _parsed(executor.read_examples(query, simulated_path))
  want = [bigquery_utils.row_to_example(bigquery_types, row)
          for _, row in executor.query_rows(simulated_path, query)]
  assert len(got) == len(want) == 77 * 96
  assert got == want


def test_unsupported_column_type_is_an_error(simulated_path):
  with pytest.raises(RuntimeError,
                     match="TIMESTAMP has no BigQuery equivalent"):
    list(executor.read_examples(
        "SELECT trip_start_timestamp FROM trips LIMIT 1", simulated_path))


def test_component_requires_a_span(warehouse_path):
  with pytest.raises(ValueError, match="range_config"):
    DuckDBExampleGen(warehouse_path, input_config_for(HOURLY))


@pytest.mark.e2e
def test_driver_fills_span_in_local_pipeline(warehouse_path, tmp_path):
  from tfx.orchestration import metadata  # noqa: PLC0415
  from tfx.orchestration import pipeline as tfx_pipeline  # noqa: PLC0415
  from tfx.orchestration.local import local_dag_runner  # noqa: PLC0415
  from ml_metadata.metadata_store import metadata_store  # noqa: PLC0415

  gen = DuckDBExampleGen(warehouse_path, input_config_for(HOURLY),
                         range_config_for(SUNDAY)).with_id("DuckDBExampleGen")
  db = str(tmp_path / "mlmd.sqlite")
  local_dag_runner.LocalDagRunner().run(tfx_pipeline.Pipeline(
      pipeline_name="example_gen_only", pipeline_root=str(tmp_path / "root"),
      components=[gen],
      metadata_connection_config=metadata.sqlite_metadata_connection_config(
          db)))
  store = metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(db))
  [artifact] = store.get_artifacts_by_type("Examples")
  assert artifact.custom_properties[
      example_gen_utils.SPAN_PROPERTY_NAME].int_value == SUNDAY
  # The cache key: the trips the span reads (its day and its lookback),
  # and the query that read them.
  from pipeline.components import duckdb_example_gen  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  with Warehouse(warehouse_path, read_only=True) as wh:
    assert artifact.custom_properties[
        example_gen_utils.FINGERPRINT_PROPERTY_NAME].string_value == (
            duckdb_example_gen.ingest_fingerprint(
                wh.span_fingerprint(SUNDAY),
                duckdb_example_gen.query_key(input_config_for(HOURLY))
            ).text())
  assert duckdb_example_gen.query_key(input_config_for(HOURLY)) != (
      duckdb_example_gen.query_key(input_config_for(sql.QueryConfig())))
  examples = standard_artifacts.Examples()
  examples.set_mlmd_artifact(artifact)
  evals = _read_split(examples, "day")
  assert len(evals) == 77 * 24
  assert min(e.features.feature["slot_start"].int64_list.value[0]
             for e in evals) == SUNDAY * 86_400
