"""Warehouse loading: accounting, row rules, idempotence, one-line file errors."""

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxi_demand.data import contract
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.errors import TaxiDemandError

DATA = Path(__file__).resolve().parent / "testdata" / "data"
SAMPLE = (Path(pa.__file__).resolve().parent.parent / "tfx" / "examples" /
          "chicago_taxi_pipeline" / "data" / "simple" / "data.csv")


@pytest.fixture
def wh(tmp_path):
  with Warehouse(tmp_path / "w.duckdb") as w:
    yield w


def _tables(w):
  return {t: w.count(t) for t in ("trips", "quarantine", "loads")}


def test_real_sample_loads_and_accounts_for_every_row(wh):
  report = wh.load([SAMPLE])
  assert report.read == 15_002
  assert report.read == report.loaded + report.quarantined
  # The two rows with neither community area nor coordinates.
  assert report.quarantined == report.per_rule["missing_pickup_location"] == 2
  assert wh.count("trips") == report.loaded
  assert wh.count("quarantine") == report.quarantined
  # Epoch seconds are wall clock: first trip 2013-01-01 00:30 -> span 15706.
  assert wh.span_range() == (15706, 17165)


def test_loading_the_same_file_twice_adds_nothing(wh):
  wh.load([SAMPLE])
  before = _tables(wh)
  again = wh.load([SAMPLE])
  assert (again.read, again.loaded, again.skipped) == (0, 0, [str(SAMPLE)])
  assert _tables(wh) == before


def test_content_key_is_stable_and_catches_copies(wh, tmp_path):
  copy = tmp_path / "copy.csv"
  text = SAMPLE.read_text()
  copy.write_text(text + text.splitlines()[5] + "\n")  # one repeated trip
  wh.load([SAMPLE])
  keys = wh.con.execute("SELECT unique_key FROM trips ORDER BY 1 LIMIT 3")
  first = keys.fetchall()
  report = wh.load([copy])  # different bytes, same trips
  assert report.read == 15_003 and report.loaded == 0
  assert report.per_rule["duplicate_key"] == 15_001
  with Warehouse(tmp_path / "other.duckdb") as other:
    other.load([SAMPLE])
    assert other.con.execute(
        "SELECT unique_key FROM trips ORDER BY 1 LIMIT 3").fetchall() == first


def test_each_row_rule_quarantines_with_its_name_and_raw_text(wh):
  report = wh.load([DATA / "bad_rows.csv"])
  assert (report.read, report.loaded, report.quarantined) == (15, 2, 13)
  assert report.per_rule == {
      "bad_timestamp": 3, "missing_pickup_location": 1,
      "community_area_out_of_range": 3, "coordinates_outside_chicago": 2,
      "negative_duration": 2, "negative_distance": 1, "duplicate_key": 1}
  assert set(report.per_rule) == set(contract.RULE_NAMES)
  loaded = {r[0] for r in wh.con.execute("SELECT unique_key FROM trips")
            .fetchall()}
  assert loaded == {"good1", "noarea_coords"}
  raw = dict(wh.con.execute("SELECT rule, raw FROM quarantine WHERE rule IN "
                            "('negative_distance', 'missing_pickup_location')")
             .fetchall())
  assert '"trip_miles":"-0.1"' in raw["negative_distance"]
  assert '"unique_key":"noloc"' in raw["missing_pickup_location"]


def test_parquet_with_native_types_loads(wh, tmp_path):
  path = tmp_path / "trips.parquet"
  pq.write_table(pa.table({
      "unique_key": ["p1", "p2"],
      "trip_start_timestamp": pa.array([1704621900, 1704625500],
                                       pa.int64()).cast(pa.timestamp("s")),
      "trip_seconds": [600, -1], "trip_miles": [1.0, 2.0],
      "pickup_community_area": [8, 8],
      "pickup_latitude": [41.9, 41.9], "pickup_longitude": [-87.63, -87.63],
      "extra_column": ["ignored", "ignored"]}), path)
  report = wh.load([path])
  assert (report.loaded, report.per_rule["negative_duration"]) == (1, 1)
  assert wh.newest_trip_epoch() == 1704621900


def _assert_fails_cleanly(wh, path, *needles):
  wh.load([DATA / "tiny_trips.csv"])
  before = _tables(wh)
  with pytest.raises(TaxiDemandError) as e:
    wh.load([DATA / "bad_rows.csv", path])  # the good file is rolled back too
  message = str(e.value)
  assert "\n" not in message and str(path) in message
  for needle in needles:
    assert needle in message
  assert _tables(wh) == before


