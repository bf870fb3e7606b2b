"""A small typed read layer over the ML Metadata store. Never imports TensorFlow.

TFX records each pipeline run as a `pipeline_run` context, each node as a
`node` context named "<pipeline>.<node id>", and each execution with its
exec properties as custom properties. This module turns those into plain
dataclasses for the CLI, the runner's summary and the monitoring checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Dict, Iterator, List, Optional

from taxi_demand.errors import TaxiDemandError

PIPELINE_RUN = "pipeline_run"
NODE = "node"
PIPELINE = "pipeline"

# Node ids as pipeline/pipeline.py names them. Duplicated on purpose: this
# read side must not import the pipeline package (which imports TFX).
EXAMPLE_GEN = "ExampleGen"
STATISTICS_GEN = "StatisticsGen"
DATA_GATE = "DataGate"
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
FORECAST_GATE = "ForecastGate"
PUSHER = "Pusher"

_STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED",
           5: "CACHED", 6: "CANCELED"}


@dataclasses.dataclass
class NodeExecution:
  """One node's execution in one run."""
  node_id: str
  execution_id: int
  state: str                      # COMPLETE, CACHED, FAILED, RUNNING, ...
  start_ms: int
  end_ms: int
  properties: Dict[str, Any]

  @property
  def wall_s(self) -> float:
    return max(0, self.end_ms - self.start_ms) / 1000.0

  @property
  def cached(self) -> bool:
    return self.state == "CACHED"


@dataclasses.dataclass
class Run:
  """One pipeline run: the nodes it executed, in order."""
  run_id: str
  context_id: int
  nodes: List[NodeExecution]

  @property
  def start_ms(self) -> int:
    return min((n.start_ms for n in self.nodes), default=0)

  @property
  def end_ms(self) -> int:
    return max((n.end_ms for n in self.nodes), default=0)

  @property
  def wall_s(self) -> float:
    return max(0, self.end_ms - self.start_ms) / 1000.0

  @property
  def status(self) -> str:
    states = {n.state for n in self.nodes}
    if "FAILED" in states:
      return "FAILED"
    if states & {"RUNNING", "NEW"}:
      return "RUNNING"
    return "COMPLETE" if self.nodes else "EMPTY"

  def node(self, node_id: str) -> Optional[NodeExecution]:
    for n in self.nodes:
      if n.node_id == node_id:
        return n
    return None


def value_of(v) -> Any:
  """A plain Python value from an MLMD Value proto."""
  kind = v.WhichOneof("value")
  if kind is None:
    return None
  if kind == "proto_value":
    return None
  if kind == "struct_value":
    from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
    return json_format.MessageToDict(v.struct_value)
  return getattr(v, kind)


def _props(message) -> Dict[str, Any]:
  out = {k: value_of(v) for k, v in message.properties.items()}
  out.update({k: value_of(v) for k, v in message.custom_properties.items()})
  return out


