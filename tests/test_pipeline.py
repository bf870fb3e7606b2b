"""create_pipeline: stable node ids, the right wiring, and no I/O."""

import argparse
import builtins
import os

import pytest
from tfx.dsl.components.common import resolver

from pipeline import flags
from pipeline.components import resolvers
from pipeline import pipeline as p
from pipeline.config import PipelineConfig, Thresholds
from taxi_demand import features
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract as ids
from taxi_demand.lineage import nodes

EXPECTED_IDS = [
    ids.EXAMPLE_GEN, ids.STATISTICS_GEN, ids.SCHEMA_GEN, ids.CURATED_SCHEMA,
    ids.EXAMPLE_VALIDATOR, ids.PREVIOUS_STATISTICS, ids.DATA_GATE,
    ids.TRAINING_WINDOW, ids.LATEST_ANALYZER_CACHE, ids.TRANSFORM,
    ids.LATEST_BLESSED_MODEL, ids.TRAINER, ids.EVALUATOR, ids.GUIDANCE_GATE,
    ids.FORECAST_GATE, ids.PUSHER,
    ids.NEXT_DAY_VALIDATOR, ids.SERVING_MODEL_TRAINING, ids.SKEW_VALIDATOR,
]


def config(tmp_path, **overrides):
  kwargs = dict(
      pipeline_name="t", pipeline_root=str(tmp_path / "root"), span=19757,
      warehouse_path=str(tmp_path / "w.duckdb"),
      metadata_path=str(tmp_path / "m.sqlite"),
      serving_dir=str(tmp_path / "models"))
  kwargs.update(overrides)
  return PipelineConfig(**kwargs)


def test_nodes_have_stable_ids(tmp_path):
  pipe = p.create_pipeline(config(tmp_path))
  assert sorted(c.id for c in pipe.components) == sorted(EXPECTED_IDS)


def test_the_local_graph_is_the_node_tables_local_nodes(tmp_path):
  """Every component is a row of the node table: its execution type, its
  inputs (each another node's output), its outputs and their types, what
  it waits for, and TFX's order of them, the one synthetic stores use."""
  pipe = p.create_pipeline(config(tmp_path))
  table = {n.id: n for n in nodes.on(nodes.LOCAL)}
  assert [c.id for c in pipe.components] == [
      n.id for n in nodes.run_order(nodes.LOCAL)]
  for component in pipe.components:
    node = table[component.id]
    assert component.type == node.type, node.id
    assert {k: v.type_name for k, v in component.outputs.items()} == dict(
        node.outputs), node.id
    assert sorted(u.id for u in component.upstream_nodes) == sorted(
        set(node.upstream())), node.id
    if not node.resolver:
      assert {k: nodes.Input(v.producer_component_id, v.output_key)
              for k, v in component.inputs.items()} == dict(node.inputs), (
                  node.id)


