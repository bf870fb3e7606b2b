"""The demand query: hand-computed fixture numbers on DuckDB, span rendering,
placeholders, transpile post-fixes and injection checks."""

import datetime
from pathlib import Path

import duckdb
import pytest
import sqlglot

import bigquery_double

from taxi_demand.data import calendar
from taxi_demand.data import sql
from taxi_demand.data.sql import QueryConfig, SpatialUnit
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.errors import TaxiDemandError
from taxi_demand import features

DATA = Path(__file__).resolve().parent / "testdata" / "data"
SUNDAY = (datetime.date(2024, 1, 7) - datetime.date(1970, 1, 1)).days
HOURLY = QueryConfig(slot_minutes=60)


def _epoch(text):
  return int(datetime.datetime.fromisoformat(text).replace(
      tzinfo=datetime.timezone.utc).timestamp())


@pytest.fixture(scope="module", params=["duckdb", "bigquery"])
def tiny(request, tmp_path_factory):
  """The tiny trips, read from DuckDB and through the BigQuery client (the
  REST double runs the same BigQuery SQL on the same file): every test on
  it pins both backends."""
  path = tmp_path_factory.mktemp("wh") / "w.duckdb"
  with Warehouse(path) as w:
    w.load([DATA / "tiny_trips.csv"])
  if request.param == "bigquery":
    with bigquery_double.reading(path) as w:
      yield w
    return
  with Warehouse(path, read_only=True) as w:
    yield w


def _rows(table):
  return {(r["cell"], r["slot_start"]): r for r in table.to_pylist()}


def test_columns_and_types_are_the_contract(tiny):
  table = tiny.query_demand(HOURLY, SUNDAY)
  assert tuple(table.column_names) == features.RAW_COLUMNS
  for field in table.schema:
    want = "int64" if field.name in features.INT_COLUMNS else "double"
    assert str(field.type) == want, field.name
  serving = tiny.serving_features(HOURLY, _epoch("2024-01-07T10:00:00"))
  assert tuple(serving.column_names) == features.SERVING_COLUMNS


def test_fixture_numbers_match_hand_computation(tiny):
  # Issued at each slot's start (lead 0): the slot under way is then the
  # one that has just ended, complete, and the lags are the slots before it.
  table = tiny.query_demand(HOURLY, SUNDAY, lead_minutes=0)
  # Every area x every hour of the span, zero-demand slots included.
  assert table.num_rows == 77 * 24
  rows = _rows(table)
  assert sum(r["pickups"] for r in rows.values()) == 5  # a1-a4, a8
  ten = rows[(8, _epoch("2024-01-07T10:00:00"))]
  assert ten["pickups"] == 3 and ten["hour"] == 10
  assert (ten["now_pickups"], ten["now_elapsed"]) == (1.0, 1.0)  # a4, 09h
  assert (ten["lag_1"], ten["lag_2"], ten["lag_3"]) == (0.0, 0.0, 0.0)
  assert ten["lag_1d"] == 1.0          # a5, yesterday 10:15
  assert ten["lag_7d"] == 2.0          # a6, a7, last Sunday
  assert ten["mean_3h"] == 0.0         # 06, 07, 08h
  assert ten["mean_24h"] == pytest.approx(1 / 24)  # a5 (09h on Jan 6 ..)
  assert ten["mean_same_slot_7d"] == pytest.approx(3 / 7)
  eleven = rows[(8, _epoch("2024-01-07T11:00:00"))]  # zero-demand slot
  assert eleven["pickups"] == 0
  assert (eleven["now_pickups"], eleven["now_elapsed"]) == (3.0, 1.0)
  assert (eleven["lag_1"], eleven["lag_2"]) == (1.0, 0.0)
  assert eleven["mean_3h"] == pytest.approx(1 / 3)  # 07, 08, 09h: 0, 0, 1
  assert eleven["mean_24h"] == pytest.approx(2 / 24)  # a5 and a4
  late = rows[(32, _epoch("2024-01-07T23:00:00"))]
  assert late["pickups"] == 1 and late["hour"] == 23
  # a9 is 8 days back, beyond the lookback: nothing for area 32 at noon.
  assert rows[(32, _epoch("2024-01-07T12:00:00"))]["lag_7d"] == 0.0
  quiet = rows[(1, _epoch("2024-01-07T10:00:00"))]
  assert quiet["pickups"] == 0 and quiet["mean_24h"] == 0.0


