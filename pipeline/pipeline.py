"""create_pipeline(config): the daily continuous-training graph. Pure: no I/O."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

import tensorflow_model_analysis as tfma
# TFX's own modules, not its `tfx.v1` facade: importing that imports every
# extension, the Vertex AI SDK among them (several seconds of every local
# run's start-up); the Vertex-only nodes import it where they are built.
from tfx import components as tfx_components
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_node
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.experimental.conditionals.conditional import Cond
from tfx.dsl.input_resolution.strategies import latest_blessed_model_strategy
from tfx.orchestration import metadata
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2
from tfx.proto import trainer_pb2
from tfx.proto import transform_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from pipeline.components import regression_metrics
from pipeline.components import statistics_gen
from pipeline.components import transform
from pipeline.components.bigquery_example_gen import SpanBigQueryExampleGen
from pipeline.components.data_gate import DataGate
from pipeline.components.duckdb_example_gen import DuckDBExampleGen
from pipeline.components.duckdb_example_gen import input_config_for
from pipeline.components.duckdb_example_gen import query_key
from pipeline.components.duckdb_example_gen import range_config_for
from pipeline.components.forecast_gate import ForecastGate
from pipeline.components.guidance_gate import GuidanceGate
from pipeline.components.next_day import NextDayValidator
from pipeline.components.pusher import KEEP_VERSIONS_KEY
from pipeline.components.pusher import RUN_PARAMETERS_KEY
from pipeline.components.pusher import VersionedPusherExecutor
from pipeline.components.pusher import WAREHOUSE_KEY
from pipeline.components.resolvers import PreviousSpanStrategy
from pipeline.components.resolvers import QUERY_KEY
from pipeline.components.resolvers import REUSE_EXECUTIONS_KEY
from pipeline.components.resolvers import ServingModelStrategy
from pipeline.components.resolvers import TRAIN_DAYS_KEY
from pipeline.components.resolvers import TrainingWindowStrategy
from pipeline.components.resolvers import WindowCacheStrategy
from pipeline.components.skew_validator import SkewValidator
from pipeline.config import PipelineConfig
from pipeline.config import Platform
from pipeline.config import VertexConfig
from taxi_demand import spans
from taxi_demand import features
from taxi_demand.data import verdicts
from taxi_demand.lineage import contract
from taxi_demand.lineage import nodes

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
SCHEMA_FILE = os.path.join(SCHEMA_DIR, "schema.pbtxt")
PREPROCESSING_FN = "taxi_demand.modeling.preprocessing.preprocessing_fn"
RUN_FN = "taxi_demand.modeling.trainer.run_fn"

def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """MAE, RMSE and bias, overall and by hour and cell.

  The eval split is one day, so a slice by day of week would repeat the
  whole day's row: it is not computed. The models are plain SavedModels
  called through their serving signature (TF_GENERIC): left to guess, TFMA
  tries to load each one (candidate and baseline) as a Keras model first.

  The one TFMA threshold is "the eval day is not empty", on the whole eval
  day. The candidate and the baseline (the last blessed model, when there
  is one) are both scored, by cell too, and ForecastGate judges them: a
  TFMA change threshold compares one day's MAE with a fixed tolerance,
  blind to that day's noise, and refused candidates within it day after
  day. ForecastGate refuses a candidate as worse only beyond the noise of
  the paired difference over cells, and judges it against the
  seasonal-naive forecast, overall and per busy cell.
  """
  whole_day = [tfma.SlicingSpec()]

  def on_whole_day(threshold: tfma.MetricThreshold):
    return [tfma.PerSliceMetricThreshold(slicing_specs=whole_day,
                                         threshold=threshold)]

  not_empty = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 1}))

  def one_pass(metric: type, **kwargs) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=metric.__name__,
                             module=regression_metrics.__name__, **kwargs)

  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          model_type=tfma.TF_GENERIC,
          signature_name="serving_default",
          label_key=features.LABEL,
          prediction_key="predicted_pickups")],
      slicing_specs=whole_day + [
          tfma.SlicingSpec(feature_keys=[features.HOUR]),
          tfma.SlicingSpec(feature_keys=[features.CELL]),
      ],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          # An empty eval day blesses nothing. (With no threshold at all,
          # TFX's Evaluator would not validate: its blessing would carry no
          # verdict, which ForecastGate reads as a refusal.)
          tfma.MetricConfig(class_name="ExampleCount",
                            per_slice_thresholds=on_whole_day(not_empty)),
          # MAE, RMSE, mean prediction and mean label under TFMA's names,
          # from one pass over the examples (regression_metrics): TFMA's
          # own made four, one of them through TensorFlow per slice.
          one_pass(regression_metrics.OnePassMeanAbsoluteError),
          one_pass(regression_metrics.OnePassRootMeanSquaredError),
          one_pass(regression_metrics.OnePassMeanPrediction),
          one_pass(regression_metrics.OnePassMeanLabel),
      ])])


def run_parameters(config: PipelineConfig) -> contract.RunParameters:
  """What a person asks "which parameters made this model?" about.

  Recorded as the Trainer's custom_config, so it lands in ML Metadata as an
  execution property that `taxi-demand show/diff` read back.
  """
  return contract.RunParameters(
      span=config.span,
      train_days=config.train_days,
      train_steps=config.train_steps,
      # Never more than a cold start's.
      warm_start_steps=min(config.warm_start_steps,
                           config.train_steps) or None,
      slot_minutes=config.query.slot_minutes,
      spatial_unit=config.query.spatial_unit.value,
      grid_metres=config.query.grid_metres,
      source_table=config.query.table,
      arrival=str(config.query.arrival),
      naive_margin=config.thresholds.naive_margin,
      change_tolerance=config.thresholds.change_tolerance,
      change_z=config.thresholds.change_z,
      cell_margin=config.thresholds.cell_margin,
      min_eval_pickups=config.thresholds.min_eval_pickups,
      ready_after_hours=(config.vertex.ready_after_hours
                         if config.vertex else None),
      code_version=config.code_version,
      hparams=dict(config.hparams))


def _duckdb_example_gen(config: PipelineConfig):
  """The run's day from the local warehouse: the demand query on DuckDB."""
  return DuckDBExampleGen(warehouse_path=config.warehouse_path,
                          input_config=input_config_for(config.query),
                          range_config=range_config_for(config.span))


