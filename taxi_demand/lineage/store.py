"""The one reader of the ML Metadata store. Never imports TensorFlow.

TFX records each pipeline run as a `pipeline_run` context, each node as a
`node` context named "<pipeline>.<node id>", and each execution with its
exec properties as custom properties. `load(path)` (or `Snapshot.load(store)`
for a store already open, as in a resolver) reads all of it in a few bulk
queries into plain dataclasses; `taxi_demand.lineage.queries` answers every
question from that Snapshot: the CLI, the runner's summary, the resolvers,
the monitoring checks and serving.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract

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

  @property
  def aborted(self) -> bool:
    """Its process died mid-node; a later run marked it (CANCELED)."""
    return bool(self.properties.get(contract.ABORTED))

  @property
  def finished(self) -> bool:
    return self.state in ("COMPLETE", "CACHED")


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
    if any(n.aborted for n in self.nodes):
      return "ABORTED"
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


def properties_of(message) -> Dict[str, Any]:
  out = {k: value_of(v) for k, v in message.properties.items()}
  out.update({k: value_of(v) for k, v in message.custom_properties.items()})
  return out


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
      if kind == contract.NODE_CONTEXT:
        for ex in store.get_executions_by_context(ctx.id):
          node_of[ex.id] = ctx.name.split(".", 1)[-1]
      elif kind == contract.PIPELINE_RUN_CONTEXT:
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
          properties=properties_of(ex))
    for a in store.get_artifacts():
      snap.artifacts[a.id] = ArtifactView(
          id=a.id, type_name=a.type or artifact_types.get(a.type_id, "?"),
          uri=a.uri, properties=properties_of(a), create_ms=a.create_time_since_epoch)
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

  def last_run(self) -> Optional[Run]:
    return self.runs[-1] if self.runs else None

  def latest_outcome(self, node_id: str) -> str:
    """"ran", "cached" or "failed" for the newest execution of a node."""
    found = self.executions_of(node_id)
    if not found:
      return "ran"
    newest = max(found, key=lambda n: n.execution_id)
    return {"CACHED": "cached", "FAILED": "failed"}.get(newest.state, "ran")

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


def load(path: os.PathLike) -> Snapshot:
  """The whole store at `path`, read once: what every reader asks.

  Paths are read relative to the home the store sits in (see `relocate`),
  so a home that was moved or restored from a backup answers from its own
  files.
  """
  snap = Snapshot.load(connect(path))
  relocate(snap, os.path.dirname(os.path.abspath(os.fspath(path))))
  return snap


# --- a home that moved -------------------------------------------------------


def recorded_pipeline_root(snap: Snapshot) -> Optional[str]:
  """The pipeline root the store's artifacts were written under.

  TFX writes each output to `<pipeline root>/<node id>/<output key>/<its
  execution id>`; the first artifact in that layout gives the root away.
  None if no artifact is (a store of checks alone, an empty one).
  """
  for execution_id in sorted(snap._outputs):  # pylint: disable=protected-access
    node = snap.executions.get(execution_id)
    if node is None:
      continue
    for key, ids in snap._outputs[execution_id].items():  # pylint: disable=protected-access
      tail = f"/{node.node_id}/{key}/{execution_id}"
      for artifact_id in ids:
        artifact = snap.artifacts.get(artifact_id)
        if artifact is not None and artifact.uri.endswith(tail):
          return artifact.uri[:-len(tail)]
  return None


def relocate(snap: Snapshot, home_root: str) -> Optional[str]:
  """Reads paths recorded under another home as under `home_root`.

  ML Metadata keeps absolute paths. A home that was copied, moved or
  restored from a backup still names the old one's files: it would answer
  about another home, or fail once that is gone. If the store's pipeline
  root was `<old>/pipeline` and `<old>` is not `home_root`, every artifact
  URI, and every artifact or execution property that is a path under
  `<old>`, is read under `home_root` instead.
  Paths outside the old home (a Vertex bucket, an imported folder) stay.

  Returns:
    The old home's path if paths were mapped, else None.
  """
  from taxi_demand.home import Home  # pylint: disable=g-import-not-at-top
  recorded = recorded_pipeline_root(snap)
  if recorded is None:
    return None
  old_home, name = os.path.split(recorded.rstrip("/"))
  new_home = os.path.normpath(home_root)
  if (name != Home(Path(new_home)).pipeline_root.name
      or os.path.normpath(old_home) == new_home):
    return None

  def moved(value: Any) -> Any:
    if isinstance(value, str) and (value == old_home or value.startswith(
        old_home + "/")):
      return new_home + value[len(old_home):]
    return value

  for artifact_id, artifact in snap.artifacts.items():
    snap.artifacts[artifact_id] = dataclasses.replace(
        artifact, uri=moved(artifact.uri),
        properties={k: moved(v) for k, v in artifact.properties.items()})
  for execution in snap.executions.values():  # e.g. ExampleGen's warehouse
    execution.properties = {k: moved(v)
                            for k, v in execution.properties.items()}
  return old_home
