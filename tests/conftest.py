"""Shared fixtures. Importing taxi_demand first sets TF_USE_LEGACY_KERAS.

Besides the empty `home`, one small simulated city per test session, built
without running the pipeline:

* `city`: a 25-day simulated city (0.3x demand) in DuckDB, one SavedModel
  trained on it by `taxi_demand.modeling.trainer.run_fn` (Transform's
  preprocessing_fn run through tft_beam, FnArgs built by hand, as the
  Trainer would), the model's real figures on every day it is judged on,
  and real ExampleGen and StatisticsGen outputs (their executors called by
  hand) for the two newest days.
* `city_home`: a home over that city whose metadata.sqlite is a synthetic
  ML Metadata store (`taxi_demand.testing.synthetic`) of ten daily runs
  laid out as LocalDagRunner writes them, 2024-02-02 .. 2024-02-11 with a
  7-day window and a 6-day one for the last, each pushing the trained model
  with its real eval-day figures in ForecastGate's blessing; the registry
  keeps the newest five versions. Read-only: tests that record, roll back
  or serve take `city_copy`, their own copy.

Cloud Storage on loopback: `gcs_emulator` (session) runs fake-gcs-server on
127.0.0.1 and gives its URL; `gcs_root` exports STORAGE_EMULATOR_HOST for one
test and gives `gs://BUCKET/root` in a new bucket; `store_root` runs a test
on both backends (a local folder, then `gcs_root`).

Real pipeline runs belong to the pipeline's own tests (test_pipeline_e2e,
the notebook, the ExampleGen driver test). Set TAXI_DEMAND_TEST_CITY to a
folder to keep the city there and reuse it across sessions.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import pytest

import taxi_demand  # must precede any TensorFlow import
from taxi_demand import features  # no TensorFlow
from taxi_demand.lineage import contract  # no TensorFlow

if TYPE_CHECKING:
  from taxi_demand.home import Home

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).resolve().parent / "testdata"
SCHEMA_FILE = REPO / "pipeline" / "schema" / "schema.pbtxt"

# The simulated city.
START, DAYS, SEED, SCALE = "2024-01-18", 25, 7, 0.3      # .. 2024-02-11
# Ten daily runs; the last one trains on a 6-day window instead of 7.
FIRST_DAY, LAST_DAY = datetime.date(2024, 2, 2), datetime.date(2024, 2, 11)
TRAIN_DAYS, LAST_TRAIN_DAYS = 7, 6
# Enough for a model that beats the seasonal-naive forecast on every day
# (MAE ~1.0 vs ~1.4) in about half a minute on two cores.
TRAIN_STEPS = 300
TRAIN_HPARAMS = {"eval_steps": 1}


def span_of(day) -> int:
  from taxi_demand import spans  # noqa: PLC0415
  if isinstance(day, str):
    day = datetime.date.fromisoformat(day)
  return spans.span_of(day)


FIRST_SPAN, LAST_SPAN = span_of(FIRST_DAY), span_of(LAST_DAY)
RUN_SPANS = tuple(range(FIRST_SPAN, LAST_SPAN + 1))
# Runs whose ExampleGen and StatisticsGen outputs hold real files: the
# newest days, so that the serving models' windows end in real ones.
REAL_SPANS = tuple(range(LAST_SPAN - 3, LAST_SPAN + 1))


def train_days_of(span: int) -> int:
  return LAST_TRAIN_DAYS if span == LAST_SPAN else TRAIN_DAYS


@pytest.fixture
def home(tmp_path, monkeypatch):
  """An empty TAXI_DEMAND_HOME for one test."""
  from taxi_demand.home import Home  # noqa: PLC0415
  root = tmp_path / "home"
  monkeypatch.setenv("TAXI_DEMAND_HOME", str(root))
  return Home(root)


# --- the session's city ------------------------------------------------------


def simulate(warehouse: Path, drift: Optional[str] = None) -> Path:
  """The session's city (optionally drifted) in a DuckDB file."""
  from taxi_demand.data import simulate as sim  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  warehouse = Path(warehouse)
  warehouse.parent.mkdir(parents=True, exist_ok=True)
  with Warehouse(warehouse) as wh:
    sim.simulate_into(wh, START, DAYS, seed=SEED, scale=SCALE, drift=drift)
  return warehouse


