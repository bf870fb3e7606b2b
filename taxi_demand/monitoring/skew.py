"""Training-serving skew of one day of served features, three signals.

* Join skew (the main one). Every served row is keyed (cell, target slot,
  issued_at). The training path, the demand query in its training form at
  every lead, recomputes the same keys afterwards from the warehouse under
  the same arrival rule; per feature, the share of joined rows whose values
  differ and the mean relative difference. A serving path that computes a
  feature otherwise (reads the slot under way as complete, serves another
  unit, misses trips the warehouse holds) shows here on every row it
  touches, whatever the day's mix of hours.
* Staleness. Each served row carries its data's age: how long before the
  issue time the newest known trip arrived. A feed that stalls shows here
  even if it never resumes (then the training path has nothing more either).
* Distribution skew (the second signal): TFDV's skew comparators, the served
  rows' statistics against the training statistics of the model version
  that served them, found through lineage. A partial day (one hour served)
  is far from a 28-day distribution by its hour mix alone, so the training
  path's rows for the same keys are measured the same way, as a control,
  and a feature is flagged only if the served rows are further than the
  control by a margin, and beyond the schema's threshold.

`tfdv.DetectFeatureSkew` does the join on identifier features as a Beam
pipeline over tf.Examples and reports per feature how many pairs match or
mismatch, but not by how much they differ; a day's join is a few tens of
thousands of in-memory rows. So the join is done here, in Arrow, with the
mismatch rule DetectFeatureSkew applies to floats, and its mismatch counts
are the share's numerator (tests/test_skew.py runs DetectFeatureSkew on the
same rows and checks that the counts agree).

Logs written before forecasts carried their issue time cannot be joined:
their check falls back to distribution skew, and says so.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from pathlib import Path
from typing import (Any, Callable, Dict, List, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_demand import features
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand import objectstore
from taxi_demand import spans
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import ServingLogRecord
from taxi_demand.lineage.records import SkewRecord
from taxi_demand.serving import servelog

CHECK_TYPE = contract.SKEW_CHECK
REPORT_TYPE = contract.SKEW_REPORT
SERVING_LOG_TYPE = contract.SERVING_LOG
# The model learned from its window's days; the statistics of the newest of
# them stand for its training data (a span's one split is its day).
TRAINING_SPLIT = contract.DAY_SPLIT
STATS_FILE = contract.STATISTICS_FILE
SCHEMA_FILE = "schema.pbtxt"
# Join skew compares the model's inputs: the serving columns but the keys.
JOINED_FEATURES = tuple(c for c in features.SERVING_COLUMNS
                        if c not in features.KEYS)
STALENESS = "data_age"    # what a stale feed is flagged as
SUPPLY = servelog.PREDICTED_IDLE  # a served supply forecast not reproduced
# A served supply forecast matches its recomputation within this many idle
# taxis (or this share of it): the same code on the same trips gives the
# same floats, up to float64 noise.
SUPPLY_TOLERANCE = 1e-6
UNMATCHED_KEYS = "keys"   # served keys the training path does not emit
DEFAULT_MAX_DIFFERING = 0.05
DEFAULT_MAX_DATA_AGE_S = 15 * 60
DEFAULT_DISTRIBUTION_MARGIN = 0.5


@dataclasses.dataclass(frozen=True)
class Limits:
  """When the day's served rows are skewed.

  Attributes:
    max_differing: join skew: a feature is flagged if more than this share
      of the joined rows differ from the training path's value.
    max_data_age_s: staleness: flagged if a tick served data whose newest
      trip arrived longer ago than this.
    distribution_margin: distribution skew: flagged if the served distance
      exceeds the schema's threshold and the control's distance by more
      than this fraction of the threshold.
  """
  max_differing: float = DEFAULT_MAX_DIFFERING
  max_data_age_s: int = DEFAULT_MAX_DATA_AGE_S
  distribution_margin: float = DEFAULT_DISTRIBUTION_MARGIN

  def __post_init__(self):
    if not 0 <= self.max_differing < 1:
      raise TaxiDemandError(
          f"--max-differing must be in [0, 1), got {self.max_differing}")
    if self.max_data_age_s <= 0:
      raise TaxiDemandError(
          f"--max-data-age must be positive, got {self.max_data_age_s}s")
    if self.distribution_margin < 0:
      raise TaxiDemandError(f"the distribution margin must be >= 0, got "
                            f"{self.distribution_margin}")


@dataclasses.dataclass
class FeatureDiff:
  """One feature, served against the training path for the same keys."""
  differing: int
  share: float
  mean_relative_difference: float
  flagged: bool

  def to_dict(self) -> Dict[str, Any]:
    return {"differing": self.differing, "share": round(self.share, 6),
            "mean_relative_difference": round(
                self.mean_relative_difference, 6),
            "flagged": self.flagged}


@dataclasses.dataclass
class JoinSkew:
  """Served rows joined with the training path's rows on the keys."""
  served: int
  matched: int
  features: Dict[str, FeatureDiff]
  max_differing: float

  @property
  def unmatched(self) -> int:
    return self.served - self.matched

  @property
  def keys_flagged(self) -> bool:
    """Too many served keys the training path never emits: another slot
    length or cell grid served, or issue times off the training grid."""
    return self.served > 0 and \
        self.unmatched / self.served > self.max_differing

  @property
  def flagged(self) -> List[str]:
    found = [n for n, f in self.features.items() if f.flagged]
    return sorted(found + ([UNMATCHED_KEYS] if self.keys_flagged else []))

  def to_dict(self) -> Dict[str, Any]:
    return {"served": self.served, "matched": self.matched,
            "unmatched": self.unmatched, "max_differing": self.max_differing,
            "features": {n: f.to_dict() for n, f in sorted(
                self.features.items())}}


