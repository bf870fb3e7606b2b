"""The one reader of the ML Metadata store. Never imports TensorFlow.

TFX records each pipeline run as a `pipeline_run` context, each node as a
`node` context named "<pipeline>.<node id>", and each execution with its
exec properties as custom properties. A `Snapshot` (from `load(path)`, or
`Snapshot.load(store)` for a store already open, as in a resolver) reads
nothing up front: each question asks ML Metadata for what it needs, by
context, type, filter query or id, and keeps what came back, so a reader's
cost grows with its answer, not with the years of runs in the store.
`taxi_demand.lineage.queries` answers every question through it: the CLI,
the runner's summary, the resolvers, the monitoring checks and serving.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, List, Optional, Sequence,
                    Union)

from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract

_STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED",
           5: "CACHED", 6: "CANCELED"}
# MLMD event types (metadata_store_pb2.Event.Type), kept here so that a
# question that reads no proto module need not import one.
_INPUTS = frozenset((2, 3))        # DECLARED_INPUT, INPUT
_OUTPUTS = frozenset((1, 4))       # DECLARED_OUTPUT, OUTPUT
# get_lineage_subgraph answers for at most about 100 starting nodes.
_CHUNK = 100
# The oldest executions read at a time to find the recorded pipeline root.
_PAGE = 5


class _ReadWhenAsked:
  """Properties made plain values when first read: a list of a thousand
  runs reads few of them, and a proto's map is slow to walk."""

  __slots__ = ("_properties", "_read_properties")
  _properties: Optional[Dict[str, Any]]
  _read_properties: Optional[Callable[[], Dict[str, Any]]]

  @property
  def properties(self) -> Dict[str, Any]:
    if self._properties is None:
      self._properties = (self._read_properties() if self._read_properties
                          else {})
    return self._properties

  @properties.setter
  def properties(self, value: Dict[str, Any]) -> None:
    self._properties = value


class NodeExecution(_ReadWhenAsked):
  """One node's execution in one run.

  Its node id is the node context it belongs to. A reader that fetched it
  by run or by id may know it only from its execution type when that type
  is one node's alone; for a type several nodes share (TFX's Resolver) the
  id is asked of ML Metadata when first read.
  """

  def __init__(self, node_id: Optional[str], execution_id: int, state: str,
               start_ms: int, end_ms: int,
               properties: Optional[Dict[str, Any]] = None,
               type_id: int = 0,
               resolve: Optional[Callable[["NodeExecution"], None]] = None,
               read_properties: Optional[Callable[[], Dict[str, Any]]] = None):
    self._node_id = node_id
    self.execution_id = execution_id
    self.state = state                  # COMPLETE, CACHED, FAILED, ...
    self.start_ms = start_ms
    self.end_ms = end_ms
    self._properties = properties
    self._read_properties = read_properties
    self.type_id = type_id
    self._resolve = resolve

  @property
  def node_id(self) -> str:
    if self._node_id is None and self._resolve is not None:
      self._resolve(self)
    return self._node_id or "?"

  @node_id.setter
  def node_id(self, value: str) -> None:
    self._node_id = value

  @property
  def node_known(self) -> bool:
    return self._node_id is not None

  def __repr__(self) -> str:
    return (f"NodeExecution({self._node_id!r}, {self.execution_id}, "
            f"{self.state})")

  @property
  def wall_s(self) -> float:
    return max(0, self.end_ms - self.start_ms) / 1000.0

  @property
  def cached(self) -> bool:
    return self.state == "CACHED"

  @property
  def aborted(self) -> bool:
    """Its process died mid-node; a later run marked it (CANCELED)."""
    # Only a CANCELED execution is ever marked (record.abort_unfinished).
    return self.state == "CANCELED" and bool(
        self.properties.get(contract.ABORTED))

  @property
  def finished(self) -> bool:
    return self.state in ("COMPLETE", "CACHED")