def _bigquery_example_gen(config: PipelineConfig, **window):
  """The same demand query on BigQuery: the run's day, or with `window`
  (window_days, verdicts_root) the window before it (Vertex's
  TrainingWindow)."""
  # No query-based driver runs on Vertex, so range_config would be ignored:
  # the executor fills the span from this parameter (0: from the schedule).
  return SpanBigQueryExampleGen(
      input_config=input_config_for(config.query),
      span=RuntimeParameter(
          name=contract.SPAN_PARAMETER, ptype=int, default=config.span),
      ready_after_hours=config.vertex.ready_after_hours, **window)


def _verdicts_root(config: PipelineConfig) -> str:
  """Where DataGate keeps each day's verdict, for the nodes that on Vertex
  cannot ask ML Metadata (taxi_demand.data.verdicts)."""
  return verdicts.root_under(config.pipeline_root)


def _query_key(config: PipelineConfig) -> str:
  """The day query's key: the verdicts and the local window are kept by
  it, so a changed query starts a new history."""
  return query_key(input_config_for(config.query))


def _vertex_extension():
  """TFX's Vertex AI extension (its Trainer, Pusher and keys), imported
  only for the Vertex graph: it imports the Vertex AI SDK."""
  from tfx.v1.extensions import google_cloud_ai_platform  # noqa: PLC0415
  return google_cloud_ai_platform


def _vertex_training_config(vertex: VertexConfig) -> dict:
  """custom_config keys that make TFX's cloud Trainer run a Vertex custom job."""
  machine_spec: Dict[str, Any] = {
      "machine_type": vertex.training_machine_type}
  if vertex.accelerator_type:
    machine_spec.update(accelerator_type=vertex.accelerator_type,
                        accelerator_count=vertex.accelerator_count or 1)
  job_spec: Dict[str, Any] = {
      "project": vertex.project,
      "worker_pool_specs": [{"machine_spec": machine_spec, "replica_count": 1,
                             "container_spec": {"image_uri": vertex.image}}],
  }
  if vertex.service_account:
    job_spec["service_account"] = vertex.service_account
  if vertex.network:
    job_spec["network"] = vertex.network
  if vertex.kms_key:
    job_spec["encryption_spec"] = {"kms_key_name": vertex.kms_key}
  gcp = _vertex_extension()
  return {gcp.ENABLE_VERTEX_KEY: True, gcp.VERTEX_REGION_KEY: vertex.region,
          gcp.TRAINING_ARGS_KEY: job_spec}


