"""VersionedPusherExecutor on hand-built artifacts: the registry's serving rule."""

import json
import os
import signal
import time

import numpy as np
import taxi_demand  # noqa: F401  (before TensorFlow)
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys

from pipeline import local_run
from pipeline.components import resolvers
from pipeline.components.pusher import VersionedPusherExecutor
from taxi_demand import cli
from taxi_demand import faults
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.testing import synthetic
from taxi_demand.serving import predict
from taxi_demand.serving import registry


def _push(tmp_path, name, span, blessed=1, base=None, custom=None):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / name / "model")
  serving = tmp_path / name / "model" / "Format-Serving"
  serving.mkdir(parents=True, exist_ok=True)
  (serving / "saved_model.pb").write_text(name)
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / name / "blessing")
  blessing.set_int_custom_property("blessed", blessed)
  blessing.set_int_custom_property(contract.SPAN, span)
  pushed = standard_artifacts.PushedModel()
  runs = len(list((tmp_path / name).glob("pushed-*")))
  pushed.uri = str(tmp_path / name / f"pushed-{runs}")
  VersionedPusherExecutor().Do(
      {keys.MODEL_KEY: [model], keys.MODEL_BLESSING_KEY: [blessing]},
      {keys.PUSHED_MODEL_KEY: [pushed]},
      {keys.PUSH_DESTINATION_KEY: json.dumps(
          {"filesystem": {"base_directory": str(
              base or tmp_path / "models")}}),
       keys.CUSTOM_CONFIG_KEY: json.dumps(custom or {"keep_versions": 5})})
  return pushed


def _version(pushed):
  return str(pushed.get_string_custom_property(contract.PUSHED_VERSION))


def test_a_rerun_of_an_older_day_never_replaces_the_newer_model(tmp_path):
  newer = _push(tmp_path, "day11", span=11)
  older = _push(tmp_path, "day10", span=10)
  assert older.get_int_custom_property(contract.PUSHED) == 1
  models = tmp_path / "models"
  assert registry.versions(models) == [_version(newer), _version(older)]
  assert registry.serving_version(models) == _version(newer)
  assert (models / _version(older) / "saved_model.pb").read_text() == "day10"


def test_a_refused_blessing_pushes_nothing(tmp_path):
  refused = _push(tmp_path, "bad", span=12, blessed=0)
  assert refused.get_int_custom_property(contract.PUSHED) == 0
  assert registry.versions(tmp_path / "models") == []



def test_a_pusher_run_again_after_its_move_keeps_the_version(tmp_path):
  """Killed after the rename and CURRENT's move (pusher.moved), before ML
  Metadata recorded the push, the Pusher runs again on --resume: it finds
  the version it published, which may have served since, and records that
  one rather than publishing a twin no record names."""
  first = _push(tmp_path, "day11", span=11)
  again = _push(tmp_path, "day11", span=11)
  models = tmp_path / "models"
  assert _version(again) == _version(first)
  assert registry.versions(models) == [_version(first)]
  assert registry.serving_version(models) == _version(first)
  # Another model is another version.
  other = _push(tmp_path, "day12", span=12)
  assert registry.versions(models) == [_version(first), _version(other)]


def test_a_push_to_cloud_storage_carries_the_run_parameters(tmp_path,
                                                            gcs_root):
  """On Vertex the same executor pushes to gs://: the version is complete
  when seen, serves, and holds the run's parameters with the blessing's
  day, which is all the 5-minute job reads."""
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  params = contract.RunParameters(slot_minutes=60, spatial_unit="grid",
                                  grid_metres=500, arrival="end+5m")
  models = f"{gcs_root}/models"
  pushed = _push(tmp_path, "day11", span=11, base=models, custom={
      "keep_versions": 5, "run_parameters": params.to_custom_config()})
  version = _version(pushed)
  assert registry.versions(models) == [version]
  assert registry.serving_version(models) == version
  assert pushed.get_string_custom_property(
      contract.PUSHED_DESTINATION) == f"{models}/{version}"
  recorded = registry.parameters(models, version)
  assert recorded["span"] == 11 and recorded["slot_minutes"] == 60
  cfg = predict.query_config_of(Home(tmp_path / "home", store_at=gcs_root),
                                version)
  assert cfg == params.query_config()
  assert (registry.local_copy(models, version) / "saved_model.pb"
          ).read_text() == "day11"


