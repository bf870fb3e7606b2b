"""A fleet simulation to measure guidance: a day of passengers, N taxis, a
policy for where idle taxis wait.

Minute by minute over one day:
* passengers appear at their trip's pickup time in its pickup cell and wait
  there up to `wait_limit_s`, then are lost;
* a waiting passenger takes an idle taxi in the same cell (the one idle
  longest); the taxi is busy for the trip's seconds and becomes idle in the
  dropoff cell;
* a taxi that has just become idle, or has waited `redecide_s` without a
  passenger, asks its policy where to wait; driving there takes the
  geometry's minutes, empty and unable to pick up.

Policies (`Policy`): stay where the last passenger left; go to the
historically busiest cell nearby (`hotspot`); follow `guidance` on a
forecast (`recommend` on the model's forecasts as served, sharing each
cell with the taxis idle there now and those the supply forecast expects
to become idle there soon, `recommend_idle_now` with those idle now only;
`greedy_on_true_intensity`, the same greedy placement on the simulator's
true intensity: not an upper bound, since the placement is greedy and the
passengers still arrive at random; `taxi_demand.fleet_bound` computes one).

The supply forecast (`taxi_demand.supply`) sees the fleet as a dispatcher
would: the taxis idle now, each trip under way with its pickup, destination
and start (never when it will really end), and each taxi driving empty to
the cell it was sent to, with its arrival.

Deterministic: the only random draw is where the taxis start, from `seed`.
No TensorFlow: forecasts arrive as arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from taxi_demand import guidance
from taxi_demand import spans
from taxi_demand import supply
from taxi_demand.errors import CannotMeasure
from taxi_demand.errors import TaxiDemandError

STEP_S = 60
DEFAULT_WAIT_LIMIT_S = 600      # a street hail gives up after ~10 minutes
DEFAULT_REDECIDE_S = 900
# DiDi reports its drivers empty about half of their online time; the fleet
# is sized so that taxis that stay put are (calibrate_fleet).
TARGET_EMPTY_SHARE = 0.5
HOTSPOT_NEARBY_MINUTES = 15.0
# Following guidance on the simulator's true intensity. Once called "the
# oracle"; it is a greedy placement on the mean, not the most a fleet can do.
GREEDY_ON_TRUTH = "greedy_on_true_intensity"
# Following recommend with only the taxis idle now as each cell's supply.
RECOMMEND_IDLE_NOW = "recommend_idle_now"
# recommend told every trip under way's true end: what knowing those taxis'
# arrivals exactly is worth to its rule (a reference, not what a dispatcher
# can know; trips not yet started stay expected, as in recommend).
RECOMMEND_EXACT_ENDS = "recommend_exact_trip_ends"


@dataclasses.dataclass(frozen=True)
class Passengers:
  """One day's trip requests, sorted by pickup time."""
  pickup_at: np.ndarray     # epoch seconds
  pickup: np.ndarray        # geometry cell index
  dropoff: np.ndarray       # geometry cell index
  seconds: np.ndarray       # trip duration

  @classmethod
  def of(cls, geometry: guidance.Geometry, pickup_at, pickup_cell,
         dropoff_cell, seconds) -> "Passengers":
    """From cell ids; trips from or to a cell the geometry lacks are left
    out (they cannot be reached).

    Sorted on every column, not on the pickup time alone: trips that start
    in the same second come in whatever order the warehouse's threads give
    them, and who is served first must not depend on that.
    """
    pickup_cell = np.asarray(pickup_cell, np.int64)
    dropoff_cell = np.asarray(dropoff_cell, np.int64)
    keep = (np.isin(pickup_cell, geometry.cells) &
            np.isin(dropoff_cell, geometry.cells))
    at = np.asarray(pickup_at, np.int64)[keep]
    pickup = np.searchsorted(geometry.cells, pickup_cell[keep])
    dropoff = np.searchsorted(geometry.cells, dropoff_cell[keep])
    seconds = np.maximum(np.asarray(seconds, np.int64)[keep], 60)
    order = np.lexsort((seconds, dropoff, pickup, at))
    return cls(at[order], pickup[order], dropoff[order], seconds[order])

  def __len__(self) -> int:
    return len(self.pickup_at)


