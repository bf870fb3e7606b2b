"""Calibrated trip simulator with a known intensity λ(area, 15-minute slot).

λ = base rate × scale × area share × hour-of-week profile (both estimated from
the real sample, see `calibrate`) × weather × holidays × venue events ×
facility closures × slow trend × drift. Trips are Poisson(λ) per area and
15-minute slot, so an oracle's forecast of a 15/30/60-minute slot is the sum
of the λ of its quarter hours, written to the `truth` table.

Every random draw of a day comes from a generator seeded with (seed, day
number), so the same seed gives the same trips whatever the start date or
chunking, and simulating day D again gives the same trips (and keys).

A fleet drives the trips (`assign_taxis`, no draws of its own): trips carry
its taxi_id, and on request every taxi's pings (`fleet_pings`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from taxi_demand import spans
from taxi_demand.data import calendar
from taxi_demand.data import contract
from taxi_demand.errors import TaxiDemandError

AREAS = len(contract.COMMUNITY_AREAS)
QUARTERS_PER_DAY = 96
QUARTER_SECONDS = 900
# Trips per day at scale 1.0: a dense city (Chicago ran ~70-100k/day in 2015).
BASE_TRIPS_PER_DAY = 60_000
CALIBRATION_FILE = "calibration.json"
# Venues get evening events (Wrigley Field, United Center, Soldier Field,
# Near North, the Loop), each on about one day in seven.
VENUE_AREAS = (6, 28, 33, 8, 32)
_EVENT_PROBABILITY = 0.15
_EVENT_BOOST = 2.5
_EVENT_QUARTERS = slice(84, 96)  # 21:00-24:00, when crowds leave
_CLOSURE_PROBABILITY = 0.002     # per area and day
_CLOSURE_FACTOR = 0.3
_HOLIDAY_FACTOR = 0.75
_RAIN_PROBABILITY = 0.25
_RAIN_FACTOR = 1.15
_TREND_PER_DAY = 0.0005          # +0.05 % a day from 2024-01-01
_TREND_ORIGIN = spans.span_of(datetime.date(2024, 1, 1))
_COORD_JITTER_DEG = 0.004


# ---- calibration -----------------------------------------------------------

def sample_path() -> Path:
  """The real Chicago sample shipped inside the tfx wheel."""
  import tfx  # noqa: PLC0415
  return (Path(tfx.__file__).parent / "examples" / "chicago_taxi_pipeline" /
          "data" / "simple" / "data.csv")


def calibrate(sample_csv: str | Path | None = None) -> dict:
  """Area share, hour-of-week profile, centroids and trip shape from a sample.

  Deterministic and rounded, so regenerating from the same sample gives the
  checked-in calibration.json byte for byte.
  """
  import pandas as pd  # noqa: PLC0415
  frame = pd.read_csv(sample_csv or sample_path())
  frame = frame[frame["pickup_community_area"].between(1, AREAS)]
  area = frame["pickup_community_area"].astype(int).to_numpy()
  counts = np.bincount(area - 1, minlength=AREAS).astype(float)
  # Half a trip for every area so no area is impossible.
  share = (counts + 0.5) / (counts + 0.5).sum()
  start = pd.to_datetime(frame["trip_start_timestamp"], unit="s")
  how = np.bincount(start.dt.weekday.to_numpy() * 24 + start.dt.hour.to_numpy(),
                    minlength=168).astype(float) + 1.0
  # Circular [1/4, 1/2, 1/4] smoothing: ~90 trips a bin are noisy.
  how = 0.25 * np.roll(how, 1) + 0.5 * how + 0.25 * np.roll(how, -1)
  how = how / how.mean()
  located = frame.dropna(subset=["pickup_latitude", "pickup_longitude"])
  centroids = located.groupby("pickup_community_area")[
      ["pickup_latitude", "pickup_longitude"]].mean()
  seconds = frame["trip_seconds"].dropna()
  seconds = seconds[seconds > 0]
  log_s = np.log(seconds.to_numpy(dtype=float))
  moving = frame[(frame["trip_seconds"] > 60) & (frame["trip_miles"] > 0)]
  mph = (moving["trip_miles"] / (moving["trip_seconds"] / 3600)).median()
  return {
      "source": "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv",
      "trips": int(len(frame)),
      "area_share": [round(float(x), 6) for x in share],
      "hour_of_week_monday0": [round(float(x), 4) for x in how],
      "area_centroid": {str(int(a)): [round(float(r.pickup_latitude), 5),
                                      round(float(r.pickup_longitude), 5)]
                        for a, r in centroids.iterrows()},
      "trip_seconds_log_mean": round(float(log_s.mean()), 4),
      "trip_seconds_log_sd": round(float(log_s.std()), 4),
      "median_mph": round(float(mph), 3),
  }


def calibration_text(calibration: dict) -> str:
  """JSON with one key per line: diffs of a recalibration stay readable."""
  lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in calibration.items()]
  return "{\n" + ",\n".join(lines) + "\n}\n"


def write_calibration(path: str | Path | None = None) -> Path:
  """Regenerates taxi_demand/data/calibration.json from the real sample."""
  path = Path(path or Path(__file__).with_name(CALIBRATION_FILE))
  path.write_text(calibration_text(calibrate()))
  return path


@dataclasses.dataclass(frozen=True)
class Calibration:
  share: np.ndarray          # (77,), sums to 1
  hour_of_week: np.ndarray   # (168,), Monday 0h first, mean 1
  centroid: np.ndarray       # (77, 2) lat/lon; NaN where the sample has none
  log_seconds: tuple[float, float]
  mph: float

  @classmethod
  def load(cls) -> "Calibration":
    raw = json.loads(resources.files("taxi_demand.data").joinpath(
        CALIBRATION_FILE).read_text())
    centroid = np.full((AREAS, 2), np.nan)
    for area, latlon in raw["area_centroid"].items():
      centroid[int(area) - 1] = latlon
    share = np.asarray(raw["area_share"])
    return cls(share / share.sum(), np.asarray(raw["hour_of_week_monday0"]),
               centroid, (raw["trip_seconds_log_mean"],
                          raw["trip_seconds_log_sd"]), raw["median_mph"])


# ---- drift -----------------------------------------------------------------

DRIFT_GRAMMAR = (
    "drift spec: clauses joined by ';', each ending in @YYYY-MM-DD (the first "
    "day it applies): area=N:xF (area N's demand times F), area=N:xF/Dd "
    "(ramp linearly from x1 to xF over D days), area=N:drop (area N has no "
    "trips), weekend=swap (weekdays get the weekend profile and vice versa), "
    "coords=DLAT,DLON (shift pickup coordinates by degrees). Example: "
    "'area=8:x3@2024-02-05;area=32:x2/14d@2024-02-01'")

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_CLAUSES = (
    ("area", re.compile(rf"area=(\d+):x({_NUM})(?:/(\d+)d)?")),
    ("drop", re.compile(r"area=(\d+):drop")),
    ("weekend", re.compile(r"weekend=swap")),
    ("coords", re.compile(rf"coords=({_NUM}),({_NUM})")),
)


@dataclasses.dataclass(frozen=True)
class DriftClause:
  kind: str                  # "area", "weekend" or "coords"
  start_day: int             # day number from which it applies
  area: int | None = None
  factor: float = 1.0        # area: final multiplier (0 = dropped)
  ramp_days: int = 0         # area: days to reach `factor` linearly
  shift: tuple[float, float] = (0.0, 0.0)  # coords: degrees lat, lon

  def area_factor(self, day: int) -> float:
    if day < self.start_day:
      return 1.0
    if self.ramp_days <= 0:
      return self.factor
    done = min(1.0, (day - self.start_day + 1) / self.ramp_days)
    return 1.0 + (self.factor - 1.0) * done


def parse_drift(spec: str | None) -> tuple[DriftClause, ...]:
  """Parses a --drift spec; any mistake is one line quoting the grammar."""
  if spec is None or not spec.strip():
    return ()
  out = []
  for text in spec.split(";"):
    text = text.strip()
    head, at, when = text.rpartition("@")
    if not at:
      raise TaxiDemandError(f"bad drift clause {text!r}: no @DATE. "
                            f"{DRIFT_GRAMMAR}")
    try:
      day = spans.span_of(datetime.date.fromisoformat(when))
    except ValueError:
      raise TaxiDemandError(f"bad drift date {when!r} in {text!r}: expected "
                            "YYYY-MM-DD") from None
    for kind, pattern in _CLAUSES:  # noqa: B007 - kind is read after the break
      match = pattern.fullmatch(head)
      if match:
        break
    else:
      raise TaxiDemandError(f"bad drift clause {text!r}. {DRIFT_GRAMMAR}")
    if kind in ("area", "drop"):
      area = int(match.group(1))
      if area not in contract.COMMUNITY_AREAS:
        raise TaxiDemandError(f"bad drift clause {text!r}: area must be 1..77")
      factor = 0.0 if kind == "drop" else float(match.group(2))
      if factor < 0 or not math.isfinite(factor):
        raise TaxiDemandError(
            f"bad drift clause {text!r}: factor must be >= 0")
      ramp = int(match.group(3) or 0) if kind == "area" else 0
      out.append(DriftClause("area", day, area=area, factor=factor,
                             ramp_days=ramp))
    elif kind == "weekend":
      out.append(DriftClause("weekend", day))
    else:
      shift = (float(match.group(1)), float(match.group(2)))
      if max(abs(shift[0]), abs(shift[1])) > 1:
        raise TaxiDemandError(
            f"bad drift clause {text!r}: shift more than 1 degree")
      out.append(DriftClause("coords", day, shift=shift))
  return tuple(out)


# ---- intensity ---------------------------------------------------------------

def _day_profile(cal: Calibration, day: int, swap_weekend: bool) -> np.ndarray:
  """The 96 quarter-hour multipliers of one day (hourly profile, repeated)."""
  date = spans.day_of(day)
  weekday = date.weekday()
  how = cal.hour_of_week.reshape(7, 24)
  if swap_weekend:
    weekend, weekdays = how[5:].mean(axis=0), how[:5].mean(axis=0)
    hours = weekdays if weekday >= 5 else weekend
  else:
    hours = how[weekday]
  return np.repeat(hours, 4)


def day_intensity(cal: Calibration, day: int, seed: int, scale: float,
                  drift: Sequence[DriftClause]) -> tuple[np.ndarray,
                                                         np.random.Generator]:
  """λ of every (area, quarter hour) of `day`, shape (77, 96), and the day's
  generator (already advanced past the day's weather/event/closure draws)."""
  rng = np.random.default_rng([seed, day])
  swap = any(c.kind == "weekend" and day >= c.start_day for c in drift)
  per_quarter = BASE_TRIPS_PER_DAY * scale / QUARTERS_PER_DAY
  lam = per_quarter * np.outer(cal.share, _day_profile(cal, day, swap))
  weather = math.exp(rng.normal(0.0, 0.05))
  if rng.random() < _RAIN_PROBABILITY:
    weather *= _RAIN_FACTOR
  lam *= weather * (1.0 + _TREND_PER_DAY * (day - _TREND_ORIGIN))
  if calendar.is_us_holiday(spans.day_of(day)):
    lam *= _HOLIDAY_FACTOR
  events = rng.random(len(VENUE_AREAS)) < _EVENT_PROBABILITY
  for area, event in zip(VENUE_AREAS, events):
    if event:
      lam[area - 1, _EVENT_QUARTERS] *= _EVENT_BOOST
  closed = rng.random(AREAS) < _CLOSURE_PROBABILITY
  lam[closed] *= _CLOSURE_FACTOR
  for clause in drift:
    if clause.kind == "area":
      lam[clause.area - 1] *= clause.area_factor(day)
  return lam, rng


# ---- trips -------------------------------------------------------------------

def _keys(seed: int, day: int, n: int):
  """unique_key 's{seed}-{day}-{i}': stable for the same seed and day."""
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.compute as pc  # noqa: PLC0415
  index = pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string())
  return pc.binary_join_element_wise(f"s{seed}-{day}", index, "-")


