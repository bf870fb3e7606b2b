"""The warehouse in BigQuery: the real client against a loopback REST double.

The double (tests/bigquery_double.py) runs the BigQuery SQL it receives on
the city's DuckDB file through the project's transpiler, so whatever the
BigQuery path returns must equal what the DuckDB path returns, row for row:
features at several ticks, horizons and arrival rules, data age, pickups,
supply. Every failure a cloud table can give is one line, exit 1.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import types

import pyarrow as pa
import pytest

from taxi_demand import cli
from taxi_demand.data import bigquery as bq
from taxi_demand.data import contract
from taxi_demand.data import reader
from taxi_demand.data import sql
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.errors import TaxiDemandError

DAY = "2024-02-05"   # with its 7 days of history in the city
TICKS = ("08:05", "17:30", "23:55")   # the last one's slots cross midnight
CONFIGS = {
    "start": sql.QueryConfig(),
    "end+5m": sql.QueryConfig(arrival=sql.ArrivalRule.parse("end+5m")),
    "start+90s": sql.QueryConfig(arrival=sql.ArrivalRule.parse("start+90s")),
    "grid-hourly": sql.QueryConfig(spatial_unit=sql.SpatialUnit.GRID,
                                   slot_minutes=60),
}


def epoch(text: str) -> int:
  return int(datetime.datetime.fromisoformat(text).replace(
      tzinfo=datetime.timezone.utc).timestamp())


def tick(hhmm: str, day: str = DAY) -> int:
  return epoch(f"{day}T{hhmm}:00")


@pytest.fixture(scope="module")
def local(city):
  with Warehouse(city.warehouse, read_only=True) as wh:
    yield wh


@pytest.fixture
def cloud(bigquery):
  with bq.BigQueryWarehouse(bigquery.address) as wh:
    yield wh


def one_line(call) -> str:
  """The TaxiDemandError `call` raises; it must be one line."""
  with pytest.raises(TaxiDemandError) as raised:
    call()
  message = str(raised.value)
  assert message and "\n" not in message, message
  return message


# ---- the same rows as DuckDB ----------------------------------------------------


@pytest.mark.parametrize("rule", list(CONFIGS))
def test_served_features_equal_duckdbs_row_for_row(local, cloud, rule):
  cfg = CONFIGS[rule]
  for hhmm in TICKS:
    at = tick(hhmm)
    for horizon in sorted({1, sql.max_horizon(cfg, at)}):
      want = local.serving_features(cfg, at, horizon)
      got = cloud.serving_features(cfg, at, horizon)
      assert want.num_rows > 0
      assert got.equals(want), (rule, hhmm, horizon)
    assert cloud.data_age(cfg, at) == local.data_age(cfg, at)


def test_span_range_data_age_and_trip_counts_agree(local, cloud):
  assert cloud.span_range() == local.span_range() == (19740, 19764)
  assert cloud.newest_trip_epoch() == local.newest_trip_epoch()
  at = tick("08:05")
  assert cloud.newest_trip_epoch(before=at) == local.newest_trip_epoch(
      before=at) < at
  span = at // 86400
  assert cloud.trips_on(span) == local.trips_on(span) > 0
  # Nothing arrived in the day before: a day old, on both.
  late = epoch("2024-03-01T00:00:00")
  assert cloud.data_age(sql.QueryConfig(), late) == local.data_age(
      sql.QueryConfig(), late) == 86400


@pytest.mark.parametrize("rule", ["start", "end+5m"])
def test_a_tick_checks_its_history_in_one_query(local, cloud, bigquery,
                                                rule):
  """What a tick checks before it serves (the history before it, the data
  age) is one BigQuery job, equal to the three reads it stands for."""
  from taxi_demand.serving import predict  # noqa: PLC0415
  cfg = CONFIGS[rule]
  # The last: nothing arrived in the day before (a day old).
  for at in (tick("08:05"), tick("23:55"), epoch("2024-02-14T00:00:00")):
    want = {"first_span": local.span_range()[0],
            "last_span": local.span_range()[1],
            "newest_s": local.newest_trip_epoch(before=at)}
    got = cloud.history_at(cfg, at)
    assert {k: got[k] for k in want} == want
    assert got == local.history_at(cfg, at)
    bigquery.reset()
    assert predict.check_history(cloud, at, cfg) == local.data_age(cfg, at)
    assert len(bigquery.queries) == 1
  # Before the history's seventh day: refused, in one line.
  assert "no history for a forecast" in one_line(
      lambda: predict.check_history(cloud, tick("08:05", "2024-01-10"), cfg))


def test_training_rows_supply_and_requests_agree(local, cloud):
  cfg = CONFIGS["start"]
  at = tick("08:05")
  span = at // 86400
  begin, end = tick("08:00"), tick("09:00")
  pairs = {
      "query_demand": lambda w: w.query_demand(cfg, span, lead_minutes=25),
      "every_lead": lambda w: w.every_lead_features(cfg, begin, end),
      "idle_at": lambda w: w.idle_at(cfg, at),
      "supply_at": lambda w: w.supply_at(cfg, at),
      "requests": lambda w: w.requests(cfg, begin, end),
      # The supply state's read: trips whose spells reach the half hour.
      "taxi_trips": lambda w: w.taxi_trips(
          cfg, at - 8 * 3600, at + 1, known_by=at, ended_from=at - 9000),
      "coverage": lambda w: w.requests_coverage(cfg, begin, end),
  }
  for name, read in pairs.items():
    want, got = read(local), read(cloud)
    if isinstance(want, tuple):
      assert got[1] == want[1] and got[0].equals(want[0]), name
    elif isinstance(want, pa.Table):
      assert want.num_rows and got.equals(want), name
    else:
      assert got == want, name


def test_pickups_agree_sums_aside(local, cloud):
  """DuckDB sums floats in no fixed order (two DuckDB runs differ in the
  last bits), so the position sums agree to rounding; the rest exactly."""
  cfg = CONFIGS["start"]
  want = local.pickups(cfg, tick("00:00"), tick("00:00", "2024-02-06"))
  got = cloud.pickups(cfg, tick("00:00"), tick("00:00", "2024-02-06"))
  assert got.schema == want.schema and got.num_rows == want.num_rows > 0
  exact = ["cell", "slot_start", "pickups", "located"]
  assert got.select(exact).equals(want.select(exact))
  for column in ("latitude_sum", "longitude_sum"):
    assert got.column(column).to_pylist() == pytest.approx(
        want.column(column).to_pylist(), rel=1e-12)


def test_real_trips_have_no_truth_and_probes_sit_beside_them(local, cloud):
  truth = cloud.truth(tick("00:00"), tick("23:55"))
  assert truth.num_rows == 0 and truth.schema == reader.TRUTH_SCHEMA
  assert cloud.has_table(reader.TRIPS)
  # A `probes` table in the trips table's dataset is read as the probes.
  assert cloud.has_table(reader.PROBES) == local.has_table(reader.PROBES)
  assert not cloud.has_table("no_such_table")


def test_the_columns_are_checked_once_and_the_client_made_lazily(bigquery):
  wh = bq.BigQueryWarehouse(bigquery.address)
  assert wh._client is None and not bigquery.calls  # nothing at opening
  cfg = CONFIGS["start"]
  wh.serving_features(cfg, tick("08:05"))
  wh.serving_features(cfg, tick("08:10"))
  tables = [path for method, path in bigquery.calls if "/tables/" in path]
  assert len(tables) == 1
  wh.close()


def test_query_columns_are_what_the_queries_name():
  """contract.QUERY_COLUMNS is what a BigQuery table is checked for: every
  trips column the readers' queries name, and no other."""
  day = tick("00:00")
  texts = []
  for cfg in CONFIGS.values():
    texts += [sql.render_bigquery(cfg), sql.every_lead_bigquery(
        cfg, day, day + 86400), sql.serving_query_bigquery(cfg, day + 300),
              sql.newest_known_bigquery(cfg, day),
              sql.pickups_bigquery(cfg, day, day + 1),
              sql.idle_at_bigquery(cfg, day),
              sql.requests_bigquery(cfg, day, day + 1),
              sql.requests_coverage_bigquery(cfg, day, day + 1)]
  texts += [sql.span_range_bigquery(), sql.trips_on_bigquery(19760),
            sql.newest_trip_bigquery(day)]
  named = [c for c in contract.TRIP_COLUMNS
           if any(re.search(rf"\b{c}\b", t) for t in texts)]
  assert tuple(named) == contract.QUERY_COLUMNS


