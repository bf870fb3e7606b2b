"""The typed records of the custom outputs: round trips, stored names and
types, the None policy, and no property named outside the record classes."""

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, TypeGuard

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from taxi_demand.lineage import contract
from taxi_demand.lineage import record
from taxi_demand.lineage import records
from taxi_demand.lineage import store

ROOT = Path(__file__).resolve().parent.parent
RECORDS_FILE = ROOT / "taxi_demand" / "lineage" / "records.py"
# The package's source: the library, the pipeline and the runners.
SOURCES = sorted([*(ROOT / "taxi_demand").rglob("*.py"),
                  *(ROOT / "pipeline").rglob("*.py"),
                  *ROOT.glob("runner_*.py")])

# A value of each kind a field is stored as (records._field).
SAMPLE = {"flag": True, "int": 7, "float": 0.25, "text": "x",
          "list": ("a", "b"), "json": {"5": {"mae": 0.5}}}
TYPED = [r for r in records.RECORDS if r is not records.IngestFingerprint]


def sample(cls):
  """A record with every field set to a value that is not its default."""
  return cls(**{f.name: SAMPLE[f.metadata["kind"]]
                for f in dataclasses.fields(cls)})


def tfx_artifact():
  from tfx import types  # noqa: PLC0415

  class Made(types.Artifact):
    TYPE_NAME = "taxi_demand.TestRecord"
  return Made()


# --- round trips ----------------------------------------------------------------


@pytest.mark.parametrize("cls", TYPED, ids=lambda c: c.__name__)
def test_a_record_reads_back_what_it_wrote_on_a_tfx_artifact(cls):
  made = sample(cls)
  artifact = tfx_artifact()
  made.write(artifact)
  assert cls.read(artifact) == made
  # The metadata commands read the same proto, without TFX.
  assert cls.read(artifact.mlmd_artifact) == made


@pytest.mark.parametrize("cls", TYPED, ids=lambda c: c.__name__)
def test_a_record_reads_back_what_it_wrote_on_a_proto_and_in_a_store(
    cls, tmp_path):
  made = sample(cls)
  artifact = pb.Artifact(uri=str(tmp_path / "out"))
  made.write(artifact)
  assert cls.read(artifact) == made
  # Through ML Metadata and the store's reader, as the CLI reads it.
  writable = record.open_writable(_new_store(tmp_path))
  record.record_execution(writable, "taxi_demand.Test", made.properties(), {},
                          {"out": [record.NewArtifact(
                              "taxi_demand.TestRecord", artifact.uri,
                              made.properties())]})
  snap = store.load(tmp_path / "metadata.sqlite")
  [view] = snap.artifacts_of("taxi_demand.TestRecord")
  [execution] = snap.executions_of("taxi_demand.Test")
  assert cls.read(view) == made == cls.read(execution)


def test_the_judgement_against_the_serving_model_survives_ml_metadata(
    tmp_path):
  """ForecastGate's D, noise, z and verdict, written into a real store and
  read back the way `runs`, `show` and `diff` read them."""
  made = records.ForecastGateRecord(
      blessed=False, forecast_gate=True, model_mae=2.4115,
      baseline_model_mae=2.3677, change_mae=0.0438, change_noise=0.0375,
      change_z=2.0, change_worse=False, reasons="")
  writable = record.open_writable(_new_store(tmp_path))
  record.record_execution(writable, "taxi_demand.Test", {}, {},
                          {"out": [record.NewArtifact(
                              contract.MODEL_BLESSING_TYPE,
                              str(tmp_path / "blessing"),
                              made.properties())]})
  [view] = store.load(tmp_path / "metadata.sqlite").artifacts_of(
      contract.MODEL_BLESSING_TYPE)
  read = records.ForecastGateRecord.read(view)
  assert read == made
  assert (read.change_mae, read.change_noise, read.change_z,
          read.change_worse) == (0.0438, 0.0375, 2.0, False)
  assert read.metrics()["change_noise"] == 0.0375
  # The first run's blessing records no comparison, and reads as None.
  first = records.ForecastGateRecord(blessed=True, model_mae=1.0)
  assert "change_mae" not in first.properties()
  assert records.ForecastGateRecord.read(first.properties()).change_z is None


def _new_store(tmp_path: Path) -> Path:
  from ml_metadata import metadata_store  # noqa: PLC0415
  path = tmp_path / "metadata.sqlite"
  config = pb.ConnectionConfig()
  config.sqlite.filename_uri = str(path)
  config.sqlite.connection_mode = 3  # READWRITE_OPENCREATE
  metadata_store.MetadataStore(config)
  return path