def pings(out: Path, day: str, every_s: int = 60) -> Path:
  """The city's fleet's pings of one day (as `simulate --pings`), a file."""
  from taxi_demand.data import simulate as sim  # noqa: PLC0415
  files = sim.simulate_files(out, day, 1, seed=SEED, scale=SCALE,
                             pings_every_s=every_s).files
  return Path(files[-1])


def _query_config():
  return contract.RunParameters().query_config()


def train_model(warehouse: Path, span: int, days: int, workdir: Path) -> Path:
  """run_fn on the `days` days before `span`, analysed as Transform does.

  What TFX's ExampleGen, Transform and Trainer do, minus TFX's
  orchestration: ExampleGen's executor writes the window's days (here in
  one artifact), the preprocessing_fn is analysed through tft_beam on them
  read by TFXIO (writing the transform graph and the raw metadata run_fn
  reads; the pipeline's Transform materialises nothing either), then run_fn
  gets hand-made FnArgs over the raw days. Returns the SavedModel folder.
  """
  import apache_beam as beam  # noqa: PLC0415
  import tensorflow as tf  # noqa: PLC0415
  import tensorflow_transform as tft  # noqa: PLC0415
  import tensorflow_transform.beam as tft_beam  # noqa: PLC0415
  from tensorflow_transform.tf_metadata import schema_utils  # noqa: PLC0415
  from tfx.components.trainer.fn_args_utils import DataAccessor  # noqa: PLC0415
  from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: PLC0415
  from tfx.components.util import tfxio_utils  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from tfx_bsl.tfxio import tf_example_record  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  from taxi_demand.modeling import trainer  # noqa: PLC0415

  examples_dir = example_gen(warehouse, span, workdir / "examples",
                             days_before=days)
  spec = {k: tf.io.FixedLenFeature(
      [], tf.int64 if k in features.INT_COLUMNS else tf.float32)
          for k in features.RAW_COLUMNS}
  raw_metadata = tft.DatasetMetadata.from_feature_spec(spec)
  tfxio = tf_example_record.TFExampleRecord(
      file_pattern=str(examples_dir / f"Split-{contract.DAY_SPLIT}" / "*"),
      schema=schema_utils.schema_from_feature_spec(spec),
      telemetry_descriptors=["tests"])
  graph = workdir / "transform_graph"

  with beam.Pipeline() as pipeline:
    with tft_beam.Context(temp_dir=str(workdir / "tmp")):
      transform_fn = (
          (pipeline | tfxio.BeamSource(), tfxio.TensorAdapterConfig())
          | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn))
      _ = transform_fn | tft_beam.WriteTransformFn(str(graph))
      # TFX's Transform also writes the raw metadata, which run_fn reads.
      _ = raw_metadata | "WriteRaw" >> tft_beam.WriteMetadata(
          str(graph / tft.TFTransformOutput.RAW_METADATA_DIR), pipeline)
  files = str(examples_dir / f"Split-{contract.DAY_SPLIT}" / "*")
  raw = standard_artifacts.Examples()
  raw.uri = str(examples_dir)
  accessor = DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
          [raw], []),
      record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact(
          [raw], []),
      data_view_decode_fn=None)
  saved_model = workdir / "saved_model"
  trainer.run_fn(FnArgs(
      train_files=[files], eval_files=[files], transform_output=str(graph),
      serving_model_dir=str(saved_model), model_run_dir=None,
      data_accessor=accessor, train_steps=TRAIN_STEPS,
      custom_config={"hparams": TRAIN_HPARAMS}))
  return saved_model


