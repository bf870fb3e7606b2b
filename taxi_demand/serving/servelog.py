"""The served log: exact served rows and their forecasts, Parquet by slot day.

This log is where the 5-minute job writes, not the warehouse: the warehouse
file takes one writer at a time, and a tick must not wait for a load. Each
tick writes one file per slot day it touches, named after its issue time and
model version, under a hidden name renamed into place. So a reader never sees
half a file, a killed job leaves at most a hidden temporary that the next
start sweeps away, and a tick served again (a restart) replaces its file
instead of adding a second copy.

The log's root may be a local folder or gs://BUCKET/PREFIX/... with the same
keys (taxi_demand.objectstore): there each file is one object, visible only
once its upload completes and replaced whole by a second upload, so a killed
job leaves nothing to sweep.

The served log (Home.serving_log) is the record of what drivers saw. A
replay writes the same layout to a log of its own (Home.replay_log): it
sees the warehouse as it is now, late trips included, so its file for a
tick is not what that tick served, and must never replace it.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from taxi_demand import atomic
from taxi_demand import faults
from taxi_demand import objectstore
from taxi_demand import spans
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features

MODEL_VERSION = "model_version"
PREDICTED_AT = "predicted_at"
PREDICTED = "predicted_pickups"
# Seconds from the newest trip known at the issue time to the issue time: a
# stalled feed shows here (and `skew` flags it).
DATA_AGE_S = "data_age_s"
# The supply forecast for the row's cell and slot, issued with the demand
# forecast: mean idle taxis there (taxi_demand.supply). Null in logs from
# before it, and where no trip of the weeks before carries a taxi_id.
PREDICTED_IDLE = "predicted_idle_taxis"
# Which rates made the row's supply forecast (taxi_demand.supply_rates):
# "recorded:<digest>", those pushed with model_version, or "fit-at-serving".
# Null with no supply forecast, and in logs from before it.
SUPPLY_RATES = "supply_rates"
# What the log adds to the served feature columns.
EXTRA_COLUMNS = (MODEL_VERSION, PREDICTED_AT, DATA_AGE_S, PREDICTED,
                 PREDICTED_IDLE, SUPPLY_RATES)
# Columns that logs written before forecasts carried their issue time (or
# their forecast, or supply features) lack; such files still read, with these
# null (and DayLog.has_issue_times False without issue times).
_ISSUE_COLUMNS = (features.ISSUED_AT, features.LEAD_MINUTES,
                  features.NOW_PICKUPS, features.NOW_ELAPSED, DATA_AGE_S)
_NEWER_COLUMNS = (_ISSUE_COLUMNS + (PREDICTED, PREDICTED_IDLE,
                                     SUPPLY_RATES) +
                  features.SUPPLY_FEATURES)
_PARTITION = "date="
_TICK_FILES = "part-i*-v*.parquet"
# At the log's root: the first tick owed by the 5-minute job's deployment
# (see `record_job_start`).
_JOB_START = "job-start"
# A local path, or a gs:// address (a str).
Location = Union[os.PathLike, str]
Address = Union[Path, str]


def day_of_slot(slot_start: int) -> datetime.date:
  """The (Chicago wall clock) day a slot starts on.

  slot_start is wall clock read as UTC epoch seconds (see demand.sql), so the
  UTC date is the local date.
  """
  return spans.day_of_epoch(slot_start)


parse_date = spans.parse_day


def _partition_key(day: datetime.date) -> str:
  return f"{_PARTITION}{day.isoformat()}"


def partition(log_root: Location, day: datetime.date) -> Address:
  """The folder holding one day's served rows (a gs:// str on Cloud Storage)."""
  return objectstore.join(log_root, _partition_key(day))