def test_the_ingest_fingerprint_is_one_string_in_tfx_s_property():
  from tfx.components.example_gen import utils  # noqa: PLC0415
  assert records.IngestFingerprint.PROPERTY == utils.FINGERPRINT_PROPERTY_NAME
  made = records.IngestFingerprint(trips="abc:1", query="q1")
  assert made.text() == "abc:1:query=q1"   # the format older stores hold
  assert records.IngestFingerprint.parse("abc:1:query=q1") == made
  artifact, exec_properties = tfx_artifact(), {}
  made.write(artifact)
  made.write(exec_properties)               # the driver's exec properties
  assert records.IngestFingerprint.read(artifact) == made
  assert exec_properties == {utils.FINGERPRINT_PROPERTY_NAME: made.text()}
  # The synthetic stores' fingerprints name no query.
  assert records.IngestFingerprint.parse("synthetic:5").query is None
  assert records.IngestFingerprint.read(pb.Artifact()) is None


# --- what older stores hold -------------------------------------------------------

# The names and MLMD value kinds the stores written so far hold: a record
# may add a property, never rename one or change its kind.
STORED: Dict[Any, Dict[str, str]] = {
    records.DataGateRecord: {"eval_examples": "int_value",
                             "anomaly_count": "int_value",
                             "drift_checked": "int_value",
                             "passed": "int_value"},
    records.ForecastGateRecord: {
        "blessed": "int_value", "forecast_gate": "int_value",
        "current_model_id": "int_value", "current_model": "string_value",
        "span": "int_value", "model_mae": "double_value",
        "model_rmse": "double_value", "model_bias": "double_value",
        "seasonal_naive_mae": "double_value",
        "seasonal_naive_rmse": "double_value",
        "baseline_model_mae": "double_value", "reasons": "string_value",
        "change_mae": "double_value", "change_noise": "double_value",
        "change_z": "double_value", "change_worse": "int_value",
        "unmeasured": "string_value"},
    records.SkewRecord: {"date": "string_value", "span": "int_value",
                         "checked": "int_value", "alert": "int_value",
                         "model_version": "string_value",
                         "flagged": "string_value", "rows": "int_value",
                         "files": "int_value",
                         "skipped_files": "string_value"},
    records.NextDayRecord: {
        "date": "string_value", "span": "int_value",
        "model_version": "string_value", "model_id": "int_value",
        "source": "string_value", "mae": "double_value",
        "rmse": "double_value", "seasonal_naive_mae": "double_value",
        "seasonal_naive_rmse": "double_value", "eval_mae": "double_value",
        "examples": "int_value", "alert": "int_value",
        "reason": "string_value", "served_forecasts": "int_value",
        "served_versions": "string_value", "served_note": "string_value",
        "served_by_lead": "string_value"},
    records.GuidanceRecord: {
        "span": "int_value", "measured": "int_value", "passed": "int_value",
        "reason": "string_value", "margin": "double_value",
        "min_passengers": "int_value", "taxis": "int_value",
        "passengers": "int_value", "stay_empty_share": "double_value",
        "stay_pickups_per_taxi_hour": "double_value",
        "candidate_pickups_per_taxi_hour": "double_value",
        "baseline_pickups_per_taxi_hour": "double_value"},
}


def _class_name(cls: Any) -> str:
  return cls.__name__


@pytest.mark.parametrize("cls", sorted(STORED, key=_class_name),
                         ids=_class_name)
def test_stored_names_and_kinds_are_those_older_stores_hold(cls):
  artifact = pb.Artifact()
  sample(cls).write(artifact)
  written = {k: v.WhichOneof("value")
             for k, v in artifact.custom_properties.items()}
  assert {k: written[k] for k in STORED[cls]} == STORED[cls]


def test_an_older_store_reads_its_empty_strings_and_absences_as_defaults():
  # lineage/record wrote None as ""; GuidanceGate and SkewValidator did not
  # always record `measured` and `checked`.
  old = pb.Artifact()
  old.custom_properties["eval_mae"].string_value = ""
  old.custom_properties["alert"].int_value = 1
  assert records.NextDayRecord.read(old).eval_mae is None
  assert records.NextDayRecord.read(old).alert is True
  assert records.GuidanceRecord.read(pb.Artifact()).measured is True
  assert records.SkewRecord.read(pb.Artifact()).checked is True


def test_none_is_never_written_by_the_one_writer(tmp_path):
  made = records.NextDayRecord(span=3, eval_mae=None)
  artifact = pb.Artifact()
  made.write(artifact)
  assert set(artifact.custom_properties) == {"span"}
  writable = record.open_writable(_new_store(tmp_path))
  ids = record.record_execution(writable, "taxi_demand.Test",
                                {"from_version": None, "to_version": "2"},
                                {}, {})
  [execution] = writable.get_executions_by_id([ids["execution_id"]])
  assert set(execution.custom_properties) == {"to_version"}