def test_city_features_match_hand_computation(tiny):
  rows = _rows(tiny.query_demand(HOURLY, SUNDAY, lead_minutes=0))
  # The 3 hours before the slot under way (at lead 0, the hour just ended).
  eleven, noon = _epoch("2024-01-07T11:00:00"), _epoch("2024-01-07T12:00:00")
  # City-wide, so the same for every cell: 07-09h holds a4 only.
  assert rows[(8, eleven)]["city_3h"] == 1.0
  assert rows[(1, eleven)]["city_3h"] == 1.0
  # 08-10h: a4 at 09h, a1-a3 at 10h.
  assert rows[(8, noon)]["city_3h"] == 4.0
  # The same 08-10h on Jan 1..6 hold a5 (Jan 6) only: 1 over 6 days. Dec 31
  # (a6, a7), 7 days back, is not one of the 6 previous days.
  assert rows[(8, noon)]["city_3h_prev_6d"] == pytest.approx(1 / 6)
  assert rows[(1, noon)]["city_3h_prev_6d"] == pytest.approx(1 / 6)
  assert rows[(8, eleven)]["city_3h_prev_6d"] == 0.0
  # Only before the slot: 20-22h are empty, and a8 (23:59) is in the 23h
  # slot itself, so it is no part of that slot's features.
  late = rows[(32, _epoch("2024-01-07T23:00:00"))]
  assert late["city_3h"] == 0.0


def test_city_features_in_serving_match_the_training_query(tiny):
  noon = _epoch("2024-01-07T12:00:00")
  served = _rows(tiny.serving_features(HOURLY, noon))[(5, noon)]
  assert served["city_3h"] == 4.0
  assert served["city_3h_prev_6d"] == pytest.approx(1 / 6)


def test_day_of_week_is_bigquery_sunday_one(tiny):
  # DuckDB's EXTRACT(DAYOFWEEK) is 0 on Sunday; BigQuery's is 1.
  assert {r["day_of_week"] for r in
          tiny.query_demand(HOURLY, SUNDAY).to_pylist()} == {1}
  assert {r["day_of_week"] for r in
          tiny.query_demand(HOURLY, SUNDAY + 6).to_pylist()} == {7}


def test_train_split_emits_the_days_before_the_span(tiny):
  train = tiny.query_demand(HOURLY, SUNDAY + 1, days_before=2)
  slots = {r["slot_start"] for r in train.to_pylist()}
  assert min(slots) == (SUNDAY - 1) * 86_400
  assert max(slots) == (SUNDAY + 1) * 86_400 - 3600
  assert sum(r["pickups"] for r in train.to_pylist()) == 6  # a1-a5, a8
  eval_day = tiny.query_demand(HOURLY, SUNDAY + 1)
  assert sum(r["pickups"] for r in eval_day.to_pylist()) == 1  # a10


@pytest.mark.parametrize("minutes", [15, 30, 60])
def test_slot_lengths_keep_totals(tiny, minutes):
  table = tiny.query_demand(QueryConfig(slot_minutes=minutes), SUNDAY)
  assert table.num_rows == 77 * 24 * 60 // minutes
  assert sum(table.column("pickups").to_pylist()) == 5


def test_grid_cells_are_seen_cells_with_documented_ids(tiny):
  table = tiny.query_demand(
      QueryConfig(slot_minutes=60, spatial_unit=SpatialUnit.GRID), SUNDAY)
  cells = set(table.column("cell").to_pylist())
  # 41.8993 N -> row floor(0.2993 * 111320 / 1000) = 33;
  # -87.6330 E -> column floor(0.317 * 82930 / 1000) = 26.
  assert 33_026 in cells and len(cells) == 2
  assert table.num_rows == 2 * 24
  assert sum(table.column("pickups").to_pylist()) == 5


