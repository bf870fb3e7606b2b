-- THE demand query: one row per (cell, target slot, issue time) in the emitted
-- range, zero-demand slots included. BigQuery Standard SQL; DuckDB runs a
-- sqlglot transpilation.
--
-- This file is a template rendered by taxi_demand/data/sql.py. Its brace
-- tokens take only config values: validated integers, a checked table
-- identifier, or expressions built from those and TFX's query-based
-- ExampleGen span placeholders, which the rendered text keeps so that
-- BigQueryExampleGen runs it unchanged. emit_begin and emit_end bound the
-- target slots (epoch seconds); read_begin is emit_begin minus 7 days, and no
-- trip that starts at or after read_end is read at all (serving: the issue
-- time, so a replay never reads the future).
--
-- Point in time. A forecast for a target slot is issued at a time t
-- (`issued_at`, on the 5-minute grid, `lead_minutes` before the slot). A trip
-- is known at t when known_expr <= t: the one arrival rule, the same for
-- training, serving and replay (sql.ArrivalRule). Recent features (the slot
-- under way at t, the complete slots just before it, the last 3 and 24
-- hours, the city's last 3 hours) count only trips known at t. Features of
-- slots a day or more back count the trips known within settle_seconds of
-- their slot's start, which is always before t: "settled" counts that mean
-- the same at every lead. The label is the target slot's full count.
-- The slot under way at t is the one holding the second before t: at a slot
-- boundary, the slot that has just ended (now_elapsed 1), not the one just
-- starting. So every tick of a slot sees the same lags: lead 0 holds what
-- lead 5 holds and the 5 minutes since, in the same features, where a slot
-- that had only started would shift every lag by one slot at boundary ticks
-- alone (a twelfth of the examples), which the model fits worst.
-- Timestamps are naive Chicago wall clock read as UTC epoch seconds, so every
-- calendar field below is computed in UTC, which is the wall clock.
WITH
trips_in AS (
  SELECT
    {cell_expr} AS cell,
    UNIX_SECONDS(trip_start_timestamp) AS start_s,
    {known_expr} AS known_s,
    taxi_id,
    {dropoff_cell_expr} AS dropoff_cell,
    COALESCE(UNIX_SECONDS(trip_end_timestamp),
      UNIX_SECONDS(trip_start_timestamp) + trip_seconds) AS end_s
  FROM `{table}`
  WHERE UNIX_SECONDS(trip_start_timestamp) >= {read_begin}
    AND UNIX_SECONDS(trip_start_timestamp) < {read_end}
),
-- `on_time`: known by the end of its own slot, so known at every tick from
-- the next slot on. Only the other trips ("late": a trips export, a delayed
-- feed) need comparing with each issue time one by one; on-time ones are
-- counted per slot once (see on_time_windows).
trip_slots AS (
  SELECT cell, start_s, known_s, slot_start,
    known_s <= slot_start + {slot_seconds} AS on_time
  FROM (
    SELECT cell, start_s, known_s,
      start_s - MOD(start_s, {slot_seconds}) AS slot_start
    FROM trips_in
    WHERE cell IS NOT NULL
  )
),
cells AS (
  {cells_query}
),
targets AS (
  SELECT slot_start
  FROM UNNEST(GENERATE_ARRAY({emit_begin}, {emit_end} - {slot_seconds},
                            {slot_seconds})) AS slot_start
),
-- (cell, target slot, issue time) rows; `anchor` starts the slot under way,
-- the one holding the second before the tick (see above).
issues AS (
  SELECT cell, slot_start, issued_at,
    (issued_at - 1) - MOD(issued_at - 1, {slot_seconds}) AS anchor
  FROM (
    SELECT cells.cell AS cell, targets.slot_start AS slot_start,
      {issued_at_expr} AS issued_at
    FROM cells CROSS JOIN targets{leads_join}
  )
),
slots AS (
  SELECT slot_start
  FROM UNNEST(GENERATE_ARRAY({read_begin}, {emit_end} - {slot_seconds},
                            {slot_seconds})) AS slot_start
),
on_time_counts AS (
  SELECT cell, slot_start, COUNT(*) AS pickups
  FROM trip_slots
  WHERE on_time
  GROUP BY cell, slot_start
),
-- Per cell and slot boundary (an anchor): the on-time trips of the slots
-- before it, which every tick of the slot that starts there knows.
on_time_windows AS (
  SELECT cell, slot_start AS anchor,
    LAG(pickups, 1, 0) OVER by_cell AS lag_1,
    LAG(pickups, 2, 0) OVER by_cell AS lag_2,
    LAG(pickups, 3, 0) OVER by_cell AS lag_3,
    SUM(pickups) OVER (PARTITION BY cell ORDER BY slot_start
      ROWS BETWEEN {slots_3h} PRECEDING AND 1 PRECEDING) AS sum_3h,
    SUM(pickups) OVER (PARTITION BY cell ORDER BY slot_start
      ROWS BETWEEN {slots_per_day} PRECEDING AND 1 PRECEDING) AS sum_24h
  FROM (
    SELECT cells.cell AS cell, slots.slot_start AS slot_start,
      COALESCE(o.pickups, 0) AS pickups
    FROM cells CROSS JOIN slots
    LEFT JOIN on_time_counts AS o
      ON o.cell = cells.cell AND o.slot_start = slots.slot_start
  )
  WINDOW by_cell AS (PARTITION BY cell ORDER BY slot_start)
),
-- Late trips of the 24 hours before the slot under way, known by the tick.
late_recent AS (
  SELECT
    i.cell, i.slot_start, i.issued_at,
    SUM(IF(t.slot_start = i.anchor - {slot_seconds}, 1, 0)) AS lag_1,
    SUM(IF(t.slot_start = i.anchor - 2 * {slot_seconds}, 1, 0)) AS lag_2,
    SUM(IF(t.slot_start = i.anchor - 3 * {slot_seconds}, 1, 0)) AS lag_3,
    SUM(IF(t.slot_start >= i.anchor - {slots_3h} * {slot_seconds}, 1, 0)) AS sum_3h,
    COUNT(*) AS sum_24h
  FROM issues AS i
  JOIN trip_slots AS t
    ON t.cell = i.cell
    AND t.slot_start >= i.anchor - {slots_per_day} * {slot_seconds}
    AND t.slot_start < i.anchor
    AND NOT t.on_time
    AND t.known_s <= i.issued_at
  GROUP BY i.cell, i.slot_start, i.issued_at
),
-- The slot under way: its trips started before the tick and known by it.
now_recent AS (
  SELECT i.cell, i.slot_start, i.issued_at, COUNT(*) AS now_pickups
  FROM issues AS i
  JOIN trip_slots AS t
    ON t.cell = i.cell
    AND t.slot_start = i.anchor
    AND t.start_s < i.issued_at
    AND t.known_s <= i.issued_at
  GROUP BY i.cell, i.slot_start, i.issued_at
),
recent AS (
  SELECT
    i.cell, i.slot_start, i.issued_at,
    COALESCE(n.now_pickups, 0) AS now_pickups,
    w.lag_1 + COALESCE(l.lag_1, 0) AS lag_1,
    w.lag_2 + COALESCE(l.lag_2, 0) AS lag_2,
    w.lag_3 + COALESCE(l.lag_3, 0) AS lag_3,
    (w.sum_3h + COALESCE(l.sum_3h, 0)) / {slots_3h} AS mean_3h,
    (w.sum_24h + COALESCE(l.sum_24h, 0)) / {slots_per_day} AS mean_24h
  FROM issues AS i
  JOIN on_time_windows AS w ON w.cell = i.cell AND w.anchor = i.anchor
  LEFT JOIN late_recent AS l
    ON l.cell = i.cell AND l.slot_start = i.slot_start
    AND l.issued_at = i.issued_at
  LEFT JOIN now_recent AS n
    ON n.cell = i.cell AND n.slot_start = i.slot_start
    AND n.issued_at = i.issued_at
),
ticks AS (
  SELECT DISTINCT issued_at, anchor FROM issues
),
city_on_time AS (
  SELECT anchor, SUM(sum_3h) AS city_3h
  FROM on_time_windows
  GROUP BY anchor
),
-- An inner join: BigQuery allows a LEFT JOIN only on an equality, and a tick
-- with no late trip in its window is a 0 below (COALESCE).
city_late AS (
  SELECT k.issued_at, COUNT(*) AS city_3h
  FROM ticks AS k
  JOIN trip_slots AS t
    ON t.slot_start >= k.anchor - {slots_3h} * {slot_seconds}
    AND t.slot_start < k.anchor
    AND NOT t.on_time
    AND t.known_s <= k.issued_at
  GROUP BY k.issued_at
),
city_recent AS (
  SELECT k.issued_at, c.city_3h + COALESCE(l.city_3h, 0) AS city_3h
  FROM ticks AS k
  JOIN city_on_time AS c ON c.anchor = k.anchor
  LEFT JOIN city_late AS l ON l.issued_at = k.issued_at
),
-- Supply. Between a taxi's dropoff and its next pickup it waits, empty, in
-- the dropoff cell; a wait over {max_idle_seconds} s is a shift's end, so a
-- wait counts for that long at most. At a tick, a wait counts when its trip
-- is known by then, and it ends at the next pickup only if that trip is
-- known by then too; as everywhere here, a trip counts only if it started
-- before the tick (sql.idle_at_bigquery reads a moment the same way).
-- A wait matters to the ticks of the hours from its start to an hour past
-- its longest end: listed per such hour, it joins the ticks on an equality,
-- which BigQuery needs to avoid a cross join. (DIV's first argument is in
-- parentheses: sqlglot drops them from a sum otherwise.)
taxi_waits AS (
  SELECT dropoff_cell AS cell, start_s, end_s, known_s,
    LEAD(start_s) OVER by_taxi AS next_start,
    LEAD(known_s) OVER by_taxi AS next_known
  FROM trips_in
  WHERE taxi_id IS NOT NULL
  WINDOW by_taxi AS (PARTITION BY taxi_id ORDER BY start_s, end_s)
),
wait_hours AS (
  SELECT w.*, hour_index
  FROM taxi_waits AS w
  CROSS JOIN UNNEST(GENERATE_ARRAY(DIV(w.end_s, 3600),
    DIV((w.end_s + {max_idle_seconds} + 3600), 3600))) AS hour_index
  WHERE w.cell IS NOT NULL
    -- No tick is more than {max_lead_seconds} s before the emitted range.
    AND w.end_s > {emit_begin} - {max_lead_seconds} - 3600 - {max_idle_seconds}
),
supply AS (
  SELECT k.issued_at, w.cell,
    SUM(IF(w.end_s > k.issued_at - {max_idle_seconds}
      AND (w.next_known IS NULL OR w.next_known > k.issued_at
        OR w.next_start >= k.issued_at), 1, 0)) AS idle_now,
    SUM(GREATEST(0, LEAST(k.issued_at, w.end_s + {max_idle_seconds},
        IF(w.next_known <= k.issued_at AND w.next_start < k.issued_at,
          w.next_start, k.issued_at))
      - GREATEST(w.end_s, k.issued_at - 3600))) / 3600 AS idle_1h
  FROM ticks AS k
  JOIN wait_hours AS w
    ON w.hour_index = DIV(k.issued_at, 3600)
    AND w.end_s <= k.issued_at
    AND w.end_s > k.issued_at - 3600 - {max_idle_seconds}
    AND w.start_s < k.issued_at
    AND w.known_s <= k.issued_at
  GROUP BY k.issued_at, w.cell
),
settled_counts AS (
  SELECT cell, slot_start, COUNT(*) AS pickups
  FROM trip_slots
  WHERE known_s < slot_start + {settle_seconds}
  GROUP BY cell, slot_start
),
settled AS (
  SELECT cells.cell AS cell, slots.slot_start AS slot_start,
    COALESCE(sc.pickups, 0) AS pickups
  FROM cells CROSS JOIN slots
  LEFT JOIN settled_counts AS sc
    ON sc.cell = cells.cell AND sc.slot_start = slots.slot_start
),
settled_history AS (
  SELECT cell, slot_start,
    LAG(pickups, {slots_per_day}, 0) OVER by_cell AS lag_1d,
    LAG(pickups, {slots_per_week}, 0) OVER by_cell AS lag_7d,
    AVG(pickups) OVER (
      PARTITION BY cell, MOD(slot_start, 86400) ORDER BY slot_start
      ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING) AS mean_same_slot_7d
  FROM settled
  WINDOW by_cell AS (PARTITION BY cell ORDER BY slot_start)
),
settled_city_slots AS (
  SELECT slot_start, SUM(pickups) AS pickups
  FROM settled
  GROUP BY slot_start
),
settled_city AS (
  SELECT slot_start,
    SUM(pickups) OVER (
      ORDER BY slot_start
      ROWS BETWEEN {slots_3h} PRECEDING AND 1 PRECEDING) AS city_3h
  FROM settled_city_slots
),
city_history AS (
  SELECT slot_start,
    AVG(city_3h) OVER (
      PARTITION BY MOD(slot_start, 86400) ORDER BY slot_start
      ROWS BETWEEN 6 PRECEDING AND 1 PRECEDING) AS city_3h_prev_6d
  FROM settled_city
),
labels AS (
  SELECT cell, slot_start, COUNT(*) AS pickups
  FROM trip_slots
  GROUP BY cell, slot_start
),
calendar AS (
  SELECT
    slot_start,
    EXTRACT(HOUR FROM TIMESTAMP_SECONDS(slot_start)) AS hour,
    EXTRACT(DAYOFWEEK FROM TIMESTAMP_SECONDS(slot_start)) AS day_of_week,
    EXTRACT(MONTH FROM TIMESTAMP_SECONDS(slot_start)) AS month,
    EXTRACT(DAY FROM TIMESTAMP_SECONDS(slot_start)) AS day_of_month
  FROM targets
)
SELECT
  CAST(i.cell AS INT64) AS cell,
  CAST(i.slot_start AS INT64) AS slot_start,
  CAST(i.issued_at AS INT64) AS issued_at,
  CAST((i.slot_start - i.issued_at) / 60 AS INT64) AS lead_minutes,
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
  CAST(r.lag_1 AS FLOAT64) AS lag_1,
  CAST(r.lag_2 AS FLOAT64) AS lag_2,
  CAST(r.lag_3 AS FLOAT64) AS lag_3,
  CAST(sh.lag_1d AS FLOAT64) AS lag_1d,
  CAST(sh.lag_7d AS FLOAT64) AS lag_7d,
  CAST(COALESCE(r.mean_3h, 0) AS FLOAT64) AS mean_3h,
  CAST(COALESCE(r.mean_24h, 0) AS FLOAT64) AS mean_24h,
  CAST(COALESCE(sh.mean_same_slot_7d, 0) AS FLOAT64) AS mean_same_slot_7d,
  CAST(COALESCE(cr.city_3h, 0) AS FLOAT64) AS city_3h,
  CAST(COALESCE(ch.city_3h_prev_6d, 0) AS FLOAT64) AS city_3h_prev_6d,
  CAST(r.now_pickups AS FLOAT64) AS now_pickups,
  CAST((i.issued_at - i.anchor) / {slot_seconds} AS FLOAT64) AS now_elapsed,
  CAST(COALESCE(sp.idle_now, 0) AS FLOAT64) AS idle_now,
  CAST(COALESCE(sp.idle_1h, 0) AS FLOAT64) AS idle_1h,
  CAST(COALESCE(l.pickups, 0) AS INT64) AS pickups
FROM issues AS i
JOIN recent AS r
  ON r.cell = i.cell AND r.slot_start = i.slot_start AND r.issued_at = i.issued_at
JOIN calendar AS c ON c.slot_start = i.slot_start
JOIN settled_history AS sh ON sh.cell = i.cell AND sh.slot_start = i.slot_start
LEFT JOIN city_recent AS cr ON cr.issued_at = i.issued_at
JOIN city_history AS ch ON ch.slot_start = i.anchor
LEFT JOIN labels AS l ON l.cell = i.cell AND l.slot_start = i.slot_start
LEFT JOIN supply AS sp ON sp.issued_at = i.issued_at AND sp.cell = i.cell
ORDER BY slot_start, cell, issued_at