def _killed(pid: int, timeout_s: float = 120) -> bool:
  """Whether child `pid` died of SIGKILL (killed and False after timeout)."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    time.sleep(0.05)
  os.kill(pid, signal.SIGKILL)
  os.waitpid(pid, 0)
  return False


def test_a_pusher_killed_between_its_two_writes_serves_what_is_recorded(
    tmp_path, capsys):
  """SIGKILLed after moving CURRENT, before TFX records the push (as the
  store shows: its execution RUNNING), the Pusher leaves a version ML
  Metadata does not know. The 5-minute job, `lineage serving` and the next
  run's resolver all answer the recorded version; the next run's start
  puts CURRENT back."""
  day = synthetic.FIRST_SPAN + 1
  home = Home(tmp_path / "home")
  synthetic.write_store(home.root, [
      synthetic.RunSpec(day - 1),
      synthetic.RunSpec(day, killed_in=contract.PUSHER)])
  recorded = registry.serving_version(home.models)
  # _push in a child process that dies at the point, as kill -9 (forked:
  # a new interpreter would spend a minute importing TensorFlow).
  child = os.fork()
  if child == 0:
    try:
      os.environ[faults.ENV_VAR] = "pusher.moved"
      _push(tmp_path, "day", span=day, base=str(home.models))
    finally:
      os._exit(1)  # not killed: the parent fails
  assert _killed(child)
  moved = registry.serving_version(home.models)
  assert moved != recorded  # CURRENT moved; ML Metadata knows nothing

  # The 5-minute job (taxi-demand predict) loads the recorded version.
  assert predict.LoadedModel(home).version == recorded
  assert cli.main(["--home", str(home.root), "lineage", "serving",
                   "--json"]) == 0
  assert json.loads(capsys.readouterr().out)["version"] == recorded
  # The next run judges against the recorded version's model.
  snap = store.load(home.metadata)
  assert resolvers.serving_artifact_ids(snap, day + 1)[contract.MODEL] == (
      queries.push_of(snap, recorded).model.id)
  # Its start marks the Pusher aborted and puts CURRENT back.
  lines = local_run.mark_aborted(home)
  assert lines[-1].startswith(f"registry: CURRENT named version {moved},")
  assert registry.serving_version(home.models) == recorded
  assert local_run.mark_aborted(home) == []


def _trips_warehouse(path, days):
  """A warehouse of {day: [(taxi, start, end, seconds, from, to)]}."""
  from taxi_days import write_trips  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  files = []
  for day, rows in days.items():
    files.append(path.parent / f"{path.stem}-{day}.csv")
    write_trips(files[-1], day, rows)
  with Warehouse(path) as wh:
    wh.load(files)
  return path


WINDOW_TRIPS = {
    "2024-02-03": [("A", "08:00", "08:20", 1200, 1, 2),
                   ("A", "08:30", "08:50", 1200, 2, 3),
                   ("B", "09:10", "09:40", 1800, 1, 3)],
    # B's last trip of the window ends after it: under way at its end.
    "2024-02-04": [("B", "18:00", "18:30", 1800, 3, 1),
                   ("C", "20:05", "20:25", 1200, 2, 2),
                   ("B", "23:50", "", 3600, 1, 2)],
}


def test_a_push_records_the_supply_rates_of_its_training_window(tmp_path):
  """The version holds the supply forecast's rates fitted from its training
  window's trips (the train_days before the run's day), as known at the
  window's end: the run's own day and a trip's end after the window never
  enter them."""
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand import supply_rates  # noqa: PLC0415
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  span = spans.parse_span("2024-02-05")
  eval_day = {"2024-02-05": [("A", "07:00", "07:40", 2400, 3, 1),
                             ("C", "07:10", "07:20", 600, 2, 4)]}
  warehouse = _trips_warehouse(tmp_path / "w.duckdb",
                               {**WINDOW_TRIPS, **eval_day})
  params = contract.RunParameters(train_days=2)
  pushed = _push(tmp_path, "day5", span=span, custom={
      "keep_versions": 5, "run_parameters": params.to_custom_config(),
      "warehouse": str(warehouse)})
  found = supply_rates.recorded(tmp_path / "models" / _version(pushed))
  assert (found.begin, found.end) == (spans.start_of(span - 2),
                                      spans.start_of(span))
  assert found.cells.tolist() == [1, 2, 3]   # cell 4: the run's day only
  # The same rates from the window's trips alone, B's last trip never
  # ending: what was known at the window's end.
  known = dict(WINDOW_TRIPS)
  known["2024-02-04"] = known["2024-02-04"][:-1] + [
      ("B", "23:50", "", 99999, 1, 2)]
  with open_reader(_trips_warehouse(tmp_path / "known.duckdb", known)) as wh:
    alone = supply_rates.fit_window(wh, params.query_config(), found.begin,
                                    found.end)
  for name in ("leave_per_s", "spell_ratios", "trip_mean_s", "trip_ratios",
               "trip_seconds", "dropoffs_per_s"):
    np.testing.assert_array_equal(getattr(found.rates, name),
                                  getattr(alone.rates, name), err_msg=name)
  # A cell first seen after the window gets the city's rates.
  rates = found.for_cells(np.array([2, 4]))
  assert rates.dropoffs_per_s[1].sum() == 0
  np.testing.assert_array_equal(rates.leave_per_s[1],
                                found.rates.leave_per_s[-1])


def test_a_push_without_a_warehouse_records_no_supply_rates(tmp_path):
  """Vertex's Pusher has no warehouse: the version has no rates, and the
  5-minute job fits them when serving."""
  from taxi_demand import supply_rates  # noqa: PLC0415
  pushed = _push(tmp_path, "day5", span=19757, custom={
      "keep_versions": 5, "run_parameters": contract.RunParameters(
          train_days=2).to_custom_config()})
  assert supply_rates.recorded(
      tmp_path / "models" / _version(pushed)) is None


def test_vertex_pushes_record_the_same_supply_rates_from_bigquery(
    tmp_path, city, bigquery):
  """Vertex's Pusher reads the window's trips from BigQuery (here the REST
  double over the city's warehouse): the same rates as from the DuckDB
  file."""
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand import supply_rates  # noqa: PLC0415
  params = contract.RunParameters(train_days=7).to_custom_config()
  span = spans.parse_span("2024-02-10")
  found = {}
  for name, warehouse in (("duckdb", str(city.warehouse)),
                          ("bigquery", bigquery.address)):
    pushed = _push(tmp_path, name, span=span, base=tmp_path / name, custom={
        "keep_versions": 5, "run_parameters": params, "warehouse": warehouse})
    found[name] = supply_rates.recorded(tmp_path / name / _version(pushed))
  assert found["bigquery"].cells.tolist() == found["duckdb"].cells.tolist()
  assert found["bigquery"].to_bytes() == found["duckdb"].to_bytes()


def test_a_window_reaching_before_the_first_trips_starts_at_them(tmp_path):
  """A first run's window reaches back before the warehouse's first day:
  those days were never seen, and counted as history they would dilute
  the learned arrival rates. The rates are those of the days there are."""
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand import supply_rates  # noqa: PLC0415
  span = spans.parse_span("2024-02-05")
  warehouse = str(_trips_warehouse(tmp_path / "w.duckdb", WINDOW_TRIPS))
  found = {}
  for days in (2, 9):
    pushed = _push(tmp_path, f"days{days}", span=span,
                   base=tmp_path / f"days{days}", custom={
                       "keep_versions": 5, "warehouse": warehouse,
                       "run_parameters": contract.RunParameters(
                           train_days=days).to_custom_config()})
    found[days] = supply_rates.recorded(
        tmp_path / f"days{days}" / _version(pushed))
  assert found[9].begin == spans.start_of(spans.parse_span("2024-02-03"))
  assert found[9].to_bytes() == found[2].to_bytes()