def test_create_pipeline_does_no_io(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError(f"create_pipeline did I/O: {args!r}")
  for name in ("open",):
    monkeypatch.setattr(builtins, name, refuse)
  for name in ("makedirs", "mkdir", "listdir", "remove", "rename"):
    monkeypatch.setattr(os, name, refuse)
  p.create_pipeline(config(tmp_path))
  monkeypatch.undo()
  assert list(tmp_path.iterdir()) == []


def test_the_gate_precedes_training_and_only_forecast_gate_blesses(tmp_path):
  pipe = p.create_pipeline(config(tmp_path))
  nodes = {c.id: c for c in pipe.components}
  assert ids.DATA_GATE in {n.id for n in nodes[ids.TRANSFORM].upstream_nodes}
  pusher_blessing = nodes[ids.PUSHER].inputs["model_blessing"]
  assert pusher_blessing.producer_component_id == ids.FORECAST_GATE


def test_parameters_are_recorded_on_the_trainer(tmp_path):
  cfg = config(tmp_path, train_days=14,
               thresholds=Thresholds(naive_margin=0.2))
  trainer = {c.id: c for c in p.create_pipeline(cfg).components}[ids.TRAINER]
  params = trainer.exec_properties["custom_config"]
  assert '"train_days": 14' in params and '"naive_margin": 0.2' in params
  # What the readers parse back is what the pipeline wrote.
  read = ids.RunParameters.from_custom_config(params)
  assert read == p.run_parameters(cfg)
  assert (read.train_days, read.naive_margin) == (14, 0.2)
  # Incremental retraining: fewer steps from a warm start, never more.
  assert read.warm_start_steps == 1000 < read.train_steps
  few = p.run_parameters(config(tmp_path, train_steps=300))
  assert few.warm_start_steps == 300


def _model_flags(*argv):
  parser = argparse.ArgumentParser()
  flags.add_model_flags(parser)
  return flags.model_config_kwargs(parser.parse_args(list(argv)))


def test_the_evidence_floor_goes_from_the_flag_to_the_gate_and_the_record(
    tmp_path):
  assert _model_flags()["thresholds"].min_eval_pickups == (
      Thresholds().min_eval_pickups)
  thresholds = _model_flags("--min-eval-pickups", "50")["thresholds"]
  assert thresholds.min_eval_pickups == 50
  cfg = config(tmp_path, thresholds=thresholds)
  gate = {c.id: c for c in p.create_pipeline(cfg).components}[
      ids.FORECAST_GATE]
  assert gate.exec_properties["min_eval_pickups"] == 50
  # Lineage shows which floor judged the model.
  assert p.run_parameters(cfg).min_eval_pickups == 50
  with pytest.raises(TaxiDemandError, match="--min-eval-pickups"):
    _model_flags("--min-eval-pickups", "-1")


def test_training_reads_the_resolved_window_and_evaluation_the_day(tmp_path):
  """The window comes from ML Metadata, not from re-reading the warehouse;
  the new day is what the Evaluator and the gates judge, never trained on."""
  nodes = {c.id: c for c in p.create_pipeline(
      config(tmp_path, train_days=14)).components}
  for node_id in (ids.TRANSFORM, ids.TRAINER):
    examples = nodes[node_id].inputs["examples"]
    assert examples.producer_component_id == ids.TRAINING_WINDOW, node_id
  for node_id in (ids.EVALUATOR, ids.FORECAST_GATE, ids.NEXT_DAY_VALIDATOR,
                  ids.GUIDANCE_GATE, ids.STATISTICS_GEN):
    examples = nodes[node_id].inputs["examples"]
    assert examples.producer_component_id == ids.EXAMPLE_GEN, node_id
  transform = nodes[ids.TRANSFORM]
  assert transform.inputs["analyzer_cache"].producer_component_id == (
      ids.LATEST_ANALYZER_CACHE)
  # The cache is the one holding the most of the same window; a rerun
  # resolves its first run's only while TFX's cache can serve it.
  for enable_cache in (True, False):
    built = {c.id: c for c in p.create_pipeline(config(
        tmp_path, train_days=14, enable_cache=enable_cache)).components}
    cache = built[ids.LATEST_ANALYZER_CACHE].exec_properties
    window = built[ids.TRAINING_WINDOW].exec_properties
    assert cache[resolver.RESOLVER_STRATEGY_CLASS] is (
        resolvers.WindowCacheStrategy)
    assert cache[resolver.RESOLVER_CONFIG] == {
        **window[resolver.RESOLVER_CONFIG],
        resolvers.REUSE_EXECUTIONS_KEY: enable_cache}
  # The guidance gate compares the candidate with the serving model, and
  # only ForecastGate's blessing, which weighs it, reaches the Pusher.
  guidance = nodes[ids.GUIDANCE_GATE]
  assert guidance.inputs["model"].producer_component_id == ids.TRAINER
  assert guidance.inputs["baseline_model"].producer_component_id == (
      ids.LATEST_BLESSED_MODEL)
  assert nodes[ids.FORECAST_GATE].inputs[ids.GUIDANCE].producer_component_id \
      == ids.GUIDANCE_GATE
  # Nothing materialised: the Trainer transforms the days as it reads them.
  assert ids.TRANSFORMED_EXAMPLES not in transform.outputs


def test_the_span_pins_example_gen(tmp_path):
  gen = {c.id: c for c in p.create_pipeline(config(tmp_path)).components}[
      ids.EXAMPLE_GEN]
  assert '"start_span_number": 19757' in gen.exec_properties["range_config"]


@pytest.mark.parametrize("bad", [dict(train_days=0), dict(span=-1),
                                 dict(keep_versions=0)])
def test_config_refuses_nonsense(tmp_path, bad):
  with pytest.raises(ValueError):
    config(tmp_path, **bad)


def test_tfma_thresholds_judge_the_whole_day_not_every_slice(tmp_path):
  # A plain `threshold` applies to every slice: a candidate better overall
  # but worse in one of 77 cells would never be blessed.
  cfg = p.eval_config(config(tmp_path))
  thresholded = {m.class_name: m for spec in cfg.metrics_specs
                 for m in spec.metrics
                 if m.HasField("threshold") or m.per_slice_thresholds}
  assert set(thresholded) == {"ExampleCount", "OnePassMeanAbsoluteError"}
  for metric in thresholded.values():
    assert not metric.HasField("threshold")
    (per_slice,) = metric.per_slice_thresholds
    assert [str(s) for s in per_slice.slicing_specs] == [""]  # overall only
  # Still reported by hour and cell (the eval day is one day of the week).
  assert [list(s.feature_keys) for s in cfg.slicing_specs] == [
      [], [features.HOUR], [features.CELL]]


@pytest.mark.slow
def test_the_local_graph_leaves_the_vertex_sdk_unimported(tmp_path):
  """Every local run builds this graph first: the Vertex AI SDK that
  `tfx.v1` imports with its extensions cost seconds of each run's start-up
  and is used by the Vertex graph only."""
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  script = (
      "import sys\n"
      "import taxi_demand\n"
      "from pipeline.config import PipelineConfig\n"
      "from pipeline.pipeline import create_pipeline\n"
      f"create_pipeline(PipelineConfig(pipeline_name='t', span=19757, "
      f"pipeline_root={str(tmp_path)!r}, "
      f"metadata_path={str(tmp_path / 'm.sqlite')!r}))\n"
      "print(sorted(m for m in sys.modules\n"
      "             if m.startswith(('google.cloud.aiplatform', 'tfx.v1'))))\n")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", script], cwd=repo,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().splitlines()[-1] == "[]"
