"""Render THE demand query for a span and config; transpile it to DuckDB."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import re
from typing import Tuple
from importlib import resources

from taxi_demand.data import contract
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features
from taxi_demand import spans

SPAN_BEGIN = "@span_begin_timestamp"
SPAN_END = "@span_end_timestamp"
SPAN_YYYYMMDD = "@span_yyyymmdd_utc"
PLACEHOLDERS = (SPAN_BEGIN, SPAN_END, SPAN_YYYYMMDD)

_SECONDS_PER_DAY = features.SECONDS_PER_DAY
_LOOKBACK_SECONDS = features.LOOKBACK_DAYS * _SECONDS_PER_DAY
_GRID_METRES_RANGE = (100, 10_000)
# Metres per degree at Chicago's latitude (41.85 N): the grid is square on the
# ground to within a fraction of a percent across the city.
_METRES_PER_DEG_LAT = 111_320
_METRES_PER_DEG_LON = 82_930
# A grid cell id is row * _GRID_ROW_STRIDE + column, counted from the
# south-west corner of contract.CHICAGO_BBOX; at >= 100 m there are < 1000
# columns, so ids are unique and readable (row 12, column 7 -> 12007).
_GRID_ROW_STRIDE = 1000

# A DuckDB table name, or a BigQuery project.dataset.table (project ids may
# carry hyphens, and a domain: before them, as taxi_demand.cloud parses
# bq:// addresses). Nothing else may reach the query text.
_DUCKDB_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_BIGQUERY_TABLE = re.compile(
    r"(?:[a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"
    r"\.[A-Za-z_][A-Za-z0-9_]{0,1023}\.[A-Za-z_][A-Za-z0-9_]{0,1023}")


# The 5-minute job's grid: every issue time, in training and serving, is on it.
TICK_SECONDS = features.LEAD_STEP_MINUTES * 60
MAX_LEAD_MINUTES = features.MAX_LEAD_MINUTES
LEADS_MINUTES = tuple(range(0, MAX_LEAD_MINUTES + 1,
                            features.LEAD_STEP_MINUTES))
# Features of slots a day or more before the issue time count the trips known
# within this long of their slot's start ("settled"), always before the issue.
SETTLE_SECONDS = 12 * 3600
_MAX_ARRIVAL_DELAY_SECONDS = 6 * 3600
# Spreads the sampled lead over cells, slots and days: for one cell
# consecutive slots step through every lead, and so do the cells of one slot.
# A day holds a multiple of 12 slots at every slot length, so without the day
# term a cell's slot at a given time of day had the same lead on every day:
# each (cell, time of day) was trained at one lead only (the busiest cell saw
# lead 0 at 02:00, 08:00, 14:00 and 20:00 alone), and its forecasts at the
# other leads were guesses. One step a day turns every lead through each
# (cell, time of day) in 12 days, and 7 steps a week through each (cell,
# hour of the week) too.
_LEAD_MIX_CELL, _LEAD_MIX_SLOT, _LEAD_MIX_DAY = 7919, 104729, 1


class ArrivalBasis(enum.Enum):
  """What a trip's arrival in the warehouse follows."""

  START = "start"    # probe-style feeds: known soon after the pickup
  END = "end"        # trips exports: known after the trip ends


@dataclasses.dataclass(frozen=True)
class ArrivalRule:
  """When a trip is known: `delay_seconds` after its start or its end.

  The one arrival rule of training, serving and replay: every feature of a
  forecast issued at t counts only trips with known time <= t.
  """

  basis: "ArrivalBasis" = None  # type: ignore[assignment]
  delay_seconds: int = 0

  def __post_init__(self):
    if self.basis is None:
      object.__setattr__(self, "basis", ArrivalBasis.START)
    if not isinstance(self.basis, ArrivalBasis):
      raise TaxiDemandError(f"arrival basis must be start or end, got "
                            f"{self.basis!r}")
    _check_int("arrival delay (seconds)", self.delay_seconds,
               bounds=(0, _MAX_ARRIVAL_DELAY_SECONDS))

  @classmethod
  def parse(cls, text: str) -> "ArrivalRule":
    """"start", "start+90s", "end+5m", "end+1h" -> an ArrivalRule."""
    m = re.fullmatch(r"\s*(start|end)\s*(?:\+\s*(\d+)\s*([smh]))?\s*",
                     str(text).lower())
    if not m:
      raise TaxiDemandError(
          f"bad arrival rule {text!r}: expected start or end, optionally "
          "+ a delay, e.g. start+60s, end+5m")
    delay = int(m.group(2) or 0) * {"s": 1, "m": 60, "h": 3600}[
        m.group(3) or "s"]
    return cls(ArrivalBasis(m.group(1)), delay)

  def __str__(self) -> str:
    return f"{self.basis.value}+{self.delay_seconds}s"

  def known_expr(self) -> str:
    """SQL for a trip's known time in epoch seconds (NULL: never known)."""
    start = "UNIX_SECONDS(trip_start_timestamp)"
    if self.basis is ArrivalBasis.START:
      base = start
    else:
      base = (f"COALESCE(UNIX_SECONDS(trip_end_timestamp), "
              f"{start} + trip_seconds)")
    return f"({base} + {self.delay_seconds})"


