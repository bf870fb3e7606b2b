"""Serving defects on purpose: fire drills for the skew check.

A replay serves through `serve(wh, cfg, tick, horizon) -> (features, data
age)`; the honest one is the demand query's serving form, at the tick and
the ticks before it (`replay.honest`). The drills here
serve the way a broken serving path would, so that `bench/realtime.py` and
the tests can check that `taxi-demand skew` names what is wrong:

* `partial_slot_as_complete`: the slot under way read as if it were the
  last complete one (lag_1 its partial count, the older lags shifted), the
  bug point-in-time features removed;
* `other_units(feature, factor)`: one feature served in another unit;
* `stalled_feed(stopped_at, until)`: no trip arrives between the two
  times; after `until`, the backlog is in the warehouse again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import pyarrow as pa

from taxi_demand import features
from taxi_demand.serving import replay

Serve = replay.Serve
honest = replay.honest


def _rewrite(rewrite: Callable[[pa.Table], pa.Table]) -> Serve:
  def serve(wh, cfg, tick, horizon):
    table, age = honest(wh, cfg, tick, horizon)
    return rewrite(table), age
  return serve


def partial_slot_as_complete() -> Serve:
  """lag_1 <- the slot under way's pickups so far; lag_k <- lag_(k-1)."""
  def rewrite(table: pa.Table) -> pa.Table:
    moved = {features.LAG_1: features.NOW_PICKUPS,
             features.LAG_2: features.LAG_1, features.LAG_3: features.LAG_2}
    return pa.table({c: table.column(moved.get(c, c))
                     for c in table.column_names})
  return _rewrite(rewrite)


def other_units(feature: str = features.MEAN_3H, factor: float = 2.0
                ) -> Serve:
  """`feature` x `factor` (default: mean_3h per hour, not per 30-min slot)."""
  if feature not in features.FLOAT_COLUMNS:
    raise ValueError(f"{feature} is not a float feature")

  def rewrite(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc  # noqa: PLC0415
    i = table.column_names.index(feature)
    return table.set_column(i, feature, pc.multiply(table.column(feature),
                                                    float(factor)))
  return _rewrite(rewrite)


def stalled_feed(stopped_at: int, until: int) -> Serve:
  """Ticks after `stopped_at`, up to and including `until`, serve as if no
  trip arrived after `stopped_at` (a temporary view over the trips that
  had: no copy); at `until` the feed stopped `until - stopped_at` ago.
  Later ticks find the backlog in the warehouse."""
  if until <= stopped_at:
    raise ValueError("a stall ends after it starts")

  def serve(wh, cfg, tick, horizon):
    if not stopped_at < tick <= until:
      return honest(wh, cfg, tick, horizon)
    wh.con.execute(
        "CREATE OR REPLACE TEMP VIEW trips_stalled AS SELECT * FROM "
        f"{cfg.table} WHERE {_known_sql(cfg)} <= {int(stopped_at)}")
    return honest(wh, dataclasses.replace(cfg, table="trips_stalled"), tick,
                  horizon)
  return serve


def _known_sql(cfg) -> str:
  """The arrival rule's known time as DuckDB SQL (see sql.ArrivalRule)."""
  from taxi_demand.data import sql  # noqa: PLC0415
  return sql.to_duckdb(f"SELECT {cfg.arrival.known_expr()}").removeprefix(
      "SELECT ")