def append(log_root: Location, served: pa.Table, model_version: str,
           predicted_at: datetime.datetime,
           data_age_s: Optional[int] = None,
           predicted=None, predicted_idle=None,
           supply_rates: Optional[str] = None) -> List[Address]:
  """Writes one tick's served rows (and forecasts), one file per slot day.

  Rows are partitioned by the day of their slot, not of `predicted_at`: the
  skew check asks "what did we serve for day D", and a horizon may cross
  midnight. Rows of one issue time go to `part-i<issued_at>-v<version>`,
  which a second serving of the same tick replaces.

  Args:
    log_root: Home.serving_log: a folder or a gs:// address.
    served: the served feature rows (features.SERVING_COLUMNS), as given to
      the model.
    model_version: the pushed version that scored them.
    predicted_at: when, as a naive UTC datetime.
    data_age_s: the age of the newest trip known at the issue time.
    predicted: the forecast for each row (predicted_pickups), if scored.
    predicted_idle: the supply forecast for each row (predicted_idle_taxis),
      if made.
    supply_rates: the tag of the rates that made `predicted_idle`
      (SUPPLY_RATES).

  Returns:
    The files written (gs:// strs on Cloud Storage).
  """
  n = served.num_rows
  if n == 0:
    return []
  table = served.append_column(
      MODEL_VERSION, pa.array([str(model_version)] * n, pa.string()))
  table = table.append_column(
      PREDICTED_AT, pa.array([predicted_at] * n, pa.timestamp("us")))
  table = table.append_column(
      DATA_AGE_S, pa.array([data_age_s] * n, pa.int64()))
  for name, values in ((PREDICTED, predicted),
                       (PREDICTED_IDLE, predicted_idle)):
    table = table.append_column(name, pa.nulls(n, pa.float64())
                                if values is None else pa.array(
                                    np.asarray(values, np.float64)))
  table = table.append_column(SUPPLY_RATES, pa.array(
      [supply_rates if predicted_idle is not None else None] * n, pa.string()))
  # spans.span_of_epoch of each row, at once.
  days = pc.divide(table.column(features.SLOT_START),
                   pa.scalar(spans.SECONDS_PER_DAY, pa.int64()))
  issued = (set(table.column(features.ISSUED_AT).to_pylist())
            if features.ISSUED_AT in table.column_names else set())
  stamp = (f"i{issued.pop()}" if len(issued) == 1
           else f"{time.time_ns()}-{os.getpid()}")
  store = objectstore.at(log_root)
  written = []
  for day_number in sorted(set(days.to_pylist())):
    part = table.filter(pc.equal(days, pa.scalar(day_number, pa.int64())))
    folder = _partition_key(spans.day_of(day_number))
    written.append(_write_atomically(
        part, store, f"{folder}/part-{stamp}-v{model_version}.parquet"))
  return written


def _write_atomically(table: pa.Table, store: objectstore.Store,
                      key: str) -> Address:
  """Writes one whole file: locally under a hidden name that carries our
  pid, then renamed; on Cloud Storage as one upload."""
  sink = pa.BufferOutputStream()
  pq.write_table(table, sink)
  store.write_bytes(key, sink.getvalue().to_pybytes(),
                    before_publish=lambda: faults.point("servelog.written"))
  faults.point("servelog.published")
  return store.child(key)


def sweep(log_root: Location) -> List[Path]:
  """Deletes the temporaries of writers that died (kill -9 mid-write).

  A temporary's name ends in its writer's pid; one whose process is gone
  will never be renamed into place. Cloud Storage has none: an upload that
  died never became an object.
  """
  if objectstore.is_gcs(log_root):
    objectstore.at(log_root)  # a bad address still fails here
    return []
  root = Path(log_root)
  removed = []
  for tmp in (root.glob(f"{_PARTITION}*/.*{atomic.SUFFIX}")
              if root.is_dir() else []):
    pid = atomic.writer_pid(tmp)
    if pid is not None and not _alive(pid):
      tmp.unlink(missing_ok=True)
      removed.append(tmp)
  return removed


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def served_ticks(log_root: Location, days: Sequence[datetime.date]
                 ) -> Dict[int, List[str]]:
  """{issued_at: [model versions]} of the ticks logged for `days`' slots,
  read from file names alone (cheap enough for every start of the job)."""
  store = objectstore.at(log_root)
  out: Dict[int, List[str]] = {}
  for day in days:
    for name in fnmatch.filter(store.listing(_partition_key(day))[1],
                               _TICK_FILES):
      stem = name[:-len(".parquet")]
      issued, _, version = stem[len("part-i"):].partition("-v")
      if issued.isdigit():
        out.setdefault(int(issued), []).append(version)
  return out


def job_start(log_root: Location) -> Optional[int]:
  """The tick the job's newest deployment began owing (None if none is
  recorded, or the record is unreadable: then only what was served counts)."""
  text = objectstore.at(log_root).read_bytes(_JOB_START)
  try:
    return int(text.decode()) if text else None
  except (UnicodeDecodeError, ValueError):
    return None


def record_job_start(log_root: Location, tick: int) -> None:
  """Records that a deployment owes every tick from `tick` on.

  Served ticks say where the job is; before its first one is served (a kill
  while the first tick waits for data, a model not pushed yet) only this
  record says since when ticks are owed, so the restart serves them too.
  """
  objectstore.at(log_root).write_bytes(_JOB_START, str(int(tick)).encode())


def forecasts_between(log_root: Location, begin: int, end: int,
                      version: Optional[str] = None,
                      value: str = PREDICTED) -> pa.Table:
  """Served forecasts for target slots in [begin, end), oldest first.

  Columns cell, slot_start, issued_at, lead_minutes, `value` (the demand
  forecast, PREDICTED, or the supply forecast, PREDICTED_IDLE),
  model_version; rows logged without it (older logs) are left out.
  """
  first = spans.span_of_epoch(begin)
  last = spans.span_of_epoch(int(end) - 1)
  keep = [features.CELL, features.SLOT_START, features.ISSUED_AT,
          features.LEAD_MINUTES, value, MODEL_VERSION]
  parts = []
  for day_number in range(first, last + 1):
    try:
      log = read_day(log_root, spans.day_of(day_number))
    except TaxiDemandError:
      continue
    table = log.table
    mask = pc.and_(pc.and_(
        pc.greater_equal(table.column(features.SLOT_START), int(begin)),
        pc.less(table.column(features.SLOT_START), int(end))),
        pc.is_valid(table.column(value)))
    if version is not None:
      mask = pc.and_(mask, pc.equal(table.column(MODEL_VERSION), str(version)))
    parts.append(table.filter(mask).select(keep))
  schema = pa.schema([(features.CELL, pa.int64()),
                      (features.SLOT_START, pa.int64()),
                      (features.ISSUED_AT, pa.int64()),
                      (features.LEAD_MINUTES, pa.int64()),
                      (value, pa.float64()), (MODEL_VERSION, pa.string())])
  table = (pa.concat_tables([p.cast(schema) for p in parts]) if parts
           else schema.empty_table())
  return table.sort_by([(features.SLOT_START, "ascending"),
                        (features.CELL, "ascending"),
                        (features.ISSUED_AT, "ascending")])


