"""The embedded DuckDB warehouse: load trips with quarantine, run the demand query."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import duckdb
import pyarrow as pa

from taxi_demand.data import contract
from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features
from taxi_demand import spans

TRIP_SUFFIXES = (".csv", ".parquet")
# Simulator truth files (taxi_demand.data.simulate) go to the `truth` table.
TRUTH_PREFIX = "truth"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS trips (
  {', '.join(f'{name} {kind}' for name, kind in contract.TRIP_COLUMNS.items())}
);
CREATE TABLE IF NOT EXISTS quarantine (
  source_file VARCHAR, rule VARCHAR, raw VARCHAR, quarantined_at TIMESTAMP
);
-- Simulated truth: intensity = lambda, the expected pickups of a community
-- area in the 15-minute slot starting at slot_start (epoch seconds).
CREATE TABLE IF NOT EXISTS truth (
  community_area BIGINT, slot_start BIGINT, intensity DOUBLE,
  PRIMARY KEY (community_area, slot_start)
);
-- Served forecasts: what was forecast at issued_at for the slot at
-- slot_start. A forecast issued later for the same slot is another row.
CREATE TABLE IF NOT EXISTS predictions (
  cell BIGINT, slot_start BIGINT, issued_at BIGINT, lead_minutes BIGINT,
  predicted_pickups DOUBLE, model_version VARCHAR, predicted_at TIMESTAMP,
  PRIMARY KEY (cell, slot_start, issued_at, model_version)
);
CREATE TABLE IF NOT EXISTS loads (
  fingerprint VARCHAR PRIMARY KEY, path VARCHAR, kind VARCHAR, read BIGINT,
  loaded BIGINT, quarantined BIGINT, loaded_at TIMESTAMP
);
"""

_DEMAND_SCHEMA = pa.schema(
    [(c, pa.int64() if c in features.INT_COLUMNS else pa.float64())
     for c in features.RAW_COLUMNS])


@dataclasses.dataclass
class LoadReport:
  """What one `load` did. Invariant: read == loaded + quarantined.

  Files already loaded (same content fingerprint) are listed in `skipped` and
  not read again, which is what makes loading the same file twice a no-op.
  """

  read: int = 0
  loaded: int = 0
  quarantined: int = 0
  per_rule: dict[str, int] = dataclasses.field(
      default_factory=lambda: {r: 0 for r in contract.RULE_NAMES})
  files: list[str] = dataclasses.field(default_factory=list)
  skipped: list[str] = dataclasses.field(default_factory=list)
  truth_rows: int = 0

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _q(name: str) -> str:
  return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
  return "'" + text.replace("'", "''") + "'"


def discover(paths: Sequence[str | os.PathLike]) -> list[Path]:
  """Files to load under `paths` (files, or folders walked recursively)."""
  if not paths:
    raise TaxiDemandError("nothing to load: give at least one file or folder")
  out: list[Path] = []
  for raw in paths:
    path = Path(raw)
    if path.is_dir():
      found = sorted(p for p in path.rglob("*")
                     if p.is_file() and p.suffix.lower() in TRIP_SUFFIXES)
      if not found:
        raise TaxiDemandError(f"{path}: no .csv or .parquet files in folder")
      out.extend(found)
    elif path.is_file():
      out.append(path)
    else:
      raise TaxiDemandError(f"{path}: no such file or folder")
  return out


def _fingerprint(path: Path) -> str:
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _sniff(path: Path) -> str:
  """'parquet' or 'csv', or a one-line error naming the file."""
  if path.stat().st_size == 0:
    raise TaxiDemandError(f"{path}: empty file")
  with path.open("rb") as f:
    head = f.read(_SNIFF_BYTES)
  if head.startswith(_PARQUET_MAGIC):
    return "parquet"
  # Text files have no NUL bytes; anything else is binary (gzip, xlsx, ...).
  if b"\x00" in head:
    raise TaxiDemandError(f"{path}: binary file, expected CSV or Parquet")
  try:
    head.decode("utf-8")
  except UnicodeDecodeError as e:
    if e.start < len(head) - 4:  # not just a character cut at the boundary
      raise TaxiDemandError(
          f"{path}: binary or non-UTF-8 file, expected CSV or Parquet") from e
  header = head.decode("utf-8", errors="ignore").splitlines()[0] \
      if head.strip() else ""
  if not header.strip():
    raise TaxiDemandError(f"{path}: empty file (no header line)")
  if "," not in header:
    for delim, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
      if delim in header:
        raise TaxiDemandError(
            f"{path}: wrong delimiter: header is separated by {name}, "
            "expected ','")
  return "csv"


