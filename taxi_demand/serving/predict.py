"""Batch prediction: serving features from the warehouse, scored by a pushed model."""

from __future__ import annotations

import dataclasses
import datetime
import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand import features
from taxi_demand import spans
from taxi_demand.spans import format_epoch
from taxi_demand.serving import registry
from taxi_demand.serving import revision
from taxi_demand.serving import servelog

# Timestamps in the warehouse are Chicago wall clock read as UTC (demand.sql).
CITY_TIME_ZONE = "America/Chicago"
_EVERY = re.compile(r"(\d+)\s*(s|m|h)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


# ---- inputs ------------------------------------------------------------------

def wall_clock_epoch(moment: datetime.datetime) -> int:
  """Epoch seconds of a moment as the warehouse writes it: city wall clock.

  Naive datetimes are taken as city wall clock already; aware ones are
  converted to it first.
  """
  if moment.tzinfo is not None:
    from zoneinfo import ZoneInfo  # noqa: PLC0415
    moment = moment.astimezone(ZoneInfo(CITY_TIME_ZONE)).replace(tzinfo=None)
  return int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())


def now_epoch() -> int:
  return wall_clock_epoch(datetime.datetime.now(datetime.timezone.utc))


def parse_at(text: Optional[str]) -> int:
  """--at as warehouse epoch seconds: ISO date/time (city wall clock unless it
  has an offset), or integer epoch seconds. None means now."""
  if text is None:
    return now_epoch()
  raw = text.strip()
  if re.fullmatch(r"\d{9,11}", raw):
    return int(raw)
  try:
    moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
  except ValueError:
    raise TaxiDemandError(
        f"bad --at {text!r}: expected YYYY-MM-DD[THH:MM[:SS]] (city wall "
        "clock) or epoch seconds") from None
  return wall_clock_epoch(moment)


def parse_every(text: str, flag: str = "--every") -> int:
  """'5m', '30s', '1h' -> seconds."""
  m = _EVERY.fullmatch(text.strip().lower()) if text else None
  if not m or int(m.group(1)) == 0:
    raise TaxiDemandError(
        f"bad {flag} {text!r}: expected a positive interval like 30s, 5m, 1h")
  return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def slot_at_or_after(cfg: demand_sql.QueryConfig, at_epoch: int) -> int:
  """The first slot that starts at or after `at_epoch`."""
  return demand_sql.first_target(cfg, at_epoch)


def issue_time(at_epoch: int) -> int:
  """The tick a job at `at_epoch` issues at: the 5-minute grid, rounded down.

  Training examples are issued on that grid; rounding down only ever uses
  less than was known at `at_epoch`.
  """
  return int(at_epoch) - int(at_epoch) % demand_sql.TICK_SECONDS


def query_config_of(home: Home, version: str,
                    snap=None) -> demand_sql.QueryConfig:
  """The QueryConfig a pushed version was trained with.

  From the registry first: the Pusher writes the run's parameters into the
  version, so the job needs nothing else (on Google Cloud, the ML Metadata
  store is Vertex's). A version pushed before that reads them from ML
  Metadata (`training_query_config`).
  """
  params = registry.parameters(home.models, version)
  if params is not None:
    found = contract.RunParameters.from_custom_config(params)
    if found is not None:
      return found.query_config()
  return training_query_config(home, version, snap)


def training_query_config(home: Home, version: str,
                          snap=None) -> demand_sql.QueryConfig:
  """The QueryConfig a pushed version was trained with, from ML Metadata.

  The Trainer records its run parameters (slot length, spatial unit, grid
  size) as custom_config; serving with other values would feed the model
  features of another granularity. On a home with no metadata store (no
  run ever recorded there), or for a version the store never saw pushed (a
  model copied in by hand), the defaults are the only honest guess. A
  store that exists but cannot be read is an error: guessing there could
  serve a model trained with other settings features it never learned
  from. Pass `snap` (a lineage Snapshot of home.metadata) if the caller
  has one already.

  Raises:
    TaxiDemandError: home.metadata exists but cannot be read.
  """
  if snap is None and not home.metadata.is_file():
    return demand_sql.QueryConfig()
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store as lineage  # noqa: PLC0415
  if snap is None:
    try:
      snap = lineage.load(home.metadata)
    except TaxiDemandError as e:
      raise TaxiDemandError(
          f"{e}; it records the query settings model {version} was trained "
          "with, and serving it with others would feed it wrong features"
      ) from None
  try:
    params = queries.push_parameters(snap, version)
  except TaxiDemandError:  # never pushed here: copied in by hand
    params = None
  return (params or contract.RunParameters()).query_config()


