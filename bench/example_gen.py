"""ExampleGen's executor on `make run`'s data: row path beside Arrow path.

  .venv/bin/python bench/example_gen.py --json [--workdir DIR]

On the default simulated warehouse (built in the workdir when it has none),
the newest span and the pipeline's default query and 28-day window, runs
DuckDBExampleGen's executor once per path, each in a fresh Python process and
with bench/pipeline.py's Beam settings:
  rows   the path before Arrow: DuckDB fetchmany, a dict per row,
         bigquery_utils.row_to_example (what BigQueryExampleGen does);
  arrow  the executor as it is: Arrow record batches, tfx_bsl's encoder.
Each child times the conversion alone (query to serialized examples, no Beam)
and then the whole Executor.Do (query, convert, shuffle, gzipped TFRecords).
Prints one JSON object with both, their ratio, and whether both runs wrote
the same examples (parsed, compared as protos).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere
BEAM_ARGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
TRAIN_DAYS = 28  # PipelineConfig's default
PATHS = ("rows", "arrow")


def _row_path():
  """The input transform and serializer as they were before Arrow."""
  import apache_beam as beam  # noqa: PLC0415
  from tfx.extensions.google_cloud_big_query import utils as bigquery_utils  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import executor  # noqa: PLC0415

  def read_examples(query, warehouse_path):
    for type_map, row in executor.query_rows(warehouse_path, query):
      yield bigquery_utils.row_to_example(type_map, row)

  @beam.ptransform_fn
  def to_example(pipeline, exec_properties, split_pattern):  # pylint: disable=invalid-name
    return (pipeline
            | "Query" >> beam.Create([split_pattern])
            | "ToTFExample" >> beam.FlatMap(
                read_examples, exec_properties["warehouse_path"]))

  def serialized(query, warehouse_path):
    for example in read_examples(query, warehouse_path):
      yield example.SerializeToString()  # as TFX's writer does

  return to_example, serialized


def _exec_properties(warehouse: str, span: int) -> dict:
  """What the query-based driver hands the executor for `span`."""
  from tfx.utils import proto_utils  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import DuckDBExampleGen  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import input_config_for  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import range_config_for  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  input_config = input_config_for(sql.QueryConfig(), TRAIN_DAYS)
  component = DuckDBExampleGen(warehouse, input_config, range_config_for(span))
  for split in input_config.splits:
    split.pattern = sql.substitute_span(split.pattern, span)
  return {
      "input_config": proto_utils.proto_to_json(input_config),
      "output_config": component.exec_properties["output_config"],
      "output_data_format": component.exec_properties["output_data_format"],
      "output_file_format": component.exec_properties["output_file_format"],
      "warehouse_path": warehouse,
      "span": span,
  }


def child(path: str, warehouse: str, out: str) -> dict:
  """Runs in the child: one path, the conversion alone, then Executor.Do."""
  import taxi_demand  # noqa: F401,PLC0415
  from tfx.proto import example_gen_pb2  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from tfx.utils import proto_utils  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import executor  # noqa: PLC0415
  from taxi_demand.data import warehouse as warehouse_lib  # noqa: PLC0415
  context = executor.Executor.Context(beam_pipeline_args=BEAM_ARGS,
                                      tmp_dir=os.path.join(out, ".tmp"))
  example_gen = executor.Executor(context)
  if path == "rows":
    # On the instance: TFX's Beam executor wants an importable class.
    to_example, serialized = _row_path()
    example_gen.GetInputSourceToExamplePTransform = lambda: to_example
  else:
    serialized = executor._read_examples  # pylint: disable=protected-access
  with warehouse_lib.Warehouse(warehouse, read_only=True) as wh:
    span = wh.newest_span()
  props = _exec_properties(warehouse, span)
  input_config = example_gen_pb2.Input()
  proto_utils.json_to_proto(props["input_config"], input_config)

  began = time.perf_counter()
  examples = sum(1 for split in input_config.splits
                 for _ in serialized(split.pattern, warehouse))
  convert_s = time.perf_counter() - began

  artifact = standard_artifacts.Examples()
  artifact.uri = out
  began = time.perf_counter()
  example_gen.Do({}, {"examples": [artifact]}, props)
  do_s = time.perf_counter() - began
  return {"span": span, "examples": examples,
          "convert_s": round(convert_s, 2), "executor_do_s": round(do_s, 2)}


def same_examples(out_dirs: list[Path]) -> bool:
  """Both runs wrote the same examples, split by split, in any order."""
  import taxi_demand  # noqa: F401,PLC0415
  import tensorflow as tf  # noqa: PLC0415

  def read(split_dir: Path) -> list:
    files = [str(f) for f in split_dir.iterdir()]
    examples = [tf.train.Example.FromString(r.numpy()) for r in
                tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return sorted(examples, key=lambda e: (
        e.features.feature["slot_start"].int64_list.value[0],
        e.features.feature["cell"].int64_list.value[0]))

  def splits(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("Split-"))

  first, second = out_dirs
  return splits(first) == splits(second) and all(
      read(first / s) == read(second / s) for s in splits(first))


def measure(work: Path, as_json: bool) -> int:
  """Both paths on `work`'s warehouse (built there if missing); prints JSON."""
  from pipeline import local_run  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  home = Home(work / "home")
  with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
    local_run.ensure_warehouse(home)
  results, out_dirs = {}, []
  for path in PATHS:
    out = work / f"examples_{path}"
    print(f"bench/example_gen.py: {path} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", path, "--warehouse",
         str(home.warehouse), "--out", str(out)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode:
      sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
      return 1
    results[path] = json.loads(proc.stdout.strip().splitlines()[-1])
    out_dirs.append(out)
  rows, arrow = results["rows"], results["arrow"]
  summary = {
      "span": arrow["span"],
      "examples": arrow["examples"],
      "rows": rows,
      "arrow": arrow,
      "executor_do_speedup": round(rows["executor_do_s"] /
                                   arrow["executor_do_s"], 2),
      "convert_speedup": round(rows["convert_s"] / arrow["convert_s"], 2),
      "same_examples": rows["examples"] == arrow["examples"] and
                       same_examples(out_dirs),
      "beam_args": BEAM_ARGS,
  }
  print(json.dumps(summary, indent=None if as_json else 2))
  return 0 if summary["same_examples"] else 1


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", action="store_true",
                      help="print only the JSON object on stdout")
  parser.add_argument("--workdir", help="keep the warehouse and outputs here "
                      "(default: a temp dir, removed afterwards)")
  parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
  parser.add_argument("--warehouse", help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    with contextlib.redirect_stdout(sys.stderr):
      result = child(args.child, args.warehouse, args.out)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip TensorFlow's noisy interpreter teardown

  if args.workdir:
    return measure(Path(args.workdir), args.json)
  with tempfile.TemporaryDirectory(prefix="bench-example-gen-") as tmp:
    return measure(Path(tmp), args.json)


if __name__ == "__main__":
  sys.exit(main())
