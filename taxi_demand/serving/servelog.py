"""The served-feature log: exact served rows as Parquet, partitioned by slot day."""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from taxi_demand import spans
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features

MODEL_VERSION = "model_version"
PREDICTED_AT = "predicted_at"
# Seconds from the newest trip known at the issue time to the issue time: a
# stalled feed shows here (and `skew` flags it).
DATA_AGE_S = "data_age_s"
# What the log adds to the served feature columns.
EXTRA_COLUMNS = (MODEL_VERSION, PREDICTED_AT, DATA_AGE_S)
# Columns that logs written before forecasts carried their issue time lack;
# such files still read, with these null (and DayLog.has_issue_times False).
_NEWER_COLUMNS = (features.ISSUED_AT, features.LEAD_MINUTES,
                  features.NOW_PICKUPS, features.NOW_ELAPSED, DATA_AGE_S)
_PARTITION = "date="
_SECONDS_PER_DAY = features.SECONDS_PER_DAY


def day_of_slot(slot_start: int) -> datetime.date:
  """The (Chicago wall clock) day a slot starts on.

  slot_start is wall clock read as UTC epoch seconds (see demand.sql), so the
  UTC date is the local date.
  """
  return spans.day_of(int(slot_start) // _SECONDS_PER_DAY)


parse_date = spans.parse_day


def partition(log_root: os.PathLike, day: datetime.date) -> Path:
  """The folder holding one day's served rows."""
  return Path(log_root) / f"{_PARTITION}{day.isoformat()}"


def append(log_root: os.PathLike, served: pa.Table, model_version: str,
           predicted_at: datetime.datetime,
           data_age_s: Optional[int] = None) -> List[Path]:
  """Appends served feature rows, one new file per slot day touched.

  Rows are partitioned by the day of their slot, not of `predicted_at`: the
  skew check asks "what did we serve for day D", and a horizon may cross
  midnight. Each file is written under a hidden name and renamed into place,
  so a concurrent reader never sees half a file.

  Args:
    log_root: Home.serving_log.
    served: the served feature rows (features.SERVING_COLUMNS), as given to
      the model.
    model_version: the pushed version that scored them.
    predicted_at: when, as a naive UTC datetime.
    data_age_s: the age of the newest trip known at the issue time.

  Returns:
    The files written.
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
  days = pc.divide(table.column(features.SLOT_START),
                   pa.scalar(_SECONDS_PER_DAY, pa.int64()))
  stamp = f"{time.time_ns()}-{os.getpid()}"
  written = []
  for day_number in sorted(set(days.to_pylist())):
    part = table.filter(pc.equal(days, pa.scalar(day_number, pa.int64())))
    folder = partition(log_root, day_of_slot(day_number * _SECONDS_PER_DAY))
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{stamp}-v{model_version}.parquet"
    tmp = folder / f".{final.name}.tmp"
    pq.write_table(part, tmp)
    os.replace(tmp, final)
    written.append(final)
  return written


@dataclasses.dataclass
class DayLog:
  """One day of the served-feature log, as read.

  Attributes:
    day: the slot day.
    folder: its partition folder.
    table: every readable row, in file order.
    files: the files that were read.
    skipped: (file, one-line reason) for files that could not be read.
    has_issue_times: every row carries its issue time and lead (files from
      before this log recorded them do not).
  """

  day: datetime.date
  folder: Path
  table: pa.Table
  files: List[Path]
  skipped: List[Tuple[Path, str]]
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


def read_day(log_root: os.PathLike, day: datetime.date) -> DayLog:
  """Reads one day of the log; unreadable files are skipped and named.

  Raises:
    TaxiDemandError: no partition for the day, or no readable row in it.
  """
  folder = partition(log_root, day)
  files = sorted(p for p in folder.glob("*.parquet")
                 if not p.name.startswith(".")) if folder.is_dir() else []
  if not files:
    raise TaxiDemandError(
        f"no served features logged for {day.isoformat()} under {log_root}"
        f"{_logged_days_hint(log_root)}")
  want = list(features.SERVING_COLUMNS) + list(EXTRA_COLUMNS)
  tables, read, skipped = [], [], []
  complete = True
  for path in files:
    try:
      table = pq.read_table(path)
      for column in _NEWER_COLUMNS:
        if column not in table.column_names:
          complete = False
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
             pa.field(DATA_AGE_S, pa.int64())]
  return table.cast(pa.schema(fields))


def logged_days(log_root: os.PathLike) -> List[str]:
  root = Path(log_root)
  if not root.is_dir():
    return []
  return sorted(p.name[len(_PARTITION):] for p in root.iterdir()
                if p.is_dir() and p.name.startswith(_PARTITION))


def _logged_days_hint(log_root: os.PathLike) -> str:
  days = logged_days(log_root)
  if not days:
    return " (the log is empty: run `taxi-demand predict` first)"
  shown = days if len(days) <= 3 else [days[0], "...", days[-1]]
  return f" (logged days: {', '.join(shown)})"


def write_rows(path: os.PathLike, table: pa.Table) -> Path:
  """Writes a log file as `append` would, for tools and tests that edit logs."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(table, path)
  return path

