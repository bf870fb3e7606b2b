"""Warehouse loading: accounting, row rules, idempotence, one-line file errors."""

import gzip
import json
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
      "malformed_row": 0, "bad_timestamp": 3, "timestamp_out_of_range": 0,
      "missing_pickup_location": 1,
      "community_area_out_of_range": 3, "coordinates_outside_chicago": 2,
      "negative_duration": 2, "negative_distance": 1,
      "value_out_of_range": 0, "duplicate_key": 1}
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


# ---- rows the CSV reader cannot split: quarantined, the file still loads ---

_HEADER = ("unique_key,trip_start_timestamp,trip_seconds,trip_miles,"
           "pickup_community_area,pickup_latitude,pickup_longitude,company")
_BOM = b"\xef\xbb\xbf"


def _trip(key: str, company: str = "Flash Cab") -> str:
  return f"{key},2024-01-07 10:05:00 UTC,600,1.5,8,41.8993,-87.6330,{company}"


def _csv(path, rows, newline=b"\n", head=b""):
  """Writes _HEADER and `rows` (text, or bytes as they are) to `path`."""
  lines = [r if isinstance(r, bytes) else r.encode() for r in [_HEADER, *rows]]
  path.write_bytes(head + newline.join(lines) + newline)
  return path


def _malformed(w):
  """The raw JSON of each malformed_row in quarantine, by line."""
  rows = w.con.execute(
      "SELECT raw FROM quarantine WHERE rule = 'malformed_row'").fetchall()
  return sorted((json.loads(raw) for (raw,) in rows), key=lambda r: r["line"])


def _keys(w):
  return sorted(k for (k,) in w.con.execute("SELECT unique_key FROM trips")
                .fetchall())


def test_a_row_over_the_readers_line_limit_is_quarantined(wh, tmp_path):
  # DuckDB's CSV reader takes lines of up to 2,000,000 bytes (max_line_size).
  path = _csv(tmp_path / "long.csv",
              [_trip("k1"), _trip("long", "x" * 2_100_000), _trip("k2")])
  report = wh.load([path])
  assert (report.read, report.loaded, report.quarantined) == (3, 2, 1)
  assert report.per_rule["malformed_row"] == 1
  assert _keys(wh) == ["k1", "k2"]
  [raw] = _malformed(wh)
  assert (raw["line"], raw["error"]) == (3, "LINE SIZE OVER MAXIMUM")
  assert raw["csv_line"].startswith(_trip("long", "xxx"))
  assert raw["csv_line_may_be_cut"]
  assert wh.con.execute("SELECT max(strlen(raw)) FROM quarantine"
                        ).fetchone()[0] < 20_000
  assert wh.con.execute("SELECT read, loaded, quarantined FROM loads"
                        ).fetchall() == [(3, 2, 1)]


@pytest.mark.parametrize("row, error", [
    (_trip("many") + ",extra", "TOO MANY COLUMNS"),
    ("few,2024-01-07 10:05:00 UTC,600", "MISSING COLUMNS"),
    (_trip("utf", "Caf\xe9").encode("latin-1"), "INVALID ENCODING"),
    (_trip("quote", '"Flash" Cab'), "UNQUOTED VALUE"),
], ids=["too-many-fields", "too-few-fields", "not-utf-8", "stray-quote"])
def test_a_row_the_reader_cannot_split_is_quarantined(wh, tmp_path, row,
                                                      error):
  path = _csv(tmp_path / "bad.csv", [_trip("k1"), row, _trip("k2")])
  report = wh.load([path])
  assert (report.read, report.loaded, report.quarantined) == (3, 2, 1)
  assert report.per_rule["malformed_row"] == 1
  assert _keys(wh) == ["k1", "k2"]
  [raw] = _malformed(wh)
  assert (raw["line"], raw["error"], raw["csv_line_may_be_cut"]) == (
      3, error, False)
  text = row.decode("latin-1") if isinstance(row, bytes) else row
  assert raw["csv_line"].split(",")[0] == text.split(",")[0]