class SpatialUnit(enum.Enum):
  """What a cell is."""

  COMMUNITY_AREA = "community_area"  # cell = community area 1..77
  GRID = "grid"                      # cell = square lat/lon grid cell id


def check_table(table: str) -> str:
  """Returns `table` if it is a plain identifier; raises otherwise."""
  if not isinstance(table, str) or not (
      _DUCKDB_TABLE.fullmatch(table) or _BIGQUERY_TABLE.fullmatch(table)):
    raise TaxiDemandError(
        f"bad table name {table!r}: expected a DuckDB table name or a BigQuery "
        "project.dataset.table")
  return table


def _check_int(name: str, value, allowed=None, bounds=None) -> int:
  # bool is an int subclass; a True slot length is a bug, not 1.
  if isinstance(value, bool) or not isinstance(value, int):
    raise TaxiDemandError(f"{name} must be an integer, got {value!r}")
  if allowed is not None and value not in allowed:
    raise TaxiDemandError(f"{name} must be one of {tuple(allowed)}, got {value}")
  if bounds is not None and not bounds[0] <= value <= bounds[1]:
    raise TaxiDemandError(
        f"{name} must be in {bounds[0]}..{bounds[1]}, got {value}")
  return value


@dataclasses.dataclass(frozen=True)
class QueryConfig:
  """Granularity and source of the demand query.

  Attributes:
    table: a DuckDB table name or a BigQuery `project.dataset.table`.
    slot_minutes: slot length, 15, 30 or 60.
    spatial_unit: community areas (cells 1..77) or a square grid.
    grid_metres: grid cell side for SpatialUnit.GRID, 100..10000.
    arrival: when a trip is known (see ArrivalRule).
  """

  table: str = "trips"
  slot_minutes: int = features.DEFAULT_SLOT_MINUTES
  spatial_unit: "SpatialUnit" = SpatialUnit.COMMUNITY_AREA
  grid_metres: int = 1000
  arrival: ArrivalRule = ArrivalRule()

  def __post_init__(self):
    check_table(self.table)
    _check_int("slot_minutes", self.slot_minutes,
               allowed=features.SLOT_MINUTES_CHOICES)
    if not isinstance(self.spatial_unit, SpatialUnit):
      raise TaxiDemandError(
          f"spatial_unit must be a SpatialUnit, got {self.spatial_unit!r}")
    _check_int("grid_metres", self.grid_metres, bounds=_GRID_METRES_RANGE)
    if not isinstance(self.arrival, ArrivalRule):
      raise TaxiDemandError(
          f"arrival must be an ArrivalRule, got {self.arrival!r}")

  @property
  def slot_seconds(self) -> int:
    return self.slot_minutes * 60

  @property
  def slots_per_day(self) -> int:
    return features.slots_per_day(self.slot_minutes)


@functools.lru_cache(maxsize=1)
def template() -> str:
  """The text of demand.sql, with its {tokens}."""
  return resources.files("taxi_demand.data").joinpath(
      "demand.sql").read_text(encoding="utf-8")


def _cell_expr(cfg: QueryConfig, end: str = "pickup") -> str:
  """The cell of a trip's `end` ("pickup" or "dropoff")."""
  if cfg.spatial_unit is SpatialUnit.COMMUNITY_AREA:
    return f"{end}_community_area"
  return _grid_cell_expr(cfg, f"{end}_latitude", f"{end}_longitude")


def _grid_cell_expr(cfg: QueryConfig, lat: str, lon: str) -> str:
  """The grid cell of a position (NULL outside the city's box)."""
  box = contract.CHICAGO_BBOX
  row = (f"CAST(FLOOR(({lat} - {box.south}) * "
         f"{_METRES_PER_DEG_LAT} / {cfg.grid_metres}) AS INT64)")
  col = (f"CAST(FLOOR(({lon} - ({box.west})) * "
         f"{_METRES_PER_DEG_LON} / {cfg.grid_metres}) AS INT64)")
  inside = (f"{lat} >= {box.south} AND {lat} < {box.north} "
            f"AND {lon} >= {box.west} AND {lon} < {box.east}")
  return f"IF({inside}, {row} * {_GRID_ROW_STRIDE} + {col}, NULL)"


def _cells_query(cfg: QueryConfig) -> str:
  if cfg.spatial_unit is SpatialUnit.COMMUNITY_AREA:
    # All 77 areas, always: an area with no trips is a zero-demand cell.
    first, last = contract.COMMUNITY_AREAS[0], contract.COMMUNITY_AREAS[-1]
    return f"SELECT cell FROM UNNEST(GENERATE_ARRAY({first}, {last})) AS cell"
  # Grid: the cells with at least one pickup in the read window (the emitted
  # range plus its 7-day lookback). A grid has thousands of empty cells
  # (lake, rail yards); enumerating the box would mostly emit zeros.
  return "SELECT DISTINCT cell FROM trip_slots WHERE cell IS NOT NULL"