def _trainer(config: PipelineConfig, **inputs):
  """Trains on the window, warm-started from the serving model."""
  kwargs = dict(
      run_fn=RUN_FN,
      train_args=trainer_pb2.TrainArgs(splits=[contract.DAY_SPLIT],
                                     num_steps=config.train_steps),
      eval_args=trainer_pb2.EvalArgs(splits=[contract.DAY_SPLIT],
                                   num_steps=config.eval_steps),
      custom_config=run_parameters(config).to_custom_config(),
      **inputs)
  if config.vertex is not None and config.vertex.vertex_training:
    kwargs["custom_config"] = {**kwargs["custom_config"],
                               **_vertex_training_config(config.vertex)}
    return _vertex_extension().Trainer(**kwargs)
  return tfx_components.Trainer(**kwargs)


def _endpoint_pusher(config: PipelineConfig, **inputs):
  """Deploys blessed models to a Vertex endpoint, besides the GCS push
  (None: no endpoint)."""
  vertex = config.vertex
  if not vertex.endpoint:
    return None
  gcp = _vertex_extension()
  serving_args = {"project_id": vertex.project,
                  "endpoint_name": vertex.endpoint,
                  "machine_type": vertex.serving_machine_type}
  if vertex.kms_key:
    serving_args["encryption_spec_key_name"] = vertex.kms_key
  return gcp.Pusher(**inputs, custom_config={
      gcp.ENABLE_VERTEX_KEY: True,
      gcp.VERTEX_REGION_KEY: vertex.region,
      gcp.VERTEX_CONTAINER_IMAGE_URI_KEY: vertex.serving_image,
      gcp.SERVING_ARGS_KEY: serving_args,
  })


def _pusher(config: PipelineConfig, warehouse: str = "", **inputs):
  custom_config = {KEEP_VERSIONS_KEY: config.keep_versions,
                   RUN_PARAMETERS_KEY: run_parameters(
                       config).to_custom_config()}
  if warehouse:
    # The Pusher fits the supply forecast's rates from the training window's
    # trips into the version (pusher.record_supply_rates).
    custom_config[WAREHOUSE_KEY] = warehouse
  kwargs = dict(
      push_destination=pusher_pb2.PushDestination(
          filesystem=pusher_pb2.PushDestination.Filesystem(
              base_directory=config.serving_dir)),
      # The run's parameters travel with the version, so the 5-minute job
      # (which may read no ML Metadata: Vertex's) serves with the slot
      # length, cells and arrival rule the model was trained with.
      custom_config=custom_config,
      # The same registry on every platform: versions, CURRENT and the run
      # parameters, on disk or under gs:// (taxi_demand.serving.registry).
      custom_executor_spec=executor_spec.ExecutorClassSpec(
          VersionedPusherExecutor),
      **inputs)
  return tfx_components.Pusher(**kwargs)


# --- one factory per node: (config, **inputs) -> component -----------------
# `inputs` are the node's input channels from the node table, those whose
# producer runs on the platform; a resolver's are the channels it resolves.


def _curated_schema(config: PipelineConfig):
  del config  # the checked-in schema
  return ImportSchemaGen(schema_file=SCHEMA_FILE)


def _vertex_curated_schema(config: PipelineConfig):
  # On Vertex the file is read inside the image, not on the compiling host.
  return ImportSchemaGen(schema_file=config.vertex.schema_file)


def _vertex_statistics_gen(config: PipelineConfig, **inputs):
  # With the schema, StatisticsGen counts the values of the categorical int
  # features (cell, hour); without it, their L-infinity drift and skew
  # comparators would always measure 0.
  del config
  return tfx_components.StatisticsGen(**inputs)


def _statistics_gen(config: PipelineConfig, **inputs):
  # TFX's StatisticsGen (its execution type and properties), with an
  # executor that adopts a day the window's one-pass ingest staged
  # (pipeline/staged_ingest.py) instead of computing it again.
  component = _vertex_statistics_gen(config, **inputs)
  component.executor_spec = executor_spec.BeamExecutorSpec(
      statistics_gen.Executor)
  return component


