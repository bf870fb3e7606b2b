"""Batch prediction and the served-feature log: unit tests on tiny tables, and
tests on the session's city home (synthetic metadata of ten daily runs, each
pushing a model trained by run_fn on the simulated city)."""

import datetime
import os

import numpy as np
import pyarrow as pa
import pytest

import taxi_demand  # noqa: F401  (before TensorFlow)
from taxi_demand.data import sql as demand_sql
from taxi_demand.data.reader import open_reader
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand import features
from taxi_demand import objectstore
from taxi_demand.serving import predict
from taxi_demand.serving import revision
from taxi_demand.serving import servelog

# The older version was pushed by the run for this day, trained on the 7 days
# before it; the city's warehouse holds 2024-01-18 .. 2024-02-11.
OLD_DAY = "2024-02-10"


def epoch(text: str) -> int:
  return predict.parse_at(text)


# ---- unit: inputs and the log --------------------------------------------

def test_parse_at_reads_city_wall_clock_and_offsets():
  assert predict.parse_at("2024-02-10T08:00") == 1707552000
  assert predict.parse_at("1707552000") == 1707552000
  # 14:00 UTC is 08:00 in Chicago in February (UTC-6).
  assert predict.parse_at("2024-02-10T14:00:00+00:00") == 1707552000
  with pytest.raises(TaxiDemandError, match="bad --at"):
    predict.parse_at("tomorrow")


def test_slot_at_or_after_rounds_up_to_a_boundary():
  cfg = demand_sql.QueryConfig(slot_minutes=30)
  at = epoch("2024-02-10T08:00")
  assert predict.slot_at_or_after(cfg, at) == at
  assert predict.slot_at_or_after(cfg, at + 1) == at + 1800
  assert predict.slot_at_or_after(cfg, at + 1799) == at + 1800


def test_parse_every():
  assert predict.parse_every("5m") == 300
  assert predict.parse_every("30s") == 30
  for bad in ("0m", "5 minutes", "", "m"):
    with pytest.raises(TaxiDemandError, match="--every"):
      predict.parse_every(bad)


def _served(slots, cells=(1, 2, 3)) -> pa.Table:
  rows = {c: [] for c in features.SERVING_COLUMNS}
  for slot in slots:
    for cell in cells:
      for c in features.SERVING_COLUMNS:
        value = {features.CELL: cell, features.SLOT_START: slot}.get(c, 1)
        rows[c].append(value if c in features.INT_COLUMNS else float(value))
  return pa.table({c: pa.array(v, pa.int64() if c in features.INT_COLUMNS
                               else pa.float64()) for c, v in rows.items()})


def _folder_name(file) -> str:
  return str(objectstore.split(objectstore.split(file)[0])[1])


def test_log_partitions_by_slot_day_across_midnight(store_root):
  before = epoch("2024-02-10T23:30")
  served = _served([before, before + 1800])
  at = datetime.datetime(2024, 2, 11, 5, 31)
  files = servelog.append(store_root, served, "7", at)
  assert sorted(_folder_name(f) for f in files) == [
      "date=2024-02-10", "date=2024-02-11"]
  day = servelog.read_day(store_root, datetime.date(2024, 2, 10))
  assert day.table.num_rows == 3 and day.versions() == [("7", 3)]
  assert day.table.column("predicted_at").to_pylist() == [at] * 3
  # Exactly the served rows, plus the version and time.
  assert day.table.select(list(features.SERVING_COLUMNS)).equals(
      served.slice(0, 3))


def test_corrupted_log_file_is_named_and_skipped(store_root):
  slot = epoch("2024-02-10T08:00")
  servelog.append(store_root, _served([slot]), "7", datetime.datetime.now())
  servelog.append(store_root, _served([slot + 1800]), "8",
                  datetime.datetime.now())
  folder = servelog.partition(store_root, datetime.date(2024, 2, 10))
  objectstore.at(folder).write_bytes("part-broken.parquet",
                                     b"PAR1 this is not parquet")
  bad = objectstore.join(folder, "part-broken.parquet")
  day = servelog.read_day(store_root, datetime.date(2024, 2, 10))
  assert day.table.num_rows == 6
  assert [p for p, _ in day.skipped] == [bad]
  assert day.versions() == [("7", 3), ("8", 3)]