class Reader:
  """Read-only queries over one MLMD store."""

  def __init__(self, store):
    self._store = store
    self._node_of: Optional[Dict[int, str]] = None

  @property
  def store(self):
    return self._store

  def _node_index(self) -> Dict[int, str]:
    """execution id -> node id, through the node contexts."""
    if self._node_of is None:
      self._node_of = {}
      for ctx in self._store.get_contexts_by_type(NODE):
        node_id = ctx.name.split(".", 1)[-1]
        for ex in self._store.get_executions_by_context(ctx.id):
          self._node_of[ex.id] = node_id
    return self._node_of

  def _node_execution(self, ex) -> NodeExecution:
    return NodeExecution(
        node_id=self._node_index().get(ex.id, ex.type),
        execution_id=ex.id,
        state=_STATES.get(ex.last_known_state, str(ex.last_known_state)),
        start_ms=ex.create_time_since_epoch,
        end_ms=ex.last_update_time_since_epoch,
        properties=_props(ex))

  def runs(self, pipeline_name: Optional[str] = None) -> List[Run]:
    """Every run, oldest first."""
    runs = []
    for ctx in self._store.get_contexts_by_type(PIPELINE_RUN):
      executions = self._store.get_executions_by_context(ctx.id)
      nodes = sorted((self._node_execution(ex) for ex in executions),
                     key=lambda n: (n.start_ms, n.execution_id))
      if pipeline_name and not any(
          self._belongs(n, pipeline_name) for n in nodes):
        continue
      runs.append(Run(run_id=ctx.name, context_id=ctx.id, nodes=nodes))
    runs.sort(key=lambda r: (r.start_ms, r.context_id))
    return runs

  def _belongs(self, node: NodeExecution, pipeline_name: str) -> bool:
    del node, pipeline_name  # one pipeline per store today
    return True

  def last_run(self, pipeline_name: Optional[str] = None) -> Optional[Run]:
    runs = self.runs(pipeline_name)
    return runs[-1] if runs else None

  def run(self, run_id: str) -> Run:
    for r in self.runs():
      if r.run_id == run_id:
        return r
    raise TaxiDemandError(f"no run {run_id!r} in ML Metadata; "
                          "`taxi-demand runs` lists them")

  def latest_outcome(self, pipeline_name: str, node_id: str) -> str:
    """"ran", "cached" or "failed" for the newest execution of a node."""
    del pipeline_name
    ids = [i for i, n in self._node_index_fresh().items() if n == node_id]
    if not ids:
      return "ran"
    ex = self._store.get_executions_by_id([max(ids)])[0]
    state = _STATES.get(ex.last_known_state, "")
    return {"CACHED": "cached", "FAILED": "failed"}.get(state, "ran")

  def _node_index_fresh(self) -> Dict[int, str]:
    self._node_of = None
    return self._node_index()

  def outputs(self, execution_id: int) -> Dict[str, List[Any]]:
    """{output key: [artifact]} of one execution."""
    return self._artifacts(execution_id, output=True)

  def inputs(self, execution_id: int) -> Dict[str, List[Any]]:
    return self._artifacts(execution_id, output=False)

  def _artifacts(self, execution_id: int, output: bool):
    from ml_metadata.proto import metadata_store_pb2 as pb  # pylint: disable=g-import-not-at-top
    kinds = ({pb.Event.OUTPUT, pb.Event.DECLARED_OUTPUT} if output else
             {pb.Event.INPUT, pb.Event.DECLARED_INPUT})
    events = [e for e in self._store.get_events_by_execution_ids(
        [execution_id]) if e.type in kinds]
    by_id = {a.id: a for a in self._store.get_artifacts_by_id(
        sorted({e.artifact_id for e in events}))}
    out: Dict[str, List[Any]] = {}
    for e in events:
      key = e.path.steps[0].key if e.path.steps else ""
      if e.artifact_id in by_id:
        out.setdefault(key, []).append(by_id[e.artifact_id])
    return out

  # --- lineage walks -------------------------------------------------------

  def producer(self, artifact_id: int) -> Optional[NodeExecution]:
    """The execution that output an artifact, if any."""
    from ml_metadata.proto import metadata_store_pb2 as pb  # pylint: disable=g-import-not-at-top
    for e in self._store.get_events_by_artifact_ids([artifact_id]):
      if e.type in (pb.Event.OUTPUT, pb.Event.DECLARED_OUTPUT):
        ex = self._store.get_executions_by_id([e.execution_id])[0]
        return self._node_execution(ex)
    return None

  def consumers(self, artifact_id: int) -> List[NodeExecution]:
    """Every execution that took an artifact as input, oldest first."""
    from ml_metadata.proto import metadata_store_pb2 as pb  # pylint: disable=g-import-not-at-top
    ids = sorted({e.execution_id for e in
                  self._store.get_events_by_artifact_ids([artifact_id])
                  if e.type in (pb.Event.INPUT, pb.Event.DECLARED_INPUT)})
    return [self._node_execution(ex)
            for ex in self._store.get_executions_by_id(ids)]

  def pushed_models(self) -> List[Dict[str, Any]]:
    """Every push that happened, oldest first: version, time, artifacts."""
    pushes = []
    for ex in self._store.get_executions():
      node = self._node_execution(ex)
      if node.node_id != PUSHER or node.state != "COMPLETE":
        continue
      out = (self.outputs(ex.id).get("pushed_model") or [None])[0]
      if out is None or not _props(out).get("pushed"):
        continue
      model = (self.inputs(ex.id).get("model") or [None])[0]
      pushes.append({"version": _props(out).get("pushed_version"),
                     "pushed_at_ms": node.end_ms,
                     "pushed_model": out, "model": model,
                     "pusher_execution_id": ex.id})
    pushes.sort(key=lambda p: (p["pushed_at_ms"], p["pusher_execution_id"]))
    return pushes

  def model_of_version(self, version: str):
    """The Model artifact that was pushed as `version`."""
    for push in self.pushed_models():
      if str(push["version"]) == str(version):
        return push["model"]
    raise TaxiDemandError(f"no push of model version {version!r} in ML "
                          "Metadata")

  def training_inputs(self, model) -> Dict[str, Any]:
    """Walks upstream from a Model: the Trainer, then Transform, ExampleGen.

    Returns:
      {"trainer": NodeExecution, "transformed_examples", "transform_graph",
       "schema", "examples" (ExampleGen's raw examples), "statistics" (the
       StatisticsGen output for those examples)} — artifacts or None.
    """
    trainer = self.producer(model.id)
    if trainer is None:
      raise TaxiDemandError(f"model {model.uri} has no producing execution")
    inputs = self.inputs(trainer.execution_id)
    first = lambda key, d=inputs: (d.get(key) or [None])[0]
    found = {"trainer": trainer,
             "transformed_examples": first("examples"),
             "transform_graph": first("transform_graph"),
             "schema": first("schema"), "base_model": first("base_model"),
             "examples": None, "statistics": None}
    transformed = found["transformed_examples"]
    if transformed is not None:
      transform = self.producer(transformed.id)
      if transform is not None:
        found["examples"] = first("examples",
                                  self.inputs(transform.execution_id))
    if found["examples"] is not None:
      for consumer in self.consumers(found["examples"].id):
        if consumer.node_id == STATISTICS_GEN:
          found["statistics"] = first(
              "statistics", self.outputs(consumer.execution_id))
          break
    return found

  def span_of_run(self, run: Run) -> Optional[int]:
    """The span a run was for: its ExampleGen's span property or output."""
    gen = run.node(EXAMPLE_GEN)
    if gen is None:
      return None
    if gen.properties.get("span") is not None:
      return int(gen.properties["span"])
    examples = self.outputs(gen.execution_id).get("examples") or []
    span = _props(examples[0]).get("span") if examples else None
    return None if span is None else int(span)

  def artifact_props(self, artifact) -> Dict[str, Any]:
    return _props(artifact)

  def snapshot(self) -> "Snapshot":
    """The whole store read in a few bulk queries, for the CLI's walks."""
    return Snapshot.load(self._store)


