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
