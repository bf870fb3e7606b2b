"""ForecastGate: blesses a model only if it beats the seasonal-naive forecast.

TFMA's Evaluator scores the candidate and the last blessed model (the
baseline) on the eval day, overall and by cell; its only threshold is that
the day is not empty. What TFMA cannot express is a threshold relative to a
forecast that is not a model ("10% better than the same slot last week,
overall and in every busy cell"), or a comparison with the baseline that
knows how noisy one day's MAE is (a paired test over cells, `paired_change`).
This gate reads the Evaluator's metrics and blessing, scores the
seasonal-naive forecast on the same eval day, and writes the one blessing
that Pusher and the next run's baseline resolver trust. A day with too few
pickups to judge (the evidence floor) blesses nothing, the first run's
included: on a day of mostly empty slots, MAE rewards forecasting nothing.
The metrics of the model, the naive forecast and the baseline model are
recorded side by side as properties of that blessing, so `taxi-demand runs`
reads them from ML Metadata without TensorFlow.
"""


import collections
import dataclasses
from typing import Dict, Mapping, Optional, Tuple

from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from pipeline.components import artifact_files
from pipeline.components import examples_io
from pipeline.components.guidance_gate import GuidanceResult
from pipeline.config import Thresholds
from taxi_demand.modeling import baselines
from taxi_demand import features
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import BlessingRecord
from taxi_demand.lineage.records import ForecastGateRecord
from taxi_demand.lineage.records import GuidanceRecord

REPORT_FILE = "forecast_gate.json"
EVAL_SPLIT = examples_io.NEW_DAY_SPLIT
CANDIDATE = "candidate"
BASELINE = "baseline"

# Names TFMA gives the metrics configured in pipeline/pipeline.py.
MAE = "mean_absolute_error"
RMSE = "root_mean_squared_error"
MEAN_PREDICTION = "mean_prediction"
MEAN_LABEL = "mean_label"
# The parameters' defaults: PipelineConfig's thresholds, which fill them.
_DEFAULTS = Thresholds()


def read_eval_examples(examples_uri: str) -> Tuple[list, list, list]:
  """(cell, label, seasonal-naive forecast) for every eval example."""
  columns = examples_io.read_columns(examples_uri, EVAL_SPLIT)
  return (columns[features.CELL].tolist(),
          columns[features.LABEL].astype(float).tolist(),
          columns[features.SEASONAL_NAIVE].tolist())


def tfma_metrics(evaluation_uri: str) -> Dict[Tuple[str, str, str], float]:
  """{(slice, model_name, metric): value}; slice '' is the whole eval day."""
  import tensorflow_model_analysis as tfma  # noqa: PLC0415
  out = {}
  for m in tfma.load_metrics(evaluation_uri):
    parts = []
    for k in m.slice_key.single_slice_keys:
      value = k.WhichOneof("kind")
      parts.append(f"{k.column}={getattr(k, value) if value else ''}")
    slice_name = ",".join(parts)
    for kv in m.metric_keys_and_values:
      if kv.key.is_diff or not kv.value.HasField("double_value"):
        continue
      out[(slice_name, kv.key.model_name or CANDIDATE, kv.key.name)] = (
          kv.value.double_value.value)
  return out


def too_little_evidence(pickups: float, min_eval_pickups: int
                        ) -> Optional[str]:
  """Why a day is too sparse to judge, or None if it is not.

  Below the floor every figure is still computed and recorded, so `runs`
  shows what the model scored and why that score could not count.
  """
  if pickups >= min_eval_pickups:
    return None
  return (f"too little evidence: {pickups:.0f} pickups on the eval day, "
          f"below the floor of {min_eval_pickups} (--min-eval-pickups)")


@dataclasses.dataclass(frozen=True)
class Change:
  """The candidate's whole-day MAE against the baseline model's, and its noise.

  Attributes:
    model_mae, baseline_mae: the two models' MAE over the cells compared.
    mae: D, the candidate's MAE minus the baseline's (> 0: worse).
    noise: SE, the standard error of D over the day's cells (0 when fewer
      than two cells could be paired: nothing to measure the noise by).
    cells: how many cells were paired.
  """
  model_mae: float
  baseline_mae: float
  mae: float
  noise: float
  cells: int

  def worse(self, tolerance: float, z: float) -> bool:
    """Worse beyond the tolerance and z standard errors of the day's noise."""
    return self.mae > tolerance + z * self.noise

  def refusal(self, tolerance: float, z: float) -> str:
    """The reason a worse candidate is refused, with the figures."""
    allowance = f" + tolerance {tolerance:g}" if tolerance else ""
    return (f"worse than the serving model: MAE {self.model_mae:.4f} vs "
            f"{self.baseline_mae:.4f} ({self.mae:+.4f}, beyond the day's "
            f"noise {z:g} x {self.noise:.4f}{allowance})")


