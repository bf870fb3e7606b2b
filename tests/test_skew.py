"""Training-serving skew: the comparators on in-memory statistics, and the day
check through lineage on the session's city home (two newest versions with
real training statistics from StatisticsGen's executor)."""

import datetime

import pyarrow.compute as pc
import pytest

import taxi_demand  # noqa: F401  (before TensorFlow)
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.monitoring import skew
from taxi_demand.serving import servelog

LAGS = (features.LAG_1, features.LAG_2, features.LAG_3, features.LAG_1D,
        features.LAG_7D)


@pytest.fixture
def shifted(serving_log_tools):
  return serving_log_tools.shifted


# ---- unit: comparators on in-memory statistics ----------------------------

@pytest.fixture(scope="module")
def day_tables():
  """A clean day of features from a tiny simulated warehouse, and its schema."""
  from pipeline.schema import curate  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data.sql import QueryConfig  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  import tempfile  # noqa: PLC0415
  with tempfile.TemporaryDirectory() as d:
    with Warehouse(f"{d}/w.duckdb") as wh:
      simulate.simulate_into(wh, "2024-01-01", 10, seed=3, scale=0.3)
      cfg = QueryConfig()
      train = wh.query_demand(cfg, 19731, days_before=2)  # 2024-01-08..09
      # A day served at every lead, as the 5-minute job serves it (the
      # eval split's examples, label aside): 2024-01-10.
      day = wh.query_demand(cfg, 19732).drop(["pickups"])
  return train, day, curate.build_schema()


def _stats(table, schema):
  return skew.serving_statistics(table, schema)


def test_clean_day_is_quiet_and_every_comparator_is_reported(day_tables):
  train, day, schema = day_tables
  found = skew.compare(_stats(train, schema), _stats(day, schema), schema)
  assert set(found) == {f.name for f in schema.feature
                        if f.HasField("skew_comparator")}
  assert [n for n, f in found.items() if f.flagged] == []
  assert all(f.distance is not None and f.threshold > 0
             for f in found.values())


def test_lags_times_three_for_half_the_cells_are_flagged(day_tables, shifted):
  train, day, schema = day_tables
  found = skew.compare(_stats(train, schema), _stats(shifted(day), schema),
                       schema)
  assert {n for n, f in found.items() if f.flagged} & set(LAGS)
  assert not found[features.MEAN_24H].flagged  # untouched columns stay quiet


def test_a_partial_day_skews_the_hour_mix(day_tables):
  train, day, schema = day_tables
  morning = day.filter(pc.equal(day.column(features.HOUR), 8))
  found = skew.compare(_stats(train, schema), _stats(morning, schema), schema)
  assert found[features.HOUR].flagged
  assert found[features.HOUR].distance > 0.5
  assert not found[features.CELL].flagged


def test_training_stats_without_value_counts_are_not_compared(day_tables):
  train, day, schema = day_tables
  found = skew.compare(skew.serving_statistics(train),  # no schema: numeric
                       _stats(day, schema), schema)
  hour = found[features.HOUR]
  assert hour.distance is None and not hour.flagged and "schema" in hour.note


# ---- through lineage, on the city home ---------------------------------------
# On this city (0.3x demand, 7-day training windows), a clean day measures JS
# 0.01-0.13 on the lags against the older version's training statistics;
# lags x3 for half the cells measure 0.32-0.48, under the curated schema's
# 0.5 thresholds, and x5 measures 0.47-0.61 (four lags flagged). The tests
# shift by `serving_log_tools.shift` (x5).


@pytest.mark.slow
def test_lineage_not_recency_older_version_serving(city_home, city_copy,
                                                   serving_log_tools):
  t = serving_log_tools
  old, new = city_home.old, city_home.new
  t.log_day(city_copy, old, t.day)
  report = skew.check_day(city_copy, t.day)
  [result] = report.results
  snap = store.load(city_copy.metadata)
  want = skew.training_ref(snap, old).statistics
  newer = skew.training_ref(snap, new).statistics
  history = skew.history(snap, old)
  inputs = snap.inputs(result.execution_id)
  assert want.id != newer.id
  assert result.model_version == old
  assert (result.training_statistics_id, result.training_statistics_uri) == (
      want.id, want.uri)
  # The older version's statistics are those of its own window's newest
  # day (the day before 2024-02-10), not the newest run's window.
  pushes = {p.version: p for p in queries.pushes(snap)}
  assert pushes[old].span == 19763 and pushes[new].span == 19764
  assert want.span == 19762 and newer.span == 19763
  # Provenance: the check links the training statistics and the log span.
  assert [a.id for a in inputs["statistics"]] == [want.id]
  assert inputs["serving_log"][0].uri == str(
      servelog.partition(city_copy.serving_log, t.day))
  assert [h["report_uri"] for h in history] == [result.report_uri]
  assert not report.alert


@pytest.mark.slow
def test_each_version_is_checked_against_its_own_statistics(
    city_home, city_copy, serving_log_tools):
  t = serving_log_tools
  old, new = city_home.old, city_home.new
  t.log_day(city_copy, old, t.day)
  t.log_day(city_copy, new, t.day,
            transform=lambda table: t.shifted(table, t.shift))
  report = skew.check_day(city_copy, t.day, record=False)
  by_version = {r.model_version: r for r in report.results}
  assert set(by_version) == {old, new}
  assert by_version[new].alert and not by_version[old].alert
  assert set(by_version[new].flagged) <= set(LAGS)
  assert report.alert
  assert (by_version[old].training_statistics_uri !=
          by_version[new].training_statistics_uri)


@pytest.mark.slow
def test_unknown_version_and_empty_day(city_home, city_copy,
                                       serving_log_tools):
  t = serving_log_tools
  t.log_day(city_copy, city_home.old, t.day)
  with pytest.raises(TaxiDemandError, match="served no rows"):
    skew.check_day(city_copy, t.day, version="123")
  with pytest.raises(TaxiDemandError, match="no served features logged"):
    skew.check_day(city_copy, datetime.date(2024, 2, 9))