def test_an_unterminated_quote_runs_to_the_end_of_the_file(wh, tmp_path):
  """The reader cannot tell where such a row ends: what follows is part of
  it, one broken row read, and the rows before it load."""
  path = _csv(tmp_path / "quote.csv",
              [_trip("k1"), _trip("open", '"Flash Cab'), _trip("k2")])
  report = wh.load([path])
  assert (report.read, report.loaded, report.quarantined) == (2, 1, 1)
  [raw] = _malformed(wh)
  assert raw["line"] == 3 and raw["error"] == "UNQUOTED VALUE"
  assert raw["csv_line"].startswith("open,") and "k2," in raw["csv_line"]


@pytest.mark.parametrize("newline, head", [
    (b"\r\n", b""), (b"\n", _BOM), (b"\r\n", _BOM)],
    ids=["crlf", "bom", "bom-crlf"])
def test_crlf_and_a_byte_order_mark_leave_no_trace(wh, tmp_path, newline,
                                                   head):
  path = _csv(tmp_path / "windows.csv", [_trip("k1"), "short,1", _trip("k2")],
              newline=newline, head=head)
  report = wh.load([path])
  assert (report.read, report.loaded, report.per_rule["malformed_row"]) == (
      3, 2, 1)
  # unique_key is found by name (no BOM in it) and no value keeps a \r.
  assert wh.con.execute(
      "SELECT unique_key, company FROM trips ORDER BY 1").fetchall() == [
          ("k1", "Flash Cab"), ("k2", "Flash Cab")]
  [raw] = _malformed(wh)
  assert (raw["line"], raw["csv_line"]) == (3, "short,1")


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_quoted_values_keep_commas_quotes_and_line_breaks(wh, tmp_path,
                                                          newline):
  company = 'Taxi, "Inc."\nNorth\r\nSide'
  quoted = '"' + company.replace('"', '""') + '"'
  path = _csv(tmp_path / "quoted.csv", [_trip("k1", quoted), _trip("k2")],
              newline=newline)
  report = wh.load([path])
  assert (report.read, report.loaded) == (2, 2)
  assert wh.con.execute("SELECT company FROM trips WHERE unique_key = 'k1'"
                        ).fetchone() == (company,)


def test_rows_ending_in_other_line_breaks_than_the_header_load(wh, tmp_path):
  """DuckDB's strict reader refuses such a file whole; it is read with each
  break made \\n, so the odd row loads with no \\r in its values."""
  path = tmp_path / "mixed.csv"
  path.write_bytes(b"".join([
      _HEADER.encode() + b"\n", _trip("k1").encode() + b"\r\n", b"short,1\r",
      _trip("k2").encode() + b"\n", _trip("k3").encode() + b"\r"]))
  report = wh.load([path])
  assert (report.read, report.loaded, report.per_rule["malformed_row"]) == (
      4, 3, 1)
  assert wh.con.execute("SELECT DISTINCT company FROM trips").fetchall() == [
      ("Flash Cab",)]
  assert [(r["line"], r["csv_line"]) for r in _malformed(wh)] == [
      (3, "short,1")]


def test_each_file_answers_for_its_own_malformed_rows(wh, tmp_path):
  a = _csv(tmp_path / "a.csv", [_trip("a1"), "a,broken"])
  b = _csv(tmp_path / "b.csv", [_trip("b1"), "b,broken", _trip("b2"), "b,2"])
  report = wh.load([a, b])
  assert (report.read, report.loaded, report.per_rule["malformed_row"]) == (
      6, 3, 3)
  assert wh.con.execute("SELECT path, read, loaded, quarantined FROM loads "
                        "ORDER BY path").fetchall() == [
                            (str(a), 2, 1, 1), (str(b), 4, 2, 2)]
  assert wh.con.execute("SELECT source_file, count(*) FROM quarantine "
                        "GROUP BY 1 ORDER BY 1").fetchall() == [
                            (str(a), 1), (str(b), 2)]


@pytest.mark.parametrize("header, needle", [
    (_HEADER + ",Company", "repeats column name(s): Company"),
    (_HEADER.replace(",trip_miles,", ",trip_miles,,"), "empty column name"),
    (_HEADER.replace("company", '"company'), "header is not a CSV line"),
])
def test_a_header_without_one_name_per_column_is_refused(wh, tmp_path,
                                                         header, needle):
  path = tmp_path / "header.csv"
  path.write_text(header + "\n" + _trip("k1") + "\n")
  _assert_fails_cleanly(wh, path, needle)


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


