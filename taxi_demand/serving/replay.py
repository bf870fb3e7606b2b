"""Honest replay: the 5-minute job run over a past day, as of each tick.

At each tick t of day D the serving query sees the warehouse as it was at t:
it reads no trip that starts at or after t and counts only trips known at t
under the model's arrival rule (demand.sql). That as-of view is the query
itself, over the one warehouse file: nothing is copied. Each tick forecasts
the slots its leads cover (0..55 minutes ahead), records them as the live
job would (forecasts and served features), and the day is then scored by
lead against what happened, beside the seasonal-naive forecast and the
model's complete-information forecast (issued at the slot's start, every
earlier trip known at once).

A replay records in the replay log (Home.replay_log), never in the served
log: the served log is what drivers saw, and a replay run after late trips
arrived computes other features for the same tick. Nothing that reads the
served log (skew, next-day, report, recommend, predict's catch-up) sees a
replay.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_demand import features
from taxi_demand import spans
from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand.serving import predict
from taxi_demand.serving import revision
from taxi_demand.serving import servelog


# How a tick's features are served: (warehouse, config, tick, horizon) ->
# (features of its slots at the tick and the ticks before, data age; see
# `honest`). Tests swap in a defect (taxi_demand.testing.drills).
Serve = Callable[..., Tuple[pa.Table, int]]


def honest(wh, cfg, tick: int, horizon: int) -> Tuple[pa.Table, int]:
  """What the 5-minute job reads: the features of its slots at `tick` and
  at each tick before that forecast them, each as known then
  (`Reader.serving_ticks`: the tick's forecast is revised from them), and
  the data age."""
  return wh.serving_ticks(cfg, tick, horizon), wh.data_age(cfg, tick)


@dataclasses.dataclass
class ReplayResult:
  """What a replay served and how it scored."""
  date: str
  model_version: str
  ticks: int
  served: pa.Table          # every forecast: keys, lead, prediction, naive
  by_lead: Dict[int, Dict[str, float]]
  complete_information_mae: float
  seasonal_naive_mae: float
  seconds: float

  def summary(self) -> Dict[str, Any]:
    return {"date": self.date, "model_version": self.model_version,
            "ticks": self.ticks, "forecasts": self.served.num_rows,
            "by_lead": {str(k): v for k, v in sorted(self.by_lead.items())},
            "complete_information_mae": self.complete_information_mae,
            "seasonal_naive_mae": self.seasonal_naive_mae,
            "seconds": round(self.seconds, 1)}


def check_day(wh, span: int) -> None:
  """One clear line unless the warehouse holds day `span` and its history."""
  covered = wh.span_range()
  if covered is None:
    raise TaxiDemandError(f"the warehouse {wh.path} has no trips")
  first, last = covered
  need = span - features.LOOKBACK_DAYS
  if span > last:
    raise TaxiDemandError(
        f"cannot replay {spans.date_of(span)}: the warehouse ends on "
        f"{spans.date_of(last)} (a replay scores a day that has happened)")
  if need < first:
    raise TaxiDemandError(
        f"cannot replay {spans.date_of(span)}: it needs the "
        f"{features.LOOKBACK_DAYS} days before it, and the warehouse starts "
        f"on {spans.date_of(first)}; the first day to replay is "
        f"{spans.date_of(first + features.LOOKBACK_DAYS)}")


def _truth(wh, cfg: demand_sql.QueryConfig, span: int, begin: int,
           end: int) -> pa.Table:
  """Actual pickups and the seasonal-naive forecast per (cell, slot) of day
  `span`, for the slots in [begin, end)."""
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  table = nextday.truth_of(wh.query_demand(cfg, span))
  slots = table.column(features.SLOT_START)
  return table.filter(pc.and_(pc.greater_equal(slots, begin),
                              pc.less(slots, end)))


def _mae(y, p) -> float:
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  return round(baselines.mae(y, p), 4)


def parse_between(text: Optional[str]) -> Tuple[int, int]:
  """--between "HH:MM-HH:MM" -> seconds into the day [from, to)."""
  if text is None:
    return 0, features.SECONDS_PER_DAY
  m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
  if m:
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    lo, hi = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if m1 < 60 and m2 < 60 and 0 <= lo < hi <= features.SECONDS_PER_DAY:
      return lo, hi
  raise TaxiDemandError(
      f"bad --between {text!r}: expected HH:MM-HH:MM within one day, e.g. "
      "07:00-10:00 (24:00 ends the day)")


def replay(home: Home, date: str, every_s: int = demand_sql.TICK_SECONDS,
           version: Optional[str] = None, record: bool = True,
           progress: Optional[Callable[[str], None]] = None,
           between: Tuple[int, int] = (0, features.SECONDS_PER_DAY),
           serve: Serve = honest) -> ReplayResult:
  """Runs the 5-minute job over `date` as of each tick; scores it by lead.

  Args:
    home: the state directory.
    date: YYYY-MM-DD, a day the warehouse holds with its 7 days before.
    every_s: seconds between ticks, a multiple of the 5-minute grid.
    version: the model version (default: the serving one).
    record: write the forecasts and served features to the replay log
      (home.replay_log; never the served log).
    progress: called with a short line now and then.
    between: only target slots starting in [from, to) seconds into the day
      (see parse_between); ticks run from 55 minutes before `from`.
    serve: how a tick's features are served (`honest`, or a drill from
      taxi_demand.testing.drills).
  """
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  if every_s <= 0 or every_s % demand_sql.TICK_SECONDS:
    raise TaxiDemandError(
        f"--every must be a multiple of {demand_sql.TICK_SECONDS // 60} "
        "minutes (the grid forecasts are issued on)")
  span = spans.parse_span(date)
  model = predict.LoadedModel(home, version)
  cfg = model.cfg
  day = spans.start_of(span)
  begin = demand_sql.first_target(cfg, day + between[0])
  end = day + between[1]
  if begin >= end:
    raise TaxiDemandError(f"--between holds no whole {cfg.slot_minutes}-"
                          "minute slot start")
  started = time.perf_counter()
  parts: List[pa.Table] = []
  if record:
    servelog.sweep(home.replay_log)
  with open_reader(home.warehouse) as wh:
    check_day(wh, span)
    truth = _truth(wh, cfg, span, begin, end)
    model.load()
    ticks = list(range(begin - demand_sql.MAX_LEAD_MINUTES * 60, end, every_s))
    for n, tick in enumerate(ticks):
      wh.yield_to_writers()  # a load waiting behind a long replay goes first
      horizon = demand_sql.max_horizon(cfg, tick)
      rows, age = serve(wh, cfg, tick, horizon)
      rows = rows.filter(pc.and_(
          pc.greater_equal(rows.column(features.SLOT_START), begin),
          pc.less(rows.column(features.SLOT_START), end)))
      table, predicted = revision.served_at(rows, model.score(rows), tick)
      if table.num_rows == 0:
        continue
      if record:
        servelog.append(home.replay_log, table, model.version,
                        datetime.datetime.utcfromtimestamp(tick),
                        data_age_s=age, predicted=predicted)
      parts.append(table.append_column(
          "predicted_pickups", pa.array(np.asarray(predicted, np.float64))))
      if progress and n % 48 == 47:
        progress(f"  {spans.date_of(span)} "
                 f"{datetime.datetime.utcfromtimestamp(tick):%H:%M} "
                 f"{n + 1}/{len(ticks)} ticks")
    complete = _complete_information(wh, model, cfg, truth)
  served = pa.concat_tables(parts)
  return _score(date, model.version, len(ticks), served, truth, complete,
                time.perf_counter() - started)


def _complete_information(wh, model, cfg, truth: pa.Table) -> float:
  """MAE of the model issued at each slot's start with every trip known."""
  instant = dataclasses.replace(cfg, arrival=demand_sql.ArrivalRule())
  predicted, labels = [], []
  label_of = {(int(c), int(s)): y for c, s, y in zip(
      *(truth.column(k).to_pylist() for k in (
          features.CELL, features.SLOT_START, features.LABEL)))}
  for slot in sorted(set(truth.column(features.SLOT_START).to_pylist())):
    table = wh.serving_features(instant, int(slot), 1)
    predicted.append(model.score(table))
    labels.append([label_of.get((int(c), int(slot)), 0)
                   for c in table.column(features.CELL).to_pylist()])
  return _mae(np.concatenate(labels), np.concatenate(predicted))


def _score(date, version, ticks, served, truth, complete, seconds
           ) -> ReplayResult:
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  by_lead, served = nextday.score_by_lead(served, truth)
  naive_all = _mae(truth.column(features.LABEL).to_numpy(),
                   truth.column(features.SEASONAL_NAIVE).to_numpy())
  return ReplayResult(date=date, model_version=version, ticks=ticks,
                      served=served, by_lead=by_lead,
                      complete_information_mae=complete,
                      seasonal_naive_mae=naive_all, seconds=seconds)