def test_a_link_planted_at_a_log_files_temporary_is_not_written_through(
    tmp_path):
  """The log's temporaries were `.<file>.<pid>.tmp`: predictable, so a link
  planted there took the tick's rows into its target. Now they are new
  files under random names, and the link is left alone."""
  slot = epoch("2024-02-10T08:00")
  served = _served([slot])
  served = served.set_column(
      served.column_names.index(features.ISSUED_AT), features.ISSUED_AT,
      pa.array([slot - 600] * 3, pa.int64()))
  folder = servelog.partition(tmp_path / "log", datetime.date(2024, 2, 10))
  folder.mkdir(parents=True)
  final = f"part-i{slot - 600}-v7.parquet"
  victim = tmp_path / "victim"
  victim.write_bytes(b"precious")
  planted = folder / f".{final}.{os.getpid()}.tmp"
  planted.symlink_to(victim)
  [written] = servelog.append(tmp_path / "log", served, "7",
                              datetime.datetime.now())
  assert written == folder / final and not written.is_symlink()
  assert victim.read_bytes() == b"precious" and planted.is_symlink()
  assert servelog.read_day(tmp_path / "log",
                           datetime.date(2024, 2, 10)).table.num_rows == 3
  # A sweep removes only temporaries whose writer is gone.
  assert servelog.sweep(tmp_path / "log") == [] and planted.is_symlink()


def test_empty_log_day_is_one_clear_error(store_root):
  with pytest.raises(TaxiDemandError, match="log is empty"):
    servelog.read_day(store_root, datetime.date(2024, 2, 10))
  servelog.append(store_root, _served([epoch("2024-02-10T08:00")]), "7",
                  datetime.datetime.now())
  with pytest.raises(TaxiDemandError, match="logged days: 2024-02-10"):
    servelog.read_day(store_root, datetime.date(2024, 2, 12))


# ---- on the city home: a real model, synthetic lineage ----------------------

@pytest.mark.slow
def test_predictions_equal_the_saved_model_on_the_same_features(city_home,
                                                                city_copy):
  import tensorflow as tf  # noqa: PLC0415
  old = city_home.old
  model = predict.LoadedModel(city_copy, old)
  result = predict.run_job(city_copy, model, epoch("2024-02-10T17:10"))
  assert result.slot_start == epoch("2024-02-10T17:30")
  assert result.predictions.num_rows == 77
  loaded = tf.saved_model.load(str(city_copy.models / old))
  fn = loaded.signatures["predict_raw"]

  def direct(table):
    return fn(**{c: tf.constant(table.column(c).to_numpy().astype(
        np.int64 if c in features.INT_COLUMNS else np.float32))
                 for c in features.SERVING_COLUMNS})["predicted_pickups"].numpy()

  # Served: the SavedModel's own forecast at 17:10, revised from its
  # forecasts of 17:30 at each tick since 16:35 (lead 55), each on the
  # features known at its tick.
  tick = epoch("2024-02-10T17:10")
  with open_reader(city_copy.warehouse) as wh:
    rows = wh.serving_ticks(model.cfg, tick, 1)
  assert sorted(set(rows.column(features.ISSUED_AT).to_pylist())) == [
      tick - 300 * k for k in range(7, -1, -1)]
  table, served = revision.served_at(rows, direct(rows), tick)
  assert table.equals(result.features)
  np.testing.assert_allclose(
      result.predictions.column("predicted_pickups").to_numpy(), served,
      rtol=1e-6)
  assert (served != direct(result.features)).any()
  # A forecast, not zeros: the busy cells get rush-hour pickups.
  assert served.max() > 10


