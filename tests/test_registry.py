"""The pushed-model registry: atomic versions, the serving pointer, pruning."""

import pytest

from taxi_demand.errors import TaxiDemandError
from taxi_demand.serving import registry


def _writer(text):
  def write(folder):
    (folder / "saved_model.pb").write_text(text)
  return write


def test_push_publishes_a_version_and_points_current_at_it(tmp_path):
  v1 = registry.push(tmp_path, _writer("one"), now=lambda: 1000)
  v2 = registry.push(tmp_path, _writer("two"), now=lambda: 1000)
  assert (v1, v2) == ("1000", "1001")  # same second: bumped, never merged
  assert registry.serving_version(tmp_path) == "1001"
  assert (tmp_path / "1001" / "saved_model.pb").read_text() == "two"


def test_a_failed_write_leaves_nothing_half_written(tmp_path):
  registry.push(tmp_path, _writer("good"), now=lambda: 10)

  def broken(folder):
    (folder / "variables").mkdir()
    raise OSError("disk full")

  with pytest.raises(OSError):
    registry.push(tmp_path, broken, now=lambda: 20)
  assert registry.versions(tmp_path) == ["10"]
  assert registry.serving_version(tmp_path) == "10"
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prune_keeps_the_newest_and_the_serving_one(tmp_path):
  for t in (1, 2, 3):
    registry.push(tmp_path, _writer(str(t)), keep=10, now=lambda t=t: t)
  registry.set_serving(tmp_path, "1")  # a rollback to the oldest
  registry.push(tmp_path, _writer("4"), keep=2, now=lambda: 4)
  # The push made 4 serving, so 1 is no longer protected.
  assert registry.serving_version(tmp_path) == "4"
  assert registry.versions(tmp_path) == ["3", "4"]


def test_prune_never_deletes_the_rolled_back_version(tmp_path):
  for t in (1, 2, 3):
    registry.push(tmp_path, _writer(str(t)), keep=10, now=lambda t=t: t)
  registry.set_serving(tmp_path, "1")
  assert registry.prune(tmp_path, keep=1) == ["2"]
  assert registry.versions(tmp_path) == ["1", "3"]


def test_unknown_version_lists_the_ones_that_exist(tmp_path):
  registry.push(tmp_path, _writer("x"), now=lambda: 5)
  with pytest.raises(TaxiDemandError, match=r"'7' does not exist.*5"):
    registry.resolve(tmp_path, "7")


def test_no_model_yet_is_one_clear_error(tmp_path):
  with pytest.raises(TaxiDemandError, match="no pushed model"):
    registry.resolve(tmp_path / "models")
