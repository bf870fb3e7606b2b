-- THE demand query: one row per (cell, slot) in the emitted range, zero-demand
-- slots included. BigQuery Standard SQL; DuckDB runs a sqlglot transpilation.
--
-- This file is a template rendered by taxi_demand/data/sql.py. Its brace
-- tokens take only config values: validated integers, a checked table
-- identifier, or expressions built from those and TFX's query-based
-- ExampleGen span placeholders, which the rendered text keeps so that
-- BigQueryExampleGen runs it unchanged. emit_begin and emit_end bound the
-- emitted slots (epoch seconds); read_begin is emit_begin minus 7 days: lag
-- history is read from there but never emitted.
-- Timestamps are naive Chicago wall clock read as UTC epoch seconds, so every
-- calendar field below is computed in UTC, which is the wall clock.
WITH
trip_slots AS (
  SELECT
    {cell_expr} AS cell,
    UNIX_SECONDS(trip_start_timestamp)
      - MOD(UNIX_SECONDS(trip_start_timestamp), {slot_seconds}) AS slot_start
  FROM `{table}`
  WHERE UNIX_SECONDS(trip_start_timestamp) >= {read_begin}
    AND UNIX_SECONDS(trip_start_timestamp) < {emit_end}
),
counts AS (
  SELECT cell, slot_start, COUNT(*) AS pickups
  FROM trip_slots
  WHERE cell IS NOT NULL
  GROUP BY cell, slot_start
),
cells AS (
  {cells_query}
),
slots AS (
  SELECT slot_start
  FROM UNNEST(GENERATE_ARRAY({read_begin}, {emit_end} - {slot_seconds},
                            {slot_seconds})) AS slot_start
),
-- Every cell x every slot of the read window: the window functions below
-- count rows, so the grid must be dense (no missing zero-demand slots).
dense AS (
  SELECT
    cells.cell AS cell,
    slots.slot_start AS slot_start,
    COALESCE(counts.pickups, 0) AS pickups
  FROM cells
  CROSS JOIN slots
  LEFT JOIN counts
    ON counts.cell = cells.cell AND counts.slot_start = slots.slot_start
),
history AS (
  SELECT
    cell,
    slot_start,
    pickups,
    LAG(pickups, 1, 0) OVER by_cell AS lag_1,
    LAG(pickups, 2, 0) OVER by_cell AS lag_2,
    LAG(pickups, 3, 0) OVER by_cell AS lag_3,
    LAG(pickups, {slots_per_day}, 0) OVER by_cell AS lag_1d,
    LAG(pickups, {slots_per_week}, 0) OVER by_cell AS lag_7d,
    AVG(pickups) OVER (
      PARTITION BY cell ORDER BY slot_start
      ROWS BETWEEN {slots_3h} PRECEDING AND 1 PRECEDING) AS mean_3h,
    AVG(pickups) OVER (
      PARTITION BY cell ORDER BY slot_start
      ROWS BETWEEN {slots_per_day} PRECEDING AND 1 PRECEDING) AS mean_24h,
    AVG(pickups) OVER (
      PARTITION BY cell, MOD(slot_start, 86400) ORDER BY slot_start
      ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING) AS mean_same_slot_7d
  FROM dense
  WINDOW by_cell AS (PARTITION BY cell ORDER BY slot_start)
),
-- City-wide pickups: the day's weather moves every cell at once, and the
-- whole city's recent pickups measure it far better than one cell's lags.
city AS (
  SELECT slot_start, SUM(pickups) AS pickups
  FROM dense
  GROUP BY slot_start
),
city_recent AS (
  SELECT
    slot_start,
    SUM(pickups) OVER (
      ORDER BY slot_start
      ROWS BETWEEN {slots_3h} PRECEDING AND 1 PRECEDING) AS city_3h
  FROM city
),
-- The same 3 hours on each of the 6 previous days: 6, not 7, because the
-- 7th day's window starts before read_begin.
city_history AS (
  SELECT
    slot_start,
    city_3h,
    AVG(city_3h) OVER (
      PARTITION BY MOD(slot_start, 86400) ORDER BY slot_start
      ROWS BETWEEN 6 PRECEDING AND 1 PRECEDING) AS city_3h_prev_6d
  FROM city_recent
),
calendar AS (
  SELECT
    slot_start,
    EXTRACT(HOUR FROM TIMESTAMP_SECONDS(slot_start)) AS hour,
    EXTRACT(DAYOFWEEK FROM TIMESTAMP_SECONDS(slot_start)) AS day_of_week,
    EXTRACT(MONTH FROM TIMESTAMP_SECONDS(slot_start)) AS month,
    EXTRACT(DAY FROM TIMESTAMP_SECONDS(slot_start)) AS day_of_month
  FROM slots
  WHERE slot_start >= {emit_begin}
)
SELECT
  CAST(h.cell AS INT64) AS cell,
  CAST(h.slot_start AS INT64) AS slot_start,
  CAST(c.hour AS INT64) AS hour,
  CAST(c.day_of_week AS INT64) AS day_of_week,
  -- US federal holidays by rule, no observed-day shifting; the same rule as
  -- taxi_demand/data/calendar.py. day_of_week: 2 = Monday, 5 = Thursday.
  CAST(CASE
    WHEN c.month = 1 AND c.day_of_month = 1 THEN 1
    WHEN c.month = 1 AND c.day_of_week = 2
      AND c.day_of_month BETWEEN 15 AND 21 THEN 1
    WHEN c.month = 2 AND c.day_of_week = 2
      AND c.day_of_month BETWEEN 15 AND 21 THEN 1
    WHEN c.month = 5 AND c.day_of_week = 2 AND c.day_of_month >= 25 THEN 1
    WHEN c.month = 7 AND c.day_of_month = 4 THEN 1
    WHEN c.month = 9 AND c.day_of_week = 2 AND c.day_of_month <= 7 THEN 1
    WHEN c.month = 11 AND c.day_of_week = 5
      AND c.day_of_month BETWEEN 22 AND 28 THEN 1
    WHEN c.month = 12 AND c.day_of_month = 25 THEN 1
    ELSE 0
  END AS INT64) AS is_holiday,
  CAST(h.lag_1 AS FLOAT64) AS lag_1,
  CAST(h.lag_2 AS FLOAT64) AS lag_2,
  CAST(h.lag_3 AS FLOAT64) AS lag_3,
  CAST(h.lag_1d AS FLOAT64) AS lag_1d,
  CAST(h.lag_7d AS FLOAT64) AS lag_7d,
  CAST(COALESCE(h.mean_3h, 0) AS FLOAT64) AS mean_3h,
  CAST(COALESCE(h.mean_24h, 0) AS FLOAT64) AS mean_24h,
  CAST(COALESCE(h.mean_same_slot_7d, 0) AS FLOAT64) AS mean_same_slot_7d,
  CAST(COALESCE(ch.city_3h, 0) AS FLOAT64) AS city_3h,
  CAST(COALESCE(ch.city_3h_prev_6d, 0) AS FLOAT64) AS city_3h_prev_6d,
  CAST(h.pickups AS INT64) AS pickups
FROM history AS h
JOIN calendar AS c ON c.slot_start = h.slot_start
JOIN city_history AS ch ON ch.slot_start = h.slot_start
ORDER BY slot_start, cell