def test_the_supply_forecast_is_served_beside_the_demand_forecast(
    city_home, city_copy):
  """Each served row carries the supply forecast for its cell and slot,
  made from what the warehouse knew at the tick; a log file from before
  the column still reads, with it null."""
  import pyarrow.parquet as pq  # noqa: PLC0415
  from taxi_demand import supply  # noqa: PLC0415
  model = predict.LoadedModel(city_copy, city_home.old)
  at = epoch("2024-02-10T17:10")
  result = predict.run_job(city_copy, model, at)
  log = servelog.read_day(city_copy.serving_log, datetime.date(2024, 2, 10))
  idle = np.asarray(log.table.column(servelog.PREDICTED_IDLE).to_pylist(),
                    float)
  assert len(idle) == 77 and (idle >= 0).all() and idle.sum() > 10
  # The same as the forecast made by hand at the tick, cell by cell.
  cells = log.table.column(features.CELL).to_numpy()
  day = at - at % 86400
  rates = supply.cached_rates(str(city_copy.warehouse), model.cfg,
                              tuple(int(c) for c in np.unique(cells)), day)
  with open_reader(city_copy.warehouse) as wh:
    state = supply.state_at(wh, model.cfg, np.unique(cells), result.issued_at)
  by_hand = supply.forecast(rates, state, [result.slot_start],
                            model.cfg.slot_seconds)[:, 0]
  np.testing.assert_allclose(idle[np.argsort(cells)], by_hand)
  # An older file, without the column, beside it.
  old = log.table.drop([servelog.PREDICTED_IDLE])
  pq.write_table(old, servelog.partition(city_copy.serving_log,
                                         datetime.date(2024, 2, 10)) /
                 "part-older.parquet")
  both = servelog.read_day(city_copy.serving_log, datetime.date(2024, 2, 10))
  assert both.table.num_rows == 154 and not both.skipped
  assert both.table.column(servelog.PREDICTED_IDLE).null_count == 77


def test_a_failing_supply_forecast_never_costs_the_demand_forecast(
    city_home, city_copy, monkeypatch, capsys):
  """The tick still serves and logs its demand forecast, the supply column
  null, and says why in one line."""
  from taxi_demand import supply  # noqa: PLC0415

  def broken(*args, **kwargs):
    raise ValueError("no dropoff column")
  monkeypatch.setattr(supply, "state_at", broken)
  model = predict.LoadedModel(city_copy, city_home.old)
  predict.run_job(city_copy, model, epoch("2024-02-10T17:10"))
  log = servelog.read_day(city_copy.serving_log, datetime.date(2024, 2, 10))
  assert log.table.num_rows == 77
  assert log.table.column(servelog.PREDICTED).null_count == 0
  assert log.table.column(servelog.PREDICTED_IDLE).null_count == 77
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [NO_RATES.format(version=model.version),
                 "warning: no supply forecast at 2024-02-10 17:10: "
                 "ValueError: no dropoff column"]


def test_ctrl_c_in_the_supply_query_stops_the_tick(
    city_home, city_copy, monkeypatch, capsys):
  """DuckDB answers a Ctrl-C that lands mid-query with RuntimeError "Query
  interrupted": in the supply forecast that is a stop, not a supply failure
  to log and serve past (`predict --every` kept serving through Ctrl-C)."""
  from taxi_demand import supply  # noqa: PLC0415

  def interrupted(*args, **kwargs):
    raise RuntimeError("Query interrupted")
  monkeypatch.setattr(supply, "state_at", interrupted)
  model = predict.LoadedModel(city_copy, city_home.old)
  with pytest.raises(KeyboardInterrupt):
    predict.run_job(city_copy, model, epoch("2024-02-10T17:10"))
  assert "no supply forecast" not in capsys.readouterr().err


