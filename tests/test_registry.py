"""The pushed-model registry: atomic versions, the serving pointer, pruning,
on a local folder and on Cloud Storage (the emulator) alike."""

import pytest

from taxi_demand import objectstore
from taxi_demand.errors import TaxiDemandError
from taxi_demand.serving import registry


@pytest.fixture
def models(store_root):
  """The registry under a store root, on each backend."""
  return objectstore.join(store_root, "models")


def _writer(text):
  def write(folder):
    (folder / "saved_model.pb").write_text(text)
  return write


def _read(models, key):
  data = objectstore.at(models).read_bytes(key)
  return None if data is None else data.decode()


def test_push_publishes_a_version_and_points_current_at_it(models):
  v1 = registry.push(models, _writer("one"), now=lambda: 1000)
  v2 = registry.push(models, _writer("two"), now=lambda: 1000)
  assert (v1, v2) == ("1000", "1001")  # same second: bumped, never merged
  assert registry.serving_version(models) == "1001"
  assert _read(models, "1001/saved_model.pb") == "two"


def test_a_failed_write_leaves_nothing_half_written(models):
  registry.push(models, _writer("good"), now=lambda: 10)

  def broken(folder):
    (folder / "variables").mkdir()
    (folder / "variables" / "part").write_text("half")
    raise OSError("disk full")

  with pytest.raises(OSError):
    registry.push(models, broken, now=lambda: 20)
  assert registry.versions(models) == ["10"]
  assert registry.serving_version(models) == "10"
  folders, files = objectstore.at(models).listing()
  assert folders == ["10"] and files == [registry.POINTER]


def test_prune_keeps_the_newest_and_the_serving_one(models):
  for t in (1, 2, 3):
    registry.push(models, _writer(str(t)), keep=10, now=lambda t=t: t)
  registry.set_serving(models, "1")  # a rollback to the oldest
  registry.push(models, _writer("4"), keep=2, now=lambda: 4)
  # The push made 4 serving, so 1 is no longer protected.
  assert registry.serving_version(models) == "4"
  assert registry.versions(models) == ["3", "4"]


def test_prune_never_deletes_the_rolled_back_version(models):
  for t in (1, 2, 3):
    registry.push(models, _writer(str(t)), keep=10, now=lambda t=t: t)
  registry.set_serving(models, "1")
  assert registry.prune(models, keep=1) == ["2"]
  assert registry.versions(models) == ["1", "3"]


def test_unknown_version_lists_the_ones_that_exist(models):
  registry.push(models, _writer("x"), now=lambda: 5)
  with pytest.raises(TaxiDemandError, match=r"'7' does not exist.*5"):
    registry.resolve(models, "7")


def test_no_model_yet_is_one_clear_error(models):
  with pytest.raises(TaxiDemandError, match="no pushed model"):
    registry.resolve(models)


def test_a_push_for_an_older_day_publishes_but_does_not_take_over(models):
  new = registry.push(models, _writer("day 11"), now=lambda: 100, span=11)
  old = registry.push(models, _writer("day 10, rerun"), now=lambda: 200,
                      span=10)
  assert registry.versions(models) == [new, old]
  assert registry.serving_version(models) == new
  assert registry.serving_span(models) == 11
  # The same day again (a rerun of the newest day) does take over.
  again = registry.push(models, _writer("day 11, rerun"), now=lambda: 300,
                        span=11)
  assert registry.serving_version(models) == again


def test_a_rollback_holds_until_a_push_for_its_day_or_later(models):
  first = registry.push(models, _writer("a"), now=lambda: 1, span=10)
  registry.push(models, _writer("b"), now=lambda: 2, span=11)
  registry.set_serving(models, first, span=11)  # rollback after day 11
  registry.push(models, _writer("c"), now=lambda: 3, span=10)
  assert registry.serving_version(models) == first
  later = registry.push(models, _writer("d"), now=lambda: 4, span=12)
  assert registry.serving_version(models) == later