def day_trips(cal: Calibration, day: int, seed: int, scale: float,
              drift: Sequence[DriftClause]):
  """(trips as a pyarrow Table, λ (77, 96)) for one day."""
  import pyarrow as pa  # noqa: PLC0415
  lam, rng = day_intensity(cal, day, seed, scale, drift)
  counts = rng.poisson(lam).ravel()
  n = int(counts.sum())
  cell = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
  area = cell // QUARTERS_PER_DAY
  start = (spans.start_of(day) + (cell % QUARTERS_PER_DAY) * QUARTER_SECONDS +
           rng.integers(0, QUARTER_SECONDS, n))
  mu, sd = cal.log_seconds
  seconds = np.maximum(60, rng.lognormal(mu, sd, n)).astype(np.int64)
  miles = np.round(seconds / 3600 * cal.mph * rng.lognormal(0, 0.25, n), 2)
  shift = np.zeros(2)
  for clause in drift:
    if clause.kind == "coords" and day >= clause.start_day:
      shift += clause.shift
  latlon = (cal.centroid[area] + shift +
            rng.normal(0, _COORD_JITTER_DEG, (n, 2))).round(6)
  dropoff = rng.choice(AREAS, n, p=cal.share) + 1
  fare = np.round(3.25 + 2.25 * miles + 0.2 * seconds / 60, 2)
  start_ts = pa.array(start * 1_000_000, pa.int64()).cast(
      pa.timestamp("us"))
  end_ts = pa.array((start + seconds) * 1_000_000, pa.int64()).cast(
      pa.timestamp("us"))
  no_coords = np.isnan(latlon[:, 0])
  table = pa.table({
      "unique_key": _keys(seed, day, n),
      "trip_start_timestamp": start_ts,
      "trip_end_timestamp": end_ts,
      "trip_seconds": seconds,
      "trip_miles": miles,
      "pickup_community_area": area + 1,
      "dropoff_community_area": dropoff.astype(np.int64),
      "pickup_latitude": pa.array(latlon[:, 0], mask=no_coords),
      "pickup_longitude": pa.array(latlon[:, 1], mask=no_coords),
      "fare": fare,
  })
  return table, lam


