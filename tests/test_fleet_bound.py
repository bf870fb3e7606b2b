"""The fleet's upper bound (taxi_demand.fleet_bound): pinned by hand on a
three-taxi, six-trip day, and never below what a simulated policy does."""

import numpy as np
import pytest

from taxi_demand import fleet
from taxi_demand import fleet_bound
from taxi_demand import guidance

# Three cells on a line, as in test_guidance: 10 minutes from 1 to 2 and
# from 2 to 3, 20 from 1 to 3.
CELLS = np.array([1, 2, 3])
MINUTES = np.array([[0, 10, 20], [10, 0, 10], [20, 10, 0]], float)
M = 60

# The day (minute of pickup, from, to, minutes of the trip):
SIX_TRIPS = [
    (0, 1, 2, 10),    # p0
    (10, 2, 3, 10),   # p1
    (0, 1, 3, 20),    # p2
    (0, 3, 1, 20),    # p3
    (5, 3, 2, 10),    # p4
    (5, 1, 2, 10),    # p5
]


def _day(trips=SIX_TRIPS):
  geo = guidance.Geometry(CELLS, MINUTES)
  at, pickup, dropoff, minutes = zip(*trips)
  return geo, fleet.Passengers.of(geo, np.array(at) * M, pickup, dropoff,
                                  np.array(minutes) * M)


def _bound(start_cells, wait_limit_s=600, **kwargs):
  geo, passengers = _day()
  start = np.searchsorted(CELLS, start_cells)
  return fleet_bound.upper_bound(geo, passengers, start, 0, 2 * 3600,
                                 wait_limit_s=wait_limit_s, **kwargs)


def test_three_taxis_six_trips_by_hand():
  """Taxis A and B start in cell 1, C in cell 3; passengers wait 10 min.

  At 0:00-0:05 five passengers ask: p0, p2, p5 in cell 1 and p3, p4 in
  cell 3. No taxi can take two of them:
  * after p0 (at 2, 0:10) a taxi reaches 1 or 3 at 0:20: p5 and p4 gave
    up at 0:15. After p3 (at 1, 0:20) p5 has gone too: the wait limit
    breaks the chain p3 -> p5 by five minutes;
  * after p5 or p4 (at 2, 0:15), p2 (at 3, 0:20): nobody is left there;
  * a taxi from cell 1 reaches cell 3 at 0:20, and from 3 reaches 1 at
    0:20: too late for any of the five.
  So three taxis take three of the five (fewer taxis than chains: a
  choice), at most two in cell 1 (two taxis there) and one in cell 3.
  p1 (at 2, 0:10-0:20) chains after p0 (at 2, 0:10), p4 or p5 (0:15).
  The bound is 4: A p0 then p1, B p2, C p3 (or p4).
  """
  bound = _bound([1, 1, 3])
  assert (bound.pickups, bound.passengers) == (4, 6)
  assert bound.linear_optimum == pytest.approx(4.0)
  assert bound.pickups_per_taxi_hour == pytest.approx(4 / 6)
  # Staying put does it too: A and B take p0 and p2, C p3; A at 2 then
  # takes p1 at 0:10.
  geo, passengers = _day()
  stayed = fleet.simulate(geo, passengers, 3, fleet.stay(), 0, 2 * 3600,
                          start=np.searchsorted(CELLS, [1, 1, 3]))
  assert stayed.pickups == 4
  assert bound.share(stayed) == pytest.approx(1.0)


def test_a_fourth_taxi_takes_the_passenger_left_to_choice():
  """A second taxi in cell 3 takes p4 as well (5); p5 still has no taxi
  in cell 1 by 0:15."""
  assert _bound([1, 1, 3, 3]).pickups == 5


def test_a_longer_wait_chains_what_ten_minutes_cannot():
  """With 15 minutes' wait every trip is carried: A p0, p1 (at 3 at 0:20)
  then p4 (asked at 0:05, still there at 0:20); B p2; C p3, at 1 at 0:20,
  then p5 (asked at 0:05)."""
  assert _bound([1, 1, 3], wait_limit_s=900).pickups == 6


def test_drive_steps_are_the_simulations_rounded_then_shortest():
  # 1 -> 3 direct takes 40.4 minutes, via 2 only 20.2 + 10.2: 31 steps.
  geo = guidance.Geometry(CELLS, np.array([[0, 20.2, 40.4],
                                           [20.2, 0, 10.2],
                                           [40.4, 10.2, 0]]))
  steps = fleet_bound.drive_steps(geo)
  assert steps[0, 1] == 21 and steps[1, 2] == 11   # up to whole steps
  assert steps[0, 2] == 32 and steps[2, 0] == 32
  unreachable = guidance.Geometry(CELLS[:2], np.array([[0, np.inf],
                                                        [np.inf, 0]]))
  assert fleet_bound.drive_steps(unreachable)[0, 1] == -1


def _random_day(seed, trips=160, hours=4):
  rng = np.random.default_rng(seed)
  geo = guidance.Geometry(CELLS, MINUTES)
  passengers = fleet.Passengers.of(
      geo, np.sort(rng.integers(0, hours * 3600, trips)),
      rng.choice(CELLS, trips, p=[0.6, 0.3, 0.1]), rng.choice(CELLS, trips),
      rng.integers(60, 40 * 60, trips))
  return geo, passengers


@pytest.mark.parametrize("seed, taxis, wait_limit_s", [
    (0, 4, 600), (1, 6, 300), (2, 3, 900)])
def test_no_policy_beats_the_bound(seed, taxis, wait_limit_s):
  """Every policy the simulation plays, on a small random day, from the
  same start: the bound (in one-hour blocks, and in one piece) is above."""
  geo, passengers = _random_day(seed)
  hours = 4
  end = hours * 3600
  start = fleet.start_cells(passengers, len(CELLS), taxis, seed)
  busiest = fleet.busiest_by_hour(geo, passengers.pickup_at,
                                  CELLS[passengers.pickup], 1)
  grid = np.random.default_rng(seed).uniform(0, 5, (len(CELLS), 4 * hours))
  starts = np.arange(4 * hours) * 900
  policies = {
      "stay": fleet.stay(),
      "hotspot": fleet.hotspot(geo, busiest),
      "following": fleet.following(geo, lambda at: (grid, starts), 900),
  }
  results = [fleet.simulate(geo, passengers, taxis, policy, 0, end,
                            name=name, start=start,
                            wait_limit_s=wait_limit_s)
             for name, policy in policies.items()]
  whole = fleet_bound.upper_bound(geo, passengers, start, 0, end,
                                  wait_limit_s=wait_limit_s,
                                  block_s=end)
  blocks = fleet_bound.upper_bound(geo, passengers, start, 0, end,
                                   wait_limit_s=wait_limit_s, block_s=3600)
  assert blocks.pickups >= whole.pickups       # blocks relax more
  best = max(r.pickups for r in results)
  assert whole.pickups >= best, [r.to_dict() for r in results]
  for r in results:
    assert 0 < whole.share(r) <= 1.0