def paired_change(metrics: Dict[Tuple[str, str, str], float],
                  examples_by_cell: Mapping[object, int]) -> Optional[Change]:
  """The candidate against the baseline on the same examples, cell by cell.

  A one-day MAE moves by about 1% with what the day held (events, weather,
  which holidays a window saw), and the two models are scored on the same
  examples, so their difference is judged paired. Slots of one cell are
  correlated, so the cells are the independent units (a cluster-robust
  standard error): with n_c examples and the MAE difference d_c in cell c,
  N = sum n_c and C cells,

    D  = sum_c n_c d_c / N                       (the whole-day difference)
    SE = sqrt(C / (C - 1) * sum_c (n_c d_c - n_c D)^2) / N

  Args:
    metrics: TFMA's figures, {(slice, model, metric): value}, as
      `tfma_metrics` reads them; the cell slices hold both models' MAE.
    examples_by_cell: {cell: eval examples}, the n_c.

  Returns:
    The Change, or None when there is no baseline (the first run).
  """
  whole_day = (metrics.get(("", CANDIDATE, MAE)),
               metrics.get(("", BASELINE, MAE)))
  pairs = []
  for cell, n in examples_by_cell.items():
    name = f"{features.CELL}={cell}"
    model, base = (metrics.get((name, CANDIDATE, MAE)),
                   metrics.get((name, BASELINE, MAE)))
    if n and model is not None and base is not None:
      pairs.append((n, model, base))
  if not pairs:
    if None in whole_day:
      return None
    # No cell slices (an older Evaluator's output): the whole day, noise
    # unmeasured, as strict as the zero-tolerance rule it replaces.
    return Change(*whole_day, whole_day[0] - whole_day[1], 0.0, 0)
  total = sum(n for n, _, _ in pairs)
  model_mae = sum(n * m for n, m, _ in pairs) / total
  baseline_mae = sum(n * b for n, _, b in pairs) / total
  d, noise = baselines.clustered_mean([n * (m - b) for n, m, b in pairs],
                                      [n for n, _, _ in pairs])
  return Change(model_mae, baseline_mae, d, noise, len(pairs))


