"""The supply forecast's flow balance (taxi_demand.supply), pinned by hand on
a three-taxi, six-trip day, point in time."""

import dataclasses

import numpy as np
import pytest

from taxi_demand import spans
from taxi_demand import supply
from taxi_demand.data import sql
from taxi_demand.data.warehouse import Warehouse
from taxi_days import write_trips

DAY = "2024-02-05"
BEGIN = spans.start_of(spans.parse_span(DAY))
CELLS = np.array([1, 2, 3])
M = 60


def at(hhmm: str) -> int:
  h, m = map(int, hhmm.split(":"))
  return BEGIN + 3600 * h + 60 * m


# (taxi, pickup, dropoff, from cell, to cell)
SIX_TRIPS = [
    ("A", "08:00", "08:20", 1, 2),
    ("A", "08:30", "08:50", 2, 3),
    ("B", "08:10", "08:40", 1, 3),
    ("B", "09:00", "09:20", 3, 1),
    ("C", "08:05", "08:25", 2, 2),
    ("C", "08:45", "09:15", 2, 1),
]
# The day as idle spells (a dropoff to the taxi's next pickup, at most 2 h):
#   cell 1: B 09:20-11:20 and C 09:15-11:15 (their last trips): 2 spells, 240 min
#   cell 2: A 08:20-08:30, C 08:25-08:45:                       2 spells,  30 min
#   cell 3: B 08:40-09:00, A 08:50-10:50 (its last trip):       2 spells, 140 min


def _trips(rows=SIX_TRIPS) -> supply.TaxiTrips:
  taxi, start, end, a, b = zip(*rows)
  return supply.TaxiTrips.of(CELLS, taxi, [at(s) for s in start],
                             [at(e) for e in end], a, b)


def test_rates_learned_from_the_day():
  rates = supply.Rates.fit(_trips(), 3, at("00:00"), at("24:00"))
  # Leave rate = (spells + 5) / (idle minutes + 5 x the city's mean spell)
  # by the hour of the week the spell begins: Monday 8:00 cells 2 and 3,
  # 170 min over 4 spells; 9:00 cell 1, 240 min over 2; other hours the
  # day's mean, 410 min over 6.
  eight, nine, three = 170 / 4, 240 / 2, 410 / 6
  for cell, hour, count, minutes, city in [
      (0, "09:00", 2, 240, nine), (1, "08:00", 2, 30, eight),
      (2, "08:00", 2, 140, eight), (0, "08:00", 0, 0, eight),
      (1, "03:00", 0, 0, three)]:
    how = int(supply._hour_of_week(at(hour)))
    assert rates.leave_per_s[cell, how] * M == pytest.approx(
        (count + 5) / (minutes + 5 * city))
  # Trip minutes per pickup x dropoff pair, 3 pseudo-trips of the day's
  # mean (20+20+30+20+20+30 = 140 / 6 min) behind each: 1 -> 3 saw one
  # 30-minute trip, 3 -> 2 none.
  mean = 140 / 6
  assert rates.trip_mean_s[0, 2] / M == pytest.approx((30 + 3 * mean) / 4)
  assert rates.trip_mean_s[2, 1] / M == pytest.approx(mean)
  # Dropoffs per hour: cell 1 had two at 09:xx on its only Monday, none at
  # 09:00 on the other days of the week it has not seen: the hour of the
  # week (2 dropoffs, seen once) leans on one pseudo-week of the hour of day
  # (2 dropoffs over one day seen) -> (2 + 1 x 2) / (1 + 1) = 2 per hour.
  monday_9 = int(supply._hour_of_week(at("09:00")))
  assert rates.dropoffs_per_s[0, monday_9] * 3600 == pytest.approx(2.0)
  assert rates.dropoffs_per_s[0, monday_9 + 1] * 3600 == 0
  # Pickups likewise: cell 2 had three at 08:xx (C 08:05, A 08:30, C
  # 08:45) -> (3 + 1 x 3) / (1 + 1) = 3 an hour; cell 3 one at 09:00.
  monday_8 = int(supply._hour_of_week(at("08:00")))
  assert rates.pickups_per_s[:, monday_8] * 3600 == pytest.approx(
      [2.0, 3.0, 0.0])
  assert rates.pickups_per_s[:, monday_9] * 3600 == pytest.approx(
      [0.0, 0.0, 1.0])