@dataclasses.dataclass(frozen=True)
class Known:
  """The fleet at a minute as a dispatcher knows it (cell indices): the
  idle taxis and since when, the trips under way, the empty drives to a
  cell with their arrival, and the idle spells of the half hour before."""
  idle_taxi: np.ndarray
  idle_cell: np.ndarray
  idle_since: np.ndarray
  trip_pickup: np.ndarray
  trip_dropoff: np.ndarray
  trip_start: np.ndarray
  drive_to: np.ndarray
  drive_until: np.ndarray
  recent: supply.Recent


# A policy: (minute's epoch, indices of the taxis deciding, their cells,
# idle taxis per cell, what is known of the fleet) -> the cell index each
# should wait in.
Policy = Callable[[int, np.ndarray, np.ndarray, np.ndarray, Known],
                  np.ndarray]


# Set on the stay policy: `evaluate` reuses the stay run that sized the
# fleet instead of simulating the same day again.
_STAYS = "stays"


# Set on a policy that decides without `known`: `simulate` then skips
# building what the dispatcher knows of the fleet every minute (most of a
# stay run's time, and the GuidanceGate sizes its fleet by bisecting on
# stay runs).
_IGNORES_KNOWN = "ignores_known"


# Set on a reference policy that is told when and where every trip under way
# truly ends (`_known(reveal_ends=True)`), where a dispatcher knows only
# each trip's start and destination.
_SEES_TRIP_ENDS = "sees_trip_ends"


def _ignoring_known(policy: Policy) -> Policy:
  setattr(policy, _IGNORES_KNOWN, True)
  return policy


def stay() -> Policy:
  def policy(at, taxis, cells, idle, known):
    del at, taxis, idle, known
    return cells
  setattr(policy, _STAYS, True)
  return _ignoring_known(policy)


