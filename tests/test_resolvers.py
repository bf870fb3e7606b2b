"""Resolver strategies: the previous span, and the model serving on a day."""

import pytest
from tfx.types import standard_artifacts

from pipeline.components import resolvers
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.testing import synthetic
from taxi_demand.monitoring import nextday
from taxi_demand.serving import registry
from taxi_demand.serving import rollback

FIRST = synthetic.FIRST_SPAN


def stats(artifact_id, span, custom=False):
  a = standard_artifacts.ExampleStatistics()
  a.id = artifact_id
  if custom:  # TFX's query-based driver records span as a custom property
    a.set_int_custom_property(contract.SPAN, span)
  else:
    a.span = span
  return a


@pytest.fixture
def four_days_one_refused(tmp_path):
  """Runs for FIRST..FIRST+3; DataGate refused FIRST+2."""
  home = Home(tmp_path / "home")
  records = synthetic.write_store(home.root, [
      synthetic.RunSpec(span=FIRST + i, anomaly_count=int(i == 2))
      for i in range(4)])
  return store.connect(home.metadata), records


def test_previous_span_is_the_newest_passed_day_before(four_days_one_refused):
  raw, records = four_days_one_refused
  candidates = [stats(r.statistics.id, r.spec.span, custom=i % 2 == 1)
                for i, r in enumerate(records)]

  def previous(span):
    got = resolvers.PreviousSpanStrategy(span=span).resolve_artifacts(
        raw, {"statistics": candidates})
    return [a.id for a in got["statistics"]]

  assert previous(FIRST + 1) == [records[0].statistics.id]
  # FIRST + 2 was refused: the day after it is judged against FIRST + 1.
  assert previous(FIRST + 3) == [records[1].statistics.id]
  # Its own span and later reruns never count; the first day has none.
  assert previous(FIRST + 2) == [records[1].statistics.id]
  assert previous(FIRST) == []


def test_the_window_skips_a_refused_day_and_reaches_back(
    four_days_one_refused):
  raw, records = four_days_one_refused
  snap = store.Snapshot.load(raw)
  window = queries.training_window(snap, FIRST + 4, 2)
  assert [a.span for a in window] == [FIRST + 1, FIRST + 3]
  assert [a.id for a in window] == [records[1].examples.id,
                                    records[3].examples.id]
  # Never the day itself or later; at most 2 x days back.
  assert [a.span for a in queries.training_window(snap, FIRST + 3, 3)] == [
      FIRST, FIRST + 1]
  assert queries.training_window(snap, FIRST + 9, 2) == []
  # Only days made by the run's own query.
  assert queries.training_window(snap, FIRST + 4, 2, "another") == []


def test_the_day_verdicts_answer_as_ml_metadata(four_days_one_refused,
                                                 store_root):
  """Vertex's answers, from the verdicts DataGate records, are the local
  resolvers' on the same days."""
  from taxi_demand.data import verdicts  # noqa: PLC0415
  raw, records = four_days_one_refused
  snap = store.Snapshot.load(raw)
  key = "0123456789abcdef"
  recorded = verdicts.VerdictStore(store_root)
  for r in records:
    recorded.write(verdicts.DayVerdict(
        span=r.spec.span, passed=not r.spec.anomaly_count, query_key=key,
        statistics_uri=f"/stats/{r.spec.span}"))
  for span, days in ((FIRST + 4, 2), (FIRST + 3, 3), (FIRST + 9, 2),
                     (FIRST + 4, 1), (FIRST, 2)):
    assert recorded.window(key, span, days) == [
        a.span for a in queries.training_window(snap, span, days)]
  candidates = [stats(r.statistics.id, r.spec.span) for r in records]
  for span in range(FIRST, FIRST + 5):
    local = resolvers.PreviousSpanStrategy(span=span).resolve_artifacts(
        raw, {"statistics": candidates})["statistics"]
    found = recorded.passed_before(key, span)
    assert ([found.span] if found else []) == [a.span for a in local]


@pytest.fixture
def three_days(tmp_path):
  """Runs for FIRST..FIRST+2, all pushed; the middle one's blessing refused
  nothing. Returns (home, [RunRecord])."""
  home = Home(tmp_path / "home")
  records = synthetic.write_store(
      home.root, [synthetic.RunSpec(span=FIRST + i) for i in range(3)])
  return home, records


def _as_tfx(records, kind):
  """The runs' artifacts as the tfx objects a resolver receives."""
  out = []
  for r in records:
    a = (standard_artifacts.Model() if kind == contract.MODEL
         else standard_artifacts.ModelBlessing())
    a.id = (r.model if kind == contract.MODEL else r.blessing).id
    out.append(a)
  return out


def _resolve(home, records, span):
  strategy = resolvers.ServingModelStrategy(span=span)
  raw = store.connect(home.metadata)
  got = strategy.resolve_artifacts(raw, {
      contract.MODEL: _as_tfx(records, contract.MODEL),
      contract.MODEL_BLESSING: _as_tfx(records, contract.MODEL_BLESSING)})
  return ([a.id for a in got[contract.MODEL]],
          [a.id for a in got[contract.MODEL_BLESSING]])


def test_the_serving_model_is_the_newest_push_of_an_earlier_day(three_days):
  home, records = three_days
  assert _resolve(home, records, FIRST) == ([], [])  # nothing served yet
  assert _resolve(home, records, FIRST + 1) == (
      [records[0].model.id], [records[0].blessing.id])
  # A rerun of day FIRST + 2 resolves what served before it, not itself.
  assert _resolve(home, records, FIRST + 2) == (
      [records[1].model.id], [records[1].blessing.id])


def test_after_a_rollback_the_pipeline_and_the_cli_judge_the_same_model(
    three_days):
  home, records = three_days
  day = FIRST + 3
  assert _resolve(home, records, day)[0] == [records[2].model.id]
  done = rollback.rollback(home)  # back to the version before the newest
  assert done["to_version"] == records[1].version
  # The pipeline's resolvers (baseline, NextDayValidator, skew) ...
  assert _resolve(home, records, day) == (
      [records[1].model.id], [records[1].blessing.id])
  # ... the CLI's next-day subject and the registry all name that version.
  assert nextday.find_subject(home, day).version == records[1].version
  assert registry.serving_version(home.models) == records[1].version
  snap = store.load(home.metadata)
  assert queries.serving_version(snap) == records[1].version
  assert resolvers.serving_artifact_ids(snap, day)[contract.MODEL] == (
      records[1].model.id)


def test_the_serving_model_brings_its_own_training_statistics(three_days):
  home, records = three_days
  snap = store.load(home.metadata)
  ids = resolvers.serving_artifact_ids(snap, FIRST + 2)
  # Run FIRST + 1's model serves on FIRST + 2; it trained on day FIRST.
  assert ids[contract.STATISTICS] == records[0].statistics.id
  assert ids[contract.SCHEMA] is not None
