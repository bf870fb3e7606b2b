"""GuidanceGate: the candidate's forecasts must guide drivers no worse than
the serving model's.

A better MAE is not the product: drivers following the forecasts are. On
the run's eval day (a day neither model trained on), a fleet
(taxi_demand.fleet) follows `recommend` on each model's forecasts as the
5-minute job would serve them at every tick (the training path's rows at
every lead: point in time), and on nobody's (taxis stay put). The fleet is
sized so that staying taxis are empty half of their time. If the candidate's
pickups per taxi-hour fall more than `margin` below the serving model's,
the result says so and ForecastGate refuses its blessing. Both figures are
recorded as properties of the result, so `runs`, `show` and the report read
them from ML Metadata.

The fleet needs the day's trips, so it runs where the warehouse is (the
local runner); on Vertex the node is left out of the pipeline.

A day that lacks what the fleet needs (trips without a dropoff area, or
fewer than `min_passengers` trips: a handful of passengers judges nothing)
is not a failure: the result records `measured=0` and why, passes, and
ForecastGate decides on the forecast alone and says so. Anything else that
goes wrong here fails the node, as a broken check should.
"""

import json
import os

from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from pipeline.components import artifact_files
from taxi_demand.errors import CannotMeasure
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import GuidanceRecord

REPORT_FILE = "guidance_gate.json"
DEFAULT_MARGIN = 0.02
# Below this many passengers on the eval day the gate does not judge: 2% of
# a few hundred pickups is a handful of passengers, which one taxi's choice
# moves either way (the same order as ForecastGate's evidence floor).
DEFAULT_MIN_PASSENGERS = 1000


class GuidanceResult(types.Artifact):
  """How a fleet following each model's forecasts did on the eval day."""
  TYPE_NAME = contract.GUIDANCE_RESULT


def judge(candidate: float, baseline, margin: float) -> tuple:
  """(passed, reason): the candidate may be at most `margin` below."""
  if baseline is None:
    return True, "no serving model to compare with"
  limit = baseline * (1.0 - margin)
  if candidate >= limit:
    return True, ""
  return False, (f"guidance: drivers following the candidate made "
                 f"{candidate:.3f} pickups per taxi-hour against "
                 f"{baseline:.3f} following the serving model (limit "
                 f"{limit:.3f}, {margin:.0%} below)")


def simulate(warehouse_path: str, query_config: dict, span: int,
             candidate_uri: str, baseline_uri, seed: int = 0,
             min_passengers: int = DEFAULT_MIN_PASSENGERS) -> dict:
  """The fleet on day `span`: stay, the candidate's and the serving
  model's recommendations; returns the figures.

  Raises:
    CannotMeasure: the day has no trip a passenger could take (no dropoff
      areas, say), or fewer than `min_passengers`.
  """
  from taxi_demand import fleet  # noqa: PLC0415
  from taxi_demand import supply  # noqa: PLC0415
  from taxi_demand.lineage.contract import RunParameters  # noqa: PLC0415
  from taxi_demand.modeling import saved_model  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  cfg = (RunParameters.from_custom_config(query_config) or
         RunParameters()).query_config()
  # Neither the hotspot history nor the supply rates: the fleets here
  # stay or follow a model with the taxis idle now.
  day = fleet.load_day(warehouse_path, cfg, span, history_days=0,
                       supply_days=0)
  if len(day.passengers) < min_passengers:
    raise CannotMeasure(
        f"{len(day.passengers)} trips with a pickup and a dropoff area on "
        f"the day, below the {min_passengers} a fleet comparison needs")

  def scorer(uri):
    predictor = saved_model.load_for_serving(uri)
    return lambda t: predictor(predict.columns_of(t))[
        saved_model.PREDICTION_KEY]

  models = {"candidate": candidate_uri}
  if baseline_uri:
    models["baseline"] = baseline_uri
  forecasts = fleet.models_forecasts(
      warehouse_path, cfg, day,
      {name: scorer(uri) for name, uri in models.items()})
  policies = {"stay": fleet.stay()}
  for name in models:
    policies[name] = fleet.following(day.geometry, forecasts[name],
                                     day.slot_seconds)
  taxis, results = fleet.evaluate(day, policies, seed=seed)
  # Both models' fleets share each cell with the taxis idle there now
  # (`fleet.following` without rates), as `recommend --supply idle-now`.
  rate = {k: r.pickups_per_taxi_hour for k, r in results.items()}
  return {"taxis": taxis, "passengers": results["stay"].passengers,
          "stay_empty_share": results["stay"].empty_share,
          "stay_pickups_per_taxi_hour": rate["stay"],
          "candidate_pickups_per_taxi_hour": rate["candidate"],
          "baseline_pickups_per_taxi_hour": rate.get("baseline"),
          "supply_basis": supply.Basis.IDLE_NOW.value,
          "policies": fleet.summary(list(results.values()))}


@component
def GuidanceGate(  # pylint: disable=invalid-name
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    result: OutputArtifact[GuidanceResult],
    baseline_model: InputArtifact[standard_artifacts.Model] = None,
    warehouse_path: Parameter[str] = "",
    query_config: Parameter[str] = "{}",
    margin: Parameter[float] = DEFAULT_MARGIN,
    seed: Parameter[int] = 0,
    min_passengers: Parameter[int] = DEFAULT_MIN_PASSENGERS,
) -> None:
  """Writes a GuidanceResult for the candidate against the serving model.

  Args:
    model: the candidate (the Trainer's model).
    examples: this run's examples; their span is the eval day.
    result: the figures, as a JSON file and as custom properties.
    baseline_model: the model serving on the day (absent on a first run,
      which passes).
    warehouse_path: the DuckDB warehouse holding the day's trips.
    query_config: the run parameters (custom_config JSON) the model was
      trained with.
    margin: the candidate may guide at most this share worse.
    seed: where the fleet's taxis start.
    min_passengers: the evidence floor: a day with fewer usable trips is
      not measured.
  """
  span = int(examples.span)
  try:
    figures = simulate(warehouse_path, json.loads(query_config), span,
                       os.path.join(model.uri, "Format-Serving"),
                       baseline_model.uri if baseline_model else None, seed,
                       min_passengers)
  except CannotMeasure as e:
    figures = dict(measured=False, passed=True,
                   reason=f"not measured: {e}")
  else:
    passed, reason = judge(figures["candidate_pickups_per_taxi_hour"],
                           figures["baseline_pickups_per_taxi_hour"], margin)
    figures.update(measured=True, passed=passed, reason=reason)
  figures.update(span=span, margin=margin, min_passengers=min_passengers)
  artifact_files.write_json(result.uri, REPORT_FILE, figures)
  # The figures the JSON holds are the record's fields.
  GuidanceRecord.read(figures).write(result)
