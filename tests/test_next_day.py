"""Next-day validation: the rules, the CLI, drift, and the pipeline node's check."""

import json

import pytest

from taxi_demand import cli
from taxi_demand import features
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.monitoring import nextday

# --- the rules ----------------------------------------------------------------


def test_errors_of_a_forecast():
  got = nextday.score([1, 2, 3, 4], [1, 2, 3, 8], [1, 2, float("nan"), 4])
  assert got["mae"] == pytest.approx(1.0) and got["rmse"] == pytest.approx(2.0)
  # The naive forecast missing for slot 3 counts as 0 (baselines.errors).
  assert got["seasonal_naive_mae"] == pytest.approx(0.75)
  with pytest.raises(TaxiDemandError, match="no examples"):
    nextday.score([], [], [])


def test_one_hard_day_after_a_steady_week_is_no_trend():
  """Least squares would read the last day's jump as a rising trend; the one
  trend definition (Theil-Sen over the mean), which the report shows too,
  does not, and neither does the alert."""
  points = [(d, 1.0) for d in range(10, 14)] + [(14, 2.0)]
  assert nextday.trend(points) == 0.0
  alert, reason = nextday.judge(14, 2.0, None, points[:-1], nextday.Rules())
  assert not alert and "trend +0.0%/day over 5 days" in reason
  rising = [(d, 1.0 + 0.1 * (d - 10)) for d in range(10, 15)]
  assert nextday.trend(rising) == pytest.approx(0.1 / 1.2)
  assert nextday.trend(rising[1:]) is None   # fewer than the rule's 5 days


def test_each_lead_is_compared_with_the_next_longer_on_the_same_slots():
  """Paired by cell and slot: lead 5 of cell 1's 00:30 slot against lead 10
  of the same slot, never another slot's; a slot one lead lacks is left out;
  the noise is the standard error of the paired differences."""
  import pyarrow as pa  # noqa: PLC0415
  rows = [  # cell, slot, lead, predicted, actual
      (1, 1800, 0, 10.0, 10.0), (1, 1800, 5, 11.0, 10.0),
      (1, 1800, 10, 14.0, 10.0),
      (2, 1800, 0, 3.0, 5.0), (2, 1800, 5, 5.0, 5.0), (2, 1800, 10, 6.0, 5.0),
      # Lead 0 only: no pair for it, so lead 0's MAE over its pairs is 1.
      (3, 3600, 0, 90.0, 10.0)]
  cell, slot, lead, predicted, actual = zip(*rows)
  scored = pa.table({features.CELL: cell, features.SLOT_START: slot,
                     features.LEAD_MINUTES: lead,
                     "predicted_pickups": predicted, "actual_pickups": actual})
  steps = nextday.lead_steps(scored)
  assert sorted(steps) == [0, 5]
  # Lead 0: errors 0 and 2 against lead 5's 1 and 0.
  assert steps[0]["over_next_longer"] == pytest.approx(1.0 / 0.5)
  assert steps[0]["difference"] == pytest.approx(0.5)
  # Differences -1 and 2: sd 4.5 ** 0.5, over the root of 2 pairs.
  assert steps[0]["noise"] == pytest.approx(1.5)
  assert steps[0]["pairs"] == 2
  # Lead 5: errors 1 and 0 against lead 10's 4 and 1.
  assert steps[5]["over_next_longer"] == pytest.approx(0.5 / 2.5)
  assert steps[5]["difference"] == pytest.approx(-2.0)
  assert nextday.lead_steps(scored.filter(
      pa.compute.equal(scored.column(features.LEAD_MINUTES), 0))) == {}


def test_sudden_rule_uses_the_models_eval_mae_and_the_margin():
  rules = nextday.Rules(margin=0.25)
  assert nextday.judge(10, 2.49, 2.0, [], rules)[0] is False
  alert, reason = nextday.judge(10, 2.51, 2.0, [], rules)
  assert alert and reason.startswith("sudden: MAE 2.5100 > eval MAE 2.0000")
  alert, reason = nextday.judge(10, 9.0, None, [], rules)
  assert not alert and "sudden rule skipped" in reason


