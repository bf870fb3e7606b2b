"""ForecastGate's executor on hand-built inputs: the eval day's examples,
TFMA's metrics as the Evaluator writes them, the Evaluator's blessing and
GuidanceGate's result, each read into the one blessing Pusher trusts.

The decision rules on plain dicts are tested in test_forecast_gate.py;
here each input artifact must reach them.
"""

import json
from pathlib import Path

import pytest

import executor_artifacts as art
from taxi_demand import features
from taxi_demand.lineage import contract

SPAN = 19763
MODEL_ID = 41
# Two cells, 100 slots each: 3 pickups a slot in cell 1, 1 in cell 2; the
# seasonal-naive forecast (last week's count) is one off in every slot.
ROWS = ([{features.CELL: 1, features.LABEL: 3, features.SEASONAL_NAIVE: 4}]
        * 100 +
        [{features.CELL: 2, features.LABEL: 1, features.SEASONAL_NAIVE: 0}]
        * 100)
PICKUPS = 400
NAIVE_MAE = 1.0
# TFMA's figures for the candidate: half the naive error on the day and in
# each cell, a bias of +0.25.
METRICS = {("", "candidate", "mean_absolute_error"): 0.5,
           ("", "candidate", "root_mean_squared_error"): 0.6,
           ("", "candidate", "mean_prediction"): 2.25,
           ("", "candidate", "mean_label"): 2.0,
           ("", "baseline", "mean_absolute_error"): 0.55,
           ("cell=1", "candidate", "mean_absolute_error"): 0.5,
           ("cell=2", "candidate", "mean_absolute_error"): 0.5}
# Judged with floors this day clears: both cells are busy.
FLOORS = {"min_eval_pickups": 300, "min_cell_pickups": 50}


def _evaluation(uri: Path, metrics):
  """A ModelEvaluation holding `metrics` as TFMA writes them: one
  MetricsForSlice record per slice, in `metrics-*` TFRecords."""
  import tensorflow as tf  # noqa: PLC0415
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  made = art.artifact(standard_artifacts.ModelEvaluation, uri)
  by_slice = {}
  for (slice_name, model, name), value in metrics.items():
    record = by_slice.setdefault(slice_name,
                                 metrics_for_slice_pb2.MetricsForSlice())
    if slice_name and not record.slice_key.single_slice_keys:
      column, cell = slice_name.split("=")
      record.slice_key.single_slice_keys.add(column=column,
                                             int64_value=int(cell))
    entry = record.metric_keys_and_values.add()
    entry.key.name, entry.key.model_name = name, model
    entry.value.double_value.value = value
  with tf.io.TFRecordWriter(
      str(uri / "metrics-00000-of-00001.tfrecord")) as out:
    for record in by_slice.values():
      out.write(record.SerializeToString())
  return made


def _guidance(uri: Path, measured: bool, passed: bool, reason: str):
  from pipeline.components.guidance_gate import GuidanceResult  # noqa: PLC0415
  made = art.artifact(GuidanceResult, uri)
  made.set_int_custom_property("measured", int(measured))
  made.set_int_custom_property("passed", int(passed))
  made.set_string_custom_property("reason", reason)
  return made


def gate(tmp_path: Path, metrics=None, evaluator_blessed=True, guidance=None,
         **exec_properties):
  """ForecastGate's executor; returns its blessing and its JSON report."""
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import forecast_gate  # noqa: PLC0415
  evaluator_blessing = art.artifact(standard_artifacts.ModelBlessing,
                                    tmp_path / "evaluator_blessing")
  evaluator_blessing.set_int_custom_property("blessed",
                                             int(evaluator_blessed))
  inputs = {
      contract.MODEL: [art.artifact(standard_artifacts.Model,
                                    tmp_path / "model", artifact_id=MODEL_ID)],
      contract.EXAMPLES: [art.examples(tmp_path / "examples", ROWS, SPAN)],
      contract.EVALUATION: [_evaluation(tmp_path / "evaluation",
                                        metrics or METRICS)],
      contract.EVALUATOR_BLESSING: [evaluator_blessing],
  }
  if guidance is not None:
    inputs[contract.GUIDANCE] = [_guidance(tmp_path / "guidance", *guidance)]
  blessing = art.artifact(standard_artifacts.ModelBlessing,
                          tmp_path / "blessing")
  art.run(forecast_gate.ForecastGate, inputs, {contract.BLESSING: [blessing]},
          **{**FLOORS, **exec_properties})
  report = json.loads((tmp_path / "blessing" / forecast_gate.REPORT_FILE)
                      .read_text())
  return blessing, report


def _marker(blessing) -> str:
  (name,) = {"BLESSED", "NOT_BLESSED"} & {
      p.name for p in Path(blessing.uri).iterdir()}
  return name


