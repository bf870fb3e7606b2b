"""The supply forecast served beside the demand forecast, checked like it:
skew recomputes it at each served tick with the rates its rows name, and
next-day scores it by lead against the idle taxis of the day and idle now
carried forward."""

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taxi_demand import cli
from taxi_demand import spans
from taxi_demand import supply_rates
from taxi_demand.monitoring import nextday
from taxi_demand.monitoring import skew
from taxi_demand.serving import predict
from taxi_demand.serving import servelog

DAY = datetime.date(2024, 2, 10)
TICKS = ("17:10", "17:15", "17:20")


def _epoch(hhmm: str, day=DAY) -> int:
  return predict.wall_clock_epoch(
      datetime.datetime.fromisoformat(f"{day}T{hhmm}"))


def _serve(home, version: str, ticks=TICKS) -> None:
  model = predict.LoadedModel(home, version)
  for hhmm in ticks:
    predict.run_job(home, model, _epoch(hhmm))


def _tamper(home, factor: float) -> None:
  """Every logged supply forecast x `factor`, as a serving path with other
  rates (or another unit) would have written it."""
  folder = Path(servelog.partition(home.serving_log, DAY))  # a local log
  for path in folder.glob("*.parquet"):
    table = pq.read_table(path)
    i = table.column_names.index(servelog.PREDICTED_IDLE)
    pq.write_table(table.set_column(i, servelog.PREDICTED_IDLE, pa.array(
        np.asarray(table.column(i).to_pylist()) * factor)), path)


def test_skew_passes_an_honest_supply_forecast_and_flags_a_tampered_one(
    city_home, city_copy, capsys):
  _serve(city_copy, city_home.old)
  capsys.readouterr()
  code = cli.main(["--home", str(city_copy.root), "skew", "--date",
                   DAY.isoformat(), "--json"])
  out = json.loads(capsys.readouterr().out)
  assert code == 0, out["flagged"]
  assert out["supply"] == {"ticks": 3, "compared": 231, "differing": 0,
                           "share": 0, "max_abs_difference": 0,
                           "max_differing": 0.05, "flagged": False}
  _tamper(city_copy, 1.5)
  code = cli.main(["--home", str(city_copy.root), "skew", "--date",
                   DAY.isoformat()])
  err = capsys.readouterr().err
  assert code == 3
  assert err.count("\n") == 1 and "Traceback" not in err
  # Every row but those forecast at zero idle taxis (x 1.5 is zero still).
  assert ("predicted_idle_taxis: the served supply forecast differs from "
          "its recomputation with the rates it names on 92% of 231 served "
          "rows") in err


def test_skew_recomputes_with_the_rates_recorded_with_the_model(
    city_home, city_copy):
  """Rows served with a version's recorded rates are made again with the
  same rates: they pass; rows made by other rates than the version's file
  holds are flagged."""
  from supply_models import push_with_rates  # noqa: PLC0415
  version = push_with_rates(city_copy, city_home.old)
  _serve(city_copy, version, TICKS[:2])
  rows = servelog.read_day(city_copy.serving_log, DAY).rows_of(version)
  cfg = predict.query_config_of(city_copy, version)
  honest, why = skew.supply_skew(
      city_copy.warehouse, cfg, rows,
      lambda v: skew.recorded_rates(city_copy.models, v))
  assert why is None and honest.compared == 154 and not honest.flagged
  assert honest.differing == 0
  other = push_with_rates(city_copy, city_home.old,
                          window=("2024-02-08", "2024-02-10"))
  swapped, _ = skew.supply_skew(
      city_copy.warehouse, cfg, rows,
      lambda v: skew.recorded_rates(city_copy.models, other))
  assert swapped.flagged and swapped.share > 0.5


def test_supply_skew_without_supply_forecasts_says_why(city_home, city_copy):
  """A log whose rows carry no supply forecast (older, or a city without
  taxi ids) is not checked for it, and the report says so."""
  _serve(city_copy, city_home.old, TICKS[:1])
  rows = servelog.read_day(city_copy.serving_log, DAY).table
  rows = rows.set_column(rows.column_names.index(servelog.PREDICTED_IDLE),
                         servelog.PREDICTED_IDLE,
                         pa.nulls(rows.num_rows, pa.float64()))
  found, why = skew.supply_skew(city_copy.warehouse, None, rows,
                                lambda v: None)
  assert found is None
  assert why == "no served row carries a supply forecast and its issue time"


