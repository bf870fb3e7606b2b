"""The embedded DuckDB warehouse: load trips with quarantine, run the demand query."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import duckdb
import pyarrow as pa

from taxi_demand.data import contract
from taxi_demand.data import reader
from taxi_demand.data import sql as demand_sql
from taxi_demand.errors import TaxiDemandError
from taxi_demand import faults
from taxi_demand import features
from taxi_demand import locks
from taxi_demand import spans

TRIP_SUFFIXES = (".csv", ".parquet")
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024
# Where DuckDB's CSV reader puts the rows it cannot split (temp tables,
# emptied after each file) and how much of such a row's text it keeps.
_REJECTS = "_csv_rejects"
_REJECTS_SCAN = "_csv_rejects_scan"
_REJECT_KEPT_BYTES = 10_000
# DuckDB's file readers take a path as a glob pattern (`*`, `?`, `[...]`,
# `**`) and have no escape for these characters; a file whose path holds one
# is read through a link of a plain name (`_literal`).
_GLOB_CHARACTERS = frozenset("*?[]{}")

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
-- An operator's vehicle pings (contract.PROBE_COLUMNS); optional.
CREATE TABLE IF NOT EXISTS probes (
  {', '.join(f'{name} {kind}' for name, kind in contract.PROBE_COLUMNS.items())}
);
CREATE TABLE IF NOT EXISTS loads (
  fingerprint VARCHAR PRIMARY KEY, path VARCHAR, kind VARCHAR, read BIGINT,
  loaded BIGINT, quarantined BIGINT, loaded_at TIMESTAMP
);
-- One-time changes made to a warehouse written by an older version.
CREATE TABLE IF NOT EXISTS upgrades (
  name VARCHAR PRIMARY KEY, done_at TIMESTAMP
);
"""

