"""Supply forecast: the taxis expected idle per cell and coming slot, from
what is known at the issue time.

A per-cell flow balance with rates learned from history. Minute by minute
from the issue time t, the expected idle taxis in cell c are

    x_c(t)          = the taxis idle in c now
    x_c(u + 1 min)  = x_c(u) x exp(-leave_c(u) x 60 s) + inflow_c(u)

where leave_c(u) is the rate at which an idle taxi in c stops being idle
there (its next pickup, or its shift's end) at u's hour of the week, and inflow_c(u) the taxis
expected to become idle in c during minute u:

* each trip under way at t whose destination is c (`sql.taxis_at_bigquery`:
  a feed that logs trips at their start carries it): the chance it ends in
  minute u given that it had not ended at t, from its pickup and dropoff
  cells' mean trip time and the spread of trip times around such means, both
  from history. Never its recorded end: that lies after t;
* trips not started at t: c's dropoffs per second at u's hour of the week
  (history) x the chance a trip started after t has ended by u (history's
  trip times) x today's demand level: the city's pickups known in the hour
  before t over history's for that hour of the week (a Sunday with a fifth
  fewer passengers than the Sundays before fills no cell with the taxis
  those would have brought). Under the arrival rule a trip not yet known
  is one of these.

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
import enum
import functools
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from taxi_demand.data.sql import MAX_IDLE_SECONDS

MINUTE = 60
HOURS_PER_WEEK = 168
# Pseudo-observations pulling a cell's rates toward the city's: a cell seen
# idle a few times must not get a leave rate of zero or infinity.
PRIOR_SPELLS = 5.0
PRIOR_TRIPS = 3.0
# How far back the spells that set a cell's current leave rate reach: waits
# swing within the hour (0.5 h beat 1 h and 2 h on a replay).
RECENT_SECONDS = 1800
# How soon a taxi must be expected idle in a cell to count as competing
# there for a driver sent now: 20 minutes beat 10 and 40 (and the mean idle
# over the hour) on the guidance bench's fleet.
GUIDANCE_WINDOW_SECONDS = 20 * 60
# Four weeks of history give each hour of the week four samples.
HISTORY_DAYS = 28
# One pseudo-week of the hour of day's rate behind each hour of the week:
# a week or two of history has one or two samples per hour of the week.
PRIOR_WEEKS = 1.0
# Today's demand level: the city's pickups in the hour before the issue
# time against history's, each with this many pseudo-pickups (a quiet
# hour's few trips must not halve the learned arrivals).
LEVEL_SECONDS = 3600
PRIOR_PICKUPS = 200.0
# The learned distributions (spell ratios, trip ratios, trip seconds) are
# read only as empirical CDFs (`_cdf`), so they are kept as the CDF at a
# bounded set of points (`distribution`), not one value per spell and trip
# of the window (56 days held 3.6 M values a distribution): this many
# evenly spaced quantiles (the CDF within 1 / DISTRIBUTION_POINTS between
# them) ...
DISTRIBUTION_POINTS = 4096
# ... and at each end this many more, geometric in the count of values
# beyond them (the last 250 or so exact, then under 0.5% apart up to 10^8
# values): a taxi idle for nearly the cap, or a trip long overdue, is
# weighed by a chance of lasting longer that is a ratio of two tail
# counts. On four weeks of the growth bench's city, a served forecast
# moved by at most 0.07 idle taxis (mean 0.001) from the one of every
# value; the file is 0.4 MB where it was 7.
TAIL_POINTS = 4096


class Basis(enum.Enum):
  """What `recommend` shares a cell's pickups with."""

  FORECAST = "forecast"    # idle now, and expected idle there soon
  IDLE_NOW = "idle-now"    # idle now only


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
    """From a `Reader.taxi_trips` Arrow table, in any row order (weeks of
    trips: read by column, not row by row).

    Sorted here as the query once sorted them (taxi_id, pickup, dropoff,
    NULL first, then pickup and dropoff cell), which the warehouse did
    slower, on strings: trips tied on taxi and times keep one order.
    """
    import pyarrow.compute as pc  # noqa: PLC0415
    col = table.column
    at = col("pickup_at").to_numpy()
    off = pc.coalesce(col("dropoff_at"), col("pickup_at")).to_numpy()
    taxi = _taxi_codes(col("taxi_id"))
    raw = {c: pc.fill_null(col(c), _NULL_FIRST).to_numpy()
           for c in ("pickup_cell", "dropoff_cell")}
    ended = col("dropoff_at").is_valid().to_numpy()
    order = _trip_order(taxi, at, (off, ended, raw["pickup_cell"],
                                   raw["dropoff_cell"]))
    return cls(taxi[order], at[order], off[order],
               cell_index(cells, raw["pickup_cell"][order]),
               cell_index(cells, raw["dropoff_cell"][order]))

  def __len__(self) -> int:
    return len(self.taxi)