def range_independent(cfg: QueryConfig) -> bool:
  """Whether the query's rows for a day are the same run over that day
  alone or over a range of days holding it, so that one query may read
  many days (staged_ingest). Every feature is as of its issue time; the
  one exception is a grid's cells, those with a pickup in the read window,
  which a longer range widens."""
  return cfg.spatial_unit is SpatialUnit.COMMUNITY_AREA


def _emit_range(days_before: int) -> tuple[str, str]:
  if days_before == 0:
    return SPAN_BEGIN, SPAN_END
  return f"({SPAN_BEGIN} - {days_before * _SECONDS_PER_DAY})", SPAN_BEGIN


def _sampled_issue_time(cfg: QueryConfig) -> str:
  """One issue time per (cell, target slot), its lead spread evenly.

  Integer arithmetic only, so BigQuery and DuckDB pick the same lead.
  """
  return (f"targets.slot_start - {TICK_SECONDS} * MOD(cells.cell * "
          f"{_LEAD_MIX_CELL} + DIV(targets.slot_start, {cfg.slot_seconds}) * "
          f"{_LEAD_MIX_SLOT} + DIV(targets.slot_start, {_SECONDS_PER_DAY}) * "
          f"{_LEAD_MIX_DAY}, {len(LEADS_MINUTES)})")


def render_bigquery(cfg: QueryConfig, *, days_before: int = 0,
                    issued_at: int | None = None,
                    lead_minutes: int | None = None,
                    every_lead: bool = False) -> str:
  """The demand query as BigQuery Standard SQL, span placeholders intact.

  Args:
    cfg: granularity, source table and arrival rule.
    days_before: 0 emits the span's own day [begin, end) (a day's
      examples, ingested once); N > 0 emits the N days before it
      [begin - N days, begin) (the window in one read: Vertex's form).
    issued_at: None for training examples, one sampled lead per (cell, target
      slot); else the serving form: every target slot issued at this epoch
      second (on the tick grid), no trip read from then on, no label (the
      SERVING environment).
    lead_minutes: training examples at this one lead instead of a sampled
      one (analysis and tests: every target slot issued this long before).
    every_lead: training examples at every lead (LEADS_MINUTES) of every
      target slot: the training path's features for any issue time the
      5-minute job may have served, which the skew check joins with the
      served rows. With `issued_at`, the serving form at every tick up to
      `issued_at` (each target slot at each lead whose issue time is then
      or before; no trip read from `issued_at` on): what the job served
      for those slots at each of its ticks, which its forecast is revised
      from (taxi_demand.serving.revision).

  Returns:
    Query text that TFX's BigQueryExampleGen can run as it is.
  """
  _check_int("days_before", days_before, bounds=(0, 3660))
  emit_begin, emit_end = _emit_range(days_before)
  serving = issued_at is not None
  if serving:
    check_issue_time(issued_at)
  if lead_minutes is not None:
    _check_int("lead_minutes", lead_minutes, allowed=LEADS_MINUTES)
  if every_lead and lead_minutes is not None:
    raise TaxiDemandError("every_lead is every lead: give no lead_minutes "
                          "with it")
  values = {
      "table": check_table(cfg.table),
      "cell_expr": _cell_expr(cfg),
      "dropoff_cell_expr": _cell_expr(cfg, "dropoff"),
      "max_idle_seconds": str(MAX_IDLE_SECONDS),
      "max_lead_seconds": str(MAX_LEAD_MINUTES * 60),
      "cells_query": _cells_query(cfg),
      "slot_seconds": str(cfg.slot_seconds),
      "slots_per_day": str(cfg.slots_per_day),
      "slots_per_week": str(cfg.slots_per_day * 7),
      "slots_3h": str(3 * 60 // cfg.slot_minutes),
      "emit_begin": emit_begin,
      "emit_end": emit_end,
      "read_begin": f"({emit_begin} - {_LOOKBACK_SECONDS})",
      "read_end": str(issued_at) if serving else emit_end,
      "known_expr": cfg.arrival.known_expr(),
      "settle_seconds": str(SETTLE_SECONDS),
      "issued_at_expr": (
          "targets.slot_start - 60 * lead" if every_lead else
          str(issued_at) if serving else
          f"targets.slot_start - {lead_minutes * 60}"
          if lead_minutes is not None else
          _sampled_issue_time(cfg)),
      "leads_join": (
          f"\n    CROSS JOIN UNNEST(GENERATE_ARRAY(0, {MAX_LEAD_MINUTES}, "
          f"{features.LEAD_STEP_MINUTES})) AS lead" if every_lead else ""),
  }
  text = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template())
  if serving:
    ticks = f"\nWHERE issued_at <= {issued_at}" if every_lead else ""
    text = (f"SELECT {', '.join(features.SERVING_COLUMNS)}\n"
            f"FROM (\n{text}\n){ticks}\nORDER BY slot_start, cell, issued_at")
  return text


