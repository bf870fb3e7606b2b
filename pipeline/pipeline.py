"""create_pipeline(config): the daily continuous-training graph. Pure: no I/O."""

from __future__ import annotations

import json
import os
from typing import List

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

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
from pipeline.components.resolvers import EarlierDayCacheStrategy
from pipeline.components.resolvers import PreviousSpanStrategy
from pipeline.components.resolvers import ServingModelStrategy
from pipeline.components.resolvers import QUERY_KEY
from pipeline.components.resolvers import TRAIN_DAYS_KEY
from pipeline.components.resolvers import TrainingWindowStrategy
from pipeline.components.skew_validator import SkewValidator
from pipeline.config import PipelineConfig
from pipeline.config import Platform
from pipeline.config import VertexConfig
from taxi_demand import spans
from taxi_demand import features
from taxi_demand.lineage import contract

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
PREPROCESSING_FN = "taxi_demand.modeling.preprocessing.preprocessing_fn"
RUN_FN = "taxi_demand.modeling.trainer.run_fn"

def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """MAE, RMSE and bias, overall and by hour, day of week and cell.

  The TFMA thresholds are "not worse than the last blessed model" (ignored on
  the first run, when there is no baseline) and "the eval day is not empty",
  both on the whole eval day only: a plain `threshold` would apply to every
  slice, and no model beats its predecessor in each of 77 cells and 24 hours
  on one day of counts. The comparison with the seasonal-naive forecast,
  overall and per busy cell, happens in ForecastGate.
  """
  whole_day = [tfma.SlicingSpec()]

  def on_whole_day(threshold: tfma.MetricThreshold):
    return [tfma.PerSliceMetricThreshold(slicing_specs=whole_day,
                                         threshold=threshold)]

  not_worse = tfma.MetricThreshold(
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.LOWER_IS_BETTER,
          absolute={"value": config.thresholds.change_tolerance}))
  not_empty = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 1}))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name="serving_default",
          label_key=features.LABEL,
          prediction_key="predicted_pickups")],
      slicing_specs=whole_day + [
          tfma.SlicingSpec(feature_keys=[features.HOUR]),
          tfma.SlicingSpec(feature_keys=[features.DAY_OF_WEEK]),
          tfma.SlicingSpec(feature_keys=[features.CELL]),
      ],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          # An empty eval day blesses nothing. A value threshold also keeps
          # validation on for the first run, when TFMA drops change
          # thresholds for want of a baseline.
          tfma.MetricConfig(class_name="ExampleCount",
                            per_slice_thresholds=on_whole_day(not_empty)),
          tfma.MetricConfig(class_name="MeanAbsoluteError",
                            per_slice_thresholds=on_whole_day(not_worse)),
          tfma.MetricConfig(class_name="RootMeanSquaredError"),
          tfma.MetricConfig(class_name="MeanPrediction"),
          tfma.MetricConfig(class_name="MeanLabel"),
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
      cell_margin=config.thresholds.cell_margin,
      min_eval_pickups=config.thresholds.min_eval_pickups,
      ready_after_hours=(config.vertex.ready_after_hours
                         if config.vertex else None),
      code_version=config.code_version,
      hparams=dict(config.hparams))


def _example_gen(config: PipelineConfig, node_id: str, days_before: int = 0):
  """The one platform branch for data: DuckDB locally, BigQuery on Vertex.

  The same demand query either way: the run's day (`days_before` = 0), or
  on Vertex the window before it (see `_training_window`).
  """
  input_config = input_config_for(config.query, days_before)
  if config.platform is Platform.LOCAL:
    return DuckDBExampleGen(warehouse_path=config.warehouse_path,
                            input_config=input_config,
                            range_config=range_config_for(config.span)
                            ).with_id(node_id)
  # No query-based driver runs on Vertex, so range_config would be ignored:
  # the executor fills the span from this parameter (0: from the schedule).
  return SpanBigQueryExampleGen(
      input_config=input_config,
      span=tfx.dsl.experimental.RuntimeParameter(
          name=contract.SPAN_PARAMETER, ptype=int, default=config.span),
      ready_after_hours=config.vertex.ready_after_hours,
  ).with_id(node_id)


