"""The ML Metadata contract: every name the store's writers and readers share.

The pipeline (`pipeline/pipeline.py`) writes node ids, output keys and
properties into ML Metadata through TFX; the CLI, the resolvers, the
components, serving and the synthetic test stores read them back. They all
import the names from here, so a rename is one edit and no reader can drift
from the writer. The properties of this pipeline's own outputs are named by
their record classes instead, in `taxi_demand.lineage.records`. Standard
library only: importing this costs nothing, and the metadata commands stay
free of TensorFlow and TFX.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Mapping, Optional

# --- the pipeline and TFX's context types -------------------------------------

PIPELINE_NAME = "taxi_demand"
PIPELINE_CONTEXT = "pipeline"
PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"

# --- node ids: golden specs, ML Metadata queries and --from-node rely on them --

EXAMPLE_GEN = "ExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"                 # inferred, kept for comparison
CURATED_SCHEMA = "CuratedSchema"         # the checked-in schema, imported
EXAMPLE_VALIDATOR = "ExampleValidator"
PREVIOUS_STATISTICS = "PreviousSpanStatistics"
DATA_GATE = "DataGate"
TRAINING_WINDOW = "TrainingWindow"       # the window's spans, from MLMD
LATEST_ANALYZER_CACHE = "LatestAnalyzerCache"
TRANSFORM = "Transform"
LATEST_BLESSED_MODEL = "LatestBlessedModel"
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
FORECAST_GATE = "ForecastGate"
GUIDANCE_GATE = "GuidanceGate"           # local runs: needs the warehouse
PUSHER = "Pusher"
NEXT_DAY_VALIDATOR = "NextDayValidator"
SERVING_MODEL_TRAINING = "ServingModelTraining"
SKEW_VALIDATOR = "SkewValidator"
ENDPOINT_PUSHER = "EndpointPusher"        # Vertex with an endpoint only

# The Vertex runtime parameter that names the day, and its value for "the
# newest complete city day at the scheduled time".
SPAN_PARAMETER = "span"
AUTO_SPAN = 0
# A scheduled run (AUTO_SPAN) takes the newest city day that ended at least
# this many hours before its scheduled time: the table's freshness lag.
READY_AFTER_HOURS = "ready_after_hours"
DEFAULT_READY_AFTER_HOURS = 2.0

# --- input and output keys (TFX's standard ones, and this pipeline's) ---------

EXAMPLES = "examples"
STATISTICS = "statistics"
SCHEMA = "schema"
ANOMALIES = "anomalies"
REPORT = "report"
TRANSFORMED_EXAMPLES = "transformed_examples"
TRANSFORM_GRAPH = "transform_graph"
ANALYZER_CACHE = "analyzer_cache"
UPDATED_ANALYZER_CACHE = "updated_analyzer_cache"
MODEL = "model"
BASE_MODEL = "base_model"
BASELINE_MODEL = "baseline_model"
EVALUATION = "evaluation"
BLESSING = "blessing"
EVALUATOR_BLESSING = "evaluator_blessing"
MODEL_BLESSING = "model_blessing"
PUSHED_MODEL = "pushed_model"
RESULT = "result"
GUIDANCE = "guidance"                   # ForecastGate's GuidanceGate input

# --- artifact types readers ask for by name (TFX's standard ones) -------------

EXAMPLES_TYPE = "Examples"
MODEL_TYPE = "Model"
PUSHED_MODEL_TYPE = "PushedModel"
MODEL_BLESSING_TYPE = "ModelBlessing"

# --- artifact and execution properties ----------------------------------------
# The properties of this pipeline's own outputs (DataGate's report, the
# blessings, the skew, next-day and guidance results, the ingest
# fingerprint) are named only by their record classes, in
# taxi_demand/lineage/records.py, which write and read them. The names here
# are TFX's own, or those of outputs with no record class yet.

SPAN = "span"                          # on Examples, statistics, blessings
SPLIT_NAMES = "split_names"
# The one split of a span's examples and statistics: its day. A day is the
# eval day of the run that ingests it and a training day of the runs after.
DAY_SPLIT = "day"
CUSTOM_CONFIG = "custom_config"        # the Trainer's: the run parameters
WAREHOUSE_PATH = "warehouse_path"      # the local ExampleGen's
PUSHED = "pushed"
PUSHED_VERSION = "pushed_version"
PUSHED_DESTINATION = "pushed_destination"
TRAIN_EXAMPLES = "train_examples"      # the window's (a run summary's)
# On an execution whose process died mid-node (kill -9, power loss): why it
# was marked CANCELED by the next daily run on the home.
ABORTED = "taxi_demand_aborted"
# A rollback's execution.
FROM_VERSION = "from_version"
TO_VERSION = "to_version"

# Files inside artifact folders that readers other than TFX open (the
# report): TFX's split folders and TFDV's file names, and this pipeline's
# JSON summaries.
SPLIT_FOLDER = "Split-{split}"
STATISTICS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"
DATA_GATE_FILE = "data_gate.json"        # DataGate's summary, in its report
SKEW_REPORT_FILE = "skew_report.json"    # SkewValidator's, in its report

# --- types of the checks recorded outside the pipeline ------------------------
# Names follow KFP's "<namespace>.<Type>" rule, so they compile for Vertex.

ROLLBACK = "taxi_demand.Rollback"
NEXT_DAY = "taxi_demand.NextDayValidation"
NEXT_DAY_RESULT = "taxi_demand.NextDayResult"
GUIDANCE_RESULT = "taxi_demand.GuidanceResult"
SKEW_CHECK = "taxi_demand.SkewCheck"
SKEW_REPORT = "taxi_demand.SkewReport"
SERVING_LOG = "taxi_demand.ServingLog"


# --- the run parameters ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunParameters:
  """What a person asks "which parameters made this model?" about.

  Written as the Trainer's custom_config, so it lands in ML Metadata as an
  execution property; `show`, `diff`, next-day and serving read it back
  through `from_custom_config`. Defaults are those of an unrecorded run.
  """
  span: Optional[int] = None
  train_days: Optional[int] = None
  train_steps: Optional[int] = None
  warm_start_steps: Optional[int] = None   # steps when warm-started
  slot_minutes: int = 30
  spatial_unit: str = "community_area"
  grid_metres: int = 1000
  source_table: str = "trips"
  arrival: str = "start+0s"            # sql.ArrivalRule, as text
  naive_margin: Optional[float] = None
  change_tolerance: Optional[float] = None
  change_z: Optional[float] = None         # ForecastGate's noise, in SEs
  cell_margin: Optional[float] = None
  min_eval_pickups: Optional[int] = None   # ForecastGate's evidence floor
  ready_after_hours: Optional[float] = None  # Vertex: the table's lag
  code_version: str = ""
  hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def to_custom_config(self) -> Dict[str, Any]:
    """The dict the Trainer records (JSON-serialisable)."""
    out = dataclasses.asdict(self)
    out["hparams"] = dict(self.hparams)
    return out

  @classmethod
  def from_custom_config(cls, raw: Any) -> Optional["RunParameters"]:
    """Parses a recorded custom_config (a dict or its JSON); None if absent.

    Keys this version does not know (a newer writer's) are ignored; missing
    ones take the defaults, so older stores still read.
    """
    raw = parse_custom_config(raw)
    if raw is None:
      return None
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in raw.items() if k in known and v is not None}
    return cls(**kwargs)

  def query_config(self):
    """The demand query the model was trained with, over the local warehouse.

    The recorded source table names the table the run read (a BigQuery table
    on Vertex); scoring or serving on this machine reads the local
    warehouse's `trips`, with the recorded slot length and spatial unit.
    """
    from taxi_demand.data import sql  # noqa: PLC0415
    return sql.QueryConfig(slot_minutes=int(self.slot_minutes),
                           spatial_unit=sql.SpatialUnit(self.spatial_unit),
                           grid_metres=int(self.grid_metres),
                           arrival=sql.ArrivalRule.parse(self.arrival))


def parse_custom_config(raw: Any) -> Optional[Dict[str, Any]]:
  """A recorded custom_config as the plain dict it was written from."""
  if isinstance(raw, str):
    try:
      raw = json.loads(raw)
    except ValueError:
      return None
  return raw if isinstance(raw, dict) else None
