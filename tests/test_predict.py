"""Batch prediction and the served-feature log: unit tests on tiny tables, and
e2e tests on a home where the real pipeline pushed two model versions."""

import datetime
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import taxi_demand  # noqa: F401  (before TensorFlow)
from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand.modeling import features
from taxi_demand.serving import predict
from taxi_demand.serving import servelog

REPO = Path(__file__).resolve().parent.parent
# The simulated warehouse holds 2024-01-01 .. 2024-02-11; the two runs train
# on the 7 days before 2024-02-10 and before 2024-02-11.
OLD_DAY, NEW_DAY = "2024-02-10", "2024-02-11"
_BUILT = "built.ok"
BUILDER = REPO / "tests" / "testdata" / "serving" / "build_home.py"


def build_serving_home(tmp_path_factory) -> Home:
  """One home per session with two pushed versions (older first).

  Two real daily runs (7-day window, 200 steps, a permissive ForecastGate so
  both push). Cached on disk under the session's base temp folder, so each
  test module asks for it and the pipeline still runs once per session.
  """
  root = tmp_path_factory.getbasetemp() / "serving_home"
  if (root / _BUILT).exists():
    return Home(root)
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  env.pop("TAXI_DEMAND_HOME", None)
  done = subprocess.run(
      [sys.executable, str(BUILDER), str(root), OLD_DAY, NEW_DAY,
       "--train-days", "7", "--train-steps", "200"], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=1200, check=False)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  from taxi_demand.serving import registry
  versions = registry.versions(root / "models")
  assert len(versions) == 2, f"want two pushed versions, got {versions}"
  (root / _BUILT).write_text("\n".join(versions))
  return Home(root)


def copy_home(shared: Home, root: Path) -> Home:
  """A home sharing `shared`'s models and pipeline artifacts, with copies of
  its warehouse and metadata and an empty serving log of its own."""
  import shutil
  root.mkdir(parents=True)
  for name in ("warehouse.duckdb", "metadata.sqlite"):
    shutil.copy(shared.root / name, root / name)
  (root / "models").symlink_to(shared.models)
  (root / "pipeline").symlink_to(shared.pipeline_root)
  return Home(root)


def versions_of(home: Home):
  from taxi_demand.serving import registry
  old, new = registry.versions(home.models)
  return old, new


def epoch(text: str) -> int:
  return predict.parse_at(text)


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory):
  return build_serving_home(tmp_path_factory)


# ---- unit: inputs and the log --------------------------------------------

def test_parse_at_reads_city_wall_clock_and_offsets():
  assert predict.parse_at("2024-02-10T08:00") == 1707552000
  assert predict.parse_at("1707552000") == 1707552000
  # 14:00 UTC is 08:00 in Chicago in February (UTC-6).
  assert predict.parse_at("2024-02-10T14:00:00+00:00") == 1707552000
  with pytest.raises(TaxiDemandError, match="bad --at"):
    predict.parse_at("tomorrow")


def test_slot_at_or_after_rounds_up_to_a_boundary():
  cfg = demand_sql.QueryConfig(slot_minutes=30)
  at = epoch("2024-02-10T08:00")
  assert predict.slot_at_or_after(cfg, at) == at
  assert predict.slot_at_or_after(cfg, at + 1) == at + 1800
  assert predict.slot_at_or_after(cfg, at + 1799) == at + 1800


def test_parse_every():
  assert predict.parse_every("5m") == 300
  assert predict.parse_every("30s") == 30
  for bad in ("0m", "5 minutes", "", "m"):
    with pytest.raises(TaxiDemandError, match="--every"):
      predict.parse_every(bad)


def _served(slots, cells=(1, 2, 3)) -> pa.Table:
  rows = {c: [] for c in features.SERVING_COLUMNS}
  for slot in slots:
    for cell in cells:
      for c in features.SERVING_COLUMNS:
        value = {features.CELL: cell, features.SLOT_START: slot}.get(c, 1)
        rows[c].append(value if c in features.INT_COLUMNS else float(value))
  return pa.table({c: pa.array(v, pa.int64() if c in features.INT_COLUMNS
                               else pa.float64()) for c, v in rows.items()})


def test_log_partitions_by_slot_day_across_midnight(tmp_path):
  before = epoch("2024-02-10T23:30")
  served = _served([before, before + 1800])
  at = datetime.datetime(2024, 2, 11, 5, 31)
  files = servelog.append(tmp_path, served, "7", at)
  assert sorted(f.parent.name for f in files) == [
      "date=2024-02-10", "date=2024-02-11"]
  day = servelog.read_day(tmp_path, datetime.date(2024, 2, 10))
  assert day.table.num_rows == 3 and day.versions() == [("7", 3)]
  assert day.table.column("predicted_at").to_pylist() == [at] * 3
  # Exactly the served rows, plus the version and time.
  assert day.table.select(list(features.SERVING_COLUMNS)).equals(
      served.slice(0, 3))


def test_corrupted_log_file_is_named_and_skipped(tmp_path):
  slot = epoch("2024-02-10T08:00")
  servelog.append(tmp_path, _served([slot]), "7", datetime.datetime.now())
  servelog.append(tmp_path, _served([slot + 1800]), "8",
                  datetime.datetime.now())
  bad = servelog.partition(tmp_path, datetime.date(2024, 2, 10)) / \
      "part-broken.parquet"
  bad.write_bytes(b"PAR1 this is not parquet")
  day = servelog.read_day(tmp_path, datetime.date(2024, 2, 10))
  assert day.table.num_rows == 6
  assert [p for p, _ in day.skipped] == [bad]
  assert day.versions() == [("7", 3), ("8", 3)]