def _rates_by_hand() -> supply.Rates:
  """Every trip takes exactly its pair's mean, and every idle spell its
  cell's: cells 1 and 3 keep their idle taxis (leave rate 0), cell 2 for
  20 minutes; 6 dropoffs an hour in cell 1 from trips of exactly 20
  minutes, none elsewhere."""
  mean = np.full((3, 3), 20.0 * M)
  mean[0, 2] = 40.0 * M
  per_hour = np.zeros((3, supply.HOURS_PER_WEEK))
  per_hour[0] = 6 / 3600
  leave = np.repeat([[0.0], [1 / (20 * M)], [0.0]],
                    supply.HOURS_PER_WEEK, axis=1)
  return supply.Rates(leave, np.array([1.0]), mean,
                      np.array([1.0]), np.array([20.0 * M]), per_hour)


def _state(tmp_path, rows=SIX_TRIPS, cfg=sql.QueryConfig(), when="08:30"):
  write_trips(tmp_path / "day.csv", DAY,
              [(t, s, e, at(e) - at(s), a, b) for t, s, e, a, b in rows])
  with Warehouse(tmp_path / f"w{len(list(tmp_path.iterdir()))}.duckdb") as w:
    assert w.load([tmp_path / "day.csv"]).loaded == len(rows)
    table = w.taxis_at(cfg, at(when))
  return supply.State.from_taxis(CELLS, table, at(when))


def test_the_state_at_0830_is_what_was_known_then(tmp_path):
  state = _state(tmp_path)
  # C dropped off in 2 at 08:25: idle. A left 2 for 3 at 08:30, B left 1
  # for 3 at 08:10: under way, to 3, their ends not read.
  assert state.idle(3).tolist() == [0, 1, 0]
  assert state.idle_since.tolist() == [at("08:25")]
  assert sorted(zip(state.trip_pickup.tolist(), state.trip_dropoff.tolist(),
                    state.trip_start.tolist())) == [
                        (0, 2, at("08:10")), (1, 2, at("08:30"))]


def test_a_cells_leave_rate_leans_on_the_half_hour_before(tmp_path):
  write_trips(tmp_path / "day.csv", DAY, [
      (t, s, e, at(e) - at(s), a, b) for t, s, e, a, b in SIX_TRIPS])
  with Warehouse(tmp_path / "w.duckdb") as w:
    w.load([tmp_path / "day.csv"])
    state = supply.state_at(w, sql.QueryConfig(), CELLS, at("08:30"))
  # 08:00-08:30, known at 08:30: A idled in 2 from 08:20 to its 08:30
  # pickup (ended), C idles there since 08:25 (going on); B's and A's
  # trips under way end in the future, unread.
  assert state.recent.ended.tolist() == [0, 1, 0]
  assert state.recent.seconds.tolist() == [0, 15 * M, 0]
  # Cell 2's leave rate: (1 spell + 5) / (15 min + 5 spells of its
  # history's mean); the others keep their history's.
  rates = _rates_by_hand()
  assert supply.leave_now(rates, state) * M == pytest.approx(
      [0.0, 6 / (15 + 5 * 20), 0.0])


class _TripReads:
  """A warehouse reader that keeps what `taxi_trips` returned; with
  `full`, it ignores `ended_from` (every trip of the range, as before)."""

  def __init__(self, reader, full=False):
    self._reader, self._full, self.read = reader, full, []

  def __getattr__(self, name):
    return getattr(self._reader, name)

  def taxi_trips(self, cfg, begin, end, known_by=None, ended_from=None):
    table = self._reader.taxi_trips(cfg, begin, end, known_by,
                                    None if self._full else ended_from)
    self.read.append(table)
    return table