# --- next-day: the served supply forecast scored by lead ----------------------

# The three-taxi, six-trip day of tests/test_supply_forecast.py.
HAND_DAY = "2024-02-05"
SIX_TRIPS = [("A", "08:00", "08:20", 1200, 1, 2),
             ("A", "08:30", "08:50", 1200, 2, 3),
             ("B", "08:10", "08:40", 1800, 1, 3),
             ("B", "09:00", "09:20", 1200, 3, 1),
             ("C", "08:05", "08:25", 1200, 2, 2),
             ("C", "08:45", "09:15", 1800, 2, 1)]


def _hand_day(tmp_path, rows, idle_by_slot):
  """A warehouse of `rows` on HAND_DAY and a served log of one tick at
  08:30 forecasting the slots of 08:30 (lead 0) and 09:00 (lead 30) for
  cells 1, 2, 3 with `idle_by_slot`."""
  from served_rows import served  # noqa: PLC0415
  from taxi_days import write_trips  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  write_trips(tmp_path / "day.csv", HAND_DAY, rows)
  with Warehouse(tmp_path / "w.duckdb") as wh:
    wh.load([tmp_path / "day.csv"])
  issued = _epoch("08:30", HAND_DAY)
  table = served([issued, issued + 1800], issued)
  servelog.append(tmp_path / "log", table, "7",
                  datetime.datetime.utcfromtimestamp(issued),
                  predicted=[1.0] * 6,
                  predicted_idle=[v for slot in idle_by_slot for v in slot],
                  supply_rates=supply_rates.FIT_AT_SERVING)
  return tmp_path / "log", tmp_path / "w.duckdb"


def test_next_day_scores_the_served_supply_forecast_by_lead_by_hand(
    tmp_path):
  # The idle taxis of each slot, from the day's spells:
  #   08:30-09:00  cell 2: C 08:25-08:45, 15 of 30 min; cell 3: B
  #                08:40-09:00 and A 08:50-, 30 of 30 min  -> (0, 0.5, 1)
  #   09:00-09:30  cell 1: C 09:15-, B 09:20-, 25 of 30 min; cell 3: A
  #                                                        -> (5/6, 0, 1)
  # Idle at 08:30 (naive, carried forward): C in cell 2    -> (0, 1, 0)
  log, warehouse = _hand_day(tmp_path, SIX_TRIPS,
                             [(0, 0.5, 1), (1, 0, 1)])
  from taxi_demand.lineage import contract  # noqa: PLC0415
  found = nextday.served_supply_by_lead(
      log, warehouse, contract.RunParameters().query_config(),
      spans.parse_span(HAND_DAY))
  assert found["served_supply_by_lead"] == {
      "0": {"mae": 0.0, "naive_mae": 0.5, "forecasts": 3},
      "30": {"mae": round(1 / 18, 4), "naive_mae": round(17 / 18, 4),
             "forecasts": 3}}
  assert found["served_supply_mae"] == round(1 / 36, 4)
  assert found["served_supply_naive_mae"] == round(26 / 36, 4)
  assert not found["supply_alert"] and found["served_supply_note"] is None


def test_a_supply_forecast_worse_than_idle_now_is_an_alert(tmp_path):
  """The rule (next_day_rules.DEFAULT_SUPPLY_MARGIN): the served supply
  forecast's MAE over the day above naive's x 1.25."""
  from taxi_demand.lineage import contract  # noqa: PLC0415
  log, warehouse = _hand_day(tmp_path, SIX_TRIPS, [(3, 3, 3), (3, 3, 3)])
  found = nextday.served_supply_by_lead(
      log, warehouse, contract.RunParameters().query_config(),
      spans.parse_span(HAND_DAY))
  assert found["supply_alert"]
  assert found["supply_reason"] == (
      "supply: served supply forecast MAE 2.4444 > naive (idle now) MAE "
      "0.7222 x 1.25 = 0.9028")
  result = nextday.with_supply({"alert": False, "reason": "ok: fine"}, found)
  assert result["alert"] and result["reason"] == found["supply_reason"]