def _schema_gen(config: PipelineConfig, **inputs):
  del config
  return tfx_components.SchemaGen(infer_feature_shape=True, **inputs)


def _example_validator(config: PipelineConfig, **inputs):
  del config
  return tfx_components.ExampleValidator(**inputs)


def _data_gate(config: PipelineConfig, **inputs):
  del config
  return DataGate(**inputs)


def _vertex_data_gate(config: PipelineConfig, **inputs):
  # Vertex compiles no custom resolver to find the previous span's
  # statistics: DataGate records each verdict and finds the newest passed
  # day's statistics among them.
  return DataGate(verdicts_root=_verdicts_root(config),
                  query_key=_query_key(config), **inputs)


def _on_the_day(strategy_class):
  """The factory of a resolver that `strategy_class` answers for the run's
  day."""
  def resolver(config: PipelineConfig, **channels):
    return Resolver(strategy_class=strategy_class,
                            config={contract.SPAN: config.span}, **channels)
  return resolver


def _training_window(config: PipelineConfig, **channels):
  """The examples of the days a model for `config.span` trains on.

  One artifact per day, each ingested, checked and analysed once by an
  earlier run, resolved from ML Metadata (TrainingWindowStrategy: the last
  `train_days` days that DataGate passed).
  """
  return Resolver(strategy_class=TrainingWindowStrategy,
                          config=_window_config(config), **channels)


def _window_config(config: PipelineConfig) -> dict:
  """The config of the resolvers that ask for the run's window."""
  return {contract.SPAN: config.span, TRAIN_DAYS_KEY: config.train_days,
          QUERY_KEY: _query_key(config)}


def _analyzer_cache(config: PipelineConfig, **channels):
  """Transform's analyzer cache that holds the most of the run's window,
  any run's (WindowCacheStrategy); the one a finished Transform of this
  very window read when TFX's cache is on, so a rerun is served from it."""
  return Resolver(
      strategy_class=WindowCacheStrategy,
      config={**_window_config(config),
              REUSE_EXECUTIONS_KEY: config.enable_cache},
      **channels)


def _vertex_training_window(config: PipelineConfig, **channels):
  """Vertex compiles only TFX's latest-artifact resolvers, which cannot pick
  a window of spans, so there a second ExampleGen reads the window's days
  from BigQuery again: the days DataGate passed, by the day verdicts and
  the local resolver's rule (spans.window_days)."""
  del channels  # nothing is resolved
  return _bigquery_example_gen(config, window_days=config.train_days,
                               verdicts_root=_verdicts_root(config))


def _vertex_latest_blessed(config: PipelineConfig, **channels):
  # TFX's LatestBlessedModelStrategy, the one blessed-model strategy its
  # compiler knows (it cannot filter by producer or span;
  # vertex_run.only_gate_blessings narrows its compiled query to
  # ForecastGate's blessings). Locally: the model serving on this day.
  del config
  return Resolver(
      strategy_class=(
          latest_blessed_model_strategy.LatestBlessedModelStrategy),
      config={}, **channels)


def _transform(config: PipelineConfig, **inputs):
  # The graph is analysed over the window and nothing is materialised: the
  # Trainer applies today's graph to every day it reads, so no day is
  # trained on with an older day's vocabulary or mean. Transform's analysis
  # of a day is kept in its cache, keyed by that day's examples: each day is
  # analysed once, in the first window that holds it (locally; on Vertex
  # the window is one new artifact a day, which no cache matches).
  del config
  return tfx_components.Transform(
      preprocessing_fn=PREPROCESSING_FN,
      splits_config=transform_pb2.SplitsConfig(analyze=[contract.DAY_SPLIT]),
      materialize=False,
      disable_statistics=True,
      **inputs)


def _local_transform(config: PipelineConfig, **inputs):
  # TFX's Transform (its execution type and properties), with an executor
  # that analyses the days no cache holds in process and writes each
  # analyzer cache entry in one Beam step: a new home's first Transform
  # caches 28 days (pipeline/components/transform.py).
  component = _transform(config, **inputs)
  component.executor_spec = executor_spec.BeamExecutorSpec(
      transform.Executor)
  return component


