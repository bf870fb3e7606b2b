"""Simulator: calibration reproducible from the sample, seeded output, truth,
drift grammar and effects, and loading into a usable warehouse."""

import collections
import datetime
import heapq
import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_demand import spans
from taxi_demand.data import simulate
from taxi_demand.data.sql import QueryConfig
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.errors import TaxiDemandError

START = datetime.date(2024, 1, 1)
DAY0 = spans.span_of(START)


def test_checked_in_calibration_regenerates_from_the_sample(tmp_path):
  path = simulate.write_calibration(tmp_path / "calibration.json")
  checked_in = simulate.Path(simulate.__file__).with_name(
      simulate.CALIBRATION_FILE)
  assert path.read_text() == checked_in.read_text()
  cal = json.loads(path.read_text())
  assert len(cal["area_share"]) == 77 and len(cal["hour_of_week_monday0"]) == 168
  assert sum(cal["area_share"]) == pytest.approx(1, abs=1e-4)
  # Near North Side (8) and the Loop (32) dominate Chicago pickups.
  assert np.argsort(cal["area_share"])[-2:].tolist() == [31, 7]


def test_same_seed_same_trips_other_seed_other_trips(tmp_path):
  cal = simulate.Calibration.load()
  a, lam_a = simulate.day_trips(cal, DAY0, 3, 0.1, ())
  b, lam_b = simulate.day_trips(cal, DAY0, 3, 0.1, ())
  c, _ = simulate.day_trips(cal, DAY0, 4, 0.1, ())
  assert a.equals(b) and np.array_equal(lam_a, lam_b)
  assert not a.equals(c)


def test_trips_follow_intensity_and_truth_is_written(tmp_path):
  report = simulate.simulate_files(tmp_path, START, 7, seed=1, scale=0.2)
  trips = pq.read_table(report.files[0])
  truth = pq.read_table(report.files[1])
  assert trips.num_rows == report.trips
  assert truth.num_rows == 7 * 77 * 96 == report.truth_rows
  expected = sum(truth.column("intensity").to_pylist())
  # Poisson: the total is within a few standard deviations of sum(λ).
  assert abs(report.trips - expected) < 5 * expected ** 0.5
  assert len(set(trips.column("unique_key").to_pylist())) == trips.num_rows
  starts = trips.column("trip_start_timestamp").cast("int64").to_numpy()
  assert starts.min() >= DAY0 * 86_400 * 10**6
  assert starts.max() < (DAY0 + 7) * 86_400 * 10**6


def test_holidays_lower_demand(monkeypatch):
  cal = simulate.Calibration.load()
  new_year, _ = simulate.day_intensity(cal, DAY0, 0, 1.0, ())
  monkeypatch.setattr(simulate, "_HOLIDAY_FACTOR", 1.0)
  no_holiday, _ = simulate.day_intensity(cal, DAY0, 0, 1.0, ())
  assert np.allclose(new_year, 0.75 * no_holiday)


@pytest.mark.parametrize("spec, kind", [
    ("area=8:x3@2024-02-05", "area"),
    ("area=8:x3/14d@2024-02-05", "area"),
    ("area=8:drop@2024-02-05", "area"),
    ("weekend=swap@2024-02-05", "weekend"),
    ("coords=0.01,-0.02@2024-02-05", "coords"),
])
def test_drift_grammar(spec, kind):
  [clause] = simulate.parse_drift(spec)
  assert clause.kind == kind
  assert clause.start_day == spans.span_of(datetime.date(2024, 2, 5))


@pytest.mark.parametrize("spec", [
    "area=8:x3", "area=99:x3@2024-02-05", "area=8:x3@2024-13-01",
    "area=8:y3@2024-02-05", "weekend=keep@2024-02-05", "coords=5,5@2024-01-01",
    "area=8:x-1@2024-02-05", "DROP TABLE trips"])
def test_bad_drift_specs_fail_with_one_line(spec):
  with pytest.raises(TaxiDemandError) as e:
    simulate.parse_drift(spec)
  assert "\n" not in str(e.value)


def test_sudden_and_gradual_drift_change_intensity():
  cal = simulate.Calibration.load()
  clauses = simulate.parse_drift(
      "area=8:x3@2024-01-03;area=32:x2/4d@2024-01-03;area=6:drop@2024-01-03")
  def lam(day, drift):
    return simulate.day_intensity(cal, DAY0 + day, 0, 1.0, drift)[0]
  before, after = lam(1, clauses), lam(1, ())
  assert np.allclose(before, after)  # nothing before the start day
  for day, ramp in ((2, 1.25), (3, 1.5), (5, 2.0), (9, 2.0)):
    drifted, plain = lam(day, clauses), lam(day, ())
    assert drifted[7].sum() == pytest.approx(3 * plain[7].sum())
    assert drifted[31].sum() == pytest.approx(ramp * plain[31].sum())
    assert drifted[5].sum() == 0