def test_an_old_predictions_table_is_left_as_it_was(tmp_path):
  """Forecasts now go to the served log; what the warehouse held stays."""
  import duckdb  # noqa: PLC0415
  path = tmp_path / "old.duckdb"
  con = duckdb.connect(str(path))
  con.execute("CREATE TABLE predictions (cell BIGINT, slot_start BIGINT, "
              "predicted_pickups DOUBLE, model_version VARCHAR, "
              "predicted_at TIMESTAMP)")
  con.execute("INSERT INTO predictions VALUES (8, 0, 1.0, 'v1', now())")
  con.close()
  with Warehouse(path) as w:
    assert w.count("predictions") == 1
  with Warehouse(tmp_path / "new.duckdb") as w:
    tables = {r[0] for r in w.con.execute("SHOW TABLES").fetchall()}
  assert "predictions" not in tables and "trips" in tables


# ---- probes: an operator's pings, loaded by the same accounting ------------


def test_probes_load_and_each_bad_ping_goes_to_quarantine(wh):
  report = wh.load([DATA / "bad_probes.csv"])
  # A probes file: trips untouched, its own per-rule counts.
  assert (report.read, report.loaded, report.quarantined) == (0, 0, 0)
  assert (report.probes_read, report.probes_loaded,
          report.probes_quarantined) == (10, 3, 7)
  assert report.probes_per_rule == {
      "malformed_row": 1, "bad_timestamp": 1, "timestamp_out_of_range": 0,
      "missing_vehicle_id": 1,
      "position_outside_chicago": 1, "community_area_out_of_range": 1,
      "bad_occupied_flag": 1, "duplicate_ping": 1}
  assert set(report.probes_per_rule) == set(contract.PROBE_RULE_NAMES)
  rows = wh.con.execute(
      "SELECT vehicle_id, epoch(ping_timestamp)::BIGINT, occupied, "
      "community_area FROM probes ORDER BY 1, 2").fetchall()
  assert rows == [("v1", 1707552000, False, 32), ("v1", 1707552060, True, 32),
                  ("v2", 1707552000, False, None)]   # epoch seconds parse
  raw = dict(wh.con.execute(
      "SELECT rule, raw FROM quarantine WHERE source_file LIKE "
      "'%bad_probes.csv'").fetchall())
  assert len(raw) == 7
  assert '"occupied":"maybe"' in raw["bad_occupied_flag"]
  assert '"community_area":"99"' in raw["community_area_out_of_range"]
  assert "v4,2024-02-10" in raw["malformed_row"]
  assert wh.load([DATA / "bad_probes.csv"]).skipped == [
      str(DATA / "bad_probes.csv")]
  assert wh.count("probes") == 3


def test_probes_parquet_with_native_types_and_a_repeat_of_a_loaded_ping(
    wh, tmp_path):
  def pings(path, seconds):
    pq.write_table(pa.table({
        "vehicle_id": ["v9"] * len(seconds),
        "ping_timestamp": pa.array(seconds, pa.int64()).cast(
            pa.timestamp("s")),
        "latitude": [41.9] * len(seconds), "longitude": [-87.6] * len(seconds),
        "occupied": [True, False][:len(seconds)]}), path)
  pings(tmp_path / "a.parquet", [1707552000, 1707552060])
  pings(tmp_path / "b.parquet", [1707552060])
  report = wh.load([tmp_path / "a.parquet", tmp_path / "b.parquet"])
  assert (report.probes_loaded, report.probes_per_rule["duplicate_ping"]) == (
      2, 1)
  assert wh.con.execute("SELECT list(occupied ORDER BY ping_timestamp) "
                        "FROM probes").fetchone()[0] == [True, False]


@pytest.mark.parametrize("header, row, needles", [
    ("trip_start_timestamp,trip_seconds,trip_miles,pickup_latitude,"
     "pickup_longitude", "1704621900,1,1,41.9,-87.6",
     ("missing required column(s) for trips", "pickup_community_area")),
    ("vehicle_id,ping_timestamp,latitude,longitude",
     "v1,2024-02-10 08:00:00,41.9,-87.6",
     ("missing required column(s) for probes", "occupied")),
])
def test_a_missing_required_column_is_named_for_its_table(wh, tmp_path,
                                                         header, row,
                                                         needles):
  path = tmp_path / "missing.csv"
  path.write_text(f"{header}\n{row}\n")
  _assert_fails_cleanly(wh, path, *needles)


