"""DuckDBExampleGen: a query-based ExampleGen over the local DuckDB warehouse.

Same shape as TFX's BigQueryExampleGen: one BigQuery Standard SQL query per
split in `input_config`, with @span_* placeholders that TFX's QueryBasedDriver
fills from `range_config` (so the span is recorded on the Examples artifact).
The executor transpiles the filled query to DuckDB and encodes its Arrow
result to tf.Examples proto-equal to those of BigQuery's row-to-Example
converter (see executor.py).
"""

from __future__ import annotations

import hashlib

from typing import Optional

from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import channel
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from pipeline.components.duckdb_example_gen import executor
from taxi_demand.data import sql
from taxi_demand.data import warehouse as warehouse_lib
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import IngestFingerprint

WAREHOUSE_PATH_KEY = "warehouse_path"


class DuckDBExampleGenSpec(standard_component_specs.QueryBasedExampleGenSpec):
  """QueryBasedExampleGenSpec plus the warehouse file to query."""

  PARAMETERS = {
      **standard_component_specs.QueryBasedExampleGenSpec.PARAMETERS,
      WAREHOUSE_PATH_KEY: component_spec.ExecutionParameter(type=str),
  }


def input_config_for(cfg: sql.QueryConfig,
                     days_before: int = 0) -> example_gen_pb2.Input:
  """One split, the span's day (`days_before` = 0), or the N days before it.

  A daily run ingests its own day only; earlier runs ingested the days of
  its training window, which it resolves from ML Metadata. The N-day form
  serves Vertex, whose compiler cannot resolve a window of spans.
  """
  return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
      name=contract.DAY_SPLIT,
      pattern=sql.render_bigquery(cfg, days_before=days_before))])


def range_config_for(span: int) -> range_config_pb2.RangeConfig:
  """The static range D..D that makes the driver substitute span D."""
  sql.check_span(span)
  return range_config_pb2.RangeConfig(
      static_range=range_config_pb2.StaticRange(
          start_span_number=span, end_span_number=span))


def query_key(input_config: example_gen_pb2.Input) -> str:
  """What a day's examples were made with: a digest of the split queries.

  Of the queries as rendered, placeholders unfilled, so the same for every
  day; another slot length, grid or arrival rule is another key.
  """
  text = "\n".join(f"{s.name}\n{s.pattern}" for s in input_config.splits)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def ingest_fingerprint(trips_fingerprint: str, key: str) -> IngestFingerprint:
  """A day's ingest identity: the trips it read and the query that read them."""
  return IngestFingerprint(trips=trips_fingerprint, query=key)


class DuckDBDriver(example_gen_driver.QueryBasedDriver):
  """TFX's query-based driver plus an input fingerprint of the warehouse.

  TFX's query-based driver records no fingerprint, so a rerun of a span
  after new trips were loaded would be served stale examples from the cache.
  The fingerprint of the trips the span's query reads (its day and the
  lookback before it) enters the cache key, so a reload of one day
  re-ingests only the spans that read that day; with the query's own key,
  so that a window never mixes days made by another query.
  """

  def resolve_exec_properties(self, exec_properties, pipeline_info,
                              component_info):
    # Before the query-based driver fills the span into the queries.
    key = query_key(proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
        example_gen_pb2.Input()))
    exec_properties = super().resolve_exec_properties(
        exec_properties, pipeline_info, component_info)
    span = int(exec_properties[example_gen_utils.SPAN_PROPERTY_NAME])
    with warehouse_lib.Warehouse(exec_properties[WAREHOUSE_PATH_KEY],
                                 read_only=True) as warehouse:
      # TFX's input_fingerprint: it enters the cache key.
      ingest_fingerprint(warehouse.span_fingerprint(span), key).write(
          exec_properties)
    return exec_properties


class DuckDBExampleGen(example_gen_component.QueryBasedExampleGen):
  """Examples from the demand query run on the embedded DuckDB warehouse."""

  SPEC_CLASS = DuckDBExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
  DRIVER_CLASS = DuckDBDriver

  def __init__(
      self,
      warehouse_path: str,
      input_config: example_gen_pb2.Input,
      range_config: Optional[range_config_pb2.RangeConfig] = None,
      output_config: Optional[example_gen_pb2.Output] = None,
  ):
    """Constructs a DuckDBExampleGen.

    Args:
      warehouse_path: the DuckDB file (Home.warehouse), opened read-only.
      input_config: one split per query; see `input_config_for`.
      range_config: the span; see `range_config_for`. Required in practice:
        TFX's query-based driver cannot pick a latest span by itself.
      output_config: defaults to the input splits, unchanged (never a random
        re-split).
    """
    if range_config is None:
      raise ValueError(
          "DuckDBExampleGen needs range_config (range_config_for(span)): "
          "TFX's query-based driver cannot resolve a latest span")
    # Empty: the input's splits, unchanged. TFX's default would hash a
    # single split into a random train and eval.
    output_config = output_config or example_gen_pb2.Output()
    # QueryBasedExampleGen.__init__ builds the stock spec; build ours (with
    # warehouse_path) and go straight to the Beam component base.
    spec = DuckDBExampleGenSpec(
        input_config=input_config,
        output_config=output_config,
        range_config=range_config,
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        custom_config=None,
        warehouse_path=str(warehouse_path),
        examples=channel.Channel(type=standard_artifacts.Examples))
    base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
