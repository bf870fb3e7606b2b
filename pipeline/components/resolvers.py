"""Resolver strategies that find earlier runs' artifacts in ML Metadata.

The serving-model strategy asks the same question as `taxi-demand
next-day` and `lineage serving`, through the same reader
(`taxi_demand.lineage.queries.serving_on`), so after a rollback the
pipeline's baseline, next-day and skew nodes judge the model that really
served, not merely the newest blessed one.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver

from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store as lineage_store


# TrainingWindowStrategy's and WindowCacheStrategy's config keys (their
# other one is contract.SPAN).
TRAIN_DAYS_KEY = "train_days"
QUERY_KEY = "query_key"
REUSE_EXECUTIONS_KEY = "reuse_executions"


def artifact_span(artifact: types.Artifact) -> int:
  """An artifact's span: the property, else the custom property, else 0."""
  if artifact.has_property(contract.SPAN) and artifact.span:
    return int(artifact.span)
  if artifact.has_custom_property(contract.SPAN):
    return int(artifact.get_int_custom_property(contract.SPAN))
  return 0


class _NewestOfAnEarlierDay(resolver.ResolverStrategy):
  """Per channel, the newest artifact of the greatest day before `span`.

  Subclasses say what an artifact's day is (None: not a candidate).
  """

  def __init__(self, span: int):
    self._span = int(span)

  def day_of(self, snap: lineage_store.Snapshot,
             artifact: types.Artifact) -> Optional[int]:
    raise NotImplementedError

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    snap = lineage_store.Snapshot.load(store)
    result = {}
    for key, artifacts in input_dict.items():
      dated = [(self.day_of(snap, a), a.id, a) for a in artifacts]
      earlier = [d for d in dated if d[0] is not None and d[0] < self._span]
      result[key] = [max(earlier, key=lambda d: d[:2])[2]] if earlier else []
    return result


class PreviousSpanStrategy(_NewestOfAnEarlierDay):
  """Resolves, per channel, the newest passed artifact of the greatest span
  < `span`.

  The drift check compares today's statistics with the previous span's. The
  statistics of earlier runs live in ML Metadata, not in this run, so a
  Resolver over `Channel(type=ExampleStatistics)` sees every run's artifacts;
  filtering on span (rather than "latest") keeps the answer right whatever
  order the nodes run in and whenever a day is re-run. A day DataGate
  refused is no reference: the day after a broken export would be judged
  against the broken day.
  """

  def day_of(self, snap, artifact):
    span = artifact_span(artifact)
    passed = span > 0 and queries.verdict_passed(
        queries.gate_report_of_statistics(snap, artifact.id))
    return span if passed else None


class WindowCacheStrategy(resolver.ResolverStrategy):
  """Transform's analyzer cache that holds the most of this run's window.

  Transform's cache is kept per day (by each day's examples), and an
  analyzer sees only the days of its own window, so any run's cache serves,
  older or newer than `span`: a rerun of an earlier day finds its days in
  the cache of the day after it, or of its own first run. Transform reads
  from it only the window's days and ignores the rest.

  Not simply the most covering cache when TFX's execution cache is on
  (`reuse_executions`): if a Transform already finished on exactly this
  window, the cache it read is resolved again (none, for a first day), so
  Transform, Trainer and every node after them come from TFX's cache
  instead of running again. (Should TFX's cache miss all the same, e.g. a
  home or checkout at another path re-imports the schema, that Transform
  analyses what its first run did: the whole window, for a home's first
  day. A resolver cannot tell beforehand; --no-cache turns this off.)
  With no cache holding a day of the window (a new home's first day): an
  empty channel, which Transform reads as "none yet". The window is
  `TrainingWindowStrategy`'s (same config keys).
  """

  def __init__(self, span: int, train_days: int, query_key: str = "",
               reuse_executions: bool = True):
    self._span = int(span)
    self._days = int(train_days)
    self._query_key = query_key or None
    self._reuse = bool(reuse_executions)

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    snap = lineage_store.Snapshot.load(store)
    found = queries.window_caches(snap, queries.training_window(
        snap, self._span, self._days, self._query_key))
    result = {}
    for key, artifacts in input_dict.items():
      by_id = {a.id: a for a in artifacts}
      result[key] = [by_id[i] for i in best_cache(found, by_id, self._reuse)]
    return result


def best_cache(found: queries.WindowCaches, candidates: Iterable[int],
               reuse: bool) -> List[int]:
  """The cache to resolve among `candidates` (ids): [] or one id.

  With `reuse`, what a Transform on exactly this window read, if it is
  still there; else the one holding the most of the window's days, the
  newest of equals.
  """
  candidates = set(candidates)
  again = found.read_on_window
  if reuse and again is not None and set(again) <= candidates:
    return list(again)
  ranked = [(days, i) for i, days in found.covered.items()
            if days > 0 and i in candidates]
  return [max(ranked)[1]] if ranked else []


class TrainingWindowStrategy(resolver.ResolverStrategy):
  """The window a model for day `span` trains on: one artifact per day.

  TFX's SpanRangeStrategy (penguin's window) picks spans by number alone; a
  day that DataGate refused must never be in a window, and a rerun of an
  old day must train on the days before it, not the newest ones. So the
  window is `queries.training_window`: the newest ingest of each of the
  last `train_days` days before `span` that passed DataGate, made by the
  run's own query (`query_key`).
  """

  def __init__(self, span: int, train_days: int, query_key: str = ""):
    self._span = int(span)
    self._days = int(train_days)
    self._query_key = query_key or None

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    window = queries.training_window(lineage_store.Snapshot.load(store),
                                     self._span, self._days, self._query_key)
    wanted = [a.id for a in window]
    result = {}
    for key, artifacts in input_dict.items():
      by_id = {a.id: a for a in artifacts}
      result[key] = [by_id[i] for i in wanted if i in by_id]
    return result


class ServingModelStrategy(resolver.ResolverStrategy):
  """The model serving on day `span`, and what it was judged and trained on.

  "Serving on day D" is the newest push or rollback that took effect before
  D (a push by the run for day S serves from S + 1), exactly as the CLI
  answers it. So a rerun of D resolves the same model (and stays cached),
  and after `taxi-demand rollback` the next day judges the rolled-back
  version.

  Channels, each optional but "model": "model" (Trainer's models),
  "model_blessing" (ForecastGate's blessings: its eval-day MAE), and
  "statistics" / "schema" (resolved from that model's own training lineage,
  never simply the newest).
  """

  def __init__(self, span: int):
    self._span = int(span)

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    wanted = serving_artifact_ids(lineage_store.Snapshot.load(store),
                                  self._span)
    return {key: [a for a in artifacts if a.id == wanted.get(key)]
            for key, artifacts in input_dict.items()}


def serving_artifact_ids(snap: lineage_store.Snapshot,
                         span: int) -> Dict[str, int]:
  """{channel key: artifact id} of the model serving on `span`; {} if none."""
  event = queries.serving_on(snap, span)
  if event is None:
    return {}
  push = queries.push_of(snap, event.version)
  if push.model is None:
    return {}
  wanted = {contract.MODEL: push.model.id}
  blessing = queries.blessing_of_model(snap, push.model.id)
  if blessing is not None:
    wanted[contract.MODEL_BLESSING] = blessing.id
  found = queries.training_inputs(snap, push.model.id)
  for key in (contract.STATISTICS, contract.SCHEMA):
    if found[key] is not None:
      wanted[key] = found[key].id
  return wanted
