"""Baselines and metrics against hand-computed numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from taxi_demand.modeling import baselines as B
from taxi_demand import features as F

_DAY = F.SECONDS_PER_DAY
_T = 40 * _DAY + 8 * 3600  # the target slot


def _history():
  rows = []
  # Cell 1: the same slot d days back holds d pickups (d = 1..7), then 10, 20
  # and 30 two, three and four weeks back; plus noise in other slots.
  for d in range(1, 8):
    rows.append((1, _T - d * _DAY, d))
  for weeks, value in ((2, 10), (3, 20), (4, 30)):
    rows.append((1, _T - weeks * 7 * _DAY, value))
  rows.append((1, _T - 7 * _DAY + 1800, 99))  # neighbouring slot, ignored
  rows.append((1, _T, 5))
  # Cell 2: only yesterday, 4 pickups, and the target itself.
  rows.append((2, _T - _DAY, 4))
  rows.append((2, _T, 3))
  return pd.DataFrame(rows, columns=[F.CELL, F.SLOT_START, F.LABEL])


def _targets(cells):
  return pd.DataFrame({F.CELL: cells, F.SLOT_START: [_T] * len(cells)})


def test_seasonal_naive_is_last_week_same_cell_and_slot():
  forecast = B.seasonal_naive(_history(), _targets([1, 2, 3]))
  assert forecast.iloc[0] == 7
  assert np.isnan(forecast.iloc[1]) and np.isnan(forecast.iloc[2])
  assert list(forecast.index) == [(1, _T), (2, _T), (3, _T)]


def test_historical_mean_averages_eleven_values_with_last_week_twice():
  forecast = B.historical_mean(_history(), _targets([1, 2, 3]))
  # (1 + ... + 7) + 7 (last week again) + 10 + 20 + 30 = 95 over 11 values.
  assert forecast.iloc[0] == pytest.approx(95 / 11)
  assert forecast.iloc[1] == 4  # only yesterday is known
  assert np.isnan(forecast.iloc[2])


def test_baselines_default_to_every_history_row():
  history = _history()
  assert len(B.seasonal_naive(history)) == len(history)
  assert B.historical_mean(history).loc[(1, _T)] == pytest.approx(95 / 11)


def test_duplicate_history_rows_are_rejected():
  history = _history()
  with pytest.raises(ValueError, match="duplicate"):
    B.seasonal_naive(pd.concat([history, history.head(1)]))


def test_metrics():
  y, yhat = [0, 2, 4], [1, 2, 1]
  assert B.mae(y, yhat) == pytest.approx(4 / 3)
  assert B.rmse(y, yhat) == pytest.approx(math.sqrt(10 / 3))


@pytest.mark.parametrize("y, yhat", [([1, 2], [1]), ([float("nan")], [1])])
def test_metrics_reject_mismatched_lengths_or_a_missing_actual(y, yhat):
  with pytest.raises(ValueError):
    B.mae(y, yhat)


def test_one_missing_values_policy_a_missing_forecast_is_0_nothing_is_nan():
  """The policy every error figure shares (ForecastGate, next-day, replay):
  a forecast that could not be made counts as 0 pickups; no values, NaN."""
  nan = float("nan")
  mae, rmse = B.errors([1, 2, 4], [1, nan, 4])
  assert mae == pytest.approx(2 / 3) and rmse == pytest.approx(math.sqrt(4 / 3))
  assert all(math.isnan(v) for v in B.errors([], []))


def test_a_clustered_mean_takes_the_clusters_as_the_units():
  """Cluster A holds 1 and 1, cluster B holds -1: D = 1/3, and the spread is
  of the clusters' sums about n_c D, not of the three values."""
  mean, se = B.clustered_mean([2.0, -1.0], [2, 1])
  assert mean == pytest.approx(1 / 3)
  assert se == pytest.approx(math.sqrt(2 * 32 / 9) / 3)
  assert B.clustered_mean([5.0], [2]) == (2.5, 0.0)
  assert B.clustered_mean([5.0, 7.0], [2, 0]) == (2.5, 0.0)
  with pytest.raises(ValueError, match="no values"):
    B.clustered_mean([], [])
