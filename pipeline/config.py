"""PipelineConfig: everything create_pipeline needs, built once by a runner."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping, Optional

from taxi_demand.data.sql import QueryConfig


class Platform(enum.Enum):
  """Where the pipeline runs; create_pipeline branches on it once."""
  LOCAL = "local"
  VERTEX = "vertex"


@dataclasses.dataclass(frozen=True)
class Thresholds:
  """When a model is good enough to push.

  Attributes:
    naive_margin: the model's MAE must be at least this fraction below the
      seasonal-naive MAE (same slot last week) on the eval day.
    change_tolerance: an extra allowance (absolute MAE) by which a candidate
      may be worse than the last blessed model, on top of the day's noise;
      0 for none.
    change_z: the day's noise, in standard errors: a candidate is refused
      as worse than the last blessed model only when its whole-day MAE
      exceeds that model's by more than change_tolerance plus change_z
      standard errors of the paired difference over cells (ForecastGate's
      `paired_change`).
    cell_margin: no busy cell may have an MAE more than this fraction above its
      own seasonal-naive MAE.
    min_cell_pickups: a cell is "busy" with at least this many pickups on the
      eval day; quieter cells are too noisy to judge one by one.
    min_eval_pickups: the evidence floor: nothing is blessed on an eval day
      with fewer pickups than this in all, whatever its metrics, on the first
      run as on any other; 0 for no floor.
  """
  naive_margin: float = 0.10
  change_tolerance: float = 0.0
  # One day's MAE moves by about 1% with what the day held, and a candidate
  # trained a day later cannot help which holidays and events its window
  # holds: with zero tolerance, the loop refused on noise and the serving
  # model went 9 days stale (bench/operation.py). Two standard errors of
  # the paired difference: an equally good candidate is refused on about
  # 2.5% of days (one-sided), a clearly worse one still is. Fixed, not
  # fitted to any day.
  change_z: float = 2.0
  cell_margin: float = 0.25
  min_cell_pickups: int = 200
  # A day's pickups spread over 77 areas x 48 slots (3,696 cells and slots)
  # are mostly zeros when they are few, and then MAE rewards forecasting
  # nothing. Simulated with the calibrated city's shares (Poisson days, the
  # seasonal-naive forecast a draw of the same week's intensity): a forecast
  # of zero everywhere beats seasonal naive by 10% on every day of 100
  # pickups, on 6 days in 10 of 300, on none of 1,000; the true intensity
  # passes on 1 day in 4 of 100 pickups and on every day of 1,000. The same
  # holds for 15-minute slots. So 1,000 is about the fewest pickups on which
  # "beats seasonal naive" tells a forecast from none: under 2% of a
  # city's day (~60k at the simulator's scale 1.0; the smallest simulated
  # cities the tests and notebook run, scale 0.3, have ~18k) and two orders
  # of magnitude above the ~10 trips a day of TFX's Chicago test CSVs.
  min_eval_pickups: int = 1000


@dataclasses.dataclass(frozen=True)
class VertexConfig:
  """What Platform.VERTEX adds: project, image, Dataflow, training, endpoint.

  runner_vertex.py fills it from flags (see pipeline/vertex_run.py).

  Attributes:
    project: the Google Cloud project that runs BigQuery, Dataflow, training.
    region: Vertex AI and Dataflow region.
    image: the pipeline image (Dockerfile); Vertex training runs it too.
    schema_file: the curated schema's path inside the image.
    dataflow_beam_args: Beam args of the Beam-heavy nodes (ExampleGen,
      StatisticsGen, Transform, Evaluator): DataflowRunner and its options.
    service_account, network, kms_key: the identity, VPC network and CMEK
      key of Vertex training and endpoint jobs ("" for the defaults).
    vertex_training: train in a Vertex custom job instead of in the
      pipeline's own container.
    training_machine_type, accelerator_type, accelerator_count: that job's
      machine ("" / 0 for no accelerator).
    endpoint: a Vertex endpoint name to deploy blessed models to, besides the
      GCS push ("" for none).
    serving_image, serving_machine_type: the endpoint's prediction container
      and machine.
    ready_after_hours: the table's freshness lag: a scheduled run takes the
      newest city day that ended at least this many hours before it.
  """
  project: str
  region: str
  image: str
  schema_file: str
  dataflow_beam_args: tuple[str, ...] = ()
  service_account: str = ""
  network: str = ""
  kms_key: str = ""
  vertex_training: bool = False
  training_machine_type: str = "n1-standard-4"
  accelerator_type: str = ""
  accelerator_count: int = 0
  endpoint: str = ""
  serving_image: str = (
      "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest")
  serving_machine_type: str = "n1-standard-2"
  # A scheduled run trains on the newest city day that ended this long
  # before its scheduled time (contract.DEFAULT_READY_AFTER_HOURS).
  ready_after_hours: float = 2.0


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """A complete, immutable description of one pipeline run.

  Runners fill it from flags; create_pipeline reads nothing else.
  """
  pipeline_name: str
  pipeline_root: str
  span: int                      # the run's day, days since 1970-01-01
  train_days: int = 28
  query: QueryConfig = QueryConfig()
  platform: Platform = Platform.LOCAL
  # Local platform.
  warehouse_path: str = ""
  metadata_path: str = ""
  # Where blessed models are pushed: a folder (local) or gs:// URI.
  serving_dir: str = ""
  # The served-feature log the skew check reads (local platform).
  serving_log_dir: str = ""
  keep_versions: int = 5
  # Trainer.
  train_steps: int = 4000
  # Incremental retraining: the steps of a Trainer that warm-starts from
  # the serving model, whose window differs from the last one by a day.
  # 0: train_steps, as from scratch. bench/forecast.py --incremental
  # measures what fewer steps cost in forecast quality (README).
  warm_start_steps: int = 1000
  # The Trainer's validation loss, a monitor over the window's first
  # batches; the Evaluator and ForecastGate judge the model on the new day.
  eval_steps: int = 20
  hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  thresholds: Thresholds = Thresholds()
  # Beam and caching.
  beam_pipeline_args: tuple[str, ...] = ()
  enable_cache: bool = True
  code_version: str = ""
  # Platform.VERTEX only.
  vertex: Optional[VertexConfig] = None

  def __post_init__(self):
    if (self.platform is Platform.VERTEX) != (self.vertex is not None):
      raise ValueError("vertex settings go with Platform.VERTEX, and only "
                       "with it")
    if self.train_days < 1:
      raise ValueError(f"train_days must be >= 1, got {self.train_days}")
    if self.span < 0:
      raise ValueError(f"span must be a day number >= 0, got {self.span}")
    if self.warm_start_steps < 0:
      raise ValueError("warm_start_steps must be >= 0 (0: train_steps)")
    if self.eval_steps < 1:
      raise ValueError(f"eval_steps must be >= 1, got {self.eval_steps}")
    if self.keep_versions < 1:
      raise ValueError("keep_versions must be >= 1")
