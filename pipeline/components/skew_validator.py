"""SkewValidator: the `taxi-demand skew` check of one serving-log day as a pipeline node."""

import os
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from pipeline.components import artifact_files
from pipeline.components import day_verdicts
from taxi_demand import artifacts
from taxi_demand import spans
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import SkewRecord
from taxi_demand.errors import AlertError
from taxi_demand.monitoring import skew
from taxi_demand.errors import TaxiDemandError

REPORT_FILE = contract.SKEW_REPORT_FILE


# Defined where Vertex's container finds it by its type name.
SkewReport = artifacts.SkewReport


class SkewAlert(AlertError):
  """Served features are skewed against the training statistics."""


@component
def SkewValidator(  # pylint: disable=invalid-name
    report: OutputArtifact[SkewReport],
    serving_log_dir: Parameter[str],
    date: Parameter[str] = "",
    examples: InputArtifact[standard_artifacts.Examples] = None,
    statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    schema: InputArtifact[standard_artifacts.Schema] = None,
    model_version: Parameter[str] = "",
    fail_on_skew: Parameter[int] = 1,
    warehouse_path: Parameter[str] = "",
    query_config: Parameter[str] = "",
    models_dir: Parameter[str] = "",
    verdicts_root: Parameter[str] = "",
) -> None:
  """Compares one day of the serving log with training statistics.

  The same functions as `taxi-demand skew` (taxi_demand.monitoring.skew);
  here the pipeline wiring decides which training statistics and schema are
  compared, so wire those of the model that served (see the resolver in the
  pipeline), not the newest ones.

  Args:
    statistics: the training statistics (the train split is compared).
    schema: the schema with the skew comparators.
    report: receives skew_report.json and alert/flagged properties.
    serving_log_dir: Home.serving_log (date=YYYY-MM-DD partitions).
    date: the slot day to check, YYYY-MM-DD; "" for the span of `examples`
      (Vertex: a scheduled run's day is known only once ExampleGen ran).
    examples: the run's examples, whose span is the day when `date` is "".
    model_version: only this version's rows; "" checks all rows of the day.
    fail_on_skew: 1 raises SkewAlert (stopping downstream nodes) on skew.
    warehouse_path: the warehouse (a DuckDB file, or bq://PROJECT.DATASET.
      TABLE on Vertex), where the training path recomputes the served keys
      for the join ("": distribution skew only).
    query_config: the run's parameters as JSON (contract.RunParameters):
      the slot length, cells and arrival rule the training path uses.
    models_dir: the registry, where the supply rates recorded with the
      version that served are read (the supply forecast's skew).
    verdicts_root: with `models_dir`, without a `statistics` channel (Vertex,
      whose resolvers cannot walk lineage), the training statistics of the
      version that served the day are found from the registry (the day of
      the run that pushed it) and the day verdicts
      (day_verdicts.training_statistics).

  In a daily pipeline there is nothing to compare on the first day (no model
  served yet) or on a day nobody predicted; the report then says so and the
  node passes, as the drift check does on its first run.
  """
  from taxi_demand.serving import servelog  # noqa: PLC0415

  if not date and examples is None:
    raise TaxiDemandError("SkewValidator needs a date or the run's examples")
  day = servelog.parse_date(date) if date else spans.day_of(examples.span)
  SkewRecord(date=day.isoformat(), span=spans.span_of(day)).write(report)
  note = None
  recorded = bool(models_dir and verdicts_root)
  if schema is None or (statistics is None and not recorded):
    note = "no model served before this day; nothing to compare"
  else:
    try:
      log = servelog.read_day(serving_log_dir, day)
    except TaxiDemandError as e:
      note = str(e)
  if note is None and statistics is None:
    statistics, note = day_verdicts.training_statistics(
        models_dir, verdicts_root, model_version or log.versions()[0][0])
    note = note or None
  if note is not None:
    SkewRecord(checked=False, alert=False).write(report)
    artifact_files.write_json(
        report.uri, REPORT_FILE, {"date": day.isoformat(), "checked": False,
                                  "alert": False, "note": note},
        sort_keys=False)
    return
  table = log.rows_of(model_version) if model_version else log.table
  if table.num_rows == 0:
    raise TaxiDemandError(f"model version {model_version} served no rows on "
                          f"{day}; versions in the log: "
                          f"{', '.join(v for v, _ in log.versions())}")
  schema_proto = skew.load_schema(schema.uri)
  cfg = (contract.RunParameters.from_custom_config(query_config) or
         contract.RunParameters()).query_config()
  training_rows, why = skew.recompute(warehouse_path, cfg, table)
  supply, why_not_supply = skew.supply_skew(
      warehouse_path, cfg, table,
      lambda version: skew.recorded_rates(models_dir, version)
      if models_dir else None)
  result = skew.SkewResult(
      date=day.isoformat(),
      model_version=model_version or ",".join(v for v, _ in log.versions()),
      rows=table.num_rows,
      **skew.evaluate(table, skew.load_training_statistics(statistics.uri),
                      schema_proto, training_rows,
                      has_issue_times=log.has_issue_times,
                      why_no_training=why),
      training_statistics_uri=statistics.uri,
      training_statistics_id=statistics.id,
      schema_uri=schema.uri,
      report_uri=os.path.join(report.uri, REPORT_FILE), supply=supply)
  if why_not_supply:
    result.notes.append(f"supply forecast not checked: {why_not_supply}")
  skew.write_report(result.report_uri, result,
                    [(str(p), r) for p, r in log.skipped])
  SkewRecord(checked=True, model_version=result.model_version,
             alert=result.alert, flagged=tuple(result.flagged),
             rows=result.rows,
             skipped_files=[str(p) for p, _ in log.skipped]).write(report)
  if result.alert and fail_on_skew:
    raise SkewAlert(f"training-serving skew on {result.date}: "
                    f"{'; '.join(result.reasons())}")
