"""Baseline forecasts (seasonal naive, historical mean) and error metrics.

Plain numpy/pandas, no TensorFlow. Baselines read a pickups history: a
DataFrame with columns `features.CELL`, `features.SLOT_START` (epoch seconds)
and `features.LABEL` (pickups), one row per (cell, slot), zero slots included.
Missing history is NaN, never zero: a slot we did not observe is not a slot
with no demand.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import pandas as pd

from taxi_demand import features as F

_WEEK = 7 * F.SECONDS_PER_DAY
# HM: the same slot on each of the previous 7 days and in each of the previous
# 4 weeks. Last week's slot is in both sets, so it counts twice: 11 values.
HM_OFFSETS_SECONDS = tuple(d * F.SECONDS_PER_DAY for d in range(1, 8)) + \
    tuple(w * _WEEK for w in range(1, 5))


def _series(history: pd.DataFrame) -> pd.Series:
  series = history.set_index([F.CELL, F.SLOT_START])[F.LABEL].astype(float)
  if not series.index.is_unique:
    raise ValueError("history has duplicate (cell, slot_start) rows")
  return series


def _targets(history: pd.DataFrame,
             targets: Optional[pd.DataFrame]) -> pd.MultiIndex:
  frame = history if targets is None else targets
  return pd.MultiIndex.from_arrays(
      [frame[F.CELL].to_numpy(), frame[F.SLOT_START].to_numpy()],
      names=[F.CELL, F.SLOT_START])


def _lagged(series: pd.Series, index: pd.MultiIndex,
            offsets: Iterable[int]) -> np.ndarray:
  """[len(index), len(offsets)] pickups at slot_start - offset, NaN if absent."""
  cells = index.get_level_values(0)
  starts = index.get_level_values(1).to_numpy()
  columns = []
  for offset in offsets:
    lagged = pd.MultiIndex.from_arrays([cells, starts - offset])
    columns.append(series.reindex(lagged).to_numpy())
  return np.stack(columns, axis=1)


def seasonal_naive(history: pd.DataFrame,
                   targets: Optional[pd.DataFrame] = None) -> pd.Series:
  """Pickups in the same cell and slot one week earlier.

  Args:
    history: pickups per (cell, slot_start).
    targets: rows with (cell, slot_start) to forecast; `history` when None.

  Returns:
    Forecasts indexed by (cell, slot_start) in target order; NaN where last
    week's slot is not in `history`.
  """
  index = _targets(history, targets)
  values = _lagged(_series(history), index, [_WEEK])[:, 0]
  return pd.Series(values, index=index, name="seasonal_naive")


def historical_mean(history: pd.DataFrame,
                    targets: Optional[pd.DataFrame] = None) -> pd.Series:
  """HM: mean of the same slot over the previous 7 days and previous 4 weeks.

  Averages the available ones of the 11 values at `HM_OFFSETS_SECONDS`
  (last week's slot counts twice); NaN when none is in `history`.

  Args:
    history: pickups per (cell, slot_start).
    targets: rows with (cell, slot_start) to forecast; `history` when None.

  Returns:
    Forecasts indexed by (cell, slot_start) in target order.
  """
  index = _targets(history, targets)
  values = _lagged(_series(history), index, HM_OFFSETS_SECONDS)
  counts = np.sum(~np.isnan(values), axis=1)
  sums = np.nansum(values, axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
  return pd.Series(mean, index=index, name="historical_mean")


def _scored(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
  """Actuals and forecasts as scored, under the one missing-values policy.

  Every error figure here (the gate's, next-day's, a replay's, the benches')
  goes through this, so a missing value means the same everywhere:
  * a missing forecast (NaN) counts as 0 pickups. It is a forecast that
    could not be made, such as a seasonal-naive slot with no week of history;
    demand.sql's own lags count an unseen slot as 0 the same way;
  * a missing actual is an error (ValueError): every slot's demand is known,
    the zero-demand slots included, so one missing is a bug upstream;
  * nothing to score gives NaN figures: no error was measured. A caller that
    must refuse an empty day says so itself (next-day does; the gate records
    "the eval day has no examples").
  """
  y_true = np.asarray(y_true, dtype=float).reshape(-1)
  y_pred = np.asarray(y_pred, dtype=float).reshape(-1)
  if y_true.shape != y_pred.shape:
    raise ValueError(f"shapes differ: {y_true.shape} vs {y_pred.shape}")
  if np.isnan(y_true).any():
    raise ValueError("NaN in the actual values to score")
  return y_true, np.nan_to_num(y_pred, nan=0.0)


def mae(y_true, y_pred) -> float:
  """Mean absolute error (missing values: see `_scored`)."""
  y_true, y_pred = _scored(y_true, y_pred)
  if not y_true.size:
    return float("nan")
  return float(np.mean(np.abs(y_pred - y_true)))


def rmse(y_true, y_pred) -> float:
  """Root mean squared error (missing values: see `_scored`)."""
  y_true, y_pred = _scored(y_true, y_pred)
  if not y_true.size:
    return float("nan")
  return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def errors(y_true, y_pred) -> tuple[float, float]:
  """(MAE, RMSE): the pair every forecast here is judged by."""
  return mae(y_true, y_pred), rmse(y_true, y_pred)


def clustered_mean(sums: Iterable[float], counts: Iterable[int]
                   ) -> tuple[float, float]:
  """The mean of values that come in correlated clusters, and its standard
  error with the clusters as the independent units (cluster-robust).

  With cluster c holding n_c values that sum to s_c, N = sum n_c and C
  clusters: D = sum s_c / N and SE = sqrt(C / (C - 1) * sum (s_c - n_c
  D)^2) / N; SE is 0 with fewer than two clusters (nothing to measure the
  noise by). Slots of one cell are correlated, so comparisons of two
  forecasts over a day take the cells as the clusters.
  """
  pairs = [(float(s), int(n)) for s, n in zip(sums, counts) if n]
  total = sum(n for _, n in pairs)
  if not total:
    raise ValueError("no values to average")
  mean = sum(s for s, _ in pairs) / total
  c = len(pairs)
  if c < 2:
    return mean, 0.0
  spread = sum((s - n * mean) ** 2 for s, n in pairs)
  return mean, float(np.sqrt(c / (c - 1) * spread) / total)