@dataclasses.dataclass
class DayLog:
  """One day of the served-feature log, as read.

  Attributes:
    day: the slot day.
    folder: its partition folder (a gs:// str on Cloud Storage).
    table: every readable row, in file order.
    files: the files that were read (gs:// strs on Cloud Storage).
    skipped: (file, one-line reason) for files that could not be read.
    has_issue_times: every row carries its issue time and lead (files from
      before this log recorded them do not).
  """

  day: datetime.date
  folder: Address
  table: pa.Table
  files: List[Address]
  skipped: List[Tuple[Address, str]]
  has_issue_times: bool = True

  def versions(self) -> List[Tuple[str, int]]:
    """(model version, rows) in the log, most rows first."""
    counts = {}
    for v in self.table.column(MODEL_VERSION).to_pylist():
      counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

  def rows_of(self, version: str) -> pa.Table:
    return self.table.filter(
        pc.equal(self.table.column(MODEL_VERSION), pa.scalar(str(version))))


def _one_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def read_day(log_root: Location, day: datetime.date) -> DayLog:
  """Reads one day of the log; unreadable files are skipped and named.

  Raises:
    TaxiDemandError: no partition for the day, or no readable row in it.
  """
  store = objectstore.at(log_root)
  folder = partition(log_root, day)
  keys = [f"{_partition_key(day)}/{name}"
          for name in store.listing(_partition_key(day))[1]
          if name.endswith(".parquet") and not name.startswith(".")]
  if not keys:
    raise TaxiDemandError(
        f"no served features logged for {day.isoformat()} under {log_root}"
        f"{_logged_days_hint(log_root)}")
  want = list(features.SERVING_COLUMNS) + list(EXTRA_COLUMNS)
  tables, read, skipped = [], [], []
  complete = True
  for key, data in zip(keys, store.read_many(keys)):
    path = store.child(key)
    try:
      if isinstance(data, OSError):
        raise data
      if data is None:
        raise FileNotFoundError("deleted while the day was read")
      table = pq.read_table(pa.BufferReader(data))
      for column in _NEWER_COLUMNS:
        if column not in table.column_names:
          complete = complete and column not in _ISSUE_COLUMNS
          table = table.append_column(column, pa.nulls(table.num_rows))
      missing = [c for c in want if c not in table.column_names]
      if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
      tables.append(table.select(want))
      read.append(path)
    except Exception as e:  # pylint: disable=broad-except  (any bad file)
      skipped.append((path, _one_line(e)))
  if not tables or sum(t.num_rows for t in tables) == 0:
    why = (f"; {len(skipped)} unreadable file(s) skipped" if skipped else "")
    raise TaxiDemandError(
        f"no served feature rows for {day.isoformat()} in {folder}{why}")
  table = pa.concat_tables([_unify(t) for t in tables])
  return DayLog(day=day, folder=folder, table=table, files=read,
                skipped=skipped, has_issue_times=complete)


def _unify(table: pa.Table) -> pa.Table:
  """Casts a file's columns to the log's types (files from older code)."""
  fields = []
  for c in features.SERVING_COLUMNS:
    fields.append(pa.field(c, pa.int64() if c in features.INT_COLUMNS
                           else pa.float64()))
  fields += [pa.field(MODEL_VERSION, pa.string()),
             pa.field(PREDICTED_AT, pa.timestamp("us")),
             pa.field(DATA_AGE_S, pa.int64()),
             pa.field(PREDICTED, pa.float64()),
             pa.field(PREDICTED_IDLE, pa.float64()),
             pa.field(SUPPLY_RATES, pa.string())]
  return table.cast(pa.schema(fields))


def logged_days(log_root: Location) -> List[str]:
  """The slot days the log holds, as YYYY-MM-DD, oldest first."""
  return sorted(name[len(_PARTITION):]
                for name in objectstore.at(log_root).listing()[0]
                if name.startswith(_PARTITION))


def _logged_days_hint(log_root: Location) -> str:
  days = logged_days(log_root)
  if not days:
    return " (the log is empty: run `taxi-demand predict` first)"
  shown = days if len(days) <= 3 else [days[0], "...", days[-1]]
  return f" (logged days: {', '.join(shown)})"

