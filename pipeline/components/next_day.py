"""NextDayValidator: scores yesterday's serving model on today's actual demand.

In the run for day D, the LatestBlessedModel resolver already yields the
model that served on D (`resolvers.ServingModelStrategy`: the newest push or
rollback in force before D, the same answer as `taxi-demand next-day`) and
ExampleGen's eval split is D's demand. This node scores the one on the other,
beside the seasonal-naive forecast, and writes a NextDayResult artifact with
the same properties `taxi-demand next-day` records, so the degradation
history in `runs` and `lineage` reads both alike. It never stops the run: a
worse serving model is a reason to push today's, not to halt. The trend rule
needs earlier results, which a node cannot query, so it stays in the CLI
(`taxi-demand next-day`); the node applies the sudden rule.
"""

from typing import Optional

import pyarrow as pa

from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from pipeline.components import artifact_files
from pipeline.components.examples_io import read_columns
from taxi_demand import artifacts
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import ForecastGateRecord
from taxi_demand.lineage.records import NextDayRecord
from taxi_demand.lineage.queries import date_of
from taxi_demand.monitoring import nextday

REPORT_FILE = "next_day.json"


# Defined where Vertex's container finds it by its type name.
NextDayResult = artifacts.NextDayResult


def check(examples_uri: str, model_uri: str, span: int,
          eval_mae: Optional[float], margin: float,
          serving_log_dir: str = "", warehouse_path: str = "",
          query_config: str = "") -> dict:
  """Scores the model on the examples' new day; applies the sudden rule;
  scores the forecasts served for that day by lead (from the served log,
  where there is one), and the supply forecasts served beside them (from
  the warehouse's trips, where there is one)."""
  columns = read_columns(examples_uri)
  figures = nextday.score_day(model_uri, columns)
  rules = nextday.Rules(margin=margin)
  alert, reason = nextday.judge(span, figures["mae"], eval_mae, history=[],
                                rules=rules)
  served = nextday.served_by_lead(serving_log_dir, span,
                                  nextday.truth_of(pa.table(columns)))
  cfg = (contract.RunParameters.from_custom_config(query_config) or
         contract.RunParameters()).query_config()
  return nextday.with_supply(
      {**figures, "eval_mae": eval_mae, "alert": alert, "reason": reason,
       **served},
      nextday.served_supply_by_lead(serving_log_dir, warehouse_path, cfg,
                                    span, rules))


@component
def NextDayValidator(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    result: OutputArtifact[NextDayResult],
    model: InputArtifact[standard_artifacts.Model] = None,
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing] = None,
    margin: Parameter[float] = nextday.DEFAULT_MARGIN,
    serving_log_dir: Parameter[str] = "",
    warehouse_path: Parameter[str] = "",
    query_config: Parameter[str] = "",
) -> None:
  """Writes a NextDayResult for the model that served on the examples' day.

  Args:
    examples: this run's examples; the eval split is day D.
    result: the figures, as a JSON file and as custom properties.
    model: the model serving on D (LatestBlessedModel's output); absent on
      the first run, which then records that nothing was serving.
    model_blessing: its ForecastGate blessing, for the eval MAE.
    margin: sudden alert if MAE > eval MAE x (1 + margin).
    serving_log_dir: the served log (a folder, or gs:// on Vertex), which
      holds the forecasts served for D ("": not scored, and the result
      says so).
    warehouse_path: the warehouse with D's trips, which the supply
      forecasts served for D are scored on (a DuckDB file, or bq://... on
      Vertex; "": not scored, and the result says so).
    query_config: the run's parameters as JSON (contract.RunParameters):
      the cells and slot length of the served supply forecasts.
  """
  span = int(examples.span)
  # The JSON report; the result records its NextDayRecord fields.
  figures = {"span": span, "date": date_of(span), "source": "pipeline"}
  if model is None:
    figures.update(alert=0, reason="no model was serving before this day")
  else:
    eval_mae = (None if model_blessing is None else
                ForecastGateRecord.read(model_blessing).model_mae)
    figures.update(check(examples.uri, model.uri, span, eval_mae, margin,
                         serving_log_dir, warehouse_path, query_config),
                   model_id=model.id)
  artifact_files.write_json(result.uri, REPORT_FILE, figures)
  NextDayRecord.read(figures).write(result)