# ---- the fleet: who drove each trip, and where every taxi was -------------
#
# Taxis take the simulated passengers where they are: a trip goes to the taxi
# idle longest in its pickup area, else to the nearest idle taxi that can
# drive there by the pickup (FLEET_REACH_MINUTES at FLEET_SPEED_KMH), else to
# a taxi starting its shift. The taxi drives the trip and waits, empty, at
# the dropoff. Nothing is drawn, so trips and their keys are what they were
# without a fleet. Shifts are days: each day's fleet starts empty at
# midnight, with ids s{seed}-{day}-t{k}, so a day simulates the same alone
# or in a run of days.
FLEET_SPEED_KMH = 20.0
FLEET_REACH_MINUTES = 15.0
# A taxi empty this long after a dropoff has ended its shift: no more pings
# (as sql.MAX_IDLE_SECONDS).
SHIFT_END_IDLE_SECONDS = 2 * 3600


def area_positions(cal: Calibration) -> np.ndarray:
  """(77, 2) lat/lon of every area: the calibration's centroids, and for
  the areas the sample never located, guidance's neighbour-in-number
  guess."""
  from taxi_demand import guidance  # noqa: PLC0415 - numpy only
  known = {a + 1: tuple(cal.centroid[a]) for a in range(AREAS)
           if not np.isnan(cal.centroid[a, 0])}
  filled = guidance.positions_with_gaps_filled(known, range(1, AREAS + 1))
  return np.array([filled[a] for a in range(1, AREAS + 1)], float)


