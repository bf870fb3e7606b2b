"""Metadata reads ask ML Metadata for what a question needs, not the store.

Each test counts the rows (executions, artifacts, events, contexts,
associations) a question reads through the real MLMD client and compares
them with what the store holds: a reader whose cost grows with the years of
runs behind it fails here long before it is slow.
"""

import collections
import json

import pytest

from pipeline.components import resolvers
from taxi_demand import cli
from taxi_demand import spans
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.testing import synthetic

RUNS = 30
FIRST = synthetic.FIRST_SPAN             # 2023-12-09
# A question about one day or one model reads at most this share of the
# store's rows (the whole-store load read all of them).
SHARE = 0.2


def _rows(answer) -> int:
  if answer is None:
    return 0
  if isinstance(answer, (list, tuple)):
    return sum(_rows(a) if isinstance(a, (list, tuple)) else 1
               for a in answer)
  if hasattr(answer, "associations"):  # a LineageGraph
    return sum(len(getattr(answer, f)) for f in (
        "artifacts", "executions", "contexts", "events", "associations",
        "attributions"))
  return 1


class Counting:
  """An MLMD store that counts the rows its get_* calls return, and the
  artifacts among them by type name (`artifacts`)."""

  def __init__(self, raw):
    self._raw = raw
    self.rows = 0
    self.artifacts: collections.Counter = collections.Counter()
    self._type_names = {t.id: t.name for t in raw.get_artifact_types()}

  def __getattr__(self, name):
    attr = getattr(self._raw, name)
    if not name.startswith("get_"):
      return attr

    def counted(*args, **kwargs):
      answer = attr(*args, **kwargs)
      self.rows += _rows(answer)
      if name.startswith("get_artifacts") and isinstance(answer, list):
        self.artifacts.update(self._type_names.get(a.type_id, "?")
                              for a in answer)
      return answer
    return counted


@pytest.fixture(scope="module")
def home(tmp_path_factory):
  root = tmp_path_factory.mktemp("reads") / "home"
  # Three-day windows: a question about one run then reads a few days.
  params = contract.RunParameters(train_days=3, train_steps=10,
                                  naive_margin=0.1, change_tolerance=0.0,
                                  cell_margin=0.25)
  synthetic.build(root, [synthetic.RunSpec(span=FIRST + i, params=params)
                         for i in range(RUNS)])
  return root


@pytest.fixture(scope="module")
def store_rows(home):
  raw = store.connect(home / "metadata.sqlite")
  executions = raw.get_executions()
  return (len(executions) + len(raw.get_artifacts()) + len(raw.get_contexts())
          + len(raw.get_events_by_execution_ids([e.id for e in executions])))


@pytest.fixture
def opened(monkeypatch):
  """Every store the lineage reader opens in the test, counting."""
  found = []
  connect = store.connect

  def counting_connect(path, writable=False):
    found.append(Counting(connect(path, writable)))
    return found[-1]
  monkeypatch.setattr(store, "connect", counting_connect)
  return found


@pytest.fixture
def counted(opened):
  """The rows read so far by every store the lineage reader opened."""
  return lambda: sum(c.rows for c in opened)


def _artifacts_read(opened, type_name: str) -> int:
  return sum(c.artifacts[type_name] for c in opened)


def test_the_window_and_the_serving_model_read_a_small_part_of_the_store(
    home, store_rows, counted):
  span = FIRST + RUNS
  raw = store.connect(home / "metadata.sqlite")
  window = resolvers.TrainingWindowStrategy(span=span, train_days=3)
  serving = resolvers.ServingModelStrategy(span=span)
  assert [a.span for a in queries.training_window(
      store.Snapshot.load(raw), span, 3)] == [span - 3, span - 2, span - 1]
  wanted = resolvers.serving_artifact_ids(store.Snapshot.load(raw), span)
  before = counted()
  window.resolve_artifacts(raw, {})
  serving.resolve_artifacts(raw, {})
  read = counted() - before
  assert wanted[contract.MODEL] is not None
  assert read < SHARE * store_rows, (read, store_rows)


def test_a_runs_progress_lines_read_that_run_alone(home, store_rows,
                                                   counted):
  """The runner's node lines come from the run's execution states, read
  every half second while it runs: each read asks for that run's
  executions, and each execution's node once, not for the store."""
  run_id = f"{spans.day_of(FIRST + RUNS - 1).isoformat()}T06:00:00"
  states = store.RunStates(store.connect(home / "metadata.sqlite"), run_id)
  first = states.read()
  assert first[contract.PUSHER].state == "COMPLETE"
  assert first[contract.CURATED_SCHEMA].state == "CACHED"
  assert counted() < SHARE * store_rows, (counted(), store_rows)
  before = counted()
  assert states.read().keys() == first.keys()
  assert counted() - before <= 1 + len(first), counted() - before