def test_a_warm_tick_takes_well_under_two_seconds(local, cloud, capsys):
  cfg = CONFIGS["start"]
  cloud.serving_features(cfg, tick("08:05"))  # client, columns, transpile
  seconds = []
  for hhmm in ("08:10", "08:15", "08:20"):
    started = time.perf_counter()
    cloud.serving_features(cfg, tick(hhmm))
    cloud.data_age(cfg, tick(hhmm))
    seconds.append(time.perf_counter() - started)
  with capsys.disabled():
    print(f"\nwarm BigQuery-double tick (features + data age): "
          f"{min(seconds):.3f} s (of {', '.join(f'{s:.3f}' for s in seconds)})")
  assert min(seconds) < 2.0


# ---- the readers, on a bq:// address ------------------------------------------


def test_the_readers_take_a_bigquery_address(city, bigquery):
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  from taxi_demand.monitoring import skew  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import recommend  # noqa: PLC0415
  from taxi_demand.serving import revision  # noqa: PLC0415
  cfg = CONFIGS["start"]
  at = tick("17:30")
  on_disk = types.SimpleNamespace(warehouse=city.warehouse)
  in_bigquery = types.SimpleNamespace(warehouse=bigquery.address)
  # The tick's rows and those of the ticks before, which the served
  # forecast is revised from: 17:30's slot at each of its 12 ticks, 18:00's
  # at its 6 so far.
  ticks, age = predict.serving_ticks(in_bigquery, cfg, at, 2)
  want, want_age = predict.serving_ticks(on_disk, cfg, at, 2)
  assert ticks.equals(want) and age == want_age
  served = revision.at_tick(ticks, at)
  assert ticks.num_rows == 9 * served.num_rows > 0
  rows, why = skew.recompute(bigquery.address, cfg, served)
  assert why is None and rows.equals(
      skew.recompute(city.warehouse, cfg, served)[0])
  span = at // 86400
  got = nextday.day_columns(bigquery.address, cfg, span)
  want_columns = nextday.day_columns(city.warehouse, cfg, span)
  assert got.keys() == want_columns.keys()
  assert all((got[k] == want_columns[k]).all() for k in got)
  assert recommend.idle_taxis(in_bigquery, cfg, at) == recommend.idle_taxis(
      on_disk, cfg, at)
  assert reader.warehouse_exists(bigquery.address)
  assert not reader.warehouse_exists(city.root / "nothing.duckdb")


