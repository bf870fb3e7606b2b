"""Resolver strategies that find earlier runs' artifacts in ML Metadata.

The serving-model strategy asks the same question as `taxi-demand
next-day` and `lineage serving`, through the same reader
(`taxi_demand.lineage.queries.serving_on`), so after a rollback the
pipeline's baseline, next-day and skew nodes judge the model that really
served, not merely the newest blessed one.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver

from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store as lineage_store


# TrainingWindowStrategy's config keys (its other one is contract.SPAN).
TRAIN_DAYS_KEY = "train_days"
QUERY_KEY = "query_key"


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


class EarlierDayCacheStrategy(_NewestOfAnEarlierDay):
  """Transform's analyzer cache from the newest run of an earlier day.

  Not simply the newest cache: a rerun of day D would then read the cache
  its own first run wrote, a new input, and Transform, Trainer and every
  node after them would run again instead of coming from the cache. Keyed
  on the day, a rerun resolves what its first run resolved. The first day
  has no cache: an empty channel, which Transform reads as "none yet".
  """

  def day_of(self, snap, artifact):
    return queries.producer_span(snap, artifact.id)


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