# An unknown cell id sorts before every known one, as NULLs first did.
_NULL_FIRST = np.iinfo(np.int64).min


def _trip_order(taxi: np.ndarray, at: np.ndarray, ties: Sequence) -> np.ndarray:
  """The order of `np.lexsort(ties[::-1] + (at, taxi))`: by taxi code, then
  pickup time, then the `ties` keys in turn; rows equal in every key are
  the same trip's values, so their order among themselves does not show.

  One sort of (taxi, pickup) packed into an int64, then a lexsort of only
  the rows tied on it (a taxi picking up twice in one second: few): the
  six-key lexsort of the whole window was a third of the supply fit, and
  grew with the window (1.3 s for 3.6 M trips, 56 days of the growth
  bench's city).
  """
  taxi = np.asarray(taxi, np.int64)
  at = np.asarray(at, np.int64)
  if len(at) == 0:
    return np.zeros(0, np.int64)
  first = int(at.min())
  width = int(at.max()) - first + 1
  if int(taxi.max()) + 1 > np.iinfo(np.int64).max // width:
    return np.lexsort(tuple(ties)[::-1] + (at, taxi))   # cannot pack
  primary = taxi * width + (at - first)
  # Stable: the window's trips come back in runs already in order.
  order = np.argsort(primary, kind="stable")
  packed = primary[order]
  tied = np.r_[False, packed[1:] == packed[:-1]]
  tied[:-1] |= tied[1:]
  at_tie = np.flatnonzero(tied)
  if len(at_tie):
    # A tied run stays where the packed sort put it; within it, the rest.
    rows = order[at_tie]
    order[at_tie] = rows[np.lexsort(
        tuple(np.asarray(k)[rows] for k in ties[::-1]) + (primary[rows],))]
  return order


def _taxi_codes(taxi_ids) -> np.ndarray:
  """Int codes of an Arrow column of taxi ids, in the ids' sorted order."""
  import pyarrow.compute as pc  # noqa: PLC0415
  encoded = pc.dictionary_encode(taxi_ids).combine_chunks()
  names = encoded.dictionary.to_numpy(zero_copy_only=False).astype(str)
  rank = np.empty(len(names), np.int64)
  rank[np.argsort(names, kind="stable")] = np.arange(len(names))
  return rank[encoded.indices.to_numpy(zero_copy_only=False)]