def test_the_state_reads_only_trips_whose_spells_reach_the_window(tmp_path):
  # Before the six trips: D's 05:10 dropoff idles it in 1 to 07:10 at
  # most, over before 08:00, the half hour before 08:30; E's 06:10
  # dropoff idles it in 3 to 08:10 (then its shift ends), ten minutes of
  # that half hour. F's trip has no end on record.
  early = [("D", "05:00", "05:10", 1, 1), ("E", "05:40", "06:10", 2, 3)]
  rows = early + SIX_TRIPS
  write_trips(tmp_path / "day.csv", DAY,
              [(t, s, e, at(e) - at(s), a, b) for t, s, e, a, b in rows]
              + [("F", "07:50", "", "", 2, 2)])
  with Warehouse(tmp_path / "w.duckdb") as w:
    w.load([tmp_path / "day.csv"])
    narrow, full = _TripReads(w), _TripReads(w, full=True)
    state = supply.state_at(narrow, sql.QueryConfig(), CELLS, at("08:30"))
    before = supply.state_at(full, sql.QueryConfig(), CELLS, at("08:30"))
  read = sorted(narrow.read[0].column("pickup_at").to_pylist())
  assert at("05:00") not in read
  assert {at("05:40"), at("07:50")} <= set(read)
  assert len(read) == len(full.read[0]) - 1
  # The same state as from every trip: E's ten minutes in 3 (ended at
  # 08:10); in 2, A's and C's 15 minutes and F's 30 (a trip without an end
  # is taken to end at its pickup); F's pickup counts in the hour's level.
  assert state.recent.ended.tolist() == before.recent.ended.tolist() == [
      0, 1, 1]
  assert state.recent.seconds.tolist() == before.recent.seconds.tolist() == [
      0, 45 * M, 10 * M]
  assert state.recent_pickups == before.recent_pickups == 5


def test_a_trip_under_way_counts_by_its_expected_end_never_its_true_one(
    tmp_path):
  rates = _rates_by_hand()
  starts = np.array([at("08:30"), at("09:00")])
  honest = supply.forecast(rates, _state(tmp_path), starts, 30 * M)
  # A's recorded end moves from 08:50 to 09:40, after the issue time
  # either way: what was known at 08:30 did not change, nor the forecast.
  later = [r if r[:2] != ("A", "08:30") else ("A", "08:30", "09:40", 2, 3)
           for r in SIX_TRIPS]
  assert supply.forecast(rates, _state(tmp_path, later), starts,
                         30 * M) == pytest.approx(honest)
  # Under a trips export (known at the trip's end) neither trip under way
  # is known: A shows in 2, where its 08:20 dropoff left it; B not at all.
  export = sql.QueryConfig(arrival=sql.ArrivalRule.parse("end"))
  state = _state(tmp_path, cfg=export)
  assert state.idle(3).tolist() == [0, 2, 0] and len(state.trip_dropoff) == 0


