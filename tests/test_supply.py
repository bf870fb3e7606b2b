"""Idle taxis from trips alone, on a hand-made day with hand-computed answers."""

import csv

import pytest

from taxi_demand import spans
from taxi_demand.data import sql
from taxi_demand.data.warehouse import Warehouse
from taxi_days import write_trips

DAY = "2024-02-05"
BEGIN = spans.start_of(spans.parse_span(DAY))


def at(hhmm: str) -> int:
  h, m = map(int, hhmm.split(":"))
  return BEGIN + 3600 * h + 60 * m


# (taxi, start, end or "" (then start + seconds), seconds, from, to); taxi A's
# three trips are listed out of order.
TRIPS = [
    ("A", "13:00", "13:30", 1800, 6, 8),
    ("A", "08:00", "08:20", 1200, 8, 32),
    ("A", "08:50", "", 1200, 32, 6),       # no end time: 08:50 + 20 min
    ("B", "09:40", "09:55", 900, 8, 32),
    ("B", "10:15", "10:30", 900, 32, 7),
    ("", "10:00", "10:10", 600, 8, 8),      # no taxi id: no supply known
]


@pytest.fixture
def warehouse(tmp_path):
  path = tmp_path / "trips.csv"
  write_trips(path, DAY, TRIPS)
  w = Warehouse(tmp_path / "w.duckdb")
  report = w.load([path])
  assert report.loaded == len(TRIPS)
  yield w
  w.close()


def _idle_at(warehouse, hhmm, cfg=None, **kwargs):
  got = warehouse.idle_at(cfg or sql.QueryConfig(), at(hhmm), **kwargs)
  return [(r["taxi_id"], r["cell"], r["idle_start"]) for r in got.to_pylist()]


def test_idle_at_a_moment_reads_only_what_was_known_then(warehouse):
  # 08:30: A dropped off in 32 at 08:20 and has not been picked up by then
  # (its 08:50 pickup is the future); B has no trip yet.
  assert _idle_at(warehouse, "08:30") == [("A", 32, at("08:20"))]
  # 09:00: A is on its 08:50 trip (ends 09:10): busy, not idle.
  assert _idle_at(warehouse, "09:00") == []
  # 10:00: A waits in 6 since 09:10; B in 32 since 09:55.
  assert _idle_at(warehouse, "10:00") == [("A", 6, at("09:10")),
                                          ("B", 32, at("09:55"))]
  # 11:30: A has waited over the 2-hour cap at 11:10: a shift's end.
  assert _idle_at(warehouse, "11:30") == [("B", 7, at("10:30"))]
  assert _idle_at(warehouse, "11:30", max_idle_s=4 * 3600) == [
      ("A", 6, at("09:10")), ("B", 7, at("10:30"))]


def test_idle_at_a_moment_follows_the_arrival_rule(warehouse):
  # A trips export: a trip is known 5 minutes after it ends.
  export = sql.QueryConfig(arrival=sql.ArrivalRule.parse("end+5m"))
  # 08:20 is A's dropoff, known only at 08:25.
  assert _idle_at(warehouse, "08:20", export) == []
  assert _idle_at(warehouse, "08:25", export) == [("A", 32, at("08:20"))]
  # 09:00: A's 08:50 trip is under way and not known until 09:15, so A is
  # known only as waiting in 32 since 08:20; at 09:15 it waits in 6.
  assert _idle_at(warehouse, "09:00", export) == [("A", 32, at("08:20"))]
  assert _idle_at(warehouse, "09:15", export) == [("A", 6, at("09:10"))]


# ---- from probe pings -------------------------------------------------------

# (vehicle, time, occupied, community area)
PINGS = [
    ("P1", "08:00", "true", 8),
    ("P1", "08:05", "false", 32),
    ("P1", "08:10", "false", 32),
    ("P1", "08:15", "false", 32),
    ("P2", "08:00", "false", 6),
    ("P2", "08:06", "true", 6),
    ("P3", "06:00", "false", 7),
    ("P3", "08:09", "false", 7),
    ("P4", "08:11", "false", 9),
]


@pytest.fixture
def pinged(warehouse, tmp_path):
  path = tmp_path / "pings.csv"
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["vehicle_id", "ping_timestamp", "latitude", "longitude",
                  "occupied", "community_area"])
    for vehicle, hhmm, occupied, area in PINGS:
      out.writerow([vehicle, f"{DAY} {hhmm}:00", 41.88, -87.63, occupied,
                    area])
  assert warehouse.load([path]).probes_loaded == len(PINGS)
  return warehouse