def test_holiday_rule_in_sql_agrees_with_python(tmp_path):
  # One trip a year makes one grid cell, so the query emits one row per
  # hour for four years: the SQL rule is checked on every day.
  path = tmp_path / "w.duckdb"
  csv = tmp_path / "trips.csv"
  csv.write_text("trip_start_timestamp,trip_seconds,trip_miles,"
                 "pickup_community_area,pickup_latitude,pickup_longitude\n" +
                 "".join(f"{y}-03-01 12:00:00,60,1,8,41.9,-87.63\n"
                         for y in range(2023, 2028)))
  end = datetime.date(2028, 1, 1)
  days = (end - datetime.date(2024, 1, 1)).days
  with Warehouse(path) as w:
    w.load([csv])
    table = w.query_demand(
        QueryConfig(slot_minutes=60, spatial_unit=SpatialUnit.GRID),
        (end - datetime.date(1970, 1, 1)).days, days_before=days)
  seen = {}
  for r in table.to_pylist():
    seen[datetime.date(1970, 1, 1) +
         datetime.timedelta(seconds=r["slot_start"])] = (
             r["is_holiday"], r["day_of_week"])
  assert len(seen) == days
  for day, (holiday, dow) in seen.items():
    assert holiday == int(calendar.is_us_holiday(day)), day
    assert dow == day.isoweekday() % 7 + 1, day
  assert sum(h for h, _ in seen.values()) == 4 * 8


def test_calendar_knows_2025():
  assert calendar.holidays(2025) == [datetime.date(2025, m, d) for m, d in (
      (1, 1), (1, 20), (2, 17), (5, 26), (7, 4), (9, 1), (11, 27), (12, 25))]


# ---- rendering, placeholders and transpilation ------------------------------

def test_rendered_query_parses_as_bigquery_with_placeholders():
  for cfg in (QueryConfig(), QueryConfig(slot_minutes=15,
                                         spatial_unit=SpatialUnit.GRID,
                                         grid_metres=500)):
    for days_before in (0, 28):
      text = sql.render_bigquery(cfg, days_before=days_before)
      assert "@span_begin_timestamp" in text
      assert "{" not in text  # every template token rendered
      tree = sqlglot.parse_one(text, read="bigquery")
      assert [s.alias_or_name for s in tree.selects] == list(
          features.RAW_COLUMNS)
  serving = sqlglot.parse_one(
      sql.render_bigquery(QueryConfig(), issued_at=_epoch("2024-01-07T10:05:00")),
      read="bigquery")
  assert [s.alias_or_name for s in serving.selects] == list(
      features.SERVING_COLUMNS)


def test_substitute_span_matches_tfx():
  from tfx.components.example_gen import utils  # noqa: PLC0415
  text = ("SELECT @span_begin_timestamp, @span_end_timestamp, "
          "@span_yyyymmdd_utc FROM t")
  for span in (0, SUNDAY, 19_999):
    assert sql.substitute_span(text, span) == utils.get_query_for_span(
        text, span)
  assert sql.substitute_span(text, SUNDAY) == (
      f"SELECT {SUNDAY * 86400}, {(SUNDAY + 1) * 86400}, '20240107' FROM t")


def test_to_duckdb_refuses_unfilled_placeholders():
  with pytest.raises(TaxiDemandError, match="substitute the span"):
    sql.to_duckdb(sql.render_bigquery(QueryConfig()))


def _duck(query_bigquery, timezone="America/Chicago"):
  con = duckdb.connect()
  con.execute(f"SET TimeZone = '{timezone}'")
  return con.execute(sql.to_duckdb(query_bigquery)).fetchall()


