"""DataGate: refuses a day with schema anomalies or drift against the previous span.

A refusal is a recorded decision, not a crash: the report carries
`passed` = 0 and the reasons, the nodes downstream sit inside a
`tfx.dsl.Cond` on that property and are skipped, and the run completes.
The runner reads the verdict back and exits 3 with one line per anomaly.
"""


import os
from typing import List

from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from pipeline.components import artifact_files
from pipeline.components import day_verdicts
from taxi_demand.data import verdicts
from taxi_demand.errors import AlertError
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import DataGateRecord
from taxi_demand.spans import date_of

REPORT_FILE = contract.DATA_GATE_FILE
# A run ingests one day, its own: the days of its window were checked by
# the runs that ingested them.
NEW_DAY_SPLIT = contract.DAY_SPLIT


class DataValidationAlert(AlertError):
  """The new day of data failed validation; nothing downstream ran."""


def verdict_lines(report_uri: str) -> List[str]:
  """The anomaly lines a report recorded (its JSON summary)."""
  summary = artifact_files.read_json(report_uri, REPORT_FILE) or {}
  return list(summary.get("lines") or [])


def _split_file(artifact: types.Artifact, split: str, name: str) -> str:
  return os.path.join(artifact_utils.get_split_uri([artifact], split), name)


def describe(anomalies) -> List[str]:
  """One readable line per anomalous feature."""
  lines = []
  for feature, info in sorted(anomalies.anomaly_info.items()):
    reasons = "; ".join(r.description or r.short_description
                        for r in info.reason) or info.description
    lines.append(f"{feature}: {reasons}")
  if anomalies.HasField("dataset_anomaly_info"):
    lines.append("dataset: " + anomalies.dataset_anomaly_info.description)
  return lines


@component
def DataGate(  # pylint: disable=invalid-name
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    report: OutputArtifact[standard_artifacts.ExampleAnomalies],
    previous_statistics: InputArtifact[
        standard_artifacts.ExampleStatistics] = None,
    check_drift: Parameter[int] = 1,
    verdicts_root: Parameter[str] = "",
    query_key: Parameter[str] = "",
) -> None:
  """Records whether the new day is fit to train on (`passed`), and why not.

  Args:
    statistics: this run's statistics.
    schema: the curated schema, with drift comparators.
    anomalies: ExampleValidator's schema anomalies for this run.
    report: drift anomalies of the new day and a JSON summary.
    previous_statistics: the previous span's statistics, from ML Metadata;
      absent on the first run, which then passes the drift check and says so.
    check_drift: 0 to skip the drift comparison.
    verdicts_root: where day verdicts are kept (Vertex: its resolvers cannot
      ask ML Metadata): the verdict is recorded there, and without a
      `previous_statistics` channel the newest passed day before this one
      on record there is the drift reference. "" for neither.
    query_key: the day query's key (duckdb_example_gen.query_key), which
      the verdicts are kept under; required with `verdicts_root`.
  """
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  from tensorflow_data_validation.utils import anomalies_util  # noqa: PLC0415

  schema_proto = tfdv.load_schema_text(
      os.path.join(schema.uri, "schema.pbtxt"))
  lines: List[str] = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    found = anomalies_util.load_anomalies_binary(
        _split_file(anomalies, split, contract.ANOMALIES_FILE))
    lines += [f"[{split}] schema: {line}" for line in describe(found)]

  summary = {"span": statistics.span, "schema_anomalies": len(lines)}
  stats = tfdv.load_stats_binary(
      _split_file(statistics, NEW_DAY_SPLIT, contract.STATISTICS_FILE))
  count = int(stats.datasets[0].num_examples) if stats.datasets else 0
  summary["eval_examples"] = count
  report.span = statistics.span
  report.split_names = artifact_utils.encode_split_names([NEW_DAY_SPLIT])
  drift_lines: List[str] = []
  store = None
  if verdicts_root:
    if not query_key:
      raise TaxiDemandError("DataGate: verdicts_root needs the day query's "
                            "query_key")
    store = verdicts.VerdictStore(verdicts_root)
    if check_drift and previous_statistics is None:
      previous_statistics = day_verdicts.previous_statistics(
          store, query_key, statistics.span)
  if check_drift and previous_statistics is not None:
    current = tfdv.load_stats_binary(
        _split_file(statistics, NEW_DAY_SPLIT, contract.STATISTICS_FILE))
    previous = tfdv.load_stats_binary(
        _split_file(previous_statistics, NEW_DAY_SPLIT,
                    contract.STATISTICS_FILE))
    drift = tfdv.validate_statistics(current, schema_proto,
                                     previous_statistics=previous)
    artifact_files.write_bytes(
        artifact_utils.get_split_uri([report], NEW_DAY_SPLIT),
        contract.ANOMALIES_FILE, drift.SerializeToString())
    drift_lines = [f"[drift vs {date_of(previous_statistics.span)}] {line}"
                   for line in describe(drift)]
    summary.update(drift_checked=True, previous_span=previous_statistics.span,
                   drift_anomalies=len(drift_lines))
  else:
    summary.update(drift_checked=False, previous_span=None,
                   drift_anomalies=0,
                   drift_note=(f"no previous span in "
                               f"{'the day verdicts' if store else 'ML Metadata'}"
                               "; drift not checked") if check_drift
                   else "drift check disabled")
  summary["lines"] = lines + drift_lines
  summary["passed"] = not summary["lines"]
  # `passed` is what the Cond around the training nodes reads.
  DataGateRecord(eval_examples=count,
                 anomaly_count=len(lines) + len(drift_lines),
                 drift_checked=summary["drift_checked"],
                 passed=summary["passed"]).write(report)
  artifact_files.write_json(report.uri, REPORT_FILE, summary, sort_keys=False)
  if store is not None:
    store.write(verdicts.DayVerdict(
        span=int(statistics.span), passed=summary["passed"],
        query_key=query_key, statistics_uri=statistics.uri,
        reasons=tuple(summary["lines"])))
