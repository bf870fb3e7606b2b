"""The local run's Beam settings: nothing a DirectRunner in this process
does not use (each window day's ingest runs two Beam nodes, a day's run
four)."""

from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import placeholder_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import executable_spec_pb2
from tfx.proto.orchestration import pipeline_pb2
from tfx.utils import dependency_utils
from tfx.utils import import_utils

import runner_local
from pipeline import local_run
from pipeline.pipeline import create_pipeline
from taxi_demand.home import Home
from taxi_demand.lineage import contract

SPAN = 19757


def _config(tmp_path, *flags):
  home = Home(tmp_path / "home")
  args = runner_local.parse_args(["--home", str(home.root), *flags])
  return local_run.build_config(args, home, SPAN)


def _beam_executors(pipeline) -> dict:
  """{node id: its Beam executor}, made from the compiled pipeline as
  LocalDagRunner's launcher makes it (BeamExecutorOperator.run_executor)."""
  deployment = pipeline_pb2.IntermediateDeploymentConfig()
  compiler.Compiler().compile(pipeline).deployment_config.Unpack(deployment)
  made = {}
  for node_id, packed in deployment.executor_specs.items():
    spec = executable_spec_pb2.BeamExecutableSpec()
    if not packed.Unpack(spec):
      continue
    beam_args = [placeholder_utils.resolve_placeholder_expression(
        arg, placeholder_utils.ResolutionContext(
            exec_info=data_types.ExecutionInfo()))
                 for arg in spec.beam_pipeline_args_placeholders]
    executor_class = import_utils.import_class_by_path(
        spec.python_executor_spec.class_path)
    made[node_id] = executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args))
  return made


def test_a_local_runs_beam_nodes_package_nothing_for_remote_workers(
    tmp_path, monkeypatch):
  """TFX's Beam executors copy all of TFX into an sdist for remote workers
  (2-5 s a node, a subprocess) when a run has Beam flags but none naming
  its dependencies; one in-process DirectRunner worker needs no flag."""
  built = []
  monkeypatch.setattr(dependency_utils, "build_ephemeral_package",
                      lambda: built.append(1) or "/nowhere/tfx_ephemeral.tgz")
  made = _beam_executors(create_pipeline(_config(tmp_path)))
  assert {contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.TRANSFORM,
          contract.EVALUATOR} <= set(made)
  assert built == []


def test_more_beam_workers_still_run_in_several_processes(tmp_path):
  assert _config(tmp_path, "--beam-workers", "2").beam_pipeline_args == (
      "--direct_num_workers=2", "--direct_running_mode=multi_processing")