def test_missing_required_column_is_named(wh, tmp_path):
  path = tmp_path / "no_area.csv"
  path.write_text("trip_start_timestamp,trip_seconds,trip_miles,"
                  "pickup_latitude,pickup_longitude\n1704621900,1,1,41.9,-87.6\n")
  _assert_fails_cleanly(wh, path, "missing required column",
                        "pickup_community_area")


def test_empty_file(wh, tmp_path):
  path = tmp_path / "empty.csv"
  path.write_text("")
  _assert_fails_cleanly(wh, path, "empty file")


def test_binary_file(wh, tmp_path):
  path = tmp_path / "trips.csv"
  path.write_bytes(gzip.compress((DATA / "tiny_trips.csv").read_bytes()))
  _assert_fails_cleanly(wh, path, "binary file")


def test_wrong_delimiter(wh, tmp_path):
  path = tmp_path / "semi.csv"
  path.write_text((DATA / "tiny_trips.csv").read_text().replace(",", ";"))
  _assert_fails_cleanly(wh, path, "wrong delimiter", "';'")


def test_missing_file(wh, tmp_path):
  path = tmp_path / "nope.csv"
  with pytest.raises(TaxiDemandError, match="nope.csv: no such file"):
    wh.load([path])


def test_corrupt_parquet_fails_with_one_line(wh, tmp_path):
  path = tmp_path / "broken.parquet"
  path.write_bytes(b"PAR1" + b"\x00garbage" * 10)
  _assert_fails_cleanly(wh, path, "cannot read parquet")


def test_read_only_open_reads_and_refuses_writes(tmp_path):
  with Warehouse(tmp_path / "w.duckdb") as w:
    w.load([DATA / "tiny_trips.csv"])
  with Warehouse(tmp_path / "w.duckdb", read_only=True) as a, \
      Warehouse(tmp_path / "w.duckdb", read_only=True) as b:
    assert a.count("trips") == b.count("trips") == 10
    with pytest.raises(TaxiDemandError, match="read-only"):
      a.load([DATA / "tiny_trips.csv"])
  with pytest.raises(TaxiDemandError, match="no warehouse"):
    Warehouse(tmp_path / "absent.duckdb", read_only=True)


def test_predictions_replace_on_repredict(wh):
  rows = pa.table({"cell": [8, 8], "slot_start": [1800, 3600],
                   "issued_at": [0, 0], "lead_minutes": [30, 60],
                   "predicted_pickups": [1.0, 2.0],
                   "model_version": ["v1", "v1"]})
  wh.upsert_predictions(rows)
  wh.upsert_predictions(rows.set_column(4, "predicted_pickups",
                                        pa.array([5.0, 6.0])))
  assert wh.con.execute(
      "SELECT predicted_pickups FROM predictions ORDER BY slot_start"
  ).fetchall() == [(5.0,), (6.0,)]


def test_a_later_forecast_for_a_slot_keeps_the_earlier_one(wh):
  """What a driver saw at 08:05 for 08:30 stays when 08:30's is issued."""
  early = pa.table({"cell": [8], "slot_start": [1800], "issued_at": [300],
                    "lead_minutes": [25], "predicted_pickups": [4.0],
                    "model_version": ["v1"]})
  wh.upsert_predictions(early)
  wh.upsert_predictions(early.set_column(2, "issued_at", pa.array([1800]))
                        .set_column(3, "lead_minutes", pa.array([0]))
                        .set_column(4, "predicted_pickups", pa.array([7.0])))
  assert wh.con.execute(
      "SELECT issued_at, lead_minutes, predicted_pickups FROM predictions "
      "ORDER BY issued_at").fetchall() == [(300, 25, 4.0), (1800, 0, 7.0)]


def test_an_old_predictions_table_is_kept_aside(tmp_path):
  import duckdb
  path = tmp_path / "old.duckdb"
  con = duckdb.connect(str(path))
  con.execute("CREATE TABLE predictions (cell BIGINT, slot_start BIGINT, "
              "predicted_pickups DOUBLE, model_version VARCHAR, "
              "predicted_at TIMESTAMP)")
  con.execute("INSERT INTO predictions VALUES (8, 0, 1.0, 'v1', now())")
  con.close()
  with Warehouse(path) as w:
    assert w.count("predictions") == 0
    assert w.count("predictions_without_issue_time") == 1
