"""The raw trips contract: required columns, the warehouse schema, and row rules.

Column names follow `bigquery-public-data.chicago_taxi_trips.taxi_trips`, so
the cloud path can read the public table as it is. A file must carry the
REQUIRED_COLUMNS; the other TRIP_COLUMNS are kept when present (NULL when
absent) and any further column is ignored.

Every row read is either loaded into `trips` or written to `quarantine` with
the name of the first rule it breaks (in RULES order), so that
read == loaded + quarantined always holds.
"""

from __future__ import annotations

import dataclasses
import datetime

from taxi_demand import spans

# Columns of the warehouse `trips` table and their DuckDB types. Timestamps are
# naive Chicago wall-clock time (the public sample's epoch seconds encode wall
# clock; BigQuery TIMESTAMPs are used as they are, with no tz conversion).
TRIP_COLUMNS: dict[str, str] = {
    "unique_key": "VARCHAR",
    "taxi_id": "VARCHAR",
    "trip_start_timestamp": "TIMESTAMP",
    "trip_end_timestamp": "TIMESTAMP",
    "trip_seconds": "BIGINT",
    "trip_miles": "DOUBLE",
    "pickup_census_tract": "BIGINT",
    "dropoff_census_tract": "BIGINT",
    "pickup_community_area": "BIGINT",
    "dropoff_community_area": "BIGINT",
    "fare": "DOUBLE",
    "tips": "DOUBLE",
    "tolls": "DOUBLE",
    "extras": "DOUBLE",
    "trip_total": "DOUBLE",
    "payment_type": "VARCHAR",
    "company": "VARCHAR",
    "pickup_latitude": "DOUBLE",
    "pickup_longitude": "DOUBLE",
    "dropoff_latitude": "DOUBLE",
    "dropoff_longitude": "DOUBLE",
}

# What the row rules and the demand query read. `unique_key` is optional: the
# public sample has none, so the warehouse derives one from the row content.
# `trip_end_timestamp` is optional too: the sample lacks it.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "trip_start_timestamp",
    "trip_seconds",
    "trip_miles",
    "pickup_community_area",
    "pickup_latitude",
    "pickup_longitude",
)

TIMESTAMP_COLUMNS = ("trip_start_timestamp", "trip_end_timestamp")

# What the readers' queries (taxi_demand.data.sql) name. The local warehouse
# has every TRIP_COLUMNS column; a BigQuery trips table read as it is must
# have these, NULLs allowed, with the timestamps as TIMESTAMP.
QUERY_COLUMNS: tuple[str, ...] = (
    "unique_key", "taxi_id", "trip_start_timestamp", "trip_end_timestamp",
    "trip_seconds", "pickup_community_area", "dropoff_community_area",
    "pickup_latitude", "pickup_longitude", "dropoff_latitude",
    "dropoff_longitude",
)

# The time zone whose wall clock the warehouse's naive timestamps are. A
# timestamp text with a non-zero UTC offset ("2024-02-10 08:00:00-06:00") is
# an instant and is converted to this wall clock, as `--at` is. One with a
# zero offset or "UTC" is read as wall clock already: that is how BigQuery
# exports the public table, whose TIMESTAMPs hold Chicago wall clock.
CITY_TIME_ZONE = "America/Chicago"

# Every timestamp a row carries (trip start and end, a ping) must lie in
# [EARLIEST_TIMESTAMP, TIMESTAMP_LIMIT). The city's trips begin in 2013:
# anything before 2000 is a placeholder (1900-01-01) or a unit slip, and
# anything from 2100 on a typo or epoch milliseconds read as seconds. Such a
# row would move the warehouse's first or newest day (the daily run's
# default day) decades away, and a year before 1 AD or after 9999 cannot
# even be turned into a Python date.
EARLIEST_TIMESTAMP = datetime.datetime(2000, 1, 1)
TIMESTAMP_LIMIT = datetime.datetime(2100, 1, 1)  # the first moment refused

# What the optional signals read, beyond REQUIRED_COLUMNS. A feed without
# them still trains, validates and pushes; the signal is left out and the
# run says so (README, "What each signal needs").
DROPOFF_COLUMNS = ("dropoff_community_area", "dropoff_census_tract",
                   "dropoff_latitude", "dropoff_longitude")
