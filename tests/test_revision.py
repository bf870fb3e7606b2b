"""The served forecast blends each tick's forecast with the tick before's
(taxi_demand.serving.revision), worked by hand."""

import numpy as np
import pyarrow as pa
import pytest

from taxi_demand import features
from taxi_demand.serving import revision

SLOT = 1_707_552_000  # 2024-02-10 08:00 UTC


def _rows(*keys):
  """Rows (cell, minutes before SLOT the forecast is issued)."""
  return pa.table({
      features.CELL: pa.array([c for c, _ in keys], pa.int64()),
      features.SLOT_START: pa.array([SLOT] * len(keys), pa.int64()),
      features.ISSUED_AT: pa.array([SLOT - 60 * lead for _, lead in keys],
                                   pa.int64())})


def test_each_tick_is_blended_with_the_tick_before_of_the_same_cell_and_slot():
  assert revision.NEW_WEIGHT == pytest.approx(0.6)
  now = _rows((1, 25), (2, 25), (3, 25), (1, 55))
  # The tick before (lead 30) holds cells 1 and 2 in another order, a cell
  # 3 forecast ten minutes earlier (not the tick before), and another slot.
  before = pa.concat_tables([_rows((2, 30), (1, 30), (3, 35)), pa.table({
      features.CELL: pa.array([3], pa.int64()),
      features.SLOT_START: pa.array([SLOT + 1800], pa.int64()),
      features.ISSUED_AT: pa.array([SLOT - 1800], pa.int64())})])
  got = revision.revise(now, [10.0, 4.0, 7.0, 9.0], before,
                        [5.0, 20.0, 1.0, 0.0])
  # Cell 1: 0.6 x 10 + 0.4 x 20 = 14; cell 2: 0.6 x 4 + 0.4 x 5 = 4.4,
  # served whole as 4; cells with no tick before keep their own forecast.
  assert got.tolist() == [14.0, 4.0, 7.0, 9.0]


def test_a_mean_forecast_is_blended_without_rounding():
  now, before = _rows((1, 0)), _rows((1, 5))
  assert revision.revise(now, [2.5], before, [1.0]).tolist() == [
      pytest.approx(1.9)]
  # Whole numbers round: 0.6 x 3 + 0.4 x 2 = 2.6 -> 3.
  assert revision.revise(now, [3.0], before, [2.0]).tolist() == [3.0]


def test_a_table_of_every_lead_holds_its_own_ticks_before():
  rows = _rows(*[(7, lead) for lead in range(0, 60, 5)])
  forecast = np.arange(12, dtype=float)   # lead 0 forecasts 0, lead 55 11
  got = revision.revise_every_lead(rows, forecast)
  # Lead L blends its own forecast with lead L + 5's; lead 55 stands.
  want = np.round(0.6 * forecast[:-1] + 0.4 * forecast[1:])
  assert got.tolist() == want.tolist() + [11.0]
  assert revision.revise(rows, forecast, rows.slice(0, 0), []).tolist() == (
      forecast.tolist())
