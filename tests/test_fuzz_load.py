"""A bounded fuzz of `taxi-demand load` (bench/fuzz_load.py, fewer files):
hostile files lose no row, forge no line and never end "unexpected"."""

import pytest

from taxi_demand.testing import benches


def _bench():
  return benches.load("fuzz_load")


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
