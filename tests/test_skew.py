"""Training-serving skew: the comparators on in-memory statistics, and the day
check through lineage on a home with two pushed versions."""

import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import taxi_demand  # noqa: F401  (before TensorFlow)
from taxi_demand.errors import TaxiDemandError
from taxi_demand.modeling import features
from taxi_demand.monitoring import skew
from taxi_demand.serving import predict
from taxi_demand.serving import servelog
from test_predict import OLD_DAY
from test_predict import build_serving_home
from test_predict import copy_home
from test_predict import epoch
from test_predict import versions_of

LAGS = (features.LAG_1, features.LAG_2, features.LAG_3, features.LAG_1D,
        features.LAG_7D)
DAY = datetime.date.fromisoformat(OLD_DAY)
# The e2e shift. At full simulated scale, lags x3 for half the cells measure
# JS 0.40-0.49 against a training window, under the curated schema's 0.5
# lag thresholds (calibrated so that clean days pass); x5 measures 0.55-0.62.
E2E_SHIFT = 5.0


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory):
  return build_serving_home(tmp_path_factory)


def shifted(table: pa.Table, factor: float = 3.0) -> pa.Table:
  """Lag features times `factor` for half the cells."""
  half = pc.less_equal(table.column(features.CELL), 38)
  cols = {c: table.column(c) for c in table.column_names}
  for c in LAGS:
    cols[c] = pc.if_else(half, pc.multiply(table.column(c), factor),
                         table.column(c))
  return pa.table(cols)


def log_day(home, version: str, day: datetime.date, transform=None):
  """Serves every slot of `day` (one 48-slot job) with `version`; returns the
  features as served before any `transform`, which rewrites the log file."""
  model = predict.LoadedModel(home, version)
  result = predict.run_job(home, model, epoch(day.isoformat()),
                           horizon=model.cfg.slots_per_day)
  if transform is not None:
    import pyarrow.parquet as pq
    [path] = result.log_files
    servelog.write_rows(path, transform(pq.read_table(path)))
  return result


@pytest.fixture
def fresh_log(serving_home, tmp_path):
  """The shared home with a serving log of its own for one test."""
  return copy_home(serving_home, tmp_path / "home")


# ---- unit: comparators on in-memory statistics ----------------------------

@pytest.fixture(scope="module")
def day_tables():
  """A clean day of features from a tiny simulated warehouse, and its schema."""
  from pipeline.schema import curate
  from taxi_demand.data import simulate
  from taxi_demand.data.sql import QueryConfig
  from taxi_demand.data.warehouse import Warehouse
  import tempfile
  with tempfile.TemporaryDirectory() as d:
    with Warehouse(f"{d}/w.duckdb") as wh:
      simulate.simulate_into(wh, "2024-01-01", 10, seed=3, scale=0.3)
      cfg = QueryConfig()
      train = wh.query_demand(cfg, 19731, days_before=2)  # 2024-01-08..09
      day = wh.serving_features(cfg, 19732 * 86400, 48)    # 2024-01-10
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


def test_lags_times_three_for_half_the_cells_are_flagged(day_tables):
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


# ---- e2e: through lineage --------------------------------------------------

@pytest.mark.e2e
def test_lineage_not_recency_older_version_serving(fresh_log):
  from taxi_demand.lineage import store as lineage
  old, new = versions_of(fresh_log)
  log_day(fresh_log, old, DAY)
  report = skew.check_day(fresh_log, DAY)
  [result] = report.results
  with lineage.open_store(fresh_log.metadata) as reader:
    want = skew.training_ref(reader, old).statistics
    newer = skew.training_ref(reader, new).statistics
    history = skew.history(reader, old)
    inputs = reader.inputs(result.execution_id)
  assert want.id != newer.id
  assert result.model_version == old
  assert (result.training_statistics_id, result.training_statistics_uri) == (
      want.id, want.uri)
  # Provenance: the check links the training statistics and the log span.
  assert [a.id for a in inputs["statistics"]] == [want.id]
  assert inputs["serving_log"][0].uri == str(
      servelog.partition(fresh_log.serving_log, DAY))
  assert [h["report_uri"] for h in history] == [result.report_uri]
  assert not report.alert


@pytest.mark.e2e
def test_each_version_is_checked_against_its_own_statistics(fresh_log):
  old, new = versions_of(fresh_log)
  log_day(fresh_log, old, DAY)
  log_day(fresh_log, new, DAY,
          transform=lambda t: shifted(t, E2E_SHIFT))
  report = skew.check_day(fresh_log, DAY, record=False)
  by_version = {r.model_version: r for r in report.results}
  assert set(by_version) == {old, new}
  assert by_version[new].alert and not by_version[old].alert
  assert report.alert
  assert (by_version[old].training_statistics_uri !=
          by_version[new].training_statistics_uri)


@pytest.mark.e2e
def test_unknown_version_and_empty_day(fresh_log):
  old, _ = versions_of(fresh_log)
  log_day(fresh_log, old, DAY)
  with pytest.raises(TaxiDemandError, match="served no rows"):
    skew.check_day(fresh_log, DAY, version="123")
  with pytest.raises(TaxiDemandError, match="no served features logged"):
    skew.check_day(fresh_log, datetime.date(2024, 2, 9))
