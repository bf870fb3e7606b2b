"""A bounded fuzz of `taxi-demand load` (bench/fuzz_load.py, fewer files):
hostile files lose no row, forge no line and never end "unexpected"."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "fuzz_load.py"


def _bench():
  spec = importlib.util.spec_from_file_location("fuzz_load", BENCH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_a_few_dozen_hostile_files_lose_nothing_and_say_one_line(tmp_path):
  result = _bench().fuzz(files=48, seed=26, workdir=tmp_path)
  assert result["problems"] == [] and result["problem_count"] == 0
  outcomes = result["outcomes"]
  assert outcomes["failed"] == 0
  assert outcomes["loaded"] > 10 and outcomes["refused"] > 5  # both tried
  rows, tables = result["rows"], result["tables"]
  assert rows["read"] == rows["loaded"] + rows["quarantined"] > 100
  assert tables["trips"] + tables["probes"] + tables["quarantine"] == \
      rows["read"] + rows["probes_read"]