@dataclasses.dataclass
class LoadReport:
  """What one `load` did. Invariant: read == loaded + quarantined.

  A CSV row the reader cannot split into the header's columns counts as one
  row read and one quarantined (malformed_row), however long it is.
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
  # Probe files (contract.is_probes) account apart, by the same invariant:
  # probes_read == probes_loaded + probes_quarantined.
  probes_read: int = 0
  probes_loaded: int = 0
  probes_quarantined: int = 0
  probes_per_rule: dict[str, int] = dataclasses.field(
      default_factory=lambda: {r: 0 for r in contract.PROBE_RULE_NAMES})

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _q(name: str) -> str:
  return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
  return "'" + text.replace("'", "''") + "'"


def shown(text: str | os.PathLike) -> str:
  """A file name (or any text from outside) fit for one line of output.

  As it is when every character is printable; else quoted and escaped as
  Python's repr does, so a newline or a terminal escape in a file name
  cannot start a line of its own that looks like ours.
  """
  text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
  return text if text.isprintable() else repr(text)


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
        raise TaxiDemandError(
            f"{shown(path)}: no .csv or .parquet files in folder")
      out.extend(found)
    elif path.is_file():
      out.append(path)
    else:
      raise TaxiDemandError(f"{shown(path)}: no such file or folder")
  return out


def _fingerprint(path: Path) -> str:
  digest = hashlib.sha256()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _head(path: Path) -> bytes:
  with path.open("rb") as f:
    return f.read(_SNIFF_BYTES)


def _sniff(path: Path) -> str:
  """'parquet' or 'csv', or a one-line error naming the file."""
  if path.stat().st_size == 0:
    raise TaxiDemandError(f"{shown(path)}: empty file")
  head = _head(path)
  if head.startswith(_PARQUET_MAGIC):
    return "parquet"
  _csv_header(path, head)
  return "csv"


def _clip(text: str, limit: int = 200) -> str:
  return text if len(text) <= limit else text[:limit] + "..."


def _first_line(error: BaseException) -> str:
  """An error's first line, cut short: DuckDB's message about an overlong
  CSV line quotes the whole line, megabytes of it."""
  text = str(error).strip()
  return shown(_clip(text.splitlines()[0])) if text else type(error).__name__


def _csv_header(path: Path, head: bytes | None = None) -> list[str]:
  """The column names of a CSV's header, or a one-line error naming the file.

  Only the first line decides whether a file is a trips CSV at all; a
  broken row further down is the row's problem (malformed_row), not the
  file's.
  """
  head = _head(path) if head is None else head
  ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
  if not ends and path.stat().st_size > len(head):
    raise TaxiDemandError(f"{shown(path)}: first line is over "
                          f"{len(head) // 1024} KiB, expected a CSV header")
  line = head[:min(ends)] if ends else head
  # Text has no NUL bytes; anything else is binary (gzip, xlsx, UTF-16, ...).
  if b"\x00" in line:
    raise TaxiDemandError(
        f"{shown(path)}: binary file, expected CSV or Parquet")
  try:
    text = line.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise TaxiDemandError(
        f"{shown(path)}: binary or non-UTF-8 file, expected CSV or "
        "Parquet") from e
  if not text.strip():
    raise TaxiDemandError(f"{shown(path)}: empty file (no header line)")
  if "," not in text:
    for delim, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
      if delim in text:
        raise TaxiDemandError(
            f"{shown(path)}: wrong delimiter: header is separated by {name}, "
            "expected ','")
  try:
    [fields] = csv.reader([text], strict=True)
  except csv.Error as e:
    # Python's words for an open quote, "unexpected end of data", read like
    # a crash ("unexpected ..." is how the CLI reports one).
    why = ("a quoted name is not closed" if "end of data" in str(e)
           else str(e))
    raise TaxiDemandError(
        f"{shown(path)}: header is not a CSV line: {why}") from e
  names = [name.strip() for name in fields]
  if len(names) > 1 and not names[-1]:
    # A trailing comma: DuckDB's reader names that column so.
    names[-1] = f"column{len(names) - 1}"
  if "" in names:
    raise TaxiDemandError(f"{shown(path)}: header has an empty column name "
                          f"(column {names.index('') + 1})")
  seen: set[str] = set()
  repeated = []
  for name in names:  # DuckDB's column names ignore case
    if name.lower() in seen:
      repeated.append(name)
    seen.add(name.lower())
  if repeated:
    raise TaxiDemandError(f"{shown(path)}: header repeats column name(s): "
                          f"{_clip(', '.join(map(shown, repeated)))}")
  return names


def _csv_source(path: Path, names: Sequence[str]) -> str:
  """read_csv over `path` with `names` as its columns, every value as text.

  No sniffing: DuckDB's sniffer fails the whole file on one bad line. A row
  the reader cannot split (too many or too few fields, an unterminated
  quote, invalid UTF-8, a line over max_line_size) goes to the rejects
  table instead of raising.
  """
  columns = ", ".join(f"{_lit(name)}: 'VARCHAR'" for name in names)
  return (f"read_csv({_lit(str(path))}, auto_detect=false, header=true, "
          f"columns={{{columns}}}, delim=',', quote='\"', escape='\"', "
          f"store_rejects=true, rejects_table={_lit(_REJECTS)}, "
          f"rejects_scan={_lit(_REJECTS_SCAN)})")


def _literal(path: Path, stack: contextlib.ExitStack) -> Path:
  """A path DuckDB reads as exactly the file `path`, never as a pattern.

  `path` itself when its text has no glob character; else a symlink to it,
  of a plain name, in a private folder that `stack` removes. Without this,
  `t[1].csv` would read `t1.csv`, and a file named `*.csv` every CSV beside
  it, and the named file would be recorded as loaded.
  """
  if not _GLOB_CHARACTERS & set(str(path)):
    return path
  folder = Path(stack.enter_context(
      tempfile.TemporaryDirectory(prefix="taxi-demand-load-")))
  link = folder / ("source" + (path.suffix.lower()
                               if path.suffix.lower() in TRIP_SUFFIXES else ""))
  if _GLOB_CHARACTERS & set(str(link)):
    raise TaxiDemandError(
        f"cannot read {shown(path)} literally: the temporary folder "
        f"{shown(folder)} has a glob character; set $TMPDIR to a plain path")
  link.symlink_to(path.resolve())
  return link


def _mixed_line_breaks(path: Path) -> bool:
  """Whether `path` has more than one kind of line break (\\n, \\r\\n, \\r).

  Counts those inside quoted values too, so it over-estimates what matters:
  the strict CSV reader refuses a whole file whose rows end differently.
  """
  def blocks():
    with path.open("rb") as f:
      yield from iter(lambda: f.read(1 << 20), b"")

  if not any(b"\r" in block for block in blocks()):
    return False  # the common case, in one quick pass
  cr = lf = crlf = 0
  last = b""
  for block in blocks():
    cr += block.count(b"\r")
    lf += block.count(b"\n")
    crlf += block.count(b"\r\n") + (last == b"\r" and block[:1] == b"\n")
    last = block[-1:]
  return bool(lf) and not cr == lf == crlf


def _read_whole(source: str) -> bool:
  """Whether DuckDB reads `source` without failing, tried in a database of
  its own: an error in the load's transaction would abort the transaction."""
  con = duckdb.connect()
  try:
    con.execute(f"SELECT count(*) FROM {source}").fetchall()
    return True
  except duckdb.Error:
    return False
  finally:
    con.close()


