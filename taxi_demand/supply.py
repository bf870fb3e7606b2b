"""Supply forecast: the taxis expected idle per cell and coming slot, from
what is known at the issue time.

A per-cell flow balance with rates learned from history. Minute by minute
from the issue time t, the expected idle taxis in cell c are

    x_c(t)          = the taxis idle in c now
    x_c(u + 1 min)  = x_c(u) x exp(-leave_c x 60 s) + inflow_c(u)

where leave_c is the rate at which an idle taxi in c stops being idle
there (its next pickup, or its shift's end), and inflow_c(u) the taxis
expected to become idle in c during minute u:

* each trip under way at t whose destination is c (`sql.taxis_at_bigquery`:
  a feed that logs trips at their start carries it): the chance it ends in
  minute u given that it had not ended at t, from its pickup and dropoff
  cells' mean trip time and the spread of trip times around such means, both
  from history. Never its recorded end: that lies after t;
* trips not started at t: c's dropoffs per second at u's hour of the week
  (history) x the chance a trip started after t has ended by u (history's
  trip times). Under the arrival rule a trip not yet known is one of these.

A slot's forecast is the mean of x over its minutes: taxi-minutes idle in
the cell over slot minutes, as `actual` measures it from the day's trips
afterwards. A taxi is idle in the dropoff cell of its trip from the dropoff
until its next pickup, for at most `sql.MAX_IDLE_SECONDS` (the warehouse's
`idle_at`).

No TensorFlow, no warehouse: trips and states as arrays in, numpy out;
`taxi_demand.serving.recommend` and `taxi_demand.fleet` read them.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np

from taxi_demand.data.sql import MAX_IDLE_SECONDS

MINUTE = 60
HOURS_PER_WEEK = 168
# Pseudo-observations pulling a cell's rates toward the city's: a cell seen
# idle a few times must not get a leave rate of zero or infinity.
PRIOR_SPELLS = 5.0
PRIOR_TRIPS = 3.0
# One pseudo-week of the hour of day's rate behind each hour of the week:
# a week or two of history has one or two samples per hour of the week.
PRIOR_WEEKS = 1.0


@dataclasses.dataclass(frozen=True)
class TaxiTrips:
  """Trips of taxis with an id, each taxi's in pickup order; cells are
  indices into the caller's sorted cell ids (-1: unknown or not a cell)."""
  taxi: np.ndarray       # int codes
  pickup_at: np.ndarray  # epoch seconds
  dropoff_at: np.ndarray
  pickup: np.ndarray
  dropoff: np.ndarray

  @classmethod
  def of(cls, cells: np.ndarray, taxi_ids: Sequence, pickup_at, dropoff_at,
         pickup_cell, dropoff_cell) -> "TaxiTrips":
    """From taxi ids and cell ids (None: unknown), sorted by taxi, then
    pickup time."""
    _, taxi = np.unique(np.asarray(taxi_ids, object).astype(str),
                        return_inverse=True)
    at = np.asarray(pickup_at, np.int64)
    off = np.asarray(dropoff_at, float)
    off = np.where(np.isfinite(off), off, at).astype(np.int64)
    order = np.lexsort((off, at, taxi))
    return cls(taxi[order], at[order], off[order],
               cell_index(cells, pickup_cell)[order],
               cell_index(cells, dropoff_cell)[order])

  @classmethod
  def from_table(cls, cells: np.ndarray, table) -> "TaxiTrips":
    """From a `Reader.taxi_trips` Arrow table."""
    col = table.column
    return cls.of(cells, col("taxi_id").to_pylist(),
                  col("pickup_at").to_numpy(),
                  col("dropoff_at").to_numpy(zero_copy_only=False),
                  col("pickup_cell").to_pylist(),
                  col("dropoff_cell").to_pylist())

  def __len__(self) -> int:
    return len(self.taxi)


def cell_index(cells: np.ndarray, values) -> np.ndarray:
  """Indices of `values` (cell ids, None for unknown) in sorted `cells`;
  -1 where a value is unknown or not among them."""
  raw = np.array([-1 if v is None else v for v in values], np.int64)
  if len(cells) == 0:
    return np.full(len(raw), -1, np.int64)
  idx = np.clip(np.searchsorted(cells, raw), 0, len(cells) - 1)
  return np.where(np.asarray(cells)[idx] == raw, idx, -1)


@dataclasses.dataclass(frozen=True)
class Spells:
  """Idle spells: a taxi idle in `cell` over [begin, end)."""
  cell: np.ndarray
  begin: np.ndarray
  end: np.ndarray