def hotspot(geometry: guidance.Geometry, busiest_by_hour: np.ndarray,
            nearby_minutes: float = HOTSPOT_NEARBY_MINUTES) -> Policy:
  """Go to the cell within `nearby_minutes` with the most pickups in this
  hour historically (`busiest_by_hour`: (24, n) mean pickups per hour of
  day, from days before the simulated one). Blind to other taxis."""
  near = geometry.minutes <= nearby_minutes

  def policy(at, taxis, cells, idle, known):
    del taxis, idle, known
    hour = (int(at) // 3600) % 24
    value = np.where(near[cells], busiest_by_hour[hour][None, :], -np.inf)
    return np.argmax(value, axis=1)
  return _ignoring_known(policy)


def following(geometry: guidance.Geometry,
              forecast_at: Callable[[int], tuple],
              slot_seconds: int,
              horizon_minutes: float = guidance.DEFAULT_HORIZON_MINUTES,
              rates: Optional[supply.Rates] = None,
              exact_trip_ends: bool = False) -> Policy:
  """Follow `guidance.recommend_all` on `forecast_at(epoch)` -> ((n, k)
  expected pickups, k slot starts): the model's forecasts as served at the
  newest tick, or the simulator's true intensity.

  Each cell's pickups are shared with the taxis idle there now, or with
  `rates` those and the taxis the supply forecast expects to become idle
  there soon (`supply.expected_there`). With `exact_trip_ends` as well,
  the supply forecast is told every trip's true end, as it is told an empty
  drive's arrival, instead of expecting it from the trip's start (a
  reference: what exact supply is worth to the rule).
  """
  if exact_trip_ends and rates is None:
    raise ValueError("exact_trip_ends needs the supply rates it refines")

  def policy(at, taxis, cells, idle, known):
    grid, starts = forecast_at(at)
    reach = guidance.reachable_pickups(grid, starts, slot_seconds, at,
                                       geometry.minutes, horizon_minutes)
    if rates is not None:
      idle = expected_supply(rates, at, taxis, cells, known)
    choices = guidance.recommend_all(geometry, reach, idle, cells)
    return np.searchsorted(geometry.cells, [c.to_cell for c in choices])
  # Sharing with the taxis idle now only, it never reads the dispatcher's
  # view: building it every minute was a third of such a run.
  if rates is None:
    return _ignoring_known(policy)
  setattr(policy, _SEES_TRIP_ENDS, exact_trip_ends)
  return policy


def expected_supply(rates: supply.Rates, at: int, taxis: np.ndarray,
                    cells: np.ndarray, known: Known) -> np.ndarray:
  """(n,): the taxis deciding (one each, where they are, as
  `guidance.recommend_all` counts them) plus the others the supply
  forecast expects there (`supply.expected_there`)."""
  n = rates.n
  others = ~np.isin(known.idle_taxi, taxis)
  state = supply.State(int(at), known.idle_cell[others],
                       known.idle_since[others], known.trip_pickup,
                       known.trip_dropoff, known.trip_start, known.drive_to,
                       known.drive_until, known.recent)
  return (np.bincount(cells, minlength=n).astype(float) +
          supply.expected_there(rates, state))


@dataclasses.dataclass
class Result:
  """What a fleet did in a day."""
  policy: str
  taxis: int
  passengers: int
  pickups: int
  unserved: int
  taxi_hours: float
  empty_minutes: float
  moves: int

  @property
  def pickups_per_taxi_hour(self) -> float:
    return self.pickups / self.taxi_hours if self.taxi_hours else 0.0

  @property
  def empty_minutes_per_pickup(self) -> float:
    return self.empty_minutes / self.pickups if self.pickups else float("inf")

  @property
  def empty_share(self) -> float:
    return self.empty_minutes / (self.taxi_hours * 60)

  def to_dict(self) -> Dict[str, Any]:
    return {"policy": self.policy, "taxis": self.taxis,
            "passengers": self.passengers, "pickups": self.pickups,
            "unserved": self.unserved,
            "pickups_per_taxi_hour": round(self.pickups_per_taxi_hour, 4),
            "empty_minutes_per_pickup": round(self.empty_minutes_per_pickup,
                                              3),
            "empty_share": round(self.empty_share, 4), "moves": self.moves}


def start_cells(passengers: Passengers, n_cells: int, taxis: int,
                seed: int) -> np.ndarray:
  """Where the taxis start: drawn in proportion to the day's pickups."""
  weight = np.bincount(passengers.pickup, minlength=n_cells) + 0.5
  rng = np.random.default_rng(seed)
  return rng.choice(n_cells, taxis, p=weight / weight.sum())


def simulate(geometry: guidance.Geometry, passengers: Passengers,
             taxis: int, policy: Policy, begin: int, end: int, *,
             name: str = "", seed: int = 0,
             wait_limit_s: int = DEFAULT_WAIT_LIMIT_S,
             redecide_s: int = DEFAULT_REDECIDE_S,
             start: Optional[np.ndarray] = None) -> Result:
  """Runs the fleet from `begin` to `end` (epoch seconds, whole minutes).

  The taxis start at `start` (cell indices), else drawn by `start_cells`.
  """
  if taxis < 1:
    raise TaxiDemandError(f"a fleet needs at least one taxi, got {taxis}")
  n = len(geometry.cells)
  cell = (np.array(start, np.int64) if start is not None
          else start_cells(passengers, n, taxis, seed))
  free_at = np.full(taxis, begin, np.int64)     # busy or driving until then
  # What a dispatcher knows of a busy taxi: the trip's pickup cell and
  # time (-1: driving empty, its arrival free_at is its own decision).
  trip_from = np.full(taxis, -1, np.int64)
  trip_start = np.zeros(taxis, np.int64)
  # Idle spells ended lately: (cell, since, until), for the supply forecast.
  ended: list = []
  blind = getattr(policy, _IGNORES_KNOWN, False)  # it never reads `known`
  reveal_ends = getattr(policy, _SEES_TRIP_ENDS, False)
  idle_since = np.full(taxis, begin, np.int64)
  decided_at = np.full(taxis, begin - redecide_s, np.int64)
  busy_s = 0
  pickups = moves = 0
  # Waiting passengers per cell: [(deadline, passenger index)], oldest first.
  waiting = [[] for _ in range(n)]
  p = 0
  for now in range(begin, end, STEP_S):
    while p < len(passengers) and passengers.pickup_at[p] < now + STEP_S:
      if passengers.pickup_at[p] >= begin:
        waiting[passengers.pickup[p]].append(
            (int(passengers.pickup_at[p]) + wait_limit_s, p))
      p += 1
    for queue in waiting:
      while queue and queue[0][0] < now:
        queue.pop(0)  # gave up: unserved
    available = free_at <= now
    # Match: each cell's waiting passengers take its idle taxis, the ones
    # idle longest first (ties in taxi order). The idle taxis are grouped
    # and ordered so once a minute, not cell by cell: a taxi matched below
    # leaves only its own cell's group, so the groups stay exact.
    idle_now = np.flatnonzero(available)
    idle_now = idle_now[np.lexsort((idle_since[idle_now], cell[idle_now]))]
    bounds = np.searchsorted(cell[idle_now], np.arange(n + 1))
    for c in range(n):
      queue = waiting[c]
      if not queue:
        continue
      here = idle_now[bounds[c]:bounds[c + 1]]
      for t in here[:len(queue)]:
        _, q = queue.pop(0)
        trip = int(passengers.seconds[q])
        picked_up = max(now, int(passengers.pickup_at[q]))
        ended.append((c, int(idle_since[t]), picked_up))
        free_at[t] = picked_up + trip
        idle_since[t] = picked_up + trip
        trip_from[t], trip_start[t] = c, picked_up
        decided_at[t] = begin - redecide_s     # decides again at dropoff
        cell[t] = passengers.dropoff[q]
        available[t] = False
        busy_s += min(trip, end - picked_up)
        pickups += 1
    # Decide: taxis just idle, or idle a while without a passenger.
    deciding = np.flatnonzero(available & (now - decided_at >= redecide_s))
    if len(deciding):
      idle = np.bincount(cell[available], minlength=n).astype(float)
      known = None
      if not blind:
        ended = [e for e in ended if e[2] >= now - supply.RECENT_SECONDS]
        known = _known(now, n, available, cell, idle_since, free_at,
                       trip_from, trip_start, ended, reveal_ends)
      go = np.asarray(policy(now, deciding, cell[deciding], idle, known),
                      np.int64)
      decided_at[deciding] = now
      moving = go != cell[deciding]
      for t, dest in zip(deciding[moving], go[moving]):
        travel = int(round(geometry.minutes[cell[t], dest] * 60))
        ended.append((int(cell[t]), int(idle_since[t]), now))
        free_at[t] = now + max(travel, STEP_S)
        idle_since[t] = free_at[t]
        trip_from[t] = -1
        cell[t] = dest
        moves += 1
  asked = int(np.sum((passengers.pickup_at >= begin) &
                     (passengers.pickup_at < end)))
  return Result(policy=name, taxis=taxis, passengers=asked, pickups=pickups,
                unserved=asked - pickups, taxi_hours=taxis * (end - begin) / 3600,
                empty_minutes=(taxis * (end - begin) - busy_s) / 60,
                moves=moves)


def _known(now: int, n: int, available: np.ndarray, cell: np.ndarray,
           idle_since: np.ndarray, free_at: np.ndarray,
           trip_from: np.ndarray, trip_start: np.ndarray,
           ended: list, reveal_ends: bool = False) -> Known:
  """The fleet as a dispatcher knows it: `free_at` only for the empty
  drives (the trips' ends are the future). With `reveal_ends`, every busy
  taxi's true end, trips' as well, as if each were an empty drive (for a
  reference policy only)."""
  busy = ~available
  trip = busy & (trip_from >= 0)
  if reveal_ends:
    trip[:] = False
  drive = busy & ~trip
  idle = np.flatnonzero(available)
  was = np.array(ended, np.int64).reshape(-1, 3)
  recent = supply.Recent.of(
      n, np.r_[was[:, 0], cell[idle]], np.r_[was[:, 1], idle_since[idle]],
      np.r_[was[:, 2], np.full(len(idle), now)],
      np.r_[np.zeros(len(was), bool), np.ones(len(idle), bool)], now)
  return Known(idle, cell[idle], idle_since[idle], trip_from[trip],
               cell[trip], trip_start[trip], cell[drive], free_at[drive],
               recent)


def calibrate_fleet(geometry: guidance.Geometry, passengers: Passengers,
                    begin: int, end: int, *, seed: int = 0,
                    target: float = TARGET_EMPTY_SHARE,
                    wait_limit_s: int = DEFAULT_WAIT_LIMIT_S,
                    progress: Optional[Callable[[str], None]] = None
                    ) -> tuple:
  """The fleet size whose taxis, staying put, are empty `target` of the
  time (bisection on the stay policy): (taxis, that Result)."""
  if not 0 < target < 1:
    raise TaxiDemandError(f"the empty share must be in (0, 1), got {target}")
  busy_h = float(np.sum(passengers.seconds[
      (passengers.pickup_at >= begin) & (passengers.pickup_at < end)])) / 3600
  hours = (end - begin) / 3600
  if busy_h == 0:
    raise CannotMeasure("no passengers in the day to size a fleet for")
  # Empty share grows with the fleet: bisect on it.
  low, high = 1, max(2, int(np.ceil(busy_h / hours / (1 - target) * 3)))
  best = None
  while high - low > max(1, low // 100):
    mid = (low + high) // 2
    result = simulate(geometry, passengers, mid, stay(), begin, end,
                      name="stay", seed=seed, wait_limit_s=wait_limit_s)
    if progress:
      progress(f"fleet: {mid} taxis empty {result.empty_share:.1%}")
    if result.empty_share < target:
      low = mid
    else:
      high, best = mid, result
  if best is None or best.taxis != high:
    best = simulate(geometry, passengers, high, stay(), begin, end,
                    name="stay", seed=seed, wait_limit_s=wait_limit_s)
  return high, best


def busiest_by_hour(geometry: guidance.Geometry, pickup_at: np.ndarray,
                    pickup_cell: np.ndarray, days: int) -> np.ndarray:
  """(24, n) mean pickups per hour of day per cell, over `days` days."""
  cells = np.asarray(pickup_cell, np.int64)
  known = np.isin(cells, geometry.cells)
  idx = np.searchsorted(geometry.cells, cells[known])
  hour = (np.asarray(pickup_at, np.int64)[known] // 3600) % 24
  out = np.zeros((24, len(geometry.cells)))
  np.add.at(out, (hour, idx), 1.0)
  return out / max(days, 1)


def summary(results: Sequence[Result]) -> Dict[str, Dict[str, float]]:
  return {r.policy: r.to_dict() for r in results}


# ---- a day of a warehouse ------------------------------------------------------


@dataclasses.dataclass
class Day:
  """What a fleet simulation of one day reads from a warehouse."""
  begin: int
  end: int
  geometry: guidance.Geometry
  passengers: Passengers
  busiest_by_hour: Optional[np.ndarray]  # (24, n), the days before
  truth: Optional[np.ndarray]     # (n, 96) intensity per quarter hour
  slot_seconds: int
  # The supply forecast's rates, from the days before (None: no trip
  # there carries a taxi_id, or not asked for).
  supply_rates: Optional[supply.Rates] = None


def load_day(warehouse, cfg, span: int,
             speed_kmh: float = guidance.DEFAULT_SPEED_KMH,
             history_days: int = 7,
             supply_days: int = supply.HISTORY_DAYS) -> Day:
  """Day `span`'s trips as requests, the cells' geometry and the hotspot
  history (the `history_days` before), the supply forecast's rates (the
  `supply_days` before), and the simulator's truth if any.

  `history_days=0` or `supply_days=0` skips reading that history (the
  GuidanceGate's fleets use neither): `busiest_by_hour` or
  `supply_rates` is then None.
  """
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  from taxi_demand.serving import recommend  # noqa: PLC0415
  begin, end = spans.start_of(span), spans.start_of(int(span) + 1)
  geometry = recommend.geometry_of(warehouse, cfg, begin, speed_kmh)
  with open_reader(warehouse) as wh:
    asked = wh.requests(cfg, begin, end)
    coverage = (wh.requests_coverage(cfg, begin, end)
                if asked.num_rows == 0 else None)
    before = (wh.requests(cfg, spans.start_of(int(span) - history_days),
                          begin) if history_days else None)
    truth = wh.truth(begin, end)
    rates = (supply.rates_before(wh, cfg, geometry.cells, begin, supply_days)
             if supply_days else None)
  if coverage is not None:
    raise CannotMeasure(no_requests_reason(coverage, span))
  col = lambda t, c: t.column(c).to_numpy()  # noqa: E731
  passengers = Passengers.of(geometry, col(asked, "pickup_at"),
                             col(asked, "pickup_cell"),
                             col(asked, "dropoff_cell"), col(asked, "seconds"))
  busiest = None if before is None else busiest_by_hour(
      geometry, col(before, "pickup_at"), col(before, "pickup_cell"),
      history_days)
  grid = None
  if truth.num_rows:
    grid = np.zeros((len(geometry.cells), 96))
    cells = col(truth, "community_area")
    known = np.isin(cells, geometry.cells)
    rows = np.searchsorted(geometry.cells, cells[known])
    quarter = (col(truth, "slot_start")[known] - begin) // 900
    grid[rows, quarter] = col(truth, "intensity")[known]
  return Day(begin, end, geometry, passengers, busiest, grid,
             cfg.slot_seconds, rates)


def no_requests_reason(coverage: Dict[str, int], span: int) -> str:
  """Why day `span` has no trip a simulated passenger could take, from
  Warehouse.requests_coverage: what the trips lack, most telling first."""
  from taxi_demand import spans  # noqa: PLC0415
  day = spans.day_of(span)
  trips = coverage["trips"]
  if trips == 0:
    return f"no trips on {day} to simulate a fleet on"
  for key, what in (("with_dropoff", "a dropoff area"),
                    ("with_pickup", "a pickup area"),
                    ("with_duration", "a duration")):
    if coverage[key] == 0:
      return f"none of the {trips} trips on {day} carries {what}"
  return (f"none of the {trips} trips on {day} carries a pickup area, a "
          "dropoff area and a duration together")


def model_forecasts(warehouse, cfg, day: Day,
                    score: Callable) -> Callable[[int], tuple]:
  """forecast_at(epoch) from a model: the training path's rows at every
  lead for the day's slots (what the 5-minute job serves at each tick, as
  `skew` checks), scored once by `score(table) -> predictions`."""
  return models_forecasts(warehouse, cfg, day, {None: score})[None]


def models_forecasts(warehouse, cfg, day: Day,
                     scores: Dict[Any, Callable]
                     ) -> Dict[Any, Callable[[int], tuple]]:
  """`model_forecasts` for each of `scores` ({key: score}), from one read
  of the day's rows (the longest query of a fleet comparison). Each tick's
  forecast is revised from the ticks before, as the job serves it
  (`revision`)."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  from taxi_demand.serving import revision  # noqa: PLC0415
  with open_reader(warehouse) as wh:
    rows = wh.every_lead_features(cfg, day.begin, day.end)
  return {key: _forecasts_of(rows, day,
                             revision.revise_every_lead(rows, score(rows)))
          for key, score in scores.items()}


def _forecasts_of(rows, day: Day, values: np.ndarray
                  ) -> Callable[[int], tuple]:
  """forecast_at(epoch) from every-lead `rows` and their `values`."""
  from taxi_demand import features  # noqa: PLC0415
  issued = rows.column(features.ISSUED_AT).to_numpy()
  cells = rows.column(features.CELL).to_numpy()
  slots = rows.column(features.SLOT_START).to_numpy()
  order = np.argsort(issued, kind="stable")
  ticks, first = np.unique(issued[order], return_index=True)
  last = np.r_[first[1:], len(order)]
  where = {int(t): (int(a), int(b)) for t, a, b in zip(ticks, first, last)}
  cache: Dict[int, tuple] = {}

  def forecast_at(at):
    tick = int(at) - int(at) % 300
    if tick not in cache:
      a, b = where.get(tick, (0, 0))
      idx = order[a:b]
      cache[tick] = guidance.forecast_grid(cells[idx], slots[idx],
                                           values[idx], day.geometry)
    return cache[tick]
  return forecast_at


def truth_forecasts(day: Day, quarters: int = 5) -> Callable[[int], tuple]:
  """forecast_at(epoch) from the simulator's true intensity: the quarter
  hours from the current one on (for greedy_on_true_intensity)."""
  if day.truth is None:
    raise TaxiDemandError("no simulator truth in this warehouse: following "
                          "the true intensity needs a simulated city")

  def forecast_at(at):
    q = (int(at) - day.begin) // 900
    ks = np.arange(q, min(q + quarters, day.truth.shape[1]))
    return day.truth[:, ks], day.begin + ks * 900
  return forecast_at


def evaluate(day: Day, policies: Dict[str, Policy], *,
             taxis: Optional[int] = None, seed: int = 0
             ) -> tuple:
  """(fleet size, {policy: Result}). Without `taxis`, the fleet is sized
  so that taxis staying put are empty TARGET_EMPTY_SHARE of the time."""
  stayed = None
  if taxis is None:
    # Its last run is the stay policy's on this fleet: the same day, seed
    # and rules, so the same Result.
    taxis, stayed = calibrate_fleet(day.geometry, day.passengers, day.begin,
                                    day.end, seed=seed)
  results = {}
  for name, policy in policies.items():
    if stayed is not None and getattr(policy, _STAYS, False):
      results[name] = dataclasses.replace(stayed, policy=name)
    else:
      results[name] = simulate(day.geometry, day.passengers, taxis, policy,
                               day.begin, day.end, name=name, seed=seed)
  return taxis, results


def policies(day: Day, forecast_at: Optional[Callable] = None
             ) -> Dict[str, Policy]:
  """stay, hotspot, recommend and recommend_idle_now (if `forecast_at`;
  recommend shares each cell with the forecast supply where the day has
  supply rates, else with the idle taxis, as recommend_idle_now does),
  recommend_exact_trip_ends (with supply rates: recommend told every trip's
  true end) and greedy_on_true_intensity (if truth; recommend's rule on the
  truth)."""
  out = {"stay": stay(), "hotspot": hotspot(day.geometry, day.busiest_by_hour)}
  if forecast_at is not None:
    out["recommend"] = following(day.geometry, forecast_at, day.slot_seconds,
                                 rates=day.supply_rates)
    out[RECOMMEND_IDLE_NOW] = following(day.geometry, forecast_at,
                                        day.slot_seconds)
    if day.supply_rates is not None:
      out[RECOMMEND_EXACT_ENDS] = following(
          day.geometry, forecast_at, day.slot_seconds,
          rates=day.supply_rates, exact_trip_ends=True)
  if day.truth is not None:
    # The same greedy placement as recommend, supply rule included.
    out[GREEDY_ON_TRUTH] = following(day.geometry, truth_forecasts(day), 900,
                                     rates=day.supply_rates)
  return out