def test_the_flow_balance_by_hand(tmp_path):
  """Issued at 08:30 for the slots 08:30-09:00 and 09:00-09:30 (minutes 0-29
  and 30-59), with `_rates_by_hand`. A taxi idle by a minute's middle
  counts in all of it.

  Cell 1: no taxi idle or headed there; 0.1 dropoffs a minute from trips
    that take 20 minutes, so none before 08:50 (minute 20): x = 0.1, 0.2,
    ..., 1.0 in minutes 20-29 (sum 5.5), 1.1 ... 4.0 in 30-59 (mean 2.55).
  Cell 2: C, idle since 08:25, has 15 of its 20 minutes left: idle in
    minutes 0-14, half the first slot.
  Cell 3: A (2 -> 3, 20 min, from 08:30) and B (1 -> 3, 40 min, from
    08:10) both end at 08:50 (minute 20) and stay: 2 taxis for 10 of the
    first slot's 30 minutes, 2 all the second.
  """
  rates = _rates_by_hand()
  starts = np.array([at("08:30"), at("09:00")])
  got = supply.forecast(rates, _state(tmp_path), starts, 30 * M)
  assert got == pytest.approx(np.array([[5.5 / 30, 2.55],
                                        [0.5, 0.0],
                                        [20 / 30, 2.0]]))
  # The day as it happened (the spells above): 08:30-09:00 C idles in 2
  # for 15 minutes, B and A in 3 for 20 and 10; 09:00-09:30 C and B idle
  # in 1 for 15 and 10 minutes, A in 3 for all 30.
  truth = supply.actual(_trips(), 3, starts, 30 * M)
  assert truth == pytest.approx(np.array([[0, 25 / 30], [0.5, 0],
                                          [1.0, 1.0]]))
  # Better than idle now carried forward ([0, 1, 0] both slots): its
  # errors 0+0.5+1 and 0.83+1+1; the flow balance's 0.18+0+0.33 and
  # 1.72+0+1.
  naive = np.array([[0, 0], [1, 1], [0, 0]])
  assert np.abs(got - truth).mean() < 0.8 * np.abs(naive - truth).mean()
  # A driver sent now shares a cell with the taxis idle there now and
  # those expected idle within (here) 30 minutes: C in 2; A and B in 3;
  # one learned arrival in 1 (0.1 a minute over minutes 20-29).
  assert supply.expected_there(rates, _state(tmp_path), 30 * M) == \
      pytest.approx([1.0, 1.0, 2.0])


def _line_and_forecast():
  """Cells 1, 2, 3 on a line (10 minutes 1-2 and 2-3, 20 minutes 1-3), the
  decision time 08:00, `following`'s forecast (3 pickups a quarter hour in
  2 and 3, none in 1) and supply rates whose trips all take 20 minutes and
  whose idle taxis stay."""
  from taxi_demand import guidance  # noqa: PLC0415
  geo = guidance.Geometry(CELLS, np.array([[0, 10, 20], [10, 0, 10],
                                           [20, 10, 0]], float))
  t = BEGIN + 8 * 3600
  starts = t + 900 * np.arange(5)
  grid = np.array([[0.0] * 5, [3.0] * 5, [3.0] * 5])
  zeros = np.zeros((3, supply.HOURS_PER_WEEK))
  rates = supply.Rates(zeros, np.array([1.0]), np.full((3, 3), 20.0 * M),
                       np.array([1.0]), np.array([20.0 * M]), zeros)
  return geo, t, lambda at: (grid, starts), rates


def test_a_fleet_taxi_shares_a_cell_with_one_headed_there():
  """Cells 1, 2, 3 on a line (10 minutes 1-2 and 2-3, 20 minutes 1-3). A
  taxi idle in 1 at 0:00 weighs 2 and 3, each forecast 3 pickups a
  quarter hour: from its arrival to the hour's end, 3 x 50/15 = 10 in 2
  and 3 x 40/15 = 8 in 3. Nobody is idle in either, so with idle-now
  supply it goes to 2. But a taxi left 1 for 2 five minutes ago (trips of
  20 minutes): it will be idle in 2 at 0:15, so with forecast supply 2 is
  worth 10 / 2 = 5 a taxi, and the taxi goes to 3."""
  from taxi_demand import fleet  # noqa: PLC0415
  geo, t, forecast_at, rates = _line_and_forecast()
  empty = np.zeros(0, np.int64)
  known = fleet.Known(np.array([0]), np.array([0]), np.array([t]),
                      np.array([0]), np.array([1]), np.array([t - 5 * M]),
                      empty, empty, supply.Recent(np.zeros(3), np.zeros(3)))
  ask = (t, np.array([0]), np.array([0]), np.array([1.0, 0, 0]), known)
  idle_now = fleet.following(geo, forecast_at, 900)
  forecast = fleet.following(geo, forecast_at, 900,
                             rates=rates)
  assert CELLS[idle_now(*ask)].tolist() == [2]
  assert CELLS[forecast(*ask)].tolist() == [3]