def area_minutes(positions: np.ndarray,
                 speed_kmh: float = FLEET_SPEED_KMH) -> np.ndarray:
  """(77, 77) straight-line driving minutes between areas."""
  from taxi_demand import guidance  # noqa: PLC0415 - numpy only
  return guidance.Geometry.from_positions(
      {a + 1: tuple(positions[a]) for a in range(AREAS)}, speed_kmh).minutes


def assign_taxis(start: np.ndarray, end: np.ndarray, pickup: np.ndarray,
                 dropoff: np.ndarray, minutes: np.ndarray,
                 reach_minutes: float = FLEET_REACH_MINUTES) -> np.ndarray:
  """The taxi (0, 1, ...) that drives each trip, by the rule above.

  start/end: epoch seconds; pickup/dropoff: areas 1..77; minutes: (77, 77).
  """
  import collections  # noqa: PLC0415
  import heapq  # noqa: PLC0415
  order = np.argsort(start, kind="stable")
  drive = np.rint(minutes * 60).astype(np.int64)
  # Per pickup area: (area, seconds to drive from it) of the areas within
  # reach, nearest first, as plain ints: the loop below runs once a trip
  # (millions), where numpy indexing costs more than the rule itself.
  near = [[(int(b), int(drive[b, a]))
           for b in np.argsort(minutes[a], kind="stable")
           if minutes[a, b] <= reach_minutes] for a in range(AREAS)]
  idle = [collections.deque() for _ in range(AREAS)]  # (free since, taxi)
  busy: list = []                                      # (free at, taxi, area)
  chosen_of = [0] * len(start)
  fleet = 0
  starts, ends = start.tolist(), end.tolist()
  pickups, dropoffs = (pickup - 1).tolist(), (dropoff - 1).tolist()
  heappop, heappush = heapq.heappop, heapq.heappush
  for i in order.tolist():
    t = starts[i]
    while busy and busy[0][0] <= t:
      free, taxi, where = heappop(busy)
      idle[where].append((free, taxi))
    for b, seconds in near[pickups[i]]:
      queue = idle[b]
      if queue and queue[0][0] + seconds <= t:
        chosen = queue.popleft()[1]
        break
    else:
      chosen, fleet = fleet, fleet + 1
    chosen_of[i] = chosen
    heappush(busy, (ends[i], chosen, dropoffs[i]))
  taxi_of = np.array(chosen_of, np.int64)
  return taxi_of


