"""Driver guidance: the ranking by hand, the fleet simulation, and
`taxi-demand recommend` on the session's city."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from taxi_demand import cli
from taxi_demand import fleet
from taxi_demand import guidance
from taxi_demand.errors import TaxiDemandError

# Three cells on a line: 10 minutes from 1 to 2, 20 from 1 to 3.
TABLE = [(1, 2, 10), (2, 1, 10), (1, 3, 20), (3, 1, 20), (2, 3, 10),
         (3, 2, 10)]


def _geometry(tmp_path, rows=TABLE):
  path = tmp_path / "travel.csv"
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["from_cell", "to_cell", "minutes"])
    out.writerows(rows)
  return guidance.Geometry.from_table(path)


def test_reachable_pickups_count_only_after_the_drive(tmp_path):
  geo = _geometry(tmp_path)
  # Two 30-minute slots from t=0; cell 3 has 6 pickups in each, spread
  # evenly. From cell 1 (20 minutes away) a taxi arrives at 0:20 and with a
  # 60-minute horizon catches 10 of the first slot's 30 minutes and all of
  # the second: 6 * 1/3 + 6 = 8.
  forecast = np.array([[3.0, 3.0], [0.0, 6.0], [6.0, 6.0]])
  reach = guidance.reachable_pickups(forecast, np.array([0, 1800]), 1800, 0,
                                     geo.minutes, 60)
  assert reach[0, 2] == pytest.approx(8.0)
  assert reach[0, 0] == pytest.approx(6.0)       # staying: all of it
  assert reach[0, 1] == pytest.approx(6.0 * 1)   # 0:10 .. 1:00, slot 2 only
  assert reach[2, 2] == pytest.approx(12.0)


def test_a_taxi_weighs_demand_against_the_idle_taxis_there(tmp_path):
  geo = _geometry(tmp_path)
  forecast = np.array([[3.0, 3.0], [0.0, 6.0], [6.0, 6.0]])
  reach = guidance.reachable_pickups(forecast, np.array([0, 1800]), 1800, 0,
                                     geo.minutes, 60)
  # One taxi in 1, nobody else: cell 3's 8 beats staying (6).
  [alone] = guidance.recommend_all(geo, reach, np.array([1.0, 0, 0]), [0])
  assert (alone.to_cell, alone.expected_pickups, alone.stay_pickups) == (
      3, pytest.approx(8.0), pytest.approx(6.0))
  assert alone.travel_minutes == 20
  # Three taxis already wait in 3: 8 / 4 = 2 there, so it stays (6 / 1).
  [crowded] = guidance.recommend_all(geo, reach, np.array([1.0, 0, 3.0]), [0])
  assert crowded.to_cell == 1
  # Two taxis in 1 asked at once: the first goes to 3 (8 > 6 / 2); the
  # second then sees it there (8 / 2 = 4) and stays (6 / 1 = 6).
  first, second = guidance.recommend_all(geo, reach, np.array([2.0, 0, 0]),
                                         [0, 0])
  assert (first.to_cell, second.to_cell) == (3, 1)


def test_unreachable_and_unknown_cells(tmp_path):
  geo = _geometry(tmp_path, [(1, 2, 10), (2, 1, 10)] + [(3, 3, 0)])
  assert np.isinf(geo.minutes[0, 2]) and geo.minutes[2, 2] == 0
  forecast = np.array([[0.0], [0.0], [100.0]])
  reach = guidance.reachable_pickups(forecast, np.array([0]), 1800, 0,
                                     np.where(np.isinf(geo.minutes), 0,
                                              geo.minutes), 60)
  [choice] = guidance.recommend_all(geo, reach, np.array([1.0, 0, 0]), [0])
  assert choice.to_cell != 3        # no road to it in the table
  with pytest.raises(TaxiDemandError, match="unknown cell 9"):
    geo.index(9)


@pytest.mark.parametrize("rows, needle", [
    ([], "needs a header"),
    ([(1, 2, "x")], "line 2: from_cell and to_cell must be integers"),
    ([(1, 2, -5)], "line 2: minutes must be >= 0"),
])
def test_a_bad_travel_table_is_one_line(tmp_path, rows, needle):
  with pytest.raises(TaxiDemandError, match=needle):
    _geometry(tmp_path, rows)


def test_straight_lines_at_a_speed():
  # 0.1 degree of latitude is 11.1 km: 33.4 minutes at 20 km/h.
  geo = guidance.Geometry.from_positions({1: (41.8, -87.6), 2: (41.9, -87.6)})
  assert geo.minutes[0, 1] == pytest.approx(33.36, abs=0.05)
  assert geo.minutes[1, 0] == geo.minutes[0, 1] and geo.minutes[0, 0] == 0
  with pytest.raises(TaxiDemandError, match="--speed"):
    guidance.Geometry.from_positions({1: (41.8, -87.6)}, speed_kmh=0)


# ---- the fleet simulation -------------------------------------------------------


def test_a_passenger_takes_an_idle_taxi_in_the_cell_or_gives_up(tmp_path):
  geo = _geometry(tmp_path)
  # One taxi, starting in cell 1. Passenger 0 at 0:00 in 1
  # to 3 (10 minutes); passenger 1 at 0:05 in 1 gives up at 0:15 (the taxi
  # is away); passenger 2 at 0:20 in 3 finds it idle there.
  passengers = fleet.Passengers.of(geo, [0, 300, 1200], [1, 1, 3], [3, 2, 2],
                                   [600, 600, 900])
  result = fleet.simulate(geo, passengers, 1, fleet.stay(), 0, 3600,
                          name="stay", wait_limit_s=600, start=[0])
  assert (result.passengers, result.pickups, result.unserved) == (3, 2, 1)
  assert result.empty_minutes == pytest.approx(60 - 10 - 15)
  assert result.pickups_per_taxi_hour == pytest.approx(2.0)


def test_the_fleet_simulation_is_deterministic_for_a_seed(city):
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  day = fleet.load_day(city.warehouse, sql.QueryConfig(),
                       spans.parse_span("2024-02-10"))
  runs = [fleet.simulate(day.geometry, day.passengers, 250,
                         fleet.hotspot(day.geometry, day.busiest_by_hour),
                         day.begin, day.end, seed=s) for s in (3, 3, 4)]
  assert runs[0] == runs[1]
  assert runs[0] != runs[2]
  # Whatever order the warehouse returns the day's trips in (trips of the
  # same second come as its threads give them).
  p = day.passengers
  shuffled = np.random.default_rng(0).permutation(len(p))
  again = fleet.Passengers.of(day.geometry, p.pickup_at[shuffled],
                              day.geometry.cells[p.pickup[shuffled]],
                              day.geometry.cells[p.dropoff[shuffled]],
                              p.seconds[shuffled])
  assert all(np.array_equal(getattr(again, f), getattr(p, f))
             for f in ("pickup_at", "pickup", "dropoff", "seconds"))
  # Sized so that taxis staying put are empty about half of their time.
  taxis, stayed = fleet.calibrate_fleet(day.geometry, day.passengers,
                                        day.begin, day.end, seed=3)
  assert abs(stayed.empty_share - fleet.TARGET_EMPTY_SHARE) < 0.02
  assert stayed.taxis == taxis


@pytest.mark.slow
def test_following_the_model_beats_staying_and_the_hotspot(city):
  """On a day the model never trained on, with its forecasts as served at
  each tick (point in time), against greedy placement on the true
  intensity."""
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  from taxi_demand.modeling import saved_model  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  cfg = sql.QueryConfig()
  day = fleet.load_day(city.warehouse, cfg, spans.parse_span("2024-02-10"))
  predictor = saved_model.load_for_serving(str(city.model_dir))
  forecast_at = fleet.model_forecasts(
      city.warehouse, cfg, day,
      lambda t: predictor(predict.columns_of(t))[saved_model.PREDICTION_KEY])
  # 260 taxis: about what calibrate_fleet sizes this day to (checked above).
  _, results = fleet.evaluate(day, fleet.policies(day, forecast_at),
                              taxis=260, seed=0)
  rate = {k: r.pickups_per_taxi_hour for k, r in results.items()}
  assert rate["recommend"] > rate["hotspot"] > rate["stay"]
  assert rate["recommend"] <= rate[fleet.GREEDY_ON_TRUTH] * 1.02
  assert results["recommend"].unserved < results["stay"].unserved


# ---- taxi-demand recommend -------------------------------------------------------


def _recommend(capsys, home, *args):
  code = cli.main(["--home", str(home.root), "recommend", *args])
  out, err = capsys.readouterr()
  return code, out, err


def _recorded_recommendations(home):
  """Every recommendation `recommend` recorded under `home`, as one table."""
  import pyarrow.dataset as ds  # noqa: PLC0415
  from taxi_demand.serving import recommend  # noqa: PLC0415
  files = sorted(str(p) for p in (home.root / recommend.GUIDANCE_DIR).glob(
      "date=*/at-*.parquet"))
  return ds.dataset(files, format="parquet").to_table()


def test_recommend_json_ranks_cells_and_records_its_model(city_copy, capsys):
  from taxi_demand.serving import registry  # noqa: PLC0415
  code, out, err = _recommend(capsys, city_copy, "--at", "2024-02-10T08:02",
                              "--cell", "8", "--json", "--top", "5")
  assert code == 0, err
  body = json.loads(out)
  serving = registry.serving_version(city_copy.models)
  assert body["model_version"] == serving
  assert body["issued_at"].startswith("2024-02-10") and "08:00" in \
      body["issued_at"]
  assert body["forecasts"] == "scored now"   # the job served no tick here
  [rec] = body["recommendations"]
  assert rec["from_cell"] == 8
  ranking = body["ranking"]
  assert len(ranking) == 5
  values = [r["expected_pickups"] for r in ranking]
  assert values == sorted(values, reverse=True)
  assert rec["to_cell"] == ranking[0]["cell"]
  assert rec["expected_pickups"] == ranking[0]["expected_pickups"]
  records = _recorded_recommendations(city_copy)
  assert records.column("model_version").to_pylist() == [serving]
  assert records.column("to_cell").to_pylist() == [rec["to_cell"]]


def test_recommend_counts_the_taxis_expected_idle_soon(city_copy, capsys):
  """By default a cell's idle taxis are joined by those the supply
  forecast expects there within 20 minutes (at 08:00 the city's fleet has
  trips under way); --supply idle-now counts the idle ones only."""
  ask = ("--at", "2024-02-10T08:00", "--cell", "8", "--json", "--top", "77")
  code, out, err = _recommend(capsys, city_copy, *ask)
  assert code == 0, err
  forecast = json.loads(out)
  code, out, err = _recommend(capsys, city_copy, *ask, "--supply", "idle-now")
  assert code == 0, err
  idle_now = json.loads(out)
  assert forecast["supply_basis"] == "forecast"
  assert idle_now["supply_basis"] == "idle-now"
  # The record of each call says which supply rule made it, as does the
  # console's first line.
  records = _recorded_recommendations(city_copy)
  assert sorted(records.column("supply_basis").to_pylist()) == [
      "forecast", "idle-now"]
  code, out, err = _recommend(capsys, city_copy, "--at", "2024-02-10T08:00",
                              "--cell", "8", "--supply", "idle-now")
  assert code == 0, err
  assert out.splitlines()[0].endswith("soon (supply: idle-now)")
  assert idle_now["taxis_arriving_soon"] == 0
  soon = {r["cell"]: r["arriving_soon"] for r in forecast["ranking"]}
  assert forecast["taxis_arriving_soon"] == pytest.approx(
      sum(soon.values()), abs=0.5)
  assert forecast["taxis_arriving_soon"] > 1
  # The same idle taxis either way; a cell with taxis arriving is worth
  # less a taxi than with idle-now supply, one without them the same.
  same = {r["cell"]: r for r in idle_now["ranking"]}
  for row in forecast["ranking"]:
    assert row["idle_taxis"] == same[row["cell"]]["idle_taxis"]
    if row["arriving_soon"] >= 0.5 and same[row["cell"]]["expected_pickups"]:
      assert row["expected_pickups"] < same[row["cell"]]["expected_pickups"]
    elif row["arriving_soon"] == 0:
      assert row["expected_pickups"] == same[row["cell"]]["expected_pickups"]


def test_recommend_uses_the_served_tick_and_places_many_taxis(city_copy,
                                                              capsys,
                                                              tmp_path):
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  at = spans.start_of(spans.parse_span("2024-02-10")) + 8 * 3600
  model = predict.LoadedModel(city_copy)
  # The job's default serves the next slot only: too short for the hour
  # ahead, so the model is scored rather than the later slots read as empty.
  predict.run_job(city_copy, model, at, horizon=1)
  code, out, err = _recommend(capsys, city_copy, "--at", "2024-02-10T08:00",
                              "--cell", "8", "--json")
  assert code == 0, err
  assert json.loads(out)["forecasts"] == "scored now"
  predict.run_job(city_copy, model, at,
                  horizon=predict.demand_sql.max_horizon(model.cfg, at))
  idle = tmp_path / "idle.csv"
  rng = np.random.default_rng(0)
  with open(idle, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["taxi_id", "cell"])
    out.writerows((f"t{i}", int(c)) for i, c in
                  enumerate(rng.integers(1, 78, 300)))
  code, out, err = _recommend(capsys, city_copy, "--at", "2024-02-10T08:00",
                              "--idle", str(idle), "--json")
  assert code == 0, err
  body = json.loads(out)
  assert body["forecasts"] == "served log"
  recs = body["recommendations"]
  assert [r["taxi_id"] for r in recs] == [f"t{i}" for i in range(300)]
  # Spread out, not all sent to one cell.
  assert len({r["to_cell"] for r in recs}) > 10


def test_all_idle_taxis_from_trips_then_from_the_fleets_pings(city, city_copy,
                                                               capsys):
  """The city's fleet writes taxi_id on trips: --all-idle places every
  taxi they show idle. Loaded pings of that day then answer instead."""
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  at = "2024-02-10T08:00"
  code, out, err = _recommend(capsys, city_copy, "--at", at, "--all-idle",
                              "--json")
  assert code == 0, err
  by_trips = json.loads(out)
  with Warehouse(city_copy.warehouse, read_only=True) as wh:
    idle = wh.idle_at(predict.LoadedModel(city_copy).cfg,
                      predict.parse_at(at))
  assert by_trips["supply"] == "trips"
  assert by_trips["idle_taxis_known"] == idle.num_rows > 20
  assert sorted(r["taxi_id"] for r in by_trips["recommendations"]) == sorted(
      idle.column("taxi_id").to_pylist())
  assert {r["from_cell"] for r in by_trips["recommendations"]} == set(
      idle.column("cell").to_pylist())
  pings = city.pings(city_copy.root / "pings", "2024-02-10")
  with Warehouse(city_copy.warehouse) as wh:
    assert wh.load([pings]).probes_loaded > 0
  code, out, err = _recommend(capsys, city_copy, "--at", at, "--all-idle",
                              "--json")
  assert code == 0, err
  by_pings = json.loads(out)
  assert by_pings["supply"] == "probes"
  # The same fleet seen two ways: every taxi idle by trips pings empty.
  assert {r["taxi_id"] for r in by_trips["recommendations"]} <= {
      r["taxi_id"] for r in by_pings["recommendations"]}


@pytest.mark.parametrize("args, needle", [
    (["--at", "2024-02-10T08:00", "--cell", "99"], "unknown cell 99"),
    (["--at", "2023-06-01T08:00", "--cell", "8"], "no history for a forecast"),
    # Before the city's first trip: no taxi has dropped off yet.
    (["--at", "2023-06-01T08:00", "--all-idle"], "no taxi is known idle"),
    (["--at", "2024-02-10T08:00", "--idle", "/nonexistent.csv"],
     "cannot read --idle"),
])
def test_recommend_bad_input_is_one_line_exit_1(city_copy, capsys, args,
                                                 needle):
  code, out, err = _recommend(capsys, city_copy, *args)
  assert code == 1 and out == ""
  assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_recommend_help_teaches():
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  done = subprocess.run([sys.executable, "-m", "taxi_demand", "recommend",
                         "--help"], capture_output=True, text=True, check=True)
  assert "Examples:" in done.stdout and "--travel-times" in done.stdout


def test_a_policy_blind_to_the_fleet_is_simulated_without_building_its_view(
    tmp_path, monkeypatch):
  """Sizing the GuidanceGate's fleet bisects on stay runs: building what a
  dispatcher knows every minute, which stay never reads, was most of it."""
  geo = _geometry(tmp_path)
  passengers = fleet.Passengers.of(
      geo, list(range(0, 7200, 120)), [1, 2, 3] * 20, [2, 3, 1] * 20,
      [600] * 60)
  expected = fleet.calibrate_fleet(geo, passengers, 0, 7200, target=0.5)

  def built(*args, **kwargs):
    raise AssertionError("the fleet's view was built for a blind policy")

  monkeypatch.setattr(fleet, "_known", built)
  assert fleet.calibrate_fleet(geo, passengers, 0, 7200,
                               target=0.5) == expected


def _small_day(tmp_path):
  """Two hours of passengers on the three-cell line, as fleet.Day."""
  geo = _geometry(tmp_path)
  passengers = fleet.Passengers.of(
      geo, list(range(0, 7200, 90)), [1, 2, 3, 3] * 20, [2, 3, 1, 2] * 20,
      [600, 900, 300, 1200] * 20)
  return fleet.Day(0, 7200, geo, passengers, None, None, 1800)


def _busy_cell_3(at):
  """A forecast that always expects cell 3 to be the busiest."""
  starts = np.array([(int(at) // 1800) * 1800 + 1800 * k for k in range(3)])
  return np.tile(np.array([[1.0], [2.0], [9.0]]), (1, 3)), starts


def test_following_with_the_taxis_idle_now_never_builds_the_view(
    tmp_path, monkeypatch):
  """The GuidanceGate's fleets share each cell with the taxis idle there
  now: building what a dispatcher knows every minute, which they never
  read, was a third of each run."""
  day = _small_day(tmp_path)

  def run():
    return fleet.simulate(day.geometry, day.passengers, 4,
                          fleet.following(day.geometry, _busy_cell_3, 1800),
                          day.begin, day.end, name="follow")

  expected = run()
  assert expected.moves > 0  # it does follow the forecast

  def built(*args, **kwargs):
    raise AssertionError("the fleet's view was built for a policy blind "
                         "to it")

  monkeypatch.setattr(fleet, "_known", built)
  assert run() == expected


def test_only_the_exact_trip_ends_reference_is_told_the_trips_ends(
    tmp_path, monkeypatch):
  """`simulate` builds each policy's view of the fleet: a dispatcher's
  (the trips' ends are the future) for recommend with forecast supply, the
  true ends for the exact-trip-ends reference, and never the latter for a
  policy that did not ask."""
  from taxi_demand import supply  # noqa: PLC0415
  day = _small_day(tmp_path)
  zeros = np.zeros((3, supply.HOURS_PER_WEEK))
  rates = supply.Rates(zeros, np.array([1.0]), np.full((3, 3), 600.0),
                       np.array([1.0]), np.array([600.0]), zeros)
  asked = []
  build = fleet._known

  def built(*args):
    asked.append(args[-1])
    return build(*args)

  monkeypatch.setattr(fleet, "_known", built)
  for exact in (False, True):
    asked.clear()
    fleet.simulate(day.geometry, day.passengers, 4,
                   fleet.following(day.geometry, _busy_cell_3, 1800,
                                   rates=rates, exact_trip_ends=exact),
                   day.begin, day.end)
    assert asked and set(asked) == {exact}
  day = dataclasses.replace(day, supply_rates=rates)
  names = set(fleet.policies(day, _busy_cell_3))
  assert fleet.RECOMMEND_EXACT_ENDS in names and "recommend" in names
  assert fleet.RECOMMEND_EXACT_ENDS not in fleet.policies(
      dataclasses.replace(day, supply_rates=None), _busy_cell_3)


def test_evaluate_reuses_the_stay_run_that_sized_the_fleet(tmp_path,
                                                           monkeypatch):
  """Each policy's figures are those of its own simulation; the stay run
  that sized the fleet is not simulated a second time."""
  day = _small_day(tmp_path)
  taxis, _ = fleet.calibrate_fleet(day.geometry, day.passengers, day.begin,
                                   day.end)
  policies = {"stay": fleet.stay(),
              "follow": fleet.following(day.geometry, _busy_cell_3, 1800)}
  expected = {name: fleet.simulate(day.geometry, day.passengers, taxis,
                                   policy, day.begin, day.end, name=name)
              for name, policy in policies.items()}
  runs = []
  simulate = fleet.simulate

  def counted(*args, **kwargs):
    runs.append(kwargs.get("name"))
    return simulate(*args, **kwargs)

  monkeypatch.setattr(fleet, "simulate", counted)
  assert fleet.evaluate(day, policies) == (taxis, expected)
  assert runs.count("follow") == 1
  sizing = len(runs) - 1
  runs.clear()
  fleet.calibrate_fleet(day.geometry, day.passengers, day.begin, day.end)
  assert len(runs) == sizing  # evaluate ran no stay beyond the sizing's