@dataclasses.dataclass
class Staleness:
  """How old the served data was, per tick."""
  ticks: int
  stale_ticks: int
  max_age_s: int
  limit_s: int
  first_stale: Optional[int]  # issued_at of the first stale tick

  @property
  def flagged(self) -> bool:
    return self.stale_ticks > 0

  def to_dict(self) -> Dict[str, Any]:
    return {"ticks": self.ticks, "stale_ticks": self.stale_ticks,
            "max_age_s": self.max_age_s, "limit_s": self.limit_s,
            "first_stale_issued_at": self.first_stale,
            "flagged": self.flagged}


@dataclasses.dataclass
class SupplySkew:
  """The served supply forecast against its recomputation at each served
  tick, from the warehouse, with the rates its rows name (the version's
  recorded ones, or the fit at serving), through the serving path
  (`predict.supply_forecast_for`)."""
  ticks: int
  compared: int              # served rows with a supply forecast
  differing: int
  max_abs_difference: float
  max_differing: float

  @property
  def share(self) -> float:
    return self.differing / self.compared if self.compared else 0.0

  @property
  def flagged(self) -> bool:
    return self.share > self.max_differing

  def reason(self) -> str:
    return (f"{SUPPLY}: the served supply forecast differs from its "
            f"recomputation with the rates it names on {self.share:.0%} of "
            f"{self.compared} served rows (up to "
            f"{self.max_abs_difference:.2f} idle taxis)")

  def to_dict(self) -> Dict[str, Any]:
    return {"ticks": self.ticks, "compared": self.compared,
            "differing": self.differing, "share": round(self.share, 6),
            "max_abs_difference": round(self.max_abs_difference, 6),
            "max_differing": self.max_differing, "flagged": self.flagged}