def cell_index(cells: np.ndarray, values) -> np.ndarray:
  """Indices of `values` (cell ids, None or -1 for unknown) in sorted
  `cells`; -1 where a value is unknown or not among them."""
  raw = np.array([-1 if v is None else v for v in values], np.int64) \
      if not isinstance(values, np.ndarray) else values.astype(np.int64)
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
  leave_per_s: np.ndarray        # (n, 168) 1 / mean idle spell, by the
  #                                hour of the week it begins
  # The three distributions are sorted points, with their CDFs in the
  # `*_cdf` fields below (`distribution`).
  spell_ratios: np.ndarray       # idle spells x their leave rate
  trip_mean_s: np.ndarray        # (n, n) mean trip seconds, pickup x dropoff
  trip_ratios: np.ndarray        # trip seconds / their pair's mean
  trip_seconds: np.ndarray       # trip seconds
  dropoffs_per_s: np.ndarray     # (n, 168) by hour of the week
  # (n, 168) by hour of the week; None in rates recorded before it was
  # learned (their arrivals are not scaled to today's demand level).
  pickups_per_s: Optional[np.ndarray] = None
  # The fraction of the window's values at or below each point of the
  # distribution named; None where the points are every value, equally
  # weighted (a few days' values, or rates recorded before these fields).
  spell_ratios_cdf: Optional[np.ndarray] = None
  trip_ratios_cdf: Optional[np.ndarray] = None
  trip_seconds_cdf: Optional[np.ndarray] = None

  @property
  def n(self) -> int:
    return len(self.leave_per_s)

  @classmethod
  def fit(cls, trips: TaxiTrips, n: int, begin: int, end: int,
          max_idle_s: int = MAX_IDLE_SECONDS) -> "Rates":
    """Rates from the trips of [begin, end) (epoch seconds, whole hours)
    over `n` cells."""
    spells = idle_spells(trips, until=end, max_idle_s=max_idle_s)
    # By the hour of the week the spell begins: a taxi waits minutes at a
    # weekday's morning peak, most of an hour at night or on a Sunday
    # morning.
    at = (spells.cell, _hour_of_week(spells.begin))
    count = _by_cell_hour(at, n)
    seconds = _by_cell_hour(at, n, (spells.end - spells.begin).astype(float))
    overall = seconds.sum() / count.sum() if count.sum() else max_idle_s / 2
    city = np.where(count.sum(axis=0) > 0, seconds.sum(axis=0) /
                    np.maximum(count.sum(axis=0), 1.0), overall)
    leave = (count + PRIOR_SPELLS) / (seconds + PRIOR_SPELLS * city)
    span = trips.dropoff_at - trips.pickup_at
    ok = (trips.pickup >= 0) & (trips.dropoff >= 0) & (span > 0)
    pair = trips.pickup[ok] * n + trips.dropoff[ok]
    total = np.bincount(pair, span[ok], minlength=n * n).reshape(n, n)
    many = np.bincount(pair, minlength=n * n).reshape(n, n).astype(float)
    typical = float(np.mean(span[ok])) if ok.any() else 900.0
    mean = (total + PRIOR_TRIPS * typical) / (many + PRIOR_TRIPS)

    # How spells spread around their mean: many of a few minutes, some
    # the whole cap (a shift's end), so a taxi idle a while stays longer.
    # How trips spread around their pair's mean, and trip seconds. Each
    # is a sort of every spell or trip of the window, so they run on
    # threads (numpy sorts without the GIL): the other core's share of
    # the fit that grows with the window.
    spread, trip_ratios, trip_seconds = _distributions(
        ((spells.end - spells.begin) * leave[at], (np.ones(1), None)),
        (span[ok] / mean[trips.pickup[ok], trips.dropoff[ok]],
         (np.ones(1), None)),
        (span[ok].astype(float), (np.array([typical]), None)))
    return cls(leave, spread[0], mean, trip_ratios[0], trip_seconds[0],
               _per_second(trips.dropoff, trips.dropoff_at, n, begin, end),
               _per_second(trips.pickup, trips.pickup_at, n, begin, end),
               spell_ratios_cdf=spread[1], trip_ratios_cdf=trip_ratios[1],
               trip_seconds_cdf=trip_seconds[1])


def distribution(values: np.ndarray, points: int = DISTRIBUTION_POINTS,
                 tail: int = TAIL_POINTS
                 ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """(points, their CDF) of `values`' empirical distribution: every value
  sorted and None (equal weights) where there are few, else `points`
  evenly spaced quantiles and `tail` at each end geometric in the count
  of values beyond, each with the exact fraction of `values` at or below
  it. `_cdf` reads either; it is exact at each point.
  """
  ordered = np.sort(np.asarray(values))
  n = len(ordered)
  if n <= points + 2 * tail:
    return ordered, None
  beyond = np.unique(np.geomspace(1, n, tail).astype(np.int64))
  at = np.unique(np.r_[
      ((np.arange(points) + 0.5) * n / points).astype(np.int64),
      beyond - 1, n - beyond])
  picked = np.unique(ordered[at])   # ties: one point, its whole mass below
  return picked, np.searchsorted(ordered, picked, side="right") / n


def _distributions(*values_and_defaults) -> list:
  """`distribution` of each (values, default if there are none), on up to
  as many threads as there are cores."""
  from concurrent import futures  # noqa: PLC0415

  def one(pair):
    values, default = pair
    return distribution(values) if len(values) else default
  workers = min(len(values_and_defaults), os.cpu_count() or 1)
  if workers <= 1:
    return [one(pair) for pair in values_and_defaults]
  with futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(one, values_and_defaults))


