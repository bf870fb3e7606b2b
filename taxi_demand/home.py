"""The local state directory, TAXI_DEMAND_HOME, and what lives under it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from taxi_demand.errors import TaxiDemandError

ENV_VAR = "TAXI_DEMAND_HOME"
DEFAULT_HOME = ".taxi_demand"


@dataclasses.dataclass(frozen=True)
class Home:
  """Paths of everything taxi_demand keeps on one machine.

  Only paths: constructing a Home creates nothing. Call `ensure()` before
  writing.
  """

  root: Path

  @classmethod
  def resolve(cls, explicit: str | os.PathLike | None = None) -> "Home":
    """`--home` wins, then $TAXI_DEMAND_HOME, then ./.taxi_demand."""
    raw = explicit or os.environ.get(ENV_VAR) or DEFAULT_HOME
    return cls(Path(raw).expanduser().absolute())

  @property
  def warehouse(self) -> Path:
    return self.root / "warehouse.duckdb"

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
  def models(self) -> Path:
    return self.root / "models"

  @property
  def serving_log(self) -> Path:
    return self.root / "serving_log"

  @property
  def replay_log(self) -> Path:
    """What replays served, in the served log's layout; kept apart from
    it, which holds only what the live job served."""
    return self.root / "replay_log"

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
      self.make(d)
    return self

  def error(self, e: OSError) -> TaxiDemandError:
    """An OS error about a path of the home, as one line naming both."""
    where = f": {e.filename}" if e.filename else ""
    return TaxiDemandError(f"cannot use home {self.root}: "
                           f"{e.strerror or e}{where}")
