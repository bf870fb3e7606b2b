"""One small backfilled home per test session, shared by the lineage tests.

A 25-day simulated city at 0.3x demand, then ten daily runs: 2024-02-02 to
2024-02-10 with a 7-day window and 2024-02-11 with a 6-day window (so two
runs differ in exactly one parameter). Built once per session, in a
subprocess, and memoised here so every test module reuses it. Set
TAXI_DEMAND_LINEAGE_HOME to an already built home to skip the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
START = "2024-01-18"
DAYS = 25
SEED = 7
SCALE = 0.3
BACKFILL = ("2024-02-02", "2024-02-10")
LAST_DAY = "2024-02-11"
TRAIN_DAYS = 7
LAST_TRAIN_DAYS = 6
TRAIN_STEPS = "60"
# Drift starts on the 8th backfilled day.
DRIFT_DAY = "2024-02-09"

_built: dict = {}


def simulate(warehouse: Path, drift: Optional[str] = None) -> Path:
  """The fixture city (optionally drifted) in a DuckDB file."""
  from taxi_demand.data import simulate as sim  # pylint: disable=g-import-not-at-top
  from taxi_demand.data.warehouse import Warehouse  # pylint: disable=g-import-not-at-top
  warehouse.parent.mkdir(parents=True, exist_ok=True)
  with Warehouse(warehouse) as wh:
    sim.simulate_into(wh, START, DAYS, seed=SEED, scale=SCALE, drift=drift)
  return warehouse


def _run(home: Path, *flags: str) -> None:
  proc = subprocess.run(
      [sys.executable, str(REPO / "runner_local.py"), "--home", str(home),
       "--train-steps", TRAIN_STEPS, *flags],
      cwd=REPO, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"runner_local.py {' '.join(flags)} failed "
                       f"({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                       f"{proc.stderr[-3000:]}")


def build(root: Path) -> Path:
  """Builds the backfilled home under `root`; returns the home folder."""
  home = root / "home"
  simulate(home / "warehouse.duckdb")
  _run(home, "--backfill", *BACKFILL, "--train-days", str(TRAIN_DAYS))
  _run(home, "--date", LAST_DAY, "--train-days", str(LAST_TRAIN_DAYS))
  return home


def backfilled_home(tmp_path_factory) -> Path:
  """The session's backfilled home (built on first use)."""
  if "home" not in _built:
    given = os.environ.get("TAXI_DEMAND_LINEAGE_HOME")
    _built["home"] = (Path(given) if given else
                      build(tmp_path_factory.mktemp("lineage")))
  return _built["home"]


if __name__ == "__main__":
  print(build(Path(sys.argv[1])))