def test_gradual_rule_catches_a_rise_no_single_day_would():
  rules = nextday.Rules(margin=0.25, trend_days=5, trend_slope=0.05)
  rising = [(1, 2.0), (2, 2.12), (3, 2.24), (4, 2.36)]
  # 2.48 is within 25% of the eval MAE 2.0, but MAE rises 0.12 a day, 5.4%
  # of its mean.
  alert, reason = nextday.judge(5, 2.48, 2.0, rising, rules)
  assert alert and reason.startswith("gradual: MAE rises +5.4%/day")
  # The same rise, one point short of the limit's slope, passes.
  slower = [(1, 2.0), (2, 2.1), (3, 2.2), (4, 2.3)]
  assert nextday.judge(5, 2.4, 2.0, slower, rules)[0] is False
  flat = [(1, 2.2), (2, 2.0), (3, 2.3), (4, 2.1)]
  assert nextday.judge(5, 2.2, 2.0, flat, rules)[0] is False
  # Too few results: no trend yet; later days do not count.
  assert nextday.judge(5, 2.48, 2.0, rising[-2:] + [(9, 9.9)],
                       rules)[0] is False


def test_relative_slope_is_per_day_and_scale_free():
  assert nextday.relative_slope([(0, 1.0), (2, 3.0)]) == pytest.approx(0.5)
  assert nextday.relative_slope([(0, 10.0), (2, 30.0)]) == pytest.approx(0.5)
  assert nextday.relative_slope([(0, 1.0)]) is None


def test_rules_reject_nonsense():
  with pytest.raises(TaxiDemandError, match="--trend-days"):
    nextday.Rules(trend_days=1)
  with pytest.raises(TaxiDemandError, match="--margin"):
    nextday.Rules(margin=-1)


def test_next_day_bad_inputs_are_one_line(tmp_path, capsys):
  code = cli.main(["--home", str(tmp_path), "next-day", "--date", "2024-02-30"])
  err = capsys.readouterr().err
  assert code == 1 and len(err.strip().splitlines()) == 1
  assert "no metadata store" in err or "bad date" in err


# --- on the city home: ten synthetic daily runs, a real model ---------------

# Drift starts on the 8th daily run's day.
DRIFT_DAY = "2024-02-09"


@pytest.fixture(scope="module")
def drifted(city, tmp_path_factory):
  """The session's city with area 8 x3 from DRIFT_DAY on, and a gradual
  ramp of area 8 (to x2 over 6 days) from 2024-02-05."""
  root = tmp_path_factory.mktemp("drifted")
  return {
      "sudden": city.simulate(root / "sudden.duckdb",
                              f"area=8:x3@{DRIFT_DAY}"),
      "gradual": city.simulate(root / "gradual.duckdb",
                               "area=8:x2/6d@2024-02-05"),
  }


def _days_with_a_serving_model(home):
  snap = store.load(home.metadata)
  days = [f"2024-02-{d:02d}" for d in range(1, 13)]
  return [d for d in days
          if queries.serving_on(snap, queries.span_of_date(d)) is not None]


def test_a_day_outside_the_warehouse_is_named_as_a_date(city_home, capsys):
  code = cli.main(["--home", str(city_home.root), "next-day", "--date",
                   "2030-01-01", "--no-record"])
  err = capsys.readouterr().err
  assert code == 1
  assert err == ("taxi-demand next-day: the warehouse has no trips on "
                 "2030-01-01 (it covers 2024-01-18 to 2024-02-11); next-day "
                 "validation needs that day's actual demand\n")


@pytest.mark.slow
def test_every_run_pushed_the_model_with_its_real_eval_figures(city,
                                                               city_home):
  """The fixture itself: the sudden rule's threshold is the model's own MAE
  on the pushing run's eval day, measured, not made up."""
  snap = store.load(city_home.home.metadata)
  pushes = queries.pushes(snap)
  assert [p.version for p in pushes] == city_home.versions
  for push in pushes:
    blessing = queries.blessing_of_model(snap, push.model.id)
    assert blessing.properties["model_mae"] == pytest.approx(
        city.figures[push.span]["mae"])
  # Every day after the first run's has a serving model.
  assert _days_with_a_serving_model(city_home.home) == [
      f"2024-02-{d:02d}" for d in range(3, 13)]


@pytest.mark.slow
def test_next_day_cli_scores_the_serving_model_and_records_it(
    city, city_copy, capsys):
  home = city_copy
  day = "2024-02-11"
  code = cli.main(["--home", str(home.root), "next-day", "--date", day,
                   "--json"])
  result = json.loads(capsys.readouterr().out)
  assert set(result) >= {"date", "model_version", "mae", "rmse",
                         "seasonal_naive_mae", "alert", "reason"}
  assert code == (3 if result["alert"] else 0) and result["date"] == day
  snap = store.load(home.metadata)
  span = queries.span_of_date(day)
  assert result["model_version"] == queries.serving_on(snap, span).version
  push = queries.push_of(snap, result["model_version"])
  assert push.span == span - 1
  # Scored on the day's actual demand: the same model on the same day.
  assert result["mae"] == pytest.approx(city.figures[span]["mae"], rel=1e-6)
  assert result["eval_mae"] == pytest.approx(
      city.figures[span - 1]["mae"], rel=1e-6)
  # Recorded: a result artifact whose execution read the model and D's
  # examples; `lineage` shows it as that version's history.
  # The daily pipeline's NextDayValidator records results too (one per day
  # the version served); the newest result for day D is this command's.
  found = next(r for r in queries.next_day_results(
      snap, result["model_version"]) if int(r["span"]) == span)
  assert found["mae"] == pytest.approx(result["mae"])
  assert found["source"] == "cli"
  execution = snap.producer(found["artifact_id"])
  assert execution.node_id == contract.NEXT_DAY
  inputs = snap.inputs(execution.execution_id)
  assert inputs["model"][0].id == push.model.id
  assert inputs["examples"][0].span == span
  tree = queries.lineage_of_version(snap, result["model_version"])
  assert day in [r["date"] for r in tree["next_day"]]


