"""A city whose trips carry no dropoff and no taxi_id runs its daily run to
a pushed model, asserted through ML Metadata.

The session's city, exported without those columns (as the sample that ships
with TFX lacks them) and loaded into a home of its own through the loader:
GuidanceGate cannot simulate a fleet without dropoff areas, records
measured=0 and why, and ForecastGate blesses on the forecast alone and says
so. bench/shapes.py runs the other partial shapes.
"""

import pytest

import runner_local
from taxi_demand import cli
from taxi_demand import spans
from taxi_demand.data import contract as data_contract
from taxi_demand.data import warehouse as wh
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.serving import registry

pytestmark = pytest.mark.e2e

DAY = "2024-02-08"       # a Thursday of the session's city
# As test_pipeline_e2e: these runs are about the pipeline's mechanics; the
# gates' margins are pinned by test_forecast_gate.py.
FAST = ["--train-days", "3", "--train-steps", "300", "--naive-margin", "0",
        "--cell-margin", "1.0"]
LEFT_OUT = data_contract.optional_columns(["dropoff", "taxi_id"])


@pytest.fixture(scope="module")
def partial_home(city, tmp_path_factory):
  root = tmp_path_factory.mktemp("partial")
  trips = root / "trips.parquet"
  with wh.Warehouse(city.warehouse, read_only=True) as source:
    source.con.execute(
        f"COPY (SELECT * EXCLUDE ({', '.join(LEFT_OUT)}) FROM trips) "
        f"TO '{trips}' (FORMAT parquet)")
  home = Home(root / "home").ensure()
  with wh.Warehouse(home.warehouse) as warehouse:
    report = warehouse.load([trips])
  assert report.loaded > 0 and report.quarantined == 0
  return home


def test_trips_without_dropoff_or_taxi_id_run_to_a_pushed_model(
    partial_home, capsys):
  home = partial_home
  assert runner_local.main(["--home", str(home.root), *FAST,
                            "--date", DAY]) == 0
  snap = store.load(home.metadata)
  run = snap.last_run()
  assert run.status == "COMPLETE"
  assert not [n.node_id for n in run.nodes if n.state == "FAILED"]
  summary = queries.run_summary(snap, run)
  assert summary["span"] == spans.parse_span(DAY)

  # GuidanceGate ran, could not measure, and recorded why.
  guidance = snap.run_output(run, contract.GUIDANCE_GATE, contract.RESULT)
  with wh.Warehouse(home.warehouse, read_only=True) as warehouse:
    trips = warehouse.trips_on(spans.parse_span(DAY))
  assert guidance.properties["measured"] == 0
  assert guidance.properties["passed"] == 1
  assert guidance.properties["reason"] == (
      f"not measured: none of the {trips} trips on {DAY} carries a dropoff "
      "area")

  # ForecastGate decided on the forecast alone, said so, and blessed.
  assert summary["blessed"] is True, summary["reasons"]
  assert summary["unmeasured"] == ["guidance"]
  assert summary["reasons"] == (
      f"guidance not measured: none of the {trips} trips on {DAY} carries a "
      "dropoff area; decided on the forecast alone")
  assert summary["pushed_version"]
  assert registry.versions(home.models) == [summary["pushed_version"]]

  # The run's summary and `runs` show it.
  out = capsys.readouterr().out
  assert "blessed: yes (guidance not measured: none of the" in out
  assert cli.main(["runs", "--home", str(home.root)]) == 0
  out = capsys.readouterr().out
  assert "yes (no guidance*)" in out
  assert "* decided without the checks named" in out