def _evaluator(config: PipelineConfig, **inputs):
  return tfx_components.Evaluator(example_splits=[contract.DAY_SPLIT],
                                  eval_config=eval_config(config), **inputs)


def _query_config(config: PipelineConfig) -> str:
  """The run parameters as the components that query the warehouse take
  them."""
  return json.dumps(run_parameters(config).to_custom_config(), sort_keys=True)


def _guidance_gate(config: PipelineConfig, **inputs):
  # Drivers following the candidate's forecasts against the serving
  # model's, on the eval day's trips: where the warehouse is.
  return GuidanceGate(warehouse_path=config.warehouse_path,
                      query_config=_query_config(config), **inputs)


def _forecast_gate(config: PipelineConfig, **inputs):
  return ForecastGate(
      naive_margin=config.thresholds.naive_margin,
      cell_margin=config.thresholds.cell_margin,
      min_cell_pickups=config.thresholds.min_cell_pickups,
      min_eval_pickups=config.thresholds.min_eval_pickups,
      change_tolerance=config.thresholds.change_tolerance,
      change_z=config.thresholds.change_z,
      **inputs)


def _local_pusher(config: PipelineConfig, **inputs):
  return _pusher(config, warehouse=str(config.warehouse_path), **inputs)


def _vertex_pusher(config: PipelineConfig, **inputs):
  # The trips are in BigQuery, which the Pusher's container reads as the
  # SkewValidator's does.
  return _pusher(config, warehouse=f"bq://{config.query.table}", **inputs)


def _next_day_validator(config: PipelineConfig, **inputs):
  # The model that served on this day, scored on this day's data (the
  # newest day is ExampleGen's eval split). It records, never blocks.
  return NextDayValidator(serving_log_dir=config.serving_log_dir, **inputs)


def _local_next_day_validator(config: PipelineConfig, **inputs):
  # The supply forecasts served for the day are scored on its trips too.
  return _next_day_validator(config, warehouse_path=config.warehouse_path,
                             query_config=_query_config(config), **inputs)


def _vertex_next_day_validator(config: PipelineConfig, **inputs):
  return _next_day_validator(config,
                             warehouse_path=f"bq://{config.query.table}",
                             query_config=_query_config(config), **inputs)


def _skew_validator(config: PipelineConfig, **inputs):
  # Where a serving log exists: training-serving skew against the serving
  # model's own training statistics, found through lineage.
  return SkewValidator(
      serving_log_dir=config.serving_log_dir,
      date=spans.day_of(config.span).isoformat(),
      fail_on_skew=0,
      warehouse_path=config.warehouse_path,
      query_config=_query_config(config),
      models_dir=config.serving_dir,
      **inputs)


def _vertex_skew_validator(config: PipelineConfig, **inputs):
  # No lineage-walking resolver on Vertex: the executor finds the serving
  # version's training statistics from the registry and the day verdicts,
  # and takes the day from the run's examples (a scheduled run's day is
  # known only once ExampleGen ran). The trips are in BigQuery.
  return SkewValidator(
      serving_log_dir=config.serving_log_dir,
      date="",
      fail_on_skew=0,
      warehouse_path=f"bq://{config.query.table}",
      query_config=_query_config(config),
      models_dir=config.serving_dir,
      verdicts_root=_verdicts_root(config),
      **inputs)


Factory = Callable[..., Optional[base_node.BaseNode]]

# The local graph: a factory for each node of the node table that runs
# locally. A new node is a row of the table and a line here.
FACTORIES: Dict[str, Factory] = {
    contract.EXAMPLE_GEN: _duckdb_example_gen,
    contract.STATISTICS_GEN: _statistics_gen,
    contract.SCHEMA_GEN: _schema_gen,
    contract.CURATED_SCHEMA: _curated_schema,
    contract.EXAMPLE_VALIDATOR: _example_validator,
    contract.PREVIOUS_STATISTICS: _on_the_day(PreviousSpanStrategy),
    contract.DATA_GATE: _data_gate,
    contract.TRAINING_WINDOW: _training_window,
    contract.LATEST_ANALYZER_CACHE: _analyzer_cache,
    contract.TRANSFORM: _local_transform,
    # The model serving on this day.
    contract.LATEST_BLESSED_MODEL: _on_the_day(ServingModelStrategy),
    contract.TRAINER: _trainer,
    contract.EVALUATOR: _evaluator,
    contract.GUIDANCE_GATE: _guidance_gate,
    contract.FORECAST_GATE: _forecast_gate,
    contract.PUSHER: _local_pusher,
    contract.NEXT_DAY_VALIDATOR: _local_next_day_validator,
    contract.SERVING_MODEL_TRAINING: _on_the_day(ServingModelStrategy),
    contract.SKEW_VALIDATOR: _skew_validator,
}