def _training_window(config: PipelineConfig):
  """The examples of the days a model for `config.span` trains on.

  Locally: one artifact per day, each ingested, checked and analysed once
  by an earlier run, resolved from ML Metadata (TrainingWindowStrategy: the
  last `train_days` days that DataGate passed). Vertex compiles only
  TFX's latest-artifact resolvers, which cannot pick a window of spans, so
  there a second ExampleGen reads the window's days from BigQuery again.
  """
  if config.platform is Platform.LOCAL:
    return tfx.dsl.Resolver(
        strategy_class=TrainingWindowStrategy,
        config={contract.SPAN: config.span,
                TRAIN_DAYS_KEY: config.train_days,
                QUERY_KEY: query_key(input_config_for(config.query))},
        examples=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples,
            producer_component_id=contract.EXAMPLE_GEN,
            output_key=contract.EXAMPLES)).with_id(contract.TRAINING_WINDOW)
  return _example_gen(config, contract.TRAINING_WINDOW,
                      days_before=config.train_days)


def _vertex_training_config(vertex: VertexConfig) -> dict:
  """custom_config keys that make TFX's cloud Trainer run a Vertex custom job."""
  machine_spec = {"machine_type": vertex.training_machine_type}
  if vertex.accelerator_type:
    machine_spec.update(accelerator_type=vertex.accelerator_type,
                        accelerator_count=vertex.accelerator_count or 1)
  job_spec = {
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
  gcp = tfx.extensions.google_cloud_ai_platform
  return {gcp.ENABLE_VERTEX_KEY: True, gcp.VERTEX_REGION_KEY: vertex.region,
          gcp.TRAINING_ARGS_KEY: job_spec}


def _trainer(config: PipelineConfig, **kwargs):
  if config.vertex is not None and config.vertex.vertex_training:
    kwargs["custom_config"] = {**kwargs["custom_config"],
                               **_vertex_training_config(config.vertex)}
    return tfx.extensions.google_cloud_ai_platform.Trainer(**kwargs)
  return tfx.components.Trainer(**kwargs)


def _endpoint_pusher(vertex: VertexConfig, model, blessing):
  """Deploys blessed models to a Vertex endpoint, besides the GCS push."""
  gcp = tfx.extensions.google_cloud_ai_platform
  serving_args = {"project_id": vertex.project,
                  "endpoint_name": vertex.endpoint,
                  "machine_type": vertex.serving_machine_type}
  if vertex.kms_key:
    serving_args["encryption_spec_key_name"] = vertex.kms_key
  return gcp.Pusher(model=model, model_blessing=blessing, custom_config={
      gcp.ENABLE_VERTEX_KEY: True,
      gcp.VERTEX_REGION_KEY: vertex.region,
      gcp.VERTEX_CONTAINER_IMAGE_URI_KEY: vertex.serving_image,
      gcp.SERVING_ARGS_KEY: serving_args,
  }).with_id(contract.ENDPOINT_PUSHER)


def _pusher(config: PipelineConfig, model, blessing):
  kwargs = dict(
      model=model,
      model_blessing=blessing,
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_dir)),
      # The run's parameters travel with the version, so the 5-minute job
      # (which may read no ML Metadata: Vertex's) serves with the slot
      # length, cells and arrival rule the model was trained with.
      custom_config={KEEP_VERSIONS_KEY: config.keep_versions,
                     RUN_PARAMETERS_KEY: run_parameters(
                         config).to_custom_config()},
      # The same registry on every platform: versions, CURRENT and the run
      # parameters, on disk or under gs:// (taxi_demand.serving.registry).
      custom_executor_spec=executor_spec.ExecutorClassSpec(
          VersionedPusherExecutor))
  return tfx.components.Pusher(**kwargs)


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
  """The daily graph for `config.span`: validate, train, evaluate, push."""
  # This run ingests its own day only; the days before it were ingested,
  # checked and analysed by the runs that had them as their own day.
  example_gen = _example_gen(config, contract.EXAMPLE_GEN)
  examples = example_gen.outputs[contract.EXAMPLES]

  # On Vertex the file is read inside the image, not on the compiling host.
  schema_file = (config.vertex.schema_file if config.vertex is not None
                 else os.path.join(SCHEMA_DIR, "schema.pbtxt"))
  curated_schema = tfx.components.ImportSchemaGen(
      schema_file=schema_file).with_id(contract.CURATED_SCHEMA)
  schema = curated_schema.outputs[contract.SCHEMA]
  # With the schema, StatisticsGen counts the values of the categorical int
  # features (cell, hour); without it, their L-infinity drift and skew
  # comparators would always measure 0.
  statistics_gen = tfx.components.StatisticsGen(
      examples=examples, schema=schema).with_id(contract.STATISTICS_GEN)
  statistics = statistics_gen.outputs[contract.STATISTICS]
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics, infer_feature_shape=True).with_id(contract.SCHEMA_GEN)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics, schema=schema).with_id(contract.EXAMPLE_VALIDATOR)

  # Vertex compiles only TFX's built-in resolver strategies, so the
  # previous-span drift check is local only; on Vertex DataGate skips it.
  on_vertex = config.platform is Platform.VERTEX
  previous_statistics = None
  if not on_vertex:
    previous_statistics = tfx.dsl.Resolver(
        strategy_class=PreviousSpanStrategy,
        config={contract.SPAN: config.span},
        statistics=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id=contract.STATISTICS_GEN,
            output_key=contract.STATISTICS)).with_id(contract.PREVIOUS_STATISTICS)
  data_gate = DataGate(
      statistics=statistics,
      schema=schema,
      anomalies=example_validator.outputs[contract.ANOMALIES],
      previous_statistics=(previous_statistics.outputs[contract.STATISTICS]
                           if previous_statistics else None),
      **({"check_drift": 0} if on_vertex else {}),
  ).with_id(contract.DATA_GATE)

  # On Vertex: TFX's LatestBlessedModelStrategy, the one blessed-model
  # strategy its compiler knows (it cannot filter by producer or span;
  # vertex_run.only_gate_blessings narrows its compiled query to
  # ForecastGate's blessings). Locally: the model serving on this day.
  latest_blessed = tfx.dsl.Resolver(
      strategy_class=(tfx.dsl.experimental.LatestBlessedModelStrategy
                      if on_vertex else ServingModelStrategy),
      config={} if on_vertex else {contract.SPAN: config.span},
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id=contract.TRAINER,
                            output_key=contract.MODEL),
      # Only ForecastGate's blessing counts: the Evaluator's own blessing
      # knows nothing of the seasonal-naive checks.
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing,
          producer_component_id=contract.FORECAST_GATE,
          output_key=contract.BLESSING)).with_id(contract.LATEST_BLESSED_MODEL)
  baseline_model = latest_blessed.outputs[contract.MODEL]

  # Nothing trains on, or is judged on, a day that DataGate refused. The
  # refusal is a recorded decision: these nodes are skipped, the run
  # completes, and `runs` shows the day as refused (penguin's Cond pattern).
  verdict = data_gate.outputs[contract.REPORT].future()[0].custom_property(
      contract.DATA_PASSED)
  training_window = _training_window(config)
  window = training_window.outputs[contract.EXAMPLES]
  # Transform's analysis of a day is kept in its cache, keyed by that day's
  # examples: each day is analysed once, in the first window that holds it.
  # On Vertex the window is one new artifact a day, which no cache matches.
  analyzer_cache = None
  if not on_vertex:
    analyzer_cache = tfx.dsl.Resolver(
        strategy_class=EarlierDayCacheStrategy,
        config={contract.SPAN: config.span},
        cache=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.TransformCache,
            producer_component_id=contract.TRANSFORM,
            output_key=contract.UPDATED_ANALYZER_CACHE),
    ).with_id(contract.LATEST_ANALYZER_CACHE)
  with tfx.dsl.Cond(verdict == 1):
    # The graph is analysed over the window and nothing is materialised:
    # the Trainer applies today's graph to every day it reads, so no day is
    # trained on with an older day's vocabulary or mean.
    transform = tfx.components.Transform(
        examples=window, schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        analyzer_cache=(analyzer_cache.outputs["cache"]
                        if analyzer_cache else None),
        splits_config=tfx.proto.SplitsConfig(analyze=[contract.DAY_SPLIT]),
        materialize=False,
        disable_statistics=True).with_id(contract.TRANSFORM)
    trainer = _trainer(
        config,
        run_fn=RUN_FN,
        examples=window,
        transform_graph=transform.outputs[contract.TRANSFORM_GRAPH],
        schema=schema,
        base_model=baseline_model,
        train_args=tfx.proto.TrainArgs(splits=[contract.DAY_SPLIT],
                                       num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(splits=[contract.DAY_SPLIT],
                                     num_steps=config.eval_steps),
        custom_config=run_parameters(config).to_custom_config(),
    ).with_id(contract.TRAINER)
    model = trainer.outputs[contract.MODEL]
    evaluator = tfx.components.Evaluator(
        examples=examples,
        example_splits=[contract.DAY_SPLIT],
        model=model,
        baseline_model=baseline_model,
        eval_config=eval_config(config)).with_id(contract.EVALUATOR)
    # Drivers following the candidate's forecasts against the serving
    # model's, on the eval day's trips: where the warehouse is.
    guidance_gate = None
    if not on_vertex:
      guidance_gate = GuidanceGate(
          model=model,
          examples=examples,
          baseline_model=baseline_model,
          warehouse_path=config.warehouse_path,
          query_config=json.dumps(run_parameters(config).to_custom_config(),
                                  sort_keys=True),
      ).with_id(contract.GUIDANCE_GATE)
    forecast_gate = ForecastGate(
        model=model,
        examples=examples,
        evaluation=evaluator.outputs[contract.EVALUATION],
        evaluator_blessing=evaluator.outputs[contract.BLESSING],
        **({contract.GUIDANCE: guidance_gate.outputs[contract.RESULT]}
           if guidance_gate else {}),
        naive_margin=config.thresholds.naive_margin,
        cell_margin=config.thresholds.cell_margin,
        min_cell_pickups=config.thresholds.min_cell_pickups,
        min_eval_pickups=config.thresholds.min_eval_pickups,
    ).with_id(contract.FORECAST_GATE)
    blessing = forecast_gate.outputs[contract.BLESSING]
    pusher = _pusher(config, model, blessing).with_id(contract.PUSHER)
    endpoint_pusher = None
    if on_vertex and config.vertex.endpoint:
      endpoint_pusher = _endpoint_pusher(config.vertex, model, blessing)
    # The model that served on this day, scored on this day's data (the
    # newest day is ExampleGen's eval split). It records, never blocks.
    next_day = NextDayValidator(
        examples=examples,
        model=baseline_model,
        model_blessing=latest_blessed.outputs[contract.MODEL_BLESSING],
        serving_log_dir="" if on_vertex else config.serving_log_dir,
    ).with_id(contract.NEXT_DAY_VALIDATOR)

  # Where a serving log exists: training-serving skew against the serving
  # model's own training statistics, found through lineage.
  serving_training = skew_validator = None
  if not on_vertex:  # its lineage-walking resolver is a custom strategy
    serving_training = tfx.dsl.Resolver(
        strategy_class=ServingModelStrategy,
        config={contract.SPAN: config.span},
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                              producer_component_id=contract.TRAINER,
                              output_key=contract.MODEL),
        model_blessing=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ModelBlessing,
            producer_component_id=contract.FORECAST_GATE, output_key=contract.BLESSING),
        statistics=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id=contract.STATISTICS_GEN, output_key=contract.STATISTICS),
        schema=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Schema,
            producer_component_id=contract.CURATED_SCHEMA, output_key=contract.SCHEMA),
    ).with_id(contract.SERVING_MODEL_TRAINING)
    skew_validator = SkewValidator(
        serving_log_dir=config.serving_log_dir,
        date=spans.day_of(config.span).isoformat(),
        statistics=serving_training.outputs[contract.STATISTICS],
        schema=serving_training.outputs[contract.SCHEMA],
        fail_on_skew=0,
        warehouse_path=config.warehouse_path,
        query_config=json.dumps(run_parameters(config).to_custom_config(),
                                sort_keys=True),
    ).with_id(contract.SKEW_VALIDATOR)

  components: List = [
      example_gen, statistics_gen, schema_gen, curated_schema,
      example_validator, previous_statistics, data_gate, training_window,
      analyzer_cache, transform,
      latest_blessed, trainer, evaluator, guidance_gate, forecast_gate,
      pusher, next_day,
  ]
  if skew_validator is not None:
    components += [serving_training, skew_validator]
  components = [c for c in components + [endpoint_pusher] if c is not None]
  if on_vertex:
    # Dataflow for the Beam-heavy nodes; the rest run in their own container.
    for node in (example_gen, training_window, statistics_gen, transform,
                 evaluator):
      node.with_beam_pipeline_args(list(config.vertex.dataflow_beam_args))
  metadata_config = None
  if config.platform is Platform.LOCAL:
    metadata_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path)
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_config,
      beam_pipeline_args=list(config.beam_pipeline_args))