@dataclasses.dataclass(frozen=True)
class ArtifactView:
  """One artifact: its type name, URI and (custom) properties."""
  id: int
  type_name: str
  uri: str
  properties: Dict[str, Any]
  create_ms: int

  @property
  def span(self) -> Optional[int]:
    span = self.properties.get("span")
    return None if span in (None, "") else int(span)


class Snapshot:
  """Every execution, artifact and event of a store, indexed in memory.

  The per-artifact Reader calls cost one SQLite round trip each; a `runs`
  table over 100 runs would make thousands. Loading the store in bulk once
  (a few queries plus one per context) keeps every metadata command well
  under a second and makes the lineage walks plain dictionary lookups.
  """

  def __init__(self):
    self.executions: Dict[int, NodeExecution] = {}
    self.artifacts: Dict[int, ArtifactView] = {}
    self.run_of: Dict[int, str] = {}          # execution id -> run id
    self.runs: List[Run] = []
    self._inputs: Dict[int, Dict[str, List[int]]] = {}
    self._outputs: Dict[int, Dict[str, List[int]]] = {}
    self._producer: Dict[int, int] = {}
    self._consumers: Dict[int, List[int]] = {}

  @classmethod
  def load(cls, store) -> "Snapshot":
    from ml_metadata.proto import metadata_store_pb2 as pb  # pylint: disable=g-import-not-at-top
    snap = cls()
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    execution_types = {t.id: t.name for t in store.get_execution_types()}
    contexts = store.get_contexts()
    context_types = {t.id: t.name for t in store.get_context_types()}
    node_of: Dict[int, str] = {}
    run_members: Dict[int, List[int]] = {}
    for ctx in contexts:
      kind = context_types.get(ctx.type_id)
      if kind == NODE:
        for ex in store.get_executions_by_context(ctx.id):
          node_of[ex.id] = ctx.name.split(".", 1)[-1]
      elif kind == PIPELINE_RUN:
        run_members[ctx.id] = [
            ex.id for ex in store.get_executions_by_context(ctx.id)]
    raw_executions = store.get_executions()
    for ex in raw_executions:
      snap.executions[ex.id] = NodeExecution(
          node_id=node_of.get(ex.id) or ex.type or execution_types.get(
              ex.type_id, "?"),
          execution_id=ex.id,
          state=_STATES.get(ex.last_known_state, str(ex.last_known_state)),
          start_ms=ex.create_time_since_epoch,
          end_ms=ex.last_update_time_since_epoch,
          properties=_props(ex))
    for a in store.get_artifacts():
      snap.artifacts[a.id] = ArtifactView(
          id=a.id, type_name=a.type or artifact_types.get(a.type_id, "?"),
          uri=a.uri, properties=_props(a), create_ms=a.create_time_since_epoch)
    ids = sorted(snap.executions)
    events = store.get_events_by_execution_ids(ids) if ids else []
    outputs = {pb.Event.OUTPUT, pb.Event.DECLARED_OUTPUT}
    inputs = {pb.Event.INPUT, pb.Event.DECLARED_INPUT}
    for e in events:
      key = e.path.steps[0].key if e.path.steps else ""
      if e.type in outputs:
        snap._outputs.setdefault(e.execution_id, {}).setdefault(
            key, []).append(e.artifact_id)
        snap._producer.setdefault(e.artifact_id, e.execution_id)
      elif e.type in inputs:
        snap._inputs.setdefault(e.execution_id, {}).setdefault(
            key, []).append(e.artifact_id)
        snap._consumers.setdefault(e.artifact_id, []).append(e.execution_id)
    by_id = {ctx.id: ctx for ctx in contexts}
    for ctx_id, members in run_members.items():
      nodes = sorted((snap.executions[i] for i in members
                      if i in snap.executions),
                     key=lambda n: (n.start_ms, n.execution_id))
      run_id = by_id[ctx_id].name
      for i in members:
        snap.run_of[i] = run_id
      snap.runs.append(Run(run_id=run_id, context_id=ctx_id, nodes=nodes))
    snap.runs.sort(key=lambda r: (r.start_ms, r.context_id))
    return snap

  def _views(self, index: Dict[str, List[int]]) -> Dict[str, List[ArtifactView]]:
    return {k: [self.artifacts[i] for i in ids if i in self.artifacts]
            for k, ids in index.items()}

  def inputs(self, execution_id: int) -> Dict[str, List[ArtifactView]]:
    return self._views(self._inputs.get(execution_id, {}))

  def outputs(self, execution_id: int) -> Dict[str, List[ArtifactView]]:
    return self._views(self._outputs.get(execution_id, {}))

  def first_input(self, execution_id: int, key: str) -> Optional[ArtifactView]:
    return (self.inputs(execution_id).get(key) or [None])[0]

  def first_output(self, execution_id: int,
                   key: str) -> Optional[ArtifactView]:
    return (self.outputs(execution_id).get(key) or [None])[0]

  def producer(self, artifact_id: int) -> Optional[NodeExecution]:
    ex = self._producer.get(artifact_id)
    return None if ex is None else self.executions.get(ex)

  def consumers(self, artifact_id: int) -> List[NodeExecution]:
    return [self.executions[i] for i in sorted(
        set(self._consumers.get(artifact_id, []))) if i in self.executions]

  def executions_of(self, node_id: str) -> List[NodeExecution]:
    """Executions of a node id or of a recorded check type, oldest first."""
    found = [n for n in self.executions.values() if n.node_id == node_id]
    return sorted(found, key=lambda n: (n.start_ms, n.execution_id))

  def artifacts_of(self, type_name: str) -> List[ArtifactView]:
    found = [a for a in self.artifacts.values() if a.type_name == type_name]
    return sorted(found, key=lambda a: (a.create_ms, a.id))

  def run(self, run_id: str) -> Run:
    """A run by id, by unique prefix, or "last"."""
    if not self.runs:
      raise TaxiDemandError("no runs in ML Metadata yet; run the pipeline "
                            "first (python runner_local.py)")
    if run_id in ("last", "latest"):
      return self.runs[-1]
    exact = [r for r in self.runs if r.run_id == run_id]
    found = exact or [r for r in self.runs if r.run_id.startswith(run_id)]
    if len(found) == 1:
      return found[0]
    if found:
      raise TaxiDemandError(f"run id {run_id!r} is ambiguous: "
                            f"{', '.join(r.run_id for r in found[:4])}, ...")
    raise TaxiDemandError(f"no run {run_id!r} in ML Metadata; "
                          "`taxi-demand runs` lists them")

  def run_output(self, run: Run, node_id: str,
                 key: str) -> Optional[ArtifactView]:
    node = run.node(node_id)
    return None if node is None else self.first_output(node.execution_id, key)


def connect(path: os.PathLike, writable: bool = False):
  """An existing MLMD SQLite store, or one clear error.

  Read-only unless `writable` (the out-of-pipeline checks record results).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise TaxiDemandError(f"no metadata store at {path}; run the pipeline "
                          "first (python runner_local.py)")
  from ml_metadata import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  modes = metadata_store_pb2.SqliteMetadataSourceConfig
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = modes.READWRITE if writable else modes.READONLY
  try:
    store = metadata_store.MetadataStore(config)
    store.get_context_types()  # touch the schema: a corrupt file fails here
  except Exception as e:  # pylint: disable=broad-except
    raise TaxiDemandError(
        f"cannot read the metadata store {path}: "
        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
    ) from None
  return store


@contextlib.contextmanager
def open_store(path: os.PathLike) -> Iterator[Reader]:
  """Opens an existing MLMD SQLite file read-only, or fails in one line."""
  yield Reader(connect(path))