# ---- a path is a file, never a pattern --------------------------------------

def test_a_name_with_glob_characters_loads_exactly_that_file_once(wh,
                                                                   tmp_path):
  """DuckDB's readers expand `*`, `?` and `[...]`: `t[1].csv` read t1.csv,
  and `*.csv` every CSV beside it, while the named file was marked loaded."""
  folder = tmp_path / "d"
  folder.mkdir()
  _csv(folder / "t1.csv", [_trip("t1")])
  _csv(folder / "t[1].csv", [_trip("bracket")])
  _csv(folder / "*.csv", [_trip("star")])
  _csv(folder / "other.csv", [_trip("o1"), _trip("o2")])
  pq.write_table(pa.table({
      "unique_key": ["pq"], "trip_start_timestamp": [1704621900],
      "trip_seconds": [600], "trip_miles": [1.0], "pickup_community_area": [8],
      "pickup_latitude": [41.9], "pickup_longitude": [-87.63]}),
      folder / "?.parquet")
  loaded = []
  for name, key in (("t[1].csv", "bracket"), ("*.csv", "star"),
                    ("?.parquet", "pq")):
    report = wh.load([folder / name])
    assert (report.read, report.loaded, report.files) == (
        1, 1, [str(folder / name)])
    loaded.append(key)
    assert _keys(wh) == sorted(loaded)
  rest = wh.load([folder])  # the others load too, each once
  assert (rest.read, rest.loaded) == (3, 3) and len(rest.skipped) == 3
  assert _keys(wh) == ["bracket", "o1", "o2", "pq", "star", "t1"]


# ---- timestamps: inside the contract's bounds, offsets converted ------------

_TIMES_HEADER = ("unique_key,trip_start_timestamp,trip_end_timestamp,"
                 "trip_seconds,trip_miles,pickup_community_area,"
                 "pickup_latitude,pickup_longitude")


def _times_csv(path, rows):
  path.write_text("\n".join([_TIMES_HEADER] + [
      f"{key},{start},{end},600,1.5,8,41.8993,-87.6330"
      for key, start, end in rows]) + "\n")
  return path


def test_timestamps_outside_the_bounds_are_quarantined_under_their_rule(
    wh, tmp_path):
  """1900, 2100, year 5138 and 1200 BC loaded; the last broke every later
  load. Now each goes to quarantine, and the warehouse answers as before."""
  rule = {r.name: r.description for r in contract.RULES}[
      "timestamp_out_of_range"]
  assert "2000-01-01" in rule and "2100-01-01" in rule
  assert contract.RULE_NAMES.index("timestamp_out_of_range") == \
      contract.RULE_NAMES.index("bad_timestamp") + 1
  report = wh.load([_times_csv(tmp_path / "times.csv", [
      ("first", "2000-01-01 00:00:00", ""),
      ("last", "2099-12-31 23:00:00", "2099-12-31 23:10:00"),
      ("y1900", "1900-01-01 00:00:00", ""),
      ("y1999", "1999-12-31 23:59:59", ""),
      ("y2100", "2100-01-01 00:00:00", ""),
      ("ends2100", "2099-12-31 23:55:00", "2100-01-01 00:05:00"),
      ("y5138", "99999999999", ""),             # epoch seconds
      ("bc1200", "-99999999999", ""),
      ("infinite", "infinity", ""),
      ("unparsable", "soon", "")])])
  assert (report.read, report.loaded) == (10, 2)
  assert report.per_rule["timestamp_out_of_range"] == 7
  assert report.per_rule["bad_timestamp"] == 1
  assert _keys(wh) == ["first", "last"]
  assert wh.con.execute(
      "SELECT count(*) FROM quarantine WHERE rule = 'timestamp_out_of_range'"
      " AND raw LIKE '%\"bc1200\"%'").fetchone()[0] == 1
  assert wh.span_range() == (10957, 47481)  # 2000-01-01 .. 2099-12-31
  again = wh.load([DATA / "tiny_trips.csv"])
  assert again.loaded == 10


