"""Next-day validation: the model serving on day D, scored on day D's demand.

Which model served on day D is an ML Metadata question (see
`taxi_demand.lineage.queries.serving_on`): the newest push or rollback that
took effect before D, where a push by the run for day S takes effect from day
S + 1. The pipeline's baseline resolver asks the same function
(`pipeline.components.resolvers.ServingModelStrategy`), so the CLI and the
NextDayValidator node judge the same model, after a rollback too, whether
the runs were daily or one backfill "now".

Two alert rules:
  sudden:  MAE > eval MAE x (1 + margin), the eval MAE being what ForecastGate
           measured for that model on its own eval day;
  gradual: over the last K next-day results (one per day, whatever model
           served), the Theil-Sen slope of MAE per day, relative to their
           mean, exceeds `trend_slope`, even if no day crossed the margin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract

DEFAULT_MARGIN = 0.25
DEFAULT_TREND_DAYS = 5
DEFAULT_TREND_SLOPE = 0.05


@dataclasses.dataclass(frozen=True)
class Rules:
  """When a next-day result is an alert.

  Attributes:
    margin: sudden drop if MAE > eval MAE x (1 + margin).
    trend_days: K, how many daily results (today included) the trend spans.
    trend_slope: gradual degradation if MAE rises faster than this fraction
      of its mean per day over those K days.
  """
  margin: float = DEFAULT_MARGIN
  trend_days: int = DEFAULT_TREND_DAYS
  trend_slope: float = DEFAULT_TREND_SLOPE

  def __post_init__(self):
    if self.margin < 0:
      raise TaxiDemandError(f"--margin must be >= 0, got {self.margin}")
    if self.trend_days < 2:
      raise TaxiDemandError(f"--trend-days must be >= 2, got "
                            f"{self.trend_days}")


def errors(labels: Sequence[float],
           forecasts: Sequence[float]) -> Tuple[float, float]:
  """(MAE, RMSE); NaN forecasts (no history) count as 0 pickups."""
  from taxi_demand.modeling import baselines  # pylint: disable=g-import-not-at-top
  if len(labels) == 0:
    raise TaxiDemandError("no examples to score")
  return baselines.errors(labels, np.nan_to_num(
      np.asarray(forecasts, dtype=float)))


def score(labels, predictions, naive) -> Dict[str, float]:
  mae, rmse = errors(labels, predictions)
  naive_mae, naive_rmse = errors(labels, naive)
  return {"mae": mae, "rmse": rmse, "seasonal_naive_mae": naive_mae,
          "seasonal_naive_rmse": naive_rmse, "examples": len(labels)}


def relative_slope(points: Sequence[Tuple[int, float]]) -> Optional[float]:
  """Theil-Sen slope of MAE per day, divided by the mean MAE.

  The median of the pairwise slopes rather than least squares: one hard day
  (a venue event, a storm) at the end of the window must not read as a
  trend, while a steady rise still does.
  """
  if len(points) < 2:
    return None
  x = np.asarray([p[0] for p in points], dtype=float)
  y = np.asarray([p[1] for p in points], dtype=float)
  if np.ptp(x) == 0 or np.mean(y) <= 0:
    return None
  i, j = np.triu_indices(len(x), k=1)
  distinct = x[j] != x[i]
  slopes = (y[j] - y[i])[distinct] / (x[j] - x[i])[distinct]
  return float(np.median(slopes) / np.mean(y))


def judge(span: int, mae: float, eval_mae: Optional[float],
          history: Sequence[Tuple[int, float]],
          rules: Rules) -> Tuple[bool, str]:
  """(alert, reason) for day `span`'s MAE given earlier (span, MAE) results."""
  reasons, notes = [], []
  if eval_mae is None:
    notes.append("no eval MAE recorded for the model; sudden rule skipped")
  else:
    limit = eval_mae * (1 + rules.margin)
    if mae > limit:
      reasons.append(f"sudden: MAE {mae:.4f} > eval MAE {eval_mae:.4f} x "
                     f"{1 + rules.margin:g} = {limit:.4f}")
    else:
      notes.append(f"MAE {mae:.4f} within {rules.margin:.0%} of eval MAE "
                   f"{eval_mae:.4f}")
  earlier = sorted(p for p in history if p[0] < span)
  window = earlier[-(rules.trend_days - 1):] + [(span, mae)]
  if len(window) < rules.trend_days:
    notes.append(f"trend needs {rules.trend_days} daily results, have "
                 f"{len(window)}")
  else:
    slope = relative_slope(window)
    if slope is not None and slope > rules.trend_slope:
      reasons.append(f"gradual: MAE rises {slope:+.1%}/day over the last "
                     f"{len(window)} days (limit {rules.trend_slope:+.1%})")
    elif slope is not None:
      notes.append(f"trend {slope:+.1%}/day over {len(window)} days")
  if reasons:
    return True, "; ".join(reasons)
  return False, "ok: " + "; ".join(notes)