def check_span(span) -> int:
  """A span is a day number since 1970-01-01, as an int."""
  return _check_int("span", span, bounds=(0, 100_000))


def substitute_span(sql: str, span: int) -> str:
  """Fills the span placeholders exactly as TFX does.

  Mirrors tfx/components/example_gen/utils.py:get_query_for_span (TFX 1.16):
  begin = 1970-01-01 UTC + span days, end = begin + 1 day, both as integer
  epoch seconds, and @span_yyyymmdd_utc as a quoted 'YYYYMMDD' string, each
  by plain text replacement in that order.
  """
  check_span(span)
  begin = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + \
      datetime.timedelta(days=span)
  end = begin + datetime.timedelta(days=1)
  sql = sql.replace(SPAN_BEGIN, str(int(begin.timestamp())))
  sql = sql.replace(SPAN_END, str(int(end.timestamp())))
  return sql.replace(SPAN_YYYYMMDD, begin.strftime("'%Y%m%d'"))


def substitute_range(sql: str, begin_epoch: int, end_epoch: int) -> str:
  """Fills the placeholders with an arbitrary [begin, end) (serving)."""
  _check_int("begin", begin_epoch, bounds=(0, 10**11))
  _check_int("end", end_epoch, bounds=(begin_epoch + 1, 10**11))
  sql = sql.replace(SPAN_BEGIN, str(begin_epoch))
  sql = sql.replace(SPAN_END, str(end_epoch))
  day = datetime.datetime.fromtimestamp(begin_epoch, datetime.timezone.utc)
  return sql.replace(SPAN_YYYYMMDD, day.strftime("'%Y%m%d'"))


def _fix_dayofweek(node):
  """BigQuery DAYOFWEEK is 1..7 from Sunday; DuckDB's is 0..6 from Sunday.

  sqlglot (30.x) passes EXTRACT(DAYOFWEEK ...) through unchanged, so add 1.
  """
  import sqlglot.expressions as exp  # noqa: PLC0415
  if (isinstance(node, exp.Extract) and
      node.this.name.upper() in ("DAYOFWEEK", "DOW") and
      not isinstance(node.parent, exp.Add)):
    return exp.Paren(this=exp.Add(this=node.copy(),
                                  expression=exp.Literal.number(1)))
  return node


def _fix_timestamp_seconds(node):
  """TIMESTAMP_SECONDS(x) must be a naive timestamp on DuckDB.

  sqlglot turns it into TO_TIMESTAMP(x), a TIMESTAMP WITH TIME ZONE whose
  EXTRACT(HOUR ...) follows the session time zone. BigQuery extracts in UTC,
  so build a plain TIMESTAMP from microseconds instead.
  """
  import sqlglot.expressions as exp  # noqa: PLC0415
  if isinstance(node, exp.UnixToTime) and node.args.get("scale") is None:
    micros = exp.Mul(this=exp.Cast(this=node.this.copy(),
                                   to=exp.DataType.build("BIGINT")),
                     expression=exp.Literal.number(1_000_000))
    return exp.Anonymous(this="MAKE_TIMESTAMP", expressions=[micros])
  return node


def to_duckdb(bigquery_sql: str) -> str:
  """Transpiles span-substituted BigQuery SQL to DuckDB with sqlglot.

  Post-fixes where sqlglot keeps the text but the meaning differs, each pinned
  by a fixture test in tests/test_sql.py: EXTRACT(DAYOFWEEK) and
  TIMESTAMP_SECONDS (see the _fix_* functions).
  """
  left = [p for p in PLACEHOLDERS if p in bigquery_sql]
  if left:
    raise TaxiDemandError(
        f"substitute the span before transpiling: {', '.join(left)} left")
  # Transpiling the demand query takes sqlglot 0.5-1 s, and the 5-minute job
  # (and every replayed tick) asks for the same text with other epoch
  # seconds. Those are literals that sqlglot passes through as they are: the
  # text with each one swapped for a token is transpiled once and reused.
  numbers: list = []

  def token(match):
    numbers.append(match.group(0))
    return str(_TOKEN_BASE + len(numbers))

  template = _EPOCH_LITERAL.sub(token, bigquery_sql)
  out = _transpile(template)
  tokens = [str(_TOKEN_BASE + i) for i in range(1, len(numbers) + 1)]
  if (len(numbers) >= 1000 or str(_TOKEN_BASE)[:6] in bigquery_sql
      or not all(t in out for t in tokens)):
    return _transpile(bigquery_sql)  # not a template after all
  for t, number in zip(reversed(tokens), reversed(numbers)):
    out = out.replace(t, number)
  return out


# 9 to 11 digits: epoch seconds from 1973 to 5138 (no other literal in these
# queries is that long); tokens are 12 digits, so neither is taken for the
# other.
_EPOCH_LITERAL = re.compile(r"(?<![\w.'])\d{9,11}(?![\w.'])")
_TOKEN_BASE = 987_654_000_000


