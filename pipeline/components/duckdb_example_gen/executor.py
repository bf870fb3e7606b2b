"""DuckDBExampleGen executor: run a split's query on the warehouse, emit tf.Examples."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.extensions.google_cloud_big_query import utils as bigquery_utils

from taxi_demand.data import sql
from taxi_demand.data import warehouse as warehouse_lib

# DuckDB result types -> the BigQuery legacy type names that
# bigquery_utils.row_to_example switches on, so both paths share one converter.
_BIGQUERY_TYPES = {
    "BIGINT": "INTEGER", "INTEGER": "INTEGER", "SMALLINT": "INTEGER",
    "TINYINT": "INTEGER", "HUGEINT": "INTEGER", "UBIGINT": "INTEGER",
    "UINTEGER": "INTEGER", "BOOLEAN": "BOOLEAN", "DOUBLE": "FLOAT",
    "FLOAT": "FLOAT", "VARCHAR": "STRING",
}


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
  """Runs span-substituted BigQuery SQL on the warehouse, read-only.

  Yields (type_map, row) pairs, the inputs of bigquery_utils.row_to_example.
  """
  duck = sql.to_duckdb(bigquery_sql)
  with warehouse_lib.Warehouse(warehouse_path, read_only=True) as wh:
    cursor = wh.con.execute(duck)
    names = [d[0] for d in cursor.description]
    type_map = {n: bigquery_type(d[1]) for n, d in zip(names, cursor.description)}
    while batch := cursor.fetchmany(10_000):
      for values in batch:
        yield type_map, dict(zip(names, values))


def _read_examples(bigquery_sql: str, warehouse_path: str
                   ) -> Iterator[tf.train.Example]:
  for type_map, row in query_rows(warehouse_path, bigquery_sql):
    yield bigquery_utils.row_to_example(type_map, row)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _DuckDBToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                     split_pattern: str) -> beam.pvalue.PCollection:
  """Reads one split's (already span-filled) query into tf.Examples."""
  return (pipeline
          | "Query" >> beam.Create([split_pattern])
          | "ToTFExample" >> beam.FlatMap(
              _read_examples, exec_properties["warehouse_path"]))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Generic query-based ExampleGen executor on DuckDB."""

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
    super().Do(input_dict, output_dict, exec_properties)
