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


def metrics(overall_mae, cell_mae=None, baseline_mae=None,
            baseline_cell_mae=None):
  m = {("", fg.CANDIDATE, fg.MAE): overall_mae,
       ("", fg.CANDIDATE, fg.RMSE): overall_mae * 1.2,
       ("", fg.CANDIDATE, fg.MEAN_PREDICTION): 63.0,
       ("", fg.CANDIDATE, fg.MEAN_LABEL): 62.5}
  for cell, mae in (cell_mae or {}).items():
    m[(f"cell={cell}", fg.CANDIDATE, fg.MAE)] = mae
  if baseline_mae is not None:
    m[("", fg.BASELINE, fg.MAE)] = baseline_mae
  for cell, mae in (baseline_cell_mae or {}).items():
    m[(f"cell={cell}", fg.BASELINE, fg.MAE)] = mae
  return m


def decide(m, blessed=True, min_cell_pickups=100, min_eval_pickups=100,
           **change):
  return fg.decide(m, CELLS, LABELS, NAIVE, evaluator_blessed=blessed,
                   naive_margin=0.10, cell_margin=0.25,
                   min_cell_pickups=min_cell_pickups,
                   min_eval_pickups=min_eval_pickups, **change)


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
  assert r["reasons"] == [
      "the Evaluator did not bless the model (its one threshold: the eval "
      "day holds at least one example)"]


# --- against the serving model, beyond the day's noise ------------------------


def test_the_noise_is_the_spread_of_the_paired_differences_over_cells():
  """By hand, 3 cells of 10, 20 and 30 examples, d = +0.2, -0.1, +0.1:
  n d = 2, -2, 3, so D = 3/60 = 0.05; n D = 0.5, 1, 1.5, residuals
  1.5, -3, 1.5, whose squares sum to 13.5; SE = sqrt(3/2 x 13.5)/60 =
  4.5/60 = 0.075."""
  m = {("cell=1", fg.CANDIDATE, fg.MAE): 1.0,
       ("cell=1", fg.BASELINE, fg.MAE): 0.8,
       ("cell=2", fg.CANDIDATE, fg.MAE): 2.0,
       ("cell=2", fg.BASELINE, fg.MAE): 2.1,
       ("cell=3", fg.CANDIDATE, fg.MAE): 3.0,
       ("cell=3", fg.BASELINE, fg.MAE): 2.9}
  change = fg.paired_change(m, {1: 10, 2: 20, 3: 30})
  assert change.mae == pytest.approx(0.05)
  assert change.noise == pytest.approx(0.075)
  assert change.cells == 3
  # The whole day's MAEs, weighted by examples.
  assert change.model_mae == pytest.approx(140 / 60)
  assert change.baseline_mae == pytest.approx(137 / 60)
  assert not change.worse(tolerance=0.0, z=2.0)       # 0.05 <= 0.15
  assert change.worse(tolerance=0.0, z=0.5)           # 0.05 > 0.0375


# Two cells of two examples (CELLS). Worse by +0.4 in cell 1 and better by
# 0.2 in cell 2: D = 0.1, SE = sqrt(2 x 2 x 0.6^2)/4 = 0.3.
WITHIN_NOISE = metrics(1.0, {1: 1.2, 2: 0.8}, baseline_mae=0.9,
                       baseline_cell_mae={1: 0.8, 2: 1.0})
# Worse by 0.25 and 0.15: D = 0.2, SE = sqrt(2 x 2 x 0.1^2)/4 = 0.05.
BEYOND_NOISE = metrics(1.1, {1: 1.25, 2: 0.95}, baseline_mae=0.9,
                       baseline_cell_mae={1: 1.0, 2: 0.8})


def test_worse_than_the_serving_model_within_the_days_noise_is_blessed():
  r = decide(WITHIN_NOISE)
  assert r["blessed"], r["reasons"]
  assert (r["change_mae"], r["change_noise"], r["change_z"]) == (
      pytest.approx(0.1), pytest.approx(0.3), 2.0)
  assert r["change_worse"] is False


def test_worse_than_the_serving_model_beyond_the_days_noise_is_refused():
  r = decide(BEYOND_NOISE)
  assert not r["blessed"]
  assert r["reasons"] == [
      "worse than the serving model: MAE 1.1000 vs 0.9000 (+0.2000, beyond "
      "the day's noise 2 x 0.0500)"]
  assert r["change_worse"] is True
  # The tolerance is an extra absolute allowance on top of the noise.
  assert decide(BEYOND_NOISE, change_tolerance=0.15)["blessed"]
  tolerant = decide(BEYOND_NOISE, change_tolerance=0.05)
  assert tolerant["reasons"] == [
      "worse than the serving model: MAE 1.1000 vs 0.9000 (+0.2000, beyond "
      "the day's noise 2 x 0.0500 + tolerance 0.05)"]
  # A stricter z refuses what the default passes, and a looser one passes.
  assert not decide(WITHIN_NOISE, change_z=0.2)["blessed"]
  assert decide(BEYOND_NOISE, change_z=5.0)["blessed"]


def test_the_first_run_has_no_serving_model_to_be_judged_against():
  r = decide(metrics(1.0, {1: 1.0, 2: 1.0}))
  assert r["blessed"], r["reasons"]
  assert (r["change_mae"], r["change_noise"], r["change_z"],
          r["change_worse"]) == (None, None, None, None)


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