OPTIONAL_GROUPS: dict[str, tuple[str, ...]] = {
    "dropoff": DROPOFF_COLUMNS,   # guidance (the fleet drives to dropoffs)
    "taxi_id": ("taxi_id",),      # supply from trips (idle_now, idle_1h)
}


def optional_columns(names) -> tuple[str, ...]:
  """The trips columns that `names` stand for (a column of TRIP_COLUMNS
  or an OPTIONAL_GROUPS name), each one optional.

  Raises:
    ValueError: a name is unknown or a required column.
  """
  out: list[str] = []
  for name in names:
    key = str(name).strip().lower()
    columns = OPTIONAL_GROUPS.get(key) or ((key,) if key in TRIP_COLUMNS
                                            else None)
    if columns is None:
      raise ValueError(
          f"{name!r} is not a trips column nor one of "
          f"{', '.join(OPTIONAL_GROUPS)}")
    required = [c for c in columns if c in REQUIRED_COLUMNS]
    if required:
      raise ValueError(f"{required[0]} is required: a trips file without "
                       "it cannot load")
    out += [c for c in columns if c not in out]
  return tuple(out)

COMMUNITY_AREAS = range(1, 78)  # Chicago's 77 community areas

# Bounds of the values rule `value_out_of_range`: finite, and within reach
# of a taxi. The public sample's extremes (1,710 miles, 20 hours, $700) load
# as they are; -1e308, NaN and inf, which break sums and means, do not.
MONEY_COLUMNS = ("fare", "tips", "tolls", "extras", "trip_total")
MAX_DOLLARS = 100_000.0            # |amount|: refunds may be negative
MAX_TRIP_MILES = 5_000.0
# The public table's longest trip is under a day; two days is clearly wrong.
MAX_TRIP_SECONDS = 2 * spans.SECONDS_PER_DAY

# What a simulator truth file holds (taxi_demand.data.simulate): a Parquet
# file with these columns, and no trip_start_timestamp, loads into `truth`,
# whatever its name.
TRUTH_COLUMNS = ("community_area", "slot_start", "intensity")


def is_truth(columns) -> bool:
  """Whether a file with these columns is simulator truth, not trips."""
  present = {c.lower() for c in columns}
  return (set(TRUTH_COLUMNS) <= present and
          "trip_start_timestamp" not in present)


@dataclasses.dataclass(frozen=True)
class BoundingBox:
  """A lat/lon box in degrees."""

  south: float
  north: float
  west: float
  east: float


# The city of Chicago with a small margin: O'Hare (41.98, -87.91) is inside,
# the suburbs' airports and (0, 0) placeholders are not.
CHICAGO_BBOX = BoundingBox(south=41.60, north=42.05, west=-87.95, east=-87.50)


@dataclasses.dataclass(frozen=True)
class Rule:
  name: str
  description: str


# Checked in this order; a row is quarantined under the first rule it breaks.
RULES: tuple[Rule, ...] = (
    # First: such a row has no fields for the other rules to read. It counts
    # as one row read, whatever its length, so read == loaded + quarantined
    # holds for a file with a broken line too.
    Rule("malformed_row",
         "the CSV reader could not split the row into the header's columns: "
         "too many or too few fields, an unterminated quote, a line over the "
         "reader's size limit, or invalid UTF-8"),
    Rule("bad_timestamp",
         "trip_start_timestamp missing or unparsable, or trip_end_timestamp "
         "present but unparsable (epoch seconds have at most 11 digits)"),
    Rule("timestamp_out_of_range",
         f"trip_start_timestamp, or trip_end_timestamp, before "
         f"{EARLIEST_TIMESTAMP:%Y-%m-%d} or on or after "
         f"{TIMESTAMP_LIMIT:%Y-%m-%d} (after converting an explicit UTC "
         f"offset to {CITY_TIME_ZONE} wall clock)"),
    # Decision: a trip with neither a community area nor coordinates cannot be
    # counted in any cell, so it is quarantined rather than loaded and then
    # ignored by the demand query (the public sample has 2 such rows). A trip
    # with coordinates but no community area loads: the grid unit counts it.
    Rule("missing_pickup_location",
         "no pickup_community_area and no pickup coordinates"),
    Rule("community_area_out_of_range",
         "pickup_community_area present but not an integer in 1..77"),
    Rule("coordinates_outside_chicago",
         "pickup coordinates unparsable, half missing, or outside the city's "
         "bounding box"),
    Rule("negative_duration",
         "trip_seconds unparsable or negative, or the trip ends before it "
         "starts"),
    Rule("negative_distance", "trip_miles unparsable or negative"),
    Rule("value_out_of_range",
         f"trip_miles over {MAX_TRIP_MILES:,.0f}, trip_seconds over "
         f"{MAX_TRIP_SECONDS:,}, or a money column ({', '.join(MONEY_COLUMNS)})"
         f" present but unparsable or beyond +/-{MAX_DOLLARS:,.0f}; NaN and "
         "infinity included"),
    Rule("duplicate_key",
         "unique_key (or the content-derived key) already loaded, or repeated "
         "earlier in the same load"),
)
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)