class Run:
  """One pipeline run: the nodes it executed, in order (read when asked)."""

  def __init__(self, run_id: str, context_id: int,
               nodes: Optional[List[NodeExecution]] = None,
               snap: Optional["Snapshot"] = None):
    self.run_id = run_id
    self.context_id = context_id
    self._nodes = nodes
    self._snap = snap
    self._first: Optional[Dict[str, NodeExecution]] = None
    # node id -> `node`'s answer: final once given (every execution before
    # it that might be of that node was asked), and a `runs` table asks
    # each run for the same few nodes several times.
    self._answers: Dict[str, Optional[NodeExecution]] = {}
    self._status: Optional[str] = None

  def __repr__(self) -> str:
    return f"Run({self.run_id!r}, {self.context_id})"

  @property
  def nodes(self) -> List[NodeExecution]:
    if self._nodes is None:
      self._nodes = self._snap.run_executions(self.context_id)
    return self._nodes

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
    # A run read from a store is read once, so its status is found once
    # (a `runs` row asks it three times); a run made of given nodes is not
    # kept, as they may change.
    if self._status is None or self._snap is None:
      self._status = self._find_status()
    return self._status

  def _find_status(self) -> str:
    states = {n.state for n in self.nodes}
    if any(n.aborted for n in self.nodes):
      return "ABORTED"
    if "FAILED" in states:
      return "FAILED"
    if states & {"RUNNING", "NEW"}:
      return "RUNNING"
    return "COMPLETE" if self.nodes else "EMPTY"

  def node(self, node_id: str) -> Optional[NodeExecution]:
    """The run's first execution of `node_id`, or None."""
    if node_id not in self._answers:
      self._answers[node_id] = self._find(node_id)
    return self._answers[node_id]

  def _find(self, node_id: str) -> Optional[NodeExecution]:
    if self._first is None:
      self._first = {}
      for n in reversed(self.nodes):
        if n.node_known:
          self._first[n.node_id] = n
    found = self._first.get(node_id)
    snap = self._snap
    for n in self.nodes:  # an execution whose node is not known yet
      if found is not None and (n.start_ms, n.execution_id) >= (
          found.start_ms, found.execution_id):
        break
      if n.node_known or (snap is not None and not snap.may_be(n, node_id)):
        continue
      if n.node_id == node_id:
        self._first = None  # learnt a node: index again when next asked
        return n
    return found


def value_of(v) -> Any:
  """A plain Python value from an MLMD Value proto."""
  kind = v.WhichOneof("value")
  if kind is None:
    return None
  if kind == "proto_value":
    return None
  if kind == "struct_value":
    from google.protobuf import json_format  # noqa: PLC0415
    return json_format.MessageToDict(v.struct_value)
  return getattr(v, kind)


def properties_of(message) -> Dict[str, Any]:
  """{name: plain value} of a proto's properties and custom properties
  (a custom property wins over a property of the same name)."""
  out = {k: value_of(v) for k, v in message.properties.items()}
  out.update({k: value_of(v) for k, v in message.custom_properties.items()})
  return out


def property_of(message, name: str) -> Any:
  """`properties_of(message).get(name)`, without reading the others."""
  if name in message.custom_properties:
    return value_of(message.custom_properties[name])
  if name in message.properties:
    return value_of(message.properties[name])
  return None


class ArtifactView(_ReadWhenAsked):
  """One artifact: its type name, URI and (custom) properties.

  Its properties become plain values when first read (`read_properties`);
  its span alone is read without them (`read_one`): a question over a
  thousand blessings or examples that asks only their days need not make
  sixteen properties each plain values.
  """

  __slots__ = ("id", "type_name", "uri", "create_ms", "_read_one")

  def __init__(self, id: int, type_name: str, uri: str,  # pylint: disable=redefined-builtin
               properties: Optional[Dict[str, Any]] = None, create_ms: int = 0,
               read_properties: Optional[Callable[[], Dict[str, Any]]] = None,
               read_one: Optional[Callable[[str], Any]] = None):
    self.id = id
    self.type_name = type_name
    self.uri = uri
    self.create_ms = create_ms
    self._properties = properties
    self._read_properties = read_properties
    self._read_one = read_one

  def __eq__(self, other) -> bool:
    return isinstance(other, ArtifactView) and (
        self.id, self.type_name, self.uri, self.properties) == (
            other.id, other.type_name, other.uri, other.properties)

  def __hash__(self) -> int:
    return hash((self.id, self.uri))

  def __repr__(self) -> str:
    return f"ArtifactView({self.id}, {self.type_name!r}, {self.uri!r})"

  @property
  def span(self) -> Optional[int]:
    span = (self._read_one(contract.SPAN) if self._properties is None and
            self._read_one is not None else self.properties.get(contract.SPAN))
    return None if span in (None, "") else int(span)


def _list_options(**kwargs):
  import ml_metadata as mlmd  # noqa: PLC0415
  return mlmd.ListOptions(**kwargs)


# --- filter queries (ML Metadata's syntax): written here only --------------------


def _literal(value: Any) -> str:
  if isinstance(value, str):
    return "'" + value.replace("'", "\\'") + "'"
  return str(int(value) if isinstance(value, bool) else value)


def _value_field(value: Any) -> str:
  if isinstance(value, (bool, int)):
    return "int_value"
  return "double_value" if isinstance(value, float) else "string_value"