def interrupted(error: BaseException) -> bool:
  """Whether `error` is DuckDB's answer to Ctrl-C during a query.

  DuckDB turns a SIGINT that arrives mid-query into an exception of its own
  (RuntimeError "Query interrupted", or InterruptException), not
  KeyboardInterrupt; a loop that stops on Ctrl-C must treat it as one.
  """
  return isinstance(error, duckdb.InterruptException) or (
      isinstance(error, RuntimeError) and
      str(error).strip() == "Query interrupted")


class Warehouse:
  """One DuckDB file holding trips, quarantine, truth and predictions.

  Open read-only wherever you only read: several processes may then read at
  once (DuckDB allows one writer or many readers per file).
  """

  def __init__(self, path: str | os.PathLike, read_only: bool = False):
    self.path = Path(path)
    self.read_only = read_only
    if read_only:
      if not self.path.exists():
        raise TaxiDemandError(
            f"no warehouse at {self.path}: run `taxi-demand load` or "
            "`taxi-demand simulate` first")
    else:
      self.path.parent.mkdir(parents=True, exist_ok=True)
    try:
      self.con = duckdb.connect(str(self.path), read_only=read_only)
    except (duckdb.IOException, duckdb.ConnectionException) as e:
      # IOException: another process holds the write lock. ConnectionException:
      # this process has it open in the other mode (close that Warehouse).
      raise TaxiDemandError(
          f"cannot open warehouse {self.path}: {str(e).splitlines()[0]}") from e
    # BigQuery computes calendar fields of TIMESTAMPs in UTC; the transpiled
    # query builds naive timestamps already, this guards ad-hoc queries too.
    self.con.execute("SET TimeZone = 'UTC'")
    self.con.execute("SET enable_progress_bar = false")
    if not read_only:
      self._keep_predictions_before_issue_times()
      self.con.execute(_SCHEMA)

  def _keep_predictions_before_issue_times(self) -> None:
    """A predictions table from before forecasts carried their issue time
    is kept, renamed, and a new one takes its place."""
    columns = {r[0] for r in self.con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'predictions'").fetchall()}
    if columns and "issued_at" not in columns:
      self.con.execute(
          "ALTER TABLE predictions RENAME TO predictions_without_issue_time")

  def close(self) -> None:
    self.con.close()

  def __enter__(self) -> "Warehouse":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ---- reading -----------------------------------------------------------

  def count(self, table: str) -> int:
    demand_sql.check_table(table)
    return self.con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]

  def span_range(self) -> tuple[int, int] | None:
    """(first, last) span (day number) with trips, or None when empty."""
    row = self.con.execute(
        "SELECT CAST(floor(epoch(min(trip_start_timestamp)) / 86400) AS BIGINT),"
        " CAST(floor(epoch(max(trip_start_timestamp)) / 86400) AS BIGINT) "
        "FROM trips").fetchone()
    return None if row[0] is None else (int(row[0]), int(row[1]))

  def trips_on(self, span: int) -> int:
    """Trips that started on day `span`."""
    begin = int(span) * 86_400
    return self.con.execute(
        "SELECT count(*) FROM trips WHERE trip_start_timestamp >= "
        "make_timestamp(CAST(? AS BIGINT) * 1000000) AND trip_start_timestamp"
        " < make_timestamp(CAST(? AS BIGINT) * 1000000)",
        [begin, begin + 86_400]).fetchone()[0]

  def fingerprint(self, until_epoch: int, since_epoch: int = 0) -> str:
    """A digest of every trip that starts in [since_epoch, until_epoch).

    Any load, quarantine fix or re-simulation that changes what a span's
    query could read changes it; ExampleGen's cache key includes it.
    """
    until, since = int(until_epoch), int(since_epoch)
    count, digest = self.con.execute(
        "SELECT count(*), coalesce(sum(hash(unique_key)), 0) FROM trips "
        "WHERE trip_start_timestamp < make_timestamp(CAST(? AS BIGINT) * 1000000) "
        "AND trip_start_timestamp >= make_timestamp(CAST(? AS BIGINT) * 1000000)",
        [until, since]).fetchone()
    return f"trips[{since},{until}):count={count}:hash={digest}"

  def span_fingerprint(self, span: int) -> str:
    """What span `span`'s examples depend on: its day and the lookback."""
    return self.fingerprint(
        spans.start_of(span + 1),
        since_epoch=spans.start_of(span - features.LOOKBACK_DAYS))

  def newest_span(self) -> int | None:
    known = self.span_range()
    return None if known is None else known[1]

  def newest_trip_epoch(self, before: int | None = None) -> int | None:
    """The newest trip start (epoch seconds), of those before `before`."""
    where = "" if before is None else (
        f" WHERE trip_start_timestamp < make_timestamp(CAST({int(before)} "
        "AS BIGINT) * 1000000)")
    row = self.con.execute(
        "SELECT CAST(epoch(max(trip_start_timestamp)) AS BIGINT) FROM trips"
        + where).fetchone()
    return None if row[0] is None else int(row[0])

  def query_demand(self, cfg: demand_sql.QueryConfig, span: int,
                   days_before: int = 0,
                   lead_minutes: int | None = None,
                   every_lead: bool = False) -> pa.Table:
    """Examples of one span: its day (days_before=0) or the N days before;
    one sampled lead per (cell, slot), every slot at `lead_minutes`, or
    every slot at every lead."""
    return self._run(
        demand_sql.demand_duckdb(cfg, span, days_before, lead_minutes,
                                 every_lead),
        _DEMAND_SCHEMA)

  def every_lead_features(self, cfg: demand_sql.QueryConfig, begin: int,
                          end: int) -> pa.Table:
    """The training path's examples at every lead, for target slots in
    [begin, end): what the skew check joins served rows with."""
    return self._run(demand_sql.every_lead_duckdb(cfg, begin, end),
                     _DEMAND_SCHEMA)

  def predictions_between(self, begin: int, end: int,
                          version: str | None = None) -> pa.Table:
    """Served forecasts for target slots in [begin, end), oldest first."""
    where = "slot_start >= ? AND slot_start < ?"
    args: list = [int(begin), int(end)]
    if version is not None:
      where += " AND model_version = ?"
      args.append(str(version))
    return self.con.execute(
        "SELECT cell, slot_start, issued_at, lead_minutes, predicted_pickups, "
        f"model_version FROM predictions WHERE {where} "
        "ORDER BY slot_start, cell, issued_at", args).fetch_arrow_table()

  def data_age(self, cfg: demand_sql.QueryConfig, issued_at: int) -> int:
    """Seconds since the newest trip known at `issued_at` became known
    (under cfg's arrival rule); a day if none did in the day before."""
    [[known]] = self.con.execute(
        demand_sql.newest_known_duckdb(cfg, issued_at)).fetchall()
    return int(issued_at - known) if known is not None else \
        features.SECONDS_PER_DAY

  def serving_features(self, cfg: demand_sql.QueryConfig, issued_at: int,
                       horizon: int = 1) -> pa.Table:
    """Serving features (no label) for every cell, issued at `issued_at`
    for the `horizon` slots from the first one starting then or after."""
    schema = pa.schema([f for f in _DEMAND_SCHEMA if f.name != features.LABEL])
    return self._run(
        demand_sql.serving_query_duckdb(cfg, issued_at, horizon), schema)

  def _run(self, query: str, schema: pa.Schema) -> pa.Table:
    table = self.con.execute(query).fetch_arrow_table()
    if table.column_names != schema.names:
      raise AssertionError(
          f"demand query emitted {table.column_names}, want {schema.names}")
    return table.cast(schema)

  # ---- writing -----------------------------------------------------------

  def _require_writable(self) -> None:
    if self.read_only:
      raise TaxiDemandError(f"warehouse {self.path} is open read-only")

  def load(self, paths: Sequence[str | os.PathLike],
           progress: Callable[[str], None] | None = None) -> LoadReport:
    """Loads CSV/Parquet trips (files or folders) in one transaction.

    Every row read is loaded or quarantined with its first broken rule. Any
    unloadable file fails the whole load with one line naming it, and the
    warehouse is left as it was.
    """
    self._require_writable()
    files = discover(paths)
    plans = [(f, _sniff(f)) for f in files]  # fail fast, before writing
    report = LoadReport()
    self.con.execute("BEGIN TRANSACTION")
    try:
      for i, (path, kind) in enumerate(plans, 1):
        if progress:
          progress(f"load {i}/{len(plans)}: {path}")
        self._load_file(path, kind, report)
      self.con.execute("COMMIT")
    except BaseException:
      self.con.execute("ROLLBACK")
      raise
    return report

  def _load_file(self, path: Path, kind: str, report: LoadReport) -> None:
    fingerprint = _fingerprint(path)
    seen = self.con.execute("SELECT 1 FROM loads WHERE fingerprint = ?",
                            [fingerprint]).fetchone()
    if seen:
      report.skipped.append(str(path))
      return
    is_truth = path.name.startswith(TRUTH_PREFIX) and kind == "parquet"
    try:
      if is_truth:
        counts = self._load_truth(path)
        report.truth_rows += counts[0]
      else:
        counts = self._load_trips(path, kind, report)
    except duckdb.Error as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e)
      raise TaxiDemandError(f"{path}: cannot read {kind}: {first}") from e
    self.con.execute(
        "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, now())",
        [fingerprint, str(path), "truth" if is_truth else "trips", *counts])
    report.files.append(str(path))

  def _load_truth(self, path: Path) -> tuple[int, int, int]:
    src = f"read_parquet({_lit(str(path))})"
    cols = [r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {src}")
            .fetchall()]
    need = ("community_area", "slot_start", "intensity")
    missing = [c for c in need if c not in cols]
    if missing:
      raise TaxiDemandError(
          f"{path}: missing required column(s) for truth: {', '.join(missing)}")
    n = self.con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    self.con.execute(
        f"INSERT OR REPLACE INTO truth SELECT CAST(community_area AS BIGINT), "
        f"CAST(slot_start AS BIGINT), CAST(intensity AS DOUBLE) FROM {src}")
    return n, n, 0

  def _load_trips(self, path: Path, kind: str,
                  report: LoadReport) -> tuple[int, int, int]:
    if kind == "csv":
      # all_varchar keeps the raw text for quarantine and for our own parsing.
      src = (f"read_csv({_lit(str(path))}, delim=',', header=true, "
             "all_varchar=true, quote='\"', escape='\"')")
    else:
      src = f"read_parquet({_lit(str(path))})"
    columns = {r[0]: r[1] for r in self.con.execute(
        f"DESCRIBE SELECT * FROM {src}").fetchall()}
    missing = contract.missing_columns(columns)
    if missing:
      raise TaxiDemandError(
          f"{path}: missing required column(s): {', '.join(missing)}")
    staged = _staging_query(src, columns)
    self.con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS {staged}")
    try:
      names = ", ".join(contract.TRIP_COLUMNS)
      self.con.execute(
          f"INSERT INTO trips SELECT {names} FROM _staged WHERE _rule IS NULL")
      self.con.execute(
          "INSERT INTO quarantine SELECT ?, _rule, _raw, now() FROM _staged "
          "WHERE _rule IS NOT NULL", [str(path)])
      rows = self.con.execute(
          "SELECT _rule, count(*) FROM _staged GROUP BY _rule").fetchall()
    finally:
      self.con.execute("DROP TABLE IF EXISTS _staged")
    read = loaded = quarantined = 0
    for rule, n in rows:
      read += n
      if rule is None:
        loaded += n
      else:
        quarantined += n
        report.per_rule[rule] += n
    report.read += read
    report.loaded += loaded
    report.quarantined += quarantined
    return read, loaded, quarantined

  def upsert_predictions(self, table: pa.Table) -> int:
    """Writes predictions; a (cell, slot_start, issued_at, model_version)
    predicted again replaces its row, a later issue time adds one. Needs
    columns cell, slot_start, issued_at, lead_minutes, predicted_pickups,
    model_version; predicted_at defaults to now."""
    self._require_writable()
    has_at = "predicted_at" in table.column_names
    # DuckDB 1.5 cannot scan pyarrow 10 tables directly; pandas it can.
    self.con.register("_predictions_in", table.to_pandas())
    try:
      self.con.execute(
          "INSERT OR REPLACE INTO predictions SELECT CAST(cell AS BIGINT), "
          "CAST(slot_start AS BIGINT), CAST(issued_at AS BIGINT), "
          "CAST(lead_minutes AS BIGINT), CAST(predicted_pickups AS DOUBLE), "
          "CAST(model_version AS VARCHAR), "
          f"{'CAST(predicted_at AS TIMESTAMP)' if has_at else 'now()'} "
          "FROM _predictions_in")
    finally:
      self.con.unregister("_predictions_in")
    return table.num_rows


