"""The node table: every node of the daily graph, declared once.

Each node has an id, the execution type TFX records for it, its inputs (the
output of another node each), its outputs (key -> artifact type), the
platforms it runs on and its group. `pipeline/pipeline.py` attaches a
component factory to each id and assembles the local and the Vertex graph
from this table; the synthetic stores (`testing/synthetic.py`) write each
node's execution and events from it; the window ingest
(`pipeline/local_run.py`) runs the INGEST group. Standard library only, like
`contract`: the metadata commands read it without TFX or TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, FrozenSet, List, Mapping

from taxi_demand.lineage import contract as c
from taxi_demand.lineage import records

# Platforms, as pipeline.config.Platform's values.
LOCAL, VERTEX = "local", "vertex"
EVERYWHERE: FrozenSet[str] = frozenset({LOCAL, VERTEX})
LOCAL_ONLY: FrozenSet[str] = frozenset({LOCAL})
VERTEX_ONLY: FrozenSet[str] = frozenset({VERTEX})

# Groups. INGEST: a day's examples made and checked, what a day of a later
# window runs ("up to DataGate"). TRAIN: the window, the model, its
# judgement and push. MONITOR: checks that record, never block.
INGEST, TRAIN, MONITOR = "ingest", "train", "monitor"

# The gate: its report's `passed` property decides whether the gated nodes
# run (the pipeline's tfx.dsl.Cond); a refused day skips them, recorded.
GATE = c.DATA_GATE
GATE_OUTPUT = c.REPORT
GATE_PROPERTY = records.DataGateRecord.names().passed


@dataclasses.dataclass(frozen=True)
class Input:
  """An input channel: output `key` of node `producer`."""
  producer: str
  key: str


@dataclasses.dataclass(frozen=True)
class Node:
  """One node of the daily graph.

  Attributes:
    id: the node id: ML Metadata contexts, golden specs, --from-node.
    type: the execution type name TFX records for it on a local run.
    group: INGEST, TRAIN or MONITOR.
    inputs: input key -> the output it reads. An input whose producer does
      not run on the platform is left out there.
    outputs: output key -> artifact type name.
    platforms: where it runs.
    resolver: it resolves its inputs from earlier runs in ML Metadata
      (a tfx.dsl.Resolver): its inputs are not edges of this run's graph,
      and it records what it resolved under its output keys.
    gated: it runs only on a day the gate passed.
    base_type: the system base type of its execution type, as TFX
      registers it (ML Metadata's ExecutionType.SystemDefinedBaseType).
    on_vertex: the fields (of these) that differ on Vertex, which compiles
      only TFX's built-in resolvers: a node that resolves or reads a
      local-only node there reads otherwise (`for_platform`).
  """
  id: str
  type: str
  group: str
  inputs: Mapping[str, Input] = dataclasses.field(default_factory=dict)
  outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
  platforms: FrozenSet[str] = EVERYWHERE
  resolver: bool = False
  gated: bool = False
  base_type: str = "UNSET"
  on_vertex: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def for_platform(self, platform: str) -> "Node":
    """The node as it runs on `platform`."""
    if platform != VERTEX or not self.on_vertex:
      return self
    return dataclasses.replace(self, on_vertex={}, **self.on_vertex)

  def upstream(self) -> List[str]:
    """The nodes this one waits for in a run: producers and the gate."""
    ids = [] if self.resolver else [i.producer for i in self.inputs.values()]
    return ids + ([GATE] if self.gated else [])


def _in(producer: str, key: str) -> Input:
  return Input(producer, key)


_RESOLVER = "tfx.dsl.components.common.resolver.Resolver"
_SCHEMA = {c.SCHEMA: _in(c.CURATED_SCHEMA, c.SCHEMA)}
_DAY = {c.EXAMPLES: _in(c.EXAMPLE_GEN, c.EXAMPLES)}
_STATISTICS = {c.STATISTICS: _in(c.STATISTICS_GEN, c.STATISTICS)}
_CANDIDATE = {c.MODEL: _in(c.TRAINER, c.MODEL)}
_SERVING = {c.MODEL: _in(c.TRAINER, c.MODEL),
            c.MODEL_BLESSING: _in(c.FORECAST_GATE, c.BLESSING)}
_SERVING_TYPES = {c.MODEL: c.MODEL_TYPE, c.MODEL_BLESSING: c.MODEL_BLESSING_TYPE}
_BASELINE = {c.BASELINE_MODEL: _in(c.LATEST_BLESSED_MODEL, c.MODEL)}
_TO_PUSH = {c.MODEL: _in(c.TRAINER, c.MODEL),
            c.MODEL_BLESSING: _in(c.FORECAST_GATE, c.BLESSING)}

# In the order create_pipeline has always listed them; a run's order is
# run_order's.
TABLE: List[Node] = [
    Node(c.EXAMPLE_GEN, "pipeline.components.duckdb_example_gen.component."
         "DuckDBExampleGen", INGEST, outputs={c.EXAMPLES: c.EXAMPLES_TYPE},
         base_type="PROCESS"),
    Node(c.STATISTICS_GEN, "tfx.components.statistics_gen.component."
         "StatisticsGen", INGEST, inputs={**_DAY, **_SCHEMA},
         outputs={c.STATISTICS: "ExampleStatistics"}, base_type="PROCESS"),
    # Inferred, kept for comparison with the curated schema: not ingest.
    Node(c.SCHEMA_GEN, "tfx.components.schema_gen.component.SchemaGen",
         MONITOR, inputs=_STATISTICS, outputs={c.SCHEMA: "Schema"},
         base_type="PROCESS"),
    Node(c.CURATED_SCHEMA, "tfx.components.schema_gen.import_schema_gen."
         "component.ImportSchemaGen", INGEST, outputs={c.SCHEMA: "Schema"}),
    Node(c.EXAMPLE_VALIDATOR, "tfx.components.example_validator.component."
         "ExampleValidator", INGEST, inputs={**_STATISTICS, **_SCHEMA},
         outputs={c.ANOMALIES: "ExampleAnomalies"}),
    # Vertex compiles only TFX's built-in resolver strategies.
    Node(c.PREVIOUS_STATISTICS, _RESOLVER, INGEST, inputs=_STATISTICS,
         outputs={c.STATISTICS: "ExampleStatistics"}, platforms=LOCAL_ONLY,
         resolver=True),
    Node(c.DATA_GATE, "pipeline.components.data_gate.DataGate", INGEST,
         inputs={**_STATISTICS, **_SCHEMA,
                 c.ANOMALIES: _in(c.EXAMPLE_VALIDATOR, c.ANOMALIES),
                 "previous_statistics": _in(c.PREVIOUS_STATISTICS,
                                            c.STATISTICS)},
         outputs={c.REPORT: "ExampleAnomalies"}),
    # On Vertex a second ExampleGen reads the window's days again, the days
    # DataGate passed (the day verdicts). It runs after the gate: on a new
    # pipeline root no verdict exists before DataGate writes the first.
    Node(c.TRAINING_WINDOW, _RESOLVER, TRAIN, inputs=_DAY,
         outputs={c.EXAMPLES: c.EXAMPLES_TYPE}, resolver=True,
         on_vertex={"resolver": False, "inputs": {}, "gated": True}),
    Node(c.LATEST_ANALYZER_CACHE, _RESOLVER, TRAIN,
         inputs={"cache": _in(c.TRANSFORM, c.UPDATED_ANALYZER_CACHE)},
         outputs={"cache": "TransformCache"}, platforms=LOCAL_ONLY,
         resolver=True),
    Node(c.TRANSFORM, "tfx.components.transform.component.Transform", TRAIN,
         inputs={c.EXAMPLES: _in(c.TRAINING_WINDOW, c.EXAMPLES), **_SCHEMA,
                 c.ANALYZER_CACHE: _in(c.LATEST_ANALYZER_CACHE, "cache")},
         outputs={c.TRANSFORM_GRAPH: "TransformGraph",
                  c.UPDATED_ANALYZER_CACHE: "TransformCache"},
         gated=True, base_type="TRANSFORM"),
    Node(c.LATEST_BLESSED_MODEL, _RESOLVER, TRAIN, inputs=_SERVING,
         outputs=_SERVING_TYPES, resolver=True),
    Node(c.TRAINER, "tfx.components.trainer.component.Trainer", TRAIN,
         inputs={c.EXAMPLES: _in(c.TRAINING_WINDOW, c.EXAMPLES),
                 c.TRANSFORM_GRAPH: _in(c.TRANSFORM, c.TRANSFORM_GRAPH),
                 **_SCHEMA,
                 c.BASE_MODEL: _in(c.LATEST_BLESSED_MODEL, c.MODEL)},
         outputs={c.MODEL: c.MODEL_TYPE, "model_run": "ModelRun"},
         gated=True, base_type="TRAIN"),
    Node(c.EVALUATOR, "tfx.components.evaluator.component.Evaluator", TRAIN,
         inputs={**_DAY, **_CANDIDATE, **_BASELINE},
         outputs={c.EVALUATION: "ModelEvaluation",
                  c.BLESSING: "ModelBlessing"},
         gated=True, base_type="EVALUATE"),
    # Needs the warehouse: local runs only.
    Node(c.GUIDANCE_GATE, "pipeline.components.guidance_gate.GuidanceGate",
         TRAIN, inputs={**_CANDIDATE, **_DAY, **_BASELINE},
         outputs={c.RESULT: c.GUIDANCE_RESULT}, platforms=LOCAL_ONLY,
         gated=True),
    Node(c.FORECAST_GATE, "pipeline.components.forecast_gate.ForecastGate",
         TRAIN, inputs={**_CANDIDATE, **_DAY,
                        c.EVALUATION: _in(c.EVALUATOR, c.EVALUATION),
                        c.EVALUATOR_BLESSING: _in(c.EVALUATOR, c.BLESSING),
                        c.GUIDANCE: _in(c.GUIDANCE_GATE, c.RESULT)},
         outputs={c.BLESSING: "ModelBlessing"}, gated=True),
    Node(c.PUSHER, "tfx.components.pusher.component.Pusher", TRAIN,
         inputs=_TO_PUSH, outputs={c.PUSHED_MODEL: c.PUSHED_MODEL_TYPE},
         gated=True, base_type="DEPLOY"),
    Node(c.NEXT_DAY_VALIDATOR,
         "pipeline.components.next_day.NextDayValidator", MONITOR,
         inputs={**_DAY,
                 c.MODEL: _in(c.LATEST_BLESSED_MODEL, c.MODEL),
                 c.MODEL_BLESSING: _in(c.LATEST_BLESSED_MODEL,
                                       c.MODEL_BLESSING)},
         outputs={c.RESULT: c.NEXT_DAY_RESULT}, gated=True),
    # Its lineage-walking resolver is a custom strategy: local only.
    Node(c.SERVING_MODEL_TRAINING, _RESOLVER, MONITOR,
         inputs={**_SERVING, **_STATISTICS, **_SCHEMA},
         outputs={**_SERVING_TYPES, c.STATISTICS: "ExampleStatistics",
                  c.SCHEMA: "Schema"},
         platforms=LOCAL_ONLY, resolver=True),
    Node(c.SKEW_VALIDATOR, "pipeline.components.skew_validator.SkewValidator",
         MONITOR,
         inputs={c.STATISTICS: _in(c.SERVING_MODEL_TRAINING, c.STATISTICS),
                 c.SCHEMA: _in(c.SERVING_MODEL_TRAINING, c.SCHEMA)},
         outputs={c.REPORT: c.SKEW_REPORT},
         # On Vertex the executor finds the serving version's training
         # statistics itself (registry and day verdicts), and the day from
         # the run's examples: a scheduled run's day is known only there.
         on_vertex={"inputs": {**_DAY, **_SCHEMA}}),
    # Vertex with an endpoint only: deploys blessed models there too.
    Node(c.ENDPOINT_PUSHER, "tfx.extensions.google_cloud_ai_platform.pusher."
         "component.Pusher", TRAIN, inputs=_TO_PUSH,
         outputs={c.PUSHED_MODEL: c.PUSHED_MODEL_TYPE},
         platforms=VERTEX_ONLY, gated=True, base_type="DEPLOY"),
]


def on(platform: str) -> List[Node]:
  """The nodes that run on `platform`, as they run there, in table order."""
  return [n.for_platform(platform) for n in TABLE if platform in n.platforms]


def run_order(platform: str = LOCAL) -> List[Node]:
  """The nodes of `platform` in the order TFX runs them.

  TFX sorts a pipeline's nodes into layers (a node after everything it
  waits for) and each layer by id (tfx.utils.topsort), and LocalDagRunner
  runs them in that order.
  """
  nodes = on(platform)
  present = {n.id for n in nodes}
  waits: Dict[str, set] = {
      n.id: {u for u in n.upstream() if u in present} for n in nodes}
  done: set = set()
  ordered: List[Node] = []
  while len(done) < len(nodes):
    layer = sorted((n for n in nodes if n.id not in done
                    and waits[n.id] <= done), key=lambda n: n.id)
    if not layer:
      raise ValueError(f"the node table has a cycle among "
                       f"{sorted(present - done)}")
    ordered += layer
    done |= {n.id for n in layer}
  return ordered


def ingest_ends(platform: str = LOCAL) -> List[str]:
  """The INGEST nodes no other INGEST node reads: a run "up to" them
  (RunOptions.to_nodes) runs the INGEST group, since each INGEST node
  feeds one of them."""
  ingest = [n for n in on(platform) if n.group == INGEST]
  read = {u for n in ingest for u in n.upstream()}
  return [n.id for n in ingest if n.id not in read]