def custom_filter(name: str, op: str, value: Any) -> str:
  """One term on custom property `name` (typed by `value`), e.g.
  custom_filter("pushed", "=", 1)."""
  return f"custom_properties.{name}.{_value_field(value)} {op} {_literal(value)}"


def custom_in(name: str, values: Sequence[Any]) -> str:
  """Custom property `name` is one of `values` (all of one type)."""
  listed = ", ".join(_literal(v) for v in values)
  return f"custom_properties.{name}.{_value_field(values[0])} IN ({listed})"


def pushed_filter(version: Union[None, str, Sequence[str]] = None) -> str:
  """PushedModels a Pusher published (TFX sets `pushed` and the version
  only as it records its success); of `version` (or versions) if given."""
  terms = [custom_filter(contract.PUSHED, "=", 1)]
  if isinstance(version, str):
    terms.insert(0, custom_filter(contract.PUSHED_VERSION, "=", version))
  elif version is not None:
    terms.insert(0, custom_in(contract.PUSHED_VERSION,
                              [str(v) for v in version]))
  return " AND ".join(terms)


def _key(event) -> str:
  return event.path.steps[0].key if event.path.steps else ""


class Snapshot:
  """A store, read a question at a time; what was read is kept.

  Nothing is read when it is made. Each method asks ML Metadata only for
  what it answers (a node's executions by its context, a run's by its
  context, an artifact's events by its id, artifacts by type or filter
  query) and keeps the answer, so asking twice costs nothing and a
  question about one run does not read the thousand before it.
  `prefetch_*` read many ids in one request, for questions asked in a loop.

  `executions` and `artifacts` (every one in the store) are read whole when
  first used; no question in this package uses them.
  """

  def __init__(self, store=None, home_root: Optional[str] = None):
    self.store = store
    self._home_root = home_root
    self._moved_from: Optional[str] = None
    self._type_names: Dict[tuple, str] = {}
    self._node_contexts: Optional[Dict[str, Any]] = None   # node id -> ctx
    self._all_node_contexts: Dict[str, List[Any]] = {}  # every pipeline's
    self._node_of_context: Dict[int, str] = {}
    self._run_contexts: Optional[List[Any]] = None
    self._runs: Dict[int, Run] = {}                          # by context id
    self._types_of_node: Optional[Dict[str, set]] = None
    self._nodes_of_type: Dict[int, set] = {}
    self._executions: Dict[int, NodeExecution] = {}
    self._artifacts: Dict[int, ArtifactView] = {}
    self._run_of: Dict[int, Optional[str]] = {}   # execution id -> run id
    self._by_node: Dict[str, List[NodeExecution]] = {}
    self._by_type: Dict[tuple, List[ArtifactView]] = {}
    self._inputs: Dict[int, Dict[str, List[int]]] = {}
    self._outputs: Dict[int, Dict[str, List[int]]] = {}
    self._producer: Dict[int, Optional[int]] = {}
    self._consumers: Dict[int, List[int]] = {}
    self._consumed_as: Dict[int, Dict[int, List[str]]] = {}
    self._memo: Dict[str, Any] = {}
    self._all_executions = False
    self._all_artifacts = False
    self.run_of = _RunOf(self)

  @classmethod
  def load(cls, store) -> "Snapshot":
    """A reader of an open store (nothing is read yet)."""
    return cls(store)

  # --- what the store calls things ------------------------------------------

  def _type_name(self, kind: str, type_id: int) -> str:
    if (kind, type_id) not in self._type_names:
      listed = (self.store.get_artifact_types() if kind == "artifact" else
                self.store.get_execution_types())
      for t in listed:
        self._type_names[(kind, t.id)] = t.name
    return self._type_names.get((kind, type_id), "?")

  def node_contexts(self) -> Dict[str, Any]:
    """{node id: its node context}."""
    if self._node_contexts is None:
      self._node_contexts = {}
      self._all_node_contexts = {}
      # One per pipeline a node ran in (the daily run and a window's
      # ingest are pipelines of their own names): the newest is the one a
      # running node writes to; a node's history is in all of them.
      for ctx in sorted(self.store.get_contexts_by_type(contract.NODE_CONTEXT),
                        key=lambda c: c.id):
        node_id = ctx.name.split(".", 1)[-1]
        self._node_contexts[node_id] = ctx
        self._all_node_contexts.setdefault(node_id, []).append(ctx)
        self._node_of_context[ctx.id] = node_id
    return self._node_contexts

  def _type_map(self) -> None:
    """Which nodes each execution type belongs to, from each node's newest
    execution: a type that is one node's alone names its node without a
    further question."""
    if self._types_of_node is not None:
      return
    self._types_of_node = {}
    newest = _list_options(limit=1, order_by=_order("ID"), is_asc=False)
    for node_id, ctx in self.node_contexts().items():
      for ex in self.store.get_executions_by_context(ctx.id,
                                                     list_options=newest):
        self._types_of_node.setdefault(node_id, set()).add(ex.type_id)
        self._nodes_of_type.setdefault(ex.type_id, set()).add(node_id)

  def may_be(self, execution: NodeExecution, node_id: str) -> bool:
    """False only if `execution` is surely not of `node_id` (its type is
    another node's alone); asks nothing of the store to say so."""
    if execution.node_known:
      return execution.node_id == node_id
    self._type_map()
    types = self._types_of_node.get(node_id)
    return types is None or execution.type_id in types or (
        execution.type_id not in self._nodes_of_type)

  # --- executions -------------------------------------------------------------

  def _execution(self, ex, node_id: Optional[str] = None,
                 run_id: Optional[str] = None,
                 known_run: bool = False) -> NodeExecution:
    """The one view of execution proto `ex`, made or updated."""
    view = self._executions.get(ex.id)
    if view is None:
      state = ex.last_known_state
      view = NodeExecution(
          node_id=None, execution_id=ex.id,
          state=_STATES[state] if state in _STATES else str(state),
          start_ms=ex.create_time_since_epoch,
          end_ms=ex.last_update_time_since_epoch, type_id=ex.type_id,
          resolve=self._resolve_node,
          read_properties=lambda: self._moved_properties(properties_of(ex)))
      self._executions[ex.id] = view
    if node_id is not None:
      view.node_id = node_id
    elif not view.node_known:
      self._type_map()
      nodes = self._nodes_of_type.get(ex.type_id)
      if nodes is not None and len(nodes) == 1:
        view.node_id = next(iter(nodes))
    if known_run:
      self._run_of[ex.id] = run_id
    return view

  def _resolve_node(self, execution: NodeExecution) -> None:
    """Asks ML Metadata which node (and run) an execution, and the others
    of unknown node read with it, belong to."""
    pending = [i for i, v in self._executions.items() if not v.node_known]
    if execution.execution_id in pending:  # its own chunk first
      pending.remove(execution.execution_id)
      pending.insert(0, execution.execution_id)
    self._associate(pending[:_CHUNK])
    if not execution.node_known:  # a check recorded outside any node
      execution.node_id = self._type_name("execution", execution.type_id)

  def _associate(self, ids: Sequence[int]) -> None:
    """Learns the node and run contexts of executions `ids`."""
    self.node_contexts()
    runs = {c.id: c.name for c in self._all_run_contexts()}
    for ex_id in ids:
      self._run_of.setdefault(ex_id, None)
    for ex_id, ctx_id in associations(self.store, ids):
      if ctx_id in runs:
        self._run_of[ex_id] = runs[ctx_id]
      node = self._node_of_context.get(ctx_id)
      view = self._executions.get(ex_id)
      if node is not None and view is not None:
        view.node_id = node
    for ex_id in ids:
      view = self._executions.get(ex_id)
      if view is not None and not view.node_known:
        view.node_id = self._type_name("execution", view.type_id)

  def prefetch_run_ids(self, ids: Iterable[int]) -> None:
    """Learns which runs executions `ids` belong to, a hundred a request."""
    missing = sorted({i for i in ids if i not in self._run_of})
    if missing:
      self._associate(missing)

  def execution(self, execution_id: Optional[int]
                ) -> Optional[NodeExecution]:
    if execution_id is None:
      return None
    self.prefetch_executions([execution_id])
    return self._executions.get(execution_id)

  def prefetch_executions(self, ids: Iterable[int]) -> None:
    """Reads the executions `ids` not read yet, in one request."""
    missing = sorted({i for i in ids if i not in self._executions})
    if missing:
      for ex in self.store.get_executions_by_id(missing):
        self._execution(ex)

  def executions_of(self, node_id: str) -> List[NodeExecution]:
    """Executions of a node id or of a recorded check type, oldest first."""
    if node_id not in self._by_node:
      self.node_contexts()
      contexts = self._all_node_contexts.get(node_id, [])
      if contexts:
        seen = set()
        found = []
        for ctx in contexts:
          for ex in self.store.get_executions_by_context(ctx.id):
            if ex.id not in seen:
              seen.add(ex.id)
              found.append(self._execution(ex, node_id=node_id))
      else:  # a check recorded outside the pipeline: its type is its name
        try:
          raw = self.store.get_executions_by_type(node_id)
        except Exception:  # pylint: disable=broad-except  (no such type yet)
          raw = []
        found = [self._execution(ex, node_id=node_id) for ex in raw]
      self._by_node[node_id] = sorted(
          found, key=lambda n: (n.start_ms, n.execution_id))
    return list(self._by_node[node_id])

  # --- runs ---------------------------------------------------------------------

  def _all_run_contexts(self) -> List[Any]:
    """Every pipeline_run context, in the order the runs began (TFX
    registers a run's context as its first node starts)."""
    if self._run_contexts is None:
      self._run_contexts = sorted(
          self.store.get_contexts_by_type(contract.PIPELINE_RUN_CONTEXT),
          key=lambda c: (c.create_time_since_epoch, c.id))
    return self._run_contexts

  def _run(self, ctx) -> Run:
    if ctx.id not in self._runs:
      self._runs[ctx.id] = Run(run_id=ctx.name, context_id=ctx.id, snap=self)
    return self._runs[ctx.id]

  @property
  def runs(self) -> List[Run]:
    """Every run, oldest first; each reads its nodes when asked."""
    return [self._run(ctx) for ctx in self._all_run_contexts()]

  def run_executions(self, context_id: int) -> List[NodeExecution]:
    """A run's executions, in the order they started."""
    name = next(c.name for c in self._all_run_contexts() if c.id == context_id
                ) if context_id not in self._runs else self._runs[
                    context_id].run_id
    nodes = [self._execution(ex, run_id=name, known_run=True)
             for ex in self.store.get_executions_by_context(context_id)]
    return sorted(nodes, key=lambda n: (n.start_ms, n.execution_id))

  def last_run(self) -> Optional[Run]:
    contexts = self._all_run_contexts()
    return self._run(contexts[-1]) if contexts else None

  def run_by_id(self, run_id: str) -> Optional[Run]:
    """The run named `run_id` exactly, or None."""
    for ctx in self._all_run_contexts():
      if ctx.name == run_id:
        return self._run(ctx)
    return None

  def run(self, run_id: str) -> Run:
    """A run by id, by unique prefix, or "last"."""
    runs = self._all_run_contexts()
    if not runs:
      raise TaxiDemandError("no runs in ML Metadata yet; run the pipeline "
                            "first (python runner_local.py)")
    if run_id in ("last", "latest"):
      return self.last_run()
    exact = [c for c in runs if c.name == run_id]
    found = exact or [c for c in runs if c.name.startswith(run_id)]
    if len(found) == 1:
      return self._run(found[0])
    if found:
      raise TaxiDemandError(f"run id {run_id!r} is ambiguous: "
                            f"{', '.join(c.name for c in found[:4])}, ...")
    raise TaxiDemandError(f"no run {run_id!r} in ML Metadata; "
                          "`taxi-demand runs` lists them")

  def run_output(self, run: Run, node_id: str,
                 key: str) -> Optional[ArtifactView]:
    node = run.node(node_id)
    return None if node is None else self.first_output(node.execution_id, key)

  def prefetch_runs(self, runs: Sequence[Run],
                    outputs_of: Sequence[str] = ()) -> None:
    """Reads the outputs of nodes `outputs_of` of `runs` in two requests
    (their events, then their artifacts), for a question asked per run."""
    ids = [n.execution_id for r in runs for node_id in outputs_of
           for n in [r.node(node_id)] if n is not None]
    self.prefetch_execution_events(ids)
    self.prefetch_artifacts(a for i in ids for arts in
                            self._outputs.get(i, {}).values() for a in arts)

  # --- events -------------------------------------------------------------------

  def prefetch_execution_events(self, ids: Iterable[int]) -> None:
    """Reads the inputs and outputs of executions `ids`, in one request."""
    missing = sorted({i for i in ids if i not in self._inputs})
    if not missing:
      return
    for i in missing:
      self._inputs[i], self._outputs[i] = {}, {}
    for e in self.store.get_events_by_execution_ids(missing):
      if e.type in _OUTPUTS:
        self._outputs[e.execution_id].setdefault(_key(e), []).append(
            e.artifact_id)
        self._producer.setdefault(e.artifact_id, e.execution_id)
      elif e.type in _INPUTS:
        self._inputs[e.execution_id].setdefault(_key(e), []).append(
            e.artifact_id)

  def prefetch_artifact_events(self, ids: Iterable[int]) -> None:
    """Reads which executions wrote and read artifacts `ids`, in one
    request."""
    missing = sorted({i for i in ids if i not in self._consumers})
    if not missing:
      return
    for i in missing:
      self._consumers[i] = []
    for e in self.store.get_events_by_artifact_ids(missing):
      if e.type in _OUTPUTS:
        self._producer.setdefault(e.artifact_id, e.execution_id)
      elif e.type in _INPUTS:
        self._consumers[e.artifact_id].append(e.execution_id)
        self._consumed_as.setdefault(e.artifact_id, {}).setdefault(
            e.execution_id, []).append(_key(e))
    for i in missing:
      self._producer.setdefault(i, None)

  def producer_ids(self, artifact_ids: Iterable[int]) -> Dict[int, int]:
    """{artifact id: the execution that wrote it} for artifacts `ids` (in
    one request), leaving out those no execution wrote."""
    ids = list(artifact_ids)
    self.prefetch_artifact_events(ids)
    return {i: self._producer[i] for i in ids
            if self._producer.get(i) is not None}

  def input_ids(self, execution_id: int, key: str) -> List[int]:
    """The ids of an execution's inputs under `key` (no artifact read)."""
    self.prefetch_execution_events([execution_id])
    return list(self._inputs.get(execution_id, {}).get(key, []))

  def output_ids(self, execution_id: int, key: str) -> List[int]:
    """The ids of an execution's outputs under `key` (no artifact read)."""
    self.prefetch_execution_events([execution_id])
    return list(self._outputs.get(execution_id, {}).get(key, []))

  def consumed_as(self, artifact_id: int) -> Dict[int, List[str]]:
    """{execution id: the input keys it read artifact `artifact_id` under}."""
    self.prefetch_artifact_events([artifact_id])
    return {ex: list(keys) for ex, keys in
            self._consumed_as.get(artifact_id, {}).items()}

  def memo(self, key: str, compute: Callable[[], Any]) -> Any:
    """A question's answer, computed once per reader (e.g. every push)."""
    if key not in self._memo:
      self._memo[key] = compute()
    return self._memo[key]

  def _views(self, index: Dict[str, List[int]]) -> Dict[str, List[ArtifactView]]:
    self.prefetch_artifacts(i for ids in index.values() for i in ids)
    return {k: [self._artifacts[i] for i in ids if i in self._artifacts]
            for k, ids in index.items()}

  def inputs(self, execution_id: int) -> Dict[str, List[ArtifactView]]:
    self.prefetch_execution_events([execution_id])
    return self._views(self._inputs.get(execution_id, {}))

  def outputs(self, execution_id: int) -> Dict[str, List[ArtifactView]]:
    self.prefetch_execution_events([execution_id])
    return self._views(self._outputs.get(execution_id, {}))

  def first_input(self, execution_id: int, key: str) -> Optional[ArtifactView]:
    return (self.inputs(execution_id).get(key) or [None])[0]

  def first_output(self, execution_id: int,
                   key: str) -> Optional[ArtifactView]:
    return (self.outputs(execution_id).get(key) or [None])[0]

  def producer(self, artifact_id: int) -> Optional[NodeExecution]:
    if artifact_id not in self._producer:
      self.prefetch_artifact_events([artifact_id])
    ex = self._producer.get(artifact_id)
    return None if ex is None else self.execution(ex)

  def consumers(self, artifact_id: int) -> List[NodeExecution]:
    self.prefetch_artifact_events([artifact_id])
    ids = sorted(set(self._consumers.get(artifact_id, [])))
    self.prefetch_executions(ids)
    return [self._executions[i] for i in ids if i in self._executions]

  # --- artifacts ----------------------------------------------------------------

  def _artifact(self, a) -> ArtifactView:
    if a.id not in self._artifacts:
      self._artifacts[a.id] = ArtifactView(
          id=a.id, type_name=a.type or self._type_name("artifact", a.type_id),
          uri=self._moved(a.uri), create_ms=a.create_time_since_epoch,
          read_properties=lambda: self._moved_properties(properties_of(a)),
          read_one=lambda name: self._moved(property_of(a, name)))
    return self._artifacts[a.id]

  def prefetch_artifacts(self, ids: Iterable[int]) -> None:
    """Reads the artifacts `ids` not read yet, in one request."""
    missing = sorted({i for i in ids if i not in self._artifacts})
    if missing:
      for a in self.store.get_artifacts_by_id(missing):
        self._artifact(a)

  def artifact(self, artifact_id: int) -> Optional[ArtifactView]:
    self.prefetch_artifacts([artifact_id])
    return self._artifacts.get(artifact_id)

  def artifacts_of(self, type_name: str,
                   filter_query: str = "") -> List[ArtifactView]:
    """Artifacts of a type, oldest first; with `filter_query` (MLMD's
    syntax, e.g. "properties.span.int_value = 19700"), only those."""
    key = (type_name, filter_query)
    if key not in self._by_type:
      try:
        if filter_query:
          raw = self.store.get_artifacts(list_options=_list_options(
              filter_query=f"type = '{type_name}' AND ({filter_query})"))
        else:
          raw = self.store.get_artifacts_by_type(type_name)
      except Exception:  # pylint: disable=broad-except  (no such type yet)
        raw = []
      self._by_type[key] = sorted((self._artifact(a) for a in raw),
                                  key=lambda a: (a.create_ms, a.id))
    return list(self._by_type[key])

  def newest_artifacts_of(self, type_name: str, filter_query: str,
                          limit: int) -> List[ArtifactView]:
    """The newest `limit` artifacts of a type passing `filter_query` (at
    most a hundred: one request), oldest first."""
    try:
      raw = self.store.get_artifacts(list_options=_list_options(
          filter_query=f"type = '{type_name}' AND ({filter_query})",
          limit=limit, order_by=_order("ID"), is_asc=False))
    except Exception:  # pylint: disable=broad-except  (no such type yet)
      raw = []
    return sorted((self._artifact(a) for a in raw),
                  key=lambda a: (a.create_ms, a.id))

  # --- the whole store, for tools and tests ---------------------------------------

  @property
  def executions(self) -> Dict[int, NodeExecution]:
    """Every execution in the store (read whole the first time)."""
    if not self._all_executions:
      for node_id in self.node_contexts():
        self.executions_of(node_id)
      for ex in self.store.get_executions():
        view = self._execution(ex)
        if not view.node_known and ex.id not in self._run_of:
          view.node_id = ex.type or self._type_name("execution", ex.type_id)
      self._all_executions = True
    return self._executions

  @property
  def artifacts(self) -> Dict[int, ArtifactView]:
    """Every artifact in the store (read whole the first time)."""
    if not self._all_artifacts:
      for a in self.store.get_artifacts():
        self._artifact(a)
      self._all_artifacts = True
    return self._artifacts

  # --- a home that moved --------------------------------------------------------

  def _moved(self, value: Any) -> Any:
    old, new = self._moved_from, self._home_root
    if old and isinstance(value, str) and (value == old or value.startswith(
        old + "/")):
      return new + value[len(old):]
    return value

  def _moved_properties(self, props: Dict[str, Any]) -> Dict[str, Any]:
    if not self._moved_from:
      return props
    return {k: self._moved(v) for k, v in props.items()}


