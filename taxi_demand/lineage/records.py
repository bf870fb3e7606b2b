"""One typed record per custom output: the only code that names its properties.

Each class below is what one of this pipeline's own outputs records in ML
Metadata: DataGate's report, a blessing (the Evaluator's and ForecastGate's),
the skew report, the next-day result, the guidance result and the ingest
fingerprint. A field's name IS the stored property's name, so a record writes
its properties one way (`write`, or `properties()` for a writer that takes a
mapping) and reads them back one way (`read`), whatever holds them: a TFX
artifact in a component, an ml_metadata proto in the metadata commands and
the synthetic stores, or a store view (`store.ArtifactView`). Stores written
by older code read alike: no stored name or type changed, and a property an
older writer left out reads as the field's default (documented there).

The one policy for None: it is not written. An absent property reads back as
its field's default, and so does "" in a number or flag field (older writers
recorded None as ""). Standard library only, like `contract`: the metadata
commands import this without TensorFlow or TFX.
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type, TypeVar

R = TypeVar("R", bound="Record")

# How a field's value is stored: its kind names the codec below.
_FLAG, _INT, _FLOAT, _TEXT, _LIST, _JSON = ("flag", "int", "float", "text",
                                            "list", "json")


def _field(kind: str, default: Any = None) -> Any:
  """A record field stored as `kind` (see _encode); `default` is what an
  absent property reads as."""
  return dataclasses.field(default=default, metadata={"kind": kind})


# --- the one property writer ----------------------------------------------------


def set_value(value_proto, value: Any) -> None:
  """Writes one plain value into an MLMD Value proto.

  bool and int as int, float as double, a dict or list as its JSON (sorted
  keys), anything else as its string. Callers leave None out (the policy
  above), so it never reaches here.
  """
  if isinstance(value, (bool, int)):
    value_proto.int_value = int(value)
  elif isinstance(value, float):
    value_proto.double_value = value
  elif isinstance(value, (dict, list)):
    value_proto.string_value = json.dumps(value, sort_keys=True)
  else:
    value_proto.string_value = str(value)


def write_values(target, values: Mapping[str, Any]) -> None:
  """Writes plain `values` onto `target`, leaving out every None.

  Args:
    target: a TFX artifact, an ml_metadata Artifact or Execution proto, a
      proto's property map (`custom_properties`), or a plain dict (such as
      a driver's exec_properties), which receives the values as they are.
    values: {property name: plain value}.
  """
  if hasattr(target, "mlmd_artifact"):      # a TFX artifact wraps its proto
    target = target.mlmd_artifact
  if hasattr(target, "custom_properties"):  # an Artifact or Execution proto
    target = target.custom_properties
  for name, value in values.items():
    if value is None:
      continue
    if isinstance(target, dict):
      target[name] = value
    else:
      set_value(target[name], value)


def plain_properties(source) -> Mapping[str, Any]:
  """{name: plain value} of a TFX artifact, a proto, a store view or a dict."""
  if hasattr(source, "mlmd_artifact"):
    source = source.mlmd_artifact
  if hasattr(source, "custom_properties"):
    from taxi_demand.lineage import store  # noqa: PLC0415
    return store.properties_of(source)
  if isinstance(source, Mapping):
    return source
  return source.properties  # store.ArtifactView or NodeExecution


# --- the codecs -------------------------------------------------------------------


def _encode(kind: str, value: Any) -> Any:
  if value is None:
    return None
  if kind == _FLAG:
    return int(bool(value))
  if kind == _INT:
    return int(value)
  if kind == _FLOAT:
    return float(value)
  if kind == _LIST:
    return ",".join(str(v) for v in value)
  if kind == _JSON:
    return json.dumps(value, sort_keys=True)
  return str(value)


def _decode(kind: str, value: Any, default: Any) -> Any:
  if value is None or (value == "" and kind != _TEXT):
    return default
  if kind == _FLAG:
    return bool(int(value))
  if kind == _INT:
    return int(value)
  if kind == _FLOAT:
    return float(value)
  if kind == _LIST:
    if isinstance(value, (list, tuple)):
      return tuple(str(v) for v in value)
    return tuple(v for v in str(value).split(",") if v)
  if kind == _JSON:
    if isinstance(value, str):
      try:
        return json.loads(value)
      except ValueError:
        return default
    return value
  return str(value)


def _fields(record: Any) -> Tuple[dataclasses.Field, ...]:
  """A record class's (or instance's) fields: every subclass is a dataclass."""
  return dataclasses.fields(record)


class Record:
  """A custom output's properties: written and read only through here."""

  @classmethod
  def property_names(cls) -> Tuple[str, ...]:
    """The names this record stores, in declaration order."""
    return tuple(f.name for f in _fields(cls))

  @classmethod
  def names(cls) -> types.SimpleNamespace:
    """The stored names as attributes, for code that must spell one (a
    filter query, a DSL predicate): `DataGateRecord.names().passed`."""
    return types.SimpleNamespace(**{n: n for n in cls.property_names()})

  def properties(self) -> Dict[str, Any]:
    """{name: stored value}, None left out: for writers taking a mapping."""
    out = {}
    for f in _fields(self):
      value = _encode(f.metadata["kind"], getattr(self, f.name))
      if value is not None:
        out[f.name] = value
    return out

  def write(self, target) -> None:
    """Writes the properties onto a TFX artifact, a proto or a dict."""
    write_values(target, self.properties())

  @classmethod
  def read(cls: Type[R], source) -> R:
    """The record a TFX artifact, a proto, a store view or a dict holds.

    A dict of figures in plain Python values (a component's result, a CLI's
    JSON) reads alike; keys that are not properties are ignored.
    """
    props = plain_properties(source)
    return cls(**{f.name: _decode(f.metadata["kind"], props.get(f.name),
                                  f.default)
                  for f in _fields(cls)})