def _load_predictor(model_dir: Path):
  try:
    from taxi_demand.modeling.saved_model import load_for_serving  # noqa: PLC0415
  except ImportError:  # before the serving loader left trainer.py
    from taxi_demand.modeling.trainer import load_for_serving  # noqa: PLC0415
  return load_for_serving(str(model_dir))


def day_figures(model_dir: Path, warehouse: Path,
                span_list) -> Dict[int, Dict[str, float]]:
  """What the model scores on each day: ForecastGate's and next-day's MAE,
  RMSE and bias beside the seasonal-naive forecast's (same scoring as
  `nextday.score_day`, the model loaded once)."""
  import numpy as np  # noqa: PLC0415
  from taxi_demand import features as F  # noqa: PLC0415
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  predictor = _load_predictor(model_dir)
  out = {}
  for span in span_list:
    columns = nextday.day_columns(warehouse, _query_config(), span)
    predicted = np.asarray(predictor(columns)["predicted_pickups"], float)
    figures = nextday.score(columns[F.LABEL], predicted,
                            columns[F.SEASONAL_NAIVE])
    figures["model_bias"] = float(np.mean(predicted - columns[F.LABEL]))
    out[span] = figures
  return out


def example_gen(warehouse: Path, span: int, out: Path,
                days_before: int = 0) -> Path:
  """DuckDBExampleGen's executor for one span, called as TFX would.

  `days_before` > 0: the N days before it in one artifact instead (the
  form Vertex reads a window in).
  """
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from tfx.utils import proto_utils  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import DuckDBExampleGen  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import executor  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import input_config_for  # noqa: PLC0415
  from pipeline.components.duckdb_example_gen import range_config_for  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  input_config = input_config_for(_query_config(), days_before)
  component = DuckDBExampleGen(str(warehouse), input_config,
                               range_config_for(span))
  for split in input_config.splits:  # what the query-based driver does
    split.pattern = sql.substitute_span(split.pattern, span)
  examples = standard_artifacts.Examples()
  examples.uri = str(out)
  executor.Executor().Do({}, {"examples": [examples]}, {
      "input_config": proto_utils.proto_to_json(input_config),
      "output_config": component.exec_properties["output_config"],
      "output_data_format": component.exec_properties["output_data_format"],
      "output_file_format": component.exec_properties["output_file_format"],
      "warehouse_path": str(warehouse),
      "span": span,
  })
  return out


def statistics_gen(examples_dir: Path, schema_dir: Path, out: Path) -> Path:
  """TFX's StatisticsGen executor with the curated schema, as the pipeline
  runs it (so categorical ints get value counts)."""
  from tfx.components.statistics_gen import executor  # noqa: PLC0415
  from tfx.types import artifact_utils  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  examples = standard_artifacts.Examples()
  examples.uri = str(examples_dir)
  examples.split_names = artifact_utils.encode_split_names(
      [contract.DAY_SPLIT])
  schema = standard_artifacts.Schema()
  schema.uri = str(schema_dir)
  stats = standard_artifacts.ExampleStatistics()
  stats.uri = str(out)
  executor.Executor().Do({"examples": [examples], "schema": [schema]},
                         {"statistics": [stats]}, {"exclude_splits": "[]"})
  return out


@dataclasses.dataclass(frozen=True)
class City:
  """The session's simulated city and the model trained on it."""
  root: Path
  warehouse: Path
  model_dir: Path                       # a SavedModel (run_fn's export)
  trained_on: List[str]                 # its training window's first, last day
  figures: Dict[int, Dict[str, float]]  # span -> the model's day figures
  examples: Dict[int, Path]             # span -> real ExampleGen output
  statistics: Dict[int, Path]           # span -> real StatisticsGen output

  simulate = staticmethod(simulate)
  pings = staticmethod(pings)