NO_RATES = ("warning: model {version} has no recorded supply rates (pushed "
            "before they were): its supply forecast fits them from the four "
            "weeks before each serving day (fit-at-serving)")


def test_the_job_serves_the_supply_rates_recorded_with_its_model(
    city_home, city_copy, capsys):
  """A version pushed with supply rates serves its supply forecast from
  them, not from a fit at serving, and its rows say so by the file's
  digest; a version pushed before them still serves, fitting them, with
  one warning line however many ticks it serves."""
  from taxi_demand import supply  # noqa: PLC0415
  from taxi_demand import supply_rates  # noqa: PLC0415
  from supply_models import push_with_rates  # noqa: PLC0415
  version = push_with_rates(city_copy, city_home.old)
  model = predict.LoadedModel(city_copy, version)
  at = epoch("2024-02-10T17:10")
  result = predict.run_job(city_copy, model, at)
  log = servelog.read_day(city_copy.serving_log, datetime.date(2024, 2, 10))
  recorded = supply_rates.recorded(model.path)
  assert recorded.tag.startswith("recorded:")
  assert set(log.table.column(servelog.SUPPLY_RATES).to_pylist()) == {
      recorded.tag}
  cells = log.table.column(features.CELL).to_numpy()
  with open_reader(city_copy.warehouse) as wh:
    state = supply.state_at(wh, model.cfg, np.unique(cells), result.issued_at)
  by_hand = supply.forecast(recorded.for_cells(np.unique(cells)), state,
                            [result.slot_start], model.cfg.slot_seconds)[:, 0]
  idle = np.asarray(log.table.column(servelog.PREDICTED_IDLE).to_pylist())
  np.testing.assert_allclose(idle[np.argsort(cells)], by_hand)
  # Not the fit at serving: other rates, other forecasts.
  fitted = supply.cached_rates(str(city_copy.warehouse), model.cfg,
                               tuple(int(c) for c in np.unique(cells)),
                               at - at % 86400)
  assert not np.allclose(by_hand, supply.forecast(
      fitted, state, [result.slot_start], model.cfg.slot_seconds)[:, 0])
  assert capsys.readouterr().err == ""
  old = predict.LoadedModel(city_copy, city_home.old)
  for tick in ("2024-02-10T17:15", "2024-02-10T17:20"):
    predict.run_job(city_copy, old, epoch(tick))
  log = servelog.read_day(city_copy.serving_log, datetime.date(2024, 2, 10))
  old_rows = log.rows_of(city_home.old)
  assert set(old_rows.column(servelog.SUPPLY_RATES).to_pylist()) == {
      supply_rates.FIT_AT_SERVING}
  assert old_rows.column(servelog.PREDICTED_IDLE).null_count == 0
  assert capsys.readouterr().err.strip().splitlines() == [
      NO_RATES.format(version=city_home.old)]


@pytest.mark.slow
def test_served_features_equal_the_training_query_label_aside(city_home):
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  home = city_home.home
  model = predict.LoadedModel(home, city_home.old)
  slot = epoch("2024-02-05T08:30")  # inside the older model's training window
  # Issued 25 minutes ahead, the served rows are the training query's rows
  # for that slot at that lead: one query, one as-of rule.
  rows, age = predict.serving_ticks(home, model.cfg, slot - 1500, 1)
  served = revision.at_tick(rows, slot - 1500)
  assert 0 <= age < 1500
  span = (datetime.date.fromisoformat(OLD_DAY) -
          datetime.date(1970, 1, 1)).days
  with Warehouse(home.warehouse, read_only=True) as wh:
    training = wh.query_demand(model.cfg, span, days_before=7,
                               lead_minutes=25)
  rows = training.filter(pa.compute.equal(
      training.column(features.SLOT_START), slot))
  assert rows.num_rows == 77
  assert served.equals(rows.select(list(features.SERVING_COLUMNS)))


