"""ForecastGate's decision: beat seasonal naive overall and in every busy cell,
on a day with enough pickups to judge."""

import pytest

from pipeline.components import forecast_gate as fg
from taxi_demand.lineage.records import GuidanceRecord

# Two cells, two slots each. Seasonal naive is off by 2 everywhere.
CELLS = [1, 1, 2, 2]
LABELS = [10.0, 20.0, 100.0, 120.0]
NAIVE = [12.0, 18.0, 102.0, 118.0]
DAY_PICKUPS = 250
# A floor the day above falls short of.
FLOOR_ABOVE_THE_DAY = 1000


def metrics(overall_mae, cell_mae=None, baseline_mae=None):
  m = {("", fg.CANDIDATE, fg.MAE): overall_mae,
       ("", fg.CANDIDATE, fg.RMSE): overall_mae * 1.2,
       ("", fg.CANDIDATE, fg.MEAN_PREDICTION): 63.0,
       ("", fg.CANDIDATE, fg.MEAN_LABEL): 62.5}
  for cell, mae in (cell_mae or {}).items():
    m[(f"cell={cell}", fg.CANDIDATE, fg.MAE)] = mae
  if baseline_mae is not None:
    m[("", fg.BASELINE, fg.MAE)] = baseline_mae
  return m


def decide(m, blessed=True, min_cell_pickups=100, min_eval_pickups=100):
  return fg.decide(m, CELLS, LABELS, NAIVE, evaluator_blessed=blessed,
                   naive_margin=0.10, cell_margin=0.25,
                   min_cell_pickups=min_cell_pickups,
                   min_eval_pickups=min_eval_pickups)


def test_a_model_well_ahead_of_naive_is_blessed_with_figures_side_by_side():
  r = decide(metrics(1.0, {1: 1.0, 2: 1.0}, baseline_mae=1.1))
  assert r["blessed"], r["reasons"]
  assert r["seasonal_naive_mae"] == pytest.approx(2.0)
  assert r["seasonal_naive_rmse"] == pytest.approx(2.0)
  assert r["model_bias"] == pytest.approx(0.5)
  assert r["baseline_model_mae"] == pytest.approx(1.1)


def test_not_ten_percent_better_than_naive_is_refused():
  r = decide(metrics(1.85, {1: 1.0, 2: 1.0}))
  assert not r["blessed"]
  assert "seasonal-naive" in r["reasons"][0]


def test_a_busy_cell_much_worse_than_its_naive_is_refused():
  r = decide(metrics(1.0, {1: 1.0, 2: 2.6}))  # 2.6 > 1.25 * 2.0
  assert not r["blessed"]
  assert r["reasons"] == [
      "cell 2: MAE 2.6000 is more than 25% above its seasonal-naive MAE "
      "2.0000"]


def test_a_quiet_cell_is_not_judged_alone():
  r = decide(metrics(1.0, {1: 9.0, 2: 1.0}))  # cell 1 has 30 pickups < 100
  assert r["blessed"], r["reasons"]
  assert r["cells"]["1"]["busy"] is False


def test_the_evaluators_refusal_stands():
  r = decide(metrics(1.0, {1: 1.0, 2: 1.0}), blessed=False)
  assert not r["blessed"]
  assert "Evaluator did not bless" in r["reasons"][0]


def test_an_empty_eval_day_blesses_nothing():
  r = fg.decide(metrics(1.0), [], [], [], evaluator_blessed=True,
                naive_margin=0.10, cell_margin=0.25, min_cell_pickups=100,
                min_eval_pickups=100)
  assert not r["blessed"]
  assert "the eval day has no examples" in r["reasons"]
  # One reason for one fact: an empty day is not also "too little evidence".
  assert not any("too little evidence" in why for why in r["reasons"])


def test_a_missing_naive_forecast_counts_as_the_other_scorers_count_it():
  """A seasonal-naive forecast that could not be made (NaN) is scored as
  next-day and replay score it, as 0 pickups, instead of failing the gate."""
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  naive = [12.0, float("nan"), 102.0, 118.0]
  r = fg.decide(metrics(1.0, {1: 1.0, 2: 1.0}), CELLS, LABELS, naive,
                evaluator_blessed=True, naive_margin=0.10, cell_margin=0.25,
                min_cell_pickups=100, min_eval_pickups=100)
  assert r["seasonal_naive_mae"] == pytest.approx((2 + 20 + 2 + 2) / 4)
  assert r["seasonal_naive_mae"] == baselines.errors(LABELS, naive)[0]
  assert r["cells"]["1"]["seasonal_naive_mae"] == pytest.approx(11.0)
  assert r["blessed"]


# --- the evidence floor -------------------------------------------------------


@pytest.mark.parametrize("baseline_mae", [1.1, None],
                         ids=["with a baseline", "first run"])