def _build_city(root: Path) -> City:
  from taxi_demand import spans  # noqa: PLC0415
  warehouse = simulate(root / "warehouse.duckdb")
  model_dir = train_model(warehouse, FIRST_SPAN, TRAIN_DAYS, root / "train")
  schema_dir = root / "schema"
  schema_dir.mkdir()
  shutil.copy(SCHEMA_FILE, schema_dir / "schema.pbtxt")
  examples, statistics = {}, {}
  for span in REAL_SPANS:
    examples[span] = example_gen(warehouse, span,
                                 root / "examples" / str(span))
    statistics[span] = statistics_gen(examples[span], schema_dir,
                                      root / "statistics" / str(span))
  first, last = FIRST_SPAN - TRAIN_DAYS, FIRST_SPAN - 1   # the window
  return City(root=root, warehouse=warehouse, model_dir=model_dir,
              trained_on=[spans.day_of(first).isoformat(),
                          spans.day_of(last).isoformat()],
              figures=day_figures(model_dir, warehouse, RUN_SPANS),
              examples=examples, statistics=statistics)


def _city_to_json(city: City) -> str:
  return json.dumps({
      "warehouse": str(city.warehouse), "model_dir": str(city.model_dir),
      "trained_on": city.trained_on,
      "figures": {str(k): v for k, v in city.figures.items()},
      "examples": {str(k): str(v) for k, v in city.examples.items()},
      "statistics": {str(k): str(v) for k, v in city.statistics.items()},
  }, indent=2)


def _city_from_json(root: Path, text: str) -> City:
  raw = json.loads(text)
  return City(root=root, warehouse=Path(raw["warehouse"]),
              model_dir=Path(raw["model_dir"]), trained_on=raw["trained_on"],
              figures={int(k): v for k, v in raw["figures"].items()},
              examples={int(k): Path(v) for k, v in raw["examples"].items()},
              statistics={int(k): Path(v)
                          for k, v in raw["statistics"].items()})


def _city_root(tmp_path_factory) -> Path:
  """TAXI_DEMAND_TEST_CITY, or one folder all of the session's workers share
  (xdist gives each worker a base temp of its own under the session's)."""
  given = os.environ.get("TAXI_DEMAND_TEST_CITY")
  if given:
    return Path(given)
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  return base / "city"


