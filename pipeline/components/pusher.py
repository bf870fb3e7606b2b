"""Pusher executor that publishes versioned models atomically and keeps K."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from absl import logging

from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from taxi_demand import faults
from taxi_demand.lineage import contract
from taxi_demand.lineage.records import ForecastGateRecord
from taxi_demand import objectstore
from taxi_demand.serving import registry

KEEP_VERSIONS_KEY = "keep_versions"
# custom_config key: the run's parameters (contract.RunParameters), written
# into the version as the registry's run_parameters.json.
RUN_PARAMETERS_KEY = "run_parameters"
# custom_config key: the warehouse the run's trips are in (a DuckDB file,
# or bq://PROJECT.DATASET.TABLE on Vertex), from which the version's supply
# rates are fitted over the training window; absent, the version has none
# and the 5-minute job fits them when serving.
WAREHOUSE_KEY = "warehouse"


class VersionedPusherExecutor(tfx_pusher.Executor):
  """Like TFX's filesystem Pusher, but readers never see a half-written model.

  TFX's Pusher copies straight into `<base>/<unix time>/`; a reader listing
  the folder mid-copy finds a partial SavedModel. Here the version becomes
  visible whole (a hidden folder renamed into place on disk, a completion
  marker written last under gs://), then the CURRENT pointer moves, and only
  the newest `keep_versions` (custom_config) are kept. The run's parameters
  (custom_config `run_parameters`, with the blessing's day) go into the
  version, so serving needs the registry alone.
  """

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
        destination)
    base = destination.filesystem.base_directory
    custom_config = exec_properties.get(
        standard_component_specs.CUSTOM_CONFIG_KEY) or {}
    if isinstance(custom_config, str):
      custom_config = json.loads(custom_config or "{}") or {}
    keep = int(custom_config.get(KEEP_VERSIONS_KEY, 5))

    # The run's day, from ForecastGate's blessing: an older day's rerun
    # publishes a version but does not take over from a newer model.
    blessing = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.MODEL_BLESSING_KEY])
    span = ForecastGateRecord.read(blessing).span
    parameters = contract.RunParameters.from_custom_config(
        custom_config.get(RUN_PARAMETERS_KEY))
    if parameters is not None and span is not None:
      parameters = dataclasses.replace(parameters, span=span)

    def write(folder: Path) -> None:
      # TFX's file layer: the model is a gs:// artifact on Vertex.
      io_utils.copy_dir(model_path, str(folder))
      record_supply_rates(folder, custom_config.get(WAREHOUSE_KEY),
                          parameters)
    version = registry.push(
        base, write, keep=keep, span=span, source=str(model_path),
        parameters=None if parameters is None
        else parameters.to_custom_config())
    # Killed here, the registry has moved and ML Metadata knows nothing:
    # readers with the store serve the recorded version meanwhile
    # (registry.recorded_version), the next run's start puts CURRENT back
    # (registry.reconcile), and --resume runs this node again, where push()
    # finds the same version.
    faults.point("pusher.moved")
    io_utils.copy_dir(model_path, model_push.uri)  # archive, as TFX does
    self._MarkPushed(model_push,
                     pushed_destination=str(objectstore.join(base, version)),
                     pushed_version=version)


def record_supply_rates(folder: Path, warehouse: Optional[str],
                        parameters: Optional[contract.RunParameters]
                        ) -> Optional[Path]:
  """Writes the supply forecast's rates into the version being pushed,
  fitted from the trips of its training window (the `train_days` days
  before the run's day, as known at the window's end).

  Here rather than in the Trainer: the model's code stays free of TFX and
  of the warehouse, and only a blessed model costs the fit. Without a
  warehouse (no key) or a window (a push without run parameters),
  or with no trip there carrying a taxi_id, the version gets none and the
  5-minute job fits them when serving, saying so.
  """
  if not warehouse or parameters is None or parameters.span is None \
      or not parameters.train_days:
    return None
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand import supply_rates  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  span = int(parameters.span)
  try:
    path = supply_rates.record(
        folder, warehouse, parameters.query_config(),
        spans.start_of(span - int(parameters.train_days)),
        spans.start_of(span))
  except TaxiDemandError as e:  # the warehouse moved or went: push anyway
    logging.warning("no supply rates recorded with the model: %s", e)
    return None
  if path is None:
    logging.warning("no supply rates recorded with the model: no trip of "
                    "its training window carries a taxi_id")
  return path