@pytest.mark.parametrize("argv", [
    ["show", "last", "--json"],
    ["runs", "--last", "3", "--json"],
    ["diff", "2023-12-10T06:00:00", "2023-12-20T06:00:00", "--json"],
    ["lineage", "--span", "2023-12-20", "--json"],
])
def test_a_question_about_a_few_runs_reads_a_small_part_of_the_store(
    home, store_rows, counted, capsys, argv):
  assert cli.main(["--home", str(home), *argv]) == 0
  assert json.loads(capsys.readouterr().out)
  assert counted() < SHARE * store_rows, (counted(), store_rows)


def test_lineage_shows_the_warm_start_chain_each_model_once(home, capsys):
  """Each day's model is warm-started from the one serving before it. The
  chain is listed flat, newest first, each model once with its parent
  named; the tree does not nest the parent's own tree."""
  assert cli.main(["--home", str(home), "lineage", "serving", "--json"]) == 0
  tree = json.loads(capsys.readouterr().out)
  chain = tree["warm_start_chain"]
  assert len(chain) == RUNS
  assert len({link["model_id"] for link in chain}) == RUNS
  assert chain[0]["model_id"] == tree["model"]["id"]
  assert chain[0]["pushed_version"] == tree["version"]
  for link, parent in zip(chain, chain[1:]):
    assert link["base_model"] == parent["model_id"]
  assert chain[-1]["base_model"] is None
  base = tree["model"]["producer"]["inputs"][contract.BASE_MODEL]
  assert [b["id"] for b in base] == [chain[1]["model_id"]]
  assert "producer" not in base[0]
  assert cli.main(["--home", str(home), "lineage", "serving"]) == 0
  text = capsys.readouterr().out
  assert f"warm-start chain ({RUNS} models, newest first)" in text
  assert text.count(f"<- base model #{chain[1]['model_id']}") == 1


# --- what a question about a few versions reads of the store's pushes ---------


def test_runs_last_reads_only_the_next_day_results_of_the_versions_shown(
    home, opened, capsys):
  assert cli.main(["--home", str(home), "runs", "--json"]) == 0
  every = json.loads(capsys.readouterr().out)
  opened.clear()
  assert cli.main(["--home", str(home), "runs", "--last", "2", "--json"]) == 0
  last = json.loads(capsys.readouterr().out)
  assert last == every[-2:]
  assert all(r["next_day"] for r in last[:1])
  read = _artifacts_read(opened, contract.NEXT_DAY_RESULT)
  assert 0 < read <= 4, f"read {read} of {RUNS} next-day results"
  read = _artifacts_read(opened, contract.PUSHED_MODEL_TYPE)
  assert 0 < read <= 4, f"read {read} of {RUNS} pushes"


def test_a_push_is_found_by_its_version_without_reading_every_push(
    home, opened):
  whole = queries.pushes(store.load(home / "metadata.sqlite"))
  opened.clear()
  push = queries.push_of(store.load(home / "metadata.sqlite"),
                         whole[3].version)
  assert _artifacts_read(opened, contract.PUSHED_MODEL_TYPE) == 1
  assert (push.version, push.span, push.model_id, push.execution_id) == (
      whole[3].version, whole[3].span, whole[3].model_id,
      whole[3].execution_id)


def test_a_version_s_lineage_reads_its_next_day_results_alone(home, opened):
  snap = store.load(home / "metadata.sqlite")
  version = queries.pushes(snap)[5].version
  every = queries.next_day_results(snap)
  opened.clear()
  tree = queries.lineage_of_version(store.load(home / "metadata.sqlite"),
                                    version)
  assert tree["next_day"] == [r for r in every
                              if r["model_version"] == version]
  assert tree["next_day"]
  assert _artifacts_read(opened, contract.NEXT_DAY_RESULT) <= 2


def test_what_serves_now_and_on_a_day_reads_the_newest_pushes(
    home, opened, monkeypatch):
  """The newest pushes say what serves, checked against the blessings of
  the days after them; a year of daily pushes is not read to find it."""
  snap = store.load(home / "metadata.sqlite")
  timeline = queries.serving_timeline(snap)
  monkeypatch.setattr(queries, "RECENT_PUSHES", 5)
  opened.clear()
  fresh = store.load(home / "metadata.sqlite")
  assert queries.serving_version(fresh) == timeline[-1].version
  assert queries.serving_on(fresh, FIRST + RUNS - 1).version == [
      e for e in timeline if e.span < FIRST + RUNS - 1][-1].version
  assert _artifacts_read(opened, contract.PUSHED_MODEL_TYPE) <= 5
