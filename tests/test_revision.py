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


def test_a_table_of_every_lead_is_revised_tick_after_tick():
  rows = _rows(*[(7, lead) for lead in range(0, 60, 5)])
  # The model forecasts 10 at lead 55 (its first tick) and 0 since: each
  # tick serves 0.6 x 0 + 0.4 x what the tick before served, rounded.
  forecast = np.array([0.0] * 11 + [10.0])
  got = revision.revise_every_lead(rows, forecast)
  assert got.tolist()[::-1] == [10, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
  # The rows of one tick, and what was served at it.
  table, served = revision.served_at(rows, forecast, SLOT - 45 * 60)
  assert table.column(features.ISSUED_AT).to_pylist() == [SLOT - 45 * 60]
  assert served.tolist() == [2.0]
  # With nothing before, the model's forecast stands.
  assert revision.revise(rows, forecast, rows.slice(0, 0), []).tolist() == (
      forecast.tolist())