def test_records_import_neither_tensorflow_nor_tfx():
  code = ("import sys, taxi_demand.lineage.queries, taxi_demand.lineage.records;"
          "print(sorted(m for m in ('tensorflow', 'tfx') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True, cwd=ROOT).stdout
  assert out.strip() == "[]"


# --- no property named outside the record classes ----------------------------------

# TFX's own property of Examples and statistics, which the records write
# too (`ArtifactView.span` and the span filter queries read TFX's).
TFX_OWN = {contract.SPAN}
NAMES = frozenset(n for r in records.RECORDS for n in r.property_names()
                  ) - TFX_OWN
# Calls that read or write a property by name (TFX's Artifact API and its
# DSL placeholder), and the writers that take {name: value} or name=value.
_ACCESSORS = re.compile(r"^((set|get|has)_\w*custom_property|custom_property)$")
_WRITERS = {"artifact", "NewArtifact", "record_execution", "write_values",
            "_fill"}
# A filter query naming a property: "custom_properties.NAME.int_value".
_IN_QUERY = re.compile(r"(?:properties|metadata)\.(\w+)\.")


def _holds_properties(node) -> bool:
  """Whether an expression is a property map (`x.properties`, `props`...)."""
  text = ast.unparse(node)
  return text.endswith(("properties", "props"))


def _named(node) -> TypeGuard[ast.Constant]:
  return (isinstance(node, ast.Constant) and isinstance(node.value, str) and
          node.value in NAMES)


def _call_name(call: ast.Call) -> str:
  func = call.func
  return func.attr if isinstance(func, ast.Attribute) else getattr(
      func, "id", "")


def property_literals(source: str):
  """(line, name) for each property named by a literal where properties are
  read or written."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Call):
      name = _call_name(node)
      if _ACCESSORS.match(name) and node.args and _named(node.args[0]):
        found.append((node.lineno, node.args[0].value))
      if (name in ("get", "pop", "setdefault") and
          isinstance(node.func, ast.Attribute) and
          _holds_properties(node.func.value) and node.args and
          _named(node.args[0])):
        found.append((node.lineno, node.args[0].value))
      if name in _WRITERS:
        found += [(node.lineno, k.arg) for k in node.keywords
                  if k.arg in NAMES]
        for value in [*node.args, *(k.value for k in node.keywords)]:
          if isinstance(value, ast.Dict):
            found += [(node.lineno, k.value) for k in value.keys
                      if k is not None and _named(k)]
    elif (isinstance(node, ast.Subscript) and _holds_properties(node.value)
          and _named(node.slice)):
      found.append((node.lineno, node.slice.value))
    elif isinstance(node, ast.Compare) and _named(node.left) and any(
        _holds_properties(c) for c in node.comparators):
      found.append((node.lineno, node.left.value))
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      found += [(node.lineno, n) for n in _IN_QUERY.findall(node.value)
                if n in NAMES]
  return found


def test_the_check_finds_a_property_named_by_a_literal():
  planted = """
blessing.set_int_custom_property("blessed", 1)
mae = art.properties.get("model_mae")
alert = report.custom_properties["alert"].int_value
if "measured" in result.custom_properties: pass
record.NewArtifact(T, uri, {"checked": 1})
w.artifact(T, passed=1)
query = "custom_properties.forecast_gate.int_value = 1"
summary = {"alert": True, "passed": 1}   # a JSON key, not a property
"""
  assert sorted(n for _, n in property_literals(planted)) == sorted([
      "blessed", "model_mae", "alert", "measured", "checked", "passed",
      "forecast_gate"])


def test_no_property_name_literal_outside_the_record_classes():
  """Each custom output's properties are named only in records.py: every
  other module reads and writes them through its record class."""
  assert len(NAMES) > 40   # the names come from the classes themselves
  offences = [f"{path.relative_to(ROOT)}:{line}: {name!r}"
              for path in SOURCES if path != RECORDS_FILE
              for line, name in property_literals(path.read_text())]
  assert offences == []


def test_the_contract_names_no_record_property():
  """A constant for a record's property (contract.PASSED, say) would be a
  second name for it, and code could bypass the record through it."""
  # "examples" is TFX's channel key too; the next-day count shares it.
  doubles = sorted(k for k, v in vars(contract).items()
                   if k.isupper() and isinstance(v, str) and v in NAMES
                   and v != contract.EXAMPLES)
  assert doubles == []
