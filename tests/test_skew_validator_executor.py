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
from taxi_demand import features
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