@pytest.fixture(scope="session")
def city(tmp_path_factory) -> City:
  """The session's city: warehouse, trained model, figures, real outputs.

  Built once per session: a worker that needs it while another builds it
  waits for that one (an flock beside the folder) and reads its city.json.
  """
  import fcntl  # noqa: PLC0415
  root = _city_root(tmp_path_factory)
  root.parent.mkdir(parents=True, exist_ok=True)
  with open(root.parent / f".{root.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    return _city(root, given=bool(os.environ.get("TAXI_DEMAND_TEST_CITY")))


def _city(root: Path, given: bool) -> City:
  done, mark = root / "city.json", root / ".test-city"
  if done.is_file():
    return _city_from_json(root, done.read_text())
  if root.exists():
    if given and not mark.is_file() and any(root.iterdir()):
      raise RuntimeError(f"TAXI_DEMAND_TEST_CITY={root} is not empty and "
                         "holds no test city; point it at a new folder")
    shutil.rmtree(root)  # a half-built city from an interrupted session
  root.mkdir(parents=True, exist_ok=True)
  mark.touch()
  built = _build_city(root)
  done.write_text(_city_to_json(built))
  return built


# --- the ten-run home over it ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CityHome:
  """A home of ten synthetic daily runs over the session's city."""
  home: "Home"
  versions: List[str]     # pushed versions, oldest first (one per run)
  run_ids: List[str]

  @property
  def root(self) -> Path:
    return self.home.root

  @property
  def kept(self) -> List[str]:
    from taxi_demand.serving import registry  # noqa: PLC0415
    return registry.versions(self.home.models)

  @property
  def old(self) -> str:
    """Pushed by the run for 2024-02-10 (7-day window)."""
    return self.versions[-2]

  @property
  def new(self) -> str:
    """Pushed by the run for 2024-02-11 (6-day window); serving."""
    return self.versions[-1]

  def copy(self, root: Path):
    """A home of its own: metadata, registry, warehouse and logs copied.

    The pipeline artifacts' files stay links to the session's (read-only).
    """
    from taxi_demand.home import Home  # noqa: PLC0415
    shutil.copytree(self.root, root, symlinks=True)
    return Home(root).ensure()


def city_runs(city: City):
  """The ten runs' records: the one model, its real figures on each day."""
  from taxi_demand.lineage import contract  # noqa: PLC0415
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  runs = []
  for span in RUN_SPANS:
    figures = city.figures[span]
    next_day: Optional[Dict[str, Any]] = None
    if span > FIRST_SPAN:  # the model pushed the day before serves today
      alert, reason = nextday.judge(
          span, figures["mae"], city.figures[span - 1]["mae"], [],
          nextday.Rules())
      next_day = {k: figures[k] for k in (
          "mae", "rmse", "seasonal_naive_mae", "seasonal_naive_rmse",
          "examples")}
      next_day.update(alert=alert, reason=reason)
    runs.append(synthetic.RunSpec(
        span=span,
        params=contract.RunParameters(
            train_days=train_days_of(span), train_steps=TRAIN_STEPS,
            naive_margin=0.1, change_tolerance=0.0, cell_margin=0.25,
            code_version=taxi_demand.__version__,
            hparams=dict(TRAIN_HPARAMS)),
        metrics={"model_mae": figures["mae"], "model_rmse": figures["rmse"],
                 "model_bias": figures["model_bias"],
                 "seasonal_naive_mae": figures["seasonal_naive_mae"],
                 "seasonal_naive_rmse": figures["seasonal_naive_rmse"]},
        next_day=next_day,
        examples_dir=(str(city.examples[span]) if span in city.examples
                      else None),
        statistics_dir=(str(city.statistics[span]) if span in city.statistics
                        else None)))
  return runs


@pytest.fixture(scope="session")
def city_home(city, tmp_path_factory) -> CityHome:
  """Ten synthetic runs over the city, all pushing the trained model.

  Read-only: take `city_copy` to record, roll back, predict or log.
  """
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  root = tmp_path_factory.mktemp("city_home") / "home"
  records = synthetic.write_store(root, city_runs(city),
                                  model_dir=city.model_dir, link=True)
  shutil.copy(city.warehouse, root / "warehouse.duckdb")
  return CityHome(home=Home(root).ensure(),
                  versions=[r.version for r in records],
                  run_ids=[r.run_id for r in records])


@pytest.fixture(scope="session")
def report_home(city, tmp_path_factory):
  """The city's ten runs with what the report draws (drift and skew per
  feature, a refused day, an unblessed model, served MAE by lead), and the
  last day served by the real model at the training query's leads.

  Read-only: the report test writes its page elsewhere.
  """
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  root = tmp_path_factory.mktemp("report_home") / "home"
  records = synthetic.write_store(
      root, synthetic.with_checks(city_runs(city), seed=3),
      model_dir=city.model_dir, link=True)
  shutil.copy(city.warehouse, root / "warehouse.duckdb")
  home = Home(root).ensure()
  log_day(home, [r.version for r in records if r.version][-1], LAST_DAY)
  return home


@pytest.fixture
def standalone_city_home(city, tmp_path):
  """The city's ten runs in a home of its own, `tmp_path/original`: every
  file copied, none linked to the session's, its store recording its own
  paths. (Returns the Home and the pushed versions, oldest first.)"""
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  root = tmp_path / "original"
  records = synthetic.write_store(root, city_runs(city),
                                  model_dir=city.model_dir, link=False)
  shutil.copy(city.warehouse, root / "warehouse.duckdb")
  return Home(root).ensure(), [r.version for r in records if r.version]


@pytest.fixture
def city_copy(city_home, tmp_path):
  """A private copy of the city home (a Home) for one test."""
  return city_home.copy(tmp_path / "home")


# --- the city's trips in BigQuery: a REST double on loopback -------------------


@pytest.fixture(scope="session")
def bigquery_city(city):
  """The BigQuery REST double (tests/bigquery_double.py) serving the city's
  warehouse as `bq://test-project.city.trips`, for the session."""
  from bigquery_double import BigQueryDouble  # noqa: PLC0415
  with BigQueryDouble(city.warehouse) as double:
    yield double


@pytest.fixture
def bigquery(bigquery_city, monkeypatch):
  """The double, no fault, with $TAXI_DEMAND_BIGQUERY_ENDPOINT pointing the
  real client at it for one test; `bigquery.address` is the bq:// address."""
  from taxi_demand.data.bigquery import ENDPOINT_ENV_VAR  # noqa: PLC0415
  monkeypatch.setenv(ENDPOINT_ENV_VAR, bigquery_city.url)
  bigquery_city.reset()
  yield bigquery_city
  bigquery_city.reset()


# --- small stores and helpers several modules share ----------------------------


def write_old_layout_store(path: Path) -> None:
  """Runs written before DataGate, ForecastGate and recorded parameters."""
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  w = synthetic.Writer(path)
  done = synthetic.COMPLETE
  for i in range(2):
    run_id = f"old-run-{i}"
    examples = w.execute(run_id, "ExampleGen", done, {"span": 19000 + i},
                         outputs={"examples": [w.artifact(
                             "Examples", f"/gone/examples/{i}", span=19000 + i)
                         ]})["examples"]
    model = w.execute(run_id, "Trainer", done, {"train_args": "{}"},
                      {"examples": examples},
                      {"model": [w.artifact("Model", f"/gone/model/{i}")]}
                      )["model"]
    w.execute(run_id, "Pusher", done, {}, {"model": model},
              {"pushed_model": [w.artifact("PushedModel", f"/gone/p/{i}",
                                           pushed=1, pushed_version=str(i))]})
  w.execute("old-run-2", "ExampleGen", synthetic.FAILED)  # nothing recorded


@pytest.fixture
def old_layout_store():
  """Writes an old-layout store at the given path."""
  return write_old_layout_store


# The serving tests' day: served by the older version, pushed by the run for
# that day (trained on the 7 days before it).
SERVED_DAY = datetime.date(2024, 2, 10)
# Lag features times this for half the cells: what the skew checks must
# flag. Against the older version's 7-day training statistics a clean day
# measures JS 0.01-0.13 on the lags, x3 0.32-0.48 (under the curated
# schema's 0.5 thresholds), x5 0.47-0.61 (four of the five lags flagged).
SKEW_SHIFT = 5.0
LAGS = (features.LAG_1, features.LAG_2, features.LAG_3, features.LAG_1D,
        features.LAG_7D)


def shifted(table, factor: float = 3.0):
  """Lag features times `factor` for half the cells."""
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.compute as pc  # noqa: PLC0415
  half = pc.less_equal(table.column(features.CELL), 38)
  cols = {c: table.column(c) for c in table.column_names}
  for c in LAGS:
    cols[c] = pc.if_else(half, pc.multiply(table.column(c), factor),
                         table.column(c))
  return pa.table(cols)


def log_day(home, version: str, day: datetime.date, transform=None):
  """Logs a day of served rows for `version`, as the 5-minute job serves it:
  every slot once, at the lead the training query samples for it (the day's
  examples, label aside, scored by the model), in one log file. Returns that
  file's path in `.log_files`. A `transform` rewrites the logged rows."""
  import types  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  model = predict.LoadedModel(home, version)
  with Warehouse(home.warehouse, read_only=True) as wh:
    served = wh.query_demand(model.cfg, spans.span_of(day)).drop(
        [features.LABEL])
  predicted = model.score(served)
  at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
  [path] = servelog.append(home.serving_log, served, model.version, at,
                           data_age_s=0, predicted=predicted)
  if transform is not None:
    import pyarrow.parquet as pq  # noqa: PLC0415
    pq.write_table(transform(pq.read_table(path)), path)  # a local log file
  return types.SimpleNamespace(log_files=[str(path)], features=served,
                               model_version=model.version)


def serve_as_live(home, date: str, **replay_args):
  """Stands in for the live 5-minute job over a past day: a replay of it
  (`replay.replay(home, date, **replay_args)`, each tick as of its time),
  whose files are then moved from the replay log into the served log, where
  the live job would have written them. Returns the ReplayResult.

  Tests only: the library never lets a replay write to the served log. A
  file the served log already has is never replaced (FileExistsError).
  """
  from taxi_demand.serving import replay  # noqa: PLC0415
  result = replay.replay(home, date, **replay_args)
  for folder in sorted(home.replay_log.glob("date=*")):
    target = home.serving_log / folder.name
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("*.parquet")):
      os.link(path, target / path.name)  # fails rather than replace
      path.unlink()
  return result


