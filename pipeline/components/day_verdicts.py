"""The day verdicts as the pipeline's nodes read them on Vertex, where no
custom resolver can ask ML Metadata (taxi_demand.data.verdicts)."""

from __future__ import annotations

from typing import Optional, Tuple

from tfx import types
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from pipeline.components.duckdb_example_gen import input_config_for
from pipeline.components.duckdb_example_gen import query_key
from taxi_demand import spans
from taxi_demand.data import verdicts
from taxi_demand.lineage import contract
from taxi_demand.serving import registry


def statistics_of(verdict: verdicts.DayVerdict) -> types.Artifact:
  """The statistics artifact that the verdict's DataGate read."""
  made = standard_artifacts.ExampleStatistics()
  made.uri = verdict.statistics_uri
  made.span = verdict.span
  made.split_names = artifact_utils.encode_split_names([contract.DAY_SPLIT])
  return made


def previous_statistics(store: verdicts.VerdictStore, key: str,
                        span: int) -> Optional[types.Artifact]:
  """The newest passed day before `span`: DataGate's drift reference, as
  PreviousSpanStrategy finds it locally (None: no such day on record)."""
  verdict = store.passed_before(key, span)
  return None if verdict is None else statistics_of(verdict)


def training_statistics(models_dir: str, verdicts_root: str, version: str
                        ) -> Tuple[Optional[types.Artifact], str]:
  """The training statistics of a pushed version, and why not if none.

  What ServingModelStrategy resolves locally: the statistics of the newest
  day of the version's window, i.e. the newest day DataGate passed before
  the day of the run that pushed it (recorded in the registry with the
  version), made by that run's query.
  """
  params = contract.RunParameters.from_custom_config(
      registry.parameters(models_dir, version))
  if params is None or not params.span:
    return None, (f"version {version} has no run parameters with its day in "
                  f"{models_dir}; its training statistics are unknown")
  key = query_key(input_config_for(params.query_config()))
  found = previous_statistics(verdicts.VerdictStore(verdicts_root), key,
                              params.span)
  if found is None:
    return None, (f"no day before {spans.date_of(params.span)} passed data "
                  f"validation on record at {verdicts_root}: version "
                  f"{version}'s training statistics are unknown")
  return found, ""

