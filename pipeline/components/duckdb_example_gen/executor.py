"""DuckDBExampleGen executor: run a split's query on the warehouse, emit tf.Examples.

The query's result is read as Arrow record batches and encoded to serialized
tf.Examples by tfx_bsl's RecordBatchToExamplesEncoder (C++), not row by row
through bigquery_utils.row_to_example (pure Python, which made ExampleGen the
slowest step of the local pipeline). Each column is cast to the value type
that gives the feature kind row_to_example picks for its BigQuery type, so the
examples are proto-equal to the ones the Vertex path (BigQueryExampleGen, which
uses row_to_example) makes from the same rows; tests/test_example_gen.py checks
that. The serialized bytes go straight to TFX's writer, which writes bytes
records unchanged.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
from tfx.components.example_gen import base_example_gen_executor
from tfx_bsl.coders import example_coder

from pipeline import staged_ingest
from taxi_demand.data import sql
from taxi_demand.data import warehouse as warehouse_lib
from taxi_demand.lineage.records import IngestFingerprint

# DuckDB result types -> the BigQuery legacy type names that
# bigquery_utils.row_to_example switches on, so both paths share one mapping.
_BIGQUERY_TYPES = {
    "BIGINT": "INTEGER", "INTEGER": "INTEGER", "SMALLINT": "INTEGER",
    "TINYINT": "INTEGER", "HUGEINT": "INTEGER", "UBIGINT": "INTEGER",
    "UINTEGER": "INTEGER", "BOOLEAN": "BOOLEAN", "DOUBLE": "FLOAT",
    "FLOAT": "FLOAT", "VARCHAR": "STRING",
}

# BigQuery type -> the Arrow value type the encoder turns into the feature kind
# row_to_example gives it: int64_list for INTEGER and BOOLEAN (True -> 1),
# float_list for FLOAT (rounded to float32, as FloatList does), bytes_list of
# the UTF-8 text for STRING.
_ARROW_VALUE_TYPES = {
    "INTEGER": pa.int64(), "BOOLEAN": pa.int64(), "FLOAT": pa.float32(),
    "STRING": pa.large_binary(),
}

# Rows per Arrow batch: bounds memory whatever the span's size, and is large
# enough that the per-batch overhead vanishes.
_ROWS_PER_BATCH = 10_000


def bigquery_type(duckdb_type: str) -> str:
  """The BigQuery type name row_to_example expects for a DuckDB type."""
  try:
    return _BIGQUERY_TYPES[str(duckdb_type).upper()]
  except KeyError:
    raise RuntimeError(
        f"DuckDB column type {duckdb_type} has no BigQuery equivalent") from None


def query_rows(warehouse_path: str,
               bigquery_sql: str) -> Iterator[tuple[dict[str, str],
                                                    dict[str, Any]]]:
  """Runs span-substituted BigQuery SQL on the warehouse, read-only, by row.

  The reference for the Arrow path: yields (type_map, row) pairs, the inputs
  of bigquery_utils.row_to_example, for the parity test and the benchmark.
  """
  duck = sql.to_duckdb(bigquery_sql)
  with warehouse_lib.Warehouse(warehouse_path, read_only=True) as wh:
    cursor = wh.con.execute(duck)
    names = [d[0] for d in cursor.description]
    type_map = {n: bigquery_type(d[1]) for n, d in zip(names, cursor.description)}
    while batch := cursor.fetchmany(_ROWS_PER_BATCH):
      for values in batch:
        yield type_map, dict(zip(names, values))


def _to_feature_column(column: pa.Array, value_type: pa.DataType) -> pa.Array:
  """One value per row -> a one-value list per row; NULL -> a null list.

  The encoder writes a null list as a feature with no kind, which is what
  row_to_example writes for None (tf.train.Feature()); an empty list would be
  a kind with no values, a different proto.
  """
  values = column.cast(value_type)
  offsets = pa.array(np.arange(len(values) + 1, dtype=np.int64))
  return pa.LargeListArray.from_arrays(offsets, values,
                                       mask=values.is_null())


def query_record_batches(warehouse_path: str,
                         bigquery_sql: str) -> Iterator[pa.RecordBatch]:
  """Runs span-substituted BigQuery SQL on the warehouse, read-only.

  Yields record batches of at most _ROWS_PER_BATCH rows, every column a
  large_list of the value type row_to_example's feature kind needs.
  """
  duck = sql.to_duckdb(bigquery_sql)
  with warehouse_lib.Warehouse(warehouse_path, read_only=True) as wh:
    cursor = wh.con.execute(duck)
    # From the declared types, before any row: an unsupported column fails
    # the same way, with the same message, as on the row path.
    value_types = [_ARROW_VALUE_TYPES[bigquery_type(d[1])]
                   for d in cursor.description]
    for batch in cursor.to_arrow_reader(_ROWS_PER_BATCH):
      yield pa.RecordBatch.from_arrays(
          [_to_feature_column(c, t) for c, t in zip(batch.columns,
                                                    value_types)],
          names=batch.schema.names)


def read_examples(bigquery_sql: str, warehouse_path: str) -> Iterator[bytes]:
  """Serialized tf.Examples of the query's rows, in the query's order."""
  encoder = example_coder.RecordBatchToExamplesEncoder()
  for batch in query_record_batches(warehouse_path, bigquery_sql):
    yield from encoder.encode(batch)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _DuckDBToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                     split_pattern: str) -> beam.pvalue.PCollection:
  """Reads one split's (already span-filled) query into serialized tf.Examples.

  TFX's WriteSplit passes bytes through unserialized, to the same gzipped
  TFRecord files as tf.Example protos.
  """
  return (pipeline
          | "Query" >> beam.Create([split_pattern])
          | "ToTFExample" >> beam.FlatMap(
              read_examples, exec_properties["warehouse_path"]))


class Executor(staged_ingest.AdoptsStaged,
               base_example_gen_executor.BaseExampleGenExecutor):
  """Generic query-based ExampleGen executor on DuckDB; a day staged by the
  window's one-pass ingest (staged_ingest.stage) is adopted, not queried
  again."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _DuckDBToExample

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    # TFX's query-based driver records the span only as a *custom* property
    # of the Examples; StatisticsGen and resolvers read the `span` property,
    # which would stay 0. Set it, so every downstream artifact carries it.
    span = exec_properties.get("span")
    if span is not None:
      for examples in output_dict.get("examples", []):
        examples.span = int(span)
    [examples] = output_dict["examples"]
    staged = staged_ingest.staged_for(
        examples.uri, None if span is None else int(span),
        IngestFingerprint.read(exec_properties))
    self.run_adopting(staged, staged_ingest.EXAMPLES_DIR, examples.uri,
                      super().Do, input_dict, output_dict, exec_properties)