def _by_cell_hour(at, n: int, weights=None) -> np.ndarray:
  """(n, 168): `weights` (default 1) summed by (cell index, hour of the
  week): a bincount, where `np.add.at` took seconds over weeks of trips."""
  flat = at[0] * HOURS_PER_WEEK + at[1]
  return np.bincount(flat, weights, minlength=n * HOURS_PER_WEEK).reshape(
      n, HOURS_PER_WEEK).astype(float)


def _per_second(cell: np.ndarray, when: np.ndarray, n: int, begin: int,
                end: int) -> np.ndarray:
  """(n, 168): events per second in each cell (index, -1: none) by the
  hour of the week, from those of [begin, end) (whole hours)."""
  hours = np.arange(begin // 3600, -(-end // 3600))
  seen_week = np.bincount(hours % HOURS_PER_WEEK,
                          minlength=HOURS_PER_WEEK).astype(float)
  seen_day = seen_week.reshape(7, 24).sum(axis=0)
  on = (cell >= 0) & (when >= begin) & (when < end)
  by_week = _by_cell_hour((cell[on], _hour_of_week(when[on])), n)
  by_day = by_week.reshape(n, 7, 24).sum(axis=1)
  per_hour_of_day = by_day / np.maximum(seen_day, 1.0)        # (n, 24)
  prior = np.tile(per_hour_of_day, 7)                          # (n, 168)
  per_hour = (by_week + PRIOR_WEEKS * prior) / (seen_week + PRIOR_WEEKS)
  return per_hour / 3600.0


@dataclasses.dataclass(frozen=True)
class State:
  """What is known of the fleet at `at`; cells are indices.

  Attributes:
    at: the issue time, epoch seconds.
    idle_cell, idle_since: the taxis idle now, and since when.
    trip_pickup, trip_dropoff, trip_start: the trips under way whose
      destination is known (pickup -1: unknown).
    arrive_cell, arrive_at: taxis known to become idle at a known time
      (driving empty to a cell they were sent to).
    recent: the spells of the hour before `at`, if known.
    recent_pickups: the city's pickups in the `LEVEL_SECONDS` up to `at`
      (known then), if known: today's demand level.
  """
  at: int
  idle_cell: np.ndarray
  idle_since: np.ndarray
  trip_pickup: np.ndarray
  trip_dropoff: np.ndarray
  trip_start: np.ndarray
  arrive_cell: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))
  arrive_at: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))
  recent: Optional["Recent"] = None
  recent_pickups: Optional[float] = None

  def idle(self, n: int) -> np.ndarray:
    """(n,) taxis idle now per cell: idle now, carried forward, is the
    naive supply forecast."""
    return np.bincount(self.idle_cell, minlength=n).astype(float)

  @classmethod
  def from_taxis(cls, cells: np.ndarray, table, at: int,
                 leave_out: Sequence[str] = ()) -> "State":
    """From a `Reader.taxis_at` table (idle_start NULL: under way),
    without the taxis in `leave_out`."""
    ids = np.asarray(table.column("taxi_id").to_pylist(), object)
    keep = ~np.isin(ids.astype(str), np.asarray(list(leave_out), str))
    cell = cell_index(cells, table.column("cell").to_pylist())
    since = np.array([-1 if v is None else v for v in
                      table.column("idle_start").to_pylist()], np.int64)
    now = keep & (since >= 0) & (cell >= 0)
    going = keep & (since < 0) & (cell >= 0)
    return cls(int(at), cell[now], since[now],
               cell_index(cells, table.column("pickup_cell").to_pylist())
               [going], cell[going],
               table.column("trip_start").to_numpy()[going].astype(np.int64))