def idle_spells(trips: TaxiTrips, until: Optional[int] = None,
                max_idle_s: int = MAX_IDLE_SECONDS) -> Spells:
  """Each dropoff in a known cell to the taxi's next pickup, at most
  `max_idle_s`. A taxi's last trip gives a full `max_idle_s` spell if that
  ends by `until` (else it is cut off there: not seen to its end)."""
  last = np.r_[trips.taxi[1:] != trips.taxi[:-1], True]
  following = np.r_[trips.pickup_at[1:], 0]
  begin = trips.dropoff_at
  end = np.where(last, begin + max_idle_s,
                 np.minimum(following, begin + max_idle_s))
  if until is not None:
    end = np.minimum(end, until)
  keep = (trips.dropoff >= 0) & (end > begin)
  return Spells(trips.dropoff[keep], begin[keep], end[keep])


def _hour_of_week(epoch) -> np.ndarray:
  return (np.asarray(epoch, np.int64) // 3600) % HOURS_PER_WEEK


@dataclasses.dataclass(frozen=True)
class Rates:
  """What the flow balance learns from history, per cell (index)."""
  leave_per_s: np.ndarray        # (n,) 1 / mean idle spell
  trip_mean_s: np.ndarray        # (n, n) mean trip seconds, pickup x dropoff
  trip_ratios: np.ndarray        # sorted trip seconds / their pair's mean
  trip_seconds: np.ndarray       # sorted trip seconds
  dropoffs_per_s: np.ndarray     # (n, 168) by hour of the week

  @property
  def n(self) -> int:
    return len(self.leave_per_s)

  @classmethod
  def fit(cls, trips: TaxiTrips, n: int, begin: int, end: int,
          max_idle_s: int = MAX_IDLE_SECONDS) -> "Rates":
    """Rates from the trips of [begin, end) (epoch seconds, whole hours)
    over `n` cells."""
    spells = idle_spells(trips, until=end, max_idle_s=max_idle_s)
    count = np.bincount(spells.cell, minlength=n).astype(float)
    seconds = np.bincount(spells.cell, spells.end - spells.begin,
                          minlength=n)
    city = seconds.sum() / count.sum() if count.sum() else max_idle_s / 2
    leave = (count + PRIOR_SPELLS) / (seconds + PRIOR_SPELLS * city)

    span = trips.dropoff_at - trips.pickup_at
    ok = (trips.pickup >= 0) & (trips.dropoff >= 0) & (span > 0)
    pair = trips.pickup[ok] * n + trips.dropoff[ok]
    total = np.bincount(pair, span[ok], minlength=n * n).reshape(n, n)
    many = np.bincount(pair, minlength=n * n).reshape(n, n).astype(float)
    typical = float(np.mean(span[ok])) if ok.any() else 900.0
    mean = (total + PRIOR_TRIPS * typical) / (many + PRIOR_TRIPS)
    ratios = span[ok] / mean[trips.pickup[ok], trips.dropoff[ok]]

    hours = np.arange(begin // 3600, -(-end // 3600))
    seen_week = np.bincount(hours % HOURS_PER_WEEK,
                            minlength=HOURS_PER_WEEK).astype(float)
    seen_day = seen_week.reshape(7, 24).sum(axis=0)
    off = (trips.dropoff >= 0) & (trips.dropoff_at >= begin) & \
        (trips.dropoff_at < end)
    how = _hour_of_week(trips.dropoff_at[off])
    by_week = np.zeros((n, HOURS_PER_WEEK))
    np.add.at(by_week, (trips.dropoff[off], how), 1.0)
    by_day = by_week.reshape(n, 7, 24).sum(axis=1)
    per_hour_of_day = by_day / np.maximum(seen_day, 1.0)        # (n, 24)
    prior = np.tile(per_hour_of_day, 7)                          # (n, 168)
    per_hour = (by_week + PRIOR_WEEKS * prior) / (seen_week + PRIOR_WEEKS)
    return cls(leave, mean,
               np.sort(ratios) if len(ratios) else np.ones(1),
               np.sort(span[ok]).astype(float) if ok.any()
               else np.array([typical]),
               per_hour / 3600.0)


@dataclasses.dataclass(frozen=True)
class State:
  """What is known of the fleet at `at`; cells are indices.

  Attributes:
    at: the issue time, epoch seconds.
    idle: (n,) taxis idle in each cell now.
    trip_pickup, trip_dropoff, trip_start: the trips under way whose
      destination is known (pickup -1: unknown).
    arrive_cell, arrive_at: taxis known to become idle at a known time
      (driving empty to a cell they were sent to).
  """
  at: int
  idle: np.ndarray
  trip_pickup: np.ndarray
  trip_dropoff: np.ndarray
  trip_start: np.ndarray
  arrive_cell: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))
  arrive_at: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))

  @classmethod
  def from_taxis(cls, cells: np.ndarray, table, at: int,
                 leave_out: Sequence[str] = ()) -> "State":
    """From a `Reader.taxis_at` table (idle_start NULL: under way),
    without the taxis in `leave_out`."""
    ids = np.asarray(table.column("taxi_id").to_pylist(), object)
    keep = ~np.isin(ids.astype(str), np.asarray(list(leave_out), str))
    cell = cell_index(cells, table.column("cell").to_pylist())
    idle = np.array([v is not None for v in
                     table.column("idle_start").to_pylist()], bool)
    now = keep & idle & (cell >= 0)
    going = keep & ~idle & (cell >= 0)
    return cls(int(at), np.bincount(cell[now], minlength=len(cells))
               .astype(float),
               cell_index(cells, table.column("pickup_cell").to_pylist())
               [going], cell[going],
               table.column("trip_start").to_numpy()[going].astype(np.int64))