def test_postfix_dayofweek_is_one_to_seven_from_sunday():
  # sqlglot leaves EXTRACT(DAYOFWEEK) alone; raw DuckDB would say 0 here.
  assert "EXTRACT(DAYOFWEEK" in sqlglot.transpile(
      "SELECT EXTRACT(DAYOFWEEK FROM d)", read="bigquery", write="duckdb")[0]
  sunday, saturday = _epoch("2024-01-07T00:00:00"), _epoch("2024-01-13T23:00:00")
  assert _duck(f"SELECT EXTRACT(DAYOFWEEK FROM TIMESTAMP_SECONDS({sunday})), "
               f"EXTRACT(DAYOFWEEK FROM TIMESTAMP_SECONDS({saturday}))") == [
                   (1, 7)]


def test_postfix_timestamp_seconds_ignores_session_time_zone():
  # TO_TIMESTAMP is time-zone aware in DuckDB: in Chicago it would say 18h.
  assert _duck("SELECT EXTRACT(HOUR FROM TIMESTAMP_SECONDS(0)), "
               "EXTRACT(DAY FROM TIMESTAMP_SECONDS(0))") == [(0, 1)]


def test_unix_seconds_of_naive_timestamp_is_wall_clock():
  con = duckdb.connect()
  con.execute("SET TimeZone = 'America/Chicago'")
  con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2024-01-07 10:05:00' AS ts")
  assert con.execute(sql.to_duckdb("SELECT UNIX_SECONDS(ts) FROM t")
                     ).fetchall() == [(_epoch("2024-01-07T10:05:00"),)]


@pytest.mark.parametrize("table", [
    "trips; DROP TABLE trips", "trips--", "a.b", "`trips`", "t r", "",
    "proj.ds.t WHERE 1=1"])
def test_table_names_carrying_sql_are_refused(table):
  with pytest.raises(TaxiDemandError, match="bad table name"):
    QueryConfig(table=table)


def test_public_bigquery_table_name_is_accepted():
  cfg = QueryConfig(table="bigquery-public-data.chicago_taxi_trips.taxi_trips")
  assert ("`bigquery-public-data.chicago_taxi_trips.taxi_trips`"
          in sql.render_bigquery(cfg))


@pytest.mark.parametrize("kwargs", [
    {"slot_minutes": 20}, {"slot_minutes": "30"}, {"grid_metres": 5},
    {"spatial_unit": "grid"}, {"slot_minutes": True}])
def test_bad_config_values_are_refused(kwargs):
  with pytest.raises(TaxiDemandError):
    QueryConfig(**kwargs)


@pytest.mark.parametrize("span", ["19000; DROP TABLE trips", 19000.5, -1, None])
def test_bad_spans_are_refused_before_any_query(span):
  with pytest.raises(TaxiDemandError, match="span"):
    sql.demand_bigquery(QueryConfig(), span)


def test_serving_features_for_next_slot(tiny):
  start = _epoch("2024-01-07T11:00:00")
  table = tiny.serving_features(HOURLY, start)
  rows = _rows(table)
  assert table.num_rows == 77
  # At a slot boundary the slot under way is the one just ended, complete.
  assert rows[(8, start)]["now_pickups"] == 3.0
  assert rows[(8, start)]["now_elapsed"] == 1.0
  assert rows[(8, start)]["lag_1"] == 1.0
  assert rows[(8, start)]["lead_minutes"] == 0
  with pytest.raises(TaxiDemandError, match="tick grid"):
    tiny.serving_features(HOURLY, start + 60)
  # 30-minute slots from 11:05: 11:30 and 12:00 (leads 25, 55); a third slot
  # would need a lead of 85 minutes, which no model was trained on.
  two = tiny.serving_features(QueryConfig(), start + 300, horizon=2)
  assert sorted(set(two.column("lead_minutes").to_pylist())) == [25, 55]
  with pytest.raises(TaxiDemandError, match="beyond 55 minutes"):
    tiny.serving_features(QueryConfig(), start + 300, horizon=3)


# --- point in time: the one arrival rule -----------------------------------
# Cell 8 on 2024-01-07: a4 09:30, a1 10:05, a2 10:20, a3 10:59:59 (ends
# 11:10), a5 on Jan 6 at 10:15. 30-minute slots.