# Alert limits for this fixture, where one model (trained on the week before
# 2024-02-02) serves every day, judged against its MAE on the day before.
# Measured on the clean city: next-day MAE at most 1.2x the eval MAE, while
# area 8 at x3 reaches 4.2x on its first day; the trend rule's 5-day slope
# at most +12.2%/day (the window ending on 02-09, an event-heavy day that
# no model foresees), while the ramp below reaches +22%/day. The limits sit
# between the two; the default 25% margin and 5%/day would flag the clean
# city's day-to-day noise on a model this small.
FIXTURE_RULES = nextday.Rules(margin=0.6, trend_days=5, trend_slope=0.16)


@pytest.mark.slow
def test_sudden_drift_alerts_on_its_first_days_and_not_before(
    city_home, drifted):
  home = city_home.home
  results = {d: nextday.validate(home, d, rules=FIXTURE_RULES,
                                 warehouse_path=drifted["sudden"],
                                 record=False)
             for d in _days_with_a_serving_model(home)
             if d <= "2024-02-11"}  # the city ends there
  clean = [d for d in results if d < DRIFT_DAY]
  assert len(clean) >= 3, results
  assert not any(results[d]["alert"] for d in clean), {
      d: results[d]["reason"] for d in clean}
  first_days = [d for d in results if d >= DRIFT_DAY][:2]
  assert any(results[d]["alert"] and results[d]["reason"].startswith("sudden")
             for d in first_days), {d: results[d] for d in first_days}


def _stale_model_results(home, warehouse, rules):
  """The trend rule over a model nobody replaced, scored day after day.

  The silent-staleness case: every later candidate failed its gates, so the
  first pushed model keeps serving while the city drifts under it.
  """
  from taxi_demand.modeling import saved_model  # noqa: PLC0415
  snap = store.load(home.metadata)
  first = queries.pushes(snap)[0]
  # Loaded once: it is one model, day after day.
  predictor = saved_model.load_for_serving(
      nextday.model_dir_of(home.models, first))
  history, results = [], {}
  for day in (f"2024-02-{d:02d}" for d in range(4, 12)):
    span = queries.span_of_date(day)
    columns = nextday.day_columns(
        warehouse, contract.RunParameters().query_config(), span)
    mae = nextday.score(columns[features.LABEL],
                        predictor(columns)[saved_model.PREDICTION_KEY],
                        columns[features.SEASONAL_NAIVE])["mae"]
    results[day] = nextday.judge(span, mae, None, history, rules)
    history.append((span, mae))
  return results


@pytest.mark.slow
def test_gradual_drift_is_caught_by_the_trend_rule(city, city_home, drifted):
  # Area 8 ramps to x2 over six days from 2024-02-05. The sudden rule is off
  # (no eval MAE given), so any alert here is the trend rule's. The first
  # push's version folder was pruned from the registry: the model is found
  # through the Pusher's archive, as for any old version.
  rules = FIXTURE_RULES
  home = city_home.home
  ramp = _stale_model_results(home, drifted["gradual"], rules)
  assert any(alert for alert, _ in ramp.values()), ramp
  assert all(reason.startswith("gradual:")
             for alert, reason in ramp.values() if alert)
  clean = _stale_model_results(home, city.warehouse, rules)
  assert not any(alert for alert, _ in clean.values()), clean