# --- the records ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataGateRecord(Record):
  """DataGate's report (an ExampleAnomalies artifact) on the run's day.

  `passed` is what the pipeline's Cond around the training nodes reads.
  """
  eval_examples: Optional[int] = _field(_INT)
  anomaly_count: Optional[int] = _field(_INT)
  drift_checked: Optional[bool] = _field(_FLAG)
  passed: Optional[bool] = _field(_FLAG)


@dataclasses.dataclass(frozen=True)
class BlessingRecord(Record):
  """A ModelBlessing's verdict, as TFX's Evaluator and ForecastGate write it."""
  blessed: Optional[bool] = _field(_FLAG)


@dataclasses.dataclass(frozen=True)
class ForecastGateRecord(BlessingRecord):
  """ForecastGate's blessing: the verdict, the model judged, the eval-day
  figures and why it refused (see pipeline/components/forecast_gate.py)."""
  # 1 on ForecastGate's blessings only: the Evaluator's carries `blessed`
  # too, and on Vertex the baseline resolver keeps the marked ones.
  forecast_gate: Optional[bool] = _field(_FLAG)
  current_model_id: Optional[int] = _field(_INT)
  current_model: Optional[str] = _field(_TEXT)
  span: Optional[int] = _field(_INT)     # the day the blessing judged
  model_mae: Optional[float] = _field(_FLOAT)
  model_rmse: Optional[float] = _field(_FLOAT)
  model_bias: Optional[float] = _field(_FLOAT)
  seasonal_naive_mae: Optional[float] = _field(_FLOAT)
  seasonal_naive_rmse: Optional[float] = _field(_FLOAT)
  baseline_model_mae: Optional[float] = _field(_FLOAT)
  # Against the baseline model (absent on the first run): the paired MAE
  # difference D (> 0: the candidate is worse), its standard error over the
  # day's cells, the z it was judged with, and the verdict: worse beyond
  # the tolerance and z x noise.
  change_mae: Optional[float] = _field(_FLOAT)
  change_noise: Optional[float] = _field(_FLOAT)
  change_z: Optional[float] = _field(_FLOAT)
  change_worse: Optional[bool] = _field(_FLAG)
  # What refused the model, then what the decision was made without.
  reasons: Optional[str] = _field(_TEXT)
  # The checks that could not measure the day (e.g. "guidance").
  unmeasured: Tuple[str, ...] = _field(_LIST, default=())

  # The figures runs/show/diff report, in display order.
  METRICS: ClassVar[Tuple[str, ...]] = ("model_mae", "model_rmse", "model_bias",
                                        "seasonal_naive_mae",
                                        "seasonal_naive_rmse",
                                        "baseline_model_mae", "change_mae",
                                        "change_noise")

  def metrics(self) -> Dict[str, float]:
    """{METRICS name: value} of the figures recorded."""
    return {k: getattr(self, k) for k in self.METRICS
            if getattr(self, k) is not None}


@dataclasses.dataclass(frozen=True)
class SkewRecord(Record):
  """A skew check's report (SkewValidator's artifact, or the CLI's) and the
  CLI's SkewCheck execution."""
  date: Optional[str] = _field(_TEXT)
  span: Optional[int] = _field(_INT)
  # Reports from before `checked` was recorded were checks.
  checked: bool = _field(_FLAG, default=True)
  alert: Optional[bool] = _field(_FLAG)
  model_version: Optional[str] = _field(_TEXT)
  flagged: Tuple[str, ...] = _field(_LIST, default=())
  rows: Optional[int] = _field(_INT)
  files: Optional[int] = _field(_INT)         # the CLI's: log files read
  skipped_files: Any = _field(_JSON)          # the node's: [path, ...]


