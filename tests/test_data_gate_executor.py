"""DataGate's executor on hand-built artifacts: a day passes only without
schema anomalies and without drift against the previous span."""

import json
from pathlib import Path

import pytest

import executor_artifacts as art
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import DataGateRecord

SPAN = 19763              # 2024-02-10
# A two-feature schema: `cell` drifts (L-infinity over its value shares)
# and `pickups` may not be negative.
SCHEMA = """
feature { name: "cell" type: INT
  int_domain { min: 1 max: 77 is_categorical: true }
  presence { min_fraction: 1.0 }
  drift_comparator { infinity_norm { threshold: 0.1 } } }
feature { name: "pickups" type: INT int_domain { min: 0 }
  presence { min_fraction: 1.0 } }
"""
EVEN = {"cell": [1, 2, 3, 4] * 5, "pickups": [0, 1, 2, 3] * 5}
# Cell 1 takes 85% of the day instead of 25%: drift.
SKEWED = {"cell": [1] * 17 + [2, 3, 4], "pickups": [0, 1, 2, 3] * 5}
# A negative count: a schema anomaly, whatever the previous day was.
NEGATIVE = {"cell": [1, 2, 3, 4] * 5, "pickups": [-1, 1, 2, 3] * 5}


def _anomalies(tmp_path: Path, statistics):
  """What ExampleValidator writes for `statistics`: the schema anomalies of
  the day split."""
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  stats = tfdv.load_stats_binary(str(
      Path(statistics.uri) / f"Split-{art.DAY}" / contract.STATISTICS_FILE))
  found = tfdv.validate_statistics(stats, tfdv.load_schema_text(
      str(tmp_path / "schema" / "schema.pbtxt")))
  made = art.artifact(standard_artifacts.ExampleAnomalies,
                      tmp_path / "anomalies")
  split = tmp_path / "anomalies" / f"Split-{art.DAY}"
  split.mkdir()
  (split / contract.ANOMALIES_FILE).write_bytes(found.SerializeToString())
  return made


def gate(tmp_path: Path, day: dict, previous: dict = None, **exec_properties):
  """DataGate's executor on `day`'s statistics (and the previous span's,
  if any); returns its report artifact and its JSON summary."""
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components.data_gate import DataGate  # noqa: PLC0415
  inputs = {
      contract.STATISTICS: [art.statistics(tmp_path / "stats", day, SPAN,
                                           SCHEMA)],
      contract.SCHEMA: [art.schema(tmp_path / "schema", SCHEMA)],
  }
  inputs[contract.ANOMALIES] = [_anomalies(tmp_path,
                                           inputs[contract.STATISTICS][0])]
  if previous is not None:
    inputs["previous_statistics"] = [art.statistics(
        tmp_path / "previous", previous, SPAN - 1, SCHEMA)]
  report = art.artifact(standard_artifacts.ExampleAnomalies,
                        tmp_path / "report")
  art.run(DataGate, inputs, {contract.REPORT: [report]}, **exec_properties)
  summary = json.loads((tmp_path / "report" / contract.DATA_GATE_FILE)
                       .read_text())
  return report, summary


def _verdict(report) -> DataGateRecord:
  return DataGateRecord.read(report)


def test_a_clean_day_after_a_like_one_passes_with_drift_checked(tmp_path):
  report, summary = gate(tmp_path, EVEN, previous=EVEN)
  assert _verdict(report) == DataGateRecord(
      passed=True, anomaly_count=0, drift_checked=True, eval_examples=20)
  assert report.span == SPAN
  assert summary["passed"] is True and summary["lines"] == []
  assert summary["previous_span"] == SPAN - 1
  # The drift comparison is kept beside the summary, in the day split.
  assert (tmp_path / "report" / f"Split-{art.DAY}" /
          contract.ANOMALIES_FILE).is_file()


def test_drift_against_the_previous_span_refuses_the_day(tmp_path):
  report, summary = gate(tmp_path, SKEWED, previous=EVEN)
  assert _verdict(report).passed is False
  assert _verdict(report).anomaly_count == 1
  assert summary["drift_anomalies"] == 1 and summary["schema_anomalies"] == 0
  (line,) = summary["lines"]
  assert line.startswith("[drift vs 2024-02-09] cell: ")


def test_a_schema_anomaly_refuses_the_day_without_a_previous_span(tmp_path):
  report, summary = gate(tmp_path, NEGATIVE)
  assert _verdict(report) == DataGateRecord(
      passed=False, anomaly_count=1, drift_checked=False, eval_examples=20)
  (line,) = summary["lines"]
  assert line.startswith(f"[{art.DAY}] schema: pickups: ")
  assert summary["drift_note"].startswith("no previous span")


