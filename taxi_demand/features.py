"""The one list of example fields: keys, label, features, transformed names.

The demand query (`taxi_demand/data/demand.sql`) emits exactly the columns in
`RAW_COLUMNS`, all INT64 or FLOAT64, one row per (cell, target slot, issue
time). Every feature is computed from the trips known at the issue time, under
the query's one arrival rule; the data-layer tests enforce that the query's
columns equal `RAW_COLUMNS` and pin the as-of rule on a hand-made fixture.
"""

from __future__ import annotations

from taxi_demand import spans

# Keys: identify an example; not fed to the model as raw numbers.
CELL = "cell"              # INT64: community area 1..77, or a grid cell id
SLOT_START = "slot_start"  # INT64: epoch seconds of the slot's start (Chicago wall clock)
ISSUED_AT = "issued_at"    # INT64: epoch seconds the forecast is issued at

# Label: pickups in the slot. Absent in the SERVING environment.
LABEL = "pickups"          # INT64

# How far ahead (INT64): minutes from the issue time to the target slot's
# start, a multiple of LEAD_STEP_MINUTES from 0 to MAX_LEAD_MINUTES. Issue
# times sit on the 5-minute job's grid; 55 minutes covers, from any tick,
# the slot after the next one (a driver needs time to get there).
LEAD_MINUTES = "lead_minutes"
LEAD_STEP_MINUTES = 5
MAX_LEAD_MINUTES = 55
N_LEADS = MAX_LEAD_MINUTES // LEAD_STEP_MINUTES + 1

# Calendar features (INT64).
HOUR = "hour"                  # 0..23
DAY_OF_WEEK = "day_of_week"    # 1..7, 1 = Sunday (BigQuery's meaning)
IS_HOLIDAY = "is_holiday"      # 0/1, US federal holidays by rule

# Demand history (FLOAT64), known at the issue time. "The slot under way" is
# the slot that holds the second before the issue time: at a slot boundary,
# the slot that has just ended, complete. Every tick of a slot then sees the
# same lags, and lead 0 holds lead 5's features and 5 minutes more.
LAG_1 = "lag_1"                # the last complete slot before the one under way
LAG_2 = "lag_2"                # the one before that
LAG_3 = "lag_3"                # and the one before that
LAG_1D = "lag_1d"              # the target slot yesterday (settled)
LAG_7D = "lag_7d"              # the target slot last week (settled)
MEAN_3H = "mean_3h"            # mean per slot, the 3 hours before the slot under way
MEAN_24H = "mean_24h"          # mean per slot, the 24 hours before it
MEAN_SAME_SLOT_7D = "mean_same_slot_7d"  # the target slot, past 7 days (settled)

# The slot under way (FLOAT64): its own feature, never a lag that changes
# meaning. Pickups known so far, and the share of the slot gone by.
NOW_PICKUPS = "now_pickups"
NOW_ELAPSED = "now_elapsed"    # > 0 .. 1 at a slot boundary (complete)

# City-wide demand history (FLOAT64), all cells summed, strictly before the
# slot: the day's city-wide level (weather) shows in these long before it
# shows in one cell's lags.
CITY_3H = "city_3h"                  # city pickups, the 3 hours before the slot under way
# Mean over the 6 previous days of the city's pickups in the same 3 hours.
CITY_3H_PREV_6D = "city_3h_prev_6d"

# Supply (FLOAT64): idle taxis in the cell, from trips with a taxi_id known at
# the issue time. A taxi waits, empty, in its dropoff cell until its next
# pickup (a wait over 2 hours is a shift's end). 0 where trips carry no
# taxi_id.
IDLE_NOW = "idle_now"          # taxis waiting in the cell at the issue time
IDLE_1H = "idle_1h"            # mean taxis waiting there over the hour before

CALENDAR_FEATURES = (HOUR, DAY_OF_WEEK, IS_HOLIDAY)
HISTORY_FEATURES = (LAG_1, LAG_2, LAG_3, LAG_1D, LAG_7D, MEAN_3H, MEAN_24H,
                    MEAN_SAME_SLOT_7D)
CITY_FEATURES = (CITY_3H, CITY_3H_PREV_6D)
NOW_FEATURES = (NOW_PICKUPS, NOW_ELAPSED)
SUPPLY_FEATURES = (IDLE_NOW, IDLE_1H)
# (cell, target slot, issue time) identifies an example and a served row.
KEYS = (CELL, SLOT_START, ISSUED_AT)
INT_COLUMNS = KEYS + (LEAD_MINUTES, LABEL) + CALENDAR_FEATURES
FLOAT_COLUMNS = HISTORY_FEATURES + CITY_FEATURES + NOW_FEATURES + SUPPLY_FEATURES
# Order in which the query emits them.
RAW_COLUMNS = KEYS + (LEAD_MINUTES, HOUR, DAY_OF_WEEK, IS_HOLIDAY) + \
    HISTORY_FEATURES + CITY_FEATURES + NOW_FEATURES + SUPPLY_FEATURES + \
    (LABEL,)
SERVING_COLUMNS = tuple(c for c in RAW_COLUMNS if c != LABEL)

# Derived by Transform (taxi_demand/modeling/preprocessing.py); after Transform
# every feature is a dense rank-1 tensor named transformed_name(key).
HOUR_OF_WEEK = "hour_of_week"  # (day_of_week - 1) * 24 + hour: 0..167
SLOT_OF_WEEK = "slot_of_week"  # hour_of_week * 4 + quarter-hour of slot_start
# log((1 + city_3h) / (1 + city_3h_prev_6d)): today's city-wide level against
# recent days at the same hours, on the log scale the model is additive on.
CITY_LEVEL = "city_level"
# transformed_name(CITY_3H) is log(1 + city_3h) less its mean over the span.
HOURS_PER_WEEK = 7 * 24
QUARTER_HOURS_PER_WEEK = 4 * HOURS_PER_WEEK
CELL_VOCABULARY = "cell"       # TFT vocabulary file name for CELL
CELL_OOV_BUCKETS = 1           # unseen cells share one index after the vocab

# The seasonal-naive forecast is the same slot last week.
SEASONAL_NAIVE = LAG_7D

# Slot and cell granularity.
SLOT_MINUTES_CHOICES = (15, 30, 60)
DEFAULT_SLOT_MINUTES = 30
SECONDS_PER_DAY = spans.SECONDS_PER_DAY
# Lag features reach back at most this many days before a span.
LOOKBACK_DAYS = 7


def transformed_name(key: str) -> str:
  """Name of a feature after Transform."""
  return f"{key}_xf"


def slots_per_day(slot_minutes: int) -> int:
  if slot_minutes not in SLOT_MINUTES_CHOICES:
    raise ValueError(
        f"slot length must be one of {SLOT_MINUTES_CHOICES} minutes, "
        f"got {slot_minutes}")
  return 24 * 60 // slot_minutes
