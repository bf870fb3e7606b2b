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


def test_a_push_for_an_older_day_publishes_but_does_not_take_over(tmp_path):
  new = registry.push(tmp_path, _writer("day 11"), now=lambda: 100, span=11)
  old = registry.push(tmp_path, _writer("day 10, rerun"), now=lambda: 200,
                      span=10)
  assert registry.versions(tmp_path) == [new, old]
  assert registry.serving_version(tmp_path) == new
  assert registry.serving_span(tmp_path) == 11
  # The same day again (a rerun of the newest day) does take over.
  again = registry.push(tmp_path, _writer("day 11, rerun"), now=lambda: 300,
                        span=11)
  assert registry.serving_version(tmp_path) == again


def test_a_rollback_holds_until_a_push_for_its_day_or_later(tmp_path):
  first = registry.push(tmp_path, _writer("a"), now=lambda: 1, span=10)
  registry.push(tmp_path, _writer("b"), now=lambda: 2, span=11)
  registry.set_serving(tmp_path, first, span=11)  # rollback after day 11
  registry.push(tmp_path, _writer("c"), now=lambda: 3, span=10)
  assert registry.serving_version(tmp_path) == first
  later = registry.push(tmp_path, _writer("d"), now=lambda: 4, span=12)
  assert registry.serving_version(tmp_path) == later


@pytest.mark.parametrize("seed", range(5))
def test_current_follows_the_serving_timeline_rule(tmp_path, seed):
  """Random pushes and rollbacks: CURRENT is the event of the greatest day,
  the latest among equals, which is how ML Metadata's serving timeline
  (taxi_demand.lineage.queries.serving_timeline) orders them."""
  import random
  rng = random.Random(seed)
  events = []  # (span, order, version)
  for order in range(12):
    versions = registry.versions(tmp_path)
    if versions and rng.random() < 0.25:
      target = rng.choice(versions)
      span = max(s for s, _, _ in events)  # a rollback takes effect now
      registry.set_serving(tmp_path, target, span=span)
      events.append((span, order, target))
    else:
      span = rng.randint(1, 6)
      version = registry.push(tmp_path, _writer(str(order)), keep=100,
                              now=lambda o=order: o, span=span)
      events.append((span, order, version))
    assert registry.serving_version(tmp_path) == max(events)[2]


def test_a_pointer_without_a_day_is_superseded_by_any_push(tmp_path):
  registry.push(tmp_path, _writer("a"), now=lambda: 1)
  (tmp_path / registry.POINTER).write_text("1\n")  # written before spans
  assert registry.serving_span(tmp_path) is None
  newer = registry.push(tmp_path, _writer("b"), now=lambda: 2, span=3)
  assert registry.serving_version(tmp_path) == newer