def test_the_exact_trip_ends_reference_sees_a_late_trip_as_late():
  """The same taxi and forecast as above, but the trip from 1 to 2 that
  began five minutes ago truly takes 40 minutes, not the 20 its pair's
  mean says: it frees a taxi in 2 at 0:35, after the 20-minute window
  supply counts. recommend (forecast supply) still expects it there and
  goes to 3; the exact-trip-ends reference, told the true end, sees 2
  empty for as long as supply counts, and goes to 2. The fleet's view
  built with `reveal_ends` carries that end as it carries an empty
  drive's arrival; without it, only the trip's start and destination."""
  from taxi_demand import fleet  # noqa: PLC0415
  geo, t, forecast_at, rates = _line_and_forecast()
  # Taxi 0 idle in cell index 0 since t; taxi 1 on a trip from 0 to 1
  # (cell 2), picked up at t - 5 min, truly ending at t + 35 min.
  view = {}
  for reveal in (False, True):
    view[reveal] = fleet._known(
        t, 3, available=np.array([True, False]), cell=np.array([0, 1]),
        idle_since=np.array([t, t + 35 * M]),
        free_at=np.array([t, t + 35 * M]), trip_from=np.array([-1, 0]),
        trip_start=np.array([0, t - 5 * M]), ended=[], reveal_ends=reveal)
  assert view[False].trip_dropoff.tolist() == [1]
  assert view[False].trip_start.tolist() == [t - 5 * M]
  assert view[False].drive_until.tolist() == []        # its end is unknown
  assert view[True].trip_dropoff.tolist() == []
  assert view[True].drive_to.tolist() == [1]
  assert view[True].drive_until.tolist() == [t + 35 * M]
  forecast = fleet.following(geo, forecast_at, 900,
                             rates=rates)
  exact = fleet.following(geo, forecast_at, 900, rates=rates,
                          exact_trip_ends=True)
  ask = (t, np.array([0]), np.array([0]), np.array([1.0, 0, 0]))
  assert CELLS[forecast(*ask, view[False])].tolist() == [3]
  assert CELLS[exact(*ask, view[True])].tolist() == [2]
  with pytest.raises(ValueError, match="supply rates"):
    fleet.following(geo, forecast_at, 900,
                    exact_trip_ends=True)


def test_the_replay_scores_error_and_bias_by_hand(tmp_path):
  """Replayed on 08:30-09:00 in 30-minute slots (one tick, one slot at
  lead 0) with `_rates_by_hand`, point in time: cell 2's leave rate leans
  on the half hour before, 6 / (15 + 5 x 20) a minute, so C (idle since
  08:25) stays until 115 / 6 minutes of age: minutes 0-13, 14 of 30.
  Forecast [5.5, 14, 20] / 30 against the day's [0, 15, 30] / 30: errors
  +5.5, -1, -10 (/ 30). Idle now, [0, 1, 0]: errors 0, +15, -30 (/ 30).
  The bias tells an overshoot from noise, where the MAE cannot."""
  write_trips(tmp_path / "day.csv", DAY, [
      (t, s, e, at(e) - at(s), a, b) for t, s, e, a, b in SIX_TRIPS])
  cfg = sql.QueryConfig(slot_minutes=30)
  with Warehouse(tmp_path / "w.duckdb") as w:
    w.load([tmp_path / "day.csv"])
    got = supply.replay(w, cfg, CELLS, _rates_by_hand(), at("08:30"),
                        at("09:00"))
  assert list(got) == [0]
  assert got[0] == pytest.approx({
      "forecast": 16.5 / 90, "forecast_bias": -5.5 / 90,
      "naive": 45 / 90, "naive_bias": -15 / 90, "cells_x_slots": 3})


