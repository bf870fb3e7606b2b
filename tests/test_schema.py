"""The curated schema: generated from features.py, and it accepts clean data."""

import datetime

import pytest

from pipeline.schema import curate
from taxi_demand import features


def test_checked_in_schema_is_what_curate_builds():
  with open(curate.SCHEMA_FILE) as f:
    assert f.read() == curate.render(), (
        "pipeline/schema/schema.pbtxt is stale: run "
        "`python -m pipeline.schema.curate`")


def test_label_is_absent_in_serving_and_every_column_is_described():
  schema = curate.build_schema()
  names = [f.name for f in schema.feature]
  assert names == list(features.RAW_COLUMNS)
  label = next(f for f in schema.feature if f.name == features.LABEL)
  assert list(label.not_in_environment) == [curate.SERVING]


@pytest.mark.slow
def test_a_clean_simulated_day_has_no_anomalies_and_a_broken_one_drifts(
    tmp_path):
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  from taxi_demand.data import simulate, sql  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  schema = curate.build_schema()
  with wh.Warehouse(tmp_path / "w.duckdb") as w:
    simulate.simulate_into(w, start=datetime.date(2024, 1, 1), days=10,
                           seed=5, scale=0.3)
    first, last = w.span_range()
    cfg = sql.QueryConfig()
    stats = {s: tfdv.generate_statistics_from_dataframe(
        w.query_demand(cfg, s).to_pandas()) for s in (last - 1, last)}
    assert not tfdv.validate_statistics(stats[last], schema).anomaly_info
    clean = tfdv.validate_statistics(stats[last], schema,
                                     previous_statistics=stats[last - 1])
    assert not clean.anomaly_info
    w.con.execute("DELETE FROM trips WHERE trip_start_timestamp >= "
                  "make_timestamp(CAST(? AS BIGINT) * 1000000) AND "
                  "hash(unique_key) % 10 <> 0", [last * 86400])
    broken = tfdv.generate_statistics_from_dataframe(
        w.query_demand(cfg, last).to_pandas())
  drift = tfdv.validate_statistics(broken, schema,
                                   previous_statistics=stats[last - 1])
  assert features.LABEL in drift.anomaly_info