def _one_line_break(path: Path, folder: Path) -> Path:
  """A copy of `path` in `folder` whose line breaks are all \\n (inside
  quoted values too): what the reader takes from a file of mixed breaks."""
  out = folder / "one_line_break.csv"  # a plain name: see _literal
  with path.open("rb") as src, out.open("wb") as dst:
    carry = b""
    for block in iter(lambda: src.read(1 << 20), b""):
      block = carry + block
      carry = b"\r" if block.endswith(b"\r") else b""
      block = block[:len(block) - len(carry)]
      dst.write(block.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
    dst.write(carry.replace(b"\r", b"\n"))
  return out


# One quarantine row per line the CSV reader rejected (it may log several
# rejects for one line, one per missing column). `raw` says where the line is,
# why it was rejected and what the reader kept of it: csv_line stops at
# _REJECT_KEPT_BYTES, so csv_line_may_be_cut tells when it may not be whole.
# A CRLF file's rejected lines start with the previous line's \n; dropped.
_MALFORMED_ROWS = f"""
INSERT INTO _staged (_rule, _raw)
SELECT 'malformed_row', CAST(json_object(
    'line', line, 'error', error, 'csv_line', csv_line,
    'csv_line_may_be_cut', error = 'LINE SIZE OVER MAXIMUM'
      OR strlen(csv_line) > {_REJECT_KEPT_BYTES - 4}) AS VARCHAR)
FROM (
  SELECT line,
    CAST(arg_min(error_type, coalesce(column_idx, 0)) AS VARCHAR) AS error,
    ltrim(any_value(csv_line), chr(13) || chr(10)) AS csv_line
  FROM {_REJECTS}
  GROUP BY scan_id, file_id, line
)
"""


def _check_truth_rows(con, path: Path) -> None:
  """Refuses, in one line, a truth file (staged in `_truth`) with a row
  that is not a community area's finite, non-negative intensity in a
  quarter hour within the timestamp bounds, or one given twice."""
  first, last = contract.COMMUNITY_AREAS[0], contract.COMMUNITY_AREAS[-1]
  lowest, limit = (int(t.replace(tzinfo=datetime.timezone.utc).timestamp())
                   for t in (contract.EARLIEST_TIMESTAMP,
                             contract.TIMESTAMP_LIMIT))
  [(bad, repeated)] = con.execute(f"""
      SELECT count(*) FILTER (WHERE community_area IS NULL
          OR community_area NOT BETWEEN {first} AND {last}
          OR slot_start IS NULL OR slot_start < {lowest}
          OR slot_start >= {limit} OR intensity IS NULL
          OR NOT isfinite(intensity) OR intensity < 0),
        count(*) - count(DISTINCT (community_area, slot_start))
      FROM _truth""").fetchall()
  if bad:
    raise TaxiDemandError(
        f"{shown(path)}: bad truth file: {bad:,} row(s) without a community "
        f"area {first}..{last}, a slot_start within the timestamp bounds or "
        "a finite intensity >= 0")
  if repeated:
    raise TaxiDemandError(
        f"{shown(path)}: bad truth file: {repeated:,} (community_area, "
        "slot_start) pair(s) given twice")


def _held_by_another(error: BaseException) -> bool:
  """Whether DuckDB refused to open a file because another process holds
  its lock ("Could not set lock on file ...: Conflicting lock is held in
  ..."), as opposed to a file it cannot read."""
  text = str(error)
  return "Could not set lock" in text or "Conflicting lock" in text


def interrupted(error: BaseException) -> bool:
  """Whether `error` is DuckDB's answer to Ctrl-C during a query.

  DuckDB turns a SIGINT that arrives mid-query into an exception of its own
  (RuntimeError "Query interrupted", or InterruptException), not
  KeyboardInterrupt; a loop that stops on Ctrl-C must treat it as one.
  """
  return isinstance(error, duckdb.InterruptException) or (
      isinstance(error, RuntimeError) and
      str(error).strip() == "Query interrupted")


class Warehouse(reader.Reader):
  """One DuckDB file holding trips, quarantine and truth.

  Forecasts are not here but in the served log (taxi_demand.serving.servelog):
  the file takes one writer at a time, and the 5-minute job must not queue
  behind a load. A `predictions` table from before stays as it was.

  Open read-only wherever you only read: several processes may then read at
  once (DuckDB allows one writer or many readers per file).
  """

  def __init__(self, path: str | os.PathLike, read_only: bool = False,
               wait_s: float | None = None):
    self.path = Path(path)
    self.read_only = read_only
    if read_only:
      if not self.path.exists():
        raise TaxiDemandError(
            f"no warehouse at {shown(self.path)}: run `taxi-demand load` or "
            "`taxi-demand simulate` first")
    else:
      self.path.parent.mkdir(parents=True, exist_ok=True)
    # Readers share, a writer excludes; whoever must wait, waits (bounded)
    # instead of failing on DuckDB's lock. Released with the connection.
    self._lock = locks.WarehouseLock(self.path, exclusive=not read_only,
                                     wait_s=wait_s)
    self._open()
    if not read_only:
      try:
        self.con.execute(_SCHEMA)
        self._quarantine_out_of_range()
        self._rekey_text_keys()
      except BaseException:
        self.close()
        raise

  def _open(self) -> None:
    """Takes the lock, then DuckDB's connection."""
    self._lock.acquire()
    try:
      self.con = self._connect(time.monotonic() + self._lock.wait_s)
      # BigQuery computes calendar fields of TIMESTAMPs in UTC; the
      # transpiled query builds naive timestamps already, this guards ad-hoc
      # queries too.
      self.con.execute("SET TimeZone = 'UTC'")
      self.con.execute("SET enable_progress_bar = false")
    except BaseException:
      self._lock.release()
      raise

  def _connect(self, deadline: float):
    """DuckDB's connection; a process that opens the file without our lock
    (an older version, the duckdb shell) is waited for like a lock holder.

    Only DuckDB's own lock is waited for: any other failure to open (a file
    that is not a DuckDB database, a corrupt or cut one) fails at once,
    since waiting cannot mend it.
    """
    refused: list[BaseException] = []

    def attempt() -> bool:
      try:
        self.con = duckdb.connect(str(self.path), read_only=self.read_only)
        return True
      except duckdb.IOException as e:
        if _held_by_another(e):
          refused.append(e)
          return False
        raise TaxiDemandError(
            f"warehouse {shown(self.path)} is broken, not locked: "
            f"{_first_line(e)} (restore it from a backup, or move it aside "
            "and load the trips again)") from e
      except duckdb.ConnectionException as e:  # open here in the other mode
        raise TaxiDemandError(f"cannot open warehouse {shown(self.path)}: "
                              f"{str(e).splitlines()[0]}") from e

    if not locks.poll(attempt, deadline):
      raise TaxiDemandError(
          f"cannot open warehouse {shown(self.path)}: "
          f"{str(refused[-1]).splitlines()[0]}") from refused[-1]
    return self.con

  def _quarantine_out_of_range(self) -> None:
    """Moves rows loaded before rule timestamp_out_of_range existed, and
    breaking it, to quarantine under it (one transaction; nothing lost).

    A trip in 1200 BC made every later load fail on its date and could not
    be removed by any command; the first writer to open such a warehouse
    mends it. A cheap count when there is nothing to move.
    """
    for table, columns in (("trips", contract.TIMESTAMP_COLUMNS),
                           ("probes", ("ping_timestamp",))):
      where = " OR ".join(_out_of_range(c) for c in columns)
      [(n,)] = self.con.execute(
          f"SELECT count(*) FROM {table} WHERE {where}").fetchall()
      if not n:
        continue
      with self._transaction():
        self.con.execute(
            "INSERT INTO quarantine SELECT ?, 'timestamp_out_of_range', "
            f"CAST(to_json(t) AS VARCHAR), now() FROM {table} AS t "
            f"WHERE {where}", [f"({table} loaded before this rule)"])
        self.con.execute(f"DELETE FROM {table} WHERE {where}")

  def _rekey_text_keys(self) -> None:
    """Re-derives content keys of the older, text-based form from the typed
    trip (`_content_key`), once; a trip that then proves a copy of another
    (`8.0` beside `8`) goes to quarantine as duplicate_key. One transaction.
    """
    if self.con.execute("SELECT 1 FROM upgrades WHERE name = "
                        "'content_keys'").fetchone():
      return  # done: the scan below takes a second per 10M trips
    old = f"regexp_full_match(unique_key, {_lit(_TEXT_KEY)})"
    copies = (f"SELECT rowid FROM (SELECT rowid, row_number() OVER ("
              f"PARTITION BY unique_key ORDER BY rowid) AS n FROM trips "
              f"WHERE starts_with(unique_key, {_lit(CONTENT_KEY_PREFIX)})) "
              "WHERE n > 1")
    with self._transaction():
      self.con.execute(
          f"UPDATE trips SET unique_key = {_content_key()} WHERE {old}")
      self.con.execute(
          "INSERT INTO quarantine SELECT ?, 'duplicate_key', "
          "CAST(to_json(t) AS VARCHAR), now() FROM trips AS t "
          f"WHERE rowid IN ({copies})", ["(trips, keyed again by content)"])
      self.con.execute(f"DELETE FROM trips WHERE rowid IN ({copies})")
      self.con.execute("INSERT INTO upgrades VALUES ('content_keys', now())")

  def close(self) -> None:
    try:
      self.con.close()
    finally:
      self._lock.release()

  def yield_to_writers(self) -> None:
    """For a long reader (a replay): if a load waits, closes, lets it in,
    and opens again. Between two of its steps, never inside a query."""
    if not self.read_only or not self._lock.writer_waiting():
      return
    self.close()
    self._open()

  def __enter__(self) -> "Warehouse":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ---- reading -----------------------------------------------------------

  def count(self, table: str) -> int:
    demand_sql.check_table(table)
    return self.con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]

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

  def _rows(self, bigquery_sql: str) -> pa.Table:
    """A reader's query (BigQuery SQL), run here transpiled."""
    return self.con.execute(
        demand_sql.to_duckdb(bigquery_sql)).fetch_arrow_table()

  def has_table(self, name: str) -> bool:
    """Whether the file has table `name` (one opened read-only may predate
    a table added since)."""
    return bool(self.con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = ?", [name]).fetchone()[0])

  def truth(self, begin: int, end: int) -> pa.Table:
    """The simulator's intensity per (community_area, quarter hour) in
    [begin, end); empty for a warehouse of real trips."""
    return self.con.execute(
        "SELECT community_area, slot_start, intensity FROM truth "
        f"WHERE slot_start >= {int(begin)} AND slot_start < {int(end)} "
        "ORDER BY slot_start, community_area").fetch_arrow_table().cast(
            reader.TRUTH_SCHEMA)

  # ---- writing -----------------------------------------------------------

  def _require_writable(self) -> None:
    if self.read_only:
      raise TaxiDemandError(f"warehouse {shown(self.path)} is open read-only")

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
    faults.point("load.before")
    with self._transaction():
      for i, (path, kind) in enumerate(plans, 1):
        if progress:
          progress(f"load {i}/{len(plans)}: {shown(path)}")
        self._load_file(path, kind, report)
      faults.point("load.inside")
    faults.point("load.after")
    return report

  @contextlib.contextmanager
  def _transaction(self):
    """One DuckDB transaction: committed if the block ends, else rolled
    back (Ctrl-C included), leaving the warehouse as it was."""
    self.con.execute("BEGIN TRANSACTION")
    try:
      yield
      self.con.execute("COMMIT")
    except BaseException:
      self.con.execute("ROLLBACK")
      raise

  def _load_file(self, path: Path, kind: str, report: LoadReport) -> None:
    fingerprint = _fingerprint(path)
    seen = self.con.execute("SELECT 1 FROM loads WHERE fingerprint = ?",
                            [fingerprint]).fetchone()
    if seen:
      report.skipped.append(str(path))
      return
    try:
      with contextlib.ExitStack() as stack:
        source = _literal(path, stack)
        if kind == "parquet" and contract.is_truth(
            self._parquet_columns(source)):
          table, counts = "truth", self._load_truth(path, source)
          report.truth_rows += counts[0]
        else:
          table, counts = self._load_rows(path, source, kind, report)
    except duckdb.Error as e:
      raise TaxiDemandError(
          f"{shown(path)}: cannot read {kind}: {_first_line(e)}") from e
    self.con.execute(
        "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, now())",
        [fingerprint, str(path), table, *counts])
    report.files.append(str(path))

  def _parquet_columns(self, source: Path) -> dict[str, str]:
    """A Parquet file's columns and their DuckDB types."""
    return {r[0]: r[1] for r in self.con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({_lit(str(source))})"
    ).fetchall()}

  def _load_truth(self, path: Path, source: Path) -> tuple[int, int, int]:
    """Loads a truth file (contract.is_truth); returns (read, loaded, 0).

    Truth has no quarantine: a file with a row that is no (area, quarter
    hour, intensity), or one that would change a truth row already loaded,
    is refused whole, in one line. Rows equal to loaded ones are no-ops.
    """
    self.con.execute(
        "CREATE OR REPLACE TEMP TABLE _truth AS SELECT "
        "TRY_CAST(community_area AS BIGINT) AS community_area, "
        "TRY_CAST(slot_start AS BIGINT) AS slot_start, "
        "TRY_CAST(intensity AS DOUBLE) AS intensity "
        f"FROM read_parquet({_lit(str(source))})")
    try:
      n = self.con.execute("SELECT count(*) FROM _truth").fetchone()[0]
      _check_truth_rows(self.con, path)
      [(changed, area, slot)] = self.con.execute(
          "SELECT count(*), min(n.community_area), min(n.slot_start) "
          "FROM _truth AS n JOIN truth AS t USING (community_area, slot_start)"
          " WHERE t.intensity <> n.intensity").fetchall()
      if changed:
        raise TaxiDemandError(
            f"{shown(path)}: would change {changed:,} truth row(s) already "
            f"loaded (first: area {area}, slot_start {slot}); truth is never "
            "overwritten: load a different simulation into another home")
      self.con.execute("INSERT OR IGNORE INTO truth SELECT * FROM _truth")
    finally:
      self.con.execute("DROP TABLE IF EXISTS _truth")
    return n, n, 0

  def _load_rows(self, path: Path, source: Path, kind: str,
                 report: LoadReport) -> tuple[str, tuple[int, int, int]]:
    """Loads a trips or probes file (told apart by its columns), which
    DuckDB reads at `source` (`_literal`); returns the table and (read,
    loaded, quarantined)."""
    if kind == "csv":
      names = _csv_header(path)
      columns = dict.fromkeys(names, "VARCHAR")  # raw text, typed in SQL
    else:
      src = f"read_parquet({_lit(str(source))})"
      columns = self._parquet_columns(source)
    if contract.is_probes(columns):
      table, target = "probes", contract.PROBE_COLUMNS
      missing = contract.missing_probe_columns(columns)
      staging = _probes_staging_query
    else:
      table, target = "trips", contract.TRIP_COLUMNS
      missing = contract.missing_columns(columns)
      staging = _staging_query
    if missing:
      raise TaxiDemandError(
          f"{shown(path)}: missing required column(s) for {table}: "
          f"{', '.join(missing)}")
    with contextlib.ExitStack() as stack:
      if kind == "csv":
        src = _csv_source(source, names)
        if _mixed_line_breaks(path) and not _read_whole(src):
          folder = stack.enter_context(
              tempfile.TemporaryDirectory(prefix="taxi-demand-load-"))
          src = _csv_source(_one_line_break(path, Path(folder)), names)
        self.con.execute(f"DROP TABLE IF EXISTS {_REJECTS}; "
                         f"DROP TABLE IF EXISTS {_REJECTS_SCAN}")
      staged = staging(src, columns)
      self.con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS {staged}")
      try:
        if kind == "csv":
          self.con.execute(_MALFORMED_ROWS)
        self.con.execute(f"INSERT INTO {table} SELECT {', '.join(target)} "
                         "FROM _staged WHERE _rule IS NULL")
        self.con.execute(
            "INSERT INTO quarantine SELECT ?, _rule, _raw, now() FROM _staged "
            "WHERE _rule IS NOT NULL", [str(path)])
        rows = self.con.execute(
            "SELECT _rule, count(*) FROM _staged GROUP BY _rule").fetchall()
      finally:
        self.con.execute("DROP TABLE IF EXISTS _staged; "
                         f"DROP TABLE IF EXISTS {_REJECTS}; "
                         f"DROP TABLE IF EXISTS {_REJECTS_SCAN}")
    read = loaded = quarantined = 0
    per_rule = report.probes_per_rule if table == "probes" else \
        report.per_rule
    for rule, n in rows:
      read += n
      if rule is None:
        loaded += n
      else:
        quarantined += n
        per_rule[rule] += n
    prefix = "probes_" if table == "probes" else ""
    for name, n in (("read", read), ("loaded", loaded),
                    ("quarantined", quarantined)):
      setattr(report, prefix + name, getattr(report, prefix + name) + n)
    return table, (read, loaded, quarantined)


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
      # A non-zero UTC offset is an instant: converted to city wall clock
      # (contract.CITY_TIME_ZONE) rather than dropped.
      return (
          f"CASE WHEN regexp_full_match({v}, '-?[0-9]{{1,11}}') THEN "
          f"make_timestamp(CAST({v} AS BIGINT) * 1000000) "
          f"WHEN regexp_matches({v}, {_lit(_OFFSET)}) AND NOT "
          f"regexp_matches({v}, {_lit(_ZERO_OFFSET)}) THEN timezone("
          f"{_lit(contract.CITY_TIME_ZONE)}, TRY_CAST({v} AS TIMESTAMPTZ)) "
          f"ELSE COALESCE("
          f"TRY_CAST(regexp_replace({v}, {_lit(_UTC_LABEL)}, '') "
          f"AS TIMESTAMP), try_strptime({v}, '%m/%d/%Y %I:%M:%S %p')) END")
    if target == "BIGINT":
      return f"TRY_CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT)"
    return f"TRY_CAST({v} AS {target})"
  if target == "TIMESTAMP":
    if source_type in ("BIGINT", "INTEGER", "HUGEINT", "DOUBLE", "FLOAT"):
      # Beyond 11 digits, seconds would overflow microseconds (and fail
      # the whole load); such a value is no trip time anyway: NULL.
      return (f"CASE WHEN abs({c}) < 1e11 THEN "
              f"make_timestamp(CAST({c} AS BIGINT) * 1000000) END")
    if source_type.startswith("TIMESTAMP WITH TIME ZONE"):
      return f"timezone('UTC', {c})"
  return f"TRY_CAST({c} AS {target})"