def test_a_day_without_taxi_ids_is_not_scored_and_never_fails(tmp_path):
  from taxi_demand.lineage import contract  # noqa: PLC0415
  log, warehouse = _hand_day(
      tmp_path, [("",) + row[1:] for row in SIX_TRIPS], [(0, 0, 0)] * 2)
  found = nextday.served_supply_by_lead(
      log, warehouse, contract.RunParameters().query_config(),
      spans.parse_span(HAND_DAY))
  assert found["served_supply_by_lead"] is None and not found["supply_alert"]
  assert found["served_supply_note"] == (
      "not scored: no trip around 2024-02-05 carries a taxi_id: the idle "
      "taxis are unknown")


def test_next_day_reports_the_served_supply_forecast_beside_demand(
    city_copy, capsys):
  """The CLI (JSON and console) and the pipeline node alike score the
  supply forecasts served for D by lead; the node without a warehouse
  says so."""
  from pipeline.components import next_day  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  day = "2024-02-11"
  model = predict.LoadedModel(city_copy)
  for hhmm in TICKS:
    predict.run_job(city_copy, model, _epoch(hhmm, day), horizon=2)
  capsys.readouterr()
  code = cli.main(["--home", str(city_copy.root), "next-day", "--date", day,
                   "--json", "--no-record"])
  result = json.loads(capsys.readouterr().out)
  assert code == (3 if result["alert"] else 0)
  by_lead = result["served_supply_by_lead"]
  # Ticks 17:10, 17:15, 17:20, two slots ahead each: 17:30 and 18:00.
  assert sorted(by_lead, key=int) == ["10", "15", "20", "40", "45", "50"]
  assert all(row["forecasts"] == 77 for row in by_lead.values())
  assert result["supply_alert"] == (
      result["served_supply_mae"] > result["served_supply_naive_mae"] * 1.25)
  cli.main(["--home", str(city_copy.root), "next-day", "--date", day,
            "--no-record"])
  assert "served supply forecasts (idle taxis): MAE" in capsys.readouterr().out
  subject = nextday.find_subject(city_copy, queries.span_of_date(day))
  examples = queries.examples_of_span(store.load(city_copy.metadata),
                                      subject.span)
  node = next_day.check(examples.uri, subject.model_dir, subject.span,
                        subject.eval_mae, nextday.DEFAULT_MARGIN,
                        serving_log_dir=str(city_copy.serving_log),
                        warehouse_path=str(city_copy.warehouse))
  assert node["served_supply_by_lead"] == by_lead
  bare = next_day.check(examples.uri, subject.model_dir, subject.span,
                        subject.eval_mae, nextday.DEFAULT_MARGIN,
                        serving_log_dir=str(city_copy.serving_log))
  assert bare["served_supply_note"] == "not scored: no warehouse at (none)"


def test_the_skew_node_checks_the_supply_forecast_by_the_registry(
    tmp_path, city, city_home, city_copy):
  """The SkewValidator reads the serving version's recorded rates from the
  registry (models_dir) and flags a served supply forecast they do not
  make; without the registry it says the supply forecast went unchecked."""
  import executor_artifacts as art  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import skew_validator  # noqa: PLC0415
  from supply_models import push_with_rates  # noqa: PLC0415
  from taxi_demand.lineage import contract  # noqa: PLC0415
  version = push_with_rates(city_copy, city_home.old)
  _serve(city_copy, version, TICKS[:2])
  _tamper(city_copy, 1.5)
  statistics = city.statistics[spans.span_of(DAY) - 2]
  schema = art.schema(tmp_path / "schema")

  def node(name, **models_dir):
    art.run(skew_validator.SkewValidator, {
        contract.SCHEMA: [schema], contract.STATISTICS: [art.artifact(
            standard_artifacts.ExampleStatistics, statistics)]},
            {contract.REPORT: [art.artifact(skew_validator.SkewReport,
                                            tmp_path / name)]},
            serving_log_dir=str(city_copy.serving_log),
            date=DAY.isoformat(), fail_on_skew=0,
            warehouse_path=str(city_copy.warehouse),
            query_config=json.dumps(
                contract.RunParameters().to_custom_config()), **models_dir)
    return json.loads((tmp_path / name / contract.SKEW_REPORT_FILE)
                      .read_text())

  found = node("with", models_dir=str(city_copy.models))
  assert skew.SUPPLY in found["flagged"] and found["supply"]["compared"] == 154
  bare = node("bare")
  assert bare["supply"] is None and skew.SUPPLY not in bare["flagged"]
  assert any(n.startswith("supply forecast not checked: the rows of version "
                          f"{version} name supply rates recorded with it")
             for n in bare["notes"])