def fleet_pings(taxi: np.ndarray, start: np.ndarray, end: np.ndarray,
                pickup: np.ndarray, dropoff: np.ndarray,
                positions: np.ndarray, minutes: np.ndarray,
                every_s: int) -> dict:
  """Every taxi's pings, one each `every_s` seconds on the clock, from its
  first pickup to its shift's end: occupied along each trip (moving from
  the pickup to the dropoff area), then empty at the dropoff (at most
  SHIFT_END_IDLE_SECONDS), and empty on the drive to its next pickup.
  Columns as contract.PROBE_COLUMNS, with the vehicle as an integer (named
  by the caller)."""
  order = np.lexsort((start, taxi))
  taxi, start, end = taxi[order], start[order], end[order]
  pickup, dropoff = pickup[order], dropoff[order]
  last = np.append(taxi[1:] != taxi[:-1], True)
  next_start = np.append(start[1:], 0)
  next_pickup = np.append(pickup[1:], 1)
  drive = np.rint(minutes[dropoff - 1, next_pickup - 1] * 60).astype(np.int64)
  leave = np.where(last, end + SHIFT_END_IDLE_SECONDS,
                   np.maximum(end, next_start - drive))
  arrive = np.where(last, leave, np.maximum(leave, next_start))
  # Segments: (taxi, t0, t1, occupied, from area, to area).
  # A wait longer than a shift's end is off shift, without pings, until
  # the drive to the next pickup.
  seg = [
      (taxi, start, end, True, pickup, dropoff),
      (taxi, end, np.minimum(leave, end + SHIFT_END_IDLE_SECONDS), False,
       dropoff, dropoff),
      (taxi, leave, arrive, False, dropoff, next_pickup),
  ]
  columns = [np.concatenate([np.broadcast_to(np.asarray(part[k]),
                                             taxi.shape) for part in seg])
             for k in range(6)]
  who, t0, t1, occupied, origin, goal = columns
  first = -(-t0 // every_s) * every_s            # first clock tick >= t0
  count = np.maximum(0, -(-(t1 - first) // every_s))
  keep = count > 0
  who, t0, t1, occupied, origin, goal, first, count = (
      x[keep] for x in (who, t0, t1, occupied, origin, goal, first, count))
  row = np.repeat(np.arange(count.size), count)
  offset = np.arange(row.size) - np.repeat(np.cumsum(count) - count, count)
  at = first[row] + offset * every_s
  share = (at - t0[row]) / np.maximum(1, t1[row] - t0[row])
  here = positions[origin[row] - 1]
  there = positions[goal[row] - 1]
  where = here + (there - here) * share[:, None]
  # The area a ping reports: where the taxi waits, else the nearer end.
  area = np.where(share < 0.5, origin[row], goal[row])
  return {"vehicle": who[row], "ping_s": at, "latitude": where[:, 0].round(6),
          "longitude": where[:, 1].round(6), "occupied": occupied[row],
          "community_area": area.astype(np.int64)}


def _seconds(column) -> np.ndarray:
  import pyarrow as pa  # noqa: PLC0415
  return column.cast(pa.int64()).to_numpy() // 1_000_000


def _taxi_names(seed: int, day: int, taxi: np.ndarray):
  """Taxi ids 's{seed}-{day}-t{k}' as an Arrow string array (Arrow's string
  kernels: numpy's char.add is a Python loop over millions of pings)."""
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.compute as pc  # noqa: PLC0415
  return pc.binary_join_element_wise(
      f"s{seed}-{day}-t", pc.cast(pa.array(taxi, pa.int64()), pa.string()), "")


def with_fleet(table, day: int, seed: int, positions: np.ndarray,
               minutes: np.ndarray, pings_every_s: int | None = None):
  """(the day's trips with taxi_id, its pings as a table or None)."""
  import pyarrow as pa  # noqa: PLC0415
  start = _seconds(table.column("trip_start_timestamp"))
  end = _seconds(table.column("trip_end_timestamp"))
  pickup = table.column("pickup_community_area").to_numpy()
  dropoff = table.column("dropoff_community_area").to_numpy()
  taxi = assign_taxis(start, end, pickup, dropoff, minutes)
  trips = table.add_column(1, "taxi_id", _taxi_names(seed, day, taxi))
  if not pings_every_s:
    return trips, None
  p = fleet_pings(taxi, start, end, pickup, dropoff, positions, minutes,
                  pings_every_s)
  pings = pa.table({
      "vehicle_id": _taxi_names(seed, day, p["vehicle"]),
      "ping_timestamp": pa.array(p["ping_s"] * 1_000_000, pa.int64()).cast(
          pa.timestamp("us")),
      "latitude": p["latitude"],
      "longitude": p["longitude"],
      "occupied": p["occupied"].astype(bool),
      "community_area": p["community_area"],
  })
  return trips, pings


@dataclasses.dataclass
class SimulationReport:
  trips: int
  truth_rows: int
  files: list[str]
  days: int
  seconds: float = 0.0
  taxis: int = 0             # the most taxis on shift in a day
  pings: int = 0

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _day_number(start: datetime.date | str) -> int:
  if isinstance(start, str):
    try:
      start = datetime.date.fromisoformat(start)
    except ValueError:
      raise TaxiDemandError(
          f"bad start date {start!r}: expected YYYY-MM-DD") from None
  return spans.span_of(start)


def _check_within_bounds(start, first: int, days: int) -> None:
  """Refuses days that `load` would quarantine (contract's timestamp
  bounds), before any date arithmetic overflows on them."""
  lowest = spans.span_of(contract.EARLIEST_TIMESTAMP.date())
  limit = spans.span_of(contract.TIMESTAMP_LIMIT.date())
  if first < lowest or first + days > limit:
    last = contract.TIMESTAMP_LIMIT.date() - datetime.timedelta(days=1)
    raise TaxiDemandError(
        f"bad start date {str(start)!r} for {days} day(s): simulated days "
        f"must lie from {contract.EARLIEST_TIMESTAMP:%Y-%m-%d} to {last}, "
        "the trips contract's timestamp bounds")


def _output_folder(out_dir: str | Path) -> Path:
  """`out_dir`, created if missing; one line if it cannot be a folder."""
  out = Path(out_dir)
  if out.exists() and not out.is_dir():
    raise TaxiDemandError(f"--out {out} is a file, not a folder")
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise TaxiDemandError(f"cannot create --out {out}: {e.strerror}") \
        from None
  return out


def simulate_files(out_dir: str | Path, start: datetime.date | str, days: int,
                   seed: int = 0, scale: float = 1.0,
                   drift: str | Sequence[DriftClause] | None = None,
                   progress: Callable[[str], None] | None = None,
                   pings_every_s: int | None = None,
                   without: Sequence[str] = ()
                   ) -> SimulationReport:
  """Writes trips-<first>-<last>.parquet and truth-<first>-<last>.parquet,
  and with `pings_every_s` the fleet's probes-<first>-<last>.parquet.

  `without` leaves optional trips columns out of the files, as a feed that
  lacks them (contract.optional_columns: "dropoff", "taxi_id", a column);
  the trips themselves, and the fleet's pings, do not change.

  Trips (and pings) are written a day per row group, so memory stays at
  about one day.
  """
  import time  # noqa: PLC0415
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.compute as pc  # noqa: PLC0415
  import pyarrow.parquet as pq  # noqa: PLC0415
  began = time.perf_counter()
  first = _day_number(start)
  if isinstance(days, bool) or not isinstance(days, int) or not \
      1 <= days <= 3660:
    raise TaxiDemandError(f"--days must be 1..3660, got {days!r}")
  _check_within_bounds(start, first, days)
  if not (isinstance(scale, (int, float)) and 0 < scale <= 1000):
    raise TaxiDemandError(f"--scale must be in (0, 1000], got {scale!r}")
  if pings_every_s is not None and (
      isinstance(pings_every_s, bool) or not isinstance(pings_every_s, int)
      or not 10 <= pings_every_s <= 3600):
    raise TaxiDemandError(
        f"--pings must be 10..3600 seconds, got {pings_every_s!r}")
  clauses = parse_drift(drift) if isinstance(drift, (str, type(None))) \
      else tuple(drift)
  try:
    dropped = contract.optional_columns(without)
  except ValueError as e:
    raise TaxiDemandError(f"--without: {e}") from None
  cal = Calibration.load()
  out = _output_folder(out_dir)
  stem = (f"{spans.day_of(first):%Y%m%d}-"
          f"{spans.day_of(first + days - 1):%Y%m%d}")
  trips_path = out / f"trips-{stem}-seed{seed}.parquet"
  truth_path = out / f"truth-{stem}-seed{seed}.parquet"
  probes_path = out / f"probes-{stem}-seed{seed}.parquet"
  positions = area_positions(cal)
  minutes = area_minutes(positions)
  total, lams, taxis, pinged = 0, [], 0, 0
  writers: dict = {}

  def write(path: Path, table) -> None:
    if path not in writers:
      writers[path] = pq.ParquetWriter(str(path), table.schema,
                                       compression="snappy")
    writers[path].write_table(table)

  try:
    for i, day in enumerate(range(first, first + days)):
      table, lam = day_trips(cal, day, seed, scale, clauses)
      table, pings = with_fleet(table, day, seed, positions, minutes,
                                pings_every_s)
      write(trips_path, table.drop(
          [c for c in dropped if c in table.column_names]))
      if pings is not None:
        write(probes_path, pings)
        pinged += pings.num_rows
      total += table.num_rows
      # Distinct taxis, counted by Arrow (not a Python set of 65k ids).
      taxis = max(taxis, pc.count_distinct(table.column("taxi_id")).as_py())
      lams.append(lam.astype(np.float32))
      if progress and (i + 1) % 7 == 0:
        progress(f"simulate: {i + 1}/{days} days, {total:,} trips")
  finally:
    for writer in writers.values():
      writer.close()
  lam = np.stack(lams)  # (days, 77, 96)
  area = np.broadcast_to(np.arange(1, AREAS + 1)[None, :, None], lam.shape)
  slot = ((np.arange(first, first + days)[:, None, None] *
           spans.SECONDS_PER_DAY) +
          np.arange(QUARTERS_PER_DAY)[None, None, :] * QUARTER_SECONDS)
  slot = np.broadcast_to(slot, lam.shape)
  pq.write_table(pa.table({
      "community_area": area.ravel().astype(np.int64),
      "slot_start": slot.ravel().astype(np.int64),
      "intensity": lam.ravel().astype(np.float64),
  }), str(truth_path))
  files = [str(trips_path), str(truth_path)] + (
      [str(probes_path)] if pings_every_s else [])
  return SimulationReport(total, int(lam.size), files, days,
                          round(time.perf_counter() - began, 3), taxis,
                          pinged)


def simulate_into(warehouse, start: datetime.date | str, days: int,
                  seed: int = 0, scale: float = 1.0,
                  drift: str | Sequence[DriftClause] | None = None,
                  progress: Callable[[str], None] | None = None,
                  pings_every_s: int | None = None,
                  without: Sequence[str] = ()):
  """Simulates and loads into an open writable Warehouse, through the same
  file path and row rules as `taxi-demand load`. Returns the LoadReport."""
  with tempfile.TemporaryDirectory(prefix="taxi-sim-") as tmp:
    simulate_files(tmp, start, days, seed, scale, drift, progress,
                   pings_every_s, without)
    return warehouse.load([tmp], progress=progress)