# ---- staging SQL: type every column, then name the first broken rule -------

def _present(col: str | None, source_type: str | None) -> str:
  if col is None:
    return "false"
  if source_type == "VARCHAR":
    return f"(NULLIF(trim({_q(col)}), '') IS NOT NULL)"
  return f"({_q(col)} IS NOT NULL)"


def _typed(col: str | None, source_type: str | None, target: str) -> str:
  if col is None:
    return f"CAST(NULL AS {target})"
  c = _q(col)
  if source_type == "VARCHAR":
    v = f"NULLIF(trim({c}), '')"
    if target == "TIMESTAMP":
      # Epoch seconds (the public sample), BigQuery export text
      # ('2013-01-01 00:00:00 UTC'), or the city portal's 12-hour format.
      return (
          f"CASE WHEN regexp_full_match({v}, '-?[0-9]{{1,11}}') THEN "
          f"make_timestamp(CAST({v} AS BIGINT) * 1000000) ELSE COALESCE("
          f"TRY_CAST(regexp_replace({v}, ' ?(UTC|\\+00(:?00)?)$', '') "
          f"AS TIMESTAMP), try_strptime({v}, '%m/%d/%Y %I:%M:%S %p')) END")
    if target == "BIGINT":
      return f"TRY_CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT)"
    return f"TRY_CAST({v} AS {target})"
  if target == "TIMESTAMP":
    if source_type in ("BIGINT", "INTEGER", "HUGEINT", "DOUBLE", "FLOAT"):
      return f"make_timestamp(CAST({c} AS BIGINT) * 1000000)"
    if source_type.startswith("TIMESTAMP WITH TIME ZONE"):
      return f"timezone('UTC', {c})"
  return f"TRY_CAST({c} AS {target})"