def test_a_day_below_the_evidence_floor_blesses_nothing(baseline_mae):
  """Even a model far ahead of naive, and the first run's, which has no
  baseline model for the Evaluator to hold it to."""
  r = decide(metrics(1.0, {1: 1.0, 2: 1.0}, baseline_mae=baseline_mae),
             min_eval_pickups=FLOOR_ABOVE_THE_DAY)
  assert not r["blessed"]
  assert r["reasons"] == [
      "too little evidence: 250 pickups on the eval day, below the floor of "
      "1000 (--min-eval-pickups)"]
  # The figures are recorded all the same, beside the refusal.
  assert r["model_mae"] == pytest.approx(1.0)
  assert r["seasonal_naive_mae"] == pytest.approx(2.0)
  assert (r["eval_pickups"], r["min_eval_pickups"]) == (DAY_PICKUPS, 1000)


def test_a_day_at_the_floor_is_judged_as_before():
  good = decide(metrics(1.0, {1: 1.0, 2: 1.0}), min_eval_pickups=DAY_PICKUPS)
  assert good["blessed"], good["reasons"]
  bad = decide(metrics(1.85, {1: 1.0, 2: 1.0}), min_eval_pickups=DAY_PICKUPS)
  assert not bad["blessed"]
  assert len(bad["reasons"]) == 1 and "seasonal-naive" in bad["reasons"][0]


def test_a_lower_floor_lets_the_same_sparse_day_be_judged():
  """The measured case: 11 trips on the day, MAE 0.003 against seasonal
  naive's 0.004, blessed and pushed before the floor existed. A thousand
  examples, 11 pickups: the floor counts pickups, not examples."""
  cells = [1 + i % 77 for i in range(1000)]
  labels = [1.0] * 11 + [0.0] * 989
  naive = [1.0] * 7 + [0.0] * 993  # 4 pickups missed: MAE 0.004

  def sparse_day(floor):
    return fg.decide(metrics(0.003), cells, labels, naive,
                     evaluator_blessed=True, naive_margin=0.10,
                     cell_margin=0.25, min_cell_pickups=200,
                     min_eval_pickups=floor)

  refused = sparse_day(floor=1000)
  assert not refused["blessed"]
  assert refused["reasons"] == [
      "too little evidence: 11 pickups on the eval day, below the floor of "
      "1000 (--min-eval-pickups)"]
  judged = sparse_day(floor=11)
  assert judged["blessed"], judged["reasons"]
  assert judged["seasonal_naive_mae"] == pytest.approx(0.004)
  assert judged["model_mae"] == refused["model_mae"] == pytest.approx(0.003)


def test_worse_guidance_refuses_an_otherwise_good_model():
  from pipeline.components import guidance_gate  # noqa: PLC0415
  passed, reason = guidance_gate.judge(2.0, 2.5, margin=0.02)
  assert not passed and reason.startswith("guidance:") and "2.450" in reason
  assert guidance_gate.judge(2.46, 2.5, margin=0.02) == (True, "")
  assert guidance_gate.judge(1.0, None, margin=0.02)[0]  # nothing serving
  good = metrics(1.0, {1: 1.0, 2: 1.0})
  r = fg.decide(good, CELLS, LABELS, NAIVE, evaluator_blessed=True,
                naive_margin=0.1, cell_margin=0.25, min_cell_pickups=100,
                min_eval_pickups=100,
                guidance=GuidanceRecord(passed=False, reason=reason))
  assert not r["blessed"] and r["reasons"] == [reason]
  assert decide(good)["blessed"]


def test_guidance_that_could_not_measure_leaves_the_forecast_to_decide():
  """A day without dropoffs: GuidanceGate records measured=0 and why; the
  blessing is decided on the forecast alone and says so, never refused for
  what was not measured."""
  unmeasured = GuidanceRecord(
      measured=False, passed=True,
      reason="not measured: none of the 812 trips on 2015-04-05 carries a "
      "dropoff area")

  def with_guidance(m):
    return fg.decide(m, CELLS, LABELS, NAIVE, evaluator_blessed=True,
                     naive_margin=0.1, cell_margin=0.25, min_cell_pickups=100,
                     min_eval_pickups=100, guidance=unmeasured)
  good = with_guidance(metrics(1.0, {1: 1.0, 2: 1.0}))
  assert good["blessed"] and good["reasons"] == []
  assert good["unmeasured"] == ["guidance"]
  assert good["notes"] == [
      "guidance not measured: none of the 812 trips on 2015-04-05 carries a "
      "dropoff area; decided on the forecast alone"]
  # The forecast's own checks still refuse.
  bad = with_guidance(metrics(1.9, {1: 1.0, 2: 1.0}))
  assert not bad["blessed"] and "seasonal-naive" in bad["reasons"][0]
  assert bad["unmeasured"] == ["guidance"]
