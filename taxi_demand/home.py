"""The state directory, TAXI_DEMAND_HOME, and where each part of it lives.

Everything lives under the home by default. Two parts may live elsewhere, so
that the 5-minute job runs on Google Cloud with the same code:
  --warehouse / $TAXI_DEMAND_WAREHOUSE  the trips: a DuckDB file, or a
      BigQuery table bq://PROJECT.DATASET.TABLE (read by serving and the
      readers; loads and the local pipeline write DuckDB only);
  --store / $TAXI_DEMAND_STORE  the model registry (models/), the served log
      (serving_log/) and the replay log (replay_log/): a folder, or
      gs://BUCKET[/PREFIX] on Cloud Storage, with the same layout.
ML Metadata, the logs and the pipeline's artifacts stay in the home.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from typing import Optional, Union

from taxi_demand import cloud
from taxi_demand.errors import TaxiDemandError

ENV_VAR = "TAXI_DEMAND_HOME"
WAREHOUSE_ENV_VAR = "TAXI_DEMAND_WAREHOUSE"
STORE_ENV_VAR = "TAXI_DEMAND_STORE"
DEFAULT_HOME = ".taxi_demand"

# A local path, or a gs:// / bq:// address as text.
Location = Union[Path, str]


def _location(raw: Optional[str], what: str, scheme: str) -> Optional[Location]:
  """A --warehouse or --store value, checked: its own scheme or a path."""
  if raw is None or not str(raw).strip():
    return None
  text = str(raw).strip()
  if "://" in text:
    if scheme == cloud.BQ_SCHEME and text.startswith(cloud.BQ_SCHEME):
      return str(cloud.parse_bigquery(text, what))
    if scheme == cloud.GS_SCHEME and text.startswith(cloud.GS_SCHEME):
      return str(cloud.parse_gcs(text, what))
    shape = ("PROJECT.DATASET.TABLE" if scheme == cloud.BQ_SCHEME
             else "BUCKET[/PREFIX]")
    raise TaxiDemandError(f"bad {what} address {text!r}: expected a local "
                          f"path or {scheme}{shape}")
  return Path(text).expanduser().absolute()


@dataclasses.dataclass(frozen=True)
class Home:
  """Paths of everything taxi_demand keeps on one machine.

  Only paths: constructing a Home creates nothing. Call `ensure()` before
  writing.
  """

  root: Path
  # Where the trips are, if not HOME/warehouse.duckdb: a path or bq://...
  warehouse_at: Optional[Location] = None
  # Where models/, serving_log/ and replay_log/ are, if not in the home.
  store_at: Optional[Location] = None

  @classmethod
  def resolve(cls, explicit: str | os.PathLike | None = None,
              warehouse: Optional[str] = None,
              store: Optional[str] = None) -> "Home":
    """`--home` wins, then $TAXI_DEMAND_HOME, then ./.taxi_demand; likewise
    --warehouse over $TAXI_DEMAND_WAREHOUSE and --store over
    $TAXI_DEMAND_STORE (a bad address is one line)."""
    raw = explicit or os.environ.get(ENV_VAR) or DEFAULT_HOME
    return cls(Path(raw).expanduser().absolute(),
               warehouse_at=_location(
                   warehouse or os.environ.get(WAREHOUSE_ENV_VAR),
                   "warehouse", cloud.BQ_SCHEME),
               store_at=_location(store or os.environ.get(STORE_ENV_VAR),
                                  "store", cloud.GS_SCHEME))

  @property
  def warehouse(self) -> Location:
    """The DuckDB file (a Path), or the BigQuery table (bq://...)."""
    return (self.warehouse_at if self.warehouse_at is not None
            else self.root / "warehouse.duckdb")

  @property
  def warehouse_is_local(self) -> bool:
    return not cloud.is_bigquery(self.warehouse)

  def local_warehouse(self, doing: str) -> Path:
    """The DuckDB warehouse, for work that writes it or runs the local
    pipeline; one line if the warehouse is a BigQuery table."""
    if not self.warehouse_is_local:
      raise TaxiDemandError(
          f"{doing} needs a DuckDB warehouse, and the warehouse is "
          f"{self.warehouse}: load BigQuery with its own tools, train on it "
          "with runner_vertex.py, or drop --warehouse / "
          f"${WAREHOUSE_ENV_VAR}")
    return Path(self.warehouse)

  def _stored(self, name: str) -> Location:
    if self.store_at is None:
      return self.root / name
    if cloud.is_gcs(self.store_at):
      return str(cloud.parse_gcs(str(self.store_at)).child(name))
    return Path(self.store_at) / name

  @property
  def metadata(self) -> Path:
    return self.root / "metadata.sqlite"

  @property
  def pipeline_root(self) -> Path:
    return self.root / "pipeline"

  @property
  def run_lock(self) -> Path:
    """Held by the daily run (taxi_demand.locks.RunLock)."""
    return self.root / "pipeline.lock"

  @property
  def models(self) -> Location:
    """The model registry: version folders and CURRENT."""
    return self._stored("models")

  @property
  def serving_log(self) -> Location:
    """What the 5-minute job served (taxi_demand.serving.servelog)."""
    return self._stored("serving_log")

  @property
  def replay_log(self) -> Location:
    """What replays served, in the served log's layout; kept apart from
    it, which holds only what the live job served."""
    return self._stored("replay_log")

  @property
  def logs(self) -> Path:
    return self.root / "logs"

  def check(self) -> "Home":
    """Fails in one line if the home cannot be a folder: it is a file, a
    folder above it is a file, or a folder above it cannot be searched.

    Creates nothing; a home that does not exist yet passes.
    """
    try:
      for path in (self.root, *self.root.parents):
        if path.is_dir():
          break
        if path.exists():
          raise TaxiDemandError(
              f"home {self.root} is a file, not a folder" if path == self.root
              else f"home {self.root} cannot be a folder: {path} is a file")
    except OSError as e:  # e.g. a folder above it is not searchable
      raise self.error(e) from None
    return self

  def make(self, folder: Path) -> Path:
    """Creates `folder` under the home (and the home) if missing."""
    try:
      folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise self.error(e) from None
    return folder

  def ensure(self) -> "Home":
    self.check()
    for d in (self.root, self.pipeline_root, self.models, self.serving_log,
              self.logs):
      if isinstance(d, Path):  # a gs:// prefix needs no folder
        self.make(d)
    return self

  def error(self, e: OSError) -> TaxiDemandError:
    """An OS error about a path of the home, as one line naming both."""
    where = f": {e.filename}" if e.filename else ""
    return TaxiDemandError(f"cannot use home {self.root}: "
                           f"{e.strerror or e}{where}")