def test_a_warehouse_holding_such_a_trip_from_before_is_mended(tmp_path):
  """A 1200 BC trip loaded by an older version moves to quarantine when a
  writer next opens the warehouse; nothing is lost."""
  path = tmp_path / "w.duckdb"
  with Warehouse(path) as w:
    w.load([DATA / "tiny_trips.csv"])
    w.con.execute("INSERT INTO trips (unique_key, trip_start_timestamp) "
                  "VALUES ('bc', make_timestamp(-99999999999000000))")
  with Warehouse(path) as w:
    assert (w.count("trips"), w.count("quarantine")) == (10, 1)
    [(rule, raw)] = w.con.execute("SELECT rule, raw FROM quarantine").fetchall()
    assert rule == "timestamp_out_of_range" and '"bc"' in raw
    assert w.load([DATA / "bad_rows.csv"]).read == 15
    assert w.span_range() == (19721, 19730)


def test_an_explicit_utc_offset_is_converted_to_city_wall_clock(wh,
                                                                 tmp_path):
  """'+05:00' was dropped; an offset now means an instant, as for --at.
  A zero offset or 'UTC' labels wall clock: BigQuery's export of the
  public table, whose TIMESTAMPs hold Chicago wall clock."""
  wh.load([_times_csv(tmp_path / "offsets.csv", [
      ("plus5", "2024-02-10 08:00:00+05:00", ""),
      ("cst", "2024-02-10T08:00:00-06:00", "2024-02-10T08:10:00-0600"),
      ("cdt", "2024-07-10 08:00:00-05", ""),
      ("utc", "2024-02-10 08:00:00 UTC", ""),
      ("zero", "2024-02-10 08:00:00+00:00", ""),
      ("plain", "2024-02-10 08:00:00", "")])])
  starts = dict(wh.con.execute(
      "SELECT unique_key, strftime(trip_start_timestamp, '%Y-%m-%d %H:%M') "
      "FROM trips").fetchall())
  assert starts == {"plus5": "2024-02-09 21:00", "cst": "2024-02-10 08:00",
                    "cdt": "2024-07-10 08:00", "utc": "2024-02-10 08:00",
                    "zero": "2024-02-10 08:00", "plain": "2024-02-10 08:00"}


# ---- the content key: the same trip, however its numbers are written -------

_NO_KEY_HEADER = ("trip_start_timestamp,trip_seconds,trip_miles,fare,"
                  "pickup_community_area,pickup_latitude,pickup_longitude")


def test_a_trip_without_unique_key_is_keyed_on_its_values_not_its_text(
    wh, tmp_path):
  """`8.0`/`2.00` and `8`/`2.0` were two trips: the key hashed the text."""
  first = tmp_path / "a.csv"
  first.write_text(f"{_NO_KEY_HEADER}\n"
                   "2024-01-07 10:05:00,600,2.00,8.0,8,41.8993,-87.6330\n"
                   "2024-01-07 10:05:00,600.0,2.0,8,8.0,41.89930,-87.633\n")
  second = tmp_path / "b.csv"
  second.write_text(f"{_NO_KEY_HEADER}\n"
                    "1704621900,600,2,8.00,08,41.8993,-87.6330\n"
                    "2024-01-07 10:06:00,600,2.0,8,8,41.8993,-87.6330\n")
  report = wh.load([first, second])
  assert (report.read, report.loaded) == (4, 2)
  assert report.per_rule["duplicate_key"] == 2
  rows = wh.con.execute(
      "SELECT raw FROM quarantine WHERE rule = 'duplicate_key'").fetchall()
  assert {json.loads(raw)["fare"] for (raw,) in rows} == {"8", "8.00"}


def test_keys_of_the_older_text_form_are_derived_again(tmp_path):
  """A warehouse keyed on text before: its keys are re-derived once, and a
  trip it holds twice keeps one copy; the other goes to quarantine."""
  path = tmp_path / "w.duckdb"
  with Warehouse(path) as w:
    w.load([DATA / "tiny_trips.csv"])
    w.con.execute(  # what the text key let in: one trip under two keys
        "INSERT INTO trips SELECT t.* REPLACE ('h' || md5(unique_key || x) "
        "AS unique_key) FROM trips AS t, (VALUES ('8.0'), ('8')) AS v(x) "
        "WHERE unique_key = 'a1'")
    w.con.execute("DROP TABLE upgrades")  # as an older version wrote it
  with Warehouse(path) as w:
    assert (w.count("trips"), w.count("quarantine")) == (11, 1)
    assert w.con.execute("SELECT rule FROM quarantine").fetchall() == [
        ("duplicate_key",)]
    assert w.con.execute("SELECT count(*) FROM trips WHERE unique_key LIKE "
                         "'h%'").fetchone()[0] == 0
    # The key a file without unique_key gives the same trip.
    [header, a1] = (DATA / "tiny_trips.csv").read_text().splitlines()[:2]
    copy = tmp_path / "copy.csv"
    copy.write_text(header.partition(",")[2] + "\n" +
                    a1.partition(",")[2] + "\n")
    assert w.load([copy]).per_rule["duplicate_key"] == 1