def _cell8(tiny, at, cfg=QueryConfig(), horizon=1):
  table = tiny.serving_features(cfg, _epoch(at), horizon)
  [row] = [r for r in table.to_pylist() if r["cell"] == 8][:1]
  return row


def test_a_trip_is_in_the_features_of_the_ticks_after_it_only(tiny):
  # a2 starts 10:20: in the 10:25 tick's slot under way, not the 10:15's.
  assert _cell8(tiny, "2024-01-07T10:15:00")["now_pickups"] == 1.0  # a1
  at_1025 = _cell8(tiny, "2024-01-07T10:25:00")
  assert at_1025["now_pickups"] == 2.0                              # a1, a2
  assert at_1025["now_elapsed"] == pytest.approx(25 / 30)
  assert at_1025["lead_minutes"] == 5                  # for the 10:30 slot
  # A trip exactly at the tick is not known yet: the cut is strict.
  assert _cell8(tiny, "2024-01-07T10:20:00")["now_pickups"] == 1.0


def test_one_second_either_side_of_the_cut(tiny):
  # a3 starts 10:59:59: one second before the 11:00 tick, so in its slot
  # under way (10:30-11:00, just ended) under "known at its start" ...
  at_11 = _cell8(tiny, "2024-01-07T11:00:00")
  assert (at_11["now_pickups"], at_11["now_elapsed"]) == (1.0, 1.0)
  # ... and not when it is known 2 s after it starts (11:00:01 > 11:00).
  late = QueryConfig(arrival=sql.ArrivalRule.parse("start+2s"))
  assert _cell8(tiny, "2024-01-07T11:00:00", late)["now_pickups"] == 0.0
  assert _cell8(tiny, "2024-01-07T11:05:00", late)["lag_1"] == 1.0


def test_a_trips_export_is_known_when_the_trip_ends(tiny):
  ends = QueryConfig(arrival=sql.ArrivalRule.parse("end"))
  # At 10:25, a1 has ended (10:15) but a2 (ends 10:30) has not.
  assert _cell8(tiny, "2024-01-07T10:25:00", ends)["now_pickups"] == 1.0
  # a3 ends 11:10: not in the 11:05 tick's lag_1, in the 11:10 tick's.
  assert _cell8(tiny, "2024-01-07T11:05:00", ends)["lag_1"] == 0.0
  assert _cell8(tiny, "2024-01-07T11:10:00", ends)["lag_1"] == 1.0


def test_training_examples_are_issued_on_the_grid_at_every_lead(tiny):
  table = tiny.query_demand(QueryConfig(), SUNDAY)
  rows = table.to_pylist()
  assert len(rows) == 77 * 48          # one lead per (cell, target slot)
  leads = [r["lead_minutes"] for r in rows]
  assert sorted(set(leads)) == list(sql.LEADS_MINUTES)
  assert max(leads.count(lead) for lead in set(leads)) - min(
      leads.count(lead) for lead in set(leads)) <= 77   # spread evenly
  for r in rows:
    assert r["issued_at"] % sql.TICK_SECONDS == 0
    assert r["slot_start"] - r["issued_at"] == 60 * r["lead_minutes"]
  # A sampled example holds exactly what serving issued then would hold.
  # A sampled example holds exactly what serving, issued then, would hold.
  for pick in (r for r in rows if r["cell"] == 8 and r["lead_minutes"] > 30):
    horizon = 1 + (pick["slot_start"] - sql.first_target(
        QueryConfig(), pick["issued_at"])) // 1800
    served = [r for r in tiny.serving_features(
        QueryConfig(), pick["issued_at"], horizon).to_pylist()
              if r["cell"] == 8 and r["slot_start"] == pick["slot_start"]]
    assert [{k: v for k, v in pick.items() if k != "pickups"}] == served