# Timestamp text ending in a UTC offset after its time of day; a zero
# offset, like "UTC", only labels wall clock (contract.CITY_TIME_ZONE).
_OFFSET = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)? ?[+-][0-9]{2}(:?[0-9]{2})?$"
_ZERO_OFFSET = r"[+-]00(:?00)?$"
_UTC_LABEL = r" ?(UTC|\+00(:?00)?)$"


def _out_of_range(column: str) -> str:
  """Whether a typed timestamp lies outside the contract's bounds (NULL,
  not true, when it is NULL)."""
  return (f"({column} < TIMESTAMP '{contract.EARLIEST_TIMESTAMP}' OR "
          f"{column} >= TIMESTAMP '{contract.TIMESTAMP_LIMIT}')")


def _finder(columns: dict[str, str]
            ) -> Callable[[str], tuple[str | None, str | None]]:
  """name -> (the source column of that name, case ignored, and its type),
  or (None, None)."""
  lower = {name.lower(): name for name in columns}

  def col(name: str) -> tuple[str | None, str | None]:
    actual = lower.get(name)
    return actual, columns.get(actual) if actual else None
  return col


def _as_number(col: str | None) -> str:
  """A source column's value as a DOUBLE (NULL when absent or not one)."""
  if col is None:
    return "CAST(NULL AS DOUBLE)"
  return f"TRY_CAST(trim(CAST({_q(col)} AS VARCHAR)) AS DOUBLE)"


