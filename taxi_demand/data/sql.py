"""Render THE demand query for a span and config; transpile it to DuckDB."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import re
from importlib import resources

from taxi_demand.data import contract
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features

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
# carry hyphens). Nothing else may reach the query text.
_DUCKDB_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_BIGQUERY_TABLE = re.compile(
    r"[a-z][a-z0-9-]{4,28}[a-z0-9]\.[A-Za-z_][A-Za-z0-9_]{0,1023}"
    r"\.[A-Za-z_][A-Za-z0-9_]{0,1023}")


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
  """

  table: str = "trips"
  slot_minutes: int = features.DEFAULT_SLOT_MINUTES
  spatial_unit: "SpatialUnit" = SpatialUnit.COMMUNITY_AREA
  grid_metres: int = 1000

  def __post_init__(self):
    check_table(self.table)
    _check_int("slot_minutes", self.slot_minutes,
               allowed=features.SLOT_MINUTES_CHOICES)
    if not isinstance(self.spatial_unit, SpatialUnit):
      raise TaxiDemandError(
          f"spatial_unit must be a SpatialUnit, got {self.spatial_unit!r}")
    _check_int("grid_metres", self.grid_metres, bounds=_GRID_METRES_RANGE)

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


def _cell_expr(cfg: QueryConfig) -> str:
  if cfg.spatial_unit is SpatialUnit.COMMUNITY_AREA:
    return "pickup_community_area"
  box = contract.CHICAGO_BBOX
  row = (f"CAST(FLOOR((pickup_latitude - {box.south}) * "
         f"{_METRES_PER_DEG_LAT} / {cfg.grid_metres}) AS INT64)")
  col = (f"CAST(FLOOR((pickup_longitude - ({box.west})) * "
         f"{_METRES_PER_DEG_LON} / {cfg.grid_metres}) AS INT64)")
  inside = (f"pickup_latitude >= {box.south} AND pickup_latitude < {box.north} "
            f"AND pickup_longitude >= {box.west} "
            f"AND pickup_longitude < {box.east}")
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


def _emit_range(days_before: int) -> tuple[str, str]:
  if days_before == 0:
    return SPAN_BEGIN, SPAN_END
  return f"({SPAN_BEGIN} - {days_before * _SECONDS_PER_DAY})", SPAN_BEGIN


def render_bigquery(cfg: QueryConfig, *, days_before: int = 0,
                    serving: bool = False) -> str:
  """The demand query as BigQuery Standard SQL, span placeholders intact.

  Args:
    cfg: granularity and source table.
    days_before: 0 emits the span's own day [begin, end) (the eval split);
      N > 0 emits the N days before it [begin - N days, begin) (train split).
    serving: drop the label column (the SERVING environment).

  Returns:
    Query text that TFX's BigQueryExampleGen can run as it is.
  """
  _check_int("days_before", days_before, bounds=(0, 3660))
  emit_begin, emit_end = _emit_range(days_before)
  values = {
      "table": check_table(cfg.table),
      "cell_expr": _cell_expr(cfg),
      "cells_query": _cells_query(cfg),
      "slot_seconds": str(cfg.slot_seconds),
      "slots_per_day": str(cfg.slots_per_day),
      "slots_per_week": str(cfg.slots_per_day * 7),
      "slots_3h": str(3 * 60 // cfg.slot_minutes),
      "emit_begin": emit_begin,
      "emit_end": emit_end,
      "read_begin": f"({emit_begin} - {_LOOKBACK_SECONDS})",
  }
  text = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template())
  if serving:
    text = (f"SELECT {', '.join(features.SERVING_COLUMNS)}\n"
            f"FROM (\n{text}\n)\nORDER BY slot_start, cell")
  return text


def split_queries(cfg: QueryConfig, train_days: int) -> dict[str, str]:
  """{"train": N days before the span, "eval": the span's day}, as BigQuery.

  Splits are by time, never random: the newest day is eval.
  """
  _check_int("train_days", train_days, bounds=(1, 3660))
  return {"train": render_bigquery(cfg, days_before=train_days),
          "eval": render_bigquery(cfg, days_before=0)}


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
  import sqlglot  # noqa: PLC0415 - keeps `import taxi_demand.data.sql` cheap
  tree = sqlglot.parse_one(bigquery_sql, read="bigquery")
  tree = tree.transform(_fix_timestamp_seconds).transform(_fix_dayofweek)
  return tree.sql(dialect="duckdb")


def demand_duckdb(cfg: QueryConfig, span: int, days_before: int = 0) -> str:
  """The DuckDB demand query for one span's train (days_before>0) or eval."""
  return to_duckdb(substitute_span(
      render_bigquery(cfg, days_before=days_before), span))


def check_slot_start(cfg: QueryConfig, slot_start_epoch: int) -> int:
  _check_int("slot_start", slot_start_epoch, bounds=(0, 10**11))
  if slot_start_epoch % cfg.slot_seconds:
    raise TaxiDemandError(
        f"slot_start {slot_start_epoch} is not on a {cfg.slot_minutes}-minute "
        "slot boundary")
  return slot_start_epoch


def serving_query_duckdb(cfg: QueryConfig, slot_start_epoch: int,
                         horizon: int = 1) -> str:
  """Serving features for every cell, for `horizon` slots from a slot start.

  The same demand query in its serving form, with the emitted range
  [slot_start, slot_start + horizon slots) substituted for the span bounds.
  Lags of slots after the first one inside the range see only what the
  warehouse holds so far, so horizon=1 is the honest next-slot forecast.
  """
  check_slot_start(cfg, slot_start_epoch)
  _check_int("horizon", horizon, bounds=(1, cfg.slots_per_day))
  end = slot_start_epoch + horizon * cfg.slot_seconds
  return to_duckdb(substitute_range(render_bigquery(cfg, serving=True),
                                    slot_start_epoch, end))
