"""SkewValidator's executor on hand-built artifacts: one tick of served
rows in a serving log, compared with TFDV statistics of training rows
under the curated schema's skew comparators."""

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import executor_artifacts as art
import served_rows
from taxi_demand import features
from taxi_demand import spans
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract

DAY = datetime.date(2024, 2, 10)
TICK = datetime.datetime(2024, 2, 10, 8, 0)
VERSION = "7"
LAGS = (features.LAG_1, features.LAG_2, features.LAG_3, features.LAG_1D,
        features.LAG_7D)


def _rows(lag_factor: float = 1.0) -> pa.Table:
  """One tick's served rows: 77 cells x the next two slots, fixed figures
  (seeded); the lags times `lag_factor`."""
  rng = np.random.default_rng(5)
  issued = int(TICK.replace(tzinfo=datetime.timezone.utc).timestamp())
  n = 77 * 2
  columns = {c: np.ones(n) for c in features.SERVING_COLUMNS}
  columns.update({
      features.CELL: np.tile(np.arange(1, 78), 2),
      features.SLOT_START: np.repeat([issued + 1800, issued + 3600], 77),
      features.ISSUED_AT: np.full(n, issued),
      features.LEAD_MINUTES: np.repeat([30, 60], 77),
      features.HOUR: np.full(n, 8),
      features.DAY_OF_WEEK: np.full(n, 7),
      features.IS_HOLIDAY: np.zeros(n)})
  for c in features.FLOAT_COLUMNS:
    columns[c] = rng.gamma(2.0, 2.0, n)
  for c in LAGS:
    columns[c] = columns[c] * lag_factor
  return pa.table({c: pa.array(columns[c], pa.int64() if c in
                               features.INT_COLUMNS else pa.float64())
                   for c in features.SERVING_COLUMNS})


def validate(tmp_path: Path, served: pa.Table = None, trained: bool = True,
             **exec_properties):
  """SkewValidator's executor on the day's log (`served`, if any) against
  the training statistics of `_rows()`; returns the report artifact and
  its JSON."""
  from pipeline.components import skew_validator  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  log = tmp_path / "serving_log"
  if served is not None:
    servelog.append(log, served, VERSION, TICK, data_age_s=60)
  inputs = {}
  if trained:
    schema = art.schema(tmp_path / "schema")
    inputs = {contract.SCHEMA: [schema], contract.STATISTICS: [
        art.statistics(tmp_path / "statistics", _rows().to_pydict(), 19762,
                       (Path(schema.uri) / "schema.pbtxt").read_text())]}
  report = art.artifact(skew_validator.SkewReport, tmp_path / "report")
  art.run(skew_validator.SkewValidator, inputs, {contract.REPORT: [report]},
          serving_log_dir=str(log), date=DAY.isoformat(), **exec_properties)
  return report, json.loads((tmp_path / "report" /
                             contract.SKEW_REPORT_FILE).read_text())


def test_rows_served_as_trained_are_checked_and_pass(tmp_path):
  report, body = validate(tmp_path, _rows())
  assert report.get_int_custom_property("checked") == 1
  assert report.get_int_custom_property("alert") == 0
  assert report.get_int_custom_property("rows") == 154
  assert report.get_string_custom_property("flagged") == ""
  assert report.get_string_custom_property("model_version") == VERSION
  assert report.get_int_custom_property(contract.SPAN) == 19763
  assert body["alert"] is False and body["rows"] == 154
  # No warehouse given: the distributions only, and the report says so.
  assert body["join"] is None
  assert any(n.startswith("join skew not checked") for n in body["notes"])


def test_skewed_lags_are_flagged_and_stop_the_run(tmp_path):
  from pipeline.components.skew_validator import SkewAlert  # noqa: PLC0415
  with pytest.raises(SkewAlert, match="training-serving skew on 2024-02-10"):
    validate(tmp_path, _rows(lag_factor=10.0))


def test_skew_is_recorded_when_the_run_goes_on(tmp_path):
  report, body = validate(tmp_path, _rows(lag_factor=10.0), fail_on_skew=0)
  assert report.get_int_custom_property("alert") == 1
  assert set(report.get_string_custom_property("flagged").split(",")) == (
      set(LAGS))
  assert body["alert"] is True


def test_a_first_day_without_a_serving_model_passes_unchecked(tmp_path):
  report, body = validate(tmp_path, _rows(), trained=False)
  assert (report.get_int_custom_property("checked"),
          report.get_int_custom_property("alert")) == (0, 0)
  assert body == {"date": "2024-02-10", "checked": False, "alert": False,
                  "note": "no model served before this day; nothing to "
                  "compare"}


def test_a_day_nobody_predicted_passes_and_names_the_missing_day(tmp_path):
  report, body = validate(tmp_path, served=None)
  assert report.get_int_custom_property("checked") == 0
  assert "2024-02-10" in body["note"]


def test_a_version_that_served_nothing_fails_in_one_line(tmp_path):
  with pytest.raises(TaxiDemandError, match="model version 9 served no rows "
                     "on 2024-02-10; versions in the log: 7"):
    validate(tmp_path, _rows(), model_version="9")