def _area_out_of_range(present: str) -> str:
  """The rule community_area_out_of_range over `_area_num`."""
  first, last = contract.COMMUNITY_AREAS[0], contract.COMMUNITY_AREAS[-1]
  return (f"{present} AND (_area_num IS NULL OR _area_num <> "
          f"floor(_area_num) OR _area_num NOT BETWEEN {first} AND {last})")


def _values_out_of_range() -> str:
  """The rule value_out_of_range over typed columns and `_p_` flags: NaN
  and infinity are not finite, so no bound lets them through."""
  money = " OR ".join(
      f"(_p_{c} AND ({c} IS NULL OR NOT isfinite({c}) OR "
      f"abs({c}) > {contract.MAX_DOLLARS}))" for c in contract.MONEY_COLUMNS)
  return (f"NOT isfinite(trip_miles) OR trip_miles > {contract.MAX_TRIP_MILES}"
          f" OR trip_seconds > {contract.MAX_TRIP_SECONDS} OR {money}")


def _ruled_rows(names: str) -> str:
  """The staging query's last SELECT: typed columns, the first broken rule,
  and a quarantined row's source text as JSON."""
  return (f"SELECT {names}, _rule,\n"
          "  CASE WHEN _rule IS NOT NULL THEN CAST(to_json(_src) AS VARCHAR) "
          "END AS _raw\nFROM ruled\n")