def check_history(wh, issued_at: int,
                  cfg: Optional[demand_sql.QueryConfig] = None) -> int:
  """Fails in one line unless the warehouse holds history before `issued_at`;
  else the data age at `issued_at` under `cfg`'s arrival rule (seconds;
  `Reader.data_age`). One warehouse query (`Reader.history_at`).

  Served features reach back 7 days before the issue time; with no trips
  there, the query would emit zeros and the model would predict from them.
  A feed that merely stalled is not refused: each served row carries its
  data's age (`data_age_minutes`) and `skew` flags staleness.
  """
  from taxi_demand.data.reader import data_age_of  # noqa: PLC0415
  known = wh.history_at(cfg or demand_sql.QueryConfig(), issued_at)
  if known["first_span"] is None:
    raise TaxiDemandError(
        f"the warehouse {wh.path} has no trips; load some first "
        "(taxi-demand load or simulate)")
  first = spans.start_of(known["first_span"])
  lookback = features.LOOKBACK_DAYS * features.SECONDS_PER_DAY
  newest = known["newest_s"]
  if issued_at - lookback < first or newest is None or (
      issued_at - newest > lookback):
    raise TaxiDemandError(
        f"no history for a forecast issued at {format_epoch(issued_at)}: the "
        f"warehouse has trips from {format_epoch(first)} to "
        f"{format_epoch(wh.newest_trip_epoch())}, and a forecast needs the "
        f"{features.LOOKBACK_DAYS} days before its issue time; pass --at "
        "inside that range")
  return data_age_of(issued_at, known["known_s"])


# ---- scoring -----------------------------------------------------------------

def columns_of(table: pa.Table) -> Dict[str, np.ndarray]:
  """Serving columns of a feature table as numpy arrays."""
  return {c: table.column(c).to_numpy() for c in features.SERVING_COLUMNS}


class LoadedModel:
  """A pushed version and the query config it was trained with.

  The SavedModel (and TensorFlow) loads on first use, so bad inputs (no
  history, empty warehouse) fail in about a second.
  """

  def __init__(self, home: Home, version: Optional[str] = None):
    # A folder to load: the registry's own, or a version downloaded once
    # from Cloud Storage into the local cache. By default the serving one,
    # as ML Metadata records it (registry.recorded_version).
    version = version or registry.recorded_version(home.models,
                                                   home.metadata)
    path = registry.local_copy(home.models, version)
    self.version = path.name
    self.path = path
    self.cfg = query_config_of(home, self.version)
    self._predictor: Any = None  # a saved_model.RawPredictor, loaded lazily
    self._said_no_rates = False

  def supply_rates(self):
    """The supply rates recorded with this version
    (`supply_rates.RecordedRates`), or None for a version pushed without
    them: the job then fits them at serving, and says so once."""
    from taxi_demand import supply_rates  # noqa: PLC0415
    found = supply_rates.recorded(self.path)
    if found is None and not self._said_no_rates:
      self._said_no_rates = True
      print(f"warning: model {self.version} has no recorded supply rates "
            f"(pushed before they were): its supply forecast fits them from "
            f"the four weeks before each serving day "
            f"({supply_rates.FIT_AT_SERVING})", file=sys.stderr)
    return found

  def load(self) -> "LoadedModel":
    if self._predictor is None:
      from taxi_demand.modeling import saved_model  # noqa: PLC0415 - TensorFlow
      self._predictor = saved_model.load_for_serving(str(self.path))
    return self

  def score(self, table: pa.Table) -> np.ndarray:
    """predicted_pickups for every row of a serving feature table."""
    if table.num_rows == 0:
      return np.zeros(0, np.float32)
    from taxi_demand.modeling import saved_model  # noqa: PLC0415
    return self.load()._predictor(columns_of(table))[
        saved_model.PREDICTION_KEY]


@dataclasses.dataclass
class JobResult:
  """One prediction job's output."""
  model_version: str
  slot_start: int
  issued_at: int
  data_age_s: int
  horizon: int
  predicted_at: datetime.datetime
  features: pa.Table
  predictions: pa.Table
  log_files: List[str]
  seconds: Dict[str, float]

  def rows(self) -> List[Dict[str, Any]]:
    """The predictions as [{cell, slot_start, predicted_pickups, ...}]."""
    at = self.predicted_at.replace(tzinfo=datetime.timezone.utc).isoformat()
    return [{"cell": int(r["cell"]), "slot_start": int(r["slot_start"]),
             "issued_at": int(r["issued_at"]),
             "lead_minutes": int(r["lead_minutes"]),
             "data_age_minutes": round(self.data_age_s / 60, 1),
             "predicted_pickups": float(r["predicted_pickups"]),
             "model_version": r["model_version"], "predicted_at": at}
            for r in self.predictions.to_pylist()]


