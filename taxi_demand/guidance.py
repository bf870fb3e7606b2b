"""Driver guidance: where an idle taxi should wait, from demand and supply.

For an idle taxi in cell `o` at time `t`, each reachable cell `c` is worth
the pickups expected there from the taxi's arrival until `t + horizon`,
shared with the idle taxis already there:

    value(o, c) = sum over slots s of forecast(c, s) x overlap(s, [t + travel(o, c), t + horizon]) / slot length
                  -------------------------------------------------------------------------------------------
                                              idle(c) + 1

Minutes spent driving are minutes without a pickup, so a far cell has to be
worth more to be chosen: that is "net of the travel time". The taxi stays
where it is unless another cell is worth more.

Many taxis at once (`recommend_all`) are placed one after another, each
seeing where the ones before it went, so that a hot cell does not draw the
whole idle fleet.

No TensorFlow, no warehouse: forecasts (cells x slots), idle counts and a
travel-time matrix in, numpy out. `taxi-demand recommend` and the fleet
simulation (`taxi_demand.fleet`) both call this.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from taxi_demand.errors import TaxiDemandError

# Straight-line speed of a taxi crossing the city: Chicago's downtown moves
# at 10-15 mph, its arterials at 20-30 (CDOT congestion reports); 20 km/h
# straight-line stands for about 25 km/h along the streets.
DEFAULT_SPEED_KMH = 20.0
# How far ahead a recommendation looks: the forecasts reach about an hour
# (features.MAX_LEAD_MINUTES plus the slot), and a driver about half that
# far in one move (NTT Docomo's AI Taxi: 30 minutes ahead).
DEFAULT_HORIZON_MINUTES = 60
_EARTH_KM = 6371.0


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Cells and the minutes to drive from each to each (inf: unreachable)."""

  cells: np.ndarray          # (n,) int64 cell ids, ascending
  minutes: np.ndarray        # (n, n) float64, 0 on the diagonal

  def index(self, cell: int) -> int:
    i = int(np.searchsorted(self.cells, cell))
    if i >= len(self.cells) or self.cells[i] != cell:
      raise TaxiDemandError(
          f"unknown cell {cell}: known cells are {_span(self.cells)}")
    return i

  @classmethod
  def from_positions(cls, positions: Mapping[int, Tuple[float, float]],
                     speed_kmh: float = DEFAULT_SPEED_KMH) -> "Geometry":
    """Straight-line (haversine) minutes at `speed_kmh` between cells placed
    at (latitude, longitude)."""
    if not speed_kmh > 0 or not math.isfinite(speed_kmh):
      raise TaxiDemandError(
          f"--speed must be a finite number > 0 km/h, got {speed_kmh!r}")
    if not positions:
      raise TaxiDemandError("no cell has a position to measure travel from")
    cells = np.array(sorted(int(c) for c in positions), np.int64)
    where = np.radians(np.array([positions[int(c)] for c in cells], float))
    lat, lon = where[:, 0], where[:, 1]
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = (np.sin(dlat / 2) ** 2 +
         np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlon / 2) ** 2)
    km = 2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return cls(cells, km / speed_kmh * 60.0)

  @classmethod
  def from_table(cls, path: os.PathLike) -> "Geometry":
    """A travel-time table: CSV with from_cell,to_cell,minutes. Pairs it
    does not list are unreachable; a cell is always 0 minutes from itself."""
    try:
      with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    except OSError as e:
      raise TaxiDemandError(
          f"cannot read the travel-time table {path}: {e.strerror}") from None
    need = {"from_cell", "to_cell", "minutes"}
    if not rows or not need <= set(rows[0]):
      raise TaxiDemandError(
          f"the travel-time table {path} needs a header with "
          "from_cell,to_cell,minutes and at least one row")
    triples = []
    for line, row in enumerate(rows, start=2):
      try:
        triple = (int(row["from_cell"]), int(row["to_cell"]),
                  float(row["minutes"]))
      except (TypeError, ValueError):
        raise TaxiDemandError(
            f"{path}, line {line}: from_cell and to_cell must be integers "
            "and minutes a number") from None
      if not triple[2] >= 0 or not math.isfinite(triple[2]):
        raise TaxiDemandError(
            f"{path}, line {line}: minutes must be >= 0, got {row['minutes']}")
      triples.append(triple)
    cells = np.array(sorted({t[0] for t in triples} | {t[1] for t in triples}),
                     np.int64)
    minutes = np.full((len(cells), len(cells)), np.inf)
    np.fill_diagonal(minutes, 0.0)
    where = {int(c): i for i, c in enumerate(cells)}
    for a, b, m in triples:
      minutes[where[a], where[b]] = m
    return cls(cells, minutes)


def _span(cells: np.ndarray) -> str:
  if len(cells) == 0:
    return "none"
  if len(cells) == int(cells[-1] - cells[0]) + 1:
    return f"{cells[0]}..{cells[-1]}"
  return ", ".join(str(c) for c in cells[:8]) + (
      f" and {len(cells) - 8} more" if len(cells) > 8 else "")