# Content-derived keys: CONTENT_KEY_PREFIX and the md5 of the typed trip.
# Keys of the older form (`_TEXT_KEY`: "h" and the md5 of the source
# text) are re-derived when a writer opens the warehouse.
CONTENT_KEY_PREFIX = "c"
_TEXT_KEY = "h[0-9a-f]{32}"


def _content_key() -> str:
  """The key of a trip without unique_key, over its typed TRIP_COLUMNS:
  md5 of their canonical text, NULL spelled apart from ''. Typed, so that
  `8.0` and `8`, or `2.00` and `2.0`, make one trip and not two; the same
  expression over the `trips` table gives a loaded trip's key."""
  content = ", ".join(f"COALESCE(CAST({_q(c)} AS VARCHAR), '\\N')"
                      for c in contract.TRIP_COLUMNS if c != "unique_key")
  return f"{_lit(CONTENT_KEY_PREFIX)} || md5(concat_ws('|', {content}))"


def _staging_query(src: str, columns: dict[str, str]) -> str:
  """SELECT over `src` giving typed TRIP_COLUMNS, `_rule` and `_raw`."""
  col = _finder(columns)

  typed = {name: _typed(*col(name), kind)
           for name, kind in contract.TRIP_COLUMNS.items()
           if name != "unique_key"}
  present = {name: _present(*col(name)) for name in contract.TRIP_COLUMNS}
  key_col, _ = col("unique_key")
  given = (f"CASE WHEN {present['unique_key']} THEN "
           f"trim(CAST({_q(key_col)} AS VARCHAR)) END" if key_col
           else "CAST(NULL AS VARCHAR)")
  area_num = _as_number(col("pickup_community_area")[0])
  box = contract.CHICAGO_BBOX
  typed_list = ",\n    ".join(f"{expr} AS {name}"
                              for name, expr in typed.items())
  present_list = ",\n    ".join(f"{expr} AS _p_{name}"
                                for name, expr in present.items())
  names = ", ".join(contract.TRIP_COLUMNS)
  return f"""
WITH typed AS (
  SELECT
    row_number() OVER () AS _row,
    {given} AS _given_key,
    {typed_list},
    {present_list},
    {area_num} AS _area_num,
    src AS _src
  FROM {src} AS src
),
keyed AS (
  SELECT * EXCLUDE (_given_key),
    COALESCE(_given_key, {_content_key()}) AS unique_key
  FROM typed
),
ruled AS (
  SELECT *,
    CASE
      WHEN trip_start_timestamp IS NULL
        OR (_p_trip_end_timestamp AND trip_end_timestamp IS NULL)
        THEN 'bad_timestamp'
      WHEN {_out_of_range("trip_start_timestamp")}
        OR {_out_of_range("trip_end_timestamp")}
        THEN 'timestamp_out_of_range'
      WHEN NOT _p_pickup_community_area
        AND NOT (_p_pickup_latitude AND _p_pickup_longitude)
        AND NOT (_p_pickup_latitude OR _p_pickup_longitude)
        THEN 'missing_pickup_location'
      WHEN {_area_out_of_range("_p_pickup_community_area")}
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
      WHEN {_values_out_of_range()}
        THEN 'value_out_of_range'
      WHEN row_number() OVER (PARTITION BY unique_key ORDER BY _row) > 1
        OR unique_key IN (SELECT unique_key FROM trips)
        THEN 'duplicate_key'
    END AS _rule
  FROM keyed
)
{_ruled_rows(names)}"""


