"""Runs one task of a compiled Vertex pipeline job as its container would.

The container's entrypoint (`kubeflow_v2_run_executor`) gets the task's
compiled arguments with `{{$}}` replaced by the executor input that the
Vertex backend writes: the task's parameters, as the backend fills them,
and its input and output artifacts. Test code: the artifacts live in local
folders, and nothing reaches Google Cloud.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple
from unittest import mock

SCHEDULE_TIME_PLACEHOLDER = "{{$.pipeline_job_schedule_time_utc}}"


def tasks(job: dict) -> dict:
  return job["pipelineSpec"]["root"]["dag"]["tasks"]


def executor(job: dict, task: str) -> dict:
  return job["pipelineSpec"]["deploymentSpec"]["executors"][
      f"{task}_executor"]["container"]


def vertex_fill(value: dict, run_parameters: Mapping[str, Any],
                schedule_time: str):
  """What the Vertex backend does to a task input before the container runs."""
  if "componentInputParameter" in value:
    return run_parameters[value["componentInputParameter"]]
  constant = value["runtimeValue"]["constant"]
  if isinstance(constant, str):
    constant = constant.replace(SCHEDULE_TIME_PLACEHOLDER, schedule_time)
  return constant


def _artifact_lists(artifacts: Mapping[str, List[Any]],
                    definitions: Mapping[str, dict]) -> dict:
  """TFX artifacts as the executor input's RuntimeArtifact lists, typed as
  the compiled component declares them (the container recovers each
  artifact's class from that type)."""
  from google.protobuf import json_format  # noqa: PLC0415
  from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils  # noqa: PLC0415
  out = {}
  for key, found in artifacts.items():
    runtime = []
    for i, one in enumerate(found):
      made = json_format.MessageToDict(utils.to_runtime_artifact(one, {}))
      made["name"] = (f"projects/p/locations/l/metadataStores/default/"
                      f"artifacts/{key}-{i}")
      made["type"] = definitions[key]["artifactType"]
      runtime.append(made)
    out[key] = {"artifacts": runtime}
  return out


def _definitions(job: dict, task: str, side: str) -> dict:
  component = tasks(job)[task]["componentRef"]["name"]
  return job["pipelineSpec"]["components"][component].get(
      side, {}).get("artifacts", {})


def run_task(job: dict, task: str, tmp_path: Path,
             run_parameters: Optional[Mapping[str, Any]] = None,
             schedule_time: str = "",
             inputs: Optional[Mapping[str, List[Any]]] = None,
             outputs: Optional[Mapping[str, List[Any]]] = None,
             keep_beam_arg=lambda arg: False) -> Dict[str, Any]:
  """Runs `task`'s container entrypoint in this process.

  Args:
    job: the compiled pipeline job dict.
    task: the task (node id).
    tmp_path: where the executor output file goes.
    run_parameters: the job's runtime parameters.
    schedule_time: what the backend fills for the scheduled time.
    inputs, outputs: TFX artifacts by channel key (their uris local).
    keep_beam_arg: which of the compiled Beam arguments to keep (Dataflow
      options make Beam look for credentials and buckets).

  Returns:
    The executor output JSON the container wrote ({} if none).
  """
  from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor  # noqa: PLC0415
  params = tasks(job)[task]["inputs"].get("parameters", {})
  output_file = tmp_path / f"{task}_executor_output.json"
  executor_input = {
      "inputs": {
          "parameterValues": {
              k: vertex_fill(v, run_parameters or {}, schedule_time)
              for k, v in params.items()},
          "artifacts": _artifact_lists(
              inputs or {}, _definitions(job, task, "inputDefinitions"))},
      "outputs": {"artifacts": _artifact_lists(
          outputs or {}, _definitions(job, task, "outputDefinitions")),
                  "outputFile": str(output_file)},
  }
  container_args = [json.dumps(executor_input) if a == "{{$}}" else a
                    for a in executor(job, task)["args"]]
  flags, beam_args = kubeflow_v2_run_executor._parse_flags(container_args)  # pylint: disable=protected-access
  beam_args = [a for a in beam_args if keep_beam_arg(a)]
  # Beam executors parse sys.argv with absl; the container's argv is its own.
  with mock.patch.object(sys, "argv", ["kubeflow_v2_run_executor"]):
    kubeflow_v2_run_executor._run_executor(flags, beam_args)  # pylint: disable=protected-access
  return (json.loads(output_file.read_text()) if output_file.exists()
          else {})


def compile_job(components: list, tmp_path: Path,
                pipeline_root: str = "gs://bucket/root") -> dict:
  """A pipeline of `components`, compiled for Vertex as vertex_run does."""
  from tfx.orchestration import pipeline  # noqa: PLC0415
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2  # noqa: PLC0415
  runner = v2.KubeflowV2DagRunner(
      config=v2.KubeflowV2DagRunnerConfig(
          display_name="checks", default_image="checks:test",
          use_pipeline_spec_2_1=True),
      output_dir=str(tmp_path), output_filename="job.json")
  return runner.run(pipeline.Pipeline(
      pipeline_name="checks", pipeline_root=pipeline_root,
      components=components), write_out=False)


def run_example_gen(job: dict, task: str, tmp_path: Path,
                    run_parameters: Mapping[str, Any],
                    schedule_time: str = "",
                    keep_beam_arg=lambda arg: False
                    ) -> Tuple[Dict[str, str], int]:
  """Runs an ExampleGen task's container, minus BigQuery.

  Returns:
    ({split: the query TFX's BigQuery executor was given}, the span
    written on the output Examples artifact).
  """
  from tfx.components.example_gen import base_example_gen_executor  # noqa: PLC0415
  from tfx.proto import example_gen_pb2  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from tfx.utils import proto_utils  # noqa: PLC0415
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  seen = {}

  def generate(self, input_dict, exec_properties):
    del self, input_dict
    seen.update(exec_properties)
    return {}  # no BigQuery here: the caller runs the queries, if at all

  with mock.patch.object(base_example_gen_executor.BaseExampleGenExecutor,
                         "GenerateExamplesByBeam", generate):
    output = run_task(job, task, tmp_path, run_parameters, schedule_time,
                      outputs={"examples": [examples]},
                      keep_beam_arg=keep_beam_arg)
  input_config = proto_utils.json_to_proto(seen["input_config"],
                                           example_gen_pb2.Input())
  return ({s.name: s.pattern for s in input_config.splits},
          output["artifacts"]["examples"]["artifacts"][0]["metadata"]["span"])


def importers(kinds: Mapping[str, type]) -> Dict[str, Any]:
  """{channel key: an Importer of that artifact type}: stand-ins for the
  upstream nodes of the one task under test (the test gives its inputs)."""
  from tfx.dsl.components.common.importer import Importer  # noqa: PLC0415
  return {key: Importer(source_uri=f"gs://bucket/{key}",
                        artifact_type=kind).with_id(key)
          for key, kind in kinds.items()}


def outputs_of(made: Mapping[str, Any]) -> Dict[str, Any]:
  """{channel key: its Importer's output}, to wire into the task."""
  return {key: node.outputs["result"] for key, node in made.items()}


def run_node(node, upstream: Mapping[str, Any], tmp_path: Path,
             inputs: Mapping[str, List[Any]],
             outputs: Mapping[str, List[Any]]) -> Dict[str, dict]:
  """Compiles `node` after its `importers`, runs its container once, and
  returns {output key: the properties recorded on its one artifact}."""
  job = compile_job([*upstream.values(), node], tmp_path)
  output = run_task(job, node.id, tmp_path, inputs=inputs, outputs=outputs)
  return {key: output["artifacts"][key]["artifacts"][0]["metadata"]
          for key in outputs}