@dataclasses.dataclass(frozen=True)
class ServingLogRecord(Record):
  """A served log's day partition, the input a skew check read."""
  date: Optional[str] = _field(_TEXT)
  span: Optional[int] = _field(_INT)


@dataclasses.dataclass(frozen=True)
class NextDayRecord(Record):
  """How the model serving on a day did on that day's demand (NextDayResult
  and the CLI's NextDayValidation execution)."""
  date: Optional[str] = _field(_TEXT)
  span: Optional[int] = _field(_INT)
  model_version: Optional[str] = _field(_TEXT)
  model_id: Optional[int] = _field(_INT)      # the node's: the model scored
  source: Optional[str] = _field(_TEXT)       # "pipeline" or "cli"
  mae: Optional[float] = _field(_FLOAT)
  rmse: Optional[float] = _field(_FLOAT)
  seasonal_naive_mae: Optional[float] = _field(_FLOAT)
  seasonal_naive_rmse: Optional[float] = _field(_FLOAT)
  eval_mae: Optional[float] = _field(_FLOAT)  # its blessing's model_mae
  examples: Optional[int] = _field(_INT)
  alert: Optional[bool] = _field(_FLAG)
  reason: Optional[str] = _field(_TEXT)
  served_forecasts: Optional[int] = _field(_INT)
  served_versions: Optional[str] = _field(_TEXT)
  served_note: Optional[str] = _field(_TEXT)
  served_by_lead: Any = _field(_JSON)         # {lead: figures}, as JSON
  # The supply forecast served beside it (predicted_idle_taxis), against
  # the idle taxis of the day and idle now carried forward.
  served_supply_mae: Optional[float] = _field(_FLOAT)
  served_supply_naive_mae: Optional[float] = _field(_FLOAT)
  served_supply_note: Optional[str] = _field(_TEXT)
  served_supply_by_lead: Any = _field(_JSON)  # {lead: figures}, as JSON


@dataclasses.dataclass(frozen=True)
class GuidanceRecord(Record):
  """GuidanceGate's result: a fleet following each model's forecasts."""
  span: Optional[int] = _field(_INT)
  # Results from before `measured` was recorded were measured.
  measured: bool = _field(_FLAG, default=True)
  passed: Optional[bool] = _field(_FLAG)
  reason: Optional[str] = _field(_TEXT)
  margin: Optional[float] = _field(_FLOAT)
  min_passengers: Optional[int] = _field(_INT)
  taxis: Optional[int] = _field(_INT)
  passengers: Optional[int] = _field(_INT)
  stay_empty_share: Optional[float] = _field(_FLOAT)
  stay_pickups_per_taxi_hour: Optional[float] = _field(_FLOAT)
  candidate_pickups_per_taxi_hour: Optional[float] = _field(_FLOAT)
  baseline_pickups_per_taxi_hour: Optional[float] = _field(_FLOAT)
  # What the fleet shared a cell's pickups with (supply.Basis: "forecast"
  # or "idle-now"), as `recommend --supply` names it.
  supply_basis: Optional[str] = _field(_TEXT)


@dataclasses.dataclass(frozen=True)
class IngestFingerprint(Record):
  """What a day's ExampleGen read: its trips' fingerprint and the query's key.

  Stored as one string property, "<trips>:query=<key>" (TFX's
  `input_fingerprint`, which also enters the cache key). A fingerprint
  without a query key (the synthetic stores') is stored as the trips alone.
  """
  trips: str = ""
  query: Optional[str] = None

  PROPERTY: ClassVar[str] = "input_fingerprint"
  _QUERY: ClassVar[str] = ":query="

  @classmethod
  def property_names(cls) -> Tuple[str, ...]:
    return (cls.PROPERTY,)

  def text(self) -> str:
    """The stored string."""
    return self.trips if self.query is None else (
        f"{self.trips}{self._QUERY}{self.query}")

  @classmethod
  def parse(cls, text: str) -> "IngestFingerprint":
    """The fingerprint a stored string holds."""
    trips, sep, query = str(text).rpartition(cls._QUERY)
    return cls(trips, query) if sep else cls(str(text), None)

  def properties(self) -> Dict[str, Any]:
    return {self.PROPERTY: self.text()}

  @classmethod
  def read(cls, source) -> Optional["IngestFingerprint"]:  # type: ignore[override]
    """The fingerprint recorded on `source`, or None if it has none."""
    text = plain_properties(source).get(cls.PROPERTY)
    return None if text in (None, "") else cls.parse(text)


RECORDS: Tuple[Type[Record], ...] = (DataGateRecord, BlessingRecord,
                                     ForecastGateRecord, SkewRecord,
                                     ServingLogRecord, NextDayRecord, GuidanceRecord,
                                     IngestFingerprint)