def test_learned_arrivals_follow_todays_demand_level(tmp_path):
  """The hour before 08:30 saw the city's pickups at twice history's rate
  (with 200 pseudo-pickups each): the arrivals from trips not yet started
  double; the taxis idle or under way do not change."""
  write_trips(tmp_path / "day.csv", DAY, [
      (t, s, e, at(e) - at(s), a, b) for t, s, e, a, b in SIX_TRIPS])
  with Warehouse(tmp_path / "w.duckdb") as w:
    w.load([tmp_path / "day.csv"])
    known = supply.state_at(w, sql.QueryConfig(), CELLS, at("08:30"))
  # Known at 08:30, in the hour up to it: A 08:00, C 08:05, B 08:10 and
  # A's 08:30 pickups.
  assert known.recent_pickups == 4
  history = np.zeros((3, supply.HOURS_PER_WEEK))
  history[0] = 6 / 3600                      # 6 in the hour before
  rates = dataclasses.replace(_rates_by_hand(), pickups_per_s=history)
  state = dataclasses.replace(_state(tmp_path),
                              recent_pickups=2 * 206 - 200)
  assert supply.demand_level(rates, state) == pytest.approx(2.0)
  starts = np.array([at("08:30"), at("09:00")])
  got = supply.forecast(rates, state, starts, 30 * M)
  assert got == pytest.approx(np.array([[11 / 30, 5.1], [0.5, 0.0],
                                        [20 / 30, 2.0]]))
  # Rates recorded before pickups were learned: today's level unknown,
  # the arrivals as history has them (the flow balance by hand above).
  assert supply.forecast(_rates_by_hand(), state, starts, 30 * M) == \
      pytest.approx(np.array([[5.5 / 30, 2.55], [0.5, 0.0], [20 / 30, 2.0]]))


def test_rates_recorded_before_pickups_were_learned_still_serve(tmp_path):
  """A version pushed with a rates file that has no pickups_per_s loads,
  round trips without it, and forecasts without the demand level."""
  from taxi_demand import supply_rates  # noqa: PLC0415
  rates = supply.Rates.fit(_trips(), 3, at("00:00"), at("24:00"))
  now = supply_rates.RecordedRates(CELLS, rates, at("00:00"), at("24:00"))
  assert supply_rates.RecordedRates.from_bytes(now.to_bytes()) \
      .rates.pickups_per_s == pytest.approx(rates.pickups_per_s)
  old = dataclasses.replace(now, rates=dataclasses.replace(
      rates, pickups_per_s=None))
  loaded = supply_rates.RecordedRates.from_bytes(old.to_bytes())
  assert loaded.rates.pickups_per_s is None
  served = loaded.for_cells(CELLS)
  state = dataclasses.replace(_state(tmp_path), recent_pickups=50.0)
  assert supply.demand_level(served, state) == 1.0
  assert supply.forecast(served, state, [at("08:30")], 30 * M).shape == \
      (3, 1)


def _many_trips(count: int, seed: int = 0) -> supply.TaxiTrips:
  """`count` trips of 40 taxis over four weeks, random cells and lengths."""
  rng = np.random.default_rng(seed)
  taxi = rng.integers(0, 40, count)
  start = BEGIN + rng.integers(0, 28 * 24 * 3600, count)
  return supply.TaxiTrips.of(
      CELLS, [f"T{t}" for t in taxi], start,
      start + rng.lognormal(6.5, 0.6, count).astype(np.int64),
      rng.integers(1, 4, count), rng.integers(1, 4, count))


