"""Training-serving skew: one day of served features against the training
statistics of the model version that served them, found through lineage."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pyarrow as pa

from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand import features
from taxi_demand import spans
from taxi_demand.lineage import contract
from taxi_demand.serving import servelog

CHECK_TYPE = contract.SKEW_CHECK
REPORT_TYPE = contract.SKEW_REPORT
SERVING_LOG_TYPE = contract.SERVING_LOG
# The model learned from the train split; the eval day is held out.
TRAINING_SPLIT = "train"
STATS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
_MEASUREMENT = {1: "L_INFTY", 2: "JENSEN_SHANNON_DIVERGENCE",
                3: "NORMALIZED_ABSOLUTE_DIFFERENCE"}


@dataclasses.dataclass
class FeatureSkew:
  """One feature's skew comparator outcome."""
  distance: Optional[float]
  threshold: float
  flagged: bool
  comparator: str
  note: Optional[str] = None

  def to_dict(self) -> Dict[str, Any]:
    out = {"distance": self.distance, "threshold": self.threshold,
           "flagged": self.flagged}
    if self.note:
      out["note"] = self.note
    return out


@dataclasses.dataclass
class SkewResult:
  """The check of one model version's rows of one day."""
  date: str
  model_version: str
  rows: int
  features: Dict[str, FeatureSkew]
  training_statistics_uri: str = ""
  training_statistics_id: Optional[int] = None
  schema_uri: str = ""
  report_uri: Optional[str] = None
  execution_id: Optional[int] = None

  @property
  def alert(self) -> bool:
    return any(f.flagged for f in self.features.values())

  @property
  def flagged(self) -> List[str]:
    return sorted(n for n, f in self.features.items() if f.flagged)

  def to_dict(self) -> Dict[str, Any]:
    return {"date": self.date, "model_version": self.model_version,
            "alert": self.alert, "rows": self.rows,
            "features": {n: f.to_dict() for n, f in sorted(
                self.features.items())},
            "training_statistics_uri": self.training_statistics_uri,
            "schema_uri": self.schema_uri, "report_uri": self.report_uri,
            "execution_id": self.execution_id}


@dataclasses.dataclass
class DayReport:
  """Every version's check for one day; the first served the most rows."""
  date: str
  results: List[SkewResult]
  skipped: List[Tuple[str, str]]

  @property
  def alert(self) -> bool:
    return any(r.alert for r in self.results)

  def to_dict(self) -> Dict[str, Any]:
    """The issue's shape for the majority version, plus every version.

    Top-level `model_version` and `features` are the version that served
    most of the day's rows; `alert` is true if any version's rows skew;
    `versions` holds each version's own check.
    """
    main = self.results[0].to_dict()
    main["alert"] = self.alert
    main["skipped_files"] = [{"file": f, "reason": r} for f, r in self.skipped]
    main["versions"] = [r.to_dict() for r in self.results]
    return main


# ---- statistics and comparison (shared with the SkewValidator component) ----

def serving_statistics(table: pa.Table, schema=None):
  """TFDV statistics of served feature rows (the log's extra columns dropped).

  Computed in memory: a day of 5-minute jobs is ~20k rows, where Beam's
  start-up would cost more than the statistics. With the schema, as
  StatisticsGen does when given one, categorical integers (cell, hour) get
  value counts, which the L-infinity comparator needs.
  """
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  frame = table.select(list(features.SERVING_COLUMNS)).to_pandas()
  options = tfdv.StatsOptions(schema=schema) if schema is not None else \
      tfdv.StatsOptions()
  return tfdv.generate_statistics_from_dataframe(frame, options)


def load_training_statistics(statistics_uri: str,
                             split: str = TRAINING_SPLIT):
  """The FeatureStats.pb of one split of an ExampleStatistics artifact."""
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  path = os.path.join(statistics_uri, f"Split-{split}", STATS_FILE)
  if not os.path.isfile(path):
    raise TaxiDemandError(f"no {split} statistics at {path}")
  return tfdv.load_stats_binary(path)


def load_schema(schema_uri: str):
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  path = schema_uri if schema_uri.endswith(".pbtxt") else os.path.join(
      schema_uri, SCHEMA_FILE)
  if not os.path.isfile(path):
    raise TaxiDemandError(f"no schema at {path}")
  return tfdv.load_schema_text(path)