@dataclasses.dataclass(frozen=True)
class Recent:
  """Idle spells in the `RECENT_SECONDS` before an issue time, per cell:
  how many ended (a pickup, or a move), and the idle seconds they and the
  spells still going spent there."""
  ended: np.ndarray
  seconds: np.ndarray

  @classmethod
  def of(cls, n: int, cell, begin, end, going, at: int,
         window: Optional[int] = None) -> "Recent":
    """From spells (cell index, begin, end, still going at `at`)."""
    window = RECENT_SECONDS if window is None else window
    cell = np.asarray(cell, np.int64)
    begin, end = np.asarray(begin, np.int64), np.asarray(end, np.int64)
    going = np.asarray(going, bool)
    stop = np.where(going, at, np.minimum(end, at))
    seconds = np.clip(stop - np.maximum(begin, at - window), 0, None)
    ended = ~going & (end >= at - window)
    return cls(np.bincount(cell[ended], minlength=n).astype(float),
               np.bincount(cell, seconds.astype(float), minlength=n))

  @classmethod
  def from_trips(cls, n: int, trips: TaxiTrips, at: int) -> "Recent":
    """From the trips known at `at` (`Reader.taxi_trips` with `known_by`):
    a dropoff after `at` is the future and is not read."""
    future = trips.dropoff_at > at
    seen = dataclasses.replace(
        trips, dropoff=np.where(future, -1, trips.dropoff),
        dropoff_at=np.where(future, at, trips.dropoff_at))
    # A pickup at `at` ends a spell; a spell reaching past `at` goes on.
    spells = idle_spells(seen, until=at + 1)
    return cls.of(n, spells.cell, spells.begin, spells.end,
                  spells.end > at, at)


def leave_now(rates: Rates, state: State) -> np.ndarray:
  """(n,) leave rate per cell at the issue time: the hour of the week's
  from history, pulled toward the hour before's where spells were seen
  (a cell's waits swing from seconds to an hour between days: a queue of
  taxis builds, or of passengers)."""
  history = rates.leave_per_s[:, int(_hour_of_week(state.at))]
  if state.recent is None:
    return history
  # A cell that never lets a taxi go (rate 0) weighs as infinitely long.
  prior = np.divide(PRIOR_SPELLS, history, out=np.full_like(history, np.inf),
                    where=history > 0)
  return (state.recent.ended + PRIOR_SPELLS) / (state.recent.seconds + prior)