@pytest.fixture
def serving_log_tools():
  """log_day, serve_as_live, shifted and the serving tests' day and shift."""
  import types  # noqa: PLC0415
  return types.SimpleNamespace(log_day=log_day, serve_as_live=serve_as_live,
                               shifted=shifted, day=SERVED_DAY,
                               shift=SKEW_SHIFT, lags=LAGS)



# --- Cloud Storage on loopback ------------------------------------------------------

@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
  """The URL of a fake-gcs-server on 127.0.0.1, one per test session
  (tests/gcs_emulator.py). Tests get STORAGE_EMULATOR_HOST from `gcs_root`."""
  from gcs_emulator import running  # noqa: PLC0415
  with running(tmp_path_factory.mktemp("gcs-emulator")) as url:
    yield url


@pytest.fixture
def gcs_root(gcs_emulator, monkeypatch, tmp_path) -> str:
  """gs://BUCKET/root in a new bucket of the emulator, for one test.

  Exports STORAGE_EMULATOR_HOST (the real client then uses anonymous
  credentials), a short TAXI_DEMAND_CLOUD_RETRY_S, and a TAXI_DEMAND_CACHE
  of the test's own.
  """
  import warnings  # noqa: PLC0415
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
  monkeypatch.setenv("TAXI_DEMAND_CLOUD_RETRY_S", "5")
  monkeypatch.setenv("TAXI_DEMAND_CACHE", str(tmp_path / "cache"))
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)
    from google.cloud import storage  # noqa: PLC0415
  bucket = f"test-{os.getpid()}-{next(_BUCKETS)}"
  storage.Client(project="test").create_bucket(bucket)
  return f"gs://{bucket}/root"


_BUCKETS = itertools.count()  # bucket names, unique within a session


@pytest.fixture(params=["local", "gcs"])
def store_root(request, tmp_path):
  """A store root on each backend: a local folder, then gs://BUCKET/root."""
  if request.param == "local":
    return tmp_path / "store"
  return request.getfixturevalue("gcs_root")


# --- scheduling -------------------------------------------------------------------

# The longest modules, longest first. `make test` sends whole files to its two
# workers in collection order (`--dist loadfile --no-loadscope-reorder`; by
# default xdist reorders files by their number of tests), so these start at
# once, one per worker, and the short modules fill in around them.
LONGEST_FIRST = ("test_pipeline_e2e.py", "test_notebook.py",
                 "test_partial_data_e2e.py")


def pytest_collection_modifyitems(config, items):
  del config
  def rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(
        LONGEST_FIRST)
  items.sort(key=rank)  # stable: each module keeps its own order