# ---- values: finite and within reach of a taxi ------------------------------

def test_non_finite_and_absurd_values_are_quarantined(wh, tmp_path):
  """Fares of -1e308, NaN and inf loaded, and broke every sum over them."""
  path = tmp_path / "values.csv"
  path.write_text(
      "unique_key,trip_start_timestamp,trip_seconds,trip_miles,fare,tips,"
      "pickup_community_area,pickup_latitude,pickup_longitude\n" + "".join(
          f"{key},2024-01-07 10:05:00,{seconds},{miles},{fare},{tips},8,,\n"
          for key, seconds, miles, fare, tips in [
              ("ok", 600, 1.5, 9.25, ""),
              ("sample_extremes", 72120, 1710, 700.07, 47),
              ("refund", 600, 1.5, -5, ""),
              ("fare_-1e308", 600, 1.5, "-1e308", ""),
              ("fare_nan", 600, 1.5, "NaN", ""),
              ("fare_inf", 600, 1.5, "inf", ""),
              ("tips_text", 600, 1.5, 9, "lots"),
              ("miles_nan", 600, "nan", 9, ""),
              ("miles_inf", 600, "Infinity", 9, ""),
              ("miles_far", 600, 10_000, 9, ""),
              ("seconds_week", 7 * 86_400, 1.5, 9, "")]))
  report = wh.load([path])
  rule = {r.name: r.description for r in contract.RULES}["value_out_of_range"]
  assert "5,000" in rule and "172,800" in rule and "100,000" in rule
  assert report.per_rule["value_out_of_range"] == 8
  assert _keys(wh) == ["ok", "refund", "sample_extremes"]
  assert wh.con.execute("SELECT sum(fare) FROM trips").fetchone()[0] == \
      pytest.approx(704.32)


def _truth(path, rows):
  pq.write_table(pa.table({
      "community_area": [r[0] for r in rows],
      "slot_start": [r[1] for r in rows],
      "intensity": [float(r[2]) for r in rows]}), path)
  return path


def test_truth_is_told_by_its_columns_and_never_overwritten(wh, tmp_path):
  """A trips file named truth*.parquet loads as trips; a truth file that
  would change loaded truth is refused whole, in one line."""
  slot = 1704621600  # 2024-01-07 10:00
  first = wh.load([_truth(tmp_path / "sim-intensity.parquet",
                          [(8, slot, 2.5), (9, slot, 1.0)])])
  assert first.truth_rows == 2 and wh.count("truth") == 2
  named = tmp_path / "truth-trips.parquet"
  pq.write_table(pa.table({
      "unique_key": ["t1"], "trip_start_timestamp": [slot + 300],
      "trip_seconds": [600], "trip_miles": [1.0],
      "pickup_community_area": [8], "pickup_latitude": [41.9],
      "pickup_longitude": [-87.63]}), named)
  trips = wh.load([named])
  assert (trips.loaded, trips.truth_rows) == (1, 0)
  same = wh.load([_truth(tmp_path / "truth-again.parquet",
                         [(8, slot, 2.5), (10, slot, 3.0)])])
  assert same.truth_rows == 2 and wh.count("truth") == 3  # one new row
  before = _tables(wh)
  for rows, needle in (([(8, slot, 99.0)], "never overwritten"),
                       ([(8, slot + 900, float("nan"))], "finite"),
                       ([(8, slot + 900, 1.0)] * 2, "given twice")):
    with pytest.raises(TaxiDemandError) as e:
      wh.load([_truth(tmp_path / f"truth-{len(needle)}.parquet", rows)])
    assert needle in str(e.value) and "\n" not in str(e.value)
  assert _tables(wh) == before
  assert wh.con.execute("SELECT intensity FROM truth WHERE community_area = 8"
                        ).fetchall() == [(2.5,)]