def test_coordinate_shift_and_weekend_swap():
  cal = simulate.Calibration.load()
  saturday = DAY0 + 5
  shifted, _ = simulate.day_trips(
      cal, saturday, 0, 0.05, simulate.parse_drift("coords=0.5,0@2024-01-01"))
  plain, _ = simulate.day_trips(cal, saturday, 0, 0.05, ())
  lat = lambda t: np.nanmean(t.column("pickup_latitude").to_numpy())  # noqa: E731
  assert lat(shifted) - lat(plain) == pytest.approx(0.5, abs=0.01)
  swapped = simulate._day_profile(cal, saturday, True)  # pylint: disable=protected-access
  assert not np.allclose(swapped, simulate._day_profile(cal, saturday, False))  # pylint: disable=protected-access


def test_simulate_into_gives_a_pipeline_ready_warehouse(tmp_path):
  with Warehouse(tmp_path / "w.duckdb") as w:
    report = simulate.simulate_into(w, START, 9, seed=0, scale=0.05)
    assert report.read == report.loaded > 0 and report.quarantined == 0
    assert w.count("truth") == 9 * 77 * 96
    assert w.span_range() == (DAY0, DAY0 + 8)
    table = w.query_demand(QueryConfig(), DAY0 + 8)
    assert table.num_rows == 77 * 48
    # The oracle: pickups per 30-min slot track the sum of two quarter λs.
    truth = w.con.execute(
        "SELECT sum(intensity) FROM truth WHERE slot_start >= ?",
        [(DAY0 + 8) * 86_400]).fetchone()[0]
    got = sum(table.column("pickups").to_pylist())
    assert abs(got - truth) < 5 * truth ** 0.5
    again = simulate.simulate_into(w, START, 9, seed=0, scale=0.05)
    assert again.loaded == 0  # same seed and days: same files, nothing new


@pytest.mark.slow
def test_default_scale_35_days_is_a_city(tmp_path):
  # The speed target (>= 1M trips/s) is bench/data.py's: a timed assert here
  # failed on a busy 2-core machine (855k/s) while the bench measures 2.3M/s.
  report = simulate.simulate_files(tmp_path, START, 35)
  assert report.trips > 1_500_000


# ---- the fleet: taxi_id on every trip, and its pings ------------------------


@pytest.fixture(scope="module")
def fleet_city(tmp_path_factory):
  """Two days at 0.1x with pings every 60 s, loaded."""
  root = tmp_path_factory.mktemp("fleet")
  report = simulate.simulate_files(root / "files", START, 2, seed=5,
                                   scale=0.1, pings_every_s=60)
  wh = Warehouse(root / "w.duckdb")
  load = wh.load([root / "files"])
  assert load.quarantined == load.probes_quarantined == 0
  assert (load.loaded, load.probes_loaded) == (report.trips, report.pings)
  yield report, wh
  wh.close()


def test_the_fleet_leaves_the_trips_as_drawn_and_a_day_alone_the_same(
    fleet_city, tmp_path):
  report, wh = fleet_city
  trips = pq.read_table(report.files[0])
  cal = simulate.Calibration.load()
  drawn, _ = simulate.day_trips(cal, DAY0 + 1, 5, 0.1, ())
  second = trips.filter(pc.greater_equal(
      trips.column("trip_start_timestamp").cast("int64"),
      (DAY0 + 1) * 86_400 * 10**6))
  assert second.drop(["taxi_id"]).equals(drawn)
  alone = pq.read_table(simulate.simulate_files(
      tmp_path, START + datetime.timedelta(days=1), 1, seed=5,
      scale=0.1).files[0])
  assert alone.column("taxi_id").equals(second.column("taxi_id"))
  assert all(t.startswith(f"s5-{DAY0 + 1}-t")
             for t in alone.column("taxi_id").to_pylist())