@functools.lru_cache(maxsize=128)
def _transpile(bigquery_sql: str) -> str:
  import sqlglot  # noqa: PLC0415 - keeps `import taxi_demand.data.sql` cheap
  tree = sqlglot.parse_one(bigquery_sql, read="bigquery")
  tree = tree.transform(_fix_timestamp_seconds).transform(_fix_dayofweek)
  return tree.sql(dialect="duckdb")


def demand_bigquery(cfg: QueryConfig, span: int, days_before: int = 0,
                    lead_minutes: int | None = None,
                    every_lead: bool = False) -> str:
  """The demand query for one span's train (days_before>0) or eval days,
  span substituted (see render_bigquery for the forms)."""
  return substitute_span(
      render_bigquery(cfg, days_before=days_before, lead_minutes=lead_minutes,
                      every_lead=every_lead), span)


def every_lead_bigquery(cfg: QueryConfig, begin: int, end: int) -> str:
  """Training examples at every lead for the target slots in [begin, end).

  The training path, recomputed for any (cell, target slot, issue time) the
  5-minute job may have served; both bounds on the slot grid.
  """
  for name, value in (("begin", begin), ("end", end)):
    if value % cfg.slot_seconds:
      raise TaxiDemandError(f"{name} {value} is not on the "
                            f"{cfg.slot_minutes}-minute slot grid")
  return substitute_range(render_bigquery(cfg, every_lead=True), begin, end)


def newest_known_bigquery(cfg: QueryConfig, issued_at: int) -> str:
  """When the newest trip known at `issued_at` became known (epoch seconds).

  The arrival rule's known time, so that an end-based feed is not "stale"
  by the length of its trips; NULL if nothing arrived in the day before.
  The serving row's data age is `issued_at` minus this.
  """
  check_issue_time(issued_at)
  known = cfg.arrival.known_expr()
  start = "UNIX_SECONDS(trip_start_timestamp)"
  return (
      f"SELECT MAX({known}) AS known_s FROM `{check_table(cfg.table)}` "
      f"WHERE {start} >= {issued_at - _SECONDS_PER_DAY} "
      f"AND {start} < {issued_at} AND {known} <= {issued_at}")


def pickups_bigquery(cfg: QueryConfig, begin: int, end: int) -> str:
  """Pickups per (cell, slot) over trips starting in [begin, end), with the
  sum of their located pickup positions.

  Columns cell, slot_start, pickups, located, latitude_sum, longitude_sum:
  what the report draws (a day's demand, and where each cell is: community
  areas have no geometry here, grid cells are placed the same way). Slots
  without pickups are absent; cells are the demand query's.
  """
  _check_range(begin, end)
  start = "UNIX_SECONDS(trip_start_timestamp)"
  located = "pickup_latitude IS NOT NULL AND pickup_longitude IS NOT NULL"
  return (
      f"SELECT cell, start_s - MOD(start_s, {cfg.slot_seconds}) AS "
      "slot_start, COUNT(*) AS pickups, COUNTIF(is_located) AS located, "
      "SUM(IF(is_located, lat, 0)) AS latitude_sum, "
      "SUM(IF(is_located, lon, 0)) AS longitude_sum "
      f"FROM (SELECT {_cell_expr(cfg)} AS cell, {start} AS start_s, "
      f"{located} AS is_located, pickup_latitude AS lat, "
      f"pickup_longitude AS lon FROM `{check_table(cfg.table)}` "
      f"WHERE {start} >= {begin} AND {start} < {end}) "
      "WHERE cell IS NOT NULL GROUP BY cell, slot_start "
      "ORDER BY cell, slot_start")


def _check_range(begin: int, end: int) -> None:
  _check_int("begin", begin, bounds=(0, 10**11))
  _check_int("end", end, bounds=(begin + 1, 10**11))


def _starts_before(epoch: int) -> str:
  """Trips that started before `epoch`, on the column itself (BigQuery
  prunes partitions by it, DuckDB skips row groups)."""
  _check_int("epoch", epoch, bounds=(0, 10**11))
  return f"trip_start_timestamp < TIMESTAMP_SECONDS({epoch})"


def span_range_bigquery(table: str = "trips") -> str:
  """The first and last day (span) with a trip start: first_span,
  last_span, both NULL for no trips."""
  day = "CAST(FLOOR(UNIX_SECONDS({}(trip_start_timestamp)) / {}) AS INT64)"
  return (f"SELECT {day.format('MIN', _SECONDS_PER_DAY)} AS first_span, "
          f"{day.format('MAX', _SECONDS_PER_DAY)} AS last_span "
          f"FROM `{check_table(table)}`")


def trips_on_bigquery(span: int, table: str = "trips") -> str:
  """How many trips started on day `span`: trips."""
  span = check_span(span)
  return (f"SELECT COUNT(*) AS trips FROM `{check_table(table)}` "
          f"WHERE NOT {_starts_before(spans.start_of(span))} "
          f"AND {_starts_before(spans.start_of(span + 1))}")


def newest_trip_bigquery(before: int | None = None,
                         table: str = "trips") -> str:
  """The newest trip start (epoch seconds), of those before `before`:
  newest_s, NULL for none."""
  where = "" if before is None else f" WHERE {_starts_before(before)}"
  return ("SELECT UNIX_SECONDS(MAX(trip_start_timestamp)) AS newest_s "
          f"FROM `{check_table(table)}`{where}")


