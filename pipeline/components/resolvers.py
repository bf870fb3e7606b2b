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


class _BeforeSpanStrategy(resolver.ResolverStrategy):
  """Base of strategies that pick among artifacts of spans before `span`."""

  def __init__(self, span: int):
    self._span = int(span)

  def _newest_before(self, artifacts) -> Optional[types.Artifact]:
    earlier = [a for a in artifacts if 0 < span_of(a) < self._span]
    return max(earlier, key=lambda a: (span_of(a), a.id)) if earlier else None


class PreviousSpanStrategy(_BeforeSpanStrategy):
  """Resolves, per channel, the newest artifact of the greatest span < `span`.

  The drift check compares today's statistics with the previous span's. The
  statistics of earlier runs live in ML Metadata, not in this run, so a
  Resolver over `Channel(type=ExampleStatistics)` sees every run's artifacts;
  filtering on span (rather than "latest") keeps the answer right whatever
  order the nodes run in and whenever a day is re-run.
  """

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store  # the candidates are already in input_dict
    result = {}
    for key, artifacts in input_dict.items():
      best = self._newest_before(artifacts)
      result[key] = [best] if best is not None else []
    return result


class BlessedModelBeforeSpanStrategy(_BeforeSpanStrategy):
  """The newest model blessed by a run for an earlier span than `span`.

  TFX's LatestBlessedModelStrategy would pick a model blessed by a rerun of
  this very day, so every rerun would see a new baseline and nothing could be
  cached; and the baseline of day D should be what served before D. Blessings
  carry their run's span (ForecastGate sets it). Inputs: "model" and
  "model_blessing" channels.
  """

  def resolve_artifacts(
      self, store: mlmd.MetadataStore,
      input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    model_key, blessing_key = "model", "model_blessing"
    models = {m.id: m for m in input_dict[model_key]}
    best = self._newest_before(
        b for b in input_dict[blessing_key]
        if b.get_int_custom_property("blessed") == 1
        and b.get_int_custom_property("current_model_id") in models)
    if best is None:
      return {model_key: [], blessing_key: []}
    return {model_key: [models[best.get_int_custom_property(
        "current_model_id")]], blessing_key: [best]}