# The Vertex graph: the table's Vertex nodes, these made for Vertex.
VERTEX_FACTORIES: Dict[str, Factory] = {
    **FACTORIES,
    contract.EXAMPLE_GEN: _bigquery_example_gen,
    contract.STATISTICS_GEN: _vertex_statistics_gen,
    contract.TRANSFORM: _transform,
    contract.CURATED_SCHEMA: _vertex_curated_schema,
    contract.DATA_GATE: _vertex_data_gate,
    contract.TRAINING_WINDOW: _vertex_training_window,
    contract.SKEW_VALIDATOR: _vertex_skew_validator,
    contract.LATEST_BLESSED_MODEL: _vertex_latest_blessed,
    contract.PUSHER: _vertex_pusher,
    contract.NEXT_DAY_VALIDATOR: _vertex_next_day_validator,
    contract.ENDPOINT_PUSHER: _endpoint_pusher,
}
# Dataflow for the Beam-heavy nodes; the rest run in their own container.
DATAFLOW_NODES = (contract.EXAMPLE_GEN, contract.TRAINING_WINDOW,
                  contract.STATISTICS_GEN, contract.TRANSFORM,
                  contract.EVALUATOR)


def _resolved_channels(node: nodes.Node) -> dict:
  """What a resolver node asks ML Metadata for: its inputs' outputs of
  earlier runs, as channels of their artifact types."""
  return {key: Channel(
      type=getattr(standard_artifacts, node.outputs[key]),
      producer_component_id=source.producer, output_key=source.key)
          for key, source in node.inputs.items()}


def assemble(config: PipelineConfig,
             factories: Mapping[str, Factory]) -> List[base_node.BaseNode]:
  """The components of the node table's nodes on `config.platform`.

  Each node's factory gets the outputs of the nodes it reads (those that
  run on the platform). Nothing gated trains on, or is judged on, a day
  that DataGate refused: the refusal is a recorded decision, those nodes
  are skipped and the run completes (penguin's Cond pattern).
  """
  table = nodes.run_order(config.platform.value)
  present = {node.id for node in table}
  built: Dict[str, base_node.BaseNode] = {}

  def build(node: nodes.Node) -> None:
    if node.resolver:
      inputs = _resolved_channels(node)
    else:
      inputs = {key: built[source.producer].outputs[source.key]
                for key, source in node.inputs.items()
                if source.producer in present}
    component = factories[node.id](config, **inputs)
    if component is not None:
      built[node.id] = component.with_id(node.id)

  for node in table:
    if not node.gated:
      build(node)
  verdict = built[nodes.GATE].outputs[nodes.GATE_OUTPUT].future()[
      0].custom_property(nodes.GATE_PROPERTY)
  with Cond(verdict == 1):
    for node in table:
      if node.gated:
        build(node)
  return [built[node.id] for node in table if node.id in built]


def create_pipeline(config: PipelineConfig) -> Pipeline:
  """The daily graph for `config.span`: validate, train, evaluate, push.

  The one platform branch: the local graph, or the Vertex one (its own
  factories, Dataflow, no local ML Metadata).
  """
  metadata_config = None
  if config.platform is Platform.LOCAL:
    components = assemble(config, FACTORIES)
    metadata_config = metadata.sqlite_metadata_connection_config(
        config.metadata_path)
  else:
    components = assemble(config, VERTEX_FACTORIES)
    for component in components:
      if component.id in DATAFLOW_NODES:
        component.with_beam_pipeline_args(
            list(config.vertex.dataflow_beam_args))
  return Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_config,
      beam_pipeline_args=list(config.beam_pipeline_args))