def history_at_bigquery(cfg: QueryConfig, issued_at: int) -> str:
  """What a tick checks before it serves, in one query (one round trip to
  BigQuery, not three): first_span and last_span (`span_range_bigquery`),
  newest_s (`newest_trip_bigquery` before `issued_at`) and known_s
  (`newest_known_bigquery`), each computed as its own query would."""
  parts = (span_range_bigquery(cfg.table),
           newest_trip_bigquery(issued_at, cfg.table),
           newest_known_bigquery(cfg, issued_at))
  joined = " CROSS JOIN ".join(f"({p}) AS part_{i}"
                               for i, p in enumerate(parts))
  return ("SELECT first_span, last_span, newest_s, known_s FROM " + joined)


# A taxi idle longer than this between a dropoff and its next pickup has
# ended its shift (or paused it): the gap is not supply.
MAX_IDLE_SECONDS = 2 * 3600
# How long before a moment a trip may start and still end after it.
_LONGEST_TRIP_SECONDS = 6 * 3600


def _taxis_at_select(cfg: QueryConfig, at: int, max_idle_s: int) -> str:
  """Each taxi's newest trip that started by `at` and was known by then,
  with its end as recorded (`taxis_at_bigquery` hides a future one)."""
  _check_int("at", at, bounds=(0, 10**11))
  _check_int("max_idle_s", max_idle_s, bounds=(60, 24 * 3600))
  start = "UNIX_SECONDS(trip_start_timestamp)"
  return (
      f"  SELECT taxi_id, {_cell_expr(cfg, 'pickup')} AS pickup_cell,\n"
      f"    {_cell_expr(cfg, 'dropoff')} AS cell, {start} AS trip_start,\n"
      "    COALESCE(UNIX_SECONDS(trip_end_timestamp), "
      f"{start} + trip_seconds) AS idle_start,\n"
      "    ROW_NUMBER() OVER (PARTITION BY taxi_id ORDER BY "
      "trip_start_timestamp DESC, unique_key DESC) AS newest\n"
      f"  FROM `{check_table(cfg.table)}`\n"
      f"  WHERE taxi_id IS NOT NULL AND {start} <= {at}\n"
      f"    AND {cfg.arrival.known_expr()} <= {at}\n"
      f"    AND {start} >= {at - max_idle_s - _LONGEST_TRIP_SECONDS}\n")


def taxis_at_bigquery(cfg: QueryConfig, at: int,
                      max_idle_s: int = MAX_IDLE_SECONDS) -> str:
  """Every taxi idle or under way at `at`, from trips known then, as
  BigQuery Standard SQL: taxi_id, pickup_cell, cell (where its newest trip
  drops it off), trip_start, idle_start (NULL while the trip is under way).

  The supply forecast's state (taxi_demand.supply). Point in time: a trip
  under way at `at` shows that it has not ended and where it is going (a
  feed that logs trips at their start carries the destination), never its
  recorded end, which lies in the future. Taxis idle longer than
  `max_idle_s` (a shift's end) are left out, as in `idle_at_bigquery`.
  """
  return (
      "SELECT taxi_id, pickup_cell, cell, trip_start,\n"
      f"  IF(idle_start <= {at}, idle_start, NULL) AS idle_start FROM (\n"
      + _taxis_at_select(cfg, at, max_idle_s) +
      ")\n"
      "WHERE newest = 1 AND cell IS NOT NULL\n"
      f"  AND idle_start >= {at - max_idle_s}\n"
      "ORDER BY taxi_id")


def idle_at_bigquery(cfg: QueryConfig, at: int,
                     max_idle_s: int = MAX_IDLE_SECONDS) -> str:
  """The taxis idle at `at` from trips alone, as BigQuery Standard SQL:
  taxi_id, cell (its dropoff cell), idle_start.

  Point in time: only trips that started by `at` and were known by then
  (the arrival rule, as in the demand query) are read. A taxi is idle when
  its newest such trip has ended, at most `max_idle_s` before `at` (longer
  is a shift's end). Under an end-based
  rule a taxi whose trip is under way is not known to be busy: it shows
  where its last known trip left it, as the supply features count it.
  """
  return (
      "SELECT taxi_id, cell, idle_start FROM (\n"
      + _taxis_at_select(cfg, at, max_idle_s) +
      ")\n"
      "WHERE newest = 1 AND cell IS NOT NULL\n"
      f"  AND idle_start <= {at} AND idle_start >= {at - max_idle_s}\n"
      "ORDER BY taxi_id")