# --- on Vertex: the served log on Cloud Storage, the trips in BigQuery --------

CITY_DAY = datetime.date(2024, 2, 10)   # a real day of the session's city
CITY_TICKS = ("08:00", "17:30")


# What a report records, less where it was written.
_FIGURES = ("checked", "alert", "flagged", "rows", "model_version",
            contract.SPAN)
_WHERE = ("report_uri", "training_statistics_uri", "schema_uri",
          "training_statistics_id", "skipped_files")


def _figures(body: dict) -> dict:
  return {k: v for k, v in body.items() if k not in _WHERE}


def _in_ram(folder: Path, name: str) -> str:
  """A copy of an artifact's files under TensorFlow's ram:// filesystem: a
  uri that, like Vertex's gs:// ones, only TensorFlow's file layer reads."""
  import tensorflow as tf  # noqa: PLC0415
  uri = f"ram://{name}"
  for path in folder.rglob("*"):
    if path.is_file():
      target = f"{uri}/{path.relative_to(folder).as_posix()}"
      tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
      tf.io.gfile.copy(str(path), target, overwrite=True)
  return uri


def test_on_vertex_the_skew_check_reads_the_bucket_and_bigquery_as_local(
    tmp_path, city, bigquery, gcs_root):
  """The Vertex graph has no lineage-walking resolver: the container finds
  the serving version's training statistics from the registry and the day
  verdicts, and must record what the local node records from ML Metadata's
  answer, on the same trips (BigQuery) and served log (Cloud Storage)."""
  import vertex_container  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import skew_validator  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import input_config_for  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import query_key  # noqa: PLC0415
  from taxi_demand import objectstore  # noqa: PLC0415
  from taxi_demand.data import verdicts  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  # The version served on CITY_DAY was pushed by the run for the day
  # before, which trained on the days before that: its window's newest
  # day's statistics are its training statistics.
  pushed_by = spans.span_of(CITY_DAY) - 1
  newest = pushed_by - 1
  params = contract.RunParameters(span=pushed_by, train_days=7,
                                  source_table=bigquery.address[5:])
  models, root = f"{gcs_root}/models", f"{gcs_root}/day_verdicts"
  objectstore.at(models).write_bytes(
      f"{VERSION}/{registry.PARAMETERS_FILE}",
      json.dumps(params.to_custom_config()).encode())
  key = query_key(input_config_for(params.query_config()))
  # Passed days around it: the pushing run's own day is its eval day, not
  # in its window.
  for day in (newest - 1, newest, pushed_by):
    verdicts.VerdictStore(root).write(verdicts.DayVerdict(
        span=day, passed=True, query_key=key, statistics_uri=_in_ram(
            city.statistics[newest], f"stats-{day}") if day == newest
        else f"ram://none-{day}"))
  schema = art.schema(tmp_path / "schema")
  query_config = json.dumps(params.to_custom_config())
  for log in (tmp_path / "serving_log", gcs_root + "/serving_log"):
    served_rows.city_ticks(log, city.warehouse, CITY_DAY, CITY_TICKS,
                           VERSION)

  local_report = art.artifact(skew_validator.SkewReport, tmp_path / "local")
  art.run(skew_validator.SkewValidator, {
      contract.SCHEMA: [schema], contract.STATISTICS: [art.artifact(
          standard_artifacts.ExampleStatistics, city.statistics[newest])]},
          {contract.REPORT: [local_report]},
          serving_log_dir=str(tmp_path / "serving_log"),
          date=CITY_DAY.isoformat(), fail_on_skew=0,
          warehouse_path=str(city.warehouse), query_config=query_config)

  imported = vertex_container.importers({
      contract.SCHEMA: standard_artifacts.Schema,
      contract.EXAMPLES: standard_artifacts.Examples})
  # The day from the run's examples: a scheduled run's is known only then.
  node = skew_validator.SkewValidator(
      **vertex_container.outputs_of(imported),
      serving_log_dir=f"{gcs_root}/serving_log",
      fail_on_skew=0, warehouse_path=bigquery.address,
      query_config=query_config, models_dir=models,
      verdicts_root=root).with_id(contract.SKEW_VALIDATOR)
  recorded = vertex_container.run_node(node, imported, tmp_path, inputs={
      contract.SCHEMA: [schema],
      contract.EXAMPLES: [art.artifact(standard_artifacts.Examples,
                                       tmp_path / "examples",
                                       span=spans.span_of(CITY_DAY))]},
      outputs={contract.REPORT: [art.artifact(
          skew_validator.SkewReport, tmp_path / "cloud")]})[contract.REPORT]

  local = json.loads((tmp_path / "local" / contract.SKEW_REPORT_FILE)
                     .read_text())
  cloud = json.loads((tmp_path / "cloud" / contract.SKEW_REPORT_FILE)
                     .read_text())
  assert local_report.get_int_custom_property("checked") == 1
  # The join with the training path was made, on both.
  assert local["join"] is not None
  assert {k: recorded[k] for k in _FIGURES} == {
      k: local_report.get_custom_property(k) for k in _FIGURES}
  assert _figures(cloud) == _figures(local)
  assert cloud["training_statistics_uri"] == f"ram://stats-{newest}"
