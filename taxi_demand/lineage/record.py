"""The write side for checks run outside the pipeline: skew, next-day, rollback.

Each check becomes one MLMD execution of its own type, with INPUT events from
the artifacts it judged (a training statistics artifact, a pushed model, a
serving-log span...) and OUTPUT events to the report artifacts it wrote, all
attributed to the pipeline's context. `taxi-demand lineage` and the history
queries then find them by walking events, like any TFX node. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from taxi_demand.lineage import contract
from taxi_demand.lineage.records import write_values


@dataclasses.dataclass(frozen=True)
class NewArtifact:
  """An artifact a check produces: its type, URI and properties."""
  type_name: str
  uri: str
  properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def open_writable(path: os.PathLike):
  """The MLMD store at `path` for writing; it must exist already."""
  from taxi_demand.lineage import store  # noqa: PLC0415
  return store.connect(path, writable=True)


def _type_id(store, kind: str, name: str) -> int:
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  if kind == "artifact":
    return store.put_artifact_type(pb.ArtifactType(name=name))
  if kind == "execution":
    return store.put_execution_type(pb.ExecutionType(name=name))
  return store.put_context_type(pb.ContextType(name=name))


def record_execution(
    store,
    execution_type: str,
    properties: Mapping[str, Any],
    inputs: Mapping[str, Sequence[Any]],
    outputs: Mapping[str, Sequence[NewArtifact]],
    pipeline_name: str = contract.PIPELINE_NAME,
) -> Dict[str, Any]:
  """Records one completed check and returns its ids.

  Args:
    store: a writable MetadataStore (see open_writable).
    execution_type: e.g. "taxi_demand.SkewCheck".
    properties: plain values recorded on the execution (None is left out,
      as everywhere: see records.write_values).
    inputs: {key: [existing MLMD Artifact protos]} the check read.
    outputs: {key: [NewArtifact]} the check wrote.
    pipeline_name: the pipeline context to attribute the check to.

  Returns:
    {"execution_id": int, "outputs": {key: [artifact ids]}}.
  """
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  execution = pb.Execution(
      type_id=_type_id(store, "execution", execution_type),
      last_known_state=pb.Execution.COMPLETE,
      name=f"{execution_type}-{time.time_ns()}")
  write_values(execution, properties)

  pairs: List = []
  for key, artifacts in inputs.items():
    for i, artifact in enumerate(artifacts):
      event = pb.Event(type=pb.Event.INPUT)
      event.path.steps.add(key=key)
      event.path.steps.add(index=i)
      pairs.append((artifact, event))
  out_keys: List[str] = []
  for key, new_artifacts in outputs.items():
    for i, new in enumerate(new_artifacts):
      artifact = pb.Artifact(type_id=_type_id(store, "artifact", new.type_name),
                             uri=new.uri, state=pb.Artifact.LIVE)
      write_values(artifact, new.properties)
      event = pb.Event(type=pb.Event.OUTPUT)
      event.path.steps.add(key=key)
      event.path.steps.add(index=i)
      pairs.append((artifact, event))
      out_keys.append(key)

  contexts = [c for c in store.get_contexts_by_type(contract.PIPELINE_CONTEXT)
              if c.name == pipeline_name]
  execution_id, artifact_ids, _ = store.put_execution(
      execution, pairs, contexts, reuse_context_if_already_exist=True)
  produced: Dict[str, List[int]] = {}
  outputs_ids = artifact_ids[len(artifact_ids) - len(out_keys):]
  for key, artifact_id in zip(out_keys, outputs_ids):
    produced.setdefault(key, []).append(artifact_id)
  return {"execution_id": execution_id, "outputs": produced}


def abort_unfinished(store, reason: str) -> List[int]:
  """Marks every execution still NEW or RUNNING as aborted; returns ids.

  Call it only while holding the home's run lock: then no live process owns
  such an execution, and it was left by one that died mid-node. It becomes
  CANCELED with `contract.ABORTED` = `reason`, and the outputs it had not
  published (PENDING) become ABANDONED, so no resolver or cache takes them.
  """
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  import ml_metadata as mlmd  # noqa: PLC0415
  # Asked by filter: the runner does this before every daily run, and the
  # store holds years of finished executions.
  unfinished = store.get_executions(list_options=mlmd.ListOptions(
      filter_query="last_known_state = NEW OR last_known_state = RUNNING"))
  if not unfinished:
    return []
  for execution in unfinished:
    execution.last_known_state = pb.Execution.CANCELED
    execution.custom_properties[contract.ABORTED].string_value = reason
  store.put_executions(unfinished)
  ids = [e.id for e in unfinished]
  outputs = {pb.Event.OUTPUT, pb.Event.PENDING_OUTPUT}
  produced = {e.artifact_id for e in store.get_events_by_execution_ids(ids)
              if e.type in outputs}
  pending = [a for a in store.get_artifacts_by_id(sorted(produced))
             if a.state == pb.Artifact.PENDING]
  for artifact in pending:
    artifact.state = pb.Artifact.ABANDONED
  if pending:
    store.put_artifacts(pending)
  return ids


def find_artifact(store, type_name: str, uri: str) -> Optional[Any]:
  """An artifact of `type_name` at `uri`, if one was recorded."""
  try:
    found = store.get_artifacts_by_type(type_name)
  except Exception:  # pylint: disable=broad-except
    return None
  matches = [a for a in found if a.uri == uri]
  return matches[-1] if matches else None
