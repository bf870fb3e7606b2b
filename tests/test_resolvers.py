"""Resolver strategies: the previous span, the window's analyzer cache, and
the model serving on a day."""

import dataclasses

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


def _two_day_windows(days, **spec):
  """Runs of `days` (offsets from FIRST) with a 2-day window."""
  params = dataclasses.replace(synthetic.RunSpec(span=FIRST).parameters(),
                               train_days=2)
  return [synthetic.RunSpec(span=FIRST + i, params=params, **spec)
          for i in days]


@pytest.fixture
def four_daily_runs(tmp_path):
  """Runs for FIRST..FIRST+3 on 2-day windows, each Transform reading the
  cache of the run before (FIRST's window is empty: its cache holds no
  day). Returns (raw store, [RunRecord])."""
  home = Home(tmp_path / "home")
  records = synthetic.write_store(home.root, _two_day_windows(range(4)))
  return store.connect(home.metadata), records


def _cache_of(raw, span, records, reuse):
  """The cache ids WindowCacheStrategy resolves for a run of `span`."""
  candidates = []
  for r in records:
    a = standard_artifacts.TransformCache()
    a.id = r.cache.id
    candidates.append(a)
  got = resolvers.WindowCacheStrategy(
      span=span, train_days=2, reuse_executions=reuse).resolve_artifacts(
          raw, {"cache": candidates})
  return [a.id for a in got["cache"]]


def test_a_rerun_of_an_earlier_day_resolves_a_cache_holding_its_window(
    four_daily_runs):
  """Rerun of FIRST + 2 (window FIRST, FIRST + 1) once FIRST + 3 ran:
  the newest earlier-day cache (FIRST + 1's) holds one of its two days;
  its own first run's cache holds both, and Transform analyses nothing."""
  raw, records = four_daily_runs
  caches = [r.cache.id for r in records]
  assert _cache_of(raw, FIRST + 2, records, reuse=False) == [caches[2]]
  # A later run's cache serves as well as an earlier one's: FIRST + 1's
  # one day is in FIRST + 1's and in FIRST + 2's, the newest of the two.
  assert _cache_of(raw, FIRST + 1, records, reuse=False) == [caches[2]]
  # The first day has no window (and no cache holds a day of it).
  assert _cache_of(raw, FIRST, records, reuse=False) == []


def test_a_rerun_on_the_same_window_resolves_what_its_first_run_read(
    four_daily_runs, tmp_path):
  """With TFX's cache on, a rerun on an unchanged window resolves the cache
  its first run's Transform read, so TFX serves Transform and all after it
  from its cache; once a day of the window was ingested again (late trips),
  no Transform analysed that window and the most covering cache wins."""
  raw, records = four_daily_runs
  caches = [r.cache.id for r in records]
  assert _cache_of(raw, FIRST + 2, records, reuse=True) == [caches[1]]
  # FIRST + 1 ingested again: FIRST + 3's window is new, and only its
  # first run's cache holds one of its days (FIRST + 2); the newest
  # earlier-day cache, the re-ingest run's, holds none.
  records += synthetic.write_store(
      Home(tmp_path / "home").root,
      _two_day_windows([1], run_id="late-trips", blessed=False))
  assert _cache_of(raw, FIRST + 3, records, reuse=True) == [caches[3]]
