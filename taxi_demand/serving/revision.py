"""The served forecast: revised tick by tick from what was served before.

A forecast issued at tick t for a cell and slot is served as

    served(t) = NEW_WEIGHT x model(t) + (1 - NEW_WEIGHT) x served(t - 5 min)

where served(t - 5 min) is what the same model served for the same cell
and slot at the tick before (its lead 5 minutes longer): an exponential
smoothing of the forecast over the slot's ticks, from its first, at a lead
of 55 minutes, where the model's own forecast is served.

Why: a tick that opens a slot reads that slot's first few minutes of
pickups (`now_pickups`) as the newest evidence, and a few minutes of counts
are noisy. Served as the model gives them, forecasts jumped from tick to
tick, and on the realtime bench's day lead 25 minutes (5 minutes into the
slot before) scored 5% worse than lead 30, which knows less. On that day's
forecasts at every lead from fifteen models (five builds, three training
seeds each), the smoothing kept every lead within 1.6% of the next longer
one (worst 1.0153; the models' own forecasts stepped up to 1.0583), and
lowered the mean MAE over the leads by 0.3% and lead 0's by 0.8%. A
NEW_WEIGHT of 0.7 left one model's step at 2.1%, 0.8 six at up to 3.3%.

Stateless and point in time: each tick's forecast is computed from the
slot's rows at every tick up to it, each as known at its own tick
(`Reader.serving_ticks`: no trip from the tick on is read), so the job
serves the same whether it ran at every tick, missed some or restarted,
and `replay`, `predict --at` and the fleet simulations' tables of every
lead serve what it served.

Whole numbers: a model serving the Poisson median (the default) serves
whole pickups, so each revision is rounded (0.6 a + 0.4 b is never halfway
between whole numbers); a model serving the mean keeps the blend as it is.

No TensorFlow: keys and forecasts in, forecasts out.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pyarrow as pa

from taxi_demand import features
from taxi_demand.data import sql as demand_sql

# The model's newest forecast's weight in the served one (the rest is what
# was served at the tick before).
NEW_WEIGHT = 0.6


def _keys(table: pa.Table, shift: int = 0) -> np.ndarray:
  """(cell, slot_start, issued_at + shift) per row, as one structured key."""
  out = np.empty(table.num_rows, dtype=[("c", np.int64), ("s", np.int64),
                                        ("i", np.int64)])
  out["c"] = table.column(features.CELL).to_numpy()
  out["s"] = table.column(features.SLOT_START).to_numpy()
  out["i"] = np.asarray(table.column(features.ISSUED_AT).to_numpy(),
                        np.int64) + shift
  return out


def revise(now: pa.Table, model_forecast, before: pa.Table,
           served_before) -> np.ndarray:
  """The served forecast for each row of `now`.

  Each row's model forecast is blended with what was served (`before`'s
  rows and `served_before`) for the same cell and slot at the tick before
  (issued one tick earlier), if `before` holds it; else it stands.
  """
  model_forecast = np.asarray(model_forecast, np.float64)
  served_before = np.asarray(served_before, np.float64)
  out = model_forecast.copy()
  if now.num_rows == 0 or before.num_rows == 0:
    return out
  wanted = _keys(now, -demand_sql.TICK_SECONDS)
  held = _keys(before)
  order = np.argsort(held, kind="stable")
  at = np.searchsorted(held[order], wanted)
  found = at < len(held)
  found[found] = held[order][at[found]] == wanted[found]
  earlier = served_before[order[at[found]]]
  out[found] = NEW_WEIGHT * out[found] + (1 - NEW_WEIGHT) * earlier
  if _whole(model_forecast) and _whole(served_before):
    out[found] = np.round(out[found])
  return out


def revise_every_lead(rows: pa.Table, model_forecast) -> np.ndarray:
  """`revise` tick after tick over a table of every lead (the training
  path's rows, `Reader.every_lead_features`): what the 5-minute job served
  at each tick, had it served every tick with this model."""
  model_forecast = np.asarray(model_forecast, np.float64)
  served = model_forecast.copy()
  lead = (np.asarray(rows.column(features.SLOT_START).to_numpy(), np.int64) -
          _issued(rows))
  step = demand_sql.TICK_SECONDS
  # Longest lead first: each lead's tick before is served by then.
  for seconds in np.unique(lead)[::-1]:
    now, before = lead == seconds, lead == seconds + step
    if before.any():
      served[now] = revise(rows.filter(pa.array(now)), model_forecast[now],
                           rows.filter(pa.array(before)), served[before])
  return served


def at_tick(rows: pa.Table, issued_at: int) -> pa.Table:
  """The rows issued at `issued_at`, in their order."""
  return rows.filter(pa.array(_issued(rows) == int(issued_at)))


def served_at(rows: pa.Table, model_forecast, issued_at: int
              ) -> Tuple[pa.Table, np.ndarray]:
  """The rows issued at `issued_at` and the forecasts served for them, from
  `rows` at every tick up to it (`Reader.serving_ticks`) and the model's
  forecast for each."""
  served = revise_every_lead(rows, model_forecast)
  return at_tick(rows, issued_at), served[_issued(rows) == int(issued_at)]


def _issued(rows: pa.Table) -> np.ndarray:
  return np.asarray(rows.column(features.ISSUED_AT).to_numpy(), np.int64)


def _whole(values: np.ndarray) -> bool:
  """Every forecast a whole number of pickups (the median's)."""
  return bool(np.all(np.isfinite(values) & (values == np.round(values))))