def _staging_query(src: str, columns: dict[str, str]) -> str:
  """SELECT over `src` giving typed TRIP_COLUMNS, `_rule` and `_raw`."""
  lower = {name.lower(): name for name in columns}

  def col(name):
    actual = lower.get(name)
    return actual, columns.get(actual) if actual else None

  typed = {name: _typed(*col(name), kind)
           for name, kind in contract.TRIP_COLUMNS.items()
           if name != "unique_key"}
  present = {name: _present(*col(name)) for name in contract.TRIP_COLUMNS}
  # A stable content-derived key when a row has no unique_key: md5 over every
  # source column's text, in name order, NULL spelled apart from ''.
  content = ", ".join(
      f"COALESCE(CAST({_q(c)} AS VARCHAR), '\\N')" for c in sorted(columns))
  key_col, _ = col("unique_key")
  derived = f"'h' || md5(concat_ws('|', {content}))"
  if key_col:
    key = (f"CASE WHEN {present['unique_key']} THEN "
           f"trim(CAST({_q(key_col)} AS VARCHAR)) ELSE {derived} END")
  else:
    key = derived
  area_num = (f"TRY_CAST(trim(CAST({_q(col('pickup_community_area')[0])} "
              "AS VARCHAR)) AS DOUBLE)")
  box = contract.CHICAGO_BBOX
  first, last = contract.COMMUNITY_AREAS[0], contract.COMMUNITY_AREAS[-1]
  typed_list = ",\n    ".join(f"{expr} AS {name}"
                              for name, expr in typed.items())
  present_list = ",\n    ".join(f"{expr} AS _p_{name}"
                                for name, expr in present.items())
  names = ", ".join(contract.TRIP_COLUMNS)
  return f"""
WITH typed AS (
  SELECT
    row_number() OVER () AS _row,
    {key} AS unique_key,
    {typed_list},
    {present_list},
    {area_num} AS _area_num,
    src AS _src
  FROM {src} AS src
),
ruled AS (
  SELECT *,
    CASE
      WHEN trip_start_timestamp IS NULL
        OR (_p_trip_end_timestamp AND trip_end_timestamp IS NULL)
        THEN 'bad_timestamp'
      WHEN NOT _p_pickup_community_area
        AND NOT (_p_pickup_latitude AND _p_pickup_longitude)
        AND NOT (_p_pickup_latitude OR _p_pickup_longitude)
        THEN 'missing_pickup_location'
      WHEN _p_pickup_community_area AND (_area_num IS NULL
        OR _area_num <> floor(_area_num)
        OR _area_num NOT BETWEEN {first} AND {last})
        THEN 'community_area_out_of_range'
      WHEN (_p_pickup_latitude OR _p_pickup_longitude) AND (
        pickup_latitude IS NULL OR pickup_longitude IS NULL
        OR pickup_latitude NOT BETWEEN {box.south} AND {box.north}
        OR pickup_longitude NOT BETWEEN {box.west} AND {box.east})
        THEN 'coordinates_outside_chicago'
      WHEN (_p_trip_seconds AND (trip_seconds IS NULL OR trip_seconds < 0))
        OR trip_end_timestamp < trip_start_timestamp
        THEN 'negative_duration'
      WHEN _p_trip_miles AND (trip_miles IS NULL OR trip_miles < 0)
        THEN 'negative_distance'
      WHEN row_number() OVER (PARTITION BY unique_key ORDER BY _row) > 1
        OR unique_key IN (SELECT unique_key FROM trips)
        THEN 'duplicate_key'
    END AS _rule
  FROM typed
)
SELECT {names}, _rule,
  CASE WHEN _rule IS NOT NULL THEN CAST(to_json(_src) AS VARCHAR) END AS _raw
FROM ruled
"""
