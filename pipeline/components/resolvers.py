"""Resolver strategies that find earlier runs' artifacts in ML Metadata."""

from __future__ import annotations

from typing import Dict, List, Optional

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver


def span_of(artifact: types.Artifact) -> int:
  """An artifact's span: the property, else the custom property, else 0."""
  if artifact.has_property("span") and artifact.span:
    return int(artifact.span)
  if artifact.has_custom_property("span"):
    return int(artifact.get_int_custom_property("span"))
  return 0


class PreviousSpanStrategy(resolver.ResolverStrategy):
  """Resolves, per channel, the newest artifact of the greatest span < `span`.

  The drift check compares today's statistics with the previous span's. The
  statistics of earlier runs live in ML Metadata, not in this run, so a
  Resolver over `Channel(type=ExampleStatistics)` sees every run's artifacts;
  filtering on span (rather than "latest") keeps the answer right whatever
  order the nodes run in and whenever a day is re-run.
  """

  def __init__(self, span: int):
    self._span = int(span)

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store  # the candidates are already in input_dict
    result = {}
    for key, artifacts in input_dict.items():
      earlier = [a for a in artifacts if 0 < span_of(a) < self._span]
      if not earlier:
        result[key] = []
        continue
      best = max(earlier, key=lambda a: (span_of(a), a.id))
      result[key] = [best]
    return result


class BlessedModelBeforeSpanStrategy(resolver.ResolverStrategy):
  """The newest model blessed by a run for an earlier span than `span`.

  TFX's LatestBlessedModelStrategy would pick a model blessed by a rerun of
  this very day, so every rerun would see a new baseline and nothing could be
  cached; and the baseline of day D should be what served before D. Blessings
  carry their run's span (ForecastGate sets it). Inputs: "model" and
  "model_blessing" channels.
  """

  def __init__(self, span: int):
    self._span = int(span)

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    model_key, blessing_key = "model", "model_blessing"
    models = {m.id: m for m in input_dict[model_key]}
    blessed = [b for b in input_dict[blessing_key]
               if b.get_int_custom_property("blessed") == 1
               and 0 < span_of(b) < self._span
               and b.get_int_custom_property("current_model_id") in models]
    if not blessed:
      return {model_key: [], blessing_key: []}
    best = max(blessed, key=lambda b: (span_of(b), b.id))
    return {model_key: [models[best.get_int_custom_property(
        "current_model_id")]], blessing_key: [best]}