def _skew_comparators(schema) -> Dict[str, Tuple[str, float]]:
  """{feature: (comparator, threshold)} for every feature that has one."""
  out = {}
  for f in schema.feature:
    if not f.HasField("skew_comparator"):
      continue
    c = f.skew_comparator
    if c.HasField("infinity_norm"):
      out[f.name] = ("L_INFTY", c.infinity_norm.threshold)
    elif c.HasField("jensen_shannon_divergence"):
      out[f.name] = ("JENSEN_SHANNON_DIVERGENCE",
                     c.jensen_shannon_divergence.threshold)
    elif c.HasField("normalized_abs_difference"):
      out[f.name] = ("NORMALIZED_ABSOLUTE_DIFFERENCE",
                     c.normalized_abs_difference.threshold)
  return out


def compare(training_stats, serving_stats, schema) -> Dict[str, FeatureSkew]:
  """Distance, threshold and verdict of every skew comparator in `schema`.

  TFDV computes the distances (L-infinity over value frequencies for
  categorical features, approximate Jensen-Shannon divergence over
  histograms for numeric ones) and reports each in `drift_skew_info`,
  flagged or not; a distance above its threshold is also an anomaly. A
  comparator TFDV could not evaluate (the feature absent from one side)
  is reported with distance None and flagged: the served rows do not
  carry what the model was trained on.
  """
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  no_counts = _without_value_counts(training_stats)
  # `statistics` is the training side here, so TRAINING is its environment;
  # the serving side is only compared, never validated against the schema.
  anomalies = tfdv.validate_statistics(
      training_stats, schema, environment="TRAINING",
      serving_statistics=serving_stats)
  measured: Dict[str, Tuple[float, float]] = {}
  for info in anomalies.drift_skew_info:
    name = ".".join(info.path.step)
    for m in info.skew_measurements:
      measured[name] = (float(m.value), float(m.threshold))
  out = {}
  for name, (kind, threshold) in _skew_comparators(schema).items():
    if kind == "L_INFTY" and name in no_counts:
      # TFDV would compare the served value counts with nothing and report
      # the largest served share as the distance: meaningless either way.
      out[name] = FeatureSkew(
          distance=None, threshold=threshold, flagged=False, comparator=kind,
          note="not compared: the training statistics hold no value counts "
          "for this categorical feature (StatisticsGen ran without the "
          "schema)")
    elif name in measured:
      value, reported = measured[name]
      out[name] = FeatureSkew(distance=value, threshold=reported or threshold,
                              flagged=value > (reported or threshold),
                              comparator=kind)
    else:
      out[name] = FeatureSkew(distance=None, threshold=threshold,
                              flagged=True, comparator=kind)
  return out


def _without_value_counts(stats) -> set:
  """Features whose statistics carry no categorical value counts."""
  out = set()
  for dataset in stats.datasets[:1]:
    for f in dataset.features:
      name = ".".join(f.path.step) if f.HasField("path") else f.name
      if f.WhichOneof("stats") != "string_stats":
        out.add(name)
  return out


def write_report(path: os.PathLike, result: SkewResult,
                 skipped: List[Tuple[str, str]] = ()) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  body = {**result.to_dict(),
          "skipped_files": [{"file": f, "reason": r} for f, r in skipped]}
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)
  return path


# ---- lineage -------------------------------------------------------------

@dataclasses.dataclass
class TrainingRef:
  """What a pushed version was trained on, as MLMD artifacts."""
  version: str
  statistics: Any   # the ExampleStatistics artifact proto
  schema: Any       # the Schema artifact proto the Trainer took


def training_ref(snap, version: str) -> TrainingRef:
  """Pushed version -> Trainer -> its examples -> their StatisticsGen output.

  Never "the latest statistics": a day served by an older version must be
  judged against what that version learned from.
  """
  from taxi_demand.lineage import queries  # noqa: PLC0415
  push = queries.push_of(snap, version)
  if push.model is None:
    raise TaxiDemandError(f"the push of version {version} names no model")
  found = queries.training_inputs(snap, push.model.id)
  if found.get("statistics") is None:
    raise TaxiDemandError(
        f"model version {version}: no training statistics in ML Metadata "
        "(the lineage from its Trainer to StatisticsGen is incomplete)")
  if found.get("schema") is None:
    raise TaxiDemandError(f"model version {version}: its Trainer had no "
                          "schema input in ML Metadata")
  return TrainingRef(version=str(version), statistics=found["statistics"],
                     schema=found["schema"])