@pytest.mark.parametrize("seed", range(5))
def test_current_follows_the_serving_timeline_rule(models, seed):
  """Random pushes and rollbacks: CURRENT is the event of the greatest day,
  the latest among equals, which is how ML Metadata's serving timeline
  (taxi_demand.lineage.queries.serving_timeline) orders them."""
  import random  # noqa: PLC0415
  rng = random.Random(seed)
  events = []  # (span, order, version)
  for order in range(12):
    versions = registry.versions(models)
    if versions and rng.random() < 0.25:
      target = rng.choice(versions)
      span = max(s for s, _, _ in events)  # a rollback takes effect now
      registry.set_serving(models, target, span=span)
      events.append((span, order, target))
    else:
      span = rng.randint(1, 6)
      version = registry.push(models, _writer(str(order)), keep=100,
                              now=lambda o=order: o, span=span)
      events.append((span, order, version))
    assert registry.serving_version(models) == max(events)[2]


def test_a_pointer_without_a_day_is_superseded_by_any_push(models):
  registry.push(models, _writer("a"), now=lambda: 1)
  objectstore.at(models).write_bytes(registry.POINTER, b"1\n")  # pre-spans
  assert registry.serving_span(models) is None
  newer = registry.push(models, _writer("b"), now=lambda: 2, span=3)
  assert registry.serving_version(models) == newer


def test_a_push_of_the_same_source_again_keeps_its_version(models):
  first = registry.push(models, _writer("m"), now=lambda: 1, source="/run/1")
  registry.push(models, _writer("n"), now=lambda: 2, source="/run/2")
  again = registry.push(models, _writer("m"), now=lambda: 3, source="/run/1",
                        span=9)
  assert again == first and registry.versions(models) == ["1", "2"]
  assert registry.serving_version(models) == first


def test_run_parameters_travel_with_the_version(models):
  wanted = {"slot_minutes": 30, "cells": 77, "arrival_rule": "at_dropoff"}
  version = registry.push(models, _writer("m"), now=lambda: 1,
                          parameters=wanted)
  bare = registry.push(models, _writer("m"), now=lambda: 2)
  assert registry.parameters(models, version) == wanted
  assert registry.parameters(models, bare) is None
  objectstore.at(models).write_bytes(f"{bare}/{registry.PARAMETERS_FILE}",
                                     b"[1, 2]")
  with pytest.raises(TaxiDemandError, match="run_parameters.json is corrupt"):
    registry.parameters(models, bare)


def test_a_local_copy_is_the_version_with_its_files(models):
  version = registry.push(models, _writer("m"), now=lambda: 1,
                          parameters={"cells": 3})
  folder = registry.local_copy(models)
  assert folder.name == version
  assert (folder / "saved_model.pb").read_text() == "m"
  assert (folder / registry.PARAMETERS_FILE).is_file()
  assert not (folder / objectstore.MARKER).exists()
  assert registry.local_copy(models, version) == folder


_PUSH = """
from taxi_demand.serving import registry
def write(folder):
  (folder / "saved_model.pb").write_text("killed")
registry.push({models!r}, write, now=lambda: 200)
"""


def test_a_push_killed_before_it_publishes_is_never_seen(models):
  """Killed with every file stored and nothing published: readers see the
  versions before it, and the next push sweeps it and never reuses its
  number."""
  import os  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  from taxi_demand import faults  # noqa: PLC0415
  done = registry.push(models, _writer("done"), now=lambda: 100)
  env = dict(os.environ, **{faults.ENV_VAR: "registry.staged"})
  killed = subprocess.run(
      [sys.executable, "-c", _PUSH.format(models=str(models))], env=env,
      capture_output=True, text=True, timeout=120)
  assert killed.returncode == -9, killed.stderr
  assert objectstore.at(models).unfinished()  # its files are there...
  assert registry.versions(models) == [done]  # ...and invisible
  assert registry.serving_version(models) == done
  with pytest.raises(TaxiDemandError, match="'200' does not exist"):
    registry.resolve(models, "200")
  after = registry.push(models, _writer("after"), now=lambda: 150)
  # On Cloud Storage its folder has the number 200: the next one is above.
  assert after == ("201" if objectstore.is_gcs(models) else "150")
  assert registry.serving_version(models) == after
  assert objectstore.at(models).unfinished() == []
  assert objectstore.at(models).listing()[0] == [done, after]