def missing_columns(columns) -> list[str]:
  """Required columns absent from `columns`, in contract order."""
  present = {c.lower() for c in columns}
  return [c for c in REQUIRED_COLUMNS if c not in present]


# ---- probes: an operator's vehicle pings (optional) -------------------------
#
# Where an operator has them, pings say where each vehicle is and whether it
# carries a passenger, which is supply known as it happens rather than
# inferred from trips afterwards. A file is a probes file when its header has
# no trip_start_timestamp and a column only pings have (`is_probes`); it loads into the
# `probes` table, with the same accounting as trips: read == loaded +
# quarantined, each quarantined row under the first PROBE_RULES rule it
# breaks. `community_area` is optional: with the community-area unit, a ping
# without one counts in no cell (grid cells come from the position).
PROBE_COLUMNS: dict[str, str] = {
    "vehicle_id": "VARCHAR",
    "ping_timestamp": "TIMESTAMP",
    "latitude": "DOUBLE",
    "longitude": "DOUBLE",
    "occupied": "BOOLEAN",
    "community_area": "BIGINT",
}
PROBE_REQUIRED_COLUMNS: tuple[str, ...] = (
    "vehicle_id", "ping_timestamp", "latitude", "longitude", "occupied")
# What `occupied` may say, case and surrounding blanks ignored.
OCCUPIED_TRUE = ("true", "t", "1", "yes", "y")
OCCUPIED_FALSE = ("false", "f", "0", "no", "n")

PROBE_RULES: tuple[Rule, ...] = (
    RULES[0],  # malformed_row: the same reader, the same meaning
    Rule("bad_timestamp", "ping_timestamp missing or unparsable"),
    Rule("timestamp_out_of_range",
         f"ping_timestamp before {EARLIEST_TIMESTAMP:%Y-%m-%d} or on or "
         f"after {TIMESTAMP_LIMIT:%Y-%m-%d}"),
    Rule("missing_vehicle_id", "vehicle_id missing or blank"),
    Rule("position_outside_chicago",
         "latitude or longitude missing, unparsable or outside the city's "
         "bounding box"),
    Rule("community_area_out_of_range",
         "community_area present but not an integer in 1..77"),
    Rule("bad_occupied_flag",
         "occupied missing or not one of " +
         "/".join(OCCUPIED_TRUE) + " or " + "/".join(OCCUPIED_FALSE)),
    Rule("duplicate_ping",
         "the same vehicle_id and ping_timestamp already loaded, or repeated "
         "earlier in the same load"),
)
PROBE_RULE_NAMES: tuple[str, ...] = tuple(r.name for r in PROBE_RULES)


def is_probes(columns) -> bool:
  """Whether a file with these columns is meant as probes, not trips: no
  trip_start_timestamp, and a column only pings have. Its missing probe
  columns are then the ones to name."""
  present = {c.lower() for c in columns}
  return ("trip_start_timestamp" not in present and
          bool(present & {"vehicle_id", "ping_timestamp", "occupied"}))


def missing_probe_columns(columns) -> list[str]:
  """Required probe columns absent from `columns`, in contract order."""
  present = {c.lower() for c in columns}
  return [c for c in PROBE_REQUIRED_COLUMNS if c not in present]
