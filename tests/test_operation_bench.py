"""bench/operation.py judges a month of operation from its per-day table."""

from taxi_demand.testing import benches


def _bench():
  return benches.load("operation")


def _day(date, age, ratio, blessed=True, reasons=None):
  return {"date": date, "blessed": blessed, "reasons": reasons,
          "serving_age_days": age, "next_day_over_naive": ratio}


def _cells(*wins):
  return [{"cell": i, "days_beating_naive": w} for i, w in enumerate(wins)]


def test_a_clean_fortnight_meets_every_target():
  days = [_day(f"2024-02-{12 + i}", 1, 0.7) for i in range(14)]
  targets = _bench().targets({"days": days, "busy_cells": _cells(14, 12)},
                             14)
  assert all(t["ok"] for t in targets.values()), targets
  assert targets["busy_cells_min_days_beating_naive"]["limit"] == 12


def test_a_stale_model_a_bad_day_and_an_unexplained_refusal_each_fail():
  days = [_day("2024-02-12", 1, 0.7),
          _day("2024-02-13", 2, 0.8, blessed=False, reasons=""),
          _day("2024-02-14", 3, 0.7, blessed=False,
               reasons="cell 8: MAE 32.9 is 42% above its naive 23.2")]
  targets = _bench().targets({"days": days, "busy_cells": _cells(3, 1)}, 3)
  assert targets["serving_age_max_days"] == {"value": 3, "limit": 2,
                                             "ok": False}
  assert targets["next_day_over_naive_max"]["ok"] is False
  assert targets["refusals_without_cause"]["value"] == ["2024-02-13"]
  # 12 of 14 days, as a share of 3 days: 3 (ceil of 2.57).
  assert targets["busy_cells_min_days_beating_naive"] == {
      "value": 1, "limit": 3, "ok": False}


def test_a_day_with_no_serving_model_is_not_a_met_target():
  targets = _bench().targets(
      {"days": [_day("2024-02-12", None, None)], "busy_cells": []}, 1)
  assert not targets["serving_age_max_days"]["ok"]
  assert not targets["next_day_over_naive_max"]["ok"]
  assert not targets["busy_cells_min_days_beating_naive"]["ok"]


def test_a_data_refusal_names_the_anomalies():
  cause = _bench()._refusal_cause({
      "status": "REFUSED", "reasons": "", "data_lines": [
          "fare: out of range", "[drift vs 2024-02-11] trip_seconds: L-inf"]})
  assert cause == ("data validation: fare: out of range; [drift vs "
                   "2024-02-11] trip_seconds: L-inf")


def test_make_bench_can_call_it_as_it_calls_every_bench():
  # `make bench` runs each bench with --json.
  args = _bench().parse_args(["--json"])
  assert args.days == 14 and args.replay_every == "5m"


def test_the_true_rate_reference_sums_the_simulators_quarter_hours(city):
  """The median of the true rate per cell and 30-minute slot, from the
  simulator's quarter hours; none for grid cells or a warehouse without
  truth."""
  import dataclasses  # noqa: PLC0415

  import duckdb  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from taxi_demand.data.sql import QueryConfig  # noqa: PLC0415
  from taxi_demand.data.sql import SpatialUnit  # noqa: PLC0415
  from taxi_demand.modeling import model as model_lib  # noqa: PLC0415
  from conftest import FIRST_SPAN  # noqa: PLC0415
  cfg = QueryConfig()
  begin = FIRST_SPAN * 86400
  cells = [8, 8, 32, 77]
  slots = [begin, begin + 1800, begin + 17 * 3600, begin + 23 * 3600 + 1800]
  got = _bench().true_rate_forecast(city.warehouse, cfg, FIRST_SPAN, cells,
                                    slots)
  with duckdb.connect(str(city.warehouse), read_only=True) as con:
    want = [con.execute(
        "SELECT sum(intensity) FROM truth WHERE community_area = ? AND "
        "slot_start >= ? AND slot_start < ?", [c, s, s + 1800]).fetchone()[0]
        for c, s in zip(cells, slots)]
  assert min(want) > 0
  np.testing.assert_allclose(
      got, model_lib.poisson_median(np.array(want)).numpy())
  grid = dataclasses.replace(cfg, spatial_unit=SpatialUnit.GRID)
  assert _bench().true_rate_forecast(city.warehouse, grid, FIRST_SPAN, cells,
                                     slots) is None