class _RunOf:
  """execution id -> the run id it belongs to, asked of ML Metadata the
  first time (a dict's `get`, `[]` and `in`)."""

  def __init__(self, snap: Snapshot):
    self._snap = snap

  def _known(self, execution_id: int) -> Optional[str]:
    snap = self._snap
    if execution_id not in snap._run_of:  # pylint: disable=protected-access
      snap.prefetch_run_ids([execution_id])
    return snap._run_of.get(execution_id)  # pylint: disable=protected-access

  def get(self, execution_id: int, default=None) -> Optional[str]:
    found = self._known(execution_id)
    return default if found is None else found

  def __getitem__(self, execution_id: int) -> str:
    found = self._known(execution_id)
    if found is None:
      raise KeyError(execution_id)
    return found

  def __contains__(self, execution_id: int) -> bool:
    return self._known(execution_id) is not None


def associations(store, ids: Sequence[int]) -> List[tuple]:
  """(execution id, context id) of every context executions `ids` belong
  to, a hundred executions a request (get_lineage_subgraph's limit)."""
  from ml_metadata.proto import metadata_store_pb2 as pb  # noqa: PLC0415
  found = []
  ids = list(ids)
  for i in range(0, len(ids), _CHUNK):
    chunk = ids[i:i + _CHUNK]
    graph = store.get_lineage_subgraph(
        pb.LineageSubgraphQueryOptions(
            starting_executions=pb.LineageSubgraphQueryOptions.StartingNodes(
                filter_query=f"id IN ({','.join(map(str, chunk))})"),
            max_num_hops=0),
        field_mask_paths=["associations"])
    found += [(a.execution_id, a.context_id) for a in graph.associations]
  return found