def _serving_log_artifact(store, folder: Path, day: datetime.date):
  """The ServingLog artifact of a day's partition, registered on first use."""
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  from taxi_demand.lineage import record  # noqa: PLC0415
  uri = str(folder)
  existing = record.find_artifact(store, SERVING_LOG_TYPE, uri)
  if existing is not None:
    return existing
  type_id = store.put_artifact_type(pb.ArtifactType(name=SERVING_LOG_TYPE))
  artifact = pb.Artifact(type_id=type_id, uri=uri, state=pb.Artifact.LIVE)
  artifact.custom_properties["date"].string_value = day.isoformat()
  artifact.custom_properties[contract.SPAN].int_value = spans.span_of(day)
  [artifact_id] = store.put_artifacts([artifact])
  return store.get_artifacts_by_id([artifact_id])[0]


def record_check(metadata_path: os.PathLike, result: SkewResult,
                 log_folder: Path, day: datetime.date, rows_files: int) -> None:
  """Records the check in MLMD: training statistics + serving log in, report
  out; sets result.execution_id."""
  from taxi_demand.lineage import record  # noqa: PLC0415
  store = record.open_writable(metadata_path)
  log_artifact = _serving_log_artifact(store, log_folder, day)
  inputs = {"statistics": store.get_artifacts_by_id(
      [result.training_statistics_id]), "serving_log": [log_artifact]}
  ids = record.record_execution(
      store, CHECK_TYPE,
      properties={"date": result.date, "model_version": result.model_version,
                  "alert": result.alert, "rows": result.rows,
                  "files": rows_files, "flagged": ",".join(result.flagged)},
      inputs=inputs,
      outputs={"report": [record.NewArtifact(
          REPORT_TYPE, result.report_uri,
          {"date": result.date, "model_version": result.model_version,
           "alert": result.alert, "flagged": ",".join(result.flagged)})]})
  result.execution_id = ids["execution_id"]


def history(snap, version: Optional[str] = None) -> List[Dict[str, Any]]:
  """Recorded skew checks, oldest first, optionally of one model version."""
  out = []
  for ex in snap.executions_of(CHECK_TYPE):
    props = ex.properties
    if version is not None and str(props.get("model_version")) != str(version):
      continue
    reports = snap.outputs(ex.execution_id).get(contract.REPORT) or []
    out.append({"date": props.get("date"),
                "model_version": props.get("model_version"),
                "alert": bool(props.get("alert")),
                "flagged": [f for f in str(props.get("flagged", "")).split(",")
                            if f],
                "rows": props.get("rows"),
                "report_uri": reports[0].uri if reports else None,
                "execution_id": ex.execution_id,
                "checked_at_ms": ex.start_ms})
  return out


# ---- the day check ---------------------------------------------------------

def report_path(home: Home, date: str, version: str) -> Path:
  stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
  return home.root / "reports" / "skew" / f"{date}-v{version}-{stamp}.json"


def check_day(home: Home, day: datetime.date, version: Optional[str] = None,
              record: bool = True) -> DayReport:
  """Checks the served features of `day`, each version against its own
  training statistics.

  Args:
    home: the state directory (serving log, metadata, reports).
    day: the slot day to check.
    version: check only this version's rows (default: every version found).
    record: record each check in ML Metadata and write its JSON report.

  Returns:
    The report; results[0] is the version that served the most rows.
  """
  log = servelog.read_day(home.serving_log, day)
  served = log.versions()
  if version is not None:
    if str(version) not in dict(served):
      raise TaxiDemandError(
          f"model version {version} served no rows on {day.isoformat()}; "
          f"versions in the log: {', '.join(v for v, _ in served)}")
    served = [(str(version), dict(served)[str(version)])]
  from taxi_demand.lineage import store as lineage  # noqa: PLC0415
  snap = lineage.load(home.metadata)
  refs = {v: training_ref(snap, v) for v, _ in served}
  results = []
  for v, rows in served:
    ref = refs[v]
    schema = load_schema(ref.schema.uri)
    result = SkewResult(
        date=day.isoformat(), model_version=v, rows=rows,
        features=compare(load_training_statistics(ref.statistics.uri),
                         serving_statistics(log.rows_of(v), schema),
                         schema),
        training_statistics_uri=ref.statistics.uri,
        training_statistics_id=ref.statistics.id,
        schema_uri=ref.schema.uri)
    if record:
      result.report_uri = str(report_path(home, result.date, v))
      record_check(home.metadata, result, log.folder, day, len(log.files))
      write_report(result.report_uri, result,
                   [(str(p), r) for p, r in log.skipped])
    results.append(result)
  return DayReport(date=day.isoformat(), results=results,
                   skipped=[(str(p), r) for p, r in log.skipped])
