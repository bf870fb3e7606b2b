"""NextDayValidator's executor on hand-built artifacts: the session city's
model (conftest `city`) scored on a real ExampleGen day, judged against the
eval MAE its blessing recorded."""

import json
from pathlib import Path

import pytest

import executor_artifacts as art
from taxi_demand import spans
from taxi_demand.lineage import contract
from taxi_demand.monitoring import nextday

DATE = "2024-02-11"            # the city's last day, with real examples
LAST_SPAN = spans.parse_span(DATE)


def validate(tmp_path: Path, city, model=True, eval_mae=None,
             **exec_properties):
  """NextDayValidator's executor on the city's LAST_SPAN examples; returns
  the result artifact and its JSON."""
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import next_day  # noqa: PLC0415
  examples = standard_artifacts.Examples()
  examples.uri, examples.span = str(city.examples[LAST_SPAN]), LAST_SPAN
  inputs = {contract.EXAMPLES: [examples]}
  if model:
    inputs[contract.MODEL] = [art.artifact(
        standard_artifacts.Model, tmp_path / "model", artifact_id=12)]
    (tmp_path / "model" / "Format-Serving").symlink_to(city.model_dir)
  if eval_mae is not None:
    blessing = art.artifact(standard_artifacts.ModelBlessing,
                            tmp_path / "blessing")
    blessing.set_float_custom_property("model_mae", eval_mae)
    inputs[contract.MODEL_BLESSING] = [blessing]
  result = art.artifact(next_day.NextDayResult, tmp_path / "result")
  art.run(next_day.NextDayValidator, inputs, {contract.RESULT: [result]},
          **exec_properties)
  return result, json.loads((tmp_path / "result" / next_day.REPORT_FILE)
                            .read_text())


def test_the_serving_model_is_scored_on_the_day_and_recorded(tmp_path, city):
  day = city.figures[LAST_SPAN]
  result, body = validate(tmp_path, city, eval_mae=day["mae"])
  assert result.get_int_custom_property("alert") == 0
  assert result.get_float_custom_property("mae") == pytest.approx(
      day["mae"], rel=1e-5)
  assert result.get_float_custom_property(
      "seasonal_naive_mae") == pytest.approx(day["seasonal_naive_mae"])
  assert result.get_float_custom_property("eval_mae") == day["mae"]
  assert result.get_int_custom_property("examples") == 77 * 48
  assert result.get_int_custom_property("model_id") == 12
  assert result.get_int_custom_property(contract.SPAN) == LAST_SPAN
  assert result.get_string_custom_property("date") == DATE
  assert body["reason"].startswith("ok: MAE ")
  # No served log given (as on Vertex): not scored by lead, and said so.
  assert body["served_by_lead"] is None and body["served_note"]


def test_a_day_worse_than_the_eval_mae_by_the_margin_alerts(tmp_path, city):
  mae = city.figures[LAST_SPAN]["mae"]
  eval_mae = mae / (1 + nextday.DEFAULT_MARGIN) * 0.99
  result, body = validate(tmp_path, city, eval_mae=eval_mae)
  assert result.get_int_custom_property("alert") == 1
  assert body["reason"].startswith(f"sudden: MAE {mae:.4f} > eval MAE "
                                   f"{eval_mae:.4f}")


def test_without_a_blessing_the_sudden_rule_is_skipped(tmp_path, city):
  result, _ = validate(tmp_path, city)
  assert result.get_int_custom_property("alert") == 0
  assert result.get_string_custom_property("reason").startswith(
      "ok: no eval MAE recorded for the model")
  assert not result.has_custom_property("eval_mae")


def test_the_first_day_records_that_nothing_was_serving(tmp_path, city):
  result, body = validate(tmp_path, city, model=False)
  assert body == {"span": LAST_SPAN, "date": DATE, "source": "pipeline",
                  "alert": 0,
                  "reason": "no model was serving before this day"}
  assert not result.has_custom_property("mae")


# --- on Vertex: the forecasts served, from the served log on Cloud Storage ----


def test_on_vertex_the_served_forecasts_are_scored_as_locally(
    tmp_path, city, gcs_root):
  """The container scores the same day, model and served log (here in the
  emulated bucket) to the same figures as the local node, by lead too."""
  import served_rows  # noqa: PLC0415
  import vertex_container  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import next_day  # noqa: PLC0415
  from taxi_demand import features  # noqa: PLC0415
  for log in (tmp_path / "serving_log", f"{gcs_root}/serving_log"):
    served_rows.city_ticks(log, city.warehouse, spans.day_of(LAST_SPAN),
                           ("08:00", "17:30"), "7", features.LAG_7D)
  local, _ = validate(tmp_path / "local", city,
                      serving_log_dir=str(tmp_path / "serving_log"))

  imported = vertex_container.importers({
      contract.EXAMPLES: standard_artifacts.Examples,
      contract.MODEL: standard_artifacts.Model})
  node = next_day.NextDayValidator(
      **vertex_container.outputs_of(imported),
      serving_log_dir=f"{gcs_root}/serving_log").with_id(
          contract.NEXT_DAY_VALIDATOR)
  model = art.artifact(standard_artifacts.Model, tmp_path / "model")
  (tmp_path / "model" / "Format-Serving").symlink_to(city.model_dir)
  recorded = vertex_container.run_node(node, imported, tmp_path, inputs={
      contract.EXAMPLES: [art.artifact(standard_artifacts.Examples,
                                       city.examples[LAST_SPAN],
                                       span=LAST_SPAN)],
      contract.MODEL: [model]}, outputs={contract.RESULT: [art.artifact(
          next_day.NextDayResult, tmp_path / "cloud")]})[contract.RESULT]
  figures = {k: v for k, v in local.mlmd_artifact.custom_properties.items()
             if k != "model_id"}
  assert json.loads(local.get_string_custom_property("served_by_lead"))
  assert local.get_int_custom_property("served_forecasts") == 2 * 2 * 77
  for key in figures:
    want = local.get_custom_property(key)
    got = recorded[key]
    assert got == (pytest.approx(want) if isinstance(want, float)
                   else want), key