class RunStates:
  """The executions of one pipeline run as ML Metadata has them now.

  For a reader that watches a run while LocalDagRunner writes it (the
  console's progress lines): unlike a Snapshot, nothing read is kept but
  each execution's node, which never changes. A read asks for the run's
  context by name, its executions, and the contexts of the executions it
  has not seen before: a few rows, however many runs the store holds.
  """

  def __init__(self, store, run_id: str):
    self.store = store
    self.run_id = run_id
    self._context_id: Optional[int] = None
    self._node_type: Optional[int] = None
    self._node_of: Dict[int, Optional[str]] = {}   # execution id -> node id

  def read(self) -> Optional[Dict[str, NodeExecution]]:
    """{node id: its newest execution in the run}; None until the run's
    context exists (its first node has not started)."""
    if self._context_id is None:
      ctx = self.store.get_context_by_type_and_name(
          contract.PIPELINE_RUN_CONTEXT, self.run_id)
      if ctx is None:
        return None
      self._context_id = ctx.id
      self._node_type = self.store.get_context_type(contract.NODE_CONTEXT).id
    found: Dict[str, NodeExecution] = {}
    for ex in sorted(self.store.get_executions_by_context(self._context_id),
                     key=lambda e: e.id):
      if ex.id not in self._node_of:
        self._node_of[ex.id] = next(
            (c.name.split(".", 1)[-1] for c in
             self.store.get_contexts_by_execution(ex.id)
             if c.type_id == self._node_type), None)
      node_id = self._node_of[ex.id]
      if node_id is not None:
        found[node_id] = NodeExecution(
            node_id, ex.id, _STATES.get(ex.last_known_state, "UNKNOWN"),
            ex.create_time_since_epoch, ex.last_update_time_since_epoch)
    return found