def serving_ticks(home: Home, cfg: demand_sql.QueryConfig,
                  issued_at: int, horizon: int) -> Tuple[pa.Table, int]:
  """Features of the `horizon` slots from `issued_at` for every cell, at
  `issued_at` and at each tick before it that forecast them (each row as
  known at its own issue time: `Reader.serving_ticks`), read-only from the
  warehouse, and how long before `issued_at` the newest of the trips known
  then arrived (seconds: a stalled feed shows here)."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  with open_reader(home.warehouse) as wh:
    age = check_history(wh, issued_at, cfg)
    rows = wh.serving_ticks(cfg, issued_at, horizon)
  if revision.at_tick(rows, issued_at).num_rows == 0:
    raise TaxiDemandError(
        f"no cells to serve at {format_epoch(issued_at)}: the demand query "
        "found none (grid cells need pickups in the last 7 days)")
  return rows, age


def served_forecast(model: LoadedModel, rows: pa.Table, issued_at: int
                    ) -> Tuple[pa.Table, np.ndarray]:
  """The rows issued at `issued_at` and the forecasts served for them: the
  model's, revised tick by tick from the slot's first forecast in `rows`
  (`serving_ticks`; taxi_demand.serving.revision)."""
  return revision.served_at(rows, model.score(rows), issued_at)


def run_job(home: Home, model: LoadedModel, at_epoch: int,
            horizon: int = 1) -> JobResult:
  """Features -> forecasts -> the served log, for one slot range.

  The warehouse is only read: the tick's output goes to the served log
  (servelog.append), so a tick never waits for the warehouse's one writer
  longer than a load takes, and never makes a load wait.
  """
  seconds = {}
  started = time.perf_counter()
  cfg = model.cfg
  issued_at = issue_time(at_epoch)
  slot_start = slot_at_or_after(cfg, issued_at)
  rows, age = serving_ticks(home, cfg, issued_at, horizon)
  seconds["features"] = time.perf_counter() - started

  mark = time.perf_counter()
  table, predicted = served_forecast(model, rows, issued_at)
  seconds["score"] = time.perf_counter() - mark
  mark = time.perf_counter()
  try:
    idle, supply_tag = supply_forecast_for(home.warehouse, cfg, table,
                                           model.supply_rates())
  except Exception as e:  # pylint: disable=broad-except
    from taxi_demand.data import warehouse  # noqa: PLC0415
    if warehouse.interrupted(e):
      # Ctrl-C landed in the supply query: DuckDB answered it with an
      # exception of its own, which is a stop, not a supply failure.
      raise KeyboardInterrupt from e
    # The supply forecast rides beside the demand forecast: a failure of
    # its own (a city whose trips it cannot read) logs it null, one line
    # said, and never costs the tick its demand forecast.
    print(f"warning: no supply forecast at {format_epoch(issued_at)}: "
          f"{type(e).__name__}: {e}", file=sys.stderr)
    idle, supply_tag = None, None
  seconds["supply"] = time.perf_counter() - mark
  predicted_at = datetime.datetime.now(datetime.timezone.utc).replace(
      tzinfo=None)
  n = table.num_rows
  predictions = pa.table({
      "cell": table.column(features.CELL),
      "slot_start": table.column(features.SLOT_START),
      "issued_at": table.column(features.ISSUED_AT),
      "lead_minutes": table.column(features.LEAD_MINUTES),
      "predicted_pickups": pa.array(np.asarray(predicted, np.float64)),
      "model_version": pa.array([model.version] * n, pa.string()),
      "predicted_at": pa.array([predicted_at] * n, pa.timestamp("us")),
  })

  mark = time.perf_counter()
  files = servelog.append(home.serving_log, table, model.version, predicted_at,
                          data_age_s=age, predicted=predicted,
                          predicted_idle=idle, supply_rates=supply_tag)
  seconds["write"] = time.perf_counter() - mark
  seconds["total"] = time.perf_counter() - started
  return JobResult(model_version=model.version, slot_start=slot_start,
                   issued_at=issued_at, data_age_s=age,
                   horizon=horizon, predicted_at=predicted_at, features=table,
                   predictions=predictions, log_files=[str(f) for f in files],
                   seconds=seconds)


def supply_forecast_for(warehouse, cfg, table: pa.Table, recorded=None
                        ) -> Tuple[Optional[np.ndarray], Optional[str]]:
  """The supply forecast (taxi_demand.supply: mean idle taxis) for each
  served row's cell and slot, from what the warehouse knew at the rows'
  issue time, and the tag of the rates that made it.

  The one path that makes a served supply forecast: the 5-minute job calls
  it at the tick, skew again afterwards with the rates the row's tag names.

  Args:
    warehouse: the warehouse address (a DuckDB file or bq://...).
    cfg: the model's QueryConfig.
    table: one tick's serving feature rows.
    recorded: the model's `supply_rates.RecordedRates`; None fits the
      rates from the four weeks before the tick's day (a model pushed
      without them).

  Returns:
    (forecast per row, tag), or (None, None) where no trip of the rates'
    weeks carries a taxi_id.
  """
  from taxi_demand import supply  # noqa: PLC0415
  from taxi_demand import supply_rates  # noqa: PLC0415
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  if table.num_rows == 0:
    return None, None
  issued = int(table.column(features.ISSUED_AT)[0].as_py())
  row_cells = table.column(features.CELL).to_numpy()
  row_slots = table.column(features.SLOT_START).to_numpy()
  cells = np.unique(row_cells)
  rates, tag = supply_rates.rates_for(
      recorded, warehouse, cfg, cells,
      issued - issued % features.SECONDS_PER_DAY)
  if rates is None:
    return None, None
  with open_reader(warehouse) as wh:
    state = supply.state_at(wh, cfg, cells, issued)
  starts = np.unique(row_slots)
  grid = supply.forecast(rates, state, starts, cfg.slot_seconds)
  return grid[np.searchsorted(cells, row_cells),
              np.searchsorted(starts, row_slots)], tag


def last_served_tick(home: Home, at_epoch: int) -> Optional[int]:
  """The newest issue time logged at or before `at_epoch` (file names only:
  a tick's slots start on its own day or the next)."""
  day = spans.span_of_epoch(at_epoch)
  days = [spans.day_of(day + d) for d in (-1, 0, 1)]
  ticks = [t for t in servelog.served_ticks(home.serving_log, days)
           if t <= at_epoch]
  return max(ticks, default=None)


def due_ticks(now: int, interval_s: int, last: Optional[int],
              catch_up_s: int) -> List[int]:
  """Ticks to serve at `now`: the current one, and those missed since `last`
  (a restart after a crash, a tick that ran long) up to `catch_up_s` back.

  Ticks sit on multiples of the interval; each is issued at its own time, so
  a late one uses only what was known then.
  """
  current = int(now) - int(now) % interval_s
  if last is None or last >= current:
    return [] if last == current else [current]
  first = max(last + interval_s - (last + interval_s) % interval_s,
              current - (catch_up_s // interval_s) * interval_s)
  return list(range(first, current + 1, interval_s))


def missing_ticks(home: Home, now: int, interval_s: int,
                  catch_up_s: int) -> List[int]:
  """Ticks a job starting at `now` serves: the current one, and every tick
  up to `catch_up_s` back that the served log lacks, oldest first.

  Unlike a long-running job's backlog (`due_ticks`, after the newest served
  tick), a gap between served ticks counts too: a run that failed at 10:05
  while 10:10 succeeded is served by the run at 10:15. Ticks are owed from
  the oldest one served, or from the deployment's recorded start if that
  is older (a job killed before it served its first tick still owes the
  ticks since it began). A log with neither, up to `catch_up_s` back, is a
  first deployment: it gets the current tick, and records its start.
  """
  current = int(now) - int(now) % interval_s
  first = current - (catch_up_s // interval_s) * interval_s
  # A tick's slots start on its own day or the next.
  days = [spans.day_of(d) for d in range(spans.span_of_epoch(first) - 1,
                                         spans.span_of_epoch(current) + 2)]
  served = {t for t in servelog.served_ticks(home.serving_log, days)
            if t <= current}
  start = servelog.job_start(home.serving_log)
  owed_from = sorted(served) + ([start] if start is not None
                                and first <= start <= current else [])
  if not owed_from:
    servelog.record_job_start(home.serving_log, current)
    return [current]
  return [t for t in range(max(first, min(owed_from)), current + 1,
                           interval_s) if t not in served]


class _Server:
  """Serves ticks with the serving model, reloading it when CURRENT moves
  (unless `version` pins one); each tick's failure is reported, not raised."""

  def __init__(self, home: Home, version: Optional[str], horizon: int,
               on_result: Callable[[JobResult], None],
               on_error: Callable[[str], None],
               on_reload: Callable[[str, Optional[str]], None]):
    self.home, self.version, self.horizon = home, version, horizon
    self.on_result, self.on_error, self.on_reload = (on_result, on_error,
                                                     on_reload)
    # A pinned version that does not exist is an input error, not a bad tick.
    self.model: Optional[LoadedModel] = (
        LoadedModel(home, version).load() if version else None)
    if self.model is not None:
      on_reload(self.model.version, None)

  def serve(self, tick: int) -> bool:
    """Serves one tick; False if it failed (reported through on_error)."""
    try:
      wanted = self.version or registry.serving_version(self.home.models)
      if not self.version and wanted is not None and (
          self.model is None or wanted != self.model.version):
        # CURRENT moved: serve its version once ML Metadata records the
        # push (a Pusher killed between the two writes never does).
        wanted = registry.recorded_version(self.home.models,
                                           self.home.metadata)
      if self.model is None or (wanted is not None
                                and wanted != self.model.version):
        previous = self.model.version if self.model else None
        self.model = LoadedModel(self.home, wanted).load()
        self.on_reload(self.model.version, previous)
      self.on_result(run_job(self.home, self.model, tick, self.horizon))
      return True
    except TaxiDemandError as e:
      self.on_error(str(e))
      return False
    except Exception as e:  # pylint: disable=broad-except
      from taxi_demand.data import warehouse  # noqa: PLC0415
      if warehouse.interrupted(e):  # Ctrl-C while DuckDB was querying
        raise KeyboardInterrupt from e
      raise


def serve_due(home: Home, interval_s: int, *, version: Optional[str] = None,
              at_epoch: Optional[int] = None, horizon: int = 1,
              on_result: Callable[[JobResult], None],
              on_error: Callable[[str], None],
              on_reload: Callable[[str, Optional[str]], None],
              catch_up_s: int = 3600) -> Tuple[int, int]:
  """One pass of the 5-minute job, then return: what a scheduler runs.

  Serves the current tick (of `at_epoch`, default now) and the ticks the
  log lacks up to `catch_up_s` back (`missing_ticks`), each as of its own
  time. Returns (served, failed); a failed tick is served by the next pass.
  A failure is reported once; the same failure on the next tick ends the
  pass.
  """
  now = now_epoch() if at_epoch is None else int(at_epoch)
  servelog.sweep(home.serving_log)
  said: List[str] = []

  def once(message: str) -> None:
    said.append(message)
    if len(said) < 2 or said[-2] != message:
      on_error(message)

  server = _Server(home, version, horizon, on_result, once, on_reload)
  served = failed = 0
  for tick in missing_ticks(home, now, interval_s, catch_up_s):
    if server.serve(tick):
      served += 1
      continue
    failed += 1
    # The same failure twice running is the setting, not the tick (a role
    # missing, the service down): the next run serves the rest, rather
    # than this one retrying each tick until its time runs out.
    if len(said) > 1 and said[-1] == said[-2]:
      break
  return served, failed


def serve_every(home: Home, interval_s: int, *, version: Optional[str] = None,
                at_epoch: Optional[int] = None, horizon: int = 1,
                on_result: Callable[[JobResult], None],
                on_error: Callable[[str], None],
                on_reload: Callable[[str, Optional[str]], None],
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic,
                speed: float = 1.0, catch_up_s: int = 3600) -> int:
  """Serves every tick until KeyboardInterrupt; returns the jobs run.

  Ticks are the multiples of `interval_s`. A tick not served yet is served
  once; a restart serves the ticks the log lacks, up to `catch_up_s` back,
  so a killed job loses none. The model loads once and again only when
  CURRENT names another version (unless `version` pins one). A failing
  tick (no history yet, a wait for the warehouse that ran out) is reported
  and the loop goes on. With `at_epoch`, the clock starts there and runs
  `speed` times as fast as real time: a past day replayed live.
  """
  server = _Server(home, version, horizon, on_result, on_error, on_reload)
  servelog.sweep(home.serving_log)
  if interval_s % demand_sql.TICK_SECONDS:
    catch_up_s = 0  # ticks off the issue grid share issue times: no backlog
  started = clock()

  def now() -> int:
    if at_epoch is None:
      return now_epoch()
    return int(at_epoch + (clock() - started) * speed)

  # The first pass serves what the log lacks, as a one-shot job would;
  # then each tick as it falls due.
  backlog = missing_ticks(home, now(), interval_s, catch_up_s)
  last = last_served_tick(home, now())
  jobs = 0
  try:
    while True:
      for tick in backlog or due_ticks(now(), interval_s, last, catch_up_s):
        server.serve(tick)
        last = tick if last is None else max(last, tick)
        jobs += 1
      backlog = []
      ahead = interval_s - now() % interval_s
      sleep(max(0.0, ahead / speed))
  except KeyboardInterrupt:
    return jobs