def taxi_trips_bigquery(cfg: QueryConfig, begin: int, end: int,
                        known_by: int | None = None,
                        ended_from: int | None = None) -> str:
  """Trips with a taxi_id starting in [begin, end), for the supply
  forecast's rates: taxi_id, pickup_at, dropoff_at, pickup_cell,
  dropoff_cell (NULL where the trip lacks them); with `known_by`, only the
  trips known by then under the arrival rule; with `ended_from`, only those
  whose pickup or dropoff is at or after it. In no order:
  `supply.TaxiTrips.from_table` puts each taxi's in order, cheaper than
  the warehouse sorting millions of rows by a string."""
  _check_range(begin, end)
  start = "UNIX_SECONDS(trip_start_timestamp)"
  known = "" if known_by is None else (
      f"  AND {cfg.arrival.known_expr()} <= "
      f"{_check_int('known_by', known_by, bounds=(0, 10**11))}\n")
  ended = ""
  if ended_from is not None:
    # A pickup or the dropoff_at below at or after `ended_from`, on the
    # time columns themselves where they hold it (as `_starts_before`: in
    # DuckDB a sixth of the time of UNIX_SECONDS on every row; whole
    # seconds compare the same either way).
    since = _check_int("ended_from", ended_from, bounds=(0, 10**11))
    ended = (f"  AND (NOT {_starts_before(since)} OR "
             f"trip_end_timestamp >= TIMESTAMP_SECONDS({since}) OR "
             f"(trip_end_timestamp IS NULL AND "
             f"{start} + trip_seconds >= {since}))\n")
  return (
      f"SELECT taxi_id, {start} AS pickup_at,\n"
      "  COALESCE(UNIX_SECONDS(trip_end_timestamp), "
      f"{start} + trip_seconds) AS dropoff_at,\n"
      f"  {_cell_expr(cfg, 'pickup')} AS pickup_cell,\n"
      f"  {_cell_expr(cfg, 'dropoff')} AS dropoff_cell\n"
      f"FROM `{check_table(cfg.table)}`\n"
      f"WHERE taxi_id IS NOT NULL AND NOT {_starts_before(begin)} "
      f"AND {_starts_before(end)}\n"
      + known + ended)



# A vehicle whose newest ping is older than this is off line: not supply.
PING_FRESH_SECONDS = 10 * 60


def _probe_cell_expr(cfg: QueryConfig) -> str:
  """A ping's cell: its community_area, or the grid cell of its position."""
  if cfg.spatial_unit is SpatialUnit.COMMUNITY_AREA:
    return "community_area"
  return _grid_cell_expr(cfg, "latitude", "longitude")


def idle_at_probes_bigquery(cfg: QueryConfig, at: int,
                            max_idle_s: int = MAX_IDLE_SECONDS,
                            fresh_s: int = PING_FRESH_SECONDS,
                            table: str = "probes") -> str:
  """The taxis idle at `at` from probe pings, as BigQuery Standard SQL:
  taxi_id, cell, idle_start, the columns of `idle_at_bigquery`.

  Point in time: only pings at or before `at` are read. A vehicle is idle
  when its newest ping is at most `fresh_s` old and unoccupied; its cell is
  that ping's. idle_start is its first unoccupied ping after its last
  occupied one, read back at most `max_idle_s`.
  """
  _check_int("at", at, bounds=(0, 10**11))
  _check_int("max_idle_s", max_idle_s, bounds=(60, 24 * 3600))
  _check_int("fresh_s", fresh_s, bounds=(1, max_idle_s))
  t = "UNIX_SECONDS(ping_timestamp)"
  return (
      "SELECT taxi_id, cell, idle_start FROM (\n"
      "  SELECT taxi_id, cell, occupied, t, newest,\n"
      "    MIN(IF(NOT occupied AND (last_busy IS NULL OR t > last_busy), t, "
      "NULL)) OVER (PARTITION BY taxi_id) AS idle_start\n"
      "  FROM (\n"
      f"    SELECT vehicle_id AS taxi_id, {_probe_cell_expr(cfg)} AS cell,\n"
      f"      occupied, {t} AS t,\n"
      "      ROW_NUMBER() OVER (PARTITION BY vehicle_id ORDER BY "
      "ping_timestamp DESC) AS newest,\n"
      "      MAX(IF(occupied, "
      f"{t}, NULL)) OVER (PARTITION BY vehicle_id) AS last_busy\n"
      f"    FROM `{check_table(table)}`\n"
      f"    WHERE {t} <= {at} AND {t} > {at - max_idle_s}\n"
      "  )\n"
      ")\n"
      f"WHERE newest = 1 AND NOT occupied AND t >= {at - fresh_s}\n"
      "  AND cell IS NOT NULL\n"
      "ORDER BY taxi_id")


def pings_near_bigquery(at: int, fresh_s: int = PING_FRESH_SECONDS,
                        table: str = "probes") -> str:
  """How many pings fall in [at - fresh_s, at]: whether probes cover `at`."""
  _check_int("at", at, bounds=(0, 10**11))
  t = "UNIX_SECONDS(ping_timestamp)"
  return (f"SELECT COUNT(*) AS pings FROM `{check_table(table)}` "
          f"WHERE {t} <= {at} AND {t} >= {at - fresh_s}")