def test_every_input_reaches_the_blessing_it_writes(tmp_path):
  blessing, report = gate(tmp_path, guidance=(True, True, ""))
  assert blessing.get_int_custom_property("blessed") == 1
  assert _marker(blessing) == "BLESSED"
  assert blessing.get_int_custom_property("forecast_gate") == 1
  # The model judged and the day it was judged on.
  assert blessing.get_int_custom_property(
      "current_model_id") == MODEL_ID
  assert blessing.get_int_custom_property(contract.SPAN) == SPAN
  # TFMA's figures beside the naive forecast's, scored on the examples.
  recorded = {k: blessing.get_float_custom_property(k) for k in (
      "model_mae", "model_rmse", "model_bias", "seasonal_naive_mae")}
  assert recorded == pytest.approx({"model_mae": 0.5, "model_rmse": 0.6,
                                    "model_bias": 0.25,
                                    "seasonal_naive_mae": NAIVE_MAE})
  assert report["eval_pickups"] == PICKUPS and report["examples"] == 200
  assert report["baseline_model_mae"] == pytest.approx(0.55)
  assert blessing.get_string_custom_property("reasons") == ""
  assert blessing.get_string_custom_property("unmeasured") == ""


def test_the_evaluators_refusal_is_read_from_its_blessing(tmp_path):
  blessing, report = gate(tmp_path, evaluator_blessed=False)
  assert blessing.get_int_custom_property("blessed") == 0
  assert _marker(blessing) == "NOT_BLESSED"
  assert report["reasons"] == [
      "the Evaluator did not bless the model (its one threshold: the eval "
      "day holds at least one example)"]


# The baseline by cell: 0.2 better than the candidate in both cells (100
# examples each), so D = 0.2 with no spread at all: worse beyond any noise.
WORSE_IN_EVERY_CELL = {**METRICS,
                       ("", "baseline", "mean_absolute_error"): 0.3,
                       ("cell=1", "baseline", "mean_absolute_error"): 0.3,
                       ("cell=2", "baseline", "mean_absolute_error"): 0.3}
# Worse by 0.4 in cell 1, better by 0.3 in cell 2: D = 0.05, SE =
# sqrt(2 x 2 x 35^2)/200 = 0.35; within the noise.
WORSE_WITHIN_NOISE = {**METRICS,
                      ("", "baseline", "mean_absolute_error"): 0.45,
                      ("cell=1", "baseline", "mean_absolute_error"): 0.1,
                      ("cell=2", "baseline", "mean_absolute_error"): 0.8}


def test_worse_than_the_serving_model_is_judged_on_tfmas_cell_slices(
    tmp_path):
  blessing, report = gate(tmp_path / "worse", metrics=WORSE_IN_EVERY_CELL)
  assert blessing.get_int_custom_property("blessed") == 0
  assert report["reasons"] == [
      "worse than the serving model: MAE 0.5000 vs 0.3000 (+0.2000, beyond "
      "the day's noise 2 x 0.0000)"]
  # D, its noise, the z and the verdict are on the blessing, for `runs`,
  # `show` and `diff` to read without TensorFlow.
  assert blessing.get_float_custom_property("change_mae") == (
      pytest.approx(0.2))
  assert blessing.get_float_custom_property("change_noise") == (
      pytest.approx(0.0))
  assert blessing.get_float_custom_property("change_z") == 2.0
  assert blessing.get_int_custom_property("change_worse") == 1
  blessing, report = gate(tmp_path / "noise", metrics=WORSE_WITHIN_NOISE,
                          change_z=2.0, change_tolerance=0.0)
  assert blessing.get_int_custom_property("blessed") == 1, report["reasons"]
  assert blessing.get_float_custom_property("change_mae") == (
      pytest.approx(0.05))
  assert blessing.get_float_custom_property("change_noise") == (
      pytest.approx(0.35))
  assert blessing.get_int_custom_property("change_worse") == 0


def test_a_busy_cell_is_judged_on_its_own_tfma_slice(tmp_path):
  worse_in_cell_2 = {**METRICS, ("cell=2", "candidate",
                                 "mean_absolute_error"): 1.5}
  blessing, report = gate(tmp_path, metrics=worse_in_cell_2)
  assert blessing.get_int_custom_property("blessed") == 0
  (reason,) = report["reasons"]
  assert reason.startswith("cell 2: MAE 1.5000 is more than 25% above its "
                           "seasonal-naive MAE 1.0000")


def test_the_eval_days_pickups_are_counted_from_the_examples(tmp_path):
  blessing, report = gate(tmp_path, min_eval_pickups=PICKUPS + 1)
  assert blessing.get_int_custom_property("blessed") == 0
  assert report["reasons"] == [
      f"too little evidence: {PICKUPS} pickups on the eval day, below the "
      f"floor of {PICKUPS + 1} (--min-eval-pickups)"]


def test_guidance_that_got_worse_refuses_the_model(tmp_path):
  blessing, _ = gate(tmp_path, guidance=(True, False, "guidance: worse"))
  assert blessing.get_int_custom_property("blessed") == 0
  assert blessing.get_string_custom_property(
      "reasons") == "guidance: worse"


def test_guidance_not_measured_is_named_and_refuses_nothing(tmp_path):
  blessing, _ = gate(tmp_path, guidance=(False, True, "not measured: few"))
  assert blessing.get_int_custom_property("blessed") == 1
  assert blessing.get_string_custom_property(
      "unmeasured") == contract.GUIDANCE
  assert blessing.get_string_custom_property("reasons") == (
      "guidance not measured: few; decided on the forecast alone")