@pytest.mark.slow
def test_the_pipeline_node_check_agrees_with_the_cli(city_copy,
                                                     serving_log_tools):
  """Both score the model serving on D and, by lead, the forecasts actually
  served for D (here: D's morning served as the live job serves it, each
  tick as of its time)."""
  from pipeline.components import next_day  # noqa: PLC0415
  from taxi_demand.serving import replay  # noqa: PLC0415
  home = city_copy
  day = "2024-02-11"
  replayed = serving_log_tools.serve_as_live(
      home, day, between=replay.parse_between("07:00-09:00"))
  cli_result = nextday.validate(home, day, record=False)
  subject = nextday.find_subject(home, queries.span_of_date(day))
  examples = queries.examples_of_span(store.load(home.metadata), subject.span)
  node = next_day.check(examples.uri, subject.model_dir, subject.span,
                        subject.eval_mae, nextday.DEFAULT_MARGIN,
                        serving_log_dir=str(home.serving_log))
  # ExampleGen's eval split of day D is the demand query of day D.
  assert node["examples"] == cli_result["examples"] == 77 * 48
  assert node["mae"] == pytest.approx(cli_result["mae"], rel=1e-5)
  assert node["seasonal_naive_mae"] == pytest.approx(
      cli_result["seasonal_naive_mae"], rel=1e-6)
  assert node["alert"] == cli_result["alert"]
  # Served forecasts: 4 slots x 77 cells at each of the 12 leads, scored as
  # the replay scored them.
  served = cli_result["served_by_lead"]
  assert served == node["served_by_lead"]
  assert list(served) == [str(lead) for lead in range(0, 60, 5)]
  assert all(row["forecasts"] == 4 * 77 for row in served.values())
  assert {k: v["mae"] for k, v in served.items()} == {
      str(k): v["mae"] for k, v in replayed.by_lead.items()}
  assert cli_result["served_versions"] == replayed.model_version
  # Without a warehouse (Vertex) the node says so and still scores the day.
  vertex = next_day.check(examples.uri, subject.model_dir, subject.span,
                          subject.eval_mae, nextday.DEFAULT_MARGIN)
  assert vertex["served_by_lead"] is None and "no served log" in \
      vertex["served_note"]


@pytest.mark.e2e
def test_the_next_day_node_runs_in_a_pipeline_and_records_a_result(
    city_home, tmp_path):
  """NextDayValidator on imported artifacts, run by LocalDagRunner."""
  from tfx import v1 as tfx  # noqa: PLC0415
  from pipeline.components.next_day import NextDayValidator  # noqa: PLC0415
  home = city_home.home
  day = "2024-02-11"
  subject = nextday.find_subject(home, queries.span_of_date(day))
  snap = store.load(home.metadata)
  examples = queries.examples_of_span(snap, subject.span)
  push = queries.push_of(snap, subject.version)
  import_examples = tfx.dsl.Importer(
      source_uri=examples.uri,
      artifact_type=tfx.types.standard_artifacts.Examples,
      properties={"span": subject.span,
                  "split_names": '["train", "eval"]'}).with_id("examples")
  import_model = tfx.dsl.Importer(
      source_uri=push.model.uri,
      artifact_type=tfx.types.standard_artifacts.Model).with_id("model")
  node = NextDayValidator(
      examples=import_examples.outputs["result"],
      model=import_model.outputs["result"]).with_id("NextDayValidator")
  metadata = tmp_path / "node.sqlite"
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name="next_day_test", pipeline_root=str(tmp_path / "root"),
      components=[import_examples, import_model, node],
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(
              str(metadata)))))
  [result] = store.load(metadata).artifacts_of(contract.NEXT_DAY_RESULT)
  props = result.properties
  assert props["span"] == subject.span and props["date"] == day
  assert props["source"] == "pipeline" and props["alert"] == 0
  assert props["reason"].startswith("ok: no eval MAE")
  expected = nextday.validate(home, day, record=False)
  assert props["mae"] == pytest.approx(expected["mae"], rel=1e-5)


@pytest.mark.slow
def test_a_day_without_trips_is_not_scored_nor_recorded(city_copy, capsys):
  """A day inside the warehouse's range whose trips never arrived: its
  demand is unknown, not zero. Scored as zeros it read "ok: MAE 0.5..."
  and went into ML Metadata, and from there into the trend rule."""
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  home = city_copy
  day = "2024-02-08"
  with Warehouse(home.warehouse) as wh:
    wh.con.execute(
        "DELETE FROM trips WHERE trip_start_timestamp >= TIMESTAMP "
        f"'{day}' AND trip_start_timestamp < TIMESTAMP '2024-02-09'")
  before = len(store.load(home.metadata).artifacts_of(
      contract.NEXT_DAY_RESULT))
  code = cli.main(["--home", str(home.root), "next-day", "--date", day])
  captured = capsys.readouterr()
  assert code == 1 and captured.out == ""
  assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
  assert f"no trips on {day}" in captured.err
  assert len(store.load(home.metadata).artifacts_of(
      contract.NEXT_DAY_RESULT)) == before
  assert not (home.pipeline_root / "NextDayValidation").exists()