def _requests_select(cfg: QueryConfig, begin: int, end: int) -> str:
  """Every trip starting in [begin, end) with its pickup and dropoff cells
  and its seconds, NULL where the trip lacks them."""
  _check_range(begin, end)
  start = "UNIX_SECONDS(trip_start_timestamp)"
  return (
      f"  SELECT {start} AS pickup_at,\n"
      f"    {_cell_expr(cfg, 'pickup')} AS pickup_cell,\n"
      f"    {_cell_expr(cfg, 'dropoff')} AS dropoff_cell,\n"
      "    COALESCE(trip_seconds, UNIX_SECONDS(trip_end_timestamp) - "
      f"{start}) AS seconds\n"
      f"  FROM `{check_table(cfg.table)}`\n"
      f"  WHERE {start} >= {begin} AND {start} < {end}\n")


def requests_bigquery(cfg: QueryConfig, begin: int, end: int) -> str:
  """Trips starting in [begin, end) as ride requests for the fleet
  simulation: pickup_at (epoch seconds), pickup and dropoff cells, trip
  seconds (from the timestamps when trip_seconds is missing)."""
  return (
      "SELECT * FROM (\n" + _requests_select(cfg, begin, end) + ")\n"
      "WHERE pickup_cell IS NOT NULL AND dropoff_cell IS NOT NULL "
      "AND seconds > 0\n"
      # A total order (equal rows aside): two engines give one row order.
      "ORDER BY pickup_at, pickup_cell, dropoff_cell, seconds")


def requests_coverage_bigquery(cfg: QueryConfig, begin: int, end: int
                               ) -> str:
  """How many of the trips starting in [begin, end) could be ride requests:
  trips, with a pickup cell, with a dropoff cell, with a duration. Says
  why `requests_bigquery` is empty (a feed without dropoffs, say)."""
  return (
      "SELECT COUNT(*) AS trips,\n"
      "  COUNTIF(pickup_cell IS NOT NULL) AS with_pickup,\n"
      "  COUNTIF(dropoff_cell IS NOT NULL) AS with_dropoff,\n"
      "  COUNTIF(seconds > 0) AS with_duration\n"
      "FROM (\n" + _requests_select(cfg, begin, end) + ")")


def check_issue_time(issued_at: int) -> int:
  _check_int("issued_at", issued_at, bounds=(0, 10**11))
  if issued_at % TICK_SECONDS:
    raise TaxiDemandError(
        f"issue time {issued_at} is not on the {TICK_SECONDS // 60}-minute "
        "tick grid")
  return issued_at


def first_target(cfg: QueryConfig, issued_at: int) -> int:
  """The first slot that starts at or after an issue time."""
  return -(-int(issued_at) // cfg.slot_seconds) * cfg.slot_seconds


def max_horizon(cfg: QueryConfig, issued_at: int) -> int:
  """How many slots from `issued_at` stay within the trained leads."""
  lead = first_target(cfg, issued_at) - issued_at
  return 1 + (MAX_LEAD_MINUTES * 60 - lead) // cfg.slot_seconds


def serving_query_bigquery(cfg: QueryConfig, issued_at: int,
                           horizon: int = 1) -> str:
  """Serving features, issued at `issued_at`, for `horizon` slots, every cell.

  The same demand query in its serving form: the target slots are the
  `horizon` slots from the first one starting at or after `issued_at`, and
  every feature counts only trips known at `issued_at` (no trip starting
  later is read). Leads beyond MAX_LEAD_MINUTES were never trained on, so
  such horizons are refused.
  """
  return substitute_range(render_bigquery(cfg, issued_at=issued_at),
                          *_serving_slots(cfg, issued_at, horizon))


def serving_ticks_bigquery(cfg: QueryConfig, issued_at: int,
                           horizon: int = 1) -> str:
  """`serving_query_bigquery`'s slots at every tick up to `issued_at`.

  Each target slot at each lead whose issue time is `issued_at` or earlier
  (back to the slot's longest lead), every cell, features as known at each
  row's own issue time, and no trip read from `issued_at` on: the rows the
  5-minute job served for those slots at each of its ticks, had it served
  them all. The rows issued at `issued_at` are `serving_query_bigquery`'s.
  """
  return substitute_range(
      render_bigquery(cfg, issued_at=issued_at, every_lead=True),
      *_serving_slots(cfg, issued_at, horizon))


def _serving_slots(cfg: QueryConfig, issued_at: int,
                   horizon: int) -> Tuple[int, int]:
  """[begin, end) of the `horizon` slots from the first one starting at or
  after `issued_at`; a horizon needing leads beyond MAX_LEAD_MINUTES,
  which no model was trained on, is refused."""
  check_issue_time(issued_at)
  _check_int("horizon", horizon, bounds=(1, cfg.slots_per_day))
  most = max_horizon(cfg, issued_at)
  if horizon > most:
    raise TaxiDemandError(
        f"--horizon {horizon} needs leads beyond {MAX_LEAD_MINUTES} minutes, "
        f"which the model was not trained on; at most {most} slot(s) from "
        "this issue time")
  begin = first_target(cfg, issued_at)
  return begin, begin + horizon * cfg.slot_seconds
