"""The nodes' own files on Cloud Storage: on Vertex every artifact URI is a
gs:// address, so a report written with `open()` or split files found with
`glob` would miss it. Checked against the loopback GCS emulator."""

import ast
import json
from pathlib import Path

import executor_artifacts as art
from taxi_demand import objectstore
from taxi_demand import spans
from taxi_demand.lineage import contract

COMPONENTS = Path(__file__).resolve().parent.parent / "pipeline" / "components"
SPAN = spans.parse_span("2024-02-11")


def test_a_report_round_trips_through_cloud_storage(gcs_root):
  from pipeline.components import artifact_files  # noqa: PLC0415
  uri = f"{gcs_root}/DataGate/report/3"
  artifact_files.write_json(uri, "report.json", {"lines": ["a: b"]})
  artifact_files.write_bytes(f"{uri}/Split-day", "SchemaDiff.pb", b"\x01")
  assert artifact_files.read_json(uri, "report.json") == {"lines": ["a: b"]}
  assert objectstore.at(uri).read_bytes("Split-day/SchemaDiff.pb") == b"\x01"
  assert artifact_files.read_json(uri, "missing.json") is None


def test_next_day_writes_its_report_into_a_gcs_result(gcs_root, tmp_path,
                                                      monkeypatch):
  # The first day on Vertex: nothing was serving, so the executor reads no
  # examples and writes its report and properties only.
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import next_day  # noqa: PLC0415
  monkeypatch.chdir(tmp_path)
  examples = standard_artifacts.Examples()
  examples.uri, examples.span = f"{gcs_root}/ExampleGen/examples/1", SPAN
  result = next_day.NextDayResult()
  result.uri = f"{gcs_root}/NextDayValidator/result/2"
  art.run(next_day.NextDayValidator, {contract.EXAMPLES: [examples]},
          {contract.RESULT: [result]})
  body = json.loads(objectstore.at(result.uri).read_bytes(
      next_day.REPORT_FILE))
  assert body["reason"] == "no model was serving before this day"
  assert body["span"] == SPAN
  # Nothing fell back to a local folder named after the address.
  assert not (tmp_path / "gs:").exists()


def _local_file_calls(tree: ast.AST):
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      f = node.func
      name = (f.id if isinstance(f, ast.Name) else
              f"{getattr(f.value, 'id', '')}.{f.attr}"
              if isinstance(f, ast.Attribute) else "")
      if name in ("open", "glob.glob", "os.makedirs", "os.listdir",
                  "os.path.isfile", "os.path.exists"):
        yield node.lineno, name


def test_no_node_touches_its_artifacts_with_local_file_calls():
  # Vertex hands every node gs:// URIs; these calls would read or write the
  # container's own disk instead (artifact_files is the one way in).
  found = [f"{path.name}:{line}: {name}"
           for path in sorted(COMPONENTS.rglob("*.py"))
           for line, name in _local_file_calls(ast.parse(path.read_text()))]
  assert found == []
