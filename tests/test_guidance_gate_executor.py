"""GuidanceGate's executor on hand-built artifacts: the session city's
warehouse and model (conftest `city`), a fleet following each model's
forecasts on one day. A day the fleet cannot measure is in
test_partial_data.py."""

import json
from pathlib import Path

import executor_artifacts as art
from taxi_demand import spans
from taxi_demand.lineage import contract

DATE = "2024-02-10"
RATES = ("stay_pickups_per_taxi_hour", "candidate_pickups_per_taxi_hour",
         "baseline_pickups_per_taxi_hour")


def gate(tmp_path: Path, city, serving=True, **exec_properties):
  """GuidanceGate's executor with the city's model as the candidate and,
  if `serving`, as the serving model too; returns the result artifact and
  its JSON."""
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from pipeline.components import guidance_gate  # noqa: PLC0415
  candidate = art.artifact(standard_artifacts.Model, tmp_path / "candidate")
  (tmp_path / "candidate" / "Format-Serving").symlink_to(city.model_dir)
  inputs = {contract.MODEL: [candidate], contract.EXAMPLES: [
      art.artifact(standard_artifacts.Examples, tmp_path / "examples",
                   span=spans.parse_span(DATE))]}
  if serving:
    # A pushed version: the SavedModel itself, as the registry holds it.
    inputs[contract.BASELINE_MODEL] = [art.artifact(
        standard_artifacts.Model, city.model_dir)]
  result = art.artifact(guidance_gate.GuidanceResult, tmp_path / "result")
  art.run(guidance_gate.GuidanceGate, inputs, {contract.RESULT: [result]},
          warehouse_path=str(city.warehouse), query_config="{}",
          **exec_properties)
  return result, json.loads((tmp_path / "result" / guidance_gate.REPORT_FILE)
                            .read_text())


def test_a_candidate_that_guides_as_well_as_the_serving_model_passes(
    tmp_path, city):
  # The same model on both sides: the same pickups per taxi-hour, which is
  # within any margin, 0 included. (The refusal's wording is judge's, in
  # test_forecast_gate.py.)
  result, body = gate(tmp_path, city, margin=0.0)
  assert result.get_int_custom_property("measured") == 1
  assert result.get_int_custom_property("passed") == 1
  assert result.get_string_custom_property("reason") == ""
  candidate, baseline = (result.get_float_custom_property(name)
                         for name in RATES[1:])
  assert candidate == baseline > result.get_float_custom_property(RATES[0])
  assert result.get_int_custom_property("passengers") >= 1000
  assert result.get_int_custom_property(contract.SPAN) == spans.parse_span(
      DATE)
  assert result.get_float_custom_property("margin") == 0.0
  # Which supply rule the fleets followed, as `recommend --supply` names it.
  assert result.get_string_custom_property("supply_basis") == "idle-now"
  assert body["supply_basis"] == "idle-now"
  # The per-policy table is the JSON's; properties hold figures only.
  assert set(body["policies"]) == {"stay", "candidate", "baseline"}
  assert not result.has_custom_property("policies")


def test_a_first_run_has_no_serving_model_and_passes(tmp_path, city):
  result, body = gate(tmp_path, city, serving=False)
  assert (result.get_int_custom_property("measured"),
          result.get_int_custom_property("passed")) == (1, 1)
  assert body["reason"] == "no serving model to compare with"
  assert body["baseline_pickups_per_taxi_hour"] is None
  assert not result.has_custom_property(RATES[2])