def _cdf(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
  return np.searchsorted(sorted_values, x, side="right") / len(sorted_values)


def inflow(rates: Rates, state: State, minutes: int) -> np.ndarray:
  """(n, minutes): taxis expected to become idle in each cell in each
  minute from `state.at`."""
  n, at = rates.n, state.at
  out = np.zeros((n, minutes))
  # A taxi idle by the middle of a minute counts as idle in all of it.
  middle = at + MINUTE * np.arange(minutes) + MINUTE // 2
  if len(state.trip_dropoff):
    # Under way: P(ended by each minute's middle | had not ended at `at`).
    d = state.trip_dropoff
    p = state.trip_pickup
    mean = np.where(p >= 0, rates.trip_mean_s[np.maximum(p, 0), d],
                    rates.trip_mean_s[:, d].mean(axis=0))
    begun = _cdf(rates.trip_ratios, (at - state.trip_start) / mean)
    done = _cdf(rates.trip_ratios,
                (middle[None, :] - state.trip_start[:, None]) / mean[:, None])
    left = 1.0 - begun
    # Overdue beyond any trip seen: ending any moment now.
    ends = np.where(left[:, None] > 1e-9,
                    (done - begun[:, None]) / np.maximum(left, 1e-9)[:, None],
                    1.0)
    ends = np.clip(ends, 0.0, 1.0)
    np.add.at(out, d, np.diff(ends, axis=1, prepend=0.0))
  if len(state.arrive_cell):
    when = np.clip((state.arrive_at - at) // MINUTE, 0, None)
    soon = when < minutes
    np.add.at(out, (state.arrive_cell[soon], when[soon]), 1.0)
  # Not started yet: dropoffs at this hour of the week, of trips short
  # enough to have started after `at`.
  started_after = _cdf(rates.trip_seconds, middle - at)
  out += (rates.dropoffs_per_s[:, _hour_of_week(middle)] * MINUTE *
          started_after[None, :])
  return out


def path(rates: Rates, state: State, minutes: int) -> np.ndarray:
  """(n, minutes): expected idle taxis in each cell during each minute
  from `state.at` (the flow balance)."""
  keep = np.exp(-rates.leave_per_s * MINUTE)
  flow = inflow(rates, state, minutes)
  out = np.empty_like(flow)
  x = np.asarray(state.idle, float)
  for m in range(minutes):
    x = x * keep + flow[:, m]
    out[:, m] = x
  return out


def forecast(rates: Rates, state: State, starts: np.ndarray,
             slot_seconds: int) -> np.ndarray:
  """(n, k): mean idle taxis per cell over each slot starting at `starts`
  (at or after `state.at`)."""
  starts = np.asarray(starts, np.int64)
  if len(starts) == 0:
    return np.zeros((rates.n, 0))
  first = (starts - state.at) // MINUTE
  if (first < 0).any():
    raise ValueError("a supply forecast covers slots from its issue time on")
  width = slot_seconds // MINUTE
  x = path(rates, state, int(first.max()) + width)
  return np.stack([x[:, f:f + width].mean(axis=1) for f in first], axis=1)


def over(rates: Rates, state: State, seconds: float) -> np.ndarray:
  """(n,): mean idle taxis per cell over the `seconds` from `state.at`:
  the taxis a driver sent there shares its pickups with."""
  minutes = max(1, int(round(seconds / MINUTE)))
  return path(rates, state, minutes).mean(axis=1)


def actual(trips: TaxiTrips, n: int, starts: np.ndarray, slot_seconds: int,
           max_idle_s: int = MAX_IDLE_SECONDS) -> np.ndarray:
  """(n, k): mean idle taxis per cell over each slot, from the trips as
  they happened (read afterwards: what a forecast is scored on)."""
  spells = idle_spells(trips, max_idle_s=max_idle_s)
  out = np.zeros((n, len(starts)))
  for k, start in enumerate(np.asarray(starts, np.int64)):
    stop = start + slot_seconds
    overlap = np.clip(np.minimum(spells.end, stop) -
                      np.maximum(spells.begin, start), 0, None)
    out[:, k] = np.bincount(spells.cell, overlap, minlength=n) / slot_seconds
  return out


def score_by_lead(errors: Dict[int, list]) -> Dict[int, float]:
  """{lead minutes: mean absolute error} from {lead: [abs errors arrays]}."""
  return {lead: float(np.mean(np.concatenate(parts)))
          for lead, parts in sorted(errors.items())}