@pytest.mark.slow
def test_next_day_scores_bigquery_as_it_scores_duckdb(city_home, bigquery,
                                                      capsys):
  day = "2024-02-11"
  base = ["--home", str(city_home.root), "next-day", "--date", day,
          "--no-record", "--json"]
  assert cli.main(base) in (0, 3)
  want = json.loads(capsys.readouterr().out)
  assert cli.main(base + ["--warehouse", bigquery.address]) in (0, 3)
  got = json.loads(capsys.readouterr().out)
  assert got == want and got["mae"] > 0


# ---- failures: one line, exit 1 -------------------------------------------------


@pytest.mark.parametrize("address", [
    "bq://", "bq://project.dataset", "bq://Bad_Project.d.t",
    "bq://my-project.data set.t", "bq://my-project.d.t;DROP"])
def test_a_bad_address_is_one_line(address):
  message = one_line(lambda: reader.open_reader(address))
  assert message.startswith(f"bad warehouse address {address!r}")


def test_missing_credentials_fail_fast(monkeypatch, tmp_path):
  """No endpoint, credentials pointing at nothing, no metadata server:
  one line at once, not after probing for a metadata server."""
  monkeypatch.delenv(bq.ENDPOINT_ENV_VAR, raising=False)
  monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                     str(tmp_path / "no-such-key.json"))
  # Were the metadata server asked, it would be a closed port on loopback.
  monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
  monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
  bq._bigquery()  # the import is not what is timed
  started = time.perf_counter()
  message = one_line(lambda: bq.BigQueryWarehouse(
      "bq://my-project.city.trips").span_range())
  assert time.perf_counter() - started < 3
  assert message.startswith("bq://my-project.city.trips: no Google Cloud "
                             "credentials found")


# (what the double does, the address read, what the line says)
FAILURES = {
    "forbidden": ("forbidden", None, "permission denied"),
    "not-found": (None, "bq://test-project.city.nosuch", "not found"),
    "missing-columns": ({"taxi_id", "trip_end_timestamp"}, None,
                        "the table lacks column(s) the demand query reads: "
                        "taxi_id, trip_end_timestamp"),
    "unavailable": ("unavailable", None,
                    "still failing after 0.3 s of retries"),
}


def _arrange(bigquery, monkeypatch, failure):
  fault, address, says = FAILURES[failure]
  if isinstance(fault, set):
    bigquery.dropped_columns = fault
  else:
    bigquery.fault = fault
  monkeypatch.setenv("TAXI_DEMAND_CLOUD_RETRY_S", "0.3")
  return address or bigquery.address, says


@pytest.mark.parametrize("failure", list(FAILURES))
def test_each_failure_is_one_line(bigquery, monkeypatch, failure):
  address, says = _arrange(bigquery, monkeypatch, failure)
  started = time.perf_counter()
  message = one_line(lambda: reader.open_reader(address).serving_features(
      sql.QueryConfig(), tick("08:05")))
  assert message.startswith(f"{address}: ") and says in message
  assert time.perf_counter() - started < 20  # retries are bounded


def test_skew_fails_on_a_bigquery_failure_instead_of_checking_less(
    local, bigquery, monkeypatch):
  """A local warehouse without the day's history makes a check without
  the join; a BigQuery that does not answer fails, so that no lesser
  check is recorded for good."""
  from taxi_demand.monitoring import skew  # noqa: PLC0415
  cfg = CONFIGS["start"]
  served = local.serving_features(cfg, tick("17:30"))
  _arrange(bigquery, monkeypatch, "forbidden")
  assert "permission denied" in one_line(
      lambda: skew.recompute(bigquery.address, cfg, served))


@pytest.mark.parametrize("failure", list(FAILURES) + ["bad-address"])
def test_each_failure_exits_1_through_the_cli(city_home, bigquery,
                                              monkeypatch, capsys, failure):
  if failure == "bad-address":
    address, says = "bq://nope", "bad warehouse address"
  else:
    address, says = _arrange(bigquery, monkeypatch, failure)
  code = cli.main(["--home", str(city_home.root), "next-day", "--date",
                   "2024-02-11", "--warehouse", address, "--no-record"])
  captured = capsys.readouterr()
  assert code == 1 and not captured.out
  assert captured.err.count("\n") == 1 and says in captured.err
  assert captured.err.startswith("taxi-demand next-day: ")
  assert "Traceback" not in captured.err