def _occupied(col: str | None, source_type: str | None) -> str:
  """`occupied` as a BOOLEAN, NULL when it says nothing the contract knows."""
  if col is None:
    return "CAST(NULL AS BOOLEAN)"
  c = _q(col)
  if source_type == "BOOLEAN":
    return c
  text = f"lower(trim(CAST({c} AS VARCHAR)))"
  yes = ", ".join(_lit(v) for v in contract.OCCUPIED_TRUE)
  no = ", ".join(_lit(v) for v in contract.OCCUPIED_FALSE)
  return (f"CASE WHEN {text} IN ({yes}) THEN true "
          f"WHEN {text} IN ({no}) THEN false END")


def _probes_staging_query(src: str, columns: dict[str, str]) -> str:
  """SELECT over `src` giving typed PROBE_COLUMNS, `_rule` and `_raw`."""
  col = _finder(columns)

  typed = {name: _typed(*col(name), kind)
           for name, kind in contract.PROBE_COLUMNS.items()
           if name not in ("vehicle_id", "occupied")}
  vehicle, _ = col("vehicle_id")
  typed["vehicle_id"] = (f"NULLIF(trim(CAST({_q(vehicle)} AS VARCHAR)), '')"
                         if vehicle else "CAST(NULL AS VARCHAR)")
  typed["occupied"] = _occupied(*col("occupied"))
  area_num = _as_number(col("community_area")[0])
  box = contract.CHICAGO_BBOX
  typed_list = ",\n    ".join(f"{expr} AS {name}"
                              for name, expr in typed.items())
  names = ", ".join(contract.PROBE_COLUMNS)
  return f"""
WITH typed AS (
  SELECT
    row_number() OVER () AS _row,
    {typed_list},
    {_present(*col("community_area"))} AS _p_community_area,
    {area_num} AS _area_num,
    src AS _src
  FROM {src} AS src
),
ruled AS (
  SELECT *,
    CASE
      WHEN ping_timestamp IS NULL THEN 'bad_timestamp'
      WHEN {_out_of_range("ping_timestamp")} THEN 'timestamp_out_of_range'
      WHEN vehicle_id IS NULL THEN 'missing_vehicle_id'
      WHEN latitude IS NULL OR longitude IS NULL
        OR latitude NOT BETWEEN {box.south} AND {box.north}
        OR longitude NOT BETWEEN {box.west} AND {box.east}
        THEN 'position_outside_chicago'
      WHEN {_area_out_of_range("_p_community_area")}
        THEN 'community_area_out_of_range'
      WHEN occupied IS NULL THEN 'bad_occupied_flag'
      WHEN row_number() OVER (PARTITION BY vehicle_id, ping_timestamp
                              ORDER BY _row) > 1
        OR EXISTS (SELECT 1 FROM probes AS p
                   WHERE p.vehicle_id = typed.vehicle_id
                     AND p.ping_timestamp = typed.ping_timestamp)
        THEN 'duplicate_ping'
    END AS _rule
  FROM typed
)
{_ruled_rows(names)}"""
