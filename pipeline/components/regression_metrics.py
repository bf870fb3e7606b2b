"""TFMA metrics the gates read (MAE, RMSE, mean prediction, mean label), made in one pass.

TFMA's own MeanAbsoluteError, MeanLabel and MeanPrediction each unpack
every example of every slice for every model, and RootMeanSquaredError is a
Keras metric that TFMA feeds through TensorFlow slice by slice: on the 500 m
grid (about 1,500 cells, each its own slice) that was most of the
Evaluator. These four share one combiner, which unpacks each example once
and keeps five sums; each metric is derived from them. They report under
TFMA's names ("mean_absolute_error", ...), so ForecastGate (which pairs
the two models' MAEs by cell) and the notebook read them as before.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Optional

import apache_beam as beam
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util
from tensorflow_model_analysis.proto import config_pb2

# The shared sums: private (a leading "_"), so TFMA drops them from its output.
_SUMS_NAME = "_regression_sums"


@dataclasses.dataclass
class RegressionSums:
  """Weighted sums over a slice's examples, for one model and output."""
  weight: float = 0.0
  absolute_error: float = 0.0
  squared_error: float = 0.0
  label: float = 0.0
  prediction: float = 0.0

  def add(self, label: float, prediction: float, weight: float) -> None:
    error = label - prediction
    self.weight += weight
    self.absolute_error += weight * abs(error)
    self.squared_error += weight * error * error
    self.label += weight * label
    self.prediction += weight * prediction

  def merge(self, other: "RegressionSums") -> None:
    for field in dataclasses.fields(self):
      setattr(self, field.name,
              getattr(self, field.name) + getattr(other, field.name))

  def mean(self, total: float) -> float:
    """total / weight; NaN for a slice of no weight, as TFMA reports it."""
    return total / self.weight if self.weight else float("nan")


class _SumsCombiner(beam.CombineFn):
  """Adds each example's label and prediction into RegressionSums."""

  def __init__(self, key: metric_types.MetricKey,
               eval_config: Optional[config_pb2.EvalConfig]):
    self._key = key
    self._eval_config = eval_config

  def create_accumulator(self) -> RegressionSums:
    return RegressionSums()

  def add_input(self, accumulator: RegressionSums,
                element: metric_types.StandardMetricInputs
                ) -> RegressionSums:
    for label, prediction, weight in (
        metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config,
            model_name=self._key.model_name,
            output_name=self._key.output_name,
            example_weighted=self._key.example_weighted)):
      accumulator.add(float(label), float(prediction), float(weight))
    return accumulator

  def merge_accumulators(self, accumulators) -> RegressionSums:
    accumulators = iter(accumulators)
    result = next(accumulators)
    for accumulator in accumulators:
      result.merge(accumulator)
    return result

  def extract_output(self, accumulator: RegressionSums
                     ) -> Dict[metric_types.MetricKey, RegressionSums]:
    return {self._key: accumulator}


def _derived_from_sums(value: Callable[[RegressionSums], float]):
  """A TFMA computations function: the shared sums, and `value` of them
  under the metric's own key."""

  def computations(
      name: Optional[str] = None,
      eval_config: Optional[config_pb2.EvalConfig] = None,
      model_name: str = "",
      output_name: str = "",
      example_weighted: bool = False,
  ) -> metric_types.MetricComputations:
    sums_key, key = (metric_types.MetricKey(
        name=n, model_name=model_name, output_name=output_name,
        example_weighted=example_weighted) for n in (_SUMS_NAME, name))
    # Equal for every metric here (same combiner class and key), so TFMA
    # runs it once per model and slice.
    sums = metric_types.MetricComputation(
        keys=[sums_key], preprocessors=None,
        combiner=_SumsCombiner(sums_key, eval_config))

    def result(metrics: Dict[metric_types.MetricKey, RegressionSums]):
      return {key: value(metrics[sums_key])}

    return [sums, metric_types.DerivedMetricComputation(keys=[key],
                                                        result=result)]

  return metric_util.merge_per_key_computations(computations)


class OnePassMeanAbsoluteError(metric_types.Metric):
  """Weighted mean of |label - prediction|."""

  def __init__(self, name: str = "mean_absolute_error"):
    super().__init__(_derived_from_sums(
        lambda s: s.mean(s.absolute_error)), name=name)


class OnePassRootMeanSquaredError(metric_types.Metric):
  """Square root of the weighted mean of (label - prediction)^2."""

  def __init__(self, name: str = "root_mean_squared_error"):
    super().__init__(_derived_from_sums(
        lambda s: math.sqrt(s.mean(s.squared_error))), name=name)


class OnePassMeanPrediction(metric_types.Metric):
  """Weighted mean of the predictions."""

  def __init__(self, name: str = "mean_prediction"):
    super().__init__(_derived_from_sums(
        lambda s: s.mean(s.prediction)), name=name)


class OnePassMeanLabel(metric_types.Metric):
  """Weighted mean of the labels."""

  def __init__(self, name: str = "mean_label"):
    super().__init__(_derived_from_sums(
        lambda s: s.mean(s.label)), name=name)


# The metrics above, in the order eval_config lists them.
METRICS: List[type] = [OnePassMeanAbsoluteError, OnePassRootMeanSquaredError,
                       OnePassMeanPrediction, OnePassMeanLabel]