@dataclasses.dataclass
class FeatureSkew:
  """One feature's skew comparator outcome.

  `control` is the distance of the training path's rows for the same keys,
  measured the same way: what the batch's mix alone explains.
  """
  distance: Optional[float]
  threshold: float
  flagged: bool
  comparator: str
  note: Optional[str] = None
  control: Optional[float] = None

  def to_dict(self) -> Dict[str, Any]:
    out: Dict[str, Any] = {"distance": self.distance,
                           "threshold": self.threshold,
                           "control": self.control, "flagged": self.flagged}
    if self.note:
      out["note"] = self.note
    return out


@dataclasses.dataclass
class SkewResult:
  """The check of one model version's rows of one day.

  `features` is the distribution check; `join` and `staleness` are None
  where they could not be measured, and `notes` says why.
  """
  date: str
  model_version: str
  rows: int
  features: Dict[str, FeatureSkew]
  join: Optional[JoinSkew] = None
  staleness: Optional[Staleness] = None
  notes: List[str] = dataclasses.field(default_factory=list)
  supply: Optional[SupplySkew] = None
  training_statistics_uri: str = ""
  training_statistics_id: Optional[int] = None
  schema_uri: str = ""
  report_uri: Optional[str] = None
  execution_id: Optional[int] = None

  @property
  def alert(self) -> bool:
    return bool(self.flagged)

  @property
  def distribution_flagged(self) -> List[str]:
    return sorted(n for n, f in self.features.items() if f.flagged)

  @property
  def flagged(self) -> List[str]:
    """Flagged features, by any signal; STALENESS for a stale feed."""
    found = set(self.distribution_flagged)
    if self.join is not None:
      found.update(self.join.flagged)
    if self.staleness is not None and self.staleness.flagged:
      found.add(STALENESS)
    if self.supply is not None and self.supply.flagged:
      found.add(SUPPLY)
    return sorted(found)

  def reasons(self) -> List[str]:
    """One phrase per flagged signal and feature, for the alert line."""
    out = []
    if self.join is not None:
      if self.join.keys_flagged:
        out.append(f"{UNMATCHED_KEYS}: {self.join.unmatched} of "
                   f"{self.join.served} served rows have no training-path "
                   "row with the same (cell, slot, issued_at)")
      for name in self.join.flagged:
        if name == UNMATCHED_KEYS:
          continue
        diff = self.join.features[name]
        out.append(f"{name} differs from the training path on "
                   f"{diff.share:.0%} of served rows (mean relative difference "
                   f"{diff.mean_relative_difference:.2f})")
    for name in self.distribution_flagged:
      f = self.features[name]
      shown = "n/a" if f.distance is None else f"{f.distance:.3f}"
      out.append(f"{name} distribution distance {shown} > {f.threshold:g}")
    if self.staleness is not None and self.staleness.flagged:
      st = self.staleness
      out.append(f"{STALENESS}: {st.stale_ticks} of {st.ticks} ticks served "
                 f"data older than {st.limit_s // 60} min (up to "
                 f"{st.max_age_s // 60} min)")
    if self.supply is not None and self.supply.flagged:
      out.append(self.supply.reason())
    return out

  def to_dict(self) -> Dict[str, Any]:
    return {"date": self.date, "model_version": self.model_version,
            "alert": self.alert, "flagged": self.flagged, "rows": self.rows,
            "features": {n: f.to_dict() for n, f in sorted(
                self.features.items())},
            "join": None if self.join is None else self.join.to_dict(),
            "staleness": (None if self.staleness is None
                          else self.staleness.to_dict()),
            "supply": None if self.supply is None else self.supply.to_dict(),
            "notes": list(self.notes),
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


def _is_file(path: str) -> bool:
  """Through TensorFlow's file layer, as TFDV reads it: on Vertex an
  artifact's uri is gs://, which os.path knows nothing of."""
  import tensorflow as tf  # noqa: PLC0415
  return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def load_training_statistics(statistics_uri: str,
                             split: str = TRAINING_SPLIT):
  """The FeatureStats.pb of one split of an ExampleStatistics artifact."""
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  path = os.path.join(statistics_uri,
                      contract.SPLIT_FOLDER.format(split=split), STATS_FILE)
  if not _is_file(path):
    raise TaxiDemandError(f"no {split} statistics at {path}")
  return tfdv.load_stats_binary(path)


def load_schema(schema_uri: str):
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  path = schema_uri if schema_uri.endswith(".pbtxt") else os.path.join(
      schema_uri, SCHEMA_FILE)
  if not _is_file(path):
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


def compare(training_stats, serving_stats, schema, control_stats=None,
            margin: float = DEFAULT_DISTRIBUTION_MARGIN
            ) -> Dict[str, FeatureSkew]:
  """Distance, threshold and verdict of every skew comparator in `schema`.

  With `control_stats` (the training path's rows for the served keys), a
  feature is flagged only if its served distance also exceeds the control's
  by more than `margin` x its threshold: the distance the batch's own mix
  explains (one hour of a day against a 28-day window) is no skew.

  TFDV computes the distances (L-infinity over value frequencies for
  categorical features, approximate Jensen-Shannon divergence over
  histograms for numeric ones) and reports each in `drift_skew_info`,
  flagged or not; a distance above its threshold is also an anomaly. A
  comparator TFDV could not evaluate (the feature absent from one side)
  is reported with distance None and flagged: the served rows do not
  carry what the model was trained on.
  """
  no_counts = _without_value_counts(training_stats)
  measured = _distances(training_stats, serving_stats, schema)
  controls = ({} if control_stats is None else
              _distances(training_stats, control_stats, schema))
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
      limit = reported or threshold
      control = controls.get(name, (None, None))[0]
      flagged = value > limit and (
          control is None or value > control + margin * limit)
      out[name] = FeatureSkew(distance=value, threshold=limit,
                              flagged=flagged, comparator=kind,
                              control=control)
    else:
      out[name] = FeatureSkew(distance=None, threshold=threshold,
                              flagged=True, comparator=kind)
  return out


def _distances(training_stats, serving_stats, schema
               ) -> Dict[str, Tuple[float, float]]:
  """{feature: (distance, threshold)} as TFDV measures them."""
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
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
  return measured


# ---- join skew and staleness -------------------------------------------------

# Values are compared rounded to this many digits, as DetectFeatureSkew's
# float_round_ndigits does: the same query on the same trips gives the same
# float, and a stored float64 may differ in its last bits.
FLOAT_ROUND_NDIGITS = 6
_TRAINING_SUFFIX = "__training"


def join_skew(served: pa.Table, training: pa.Table,
              max_differing: float = DEFAULT_MAX_DIFFERING) -> JoinSkew:
  """Each served row against the training path's row with the same keys.

  Args:
    served: served rows (features.SERVING_COLUMNS at least).
    training: the training path's rows for (a superset of) the same keys.
    max_differing: a feature is flagged above this share of differing rows.

  A served key the training path lacks is counted as unmatched (not as a
  difference): its trips are gone from the warehouse, or the log was edited.
  """
  right = training.select(list(features.KEYS) + list(JOINED_FEATURES))
  right = right.rename_columns(
      list(features.KEYS) + [c + _TRAINING_SUFFIX for c in JOINED_FEATURES])
  # Duplicate keys on the training side would multiply served rows.
  if right.select(list(features.KEYS)).group_by(
      list(features.KEYS)).aggregate([]).num_rows != right.num_rows:
    raise TaxiDemandError("the training path emitted a key twice; the join "
                          "would count served rows twice")
  left = served.select(list(features.KEYS) + list(JOINED_FEATURES))
  joined = left.join(right, keys=list(features.KEYS), join_type="inner")
  out = {}
  n = joined.num_rows
  for name in JOINED_FEATURES:
    s = joined.column(name).to_numpy().astype(float)
    t = joined.column(name + _TRAINING_SUFFIX).to_numpy().astype(float)
    differs = (np.round(s, FLOAT_ROUND_NDIGITS) !=
               np.round(t, FLOAT_ROUND_NDIGITS))
    relative = np.abs(s - t) / np.maximum(np.abs(t), 1.0)
    count = int(differs.sum())
    share = count / n if n else 0.0
    out[name] = FeatureDiff(
        differing=count, share=share,
        mean_relative_difference=float(relative.mean()) if n else 0.0,
        flagged=share > max_differing)
  return JoinSkew(served=served.num_rows, matched=n, features=out,
                  max_differing=max_differing)


def staleness(served: pa.Table, limit_s: int = DEFAULT_MAX_DATA_AGE_S
              ) -> Optional[Staleness]:
  """Per tick (issue time), the served data's age against `limit_s`.

  None if the rows carry no data age (logs from before it was recorded).
  """
  known = served.filter(pc.and_(
      pc.is_valid(served.column(features.ISSUED_AT)),
      pc.is_valid(served.column(servelog.DATA_AGE_S))))
  if known.num_rows == 0:
    return None
  by_tick = pa.table({"t": known.column(features.ISSUED_AT),
                      "age": known.column(servelog.DATA_AGE_S)}
                     ).group_by("t").aggregate([("age", "max")])
  ticks = by_tick.column("t").to_numpy()
  age = by_tick.column("age_max").to_numpy()
  order = np.argsort(ticks)
  ticks, age = ticks[order], age[order]
  stale = age > limit_s
  return Staleness(ticks=len(ticks), stale_ticks=int(stale.sum()),
                   max_age_s=int(age.max()), limit_s=int(limit_s),
                   first_stale=int(ticks[stale][0]) if stale.any() else None)


def _without_value_counts(stats) -> set:
  """Features whose statistics carry no categorical value counts."""
  out = set()
  for dataset in stats.datasets[:1]:
    for f in dataset.features:
      name = ".".join(f.path.step) if f.HasField("path") else f.name
      if f.WhichOneof("stats") != "string_stats":
        out.add(name)
  return out


def write_report(path: Union[str, os.PathLike], result: SkewResult,
                 skipped: Sequence[Tuple[str, str]] = ()) -> None:
  """Writes the report whole, to a local path or a gs:// address (the
  SkewValidator's artifact on Vertex)."""
  body = {**result.to_dict(),
          "skipped_files": [{"file": f, "reason": r} for f, r in skipped]}
  folder, name = objectstore.split(path)
  objectstore.at(folder).write_bytes(
      name, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())


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


def _serving_log_artifact(store, folder: Union[Path, str], day: datetime.date):
  """The ServingLog artifact of a day's partition, registered on first use."""
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  from taxi_demand.lineage import record  # noqa: PLC0415
  uri = str(folder)
  existing = record.find_artifact(store, SERVING_LOG_TYPE, uri)
  if existing is not None:
    return existing
  type_id = store.put_artifact_type(pb.ArtifactType(name=SERVING_LOG_TYPE))
  artifact = pb.Artifact(type_id=type_id, uri=uri, state=pb.Artifact.LIVE)
  ServingLogRecord(date=day.isoformat(), span=spans.span_of(day)).write(
      artifact)
  [artifact_id] = store.put_artifacts([artifact])
  return store.get_artifacts_by_id([artifact_id])[0]


def record_check(metadata_path: os.PathLike, result: SkewResult,
                 log_folder: Union[Path, str], day: datetime.date,
                 rows_files: int) -> None:
  """Records the check in MLMD: training statistics + serving log in, report
  out; sets result.execution_id."""
  from taxi_demand.lineage import record  # noqa: PLC0415
  store = record.open_writable(metadata_path)
  log_artifact = _serving_log_artifact(store, log_folder, day)
  inputs = {"statistics": store.get_artifacts_by_id(
      [result.training_statistics_id]), "serving_log": [log_artifact]}
  report = SkewRecord(date=result.date, model_version=result.model_version,
                      alert=result.alert, flagged=tuple(result.flagged))
  ids = record.record_execution(
      store, CHECK_TYPE,
      properties={**dataclasses.replace(report, rows=result.rows,
                                        files=rows_files).properties(),
                  **_signal_properties(result)},
      inputs=inputs,
      outputs={"report": [record.NewArtifact(
          REPORT_TYPE, result.report_uri, report.properties())]})
  result.execution_id = ids["execution_id"]


def _signal_properties(result: SkewResult) -> Dict[str, Any]:
  """What each signal measured, as execution properties."""
  out: Dict[str, Any] = {"join_checked": result.join is not None,
                         "notes": " | ".join(result.notes)}
  if result.join is not None:
    worst = max(result.join.features.values(), key=lambda f: f.share)
    out.update(join_matched=result.join.matched,
               join_max_share=round(worst.share, 6),
               join_flagged=",".join(result.join.flagged))
  if result.staleness is not None:
    out.update(max_data_age_s=result.staleness.max_age_s,
               stale_ticks=result.staleness.stale_ticks)
  out["distribution_flagged"] = ",".join(result.distribution_flagged)
  return out


def history(snap, version: Optional[str] = None) -> List[Dict[str, Any]]:
  """Recorded skew checks, oldest first, optionally of one model version."""
  out = []
  for ex in snap.executions_of(CHECK_TYPE):
    check = SkewRecord.read(ex)
    if version is not None and str(check.model_version) != str(version):
      continue
    reports = snap.outputs(ex.execution_id).get(contract.REPORT) or []
    out.append({"date": check.date,
                "model_version": check.model_version,
                "alert": bool(check.alert),
                "flagged": list(check.flagged),
                "rows": check.rows,
                "report_uri": reports[0].uri if reports else None,
                "execution_id": ex.execution_id,
                "checked_at_ms": ex.start_ms})
  return out


# ---- the check of one version's rows ---------------------------------------

def recompute(warehouse_path: Union[str, os.PathLike], cfg, served: pa.Table
              ) -> Tuple[Optional[pa.Table], Optional[str]]:
  """The training path's rows at every lead for the served target slots.

  Returns (rows, None), or (None, why not) when the warehouse cannot give
  them (missing, or no longer holding the day and its history).
  """
  from taxi_demand.data import reader  # noqa: PLC0415
  if not reader.warehouse_exists(warehouse_path):
    return None, f"no warehouse at {warehouse_path or '(none given)'}"
  slots = served.column(features.SLOT_START)
  begin = int(pc.min(slots).as_py())
  end = int(pc.max(slots).as_py()) + cfg.slot_seconds
  try:
    with reader.open_reader(warehouse_path) as wh:
      covered = wh.span_range()
      need = spans.span_of_epoch(begin) - features.LOOKBACK_DAYS
      if covered is None or covered[0] > need:
        return None, (
            "the warehouse no longer holds the served day's 7-day history")
      return wh.every_lead_features(cfg, begin, end), None
  except TaxiDemandError as e:
    from taxi_demand import cloud  # noqa: PLC0415
    if cloud.is_bigquery(warehouse_path):
      # Credentials, a role, a quota: not what the day's data is. Checked
      # again when BigQuery answers, not recorded as a check without a join.
      raise
    return None, str(e)


def _semi_join(rows: pa.Table, keys_of: pa.Table, keys) -> pa.Table:
  """`rows` whose `keys` occur in `keys_of`."""
  keys = list(keys)
  wanted = keys_of.select(keys).group_by(keys).aggregate([])
  return rows.join(wanted, keys=keys, join_type="left semi")


def evaluate(rows: pa.Table, training_stats, schema,
             training_rows: Optional[pa.Table], *,
             has_issue_times: bool = True, why_no_training: str = "",
             limits: Limits = Limits()) -> Dict[str, Any]:
  """The three signals for one version's served rows of a day.

  Args:
    rows: the served rows (servelog columns).
    training_stats: the training statistics of the version that served.
    schema: its schema, with the skew comparators.
    training_rows: `recompute`'s rows, or None (`why_no_training` says why).
    has_issue_times: False for logs from before rows carried their issue
      time: no join, and the distribution control joins on (cell, slot).
    limits: the alert limits.

  Returns:
    SkewResult's `features`, `join`, `staleness` and `notes` fields.
  """
  notes: List[str] = []
  join, control = None, None
  if training_rows is None:
    notes.append(f"join skew not checked: {why_no_training}; "
                 "distribution skew only, uncalibrated for partial days")
  elif not has_issue_times:
    notes.append("the serving log predates issue times, so served rows "
                 "cannot be joined with the training path: distribution "
                 "skew only")
    control = _semi_join(training_rows, rows,
                         (features.CELL, features.SLOT_START))
  else:
    join = join_skew(rows, training_rows, limits.max_differing)
    if join.unmatched:
      notes.append(f"{join.unmatched} served row(s) have no training-path "
                   "row with the same keys (their trips are no longer in "
                   "the warehouse, or another slot length served them)")
    control = _semi_join(training_rows, rows, features.KEYS)
  stale = staleness(rows, limits.max_data_age_s)
  if stale is None:
    notes.append("the serving log records no data age: staleness not "
                 "checked")
  control_stats = (serving_statistics(control, schema)
                   if control is not None and control.num_rows else None)
  return {"features": compare(training_stats,
                              serving_statistics(rows, schema), schema,
                              control_stats=control_stats,
                              margin=limits.distribution_margin),
          "join": join, "staleness": stale, "notes": notes}


def supply_skew(warehouse_path, cfg, served: pa.Table, rates_of: Callable,
                max_differing: float = DEFAULT_MAX_DIFFERING
                ) -> Tuple[Optional[SupplySkew], Optional[str]]:
  """The served supply forecast, tick by tick, against the same forecast
  made again from the warehouse with the rates each tick's rows name.

  Args:
    warehouse_path: the warehouse the 5-minute job read.
    cfg: the serving version's QueryConfig.
    served: served rows of a day (servelog columns).
    rates_of: version -> its recorded rates
      (`supply_rates.RecordedRates`) or None; asked only for a version
      whose rows name recorded rates.
    max_differing: flagged above this share of differing rows.

  Returns:
    (SupplySkew, None), or (None, why not checked).
  """
  from taxi_demand import supply_rates  # noqa: PLC0415
  from taxi_demand.data import reader  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  rows = served.filter(pc.and_(
      pc.is_valid(served.column(servelog.PREDICTED_IDLE)),
      pc.is_valid(served.column(features.ISSUED_AT))))
  if rows.num_rows == 0:
    return None, "no served row carries a supply forecast and its issue time"
  if not reader.warehouse_exists(warehouse_path):
    return None, f"no warehouse at {warehouse_path or '(none given)'}"
  # Logs from before the tag were served with the fit at serving.
  tags = np.array([t or supply_rates.FIT_AT_SERVING for t in
                   rows.column(servelog.SUPPLY_RATES).to_pylist()], object)
  versions = np.array(rows.column(servelog.MODEL_VERSION).to_pylist(), object)
  ticks = rows.column(features.ISSUED_AT).to_numpy()
  again = np.full(rows.num_rows, np.nan)
  for key in sorted(set(zip(versions, tags, ticks))):
    version, tag, tick = key
    recorded = None
    if tag != supply_rates.FIT_AT_SERVING:
      recorded = rates_of(version)
      if recorded is None:
        return None, (f"the rows of version {version} name supply rates "
                      "recorded with it, and its folder holds none (pruned, "
                      "or copied by hand)")
    at = np.flatnonzero((versions == version) & (tags == tag) &
                        (ticks == tick))
    values, _ = predict.supply_forecast_for(
        warehouse_path, cfg, rows.take(pa.array(at)), recorded)
    if values is not None:
      again[at] = values
  served_idle = rows.column(servelog.PREDICTED_IDLE).to_numpy()
  difference = np.abs(served_idle - again)
  # A forecast not made again at all (no taxi_id in the warehouse now)
  # differs too.
  differs = ~(difference <= SUPPLY_TOLERANCE * np.maximum(1.0,
                                                          np.abs(again)))
  worst = np.nanmax(difference) if np.isfinite(difference).any() else np.inf
  return SupplySkew(ticks=len(np.unique(ticks)), compared=rows.num_rows,
                    differing=int(differs.sum()),
                    max_abs_difference=float(worst),
                    max_differing=max_differing), None


# ---- the day check ---------------------------------------------------------

def recorded_rates(models_dir, version: str):
  """The supply rates recorded with a pushed version
  (`supply_rates.recorded`), or None if it has none or its folder is gone."""
  from taxi_demand import supply_rates  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  try:
    return supply_rates.recorded(registry.local_copy(models_dir, version))
  except TaxiDemandError:  # pruned: only ML Metadata remembers it
    return None


def report_path(home: Home, date: str, version: str) -> Path:
  stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
  return home.root / "reports" / "skew" / f"{date}-v{version}-{stamp}.json"


def require_warehouse(home: Home) -> None:
  """Fails in one line unless the home has its warehouse.

  Without it there is no training path: no join, no control for the
  distributions, so a partial day would read as skewed by its hour mix
  alone, and that false alert would be recorded for good.
  """
  from taxi_demand.data import reader  # noqa: PLC0415
  if not reader.warehouse_exists(home.warehouse):
    raise TaxiDemandError(
        f"no warehouse at {home.warehouse}: skew recomputes the served rows "
        "through the training path from it; load the trips (taxi-demand "
        "load) or give the --home that served them")


def check_day(home: Home, day: datetime.date, version: Optional[str] = None,
              record: bool = True, limits: Limits = Limits(),
              log_root: Optional[os.PathLike] = None) -> DayReport:
  """Checks the served features of `day`, each version against its own
  training statistics and its own training path.

  Args:
    home: the state directory (serving log, metadata, warehouse, reports).
    day: the slot day to check.
    version: check only this version's rows (default: every version found).
    record: record each check in ML Metadata and write its JSON report.
    limits: the alert limits.
    log_root: the log to check: the served log (default), or
      home.replay_log for what a replay served (a drill, a benchmark).

  Returns:
    The report; results[0] is the version that served the most rows.
  """
  from taxi_demand.serving import predict  # noqa: PLC0415 - no TensorFlow
  require_warehouse(home)
  log = servelog.read_day(log_root or home.serving_log, day)
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
  for v, count in served:
    ref = refs[v]
    rows = log.rows_of(v)
    schema = load_schema(ref.schema.uri)
    cfg = predict.query_config_of(home, v, snap)
    training_rows, why = recompute(home.warehouse, cfg, rows)
    supply, why_not_supply = supply_skew(
        home.warehouse, cfg, rows,
        lambda version: recorded_rates(home.models, version),
        limits.max_differing)
    result = SkewResult(
        date=day.isoformat(), model_version=v, rows=count,
        **evaluate(rows, load_training_statistics(ref.statistics.uri),
                   schema, training_rows, has_issue_times=log.has_issue_times,
                   why_no_training=why, limits=limits),
        training_statistics_uri=ref.statistics.uri,
        training_statistics_id=ref.statistics.id,
        schema_uri=ref.schema.uri, supply=supply)
    if why_not_supply:
      result.notes.append(f"supply forecast not checked: {why_not_supply}")
    if record:
      result.report_uri = str(report_path(home, result.date, v))
      record_check(home.metadata, result, log.folder, day, len(log.files))
      write_report(result.report_uri, result,
                   [(str(p), r) for p, r in log.skipped])
    results.append(result)
  return DayReport(date=day.isoformat(), results=results,
                   skipped=[(str(p), r) for p, r in log.skipped])