@pytest.mark.slow
def test_rerunning_a_slot_replaces_its_predictions(city_home, city_copy):
  old = city_home.old
  model = predict.LoadedModel(city_copy, old)
  at = epoch("2024-02-10T09:00")
  first = predict.run_job(city_copy, model, at)
  second = predict.run_job(city_copy, model, at)
  assert first.log_files == second.log_files  # the tick's one file, replaced
  served = servelog.forecasts_between(city_copy.serving_log, at, at + 1800,
                                      version=old)
  assert served.num_rows == 77
  assert served.column("predicted_pickups").to_pylist() == \
      second.predictions.column("predicted_pickups").to_pylist()
  log = servelog.read_day(city_copy.serving_log, datetime.date(2024, 2, 10))
  assert set(log.table.column(servelog.PREDICTED_AT).to_pylist()) == {
      second.predicted_at} != {first.predicted_at}


@pytest.mark.slow
def test_no_history_and_empty_warehouse_are_refused(city_home, city_copy,
                                                    tmp_path):
  old = city_home.old
  model = predict.LoadedModel(city_copy, old)
  with pytest.raises(TaxiDemandError,
                     match="trips from 2024-01-18 00:00 to 2024-02-11"):
    predict.run_job(city_copy, model, epoch("2025-06-01T08:00"))
  # Inside the warehouse, but without the 7 days of lags before it.
  with pytest.raises(TaxiDemandError, match="no history"):
    predict.run_job(city_copy, model, epoch("2024-01-20T08:00"))
  # Same models, empty warehouse: refused, never scored from zeros.
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  empty = Home(tmp_path / "empty")
  empty.ensure()
  os.symlink(city_copy.models / old, empty.models / old)
  Warehouse(empty.warehouse).close()
  with pytest.raises(TaxiDemandError, match="has no trips"):
    predict.run_job(empty, predict.LoadedModel(empty, old),
                    epoch("2024-02-10T08:00"))
  assert not list(empty.serving_log.glob("*/*.parquet"))
  assert not list(city_copy.serving_log.glob("*/*.parquet"))


class FakeClock:
  """Simulated time for serve_every: sleeping advances it."""

  def __init__(self, on_sleep=None):
    self.t = 0.0
    self.on_sleep = on_sleep

  def __call__(self) -> float:
    return self.t

  def sleep(self, seconds: float) -> None:
    self.t += seconds
    if self.on_sleep:
      self.on_sleep()


def stop_after(n: int, results: list) -> None:
  if len(results) >= n:
    raise KeyboardInterrupt


def test_due_ticks_serve_the_current_one_and_catch_up_missed_ones():
  assert predict.due_ticks(1000, 300, None, 3600) == [900]
  assert predict.due_ticks(1000, 300, 900, 3600) == []
  # Killed after the 300 tick, restarted at 1000: 600 and 900 are due.
  assert predict.due_ticks(1000, 300, 300, 3600) == [600, 900]
  # ... but not further back than the catch-up window.
  assert predict.due_ticks(10_000, 300, 0, 900) == [9000, 9300, 9600, 9900]
  assert predict.due_ticks(10_000, 300, 0, 0) == [9900]


def test_missing_ticks_are_owed_from_the_deployments_start(tmp_path):
  home = Home(tmp_path / "home")
  start = epoch("2024-02-10T00:00")
  # A first deployment owes the current tick only, and records its start.
  assert predict.missing_ticks(home, start + 10, 300, 3600) == [start]
  assert servelog.job_start(home.serving_log) == start
  # Killed before that tick was served, it owes every tick since.
  assert predict.missing_ticks(home, start + 3000, 300, 3600) == [
      start + 300 * k for k in range(11)]
  # ... up to the catch-up window; beyond it, it is a deployment anew.
  later = start + 5 * 3600
  assert predict.missing_ticks(home, later + 10, 300, 3600) == [later]
  assert servelog.job_start(home.serving_log) == later
  # A record after `now` (an earlier day served on the same log) is no start.
  assert predict.missing_ticks(home, start + 610, 300, 3600) == [start + 600]


