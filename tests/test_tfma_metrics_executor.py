"""TFX's Evaluator executor with the pipeline's TFMA config (`eval_config`):
both models scored, overall and by cell, under the names ForecastGate reads,
which judges the candidate against the serving model beyond the day's noise.

The models are made here, not trained: each forecasts a day's pickups as
the true count plus a fixed error per cell (it reads the label, which only
a test model may do), so every MAE below is known exactly.
"""

import json
from pathlib import Path

import pytest

import executor_artifacts as art
from taxi_demand import features

SPAN = 19763
CELLS = (1, 2, 3)
# 60 examples, 20 per cell, 0..4 pickups each.
ROWS = [{features.CELL: CELLS[i % 3], features.LABEL: i % 5}
        for i in range(60)]


def _model(uri: Path, error_by_cell, artifact_id: int):
  """A Model artifact whose Format-Serving SavedModel forecasts the label
  plus `error_by_cell[cell]`, behind the signature the Trainer exports."""
  import tensorflow as tf  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415

  class Erring(tf.Module):
    """pickups + a fixed error for the example's cell."""

    def __init__(self):
      super().__init__()
      errors = [0.0] * (max(CELLS) + 1)
      for cell, error in error_by_cell.items():
        errors[cell] = error
      self.errors = tf.constant(errors, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="examples")])
    def serve(self, examples):
      parsed = tf.io.parse_example(examples, {
          c: tf.io.FixedLenFeature([], tf.int64)
          for c in (features.CELL, features.LABEL)})
      return {"predicted_pickups":
              tf.cast(parsed[features.LABEL], tf.float32) +
              tf.gather(self.errors, parsed[features.CELL])}

  module = Erring()
  tf.saved_model.save(module, str(uri / "Format-Serving"),
                      signatures={"serving_default": module.serve})
  return art.artifact(standard_artifacts.Model, uri, artifact_id=artifact_id)


def evaluate(tmp_path: Path, candidate_errors, baseline_errors,
             eval_config=None):
  """The Evaluator executor on ROWS with `eval_config` (the pipeline's by
  default); returns (blessed, ForecastGate's read of the metrics)."""
  from tfx.components.evaluator import executor  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from tfx.types import standard_component_specs as keys  # noqa: PLC0415
  from tfx.utils import proto_utils  # noqa: PLC0415
  from pipeline import pipeline  # noqa: PLC0415
  from pipeline.components import forecast_gate  # noqa: PLC0415
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  config = PipelineConfig(pipeline_name="t", pipeline_root=str(tmp_path),
                          span=SPAN)
  eval_config = eval_config or pipeline.eval_config(config)
  evaluation = art.artifact(standard_artifacts.ModelEvaluation,
                            tmp_path / "evaluation")
  blessing = art.artifact(standard_artifacts.ModelBlessing,
                          tmp_path / "blessing")
  executor.Executor().Do(
      {keys.EXAMPLES_KEY: [art.examples(tmp_path / "examples", ROWS, SPAN)],
       keys.MODEL_KEY: [_model(tmp_path / "candidate", candidate_errors, 2)],
       keys.BASELINE_MODEL_KEY: [
           _model(tmp_path / "baseline", baseline_errors, 1)]},
      {keys.EVALUATION_KEY: [evaluation], keys.BLESSING_KEY: [blessing]},
      {keys.EVAL_CONFIG_KEY: proto_utils.proto_to_json(
          pipeline.eval_config(config)),
       keys.EXAMPLE_SPLITS_KEY: json.dumps([art.DAY])})
  return (blessing.get_int_custom_property("blessed"),
          forecast_gate.tfma_metrics(evaluation.uri))


def _examples_by_cell():
  return {c: sum(1 for r in ROWS if r[features.CELL] == c) for c in CELLS}


def test_a_candidate_worse_beyond_the_days_noise_is_refused(tmp_path):
  """Worse by 0.3 in every cell: no noise explains that. The Evaluator
  blesses (its one threshold: the day is not empty); ForecastGate refuses
  on TFMA's figures, and names them."""
  from pipeline.components import forecast_gate as gate  # noqa: PLC0415
  blessed, metrics = evaluate(tmp_path, {c: 0.5 for c in CELLS},
                              {c: 0.2 for c in CELLS})
  assert blessed == 1
  # ForecastGate finds every figure it reads under its own names.
  assert metrics[("", gate.CANDIDATE, gate.MAE)] == pytest.approx(0.5)
  assert metrics[("", gate.CANDIDATE, gate.RMSE)] == pytest.approx(0.5)
  assert metrics[("", gate.BASELINE, gate.MAE)] == pytest.approx(0.2)
  assert (metrics[("", gate.CANDIDATE, gate.MEAN_PREDICTION)] -
          metrics[("", gate.CANDIDATE, gate.MEAN_LABEL)]) == pytest.approx(0.5)
  assert metrics[(f"{features.CELL}=3", gate.CANDIDATE, gate.MAE)] == (
      pytest.approx(0.5))
  change = gate.paired_change(metrics, _examples_by_cell())
  assert (change.mae, change.noise) == (pytest.approx(0.3),
                                        pytest.approx(0.0, abs=1e-6))
  assert change.worse(tolerance=0.0, z=2.0)
  assert change.refusal(0.0, 2.0) == (
      "worse than the serving model: MAE 0.5000 vs 0.2000 (+0.3000, "
      "beyond the day's noise 2 x 0.0000)")


