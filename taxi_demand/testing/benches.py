"""The bench scripts, loaded by name, for the tests of their own logic, and
what the scripts share.

bench/*.py are scripts run from a checkout, not a package, so a test reaches
one through its file (the repository's bench folder beside this package).
"""

import importlib.util
import resource
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent.parent.parent / "bench"


def load(name: str) -> ModuleType:
  """bench/<name>.py as a module, executed afresh."""
  spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
  if spec is None or spec.loader is None:
    raise FileNotFoundError(BENCH_DIR / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def true_rates(warehouse, begin: int, end: int, slot_seconds: int):
  """The simulator's true rate λ per (cell, slot) with a slot start in
  [begin, end): its quarter hours summed, as a DataFrame (cell,
  slot_start, rate); empty for a warehouse of real trips. Cells are
  community areas, the truth's unit. `warehouse` is an open Warehouse."""
  return warehouse.con.execute(
      "SELECT community_area AS cell, "
      "slot_start - slot_start % ? AS slot_start, sum(intensity) AS rate "
      "FROM truth WHERE slot_start >= ? AND slot_start < ? "
      "GROUP BY 1, 2", [slot_seconds, begin, end]).fetch_df()


def children_cpu_s() -> float:
  """User + system CPU seconds of this process's finished children: beside a
  wall time on a shared machine, whose load stretches the wall, not this."""
  used = resource.getrusage(resource.RUSAGE_CHILDREN)
  return used.ru_utime + used.ru_stime
