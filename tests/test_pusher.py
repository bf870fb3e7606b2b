"""VersionedPusherExecutor on hand-built artifacts: the registry's serving rule."""

import json

import taxi_demand  # noqa: F401  (before TensorFlow)
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as keys

from pipeline.components.pusher import VersionedPusherExecutor
from taxi_demand.lineage import contract
from taxi_demand.serving import registry


def _push(tmp_path, name, span, blessed=1, base=None, custom=None):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / name / "model")
  serving = tmp_path / name / "model" / "Format-Serving"
  serving.mkdir(parents=True, exist_ok=True)
  (serving / "saved_model.pb").write_text(name)
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / name / "blessing")
  blessing.set_int_custom_property("blessed", blessed)
  blessing.set_int_custom_property(contract.SPAN, span)
  pushed = standard_artifacts.PushedModel()
  runs = len(list((tmp_path / name).glob("pushed-*")))
  pushed.uri = str(tmp_path / name / f"pushed-{runs}")
  VersionedPusherExecutor().Do(
      {keys.MODEL_KEY: [model], keys.MODEL_BLESSING_KEY: [blessing]},
      {keys.PUSHED_MODEL_KEY: [pushed]},
      {keys.PUSH_DESTINATION_KEY: json.dumps(
          {"filesystem": {"base_directory": str(
              base or tmp_path / "models")}}),
       keys.CUSTOM_CONFIG_KEY: json.dumps(custom or {"keep_versions": 5})})
  return pushed


def _version(pushed):
  return str(pushed.get_string_custom_property(contract.PUSHED_VERSION))


def test_a_rerun_of_an_older_day_never_replaces_the_newer_model(tmp_path):
  newer = _push(tmp_path, "day11", span=11)
  older = _push(tmp_path, "day10", span=10)
  assert older.get_int_custom_property(contract.PUSHED) == 1
  models = tmp_path / "models"
  assert registry.versions(models) == [_version(newer), _version(older)]
  assert registry.serving_version(models) == _version(newer)
  assert (models / _version(older) / "saved_model.pb").read_text() == "day10"


def test_a_refused_blessing_pushes_nothing(tmp_path):
  refused = _push(tmp_path, "bad", span=12, blessed=0)
  assert refused.get_int_custom_property(contract.PUSHED) == 0
  assert registry.versions(tmp_path / "models") == []



def test_a_pusher_run_again_after_its_move_keeps_the_version(tmp_path):
  """Killed after the rename and CURRENT's move (pusher.moved), before ML
  Metadata recorded the push, the Pusher runs again on --resume: it finds
  the version it published, which may have served since, and records that
  one rather than publishing a twin no record names."""
  first = _push(tmp_path, "day11", span=11)
  again = _push(tmp_path, "day11", span=11)
  models = tmp_path / "models"
  assert _version(again) == _version(first)
  assert registry.versions(models) == [_version(first)]
  assert registry.serving_version(models) == _version(first)
  # Another model is another version.
  other = _push(tmp_path, "day12", span=12)
  assert registry.versions(models) == [_version(first), _version(other)]


def test_a_push_to_cloud_storage_carries_the_run_parameters(tmp_path,
                                                            gcs_root):
  """On Vertex the same executor pushes to gs://: the version is complete
  when seen, serves, and holds the run's parameters with the blessing's
  day, which is all the 5-minute job reads."""
  from taxi_demand.home import Home
  from taxi_demand.serving import predict
  params = contract.RunParameters(slot_minutes=60, spatial_unit="grid",
                                  grid_metres=500, arrival="end+5m")
  models = f"{gcs_root}/models"
  pushed = _push(tmp_path, "day11", span=11, base=models, custom={
      "keep_versions": 5, "run_parameters": params.to_custom_config()})
  version = _version(pushed)
  assert registry.versions(models) == [version]
  assert registry.serving_version(models) == version
  assert pushed.get_string_custom_property(
      contract.PUSHED_DESTINATION) == f"{models}/{version}"
  recorded = registry.parameters(models, version)
  assert recorded["span"] == 11 and recorded["slot_minutes"] == 60
  cfg = predict.query_config_of(Home(tmp_path / "home", store_at=gcs_root),
                                version)
  assert cfg == params.query_config()
  assert (registry.local_copy(models, version) / "saved_model.pb"
          ).read_text() == "day11"