# --- scoring a model on a day of the warehouse (imports TensorFlow) ----------


def day_columns(warehouse_path: os.PathLike, query_config,
                span: int) -> Dict[str, np.ndarray]:
  """Day `span`'s examples (features and label) from the demand query."""
  from taxi_demand.data.warehouse import Warehouse  # pylint: disable=g-import-not-at-top
  if not Path(warehouse_path).is_file():
    raise TaxiDemandError(f"no warehouse at {warehouse_path}")
  with Warehouse(warehouse_path, read_only=True) as wh:
    spans = wh.span_range()
    if spans is None or not spans[0] <= span <= spans[1]:
      raise TaxiDemandError(
          f"the warehouse has no trips on day {span} (it covers "
          f"{'nothing' if spans is None else f'spans {spans[0]}..{spans[1]}'})"
          "; next-day validation needs that day's actual demand")
    table = wh.query_demand(query_config, span)
  return {name: table.column(name).to_numpy() for name in table.column_names}


def predict(model_dir: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
  from taxi_demand.modeling import saved_model  # pylint: disable=g-import-not-at-top
  return np.asarray(saved_model.load_for_serving(model_dir)(columns)[
      saved_model.PREDICTION_KEY], dtype=float)


def score_day(model_dir: str, columns: Mapping[str, np.ndarray]
              ) -> Dict[str, float]:
  """MAE/RMSE of the model and of the seasonal-naive forecast on one day."""
  from taxi_demand import features  # pylint: disable=g-import-not-at-top
  predictions = predict(model_dir, columns)
  return score(columns[features.LABEL], predictions,
               columns[features.SEASONAL_NAIVE])


# --- the whole check, against a home ------------------------------------------


@dataclasses.dataclass
class Subject:
  """What a next-day check judges: found in ML Metadata, no TensorFlow."""
  span: int
  version: str
  model_dir: str
  params: Optional[contract.RunParameters]
  eval_mae: Optional[float]
  history: List[Tuple[int, float]]
  artifact_ids: Dict[str, int]     # input key -> MLMD artifact id


def model_dir_of(models_dir: os.PathLike, push) -> str:
  """The registry folder if still kept, else the Pusher's archived copy."""
  kept = Path(models_dir) / push.version
  if kept.is_dir():
    return str(kept)
  if push.pushed_model.uri and Path(push.pushed_model.uri).is_dir():
    return push.pushed_model.uri
  if push.model is not None:
    return push.model.uri
  raise TaxiDemandError(f"model version {push.version} has no files left")


def find_subject(home, span: int) -> Subject:
  """The model serving on day `span` and everything needed to judge it."""
  from taxi_demand.lineage import queries  # pylint: disable=g-import-not-at-top
  from taxi_demand.lineage import store  # pylint: disable=g-import-not-at-top
  snap = store.load(home.metadata)
  event = queries.serving_on(snap, span)
  if event is None:
    raise TaxiDemandError(
        f"no model was serving on {queries.date_of(span)} according to ML "
        "Metadata (nothing pushed by a run for an earlier day)")
  push = queries.push_of(snap, event.version)
  params = queries.push_parameters(snap, push.version)
  eval_mae = None
  ids = {contract.PUSHED_MODEL: push.pushed_model.id}
  if push.model is not None:
    ids[contract.MODEL] = push.model.id
    blessing = queries.blessing_of_model(snap, push.model.id)
    if blessing is not None:
      eval_mae = blessing.properties.get(contract.MODEL_MAE)
  examples = queries.examples_of_span(snap, span)
  if examples is not None:
    ids[contract.EXAMPLES] = examples.id
  history = [(int(r["span"]), float(r["mae"]))
             for r in queries.next_day_results(snap)
             if r.get("mae") is not None and int(r["span"]) < span]
  return Subject(span=span, version=push.version,
                 model_dir=model_dir_of(home.models, push), params=params,
                 eval_mae=eval_mae, history=history, artifact_ids=ids)


def result_of(subject: Subject, figures: Mapping[str, float],
              rules: Rules) -> Dict[str, Any]:
  from taxi_demand.lineage import queries  # pylint: disable=g-import-not-at-top
  alert, reason = judge(subject.span, figures["mae"], subject.eval_mae,
                        subject.history, rules)
  return {"date": queries.date_of(subject.span), "span": subject.span,
          "model_version": subject.version, **figures,
          "eval_mae": subject.eval_mae, "alert": alert, "reason": reason}


def validate(home, date: str, rules: Rules = Rules(),
             warehouse_path: Optional[os.PathLike] = None,
             record: bool = True) -> Dict[str, Any]:
  """Scores the model serving on `date` on that day's demand; records it.

  Args:
    home: the Home (metadata store, models, warehouse).
    date: YYYY-MM-DD.
    rules: alert thresholds.
    warehouse_path: the actual demand to score on (default: home's).
    record: write the result to ML Metadata (and a JSON file).

  Returns:
    {"date", "model_version", "mae", "rmse", "seasonal_naive_mae", "alert",
     "reason", ...}.
  """
  from taxi_demand.lineage import queries  # pylint: disable=g-import-not-at-top
  subject = find_subject(home, queries.span_of_date(date))
  columns = day_columns(warehouse_path or home.warehouse,
                        (subject.params or contract.RunParameters()
                         ).query_config(), subject.span)
  result = result_of(subject, score_day(subject.model_dir, columns), rules)
  if record:
    result["artifact_id"] = record_result(home, subject, result)
  return result


def record_result(home, subject: Subject, result: Mapping[str, Any]) -> int:
  """One NextDayValidation execution: model (and D's examples) in, result out."""
  from taxi_demand.lineage import record  # pylint: disable=g-import-not-at-top
  folder = Path(home.pipeline_root) / "NextDayValidation"
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / f"{result['date']}-{time.time_ns()}.json"
  path.write_text(json.dumps(dict(result), indent=2, sort_keys=True,
                             default=str))
  writable = record.open_writable(home.metadata)
  found = {a.id: a for a in writable.get_artifacts_by_id(
      sorted(subject.artifact_ids.values()))}
  inputs = {key: [found[i]] for key, i in subject.artifact_ids.items()
            if i in found}
  props = {k: result[k] for k in ("date", "span", "model_version", "mae",
                                  "rmse", "seasonal_naive_mae",
                                  "seasonal_naive_rmse", "eval_mae",
                                  "examples", "alert", "reason")
           if result.get(k) is not None}
  ids = record.record_execution(
      writable, contract.NEXT_DAY, {**props, "source": "cli"}, inputs,
      {contract.RESULT: [record.NewArtifact(contract.NEXT_DAY_RESULT, str(path),
                                     {**props, "source": "cli"})]})
  return ids["outputs"][contract.RESULT][0]
