"""Valid but partial data: a check that cannot measure says why and lets the
run decide; a check that breaks still fails.

GuidanceGate's executor on hand-built artifacts over small simulated
warehouses; the whole daily run on such a city is in
test_partial_data_e2e.py, and bench/shapes.py runs every shape.
"""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taxi_demand import cli
from taxi_demand import spans
from taxi_demand.data import contract as data_contract
from taxi_demand.data import simulate
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.errors import CannotMeasure

START, DAYS = "2024-03-01", 3          # the gate judges the last day
DAY = "2024-03-03"


def city(path: Path, without=()) -> Path:
  """Three small days (~1,200 trips each), lacking `without`."""
  with Warehouse(path) as wh:
    simulate.simulate_into(wh, START, DAYS, seed=3, scale=0.02,
                           without=without)
  return path


@pytest.fixture(scope="module")
def no_dropoff(tmp_path_factory):
  return city(tmp_path_factory.mktemp("nodrop") / "w.duckdb",
              without=("dropoff", "taxi_id"))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
  return city(tmp_path_factory.mktemp("whole") / "w.duckdb")


def gate(tmp_path: Path, warehouse: Path, day: str, **exec_properties):
  """GuidanceGate's executor on hand-made Model and Examples artifacts;
  returns its result artifact."""
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import guidance_gate  # noqa: PLC0415
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / "no_model_here")
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  examples.span = spans.parse_span(day)
  result = guidance_gate.GuidanceResult()
  result.uri = str(tmp_path / "result")
  Path(result.uri).mkdir()
  executor = guidance_gate.GuidanceGate.EXECUTOR_SPEC.executor_class()
  executor.Do({"model": [model], "examples": [examples]},
              {"result": [result]},
              {"warehouse_path": str(warehouse), "query_config": "{}",
               **exec_properties})
  return result


def recorded(result):
  body = json.loads((Path(result.uri) / "guidance_gate.json").read_text())
  props = (result.get_int_custom_property("measured"),
           result.get_int_custom_property("passed"),
           result.get_string_custom_property("reason"))
  assert (body["measured"], body["passed"],
          body["reason"]) == (bool(props[0]), bool(props[1]),
                                     props[2])
  return props


def test_simulate_without_leaves_optional_columns_out(tmp_path, capsys):
  files = simulate.simulate_files(tmp_path, DAY, 1, scale=0.01,
                                  without=("dropoff", "taxi_id")).files
  columns = pq.read_schema(files[0]).names
  assert "taxi_id" not in columns
  assert not set(data_contract.DROPOFF_COLUMNS) & set(columns)
  assert not data_contract.missing_columns(columns)
  # A required column cannot be left out; a name that is no column neither.
  assert cli.main(["simulate", "--start", DAY, "--days", "1", "--out",
                   str(tmp_path / "x"), "--without", "trip_miles"]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["taxi-demand simulate: --without: trip_miles is required: "
                 "a trips file without it cannot load"]
  with pytest.raises(ValueError, match="not a trips column"):
    data_contract.optional_columns(["dropof"])


def test_a_day_without_dropoffs_is_not_measured_and_says_why(
    tmp_path, no_dropoff):
  with Warehouse(no_dropoff, read_only=True) as wh:
    trips = wh.trips_on(spans.parse_span(DAY))
  measured, passed, reason = recorded(gate(tmp_path, no_dropoff, DAY))
  assert (measured, passed) == (0, 1)
  assert reason == (f"not measured: none of the {trips} trips on {DAY} "
                    "carries a dropoff area")


def test_a_day_without_trips_is_not_measured(tmp_path, whole):
  measured, passed, reason = recorded(gate(tmp_path, whole, "2024-03-04"))
  assert (measured, passed) == (0, 1)
  assert reason == "not measured: no trips on 2024-03-04 to simulate a " \
      "fleet on"


def test_a_day_below_the_floor_is_not_measured(tmp_path, whole):
  """A fleet comparison on a handful of passengers judges nothing."""
  with Warehouse(whole, read_only=True) as wh:
    trips = wh.trips_on(spans.parse_span(DAY))
  assert 0 < trips < 10**6
  measured, passed, reason = recorded(
      gate(tmp_path, whole, DAY, min_passengers=10**6))
  assert (measured, passed) == (0, 1)
  assert reason.startswith("not measured: ") and reason.endswith(
      "below the 1000000 a fleet comparison needs")


def test_a_gate_that_breaks_still_fails_the_node(tmp_path, whole):
  """Measurable data, but the candidate model cannot be loaded: that is a
  broken check, not a day it cannot measure."""
  with pytest.raises(Exception) as raised:
    gate(tmp_path, whole, DAY, min_passengers=1)
  assert not isinstance(raised.value, CannotMeasure)
