"""`taxi-demand recommend` on a home: forecasts, supply and travel times as
known at a moment, through `taxi_demand.guidance`, recorded.

* Forecasts: those the 5-minute job served at the newest tick at or before
  `--at` (the served log) if they cover the guidance horizon's slots, else
  the serving model scored at that tick now.
  Either way, only trips known at that tick are read.
* Supply: the taxis idle at `--at`, from probe pings where they cover that
  moment (`sql.idle_at_probes_bigquery`: the newest ping, fresh and
  unoccupied), else from trips alone (`sql.idle_at_bigquery`: a dropoff and
  no pickup since); trips without a taxi_id give none. With the forecast
  basis (the default), also the taxis the supply forecast expects to become
  idle in each cell soon (`taxi_demand.supply.arriving`: trips under way to
  it by their expected end, and arrivals learned from the four weeks
  before `--at`'s day), as known at `--at`.
* Travel: straight-line minutes between the cells' mean located pickup
  positions over the week before, or a travel-time table.

Each call appends its recommendations, with the model version whose
forecasts made them, to HOME/guidance/date=YYYY-MM-DD/ (Parquet).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Collection, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from taxi_demand import atomic
from taxi_demand import features
from taxi_demand import guidance
from taxi_demand import supply as supply_forecast
from taxi_demand.data import contract as data_contract
from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import CannotMeasure
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand.serving import predict
from taxi_demand.serving import servelog
from taxi_demand import spans
from taxi_demand.spans import format_epoch

GUIDANCE_DIR = "guidance"
POSITION_DAYS = 7


@dataclasses.dataclass
class Forecasts:
  """Expected pickups per cell and coming slot, as known at one tick."""
  issued_at: int
  cells: np.ndarray
  slots: np.ndarray
  values: np.ndarray
  model_version: str
  source: str            # "served log" or "scored now"
  slot_seconds: int


def forecasts_at(home: Home, at: int, version: Optional[str] = None,
                 until: Optional[int] = None) -> Forecasts:
  """What the 5-minute job served at the tick of `at`, else the serving
  (or given) model scored at that tick, for every slot it may forecast.

  The served forecasts are used only if they cover every slot that starts
  before `until` (epoch seconds; default: every slot the model may
  forecast). The job serves one slot by default (`predict --horizon 1`), so
  guidance an hour ahead scores the model itself rather than count the
  later slots as empty.
  """
  tick = predict.issue_time(at)
  model = predict.LoadedModel(home, version)
  cfg = model.cfg
  horizon = demand_sql.max_horizon(cfg, tick)
  begin = demand_sql.first_target(cfg, tick)
  end = begin + horizon * cfg.slot_seconds
  needed = set(range(begin, end if until is None else min(end, until),
                     cfg.slot_seconds))
  served = servelog.forecasts_between(home.serving_log, begin, end,
                                      version=version)
  issued = served.column(features.ISSUED_AT).to_numpy()
  at_tick = served.filter(pa.array(issued == tick))
  if at_tick.num_rows:
    versions = sorted(set(at_tick.column(servelog.MODEL_VERSION).to_pylist()))
    newest = versions[-1]
    at_tick = at_tick.filter(pa.array(np.array(
        at_tick.column(servelog.MODEL_VERSION).to_pylist()) == newest))
  if at_tick.num_rows and needed <= set(
      at_tick.column(features.SLOT_START).to_pylist()):
    return Forecasts(tick, at_tick.column(features.CELL).to_numpy(),
                     at_tick.column(features.SLOT_START).to_numpy(),
                     at_tick.column(servelog.PREDICTED).to_numpy(),
                     newest, "served log", cfg.slot_seconds)
  rows, _ = predict.serving_ticks(home, cfg, tick, horizon)
  table, values = predict.served_forecast(model, rows, tick)
  return Forecasts(tick, table.column(features.CELL).to_numpy(),
                   table.column(features.SLOT_START).to_numpy(), values,
                   model.version, "scored now", cfg.slot_seconds)


def geometry_of(warehouse: Union[str, os.PathLike],
                cfg: demand_sql.QueryConfig,
                at: int, speed_kmh: float = guidance.DEFAULT_SPEED_KMH,
                travel_table: Optional[os.PathLike] = None
                ) -> guidance.Geometry:
  """Travel minutes between cells: the table if given, else straight
  lines between their mean located pickups of the week before `at`.

  Community areas without a located pickup are placed between the areas
  nearest in number (the simulated city lacks 15 areas' centroids).
  """
  if travel_table is not None:
    return guidance.Geometry.from_table(travel_table)
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  from taxi_demand.report import data as report_data  # noqa: PLC0415
  with open_reader(warehouse) as wh:
    pickups = wh.pickups(cfg, at - POSITION_DAYS * features.SECONDS_PER_DAY,
                         at)
  placed = report_data.positions(pickups)
  if not placed:
    raise CannotMeasure(
        f"no located pickups in the {POSITION_DAYS} days before "
        f"{format_epoch(at)} to place the cells by; give --travel-times")
  if cfg.spatial_unit is demand_sql.SpatialUnit.COMMUNITY_AREA:
    placed = guidance.positions_with_gaps_filled(
        placed, data_contract.COMMUNITY_AREAS)
  return guidance.Geometry.from_positions(placed, speed_kmh)


def idle_taxis(home: Home, cfg: demand_sql.QueryConfig, at: int
               ) -> Tuple[List[str], List[int], str]:
  """(taxi ids, their cells, "probes" or "trips") of the taxis idle at
  `at`: from probe pings where they cover `at`, else from trips."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  with open_reader(home.warehouse) as wh:
    table, source = wh.supply_at(cfg, at)
  return ([str(t) for t in table.column("taxi_id").to_pylist()],
          [int(c) for c in table.column("cell").to_pylist()], source)


@dataclasses.dataclass
class Guidance:
  """One call's recommendations and what they were made from."""
  at: int
  forecasts: Forecasts
  taxi_ids: List[str]
  choices: List[guidance.Choice]
  ranking: Optional[List[dict]]     # the single-taxi form's ranked cells
  idle_known: int                   # idle taxis known at `at`
  seconds: float
  record: Optional[Path] = None
  supply: str = "trips"             # where idle_known came from
  basis: supply_forecast.Basis = supply_forecast.Basis.FORECAST
  arriving: float = 0.0             # taxis expected idle soon, all cells

  def to_dict(self) -> dict:
    out = {
        "at": format_epoch(self.at),
        "issued_at": format_epoch(self.forecasts.issued_at),
        "model_version": self.forecasts.model_version,
        "forecasts": self.forecasts.source,
        "idle_taxis_known": self.idle_known,
        "supply": self.supply,
        "supply_basis": self.basis.value,
        "taxis_arriving_soon": round(self.arriving, 2),
        "recommendations": [
            {"taxi_id": t, **c.to_dict()}
            for t, c in zip(self.taxi_ids, self.choices)],
    }
    if self.ranking is not None:
      out["ranking"] = self.ranking
    return out


def recommend(home: Home, at: int, cells: Sequence[int],
              taxi_ids: Optional[Sequence[str]] = None, *,
              version: Optional[str] = None,
              speed_kmh: float = guidance.DEFAULT_SPEED_KMH,
              travel_table: Optional[os.PathLike] = None,
              horizon_minutes: float = guidance.DEFAULT_HORIZON_MINUTES,
              top: int = 0, record: bool = True,
              basis: supply_forecast.Basis = supply_forecast.Basis.FORECAST
              ) -> Guidance:
  """Recommendations for idle taxis in `cells` at `at` (epoch seconds).

  The other idle taxis known at `at` (from probes or trips) count as
  competition; the taxis asked about are added to them where the warehouse
  does not know them. With the forecast `basis`, so do the taxis expected
  to become idle in each cell soon (`arriving_at`).
  With `top` > 0 (one taxi), the `top` best cells are ranked too.
  """
  started = time.perf_counter()
  if not cells:
    raise TaxiDemandError("no idle taxi to recommend for")
  # History and cells are checked before any model loads: a typo fails in
  # a second.
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  with open_reader(home.warehouse) as wh:
    predict.check_history(wh, predict.issue_time(at))
  cfg = predict.LoadedModel(home, version).cfg
  geometry = geometry_of(home.warehouse, cfg, at, speed_kmh, travel_table)
  origins = [geometry.index(int(c)) for c in cells]
  forecasts = forecasts_at(home, at, version,
                           until=at + int(horizon_minutes * 60))
  ids = [str(t) for t in (taxi_ids or [f"taxi-{i + 1}"
                                       for i in range(len(cells))])]
  known_ids, known_cells, supply = idle_taxis(home, cfg, at)
  asked = set(ids)
  others = [c for t, c in zip(known_ids, known_cells) if t not in asked]
  idle = guidance.idle_counts(geometry, list(others) + [int(c) for c in cells])
  soon = np.zeros(len(geometry.cells))
  if basis is supply_forecast.Basis.FORECAST:
    soon = arriving_at(home, cfg, geometry, at, asked)
  idle = idle + soon
  grid, starts = guidance.forecast_grid(forecasts.cells, forecasts.slots,
                                        forecasts.values, geometry)
  reach = guidance.reachable_pickups(grid, starts, forecasts.slot_seconds,
                                     at, geometry.minutes, horizon_minutes)
  ranking = None
  if top > 0 and len(origins) == 1:
    o = origins[0]
    value = guidance.rank(reach[o], idle, o, geometry.minutes[o])
    order = [int(i) for i in np.argsort(-value, kind="stable")
             if np.isfinite(value[i])][:top]
    ranking = [{"cell": int(geometry.cells[i]),
                "travel_minutes": round(float(geometry.minutes[o, i]), 1),
                "expected_pickups": round(float(value[i]), 3),
                "idle_taxis": int(round(idle[i] - soon[i])) - (i == o),
                "arriving_soon": round(float(soon[i]), 2)} for i in order]
  choices = guidance.recommend_all(geometry, reach, idle, origins)
  out = Guidance(at, forecasts, ids, choices, ranking, len(known_ids),
                 time.perf_counter() - started, supply=supply, basis=basis,
                 arriving=float(soon.sum()))
  if record:
    out.record = write_record(home, out)
  return out


def arriving_at(home: Home, cfg: demand_sql.QueryConfig,
                geometry: guidance.Geometry, at: int,
                leave_out: Collection[str] = ()) -> np.ndarray:
  """(n,): taxis expected to become idle in each geometry cell within
  `supply.GUIDANCE_WINDOW_SECONDS` of `at`, from what the warehouse knew
  at `at` (without the taxis in `leave_out`: they are being placed);
  zeros where no trip of the four weeks before carries a taxi_id."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  day = spans.start_of(int(at) // features.SECONDS_PER_DAY)
  rates = supply_forecast.cached_rates(
      str(home.warehouse), cfg, tuple(int(c) for c in geometry.cells), day)
  if rates is None:
    return np.zeros(len(geometry.cells))
  with open_reader(home.warehouse) as wh:
    state = supply_forecast.state_at(wh, cfg, geometry.cells, at,
                                     sorted(leave_out))
  return supply_forecast.arriving(rates, state)


def write_record(home: Home, result: Guidance) -> Path:
  """Appends a call's recommendations, with their model version, under
  HOME/guidance/date=YYYY-MM-DD/, written whole under a hidden name first."""
  day = spans.day_of_epoch(result.at)
  folder = home.root / GUIDANCE_DIR / f"date={day:%Y-%m-%d}"
  folder.mkdir(parents=True, exist_ok=True)
  n = len(result.choices)
  table = pa.table({
      "at": pa.array([result.at] * n, pa.int64()),
      "issued_at": pa.array([result.forecasts.issued_at] * n, pa.int64()),
      "taxi_id": pa.array(result.taxi_ids, pa.string()),
      "from_cell": pa.array([c.from_cell for c in result.choices], pa.int64()),
      "to_cell": pa.array([c.to_cell for c in result.choices], pa.int64()),
      "travel_minutes": pa.array([c.travel_minutes for c in result.choices],
                                 pa.float64()),
      "expected_pickups": pa.array(
          [c.expected_pickups for c in result.choices], pa.float64()),
      "model_version": pa.array([result.forecasts.model_version] * n,
                                pa.string()),
      "forecasts": pa.array([result.forecasts.source] * n, pa.string()),
      # What each cell's pickups were shared with (`--supply`).
      "supply_basis": pa.array([result.basis.value] * n, pa.string()),
  })
  import pyarrow.parquet as pq  # noqa: PLC0415
  final = folder / f"at-{result.at}-{os.getpid()}-{time.time_ns()}.parquet"
  with atomic.replacing(final) as f:
    pq.write_table(table, f)
  return final