def test_no_taxi_is_in_two_places_and_each_drives_to_its_next_pickup(
    fleet_city):
  report, wh = fleet_city
  # A taxi's next pickup starts after its dropoff, no farther than the
  # fleet's reach, and not before it could have driven there.
  gaps = wh.con.execute("""
      SELECT epoch(next_start) - epoch(trip_end_timestamp) AS gap,
             dropoff_community_area AS a, next_area AS b
      FROM (SELECT *, lead(trip_start_timestamp) OVER w AS next_start,
                   lead(pickup_community_area) OVER w AS next_area
            FROM trips WINDOW w AS (PARTITION BY taxi_id
                                    ORDER BY trip_start_timestamp))
      WHERE next_start IS NOT NULL""").fetchnumpy()
  assert wh.con.execute(
      "SELECT count(*) FROM trips WHERE taxi_id IS NULL").fetchone()[0] == 0
  minutes = simulate.area_minutes(simulate.area_positions(
      simulate.Calibration.load()))
  drive = minutes[gaps["a"] - 1, gaps["b"] - 1]
  assert (gaps["gap"] >= 0).all()
  assert (drive <= simulate.FLEET_REACH_MINUTES).all()
  assert (gaps["gap"] >= np.rint(drive * 60) - 1).all()
  # Most pickups are by a taxi already waiting in the area.
  assert (gaps["a"] == gaps["b"]).mean() > 0.5
  assert 0 < report.taxis < report.trips / 5


def test_pings_say_occupied_exactly_during_the_taxis_trips(fleet_city):
  _, wh = fleet_city
  wrong = wh.con.execute("""
      SELECT p.occupied, count(*) FROM probes p
      LEFT JOIN trips t ON t.taxi_id = p.vehicle_id
        AND p.ping_timestamp >= t.trip_start_timestamp
        AND p.ping_timestamp < t.trip_end_timestamp
      WHERE p.occupied <> (t.taxi_id IS NOT NULL)
      GROUP BY 1""").fetchall()
  assert wrong == []


def test_trips_and_pings_agree_on_who_is_idle(fleet_city):
  _, wh = fleet_city
  cfg = QueryConfig()
  for hour in (3, 8, 13, 18, 23):
    at = (DAY0 + 1) * 86_400 + hour * 3600
    by_trips = set(wh.idle_at(cfg, at).column("taxi_id").to_pylist())
    by_pings = set(wh.idle_at_probes(cfg, at).column("taxi_id").to_pylist())
    assert by_trips and by_trips <= by_pings
    # Pings also see taxis driving empty to a pickup not yet made.
    assert len(by_pings - by_trips) <= 0.15 * len(by_pings)


def _assign_taxis_reference(start, end, pickup, dropoff, minutes,
                            reach_minutes=simulate.FLEET_REACH_MINUTES):
  """The fleet rule, written plainly (the simulator's first version): the
  fast loop must give every trip the same taxi."""
  order = np.argsort(start, kind="stable")
  near = [[int(b) for b in np.argsort(minutes[a], kind="stable")
           if minutes[a, b] <= reach_minutes] for a in range(simulate.AREAS)]
  drive = np.rint(minutes * 60).astype(np.int64)
  idle = [collections.deque() for _ in range(simulate.AREAS)]
  busy, taxi_of, fleet = [], np.empty(len(start), np.int64), 0
  for i in order:
    t, a = start[i], pickup[i] - 1
    while busy and busy[0][0] <= t:
      free, taxi, where = heapq.heappop(busy)
      idle[where].append((free, taxi))
    chosen = None
    for b in near[a]:
      if idle[b] and idle[b][0][0] + drive[b, a] <= t:
        chosen = idle[b].popleft()[1]
        break
    if chosen is None:
      chosen, fleet = fleet, fleet + 1
    taxi_of[i] = chosen
    heapq.heappush(busy, (end[i], chosen, dropoff[i] - 1))
  return taxi_of


def test_the_fast_fleet_assigns_each_trip_the_taxi_the_plain_rule_does():
  cal = simulate.Calibration.load()
  table, _ = simulate.day_trips(cal, DAY0 + 3, 11, 0.3, ())
  minutes = simulate.area_minutes(simulate.area_positions(cal))
  start = table.column("trip_start_timestamp").cast("int64").to_numpy() // 10**6
  end = table.column("trip_end_timestamp").cast("int64").to_numpy() // 10**6
  pickup = table.column("pickup_community_area").to_numpy()
  dropoff = table.column("dropoff_community_area").to_numpy()
  fast = simulate.assign_taxis(start, end, pickup, dropoff, minutes)
  np.testing.assert_array_equal(
      fast, _assign_taxis_reference(start, end, pickup, dropoff, minutes))
  trips, _ = simulate.with_fleet(table, DAY0 + 3, 11, None, minutes)
  assert trips.column("taxi_id").to_pylist() == [
      f"s11-{DAY0 + 3}-t{k}" for k in fast.tolist()]