@functools.lru_cache(maxsize=8)
def cached_rates(address: str, cfg, cells: tuple, day_begin: int
                 ) -> Optional[Rates]:
  """`rates_before` a day, read once per process: `recommend` asks again
  and again on one day, and history does not change under it."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  with open_reader(address) as reader:
    return rates_before(reader, cfg, np.asarray(cells, np.int64), day_begin)


def observed_from(reader, start: int) -> int:
  """`start`, or the warehouse's first day if later: hours before the
  first trip are not history (counted, they would dilute the learned
  dropoff rates with hours nobody saw)."""
  known = reader.span_range()
  return start if known is None else max(start, known[0] * 24 * 3600)


def rates_before(reader, cfg, cells: np.ndarray, begin: int,
                 days: int = HISTORY_DAYS) -> Optional[Rates]:
  """Rates from the trips of the `days` days before `begin` (epoch
  seconds) in a warehouse reader; None if none carries a taxi_id."""
  start = observed_from(reader, begin - days * 24 * 3600)
  table = reader.taxi_trips(cfg, start, begin)
  if table.num_rows == 0:
    return None
  return Rates.fit(TaxiTrips.from_table(cells, table), len(cells), start,
                   begin)


def demand_level(rates: Rates, state: State) -> float:
  """Today's demand over history's: the city's pickups in the
  `LEVEL_SECONDS` up to `state.at` against the hour of the week's learned
  rate over those seconds, both with `PRIOR_PICKUPS`; 1 where either is
  unknown."""
  if rates.pickups_per_s is None or state.recent_pickups is None:
    return 1.0
  minutes = state.at - LEVEL_SECONDS + MINUTE * np.arange(
      LEVEL_SECONDS // MINUTE) + MINUTE // 2
  expected = float(rates.pickups_per_s[:, _hour_of_week(minutes)].sum()
                   * MINUTE)
  return (state.recent_pickups + PRIOR_PICKUPS) / (expected + PRIOR_PICKUPS)


def _cdf(points: np.ndarray, cdf: Optional[np.ndarray],
         x: np.ndarray) -> np.ndarray:
  """P(value <= x) from a distribution's sorted points and their CDF
  (None: the points are every value, equally weighted)."""
  below = np.searchsorted(points, x, side="right")
  if cdf is None:
    return below / len(points)
  return np.r_[0.0, cdf][below]


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
    begun = _cdf(rates.trip_ratios, rates.trip_ratios_cdf,
                 (at - state.trip_start) / mean)
    done = _cdf(rates.trip_ratios, rates.trip_ratios_cdf,
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
  # enough to have started after `at`, at today's demand level.
  started_after = _cdf(rates.trip_seconds, rates.trip_seconds_cdf,
                       middle - at)
  out += (rates.dropoffs_per_s[:, _hour_of_week(middle)] * MINUTE *
          started_after[None, :] * demand_level(rates, state))
  return out


def _survival(rates: Rates, x) -> np.ndarray:
  """P(an idle spell x its leave rate > x)."""
  return 1.0 - _cdf(rates.spell_ratios, rates.spell_ratios_cdf, x)


def path(rates: Rates, state: State, minutes: int) -> np.ndarray:
  """(n, minutes): expected idle taxis in each cell during each minute
  from `state.at` (the flow balance).

  A spell in cell c lasts spell_ratios / leave_c(hour of the week of
  `state.at`): a taxi idle since a while ago is weighed by its chance of
  lasting that long more, one becoming idle by its chance from the start.
  """
  n = rates.n
  scale = leave_now(rates, state)
  lag = MINUTE * (np.arange(minutes) + 0.5)
  out = np.zeros((n, minutes))
  if len(state.idle_cell):
    c = state.idle_cell
    age = (state.at - state.idle_since).astype(float)
    was = _survival(rates, age * scale[c])
    will = _survival(rates,
                     (age[:, None] + lag[None, :]) * scale[c][:, None])
    np.add.at(out, c, np.where(was[:, None] > 0,
                               will / np.maximum(was, 1e-12)[:, None], 0.0))
  flow = inflow(rates, state, minutes)
  # Becoming idle in minute j, still idle in minute m >= j.
  kernel = _survival(rates,
                     MINUTE * np.arange(minutes)[None, :] * scale[:, None])
  for c in np.flatnonzero(flow.any(axis=1)):
    out[c] += np.convolve(flow[c], kernel[c])[:minutes]
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


def arriving(rates: Rates, state: State,
             seconds: int = GUIDANCE_WINDOW_SECONDS) -> np.ndarray:
  """(n,): the taxis expected to become idle in each cell within
  `seconds` (trips under way by their expected end, empty drives, learned
  arrivals)."""
  minutes = max(1, int(round(seconds / MINUTE)))
  return inflow(rates, state, minutes).sum(axis=1)


def expected_there(rates: Rates, state: State,
                   seconds: int = GUIDANCE_WINDOW_SECONDS) -> np.ndarray:
  """(n,): the taxis a driver sent to each cell shares its pickups with:
  those idle there now, and those `arriving` within `seconds`."""
  return state.idle(rates.n) + arriving(rates, state, seconds)


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


def idle_at(trips: TaxiTrips, n: int, ticks: np.ndarray,
            max_idle_s: int = MAX_IDLE_SECONDS) -> np.ndarray:
  """(n, k): taxis idle per cell at each tick, from the trips as they
  happened: idle now, carried forward, is the naive supply forecast issued
  at a tick (a taxi idle at t dropped off before t, which was known then)."""
  spells = idle_spells(trips, max_idle_s=max_idle_s)
  out = np.zeros((n, len(ticks)))
  for k, tick in enumerate(np.asarray(ticks, np.int64)):
    now = (spells.begin <= tick) & (spells.end > tick)
    out[:, k] = np.bincount(spells.cell[now], minlength=n)
  return out


def state_at(reader, cfg, cells: np.ndarray, at: int,
             leave_out: Sequence[str] = ()) -> State:
  """The fleet as known at `at` from a warehouse reader: the taxis idle
  and under way (`Reader.taxis_at`), the spells of the `RECENT_SECONDS`
  before it, and the city's pickups in the `LEVEL_SECONDS` up to it
  (`Reader.taxi_trips` known by then).

  Only trips that start or end from `at - RECENT_SECONDS -
  MAX_IDLE_SECONDS` on are read: an idle spell lasts at most
  `MAX_IDLE_SECONDS` from its dropoff, so an earlier dropoff's can neither
  end in nor overlap the recent window, and the pickups of the last
  `LEVEL_SECONDS` are later still. The 5-minute job's one read of trips
  holds those two and a half hours' dropoffs, not every trip of the eight
  and a half hours their trips may have started in (under a third of the
  rows on the bench homes).
  """
  state = State.from_taxis(cells, reader.taxis_at(cfg, at), at, leave_out)
  known = TaxiTrips.from_table(cells, reader.taxi_trips(
      cfg, at - max(RECENT_SECONDS + MAX_IDLE_SECONDS + 6 * 3600,
                    LEVEL_SECONDS), at + 1, known_by=at,
      ended_from=at - max(RECENT_SECONDS + MAX_IDLE_SECONDS, LEVEL_SECONDS)))
  lately = (known.pickup >= 0) & (known.pickup_at > at - LEVEL_SECONDS)
  return dataclasses.replace(
      state, recent=Recent.from_trips(len(cells), known, at),
      recent_pickups=float(lately.sum()))


def replay(reader, cfg, cells: np.ndarray, rates: Rates, begin: int,
           end: int, tick_seconds: int = 300,
           max_lead_minutes: int = 55) -> Dict[int, Dict[str, float]]:
  """The supply forecast issued at every tick of [begin, end), point in
  time (each tick reads only the trips known then, `Reader.taxis_at`),
  scored on the slots at leads 0..`max_lead_minutes` against the day as it
  happened, beside idle now carried forward.

  Returns:
    {lead minutes: {"forecast": MAE, "naive": MAE, "forecast_bias": mean
    error, "naive_bias": mean error, "cells_x_slots": count}}, per cell
    and slot in mean idle taxis; an error is forecast minus truth, so a
    bias below 0 says the forecast expects too few idle taxis (an MAE alone
    cannot tell an overshoot from noise).
  """
  from taxi_demand.data import sql  # noqa: PLC0415
  slot = cfg.slot_seconds
  # Afterwards: every trip of the day, and of the hours either side that
  # start or end its spells.
  trips = TaxiTrips.from_table(cells, reader.taxi_trips(
      cfg, begin - 6 * 3600, end + MAX_IDLE_SECONDS))
  slots = np.arange(begin, end, slot)
  truth = actual(trips, len(cells), slots, slot)
  errors: Dict[int, Dict[str, list]] = {}
  for tick in range(begin, end, tick_seconds):
    state = state_at(reader, cfg, cells, tick)
    first = sql.first_target(cfg, tick)
    starts = np.arange(first, min(end, tick + max_lead_minutes * 60 + 1),
                       slot)
    if len(starts) == 0:
      continue
    got = forecast(rates, state, starts, slot)
    want = truth[:, (starts - begin) // slot]
    for k, start in enumerate(starts):
      lead = int(start - tick) // 60
      by = errors.setdefault(lead, {"forecast": [], "naive": []})
      by["forecast"].append(got[:, k] - want[:, k])
      by["naive"].append(state.idle(len(cells)) - want[:, k])
  return {lead: _scores(e) for lead, e in sorted(errors.items())}


def _scores(errors: Dict[str, list]) -> Dict[str, float]:
  """MAE and bias (mean signed error) of the forecast and naive errors."""
  out: Dict[str, float] = {}
  for name in ("forecast", "naive"):
    error = np.concatenate(errors[name])
    out[name] = float(np.mean(np.abs(error)))
    out[name + "_bias"] = float(np.mean(error))
  out["cells_x_slots"] = int(sum(len(a) for a in errors["naive"]))
  return out