class _FakeModel:
  version = "1"

  def __init__(self, *args):
    pass

  def load(self):
    return self


def test_a_job_killed_before_its_first_tick_serves_it_on_restart(
    tmp_path, monkeypatch):
  """The kill comes while the first tick waits for data: nothing is in the
  served log yet, and the restart still serves every tick since."""
  home = Home(tmp_path / "home")
  start = epoch("2024-02-10T00:00")
  monkeypatch.setattr(predict, "LoadedModel", _FakeModel)

  def killed(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(predict, "run_job", killed)
  clock = FakeClock()
  assert predict.serve_every(home, 300, version="1", at_epoch=start + 60,
                             on_result=pytest.fail, on_error=pytest.fail,
                             on_reload=lambda v, p: None, sleep=clock.sleep,
                             clock=clock) == 0
  served = []
  monkeypatch.setattr(predict, "run_job",
                      lambda home, model, tick, horizon: tick)
  clock = FakeClock(lambda: stop_after(12, served))
  predict.serve_every(home, 300, version="1", at_epoch=start + 50 * 60,
                      on_result=served.append, on_error=pytest.fail,
                      on_reload=lambda v, p: None, sleep=clock.sleep,
                      clock=clock)
  # 00:00 .. 00:50 as the restart's first pass, then 00:55 on time.
  assert served == [start + 300 * k for k in range(12)]


@pytest.mark.slow
def test_every_loads_once_and_reloads_only_on_a_new_push(city_home,
                                                        city_copy):
  from taxi_demand.serving import registry  # noqa: PLC0415
  home = city_copy
  old, new = city_home.old, city_home.new
  registry.set_serving(home.models, old)
  reloads, results, errors = [], [], []

  def pushed_or_stop():
    if len(results) == 2:  # a push lands between the 2nd and 3rd jobs
      registry.set_serving(home.models, new)
    if len(results) + len(errors) >= 4:
      raise KeyboardInterrupt

  clock = FakeClock(pushed_or_stop)
  jobs = predict.serve_every(
      home, 300, at_epoch=epoch("2024-02-10T12:00"),
      on_result=results.append, on_error=errors.append,
      on_reload=lambda v, p: reloads.append((v, p)), sleep=clock.sleep,
      clock=clock)
  assert errors == [] and jobs == 4
  assert reloads == [(old, None), (new, old)]
  assert [r.model_version for r in results] == [old, old, new, new]
  assert [r.issued_at for r in results] == [
      epoch("2024-02-10T12:00") + 300 * k for k in range(4)]


@pytest.mark.slow
def test_a_restarted_job_serves_the_ticks_it_missed_once(city_home,
                                                         city_copy):
  """kill -9 mid-write leaves a hidden temporary; the restart sweeps it and
  serves every tick the log lacks, none twice."""
  home = city_copy
  registry_version = city_home.old
  start = epoch("2024-02-10T12:00")
  results = []
  clock = FakeClock(lambda: stop_after(2, results))
  predict.serve_every(home, 300, version=registry_version, at_epoch=start,
                      on_result=results.append, on_error=pytest.fail,
                      on_reload=lambda v, p: None, sleep=clock.sleep,
                      clock=clock)
  assert [r.issued_at for r in results] == [start, start + 300]
  # A writer killed mid-file (its pid is gone) left this behind.
  folder = servelog.partition(home.serving_log, datetime.date(2024, 2, 10))
  orphan = folder / f".part-i{start + 600}-v{registry_version}.parquet.999999999.tmp"
  orphan.write_bytes(b"PAR1 half")
  later = []
  clock = FakeClock(lambda: stop_after(0, later))
  predict.serve_every(home, 300, version=registry_version,
                      at_epoch=start + 1000, on_result=later.append,
                      on_error=pytest.fail, on_reload=lambda v, p: None,
                      sleep=clock.sleep, clock=clock)
  assert [r.issued_at for r in later] == [start + 600, start + 900]
  assert not orphan.exists()
  served = servelog.served_ticks(home.serving_log,
                                 [datetime.date(2024, 2, 10)])
  assert sorted(served) == [start + 300 * k for k in range(4)]
  assert all(v == [registry_version] for v in served.values())


@pytest.mark.slow
def test_ctrl_c_during_a_warehouse_query_stops_the_loop_cleanly(
    city_copy, monkeypatch):
  """DuckDB answers a SIGINT mid-query with RuntimeError("Query
  interrupted"), not KeyboardInterrupt: the loop stops as on Ctrl-C."""
  calls = []

  def interrupted_job(*args):
    calls.append(args)
    if len(calls) == 2:
      raise RuntimeError("Query interrupted")
    raise TaxiDemandError("no history yet")   # a bad tick: reported, loop on

  monkeypatch.setattr(predict, "run_job", interrupted_job)
  errors = []
  clock = FakeClock()
  jobs = predict.serve_every(
      city_copy, 300, at_epoch=epoch("2024-02-10T12:00"),
      on_result=lambda r: None, on_error=errors.append,
      on_reload=lambda v, p: None, sleep=clock.sleep, clock=clock)
  assert (jobs, errors, len(calls)) == (1, ["no history yet"], 2)
  # Any other error is not swallowed.
  monkeypatch.setattr(predict, "run_job", lambda *a: 1 / 0)
  clock = FakeClock()
  with pytest.raises(ZeroDivisionError):
    predict.serve_every(city_copy, 300, at_epoch=epoch("2024-02-10T12:00"),
                        on_result=None, on_error=None,
                        on_reload=lambda v, p: None, sleep=clock.sleep,
                        clock=clock)


@pytest.mark.slow
def test_due_serves_once_then_the_gaps_a_failed_run_left(city_home, city_copy,
                                                         monkeypatch, capsys):
  """`predict --due` (the container's job): a first run serves the current
  tick only; a run whose tick failed exits 1, and the next run serves that
  tick beside its own, each as of its own time, none twice."""
  from taxi_demand import cli  # noqa: PLC0415
  home = city_copy
  day = datetime.date(2024, 2, 10)
  at = epoch("2024-02-10T12:02")

  def due(when: str) -> int:
    return cli.main(["--home", str(home.root), "predict", "--due", "--at",
                     when])

  assert due("2024-02-10T12:02") == 0
  assert sorted(servelog.served_ticks(home.serving_log, [day])) == [
      at - 120]
  # 12:05 fails (the warehouse is away for that run) ...
  real = predict.serving_ticks
  monkeypatch.setattr(predict, "serving_ticks", lambda *a: (_ for _ in (
      )).throw(TaxiDemandError("the warehouse did not answer")))
  assert due("2024-02-10T12:07") == 1
  assert "predict: the warehouse did not answer" in capsys.readouterr().err
  monkeypatch.setattr(predict, "serving_ticks", real)
  # ... 12:10 is served by hand (`predict --at`), leaving 12:05 a gap ...
  assert cli.main(["--home", str(home.root), "predict", "--at",
                   "2024-02-10T12:10"]) == 0
  # ... which the next run fills, beside its own tick.
  capsys.readouterr()
  assert due("2024-02-10T12:16") == 0
  assert "served 2 tick(s)" in capsys.readouterr().err
  served = servelog.served_ticks(home.serving_log, [day])
  assert sorted(served) == [epoch("2024-02-10T12:00") + 300 * k
                            for k in range(4)]
  assert all(len(v) == 1 for v in served.values())
  # Nothing left to do: a second run in the same tick serves nothing.
  assert due("2024-02-10T12:18") == 0
  assert "served 0 tick(s)" in capsys.readouterr().err