@pytest.mark.parametrize("minutes", [30, 60])
def test_each_cell_and_time_of_day_is_trained_at_every_lead(tiny, minutes):
  # A day holds a multiple of 12 slots, so a lead drawn from the cell and the
  # slot's index alone was the same every day at a given time of day: the
  # busiest cell saw lead 0 at 02:00, 08:00, 14:00 and 20:00 and at no other
  # time. Over 12 days every (cell, time of day) must see every lead, and
  # each (cell, hour of the week) a new lead from one week to the next.
  cfg = QueryConfig(slot_minutes=minutes)
  rows = tiny.query_demand(cfg, SUNDAY, days_before=14).to_pylist()
  leads, weekly = {}, {}
  for r in rows:
    day, time_of_day = divmod(r["slot_start"], 86_400)
    leads.setdefault((r["cell"], time_of_day), set()).add(r["lead_minutes"])
    weekly.setdefault((r["cell"], day % 7, time_of_day), []).append(
        r["lead_minutes"])
  assert len(leads) == 77 * cfg.slots_per_day
  assert all(seen == set(sql.LEADS_MINUTES) for seen in leads.values())
  assert all(len(set(two)) == 2 for two in weekly.values())


def test_every_lead_form_is_the_serving_form_at_every_tick(tiny):
  """The training path the skew check joins with: for the target slots in
  [begin, end), every lead 0..55 of every cell, each row equal to what
  serving issued at that tick held (what the join relies on)."""
  cfg = QueryConfig()
  begin, end = _epoch("2024-01-07T10:00:00"), _epoch("2024-01-07T11:30:00")
  table = tiny.every_lead_features(cfg, begin, end)
  rows = table.to_pylist()
  assert len(rows) == 77 * 3 * len(sql.LEADS_MINUTES)
  by_key = {(r["cell"], r["slot_start"], r["issued_at"]): r for r in rows}
  assert len(by_key) == len(rows)
  for tick in range(begin - 55 * 60, end, 300):
    horizon = min(sql.max_horizon(cfg, tick),
                  1 + (end - 1800 - sql.first_target(cfg, tick)) // 1800)
    if horizon < 1:
      continue
    for served in tiny.serving_features(cfg, tick, horizon).to_pylist():
      if served["slot_start"] < begin:
        continue
      want = by_key[(served["cell"], served["slot_start"], tick)]
      assert served == {k: v for k, v in want.items() if k != "pickups"}
    # The slots' rows at every tick up to this one (the served forecast is
    # revised from them): each as that tick's serving held it, none later.
    ticks = tiny.serving_ticks(cfg, tick, horizon).to_pylist()
    first = sql.first_target(cfg, tick)
    slots = range(first, first + horizon * 1800, 1800)
    assert len(ticks) == 77 * sum(
        len([i for i in range(s - 55 * 60, s + 1, 300) if i <= tick])
        for s in slots)
    for row in ticks:
      want = by_key.get((row["cell"], row["slot_start"], row["issued_at"]))
      if want is not None:
        assert row == {k: v for k, v in want.items() if k != "pickups"}
  # At 10:25 for the 10:30 slot (lead 5), cell 8 has a1 and a2 so far.
  at = by_key[(8, _epoch("2024-01-07T10:30:00"), _epoch("2024-01-07T10:25:00"))]
  assert (at["lead_minutes"], at["now_pickups"], at["pickups"]) == (5, 2.0, 1)
  with pytest.raises(TaxiDemandError, match="slot grid"):
    tiny.every_lead_features(cfg, begin + 300, end)


def test_data_age_follows_the_arrival_rule(tiny):
  # At 10:25 the newest known trip is a2, started 10:20: 5 minutes old.
  at = _epoch("2024-01-07T10:25:00")
  assert tiny.data_age(QueryConfig(), at) == 300
  # Known when it ends: a1 ended 10:15, a2 (ends 10:30) is not known yet.
  ends = QueryConfig(arrival=sql.ArrivalRule.parse("end"))
  assert tiny.data_age(ends, at) == 600
  # Known 2 minutes after the start: a2 became known at 10:22.
  assert tiny.data_age(QueryConfig(arrival=sql.ArrivalRule.parse(
      "start+2m")), at) == 180
  # Nothing arrived in the day before: a day old.
  assert tiny.data_age(QueryConfig(), _epoch("2024-01-20T10:00:00")) == 86400


def test_old_slots_count_settled_trips_whatever_the_lead(tiny):
  # lag_1d of the 10:00 slot is Jan 6 10:00-10:30 (a5), at every lead.
  for lead in (0, 25, 55):
    rows = _rows(tiny.query_demand(QueryConfig(), SUNDAY, lead_minutes=lead))
    assert rows[(8, _epoch("2024-01-07T10:00:00"))]["lag_1d"] == 1.0


def test_serving_never_reads_a_trip_that_started_after_the_tick(tmp_path):
  # A trip at 10:40 and one at 11:40: at 10:45 the 11:30 slot's forecast
  # must not see the 11:40 trip, nor the 10:40 trip once it is unknown.
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  csv = tmp_path / "t.csv"
  csv.write_text(
      "unique_key,trip_start_timestamp,trip_end_timestamp,trip_seconds,"
      "trip_miles,pickup_community_area,pickup_latitude,pickup_longitude,"
      "fare\n"
      "b0,2024-01-01 10:40:00 UTC,2024-01-01 10:50:00 UTC,600,1,8,,,5\n"
      "b1,2024-01-08 10:40:00 UTC,2024-01-08 10:50:00 UTC,600,1,8,,,5\n"
      "b2,2024-01-08 11:40:00 UTC,2024-01-08 11:50:00 UTC,600,1,8,,,5\n")
  with Warehouse(tmp_path / "w.duckdb") as w:
    w.load([csv])
  with Warehouse(tmp_path / "w.duckdb", read_only=True) as w:
    at = _epoch("2024-01-08T10:45:00")
    rows = [r for r in w.serving_features(QueryConfig(), at, 2).to_pylist()
            if r["cell"] == 8]
    assert [r["now_pickups"] for r in rows] == [1.0, 1.0]   # b1 only
    ends = QueryConfig(arrival=sql.ArrivalRule.parse("end"))
    rows = [r for r in w.serving_features(ends, at, 2).to_pylist()
            if r["cell"] == 8]
    assert [r["now_pickups"] for r in rows] == [0.0, 0.0]   # b1 not ended


@pytest.mark.parametrize("text, want", [
    ("start", "start+0s"), ("start+90s", "start+90s"), ("END+5m", "end+300s"),
    ("end + 1h", "end+3600s")])
def test_arrival_rules_parse(text, want):
  assert str(sql.ArrivalRule.parse(text)) == want


@pytest.mark.parametrize("text", ["soon", "start-5m", "end+7h", "start+5d"])
def test_bad_arrival_rules_are_one_line(text):
  with pytest.raises(TaxiDemandError, match="arrival"):
    sql.ArrivalRule.parse(text)


def test_a_transpiled_template_serves_every_tick_as_a_fresh_transpile():
  """to_duckdb reuses one transpile for texts that differ only in epoch
  literals; what it returns must be what transpiling each text gives."""
  from taxi_demand.data import sql as S  # noqa: PLC0415
  cfg = S.QueryConfig()
  day = 19763 * 86400
  for issued in (day + 8 * 3600, day + 8 * 3600 + 300, day + 23 * 3600 + 55 * 60):
    for horizon in (1, S.max_horizon(cfg, issued)):
      begin = S.first_target(cfg, issued)
      text = S.substitute_range(S.render_bigquery(cfg, issued_at=issued),
                                begin, begin + horizon * cfg.slot_seconds)
      assert S.to_duckdb(text) == S._transpile.__wrapped__(text)
  every = S.substitute_range(S.render_bigquery(cfg, every_lead=True), day,
                             day + 86400)
  assert S.to_duckdb(every) == S._transpile.__wrapped__(every)
  # A literal a token could be confused with is transpiled as it is.
  odd = "SELECT 987654000001 AS x, 1706745600 AS y"
  assert S.to_duckdb(odd) == S._transpile.__wrapped__(odd)