@pytest.mark.parametrize("previous, check_drift, note", [
    (None, 1, "no previous span in ML Metadata; drift not checked"),
    (SKEWED, 0, "drift check disabled"),
])
def test_a_day_not_compared_passes_and_says_why(tmp_path, previous,
                                               check_drift, note):
  report, summary = gate(tmp_path, EVEN, previous=previous,
                         check_drift=check_drift)
  assert _verdict(report).passed is True
  assert _verdict(report).drift_checked is False
  assert summary["drift_note"] == note


# --- on Vertex: the previous passed day from the day verdicts -----------------

QUERY_KEY = "0123456789abcdef"


@pytest.fixture
def vertex_gate(tmp_path, store_root):
  """DataGate compiled for Vertex with a verdicts root (local, then gs://),
  run as its container runs it; returns gate(span, columns) -> (the
  report's recorded properties as a DataGateRecord, its JSON summary)."""
  import vertex_container  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components.data_gate import DataGate  # noqa: PLC0415
  imported = vertex_container.importers({
      contract.STATISTICS: standard_artifacts.ExampleStatistics,
      contract.SCHEMA: standard_artifacts.Schema,
      contract.ANOMALIES: standard_artifacts.ExampleAnomalies})
  node = DataGate(**vertex_container.outputs_of(imported),
                  verdicts_root=str(store_root),
                  query_key=QUERY_KEY).with_id(contract.DATA_GATE)
  job = vertex_container.compile_job([*imported.values(), node], tmp_path)

  def gate_day(span: int, columns: dict):
    folder = tmp_path / str(span)
    statistics = art.statistics(folder / "stats", columns, span, SCHEMA)
    schema = art.schema(folder / "schema", SCHEMA)
    report = art.artifact(standard_artifacts.ExampleAnomalies,
                          folder / "report")
    output = vertex_container.run_task(
        job, contract.DATA_GATE, folder,
        inputs={contract.STATISTICS: [statistics],
                contract.SCHEMA: [schema],
                contract.ANOMALIES: [_anomalies(folder, statistics)]},
        outputs={contract.REPORT: [report]})
    (recorded,) = output["artifacts"][contract.REPORT]["artifacts"]
    return DataGateRecord.read(recorded["metadata"]), json.loads(
        (folder / "report" / contract.DATA_GATE_FILE).read_text())

  return gate_day


def test_on_vertex_a_drifted_day_is_refused_against_the_newest_passed_day(
    vertex_gate, store_root):
  from taxi_demand.data import verdicts  # noqa: PLC0415
  first, _ = vertex_gate(SPAN - 3, EVEN)
  assert first.passed is True
  assert first.drift_checked is False
  # Refused against SPAN - 3, so never the reference of a later day.
  refused, _ = vertex_gate(SPAN - 2, SKEWED)
  assert refused.passed is False
  props, summary = vertex_gate(SPAN, SKEWED)
  assert props.passed is False
  assert props.drift_checked is True
  assert summary["previous_span"] == SPAN - 3
  (line,) = summary["lines"]
  assert line.startswith("[drift vs 2024-02-07] cell: ")
  # A like day passes against the same reference.
  props, summary = vertex_gate(SPAN + 1, EVEN)
  assert props.passed is True
  assert summary["previous_span"] == SPAN - 3
  # Each verdict is on record for the window and the next day's gate.
  recorded = verdicts.VerdictStore(store_root).read(
      QUERY_KEY, range(SPAN - 3, SPAN + 2))
  assert {d: v.passed for d, v in recorded.items()} == {
      SPAN - 3: True, SPAN - 2: False, SPAN: False, SPAN + 1: True}
  assert recorded[SPAN].reasons == (line,)
  assert recorded[SPAN].statistics_uri.endswith(f"{SPAN}/stats")


def test_on_vertex_the_first_day_on_record_passes_and_says_why(vertex_gate):
  props, summary = vertex_gate(SPAN, SKEWED)
  assert props.passed is True
  assert summary["drift_note"] == ("no previous span in the day verdicts; "
                                   "drift not checked")


def test_verdicts_without_a_query_key_are_one_line(tmp_path):
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  with pytest.raises(TaxiDemandError, match="^DataGate: verdicts_root needs "
                     "the day query's query_key$"):
    gate(tmp_path, EVEN, verdicts_root=str(tmp_path / "verdicts"))