def decide(metrics: Dict[Tuple[str, str, str], float], cells, labels, naive,
           evaluator_blessed: bool, naive_margin: float, cell_margin: float,
           min_cell_pickups: int, min_eval_pickups: int,
           guidance: Optional[GuidanceRecord] = None,
           change_tolerance: float = _DEFAULTS.change_tolerance,
           change_z: float = _DEFAULTS.change_z) -> dict:
  """The blessing decision and the figures behind it, as a plain dict.

  Every check adds its reason; the model is blessed when none does. Against
  the baseline model (none on the first run), the candidate is refused only
  when its MAE is worse by more than `change_tolerance` plus `change_z`
  standard errors of the paired difference (`paired_change`).
  `guidance` is GuidanceGate's result, where it ran. A check that could not measure the day refuses nothing: it is named
  in `unmeasured`, and `notes` says the decision was made without it.
  """
  naive_mae, naive_rmse = baselines.errors(labels, naive)
  # One example per (cell, target slot): the labels sum to the day's pickups.
  pickups = sum(labels)
  model_mae = metrics.get(("", CANDIDATE, MAE))
  model_rmse = metrics.get(("", CANDIDATE, RMSE))
  mean_pred = metrics.get(("", CANDIDATE, MEAN_PREDICTION))
  mean_label = metrics.get(("", CANDIDATE, MEAN_LABEL))
  reasons = []
  by_cell = collections.defaultdict(lambda: ([], []))
  for c, y, p in zip(cells, labels, naive):
    by_cell[c][0].append(y)
    by_cell[c][1].append(p)
  evidence = too_little_evidence(pickups, min_eval_pickups)
  if not labels:
    reasons.append("the eval day has no examples")
  elif evidence:
    reasons.append(evidence)
  if model_mae is None:
    reasons.append("the Evaluator reported no MAE for the candidate")
    model_mae = float("inf")
  if not evaluator_blessed:
    reasons.append("the Evaluator did not bless the model (its one "
                   "threshold: the eval day holds at least one example)")
  change = paired_change(metrics, {c: len(ys) for c, (ys, _) in
                                   by_cell.items()})
  worse_than_baseline = (change is not None and
                         change.worse(change_tolerance, change_z))
  if worse_than_baseline:
    reasons.append(change.refusal(change_tolerance, change_z))
  limit = (1.0 - naive_margin) * naive_mae
  if not model_mae <= limit:
    reasons.append(f"MAE {model_mae:.4f} does not beat seasonal-naive MAE "
                   f"{naive_mae:.4f} by {naive_margin:.0%} (limit {limit:.4f})")

  cell_report = {}
  for c, (ys, ps) in sorted(by_cell.items()):
    cell_naive_mae, _ = baselines.errors(ys, ps)
    cell_model_mae = metrics.get((f"{features.CELL}={c}", CANDIDATE, MAE))
    busy = sum(ys) >= min_cell_pickups
    worse = (busy and cell_model_mae is not None and
             cell_model_mae > (1.0 + cell_margin) * cell_naive_mae)
    cell_report[str(c)] = {"pickups": sum(ys), "model_mae": cell_model_mae,
                           "seasonal_naive_mae": cell_naive_mae,
                           "busy": busy, "worse": worse}
    if worse:
      reasons.append(f"cell {c}: MAE {cell_model_mae:.4f} is more than "
                     f"{cell_margin:.0%} above its seasonal-naive MAE "
                     f"{cell_naive_mae:.4f}")
  notes, unmeasured = [], []
  if guidance is not None and not guidance.measured:
    unmeasured.append(contract.GUIDANCE)
    notes.append(f"guidance {guidance.reason or 'not measured'}"
                 "; decided on the forecast alone")
  elif guidance is not None and not guidance.passed:
    reasons.append(str(guidance.reason or "guidance got worse"))
  bias = (mean_pred - mean_label) if None not in (mean_pred,
                                                  mean_label) else None
  return {
      "blessed": not reasons,
      "reasons": reasons,
      "notes": notes,
      "unmeasured": unmeasured,
      "examples": len(labels),
      "eval_pickups": pickups,
      "min_eval_pickups": min_eval_pickups,
      "model_mae": model_mae,
      "model_rmse": model_rmse,
      "model_bias": bias,
      "seasonal_naive_mae": naive_mae,
      "seasonal_naive_rmse": naive_rmse,
      "baseline_model_mae": metrics.get(("", BASELINE, MAE)),
      "baseline_model_rmse": metrics.get(("", BASELINE, RMSE)),
      # Against the baseline: None on the first run, which has none.
      "change_mae": None if change is None else change.mae,
      "change_noise": None if change is None else change.noise,
      "change_z": None if change is None else change_z,
      "change_worse": None if change is None else worse_than_baseline,
      "evaluator_blessed": evaluator_blessed,
      "guidance": (None if guidance is None else
                   dataclasses.asdict(guidance)),
      "cells": cell_report,
  }


@component
def ForecastGate(  # pylint: disable=invalid-name
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    evaluator_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    guidance: InputArtifact[GuidanceResult] = None,
    naive_margin: Parameter[float] = _DEFAULTS.naive_margin,
    cell_margin: Parameter[float] = _DEFAULTS.cell_margin,
    min_cell_pickups: Parameter[int] = _DEFAULTS.min_cell_pickups,
    min_eval_pickups: Parameter[int] = _DEFAULTS.min_eval_pickups,
    change_tolerance: Parameter[float] = _DEFAULTS.change_tolerance,
    change_z: Parameter[float] = _DEFAULTS.change_z,
) -> None:
  """Writes a ModelBlessing: blessed iff every deploy check passes."""
  cells, labels, naive = read_eval_examples(examples.uri)
  result = decide(
      tfma_metrics(evaluation.uri), cells, labels, naive,
      evaluator_blessed=bool(BlessingRecord.read(evaluator_blessing).blessed),
      naive_margin=naive_margin, cell_margin=cell_margin,
      min_cell_pickups=min_cell_pickups, min_eval_pickups=min_eval_pickups,
      guidance=None if guidance is None else GuidanceRecord.read(guidance),
      change_tolerance=change_tolerance, change_z=change_z)
  artifact_files.write_json(blessing.uri, REPORT_FILE, result)
  marker = "BLESSED" if result["blessed"] else "NOT_BLESSED"
  artifact_files.write_bytes(blessing.uri, marker, b"")
  # The properties the resolvers, the Pusher and the lineage queries read.
  # The Evaluator's blessing carries `blessed` too; on Vertex the baseline
  # resolver's query keeps only blessings with ForecastGate's mark.
  ForecastGateRecord(
      **{k: result[k] for k in ForecastGateRecord.METRICS},
      change_z=result["change_z"], change_worse=result["change_worse"],
      blessed=result["blessed"], forecast_gate=True,
      current_model_id=model.id, current_model=model.uri,
      span=int(examples.span),
      reasons="; ".join(result["reasons"] + result["notes"]),
      unmeasured=tuple(result["unmeasured"])).write(blessing)
