"""The bench scripts, loaded by name, for the tests of their own logic.

bench/*.py are scripts run from a checkout, not a package, so a test reaches
one through its file (the repository's bench folder beside this package).
"""

import importlib.util
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
