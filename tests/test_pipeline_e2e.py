"""The daily pipeline end to end on a tiny simulated city, asserted through MLMD.

One warehouse and one state directory serve the whole module; the tests run
in file order, each one day later, as a daily schedule would.
"""

import datetime

import pytest

import runner_local
from taxi_demand.data import simulate
from taxi_demand.data import warehouse as wh
from taxi_demand.home import Home
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.serving import registry

pytestmark = pytest.mark.e2e

START = datetime.date(2024, 3, 1)
DAYS = 12                      # 2024-03-01 .. 2024-03-12
# A 60-step model of a small city is too rough for the per-cell check, which
# can then refuse the first model depending on one busy cell's day; the check
# itself is pinned by tests/test_forecast_gate.py.
FAST = ["--train-days", "3", "--train-steps", "60", "--cell-margin", "1.0"]
EVERY_NODE = {"ExampleGen", "StatisticsGen", "SchemaGen", "CuratedSchema",
              "ExampleValidator", "DataGate", "Transform", "Trainer",
              "Evaluator", "ForecastGate", "Pusher", "NextDayValidator",
              "SkewValidator"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
  home = Home(tmp_path_factory.mktemp("e2e") / "home").ensure()
  with wh.Warehouse(home.warehouse) as warehouse:
    simulate.simulate_into(warehouse, start=START, days=DAYS, seed=11,
                           scale=0.3)
  return home


def run(home, *args):
  return runner_local.main(["--home", str(home.root), *FAST, *args])


def last_run(home):
  with store.open_store(home.metadata) as reader:
    return reader.last_run()


def executed(run_):
  """Node ids that really executed (not cached, not resolvers)."""
  return {n.node_id for n in run_.nodes if n.state == "COMPLETE"} & EVERY_NODE


def test_a_first_run_executes_every_node_and_pushes(home):
  assert run(home, "--date", "2024-03-09") == 0
  r = last_run(home)
  assert executed(r) == EVERY_NODE
  assert r.status == "COMPLETE"
  with store.open_store(home.metadata) as reader:
    snap = reader.snapshot()
    summary = queries.run_summary(snap, snap.run(r.run_id))
    assert summary["span"] == (datetime.date(2024, 3, 9) -
                               datetime.date(1970, 1, 1)).days
    assert summary["blessed"] is True
    # The mark the Vertex baseline query keeps (the Evaluator's has none).
    assert queries.blessing_props(snap, snap.run(r.run_id))[
        "forecast_gate"] == 1
    assert summary["train_examples"] == 3 * 77 * 48
    assert summary["eval_examples"] == 77 * 48
    # Each node once: one Model, one ModelBlessing per blessing node.
    assert len(reader.pushed_models()) == 1
  assert registry.versions(home.models) == [summary["pushed_version"]]


def test_a_rerun_with_nothing_changed_is_served_from_the_cache(home):
  before = registry.versions(home.models)
  assert run(home, "--date", "2024-03-09") == 0
  r = last_run(home)
  assert executed(r) == set()
  assert {n.node_id for n in r.nodes if n.cached} >= EVERY_NODE
  assert registry.versions(home.models) == before


def test_a_deliberately_worse_model_is_not_blessed_nor_pushed(home):
  serving = registry.serving_version(home.models)
  # One step at an absurd learning rate wrecks the warm-started weights.
  assert run(home, "--date", "2024-03-10", "--train-steps", "1",
             "--hparam", "learning_rate=50.0") == 0
  r = last_run(home)
  assert {"Trainer", "Evaluator", "ForecastGate", "Pusher"} <= executed(r)
  with store.open_store(home.metadata) as reader:
    snap = reader.snapshot()
    summary = queries.run_summary(snap, snap.run(r.run_id))
  assert summary["blessed"] is False and summary["reasons"]
  assert summary["pushed_version"] is None
  assert registry.serving_version(home.models) == serving


def test_a_failed_trainer_resumes_from_the_failed_node_only(home):
  # An unknown hyperparameter makes Trainer fail after the data steps ran.
  assert run(home, "--date", "2024-03-11", "--hparam", "no_such_knob=1") == 1
  failed = last_run(home)
  assert [n.node_id for n in failed.nodes if n.state == "FAILED"] == [
      "Trainer"]
  assert run(home, "--resume") == 0
  resumed = last_run(home)
  assert resumed.run_id != failed.run_id
  assert executed(resumed) == {"Trainer", "Evaluator", "ForecastGate",
                               "Pusher"}


def test_a_broken_day_stops_at_the_gate_and_keeps_the_serving_model(home):
  serving = registry.serving_version(home.models)
  # A partial export: nine trips in ten of the newest day never arrive.
  with wh.Warehouse(home.warehouse) as warehouse:
    warehouse.con.execute(
        "DELETE FROM trips WHERE trip_start_timestamp >= TIMESTAMP "
        "'2024-03-12' AND hash(unique_key) % 10 <> 0")
  assert run(home, "--date", "2024-03-12") == 3
  r = last_run(home)
  assert [n.node_id for n in r.nodes if n.state == "FAILED"] == ["DataGate"]
  assert "Trainer" not in {n.node_id for n in r.nodes}
  assert registry.serving_version(home.models) == serving