def test_a_candidate_worse_within_the_days_noise_is_blessed(tmp_path):
  """Worse on the day (MAE 0.2667 against 0.2), but only through one cell
  of three: within two standard errors of the paired difference. A zero
  tolerance change threshold in TFMA refused this."""
  from pipeline.components import forecast_gate as gate  # noqa: PLC0415
  blessed, metrics = evaluate(tmp_path, {1: 0.6, 2: 0.1, 3: 0.1},
                              {c: 0.2 for c in CELLS})
  assert blessed == 1
  assert metrics[("", gate.CANDIDATE, gate.MAE)] > metrics[
      ("", gate.BASELINE, gate.MAE)]
  change = gate.paired_change(metrics, _examples_by_cell())
  # d = (0.4, -0.1, -0.1), 20 examples each: D = 4/60, and
  # SE = sqrt(3/2 * ((8-4/3)^2 + 2 (-2-4/3)^2)) / 60 = 10/60.
  assert change.mae == pytest.approx(4 / 60, abs=1e-6)
  assert change.noise == pytest.approx(10 / 60, abs=1e-6)
  assert not change.worse(tolerance=0.0, z=2.0)


def test_better_overall_but_worse_in_one_cell_is_blessed(tmp_path):
  # MAE 0.2 against 0.3 on the day, 0.4 against 0.3 in cell 3: a threshold
  # applied to every slice would refuse what is better on the day (the
  # busy-cell rule with its own margin is ForecastGate's, not TFMA's).
  blessed, metrics = evaluate(tmp_path, {1: 0.1, 2: 0.1, 3: 0.4},
                              {c: 0.3 for c in CELLS})
  assert blessed == 1
  assert metrics[("", "candidate", "mean_absolute_error")] == (
      pytest.approx(0.2))
  assert metrics[("cell=3", "candidate", "mean_absolute_error")] > metrics[
      ("cell=3", "baseline", "mean_absolute_error")]


def test_the_models_load_as_saved_models_never_as_keras(tmp_path,
                                                         monkeypatch):
  """Left to guess the model type, TFMA loads each model (candidate and
  baseline) as a Keras model first: seconds each, and a Keras model that
  did load would be called through Keras, not the serving signature."""
  import tensorflow as tf  # noqa: PLC0415
  tried = []
  monkeypatch.setattr(tf.keras.models, "load_model",
                      lambda *args, **kwargs: tried.append(args))
  blessed, metrics = evaluate(tmp_path, {c: 0.1 for c in CELLS},
                              {c: 0.3 for c in CELLS})
  assert tried == []
  assert blessed == 1
  assert metrics[("", "candidate", "mean_absolute_error")] == (
      pytest.approx(0.1))


def test_one_pass_metrics_equal_tfmas_own_in_every_slice(tmp_path):
  """MAE, RMSE, mean prediction and mean label come from one combiner
  (regression_metrics) instead of TFMA's four, one of them a Keras metric
  run through TensorFlow per slice (most of the Evaluator on the 500 m
  grid): the same figures, overall, by hour and by cell, for both models,
  and the same verdict."""
  from pipeline import pipeline  # noqa: PLC0415
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  config = pipeline.eval_config(PipelineConfig(
      pipeline_name="t", pipeline_root=str(tmp_path), span=SPAN))
  builtin = type(config)()
  builtin.CopyFrom(config)
  tfma_own = {"OnePassMeanAbsoluteError": "MeanAbsoluteError",
              "OnePassRootMeanSquaredError": "RootMeanSquaredError",
              "OnePassMeanPrediction": "MeanPrediction",
              "OnePassMeanLabel": "MeanLabel"}
  replaced = 0
  for spec in builtin.metrics_specs:
    for metric in spec.metrics:
      if metric.class_name in tfma_own:
        metric.class_name = tfma_own[metric.class_name]
        metric.ClearField("module")
        replaced += 1
  assert replaced == len(tfma_own)
  errors = ({1: 0.5, 2: -1.25, 3: 2.0}, {1: -0.3, 2: 0.2, 3: 0.1})
  ours = evaluate(tmp_path / "ours", *errors)
  theirs = evaluate(tmp_path / "tfma", *errors, eval_config=builtin)
  # The one TFMA threshold is "not empty": both bless; ForecastGate judges
  # the change from the per-cell figures compared below.
  assert ours[0] == theirs[0] == 1
  assert set(ours[1]) == set(theirs[1])
  assert {slice_ for slice_, _, _ in ours[1]} >= {
      "", f"{features.CELL}=3", f"{features.HOUR}=1"}  # rows leave hour at 1
  for key, value in theirs[1].items():
    assert ours[1][key] == pytest.approx(value, rel=1e-6), key
