"""A pushed version of the city's model with supply rates recorded, as the
Pusher records them (supply_rates.record over a training window)."""

import shutil

from taxi_demand import spans
from taxi_demand import supply_rates
from taxi_demand.lineage import contract
from taxi_demand.serving import predict
from taxi_demand.serving import registry

# The window the rates are fitted from: the week before the city's
# served days.
WINDOW_DAYS = ("2024-02-03", "2024-02-10")


def push_with_rates(home, version: str, window=WINDOW_DAYS) -> str:
  """Pushes `version`'s model again, with its query settings and the supply
  rates of `window` (first day, day after the last); returns the version."""
  source = registry.local_copy(home.models, version)
  cfg = predict.query_config_of(home, version)
  begin, end = (spans.start_of(spans.parse_span(d)) for d in window)

  def write(folder):
    shutil.copytree(source, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(registry.PARAMETERS_FILE))
    assert supply_rates.record(folder, home.warehouse, cfg, begin, end)

  params = contract.RunParameters(
      slot_minutes=cfg.slot_minutes, spatial_unit=cfg.spatial_unit.value,
      grid_metres=cfg.grid_metres, arrival=str(cfg.arrival))
  return registry.push(home.models, write, span=spans.parse_span(window[1]),
                       parameters=params.to_custom_config())
