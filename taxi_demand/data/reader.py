"""The warehouse's reading side, written once on BigQuery SQL for both backends.

A reader's every query is the BigQuery form from taxi_demand.data.sql: the
local DuckDB warehouse runs it through `sql.to_duckdb`, a BigQuery table
(`bq://PROJECT.DATASET.TABLE`) as it is. Both return the same Arrow schemas
in the same row order, so whatever reads features, pickups or supply does
not know which one it has. `open_reader` picks the backend from the
address, once, at the edge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import pyarrow as pa

from taxi_demand import cloud
from taxi_demand import features
from taxi_demand.data import sql as demand_sql

Address = Union[str, os.PathLike]

# The Arrow schemas readers return, whichever engine ran the query (DuckDB
# sums counts into 128-bit integers, BigQuery into INT64: cast to one).
DEMAND_SCHEMA = pa.schema(
    [(c, pa.int64() if c in features.INT_COLUMNS else pa.float64())
     for c in features.RAW_COLUMNS])
SERVING_SCHEMA = pa.schema(
    [f for f in DEMAND_SCHEMA if f.name != features.LABEL])
PICKUPS_SCHEMA = pa.schema([
    ("cell", pa.int64()), ("slot_start", pa.int64()), ("pickups", pa.int64()),
    ("located", pa.int64()), ("latitude_sum", pa.float64()),
    ("longitude_sum", pa.float64())])
IDLE_AT_SCHEMA = pa.schema([
    ("taxi_id", pa.string()), ("cell", pa.int64()), ("idle_start", pa.int64())])
TAXIS_AT_SCHEMA = pa.schema([
    ("taxi_id", pa.string()), ("pickup_cell", pa.int64()), ("cell", pa.int64()),
    ("trip_start", pa.int64()), ("idle_start", pa.int64())])
TAXI_TRIPS_SCHEMA = pa.schema(
    [("taxi_id", pa.string())] +
    [(c, pa.int64()) for c in ("pickup_at", "dropoff_at", "pickup_cell",
                               "dropoff_cell")])
REQUESTS_SCHEMA = pa.schema(
    [(c, pa.int64()) for c in ("pickup_at", "pickup_cell", "dropoff_cell",
                               "seconds")])
TRUTH_SCHEMA = pa.schema([
    ("community_area", pa.int64()), ("slot_start", pa.int64()),
    ("intensity", pa.float64())])

TRIPS = "trips"
PROBES = "probes"


def data_age_of(issued_at: int, known_s: int | None) -> int:
  """Seconds from the newest trip known at `issued_at` becoming known
  (`known_s`, sql.newest_known_bigquery) to `issued_at`: a day if none did
  in the day before."""
  return int(issued_at - known_s) if known_s is not None else \
      features.SECONDS_PER_DAY


class Reader:
  """The reading methods of a warehouse, over BigQuery SQL.

  A backend gives `_rows` (run one query, return its Arrow table),
  `_table` (a table's name as its queries name it), `has_table` and
  `truth`; everything else is written here once.

  Attributes:
    path: the warehouse's address as messages show it (a DuckDB file, or
      bq://PROJECT.DATASET.TABLE).
  """

  path: Union[Path, str]
  read_only: bool = True

  # ---- what a backend provides --------------------------------------------

  def _rows(self, bigquery_sql: str) -> pa.Table:
    raise NotImplementedError

  def _table(self, name: str) -> str:
    """Table `name` (TRIPS, PROBES) as this backend's queries name it."""
    return name

  def _cfg(self, cfg: demand_sql.QueryConfig) -> demand_sql.QueryConfig:
    """`cfg` reading this backend's trips table."""
    return cfg

  def has_table(self, name: str) -> bool:
    raise NotImplementedError

  def truth(self, begin: int, end: int) -> pa.Table:
    raise NotImplementedError

  def close(self) -> None:
    pass

  def yield_to_writers(self) -> None:
    """For a long reader (a replay), between two of its steps: lets a
    waiting writer in where the backend has one writer at a time."""

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ---- reading ---------------------------------------------------------------

  def _read(self, bigquery_sql: str, schema: pa.Schema) -> pa.Table:
    """The query's rows, cast to `schema` (whose names they must carry)."""
    table = self._rows(bigquery_sql)
    if table.column_names != schema.names:
      raise AssertionError(
          f"query emitted {table.column_names}, want {schema.names}")
    return table.cast(schema).replace_schema_metadata(None)

  def _row(self, bigquery_sql: str) -> dict:
    """The one row of an aggregate query, as {column: value}."""
    return self._rows(bigquery_sql).to_pylist()[0]

  def span_range(self) -> tuple[int, int] | None:
    """(first, last) span (day number) with trips, or None when empty."""
    row = self._row(demand_sql.span_range_bigquery(self._table(TRIPS)))
    if row["first_span"] is None:
      return None
    return int(row["first_span"]), int(row["last_span"])

  def newest_span(self) -> int | None:
    known = self.span_range()
    return None if known is None else known[1]

  def trips_on(self, span: int) -> int:
    """Trips that started on day `span`."""
    return int(self._row(demand_sql.trips_on_bigquery(
        span, self._table(TRIPS)))["trips"])

  def newest_trip_epoch(self, before: int | None = None) -> int | None:
    """The newest trip start (epoch seconds), of those before `before`."""
    newest = self._row(demand_sql.newest_trip_bigquery(
        None if before is None else int(before),
        self._table(TRIPS)))["newest_s"]
    return None if newest is None else int(newest)

  def query_demand(self, cfg: demand_sql.QueryConfig, span: int,
                   days_before: int = 0, lead_minutes: int | None = None,
                   every_lead: bool = False) -> pa.Table:
    """Examples of one span: its day (days_before=0) or the N days before;
    one sampled lead per (cell, slot), every slot at `lead_minutes`, or
    every slot at every lead."""
    return self._read(demand_sql.demand_bigquery(
        self._cfg(cfg), span, days_before, lead_minutes, every_lead),
                      DEMAND_SCHEMA)

  def every_lead_features(self, cfg: demand_sql.QueryConfig, begin: int,
                          end: int) -> pa.Table:
    """The training path's examples at every lead, for target slots in
    [begin, end): what the skew check joins served rows with."""
    return self._read(
        demand_sql.every_lead_bigquery(self._cfg(cfg), begin, end),
        DEMAND_SCHEMA)

  def history_at(self, cfg: demand_sql.QueryConfig, issued_at: int
                 ) -> dict[str, int | None]:
    """{first_span, last_span, newest_s, known_s} in one query
    (sql.history_at_bigquery): `span_range`, `newest_trip_epoch(before=
    issued_at)` and the known time behind `data_age`; None where no trip
    gives one."""
    row = self._row(demand_sql.history_at_bigquery(self._cfg(cfg), issued_at))
    return {k: None if v is None else int(v) for k, v in row.items()}

  def data_age(self, cfg: demand_sql.QueryConfig, issued_at: int) -> int:
    """Seconds since the newest trip known at `issued_at` became known
    (under cfg's arrival rule); a day if none did in the day before."""
    return data_age_of(issued_at, self._row(demand_sql.newest_known_bigquery(
        self._cfg(cfg), issued_at))["known_s"])

  def serving_features(self, cfg: demand_sql.QueryConfig, issued_at: int,
                       horizon: int = 1) -> pa.Table:
    """Serving features (no label) for every cell, issued at `issued_at`
    for the `horizon` slots from the first one starting then or after."""
    return self._read(demand_sql.serving_query_bigquery(
        self._cfg(cfg), issued_at, horizon), SERVING_SCHEMA)

  def serving_ticks(self, cfg: demand_sql.QueryConfig, issued_at: int,
                    horizon: int = 1) -> pa.Table:
    """`serving_features`' slots at every tick up to `issued_at`, each row
    as known at its own issue time (sql.serving_ticks_bigquery)."""
    return self._read(demand_sql.serving_ticks_bigquery(
        self._cfg(cfg), issued_at, horizon), SERVING_SCHEMA)

  def pickups(self, cfg: demand_sql.QueryConfig, begin: int,
              end: int) -> pa.Table:
    """Pickups and located positions per (cell, slot) over [begin, end)
    (sql.pickups_bigquery; the report's demand and map)."""
    return self._read(demand_sql.pickups_bigquery(self._cfg(cfg), begin, end),
                      PICKUPS_SCHEMA)

  def idle_at(self, cfg: demand_sql.QueryConfig, at: int,
              max_idle_s: int = demand_sql.MAX_IDLE_SECONDS) -> pa.Table:
    """The taxis idle at `at`, known then (sql.idle_at_bigquery)."""
    return self._read(demand_sql.idle_at_bigquery(
        self._cfg(cfg), at, max_idle_s), IDLE_AT_SCHEMA)

  def taxis_at(self, cfg: demand_sql.QueryConfig, at: int,
               max_idle_s: int = demand_sql.MAX_IDLE_SECONDS) -> pa.Table:
    """Every taxi idle or under way at `at`, known then
    (sql.taxis_at_bigquery: a future trip end never leaves the query)."""
    return self._read(demand_sql.taxis_at_bigquery(
        self._cfg(cfg), at, max_idle_s), TAXIS_AT_SCHEMA)

  def taxi_trips(self, cfg: demand_sql.QueryConfig, begin: int,
                 end: int, known_by: int | None = None,
                 ended_from: int | None = None) -> pa.Table:
    """Trips with a taxi_id starting in [begin, end), in no order (read
    them through `supply.TaxiTrips.from_table`), known by `known_by` and
    ended at or after `ended_from` if given (sql.taxi_trips_bigquery; the
    supply forecast's history)."""
    return self._read(demand_sql.taxi_trips_bigquery(
        self._cfg(cfg), begin, end, known_by, ended_from), TAXI_TRIPS_SCHEMA)

  def idle_at_probes(self, cfg: demand_sql.QueryConfig, at: int,
                     max_idle_s: int = demand_sql.MAX_IDLE_SECONDS
                     ) -> pa.Table:
    """The taxis idle at `at` by their pings (sql.idle_at_probes_bigquery)."""
    return self._read(demand_sql.idle_at_probes_bigquery(
        self._cfg(cfg), at, max_idle_s, table=self._table(PROBES)),
                      IDLE_AT_SCHEMA)

  def supply_at(self, cfg: demand_sql.QueryConfig, at: int
                ) -> tuple[pa.Table, str]:
    """(the taxis idle at `at`, "probes" or "trips"): from probes where
    pings cover `at`, which see every vehicle as it is, else from trips."""
    if self.has_table(PROBES):
      pings = self._row(demand_sql.pings_near_bigquery(
          at, table=self._table(PROBES)))["pings"]
      if pings:
        return self.idle_at_probes(cfg, at), "probes"
    return self.idle_at(cfg, at), "trips"

  def requests(self, cfg: demand_sql.QueryConfig, begin: int,
               end: int) -> pa.Table:
    """Trips of [begin, end) as ride requests (sql.requests_bigquery)."""
    return self._read(demand_sql.requests_bigquery(self._cfg(cfg), begin, end),
                      REQUESTS_SCHEMA)

  def requests_coverage(self, cfg: demand_sql.QueryConfig, begin: int,
                        end: int) -> dict[str, int]:
    """{trips, with_pickup, with_dropoff, with_duration} of [begin, end)
    (sql.requests_coverage_bigquery)."""
    row = self._row(demand_sql.requests_coverage_bigquery(
        self._cfg(cfg), begin, end))
    return {k: int(v or 0) for k, v in row.items()}


def open_reader(address: Address) -> Reader:
  """The warehouse at `address`, opened to read.

  Args:
    address: a DuckDB file (opened read-only: other readers may share it,
      a load waits its turn) or bq://PROJECT.DATASET.TABLE (the trips table
      in BigQuery; no Google call until the first read).

  Raises:
    TaxiDemandError: a bq:// address that does not parse, or no DuckDB file
      at the path.
  """
  if cloud.is_bigquery(address):
    from taxi_demand.data.bigquery import BigQueryWarehouse  # noqa: PLC0415
    return BigQueryWarehouse(str(address))
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  return Warehouse(address, read_only=True)


def warehouse_exists(address: Address | None) -> bool:
  """Whether there may be a warehouse at `address`: a DuckDB file that is
  there, or any bq:// address (BigQuery answers only when read: a table
  that is not there fails then, in one line)."""
  if not address:
    return False
  return cloud.is_bigquery(address) or Path(address).is_file()