def _probes_at(warehouse, hhmm):
  got = warehouse.idle_at_probes(sql.QueryConfig(), at(hhmm))
  return [(r["taxi_id"], r["cell"], r["idle_start"]) for r in got.to_pylist()]


def test_idle_at_a_moment_by_the_newest_fresh_ping(pinged):
  # 08:03: P1 carries a passenger; P2 waits in 6 since 08:00.
  assert _probes_at(pinged, "08:03") == [("P2", 6, at("08:00"))]
  # 08:10: P1 has been empty in 32 since 08:05; P2 is busy again; P3's
  # 06:00 ping is over 2 hours back, so it waits since 08:09; P4's 08:11
  # ping is the future.
  assert _probes_at(pinged, "08:10") == [("P1", 32, at("08:05")),
                                         ("P3", 7, at("08:09"))]
  # 08:26: P1's newest ping is 11 minutes old: off line, not supply.
  assert ("P1", 32, at("08:05")) in _probes_at(pinged, "08:25")
  assert [r[0] for r in _probes_at(pinged, "08:26")] == []


def test_supply_comes_from_probes_where_pings_cover_the_moment(pinged):
  cfg = sql.QueryConfig()
  table, source = pinged.supply_at(cfg, at("08:10"))
  assert source == "probes" and table.column("taxi_id").to_pylist() == [
      "P1", "P3"]
  # No ping within 10 minutes of 11:30: the trips answer.
  table, source = pinged.supply_at(cfg, at("11:30"))
  assert source == "trips" and table.column("taxi_id").to_pylist() == ["B"]


def test_the_probe_query_reads_the_grid_cell_from_the_position():
  text = sql.idle_at_probes_bigquery(
      sql.QueryConfig(spatial_unit=sql.SpatialUnit.GRID), at("08:10"))
  assert "FLOOR((latitude" in text and "community_area" not in text
  assert "<= " + str(at("08:10")) in text   # no ping after the moment


# ---- as features of the demand query ------------------------------------------


def _supply_features(warehouse, hhmm, arrival="start"):
  """{cell: (idle_now, idle_1h in taxi-minutes)} served at `hhmm`, checked
  equal to the training path's rows of the same issue time."""
  cfg = sql.QueryConfig(arrival=sql.ArrivalRule.parse(arrival))
  served = warehouse.serving_features(cfg, at(hhmm))
  training = {(r["cell"], r["slot_start"]): r for r in
              warehouse.every_lead_features(cfg, BEGIN, BEGIN + 86_400)
              .to_pylist() if r["issued_at"] == at(hhmm)}
  out = {}
  for row in served.to_pylist():
    twin = training[(row["cell"], row["slot_start"])]
    assert (twin["idle_now"], twin["idle_1h"]) == (row["idle_now"],
                                                    row["idle_1h"])
    if row["idle_now"] or row["idle_1h"]:
      out[row["cell"]] = (row["idle_now"], round(row["idle_1h"] * 60, 6))
  return out


def test_idle_taxis_now_and_over_the_last_hour_are_features(warehouse):
  # 08:30: A has waited in 32 since 08:20.
  assert _supply_features(warehouse, "08:30") == {32: (1, 10)}
  # 09:00: A left 32 at 08:50 (30 minutes of the hour); none waits now.
  assert _supply_features(warehouse, "09:00") == {32: (0, 30)}
  # 10:00: A in 6 since 09:10; B in 32 since 09:55.
  assert _supply_features(warehouse, "10:00") == {6: (1, 50), 32: (1, 5)}
  # 11:30: A's wait passed the 2-hour cap at 11:10 (40 minutes of the
  # hour), B has waited in 7 all hour.
  assert _supply_features(warehouse, "11:30") == {6: (0, 40), 7: (1, 60)}


def test_a_trip_not_yet_known_leaves_its_taxi_idle_as_of_then(warehouse):
  # Known at pickup: at 08:55 A is on its 08:50 trip.
  assert _supply_features(warehouse, "08:55") == {32: (0, 30)}
  # Known only at dropoff (09:10): at 08:55 nothing says A left 32 yet.
  assert _supply_features(warehouse, "08:55", "end") == {32: (1, 35)}
  # And its own dropoff counts only once known: B's 09:55 one, at 10:00
  # with a 10-minute delay, is not.
  assert 32 not in _supply_features(warehouse, "10:00", "end+10m")