def test_recorded_rates_do_not_grow_with_the_windows_trips():
  """A pushed version's rates hold each distribution as a bounded set of
  points with their CDF, not one value per spell and trip of the window:
  ten times the trips, about the same file; the CDFs as the window's
  within 1 / DISTRIBUTION_POINTS, exact at each point; a few trips' are
  kept whole."""
  from taxi_demand import supply_rates  # noqa: PLC0415
  sizes = {}
  for count in (20_000, 200_000):
    trips = _many_trips(count)
    rates = supply.Rates.fit(trips, 3, BEGIN, BEGIN + 28 * 24 * 3600)
    sizes[count] = len(supply_rates.RecordedRates(
        CELLS, rates, BEGIN, BEGIN + 28 * 24 * 3600).to_bytes())
  # Every value would be ten times the file (the points fill in toward
  # their bound, then stop).
  assert sizes[200_000] < 2 * sizes[20_000], sizes
  bound = supply.DISTRIBUTION_POINTS + 2 * supply.TAIL_POINTS
  for name in ("spell_ratios", "trip_ratios", "trip_seconds"):
    assert len(getattr(rates, name)) <= bound, name
  # The trip seconds' CDF against every trip's (one pair of cells per trip).
  span = trips.dropoff_at - trips.pickup_at
  every = np.sort(span[(trips.pickup >= 0) & (trips.dropoff >= 0)])
  x = np.unique(np.r_[every, rates.trip_seconds])
  want = np.searchsorted(every, x, side="right") / len(every)
  got = supply._cdf(rates.trip_seconds, rates.trip_seconds_cdf, x)
  assert np.abs(got - want).max() <= 1 / supply.DISTRIBUTION_POINTS
  points = np.searchsorted(x, rates.trip_seconds)
  np.testing.assert_array_equal(got[points], want[points])
  # A day's few spells and trips: every value, equally weighted, as before.
  day = supply.Rates.fit(_trips(), 3, at("00:00"), at("24:00"))
  assert day.trip_seconds.tolist() == [1200.0] * 4 + [1800.0] * 2
  assert day.trip_seconds_cdf is None


def test_trips_read_in_any_order_fit_the_same_rates(tmp_path):
  """The warehouse returns a window's trips unsorted (sorting millions by
  taxi id cost the Pusher seconds): `from_table` orders them itself, the
  same whatever order they come in, ties on taxi and times included."""
  import pyarrow as pa  # noqa: PLC0415
  # B's two trips start and end together, to different cells: which
  # comes last decides which cell gets its last spell.
  rows = [("A", at("08:00"), at("08:20"), 1, 2),
          ("B", at("08:10"), at("08:40"), 1, 3),
          ("B", at("08:10"), at("08:40"), 1, 2),
          ("A", at("08:30"), None, 2, None)]
  names = ("taxi_id", "pickup_at", "dropoff_at", "pickup_cell",
           "dropoff_cell")
  found = []
  for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 3, 0, 1]):
    table = pa.table({name: [rows[i][k] for i in order]
                      for k, name in enumerate(names)},
                     schema=pa.schema([("taxi_id", pa.string())] + [
                         (name, pa.int64()) for name in names[1:]]))
    found.append(supply.TaxiTrips.from_table(CELLS, table))
  for trips in found[1:]:
    for field in dataclasses.fields(trips):
      np.testing.assert_array_equal(getattr(trips, field.name),
                                    getattr(found[0], field.name))
  # As the query once sorted them: the lower dropoff cell last.
  assert found[0].dropoff.tolist() == [1, -1, 1, 2]


@pytest.mark.parametrize("taxis, step", [(40, 7), (3, 2**56)])
def test_trips_are_ordered_as_the_full_sort_orders_them(taxis, step):
  """The window's trips are sorted by (taxi, pickup) packed into one key,
  and only the rows tied on it by the other keys: the same order as the
  six-key sort, ties of every depth included; a pickup range too wide to
  pack (the second case) falls back to that sort."""
  rng = np.random.default_rng(3)
  n = 5000
  taxi = rng.integers(0, taxis, n)
  at_ = rng.integers(0, 60, n) * step
  off = at_ + rng.integers(0, 3, n)
  ended = rng.random(n) < 0.9
  pickup = rng.integers(-1, 3, n)
  dropoff = rng.integers(-1, 3, n)
  ties = (off, ended, pickup, dropoff)
  order = supply._trip_order(taxi, at_, ties)
  expected = np.lexsort((dropoff, pickup, ended, off, at_, taxi))
  assert sorted(order.tolist()) == list(range(n))
  for key in (taxi, at_) + ties:
    np.testing.assert_array_equal(key[order], key[expected])
