"""StatisticsGen's executor, locally: TFX's own, or a staged day's statistics adopted."""

from __future__ import annotations

import shutil

from tfx.components.statistics_gen import executor as stats_executor
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from pipeline import staged_ingest
from taxi_demand.lineage.records import IngestFingerprint


class Executor(staged_ingest.AdoptsStaged, stats_executor.Executor):
  """TFX's StatisticsGen executor; a day staged by the window's one-pass
  ingest (staged_ingest.stage) is adopted instead of computed again, with
  every property TFX's code sets on the statistics."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    examples = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.EXAMPLES_KEY])
    statistics = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.STATISTICS_KEY])
    staged = staged_ingest.staged_for(statistics.uri, examples.span,
                                      IngestFingerprint.read(examples))
    self.run_adopting(staged, staged_ingest.STATISTICS_DIR, statistics.uri,
                      super().Do, input_dict, output_dict, exec_properties)
    if staged is not None:
      shutil.rmtree(staged, ignore_errors=True)  # the day is taken whole