def test_empty_log_day_is_one_clear_error(tmp_path):
  with pytest.raises(TaxiDemandError, match="log is empty"):
    servelog.read_day(tmp_path, datetime.date(2024, 2, 10))
  servelog.append(tmp_path, _served([epoch("2024-02-10T08:00")]), "7",
                  datetime.datetime.now())
  with pytest.raises(TaxiDemandError, match="logged days: 2024-02-10"):
    servelog.read_day(tmp_path, datetime.date(2024, 2, 12))


# ---- e2e: a real pushed model --------------------------------------------

@pytest.mark.e2e
def test_predictions_equal_the_saved_model_on_the_same_features(serving_home):
  import tensorflow as tf
  old, _ = versions_of(serving_home)
  model = predict.LoadedModel(serving_home, old)
  result = predict.run_job(serving_home, model, epoch("2024-02-10T17:10"))
  assert result.slot_start == epoch("2024-02-10T17:30")
  assert result.predictions.num_rows == 77
  loaded = tf.saved_model.load(str(serving_home.models / old))
  fn = loaded.signatures["predict_raw"]
  direct = fn(**{c: tf.constant(result.features.column(c).to_numpy().astype(
      np.int64 if c in features.INT_COLUMNS else np.float32))
                 for c in features.SERVING_COLUMNS})["predicted_pickups"]
  np.testing.assert_allclose(
      result.predictions.column("predicted_pickups").to_numpy(),
      direct.numpy(), rtol=1e-6)


@pytest.mark.e2e
def test_served_features_equal_the_training_query_label_aside(serving_home):
  from taxi_demand.data.warehouse import Warehouse
  old, _ = versions_of(serving_home)
  model = predict.LoadedModel(serving_home, old)
  slot = epoch("2024-02-05T08:30")  # inside the older model's training window
  served = predict.serving_features(serving_home, model.cfg, slot, 1)
  span = (datetime.date.fromisoformat(OLD_DAY) -
          datetime.date(1970, 1, 1)).days
  with Warehouse(serving_home.warehouse, read_only=True) as wh:
    training = wh.query_demand(model.cfg, span, days_before=7)
  rows = training.filter(pa.compute.equal(
      training.column(features.SLOT_START), slot))
  assert rows.num_rows == 77
  assert served.equals(rows.select(list(features.SERVING_COLUMNS)))


@pytest.mark.e2e
def test_rerunning_a_slot_replaces_its_predictions(serving_home):
  from taxi_demand.data.warehouse import Warehouse
  old, _ = versions_of(serving_home)
  model = predict.LoadedModel(serving_home, old)
  at = epoch("2024-02-10T09:00")
  first = predict.run_job(serving_home, model, at)
  second = predict.run_job(serving_home, model, at)
  with Warehouse(serving_home.warehouse, read_only=True) as wh:
    count, latest = wh.con.execute(
        "SELECT count(*), max(predicted_at) FROM predictions "
        "WHERE slot_start = ? AND model_version = ?", [at, old]).fetchone()
  assert count == 77
  assert latest == second.predicted_at > first.predicted_at


@pytest.mark.e2e
def test_no_history_and_empty_warehouse_are_refused(serving_home, tmp_path):
  old, _ = versions_of(serving_home)
  model = predict.LoadedModel(serving_home, old)
  with pytest.raises(TaxiDemandError,
                     match="trips from 2024-01-01 00:00 to 2024-02-11"):
    predict.run_job(serving_home, model, epoch("2025-06-01T08:00"))
  with pytest.raises(TaxiDemandError, match="no history"):
    predict.run_job(serving_home, model, epoch("2024-01-03T08:00"))
  # Same models, empty warehouse: refused, never scored from zeros.
  from taxi_demand.data.warehouse import Warehouse
  empty = Home(tmp_path / "empty")
  empty.ensure()
  os.symlink(serving_home.models / old, empty.models / old)
  Warehouse(empty.warehouse).close()
  with pytest.raises(TaxiDemandError, match="has no trips"):
    predict.run_job(empty, predict.LoadedModel(empty, old),
                    epoch("2024-02-10T08:00"))
  assert not list(empty.serving_log.glob("*/*.parquet"))


@pytest.mark.e2e
def test_every_loads_once_and_reloads_only_on_a_new_push(serving_home):
  from taxi_demand.serving import registry
  old, new = versions_of(serving_home)
  registry.set_serving(serving_home.models, old)
  reloads, results, errors = [], [], []
  ticks = iter(range(4))

  def sleep(_):
    if next(ticks) == 1:  # a push lands between the 2nd and 3rd jobs
      registry.set_serving(serving_home.models, new)
    if len(results) + len(errors) >= 4:
      raise KeyboardInterrupt

  try:
    jobs = predict.serve_every(
        serving_home, 300, at_epoch=epoch("2024-02-10T12:00"),
        on_result=results.append, on_error=errors.append,
        on_reload=lambda v, p: reloads.append((v, p)), sleep=sleep)
  finally:
    registry.set_serving(serving_home.models, new)
  assert errors == [] and jobs == 4
  assert reloads == [(old, None), (new, old)]
  assert [r.model_version for r in results] == [old, old, new, new]