def _order(name: str):
  import ml_metadata as mlmd  # noqa: PLC0415
  return getattr(mlmd.OrderByField, name)


def connect(path: os.PathLike, writable: bool = False):
  """An existing MLMD SQLite store, or one clear error.

  Read-only unless `writable` (the out-of-pipeline checks record results).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise TaxiDemandError(f"no metadata store at {path}; run the pipeline "
                          "first (python runner_local.py)")
  from ml_metadata import metadata_store  # noqa: PLC0415
  from ml_metadata.proto import metadata_store_pb2  # noqa: PLC0415
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
  """A reader of the store at `path` (nothing is read until asked).

  Paths are read relative to the home the store sits in (see `relocate`),
  so a home that was moved or restored from a backup answers from its own
  files.
  """
  snap = Snapshot(connect(path))
  relocate(snap, os.path.dirname(os.path.abspath(os.fspath(path))))
  return snap


# --- a home that moved -------------------------------------------------------


def recorded_pipeline_root(snap: Snapshot) -> Optional[str]:
  """The pipeline root the store's artifacts were written under.

  TFX writes each output to `<pipeline root>/<node id>/<output key>/<its
  execution id>`; the first artifact in that layout gives the root away.
  None if no artifact is (a store of checks alone, an empty one). Reads the
  oldest executions, a page at a time, until one says.
  """
  store = snap.store
  nodes = {ctx.id: ctx.name.split(".", 1)[-1]
           for ctx in store.get_contexts_by_type(contract.NODE_CONTEXT)}
  page = 0
  while True:
    # The first execution of a run (its schema import) usually tells.
    executions = store.get_executions(list_options=_list_options(
        limit=_PAGE, order_by=_order("ID"), is_asc=True,
        filter_query=f"id > {page}"))
    if not executions:
      return None
    found = _root_in(store, nodes, [e.id for e in executions])
    if found is not None:
      return found
    page = executions[-1].id


def _root_in(store, nodes: Dict[int, str],
             execution_ids: List[int]) -> Optional[str]:
  """The pipeline root the outputs of `execution_ids` name, if any does."""
  events = [e for e in store.get_events_by_execution_ids(execution_ids)
            if e.type in _OUTPUTS]
  if not events:
    return None
  node_of = {ex_id: nodes[ctx_id] for ex_id, ctx_id in
             associations(store, execution_ids) if ctx_id in nodes}
  uris = {a.id: a.uri for a in store.get_artifacts_by_id(
      sorted({e.artifact_id for e in events}))}
  for e in sorted(events, key=lambda e: e.execution_id):
    node_id = node_of.get(e.execution_id)
    uri = uris.get(e.artifact_id, "")
    tail = f"/{node_id}/{_key(e)}/{e.execution_id}"
    if node_id is not None and uri.endswith(tail):
      return uri[:-len(tail)]
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
  from taxi_demand.home import Home  # noqa: PLC0415
  recorded = recorded_pipeline_root(snap)
  if recorded is None:
    return None
  old_home, name = os.path.split(recorded.rstrip("/"))
  new_home = os.path.normpath(home_root)
  if (name != Home(Path(new_home)).pipeline_root.name
      or os.path.normpath(old_home) == new_home):
    return None
  # Views read before now were read unmapped: forget them.
  fresh = Snapshot(snap.store)
  snap.__dict__.update(fresh.__dict__)
  snap.run_of = _RunOf(snap)
  snap._moved_from, snap._home_root = old_home, new_home  # pylint: disable=protected-access
  return old_home
