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
import functools
import json
import os
import time
from pathlib import Path
from typing import (Any, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import pyarrow as pa

from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import ForecastGateRecord
from taxi_demand.lineage.records import NextDayRecord
# The alert rules live apart, light enough for the CLI's parser to read.
from taxi_demand.monitoring.next_day_rules import DEFAULT_MARGIN  # noqa: F401
from taxi_demand.monitoring.next_day_rules import DEFAULT_TREND_DAYS
from taxi_demand.monitoring.next_day_rules import DEFAULT_TREND_SLOPE  # noqa: F401
from taxi_demand.monitoring.next_day_rules import Rules
from taxi_demand.spans import date_of

# Frozen: one shared default instance is safe.
_DEFAULT_RULES = Rules()


def score(labels, predictions, naive) -> Dict[str, float]:
  """The model's and the seasonal-naive forecast's errors on one day
  (missing forecasts as baselines.errors counts them); an empty day is
  refused, not recorded as a NaN result."""
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  if len(labels) == 0:
    raise TaxiDemandError("no examples to score")
  mae, rmse = baselines.errors(labels, predictions)
  naive_mae, naive_rmse = baselines.errors(labels, naive)
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


def mae_points(results: Sequence[Mapping[str, Any]]
               ) -> List[Tuple[int, float]]:
  """(span, MAE) of every recorded next-day result that has an MAE: the
  series the trend is read from, by the alert and by the report alike."""
  return [(int(r["span"]), float(r["mae"])) for r in results
          if r.get("mae") is not None]


def trend(points: Sequence[Tuple[int, float]],
          days: int = DEFAULT_TREND_DAYS) -> Optional[float]:
  """The trend of next-day MAE: `relative_slope` over the newest `days`
  (span, MAE) points, None with fewer. The one definition of a trend: the
  gradual rule (`judge`) alerts on it and the report's page shows it."""
  window = sorted(points)[-days:]
  return relative_slope(window) if len(window) == days else None


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
    slope = trend(window, rules.trend_days)
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
  from taxi_demand.data import reader  # noqa: PLC0415
  if not reader.warehouse_exists(warehouse_path):
    raise TaxiDemandError(f"no warehouse at {warehouse_path}")
  with reader.open_reader(warehouse_path) as wh:
    spans = wh.span_range()
    if spans is None or not spans[0] <= span <= spans[1]:
      held = ("it holds none" if spans is None else
              f"it covers {date_of(spans[0])} to {date_of(spans[1])}")
      raise TaxiDemandError(
          f"the warehouse has no trips on {date_of(span)} ({held}); "
          "next-day validation needs that day's actual demand")
    _require_trips(wh, span)
    table = wh.query_demand(query_config, span)
  return {name: table.column(name).to_numpy() for name in table.column_names}


def _require_trips(wh, span: int) -> None:
  """Fails unless day `span` has trips of its own.

  The demand query emits every (cell, slot) of a day, zero demand included,
  so a day inside the warehouse's range with no trips (a feed that never
  arrived) would be scored as a day of no demand at all, recorded, and fed
  to the trend rule.
  """
  from taxi_demand import spans as days  # noqa: PLC0415
  if wh.trips_on(span) == 0:
    raise TaxiDemandError(
        f"the warehouse has no trips on {days.date_of(span)}: its demand is "
        "unknown, not zero; load that day's trips before scoring it")


@functools.lru_cache(maxsize=4)
def _predictor(real_path: str):
  from taxi_demand.modeling import saved_model  # noqa: PLC0415
  return saved_model.load_for_serving(real_path)


def predict(model_dir: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
  """The model's point forecasts. A model folder is written once and never
  changed (a pushed version, a Trainer's output), so a process that scores
  one model day after day (the trend rule, a backfill) loads it once."""
  from taxi_demand.modeling import saved_model  # noqa: PLC0415
  return np.asarray(_predictor(os.path.realpath(model_dir))(columns)[
      saved_model.PREDICTION_KEY], dtype=float)


def score_day(model_dir: str, columns: Mapping[str, np.ndarray]
              ) -> Dict[str, float]:
  """MAE/RMSE of the model and of the seasonal-naive forecast on one day."""
  from taxi_demand import features  # noqa: PLC0415
  predictions = predict(model_dir, columns)
  return score(columns[features.LABEL], predictions,
               columns[features.SEASONAL_NAIVE])


# --- the forecasts actually served on the day, by lead ------------------------

def truth_of(day: pa.Table) -> pa.Table:
  """(cell, slot_start) -> actual pickups and the seasonal-naive forecast,
  from the demand query's rows of a day (one per cell and slot)."""
  from taxi_demand import features  # noqa: PLC0415
  return day.select([features.CELL, features.SLOT_START, features.LABEL,
                     features.SEASONAL_NAIVE])


def score_by_lead(forecasts: pa.Table, truth: pa.Table
                  ) -> Tuple[Dict[int, Dict[str, Any]], pa.Table]:
  """MAE by lead of served forecasts, beside the seasonal-naive forecast.

  Args:
    forecasts: cell, slot_start, lead_minutes, predicted_pickups (served
      forecasts: the served log's or a replay's).
    truth: `truth_of` a day; a (cell, slot) it lacks had no pickups.

  Returns:
    ({lead: {"mae", "seasonal_naive_mae", "forecasts"}}, the forecasts with
    actual_pickups and seasonal_naive columns).
  """
  import pyarrow.compute as pc  # noqa: PLC0415
  from taxi_demand import features  # noqa: PLC0415
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  keys = [features.CELL, features.SLOT_START]
  forecasts = forecasts.select(keys + [features.ISSUED_AT,
                                       features.LEAD_MINUTES,
                                       "predicted_pickups"])
  joined = forecasts.join(truth, keys=keys, join_type="left outer")
  actual = pc.fill_null(joined.column(features.LABEL), 0).to_numpy()
  naive = pc.fill_null(joined.column(features.SEASONAL_NAIVE), 0.0).to_numpy()
  leads = joined.column(features.LEAD_MINUTES).to_numpy()
  predicted = joined.column("predicted_pickups").to_numpy()
  by_lead = {}
  for lead in sorted(set(leads.tolist())):
    at = leads == lead
    by_lead[int(lead)] = {
        "mae": round(baselines.mae(actual[at], predicted[at]), 4),
        "seasonal_naive_mae": round(baselines.mae(actual[at], naive[at]), 4),
        "forecasts": int(at.sum())}
  scored = joined.drop([features.LABEL, features.SEASONAL_NAIVE])
  scored = scored.append_column("actual_pickups", pa.array(actual, pa.float64()))
  return by_lead, scored.append_column("seasonal_naive",
                                       pa.array(naive, pa.float64()))


def lead_steps(scored: pa.Table) -> Dict[int, Dict[str, Any]]:
  """How each lead's forecasts compare with the next longer lead's, on the
  same cells and slots, with the comparison's noise.

  A shorter lead knows everything the longer one knew and a few minutes
  more, so it should not score worse. On one day the two leads' errors
  differ by chance too: `noise` is the standard error of the mean paired
  difference of absolute errors, with the cells as the independent units
  (`baselines.clustered_mean`, as ForecastGate judges two models), so a
  step can be read against it.

  Args:
    scored: `score_by_lead`'s forecasts (cell, slot_start, lead_minutes,
      predicted_pickups, actual_pickups), one per cell, slot and lead.

  Returns:
    {lead: {"over_next_longer": MAE(lead) / MAE(next longer lead),
    "difference": mean |error| at lead minus at the next longer lead,
    "noise", "pairs"}} for every lead but the longest; {} when fewer than
    two leads were served.
  """
  from taxi_demand import features  # noqa: PLC0415
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  keys = (features.CELL, features.SLOT_START)
  leads = scored.column(features.LEAD_MINUTES).to_numpy()
  error = np.abs(scored.column("predicted_pickups").to_numpy() -
                 scored.column("actual_pickups").to_numpy())
  key_columns = [scored.column(k).to_numpy() for k in keys]
  by_lead = {}
  for lead in np.unique(leads):
    at = leads == lead
    by_lead[int(lead)] = dict(zip(zip(*(c[at].tolist() for c in key_columns)),
                                  error[at].tolist()))
  ordered = sorted(by_lead)
  steps = {}
  for lead, longer in zip(ordered, ordered[1:]):
    short_err, long_err = by_lead[lead], by_lead[longer]
    shared = [k for k in short_err if k in long_err]
    if not shared:
      continue
    a = np.array([short_err[k] for k in shared])
    b = np.array([long_err[k] for k in shared])
    cell_sums: Dict[Any, List[float]] = {}
    for (cell, _), d in zip(shared, (a - b).tolist()):
      cell_sums.setdefault(cell, []).append(d)
    difference, noise = baselines.clustered_mean(
        [sum(v) for v in cell_sums.values()],
        [len(v) for v in cell_sums.values()])
    steps[lead] = {
        "over_next_longer": round(float(a.mean() / b.mean()), 4)
        if b.mean() else None,
        "difference": round(difference, 4),
        "noise": round(noise, 4), "pairs": len(shared)}
  return steps


def _log_exists(serving_log) -> bool:
  """Whether there may be a served log at `serving_log` (a folder that is
  there, or any gs:// address)."""
  from taxi_demand import objectstore  # noqa: PLC0415
  return bool(serving_log) and (objectstore.is_gcs(serving_log)
                                or Path(serving_log).is_dir())


def served_by_lead(serving_log: Union[str, os.PathLike], span: int,
                   truth: pa.Table) -> Dict[str, Any]:
  """How the forecasts actually served for day `span` scored, by lead.

  Every forecast the served log holds for the day's slots, whatever version
  issued it: what drivers were shown. `truth` is `truth_of` the day (from
  the warehouse, or the run's eval split).

  Returns {"served_by_lead": {lead: {...}} or None, "served_forecasts": n,
  "served_versions": "v1,v2", "served_note": why nothing was scored}.
  """
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  if not _log_exists(serving_log):
    return {"served_by_lead": None, "served_forecasts": 0,
            "served_note": f"no served log at {serving_log or '(none)'}; "
                           "served forecasts not scored"}
  served = servelog.forecasts_between(serving_log, spans.start_of(span),
                                      spans.start_of(span + 1))
  if served.num_rows == 0:
    return {"served_by_lead": None, "served_forecasts": 0,
            "served_note": f"no forecasts served for {spans.date_of(span)} "
                           "in the served log"}
  by_lead, _ = score_by_lead(served, truth)
  versions = sorted(set(served.column("model_version").to_pylist()))
  return {"served_by_lead": {str(k): v for k, v in by_lead.items()},
          "served_forecasts": served.num_rows,
          "served_versions": ",".join(versions), "served_note": None}


# --- the supply forecast served on the day, by lead ---------------------------


def _not_scored(why: str) -> Dict[str, Any]:
  return {"served_supply_by_lead": None, "served_supply_mae": None,
          "served_supply_naive_mae": None,
          "served_supply_note": f"not scored: {why}",
          "supply_alert": False, "supply_reason": ""}


def judge_supply(mae: float, naive_mae: float,
                 rules: Rules) -> Tuple[bool, str]:
  """(alert, reason): the served supply forecast over the day against idle
  now carried forward (`Rules.supply_margin`)."""
  limit = naive_mae * (1 + rules.supply_margin)
  if mae > limit:
    return True, (f"supply: served supply forecast MAE {mae:.4f} > naive "
                  f"(idle now) MAE {naive_mae:.4f} x "
                  f"{1 + rules.supply_margin:g} = {limit:.4f}")
  return False, (f"supply forecast MAE {mae:.4f} against naive "
                 f"{naive_mae:.4f}")


def served_supply_by_lead(serving_log, warehouse_path, cfg, span: int,
                          rules: Rules = _DEFAULT_RULES) -> Dict[str, Any]:
  """How the supply forecasts served for day `span` (predicted_idle_taxis)
  scored, by lead: MAE against the idle taxis of each slot as the day's
  trips show them (`supply.actual`), beside idle now carried forward (the
  taxis idle at the issue time, `supply.idle_at`). Never fails: a day that
  cannot be scored (no served supply forecast, no warehouse, no trip with
  a taxi_id) says why.

  Returns:
    {"served_supply_by_lead": {lead: {"mae", "naive_mae", "forecasts"}} or
    None, "served_supply_mae", "served_supply_naive_mae" (over the day),
    "served_supply_note", "supply_alert", "supply_reason"}.
  """
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand import supply  # noqa: PLC0415
  from taxi_demand.data import reader  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  begin, end = spans.start_of(span), spans.start_of(span + 1)
  if not _log_exists(serving_log):
    return _not_scored(f"no served log at {serving_log or '(none)'}")
  served = servelog.forecasts_between(serving_log, begin, end,
                                      value=servelog.PREDICTED_IDLE)
  if served.num_rows == 0:
    return _not_scored(f"no supply forecast served for {spans.date_of(span)}")
  if not reader.warehouse_exists(warehouse_path):
    return _not_scored(f"no warehouse at {warehouse_path or '(none)'}")
  col = lambda c: served.column(c).to_numpy()  # noqa: E731
  cells = np.unique(col("cell"))
  with reader.open_reader(warehouse_path) as wh:
    # The day's trips, and those of the hours before that start or end
    # its spells (as supply.replay reads them).
    table = wh.taxi_trips(cfg, begin - 6 * 3600,
                          end + sql.MAX_IDLE_SECONDS)
  if table.num_rows == 0:
    return _not_scored(f"no trip around {spans.date_of(span)} carries a "
                       "taxi_id: the idle taxis are unknown")
  trips = supply.TaxiTrips.from_table(cells, table)
  slots = np.unique(col("slot_start"))
  ticks = np.unique(col("issued_at"))
  cell = np.searchsorted(cells, col("cell"))
  actual = supply.actual(trips, len(cells), slots, cfg.slot_seconds)[
      cell, np.searchsorted(slots, col("slot_start"))]
  naive = supply.idle_at(trips, len(cells), ticks)[
      cell, np.searchsorted(ticks, col("issued_at"))]
  forecast = col(servelog.PREDICTED_IDLE)
  leads = col("lead_minutes")
  by_lead = {}
  for lead in sorted(set(leads.tolist())):
    at = leads == lead
    by_lead[str(int(lead))] = {
        "mae": round(float(np.mean(np.abs(forecast[at] - actual[at]))), 4),
        "naive_mae": round(float(np.mean(np.abs(naive[at] - actual[at]))), 4),
        "forecasts": int(at.sum())}
  mae = float(np.mean(np.abs(forecast - actual)))
  naive_mae = float(np.mean(np.abs(naive - actual)))
  alert, reason = judge_supply(mae, naive_mae, rules)
  return {"served_supply_by_lead": by_lead,
          "served_supply_mae": round(mae, 4),
          "served_supply_naive_mae": round(naive_mae, 4),
          "served_supply_note": None, "supply_alert": alert,
          "supply_reason": reason}


def with_supply(result: Dict[str, Any], supply: Mapping[str, Any]
                ) -> Dict[str, Any]:
  """A next-day result with the supply forecast's figures; its alert, if
  any, is the result's alert too, and its reason joins the result's."""
  out = {**result, **supply}
  if supply.get("supply_alert"):
    out["reason"] = (f"{result['reason']}; {supply['supply_reason']}"
                     if result.get("alert") else supply["supply_reason"])
    out["alert"] = True
  return out


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
  """The registry folder if still kept (on Cloud Storage, its local copy),
  else the Pusher's archived copy."""
  from taxi_demand.serving import registry  # noqa: PLC0415
  if push.version in registry.versions(models_dir):
    return str(registry.local_copy(models_dir, push.version))
  if push.pushed_model.uri and Path(push.pushed_model.uri).is_dir():
    return push.pushed_model.uri
  if push.model is not None:
    return push.model.uri
  raise TaxiDemandError(f"model version {push.version} has no files left")


def find_subject(home, span: int) -> Subject:
  """The model serving on day `span` and everything needed to judge it."""
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
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
      eval_mae = ForecastGateRecord.read(blessing).model_mae
  examples = queries.examples_of_span(snap, span)
  if examples is not None:
    ids[contract.EXAMPLES] = examples.id
  history = [p for p in mae_points(queries.next_day_results(snap))
             if p[0] < span]
  return Subject(span=span, version=push.version,
                 model_dir=model_dir_of(home.models, push), params=params,
                 eval_mae=eval_mae, history=history, artifact_ids=ids)


def result_of(subject: Subject, figures: Mapping[str, float],
              rules: Rules) -> Dict[str, Any]:
  from taxi_demand.lineage import queries  # noqa: PLC0415
  alert, reason = judge(subject.span, figures["mae"], subject.eval_mae,
                        subject.history, rules)
  return {"date": queries.date_of(subject.span), "span": subject.span,
          "model_version": subject.version, **figures,
          "eval_mae": subject.eval_mae, "alert": alert, "reason": reason}


def validate(home, date: str, rules: Rules = _DEFAULT_RULES,
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
  from taxi_demand.lineage import queries  # noqa: PLC0415
  subject = find_subject(home, queries.span_of_date(date))
  warehouse = warehouse_path or home.warehouse
  cfg = (subject.params or contract.RunParameters()).query_config()
  columns = day_columns(warehouse, cfg, subject.span)
  result = result_of(subject, score_day(subject.model_dir, columns), rules)
  result.update(served_by_lead(home.serving_log, subject.span,
                               truth_of(pa.table(columns))))
  result = with_supply(result, served_supply_by_lead(
      home.serving_log, warehouse, cfg, subject.span, rules))
  if record:
    result["artifact_id"] = record_result(home, subject, result)
  return result


def record_result(home, subject: Subject, result: Mapping[str, Any]) -> int:
  """One NextDayValidation execution: model (and D's examples) in, result out."""
  from taxi_demand.lineage import record  # noqa: PLC0415
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
  # What the CLI and the node alike record: the result's NextDayRecord.
  props = dataclasses.replace(NextDayRecord.read(result),
                              source="cli").properties()
  ids = record.record_execution(
      writable, contract.NEXT_DAY, props, inputs,
      {contract.RESULT: [record.NewArtifact(contract.NEXT_DAY_RESULT, str(path),
                                            props)]})
  return ids["outputs"][contract.RESULT][0]
