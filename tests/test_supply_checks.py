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