def reachable_pickups(forecast: np.ndarray, slot_starts: np.ndarray,
                      slot_seconds: int, at: int, minutes: np.ndarray,
                      horizon_minutes: float = DEFAULT_HORIZON_MINUTES
                      ) -> np.ndarray:
  """(n origins, n cells): pickups forecast in each cell between a taxi's
  arrival from each origin and `at + horizon`.

  `forecast` is (n cells, k slots) of expected pickups per slot, for slots
  starting at `slot_starts`; pickups are spread evenly over their slot.
  """
  forecast = np.nan_to_num(np.asarray(forecast, float))
  end = at + horizon_minutes * 60.0
  arrive = at + np.asarray(minutes, float) * 60.0          # (n, n)
  out = np.zeros(arrive.shape)
  for k, start in enumerate(np.asarray(slot_starts, float)):
    stop = start + slot_seconds
    overlap = np.clip(np.minimum(stop, end) - np.maximum(start, arrive), 0.0,
                      None) / slot_seconds
    out += overlap * forecast[None, :, k]
  return out


@dataclasses.dataclass(frozen=True)
class Choice:
  """One taxi's recommendation."""
  from_cell: int
  to_cell: int
  travel_minutes: float
  expected_pickups: float     # per idle taxi there, over the horizon
  stay_pickups: float         # the same, had it stayed

  def to_dict(self) -> Dict[str, float]:
    return {"from_cell": self.from_cell, "to_cell": self.to_cell,
            "travel_minutes": round(self.travel_minutes, 1),
            "expected_pickups": round(self.expected_pickups, 3),
            "stay_pickups": round(self.stay_pickups, 3)}


def rank(reach_row: np.ndarray, idle: np.ndarray, origin: int,
         minutes_row: np.ndarray) -> np.ndarray:
  """Expected pickups per idle taxi in each cell for a taxi now at index
  `origin` (counted in `idle[origin]`); -inf where it cannot get to."""
  others = np.asarray(idle, float).copy()
  others[origin] -= 1.0                        # the taxi itself
  value = reach_row / (np.maximum(others, 0.0) + 1.0)
  return np.where(np.isfinite(minutes_row), value, -np.inf)


def recommend_all(geometry: Geometry, reach: np.ndarray, idle: np.ndarray,
                  origins: Sequence[int], min_gain: float = 0.0
                  ) -> list:
  """Places idle taxis at `origins` (cell indices) one after another.

  `idle` counts the idle taxis per cell, these included. Each taxi moves
  only if another cell is worth more than its own by more than `min_gain`
  pickups; it then counts as idle where it goes, for the taxis after it.
  Returns one Choice per taxi, in order.
  """
  idle = np.asarray(idle, float).copy()
  out = []
  for o in origins:
    value = rank(reach[o], idle, o, geometry.minutes[o])
    best = int(np.argmax(value))
    if not value[best] > value[o] + min_gain:
      best = o
    idle[o] -= 1.0
    idle[best] += 1.0
    out.append(Choice(int(geometry.cells[o]), int(geometry.cells[best]),
                      float(geometry.minutes[o, best]), float(value[best]),
                      float(value[o])))
  return out


def idle_counts(geometry: Geometry, cells: Sequence[int]) -> np.ndarray:
  """Idle taxis per geometry cell from each idle taxi's cell (cells the
  geometry does not know are left out)."""
  counts = np.zeros(len(geometry.cells))
  known = np.isin(np.asarray(cells, np.int64), geometry.cells)
  idx = np.searchsorted(geometry.cells, np.asarray(cells, np.int64)[known])
  np.add.at(counts, idx, 1.0)
  return counts


def forecast_grid(cells: np.ndarray, slots: np.ndarray, values: np.ndarray,
                  geometry: Geometry) -> Tuple[np.ndarray, np.ndarray]:
  """Rows (cell, slot_start, expected pickups) -> ((n cells, k slots), the
  k slot starts); cells without a forecast get 0."""
  slot_starts = np.unique(np.asarray(slots, np.int64))
  grid = np.zeros((len(geometry.cells), len(slot_starts)))
  cells = np.asarray(cells, np.int64)
  known = np.isin(cells, geometry.cells)
  rows = np.searchsorted(geometry.cells, cells[known])
  cols = np.searchsorted(slot_starts, np.asarray(slots, np.int64)[known])
  grid[rows, cols] = np.asarray(values, float)[known]
  return grid, slot_starts


def positions_with_gaps_filled(positions: Mapping[int, Tuple[float, float]],
                               cells: Sequence[int]
                               ) -> Dict[int, Tuple[float, float]]:
  """Every cell in `cells` placed: those without a position take the mean
  of the two placed cells nearest in number. Community areas are numbered
  roughly along the map, so a neighbour in number is a neighbour on it; it
  is a guess, and only the simulated city (whose calibration lacks 15
  areas' centroids) uses it."""
  placed = sorted(int(c) for c in positions)
  if not placed:
    raise TaxiDemandError("no cell has a position to place the others by")
  out = {int(c): (positions[c][0], positions[c][1]) for c in positions}
  for cell in cells:
    if int(cell) in out:
      continue
    near = sorted(placed, key=lambda p: (abs(p - int(cell)), p))[:2]
    lat = float(np.mean([positions[p][0] for p in near]))
    lon = float(np.mean([positions[p][1] for p in near]))
    out[int(cell)] = (lat, lon)
  return out
