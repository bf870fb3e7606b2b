"""Synthetic ML Metadata stores laid out as TFX's LocalDagRunner writes them.

The benches and the tests need stores of many daily runs without running the
pipeline. `build(home, runs)` writes, with ml_metadata only (no TensorFlow,
no TFX), what each run of `pipeline/pipeline.py` leaves: the `pipeline`,
`pipeline_run` and `node` ("<pipeline>.<node id>") contexts, one execution
per node with TFX's execution type names and exec properties, the input,
output and (for resolvers) internal-output events under TFX's keys, and the
artifacts with the properties the pipeline's components set, at URIs
`<pipeline root>/<node id>/<key>/<execution id>`. A pushed version gets a
folder under `home/models/` and CURRENT names the newest. The nodes, their
order and each one's input and output keys come from the node table
(`lineage/nodes.py`); the values a node records, from its function in
RECORDS (a node without one records its outputs without properties).

By default the artifacts are records only. A test that reads files through
the store can point a run at real ones: `model_dir` (a SavedModel, which
becomes the Trainer's `Format-Serving`, the Pusher's archive and the
registry's version folders), and per span an ExampleGen output
(`Split-day/`) and StatisticsGen output, which are copied
(or linked) into the artifacts' folders. A run's window is the days of the
runs before it (their ExampleGen outputs), as TrainingWindow resolves it. What a real run records and this
writer does not: TFX's execution_cache contexts, tfx_version and
is_external, and the exec properties nobody reads back (input_config,
eval_config, ...); tests/test_pipeline_e2e.py checks that everything written
here matches a real run's store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from taxi_demand import spans
from taxi_demand.lineage import contract as c
from taxi_demand.lineage import nodes
from taxi_demand.lineage import records
from taxi_demand.serving import registry

FIRST_SPAN = 19700                      # 2023-12-09
CELLS, SLOTS_PER_DAY = 77, 48           # community areas x 30-minute slots
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "pipeline" / "schema" / (
    "schema.pbtxt")
SPLITS = f'["{c.DAY_SPLIT}"]'

# --- what TFX registers ---------------------------------------------------------

# node id -> (execution type name, system base type), as TFX 1.16 names them:
# the node table's local nodes.
EXECUTION_TYPES: Dict[str, tuple] = {
    n.id: (n.type, pb.ExecutionType.SystemDefinedBaseType.Value(n.base_type))
    for n in nodes.on(nodes.LOCAL)}

_INT, _STRING = pb.PropertyType.INT, pb.PropertyType.STRING
# artifact type -> (declared properties, system base type), as TFX declares.
ARTIFACT_TYPES: Dict[str, tuple] = {
    "Examples": ({c.SPAN: _INT, c.SPLIT_NAMES: _STRING, "version": _INT},
                 pb.ArtifactType.DATASET),
    "ExampleStatistics": ({c.SPAN: _INT, c.SPLIT_NAMES: _STRING},
                          pb.ArtifactType.STATISTICS),
    "ExampleAnomalies": ({c.SPAN: _INT, c.SPLIT_NAMES: _STRING},
                         pb.ArtifactType.UNSET),
    "Model": ({}, pb.ArtifactType.MODEL),
    "PushedModel": ({}, pb.ArtifactType.MODEL),
}

COMPLETE, CACHED, FAILED = (pb.Execution.COMPLETE, pb.Execution.CACHED,
                            pb.Execution.FAILED)

# The nodes inside the pipeline's `tfx.dsl.Cond` on DataGate's verdict (the
# table's gated ones): TFX gives each the gate's report as an extra input
# under this key.
COND_INPUT = f"_{nodes.GATE}.{nodes.GATE_OUTPUT}"


def _fill(target, props: Mapping[str, Any]) -> None:
  records.write_values(target, props)  # the one writer, as the pipeline's


class Writer:
  """put_* helpers that write what TFX's LocalDagRunner writes."""

  def __init__(self, path: os.PathLike,
               pipeline_root: Optional[os.PathLike] = None,
               pipeline_name: str = c.PIPELINE_NAME):
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    self.store = metadata_store.MetadataStore(config)
    self.pipeline_root = None if pipeline_root is None else str(pipeline_root)
    self.pipeline_name = pipeline_name
    self._types: Dict[tuple, int] = {}
    self._contexts: Dict[tuple, pb.Context] = {}
    # SQLite hands out execution ids in sequence: the next one names the
    # new outputs' folders, so each execution is one write (checked below).
    self._next_id = 1 + max((e.id for e in self.store.get_executions()),
                            default=0)

  def _type(self, kind: str, name: str) -> int:
    if (kind, name) not in self._types:
      if kind == "artifact":
        declared, base = ARTIFACT_TYPES.get(name, ({}, pb.ArtifactType.UNSET))
        proto = pb.ArtifactType(name=name)
        if base != pb.ArtifactType.UNSET:  # an explicit UNSET fails
          proto.base_type = base
        for key, kind_ in declared.items():
          proto.properties[key] = kind_
        type_id = self.store.put_artifact_type(proto)
      elif kind == "execution":
        base = next((pb.ExecutionType.SystemDefinedBaseType.Value(
            n.base_type) for n in nodes.TABLE if n.type == name),
                    pb.ExecutionType.UNSET)
        proto = pb.ExecutionType(name=name)
        if base != pb.ExecutionType.UNSET:
          proto.base_type = base
        type_id = self.store.put_execution_type(proto)
      else:
        type_id = self.store.put_context_type(pb.ContextType(name=name))
      self._types[(kind, name)] = type_id
    return self._types[(kind, name)]

  def context(self, type_name: str, name: str) -> pb.Context:
    key = (type_name, name)
    if key not in self._contexts:
      # A store written before (a Writer appending runs) has it already.
      ctx = self.store.get_context_by_type_and_name(type_name, name)
      if ctx is None:
        ctx = pb.Context(type_id=self._type("context", type_name), name=name)
        ctx.id = self.store.put_contexts([ctx])[0]
      self._contexts[key] = ctx
    return self._contexts[key]

  def artifact(self, type_name: str, uri: Optional[str] = None,
               custom: Optional[Mapping[str, Any]] = None,
               **props) -> pb.Artifact:
    """A new artifact; `props` the type declares go to its properties.

    Without a `uri`, `execute` gives it TFX's
    `<pipeline root>/<node id>/<output key>/<execution id>`.
    """
    art = pb.Artifact(type_id=self._type("artifact", type_name),
                      uri=uri or "", state=pb.Artifact.LIVE)
    declared = ARTIFACT_TYPES.get(type_name, ({}, None))[0]
    _fill(art.properties, {k: v for k, v in props.items() if k in declared})
    _fill(art.custom_properties,
          {k: v for k, v in props.items() if k not in declared})
    _fill(art.custom_properties, custom or {})
    return art

  def execute(self, run_id: str, node: str, state: int = COMPLETE,
              props: Optional[Mapping[str, Any]] = None,
              inputs: Optional[Mapping[str, Sequence[pb.Artifact]]] = None,
              outputs: Optional[Mapping[str, Sequence[pb.Artifact]]] = None,
              internal_outputs: Optional[
                  Mapping[str, Sequence[pb.Artifact]]] = None,
              type_name: Optional[str] = None
              ) -> Dict[str, List[pb.Artifact]]:
    """One node execution in run `run_id`; returns its outputs, with ids.

    New outputs without a URI get TFX's, named after the execution id.
    Artifacts that already have an id (a cached output, every input) are
    linked, not copied.
    """
    ex = pb.Execution(
        type_id=self._type("execution", type_name or EXECUTION_TYPES.get(
            node, (f"tfx.{node}",))[0]),
        last_known_state=state, name=str(uuid.uuid4()))
    _fill(ex.custom_properties, props or {})
    expected = self._next_id
    new_artifacts: List[pb.Artifact] = []
    edges: List[Tuple[int, Optional[int], Any]] = []
    for kind, arts in ((pb.Event.INPUT, inputs or {}),
                       (pb.Event.OUTPUT, outputs or {}),
                       (pb.Event.INTERNAL_OUTPUT, internal_outputs or {})):
      for key, items in arts.items():
        for i, art in enumerate(items):
          event = pb.Event(type=kind)
          event.path.steps.add(key=key)
          event.path.steps.add(index=i)
          if art.id:  # linked as it is, not written again
            event.artifact_id = art.id
            edges.append((0, None, event))  # linked, not new
            continue
          if not art.uri:
            if self.pipeline_root is None:
              raise ValueError(f"{node}.{key}: no URI and no pipeline root")
            art.uri = self._uri(node, key, expected)
          edges.append((0, len(new_artifacts), event))
          new_artifacts.append(art)
    contexts = [self.context(c.PIPELINE_CONTEXT, self.pipeline_name),
                self.context(c.PIPELINE_RUN_CONTEXT, run_id),
                self.context(c.NODE_CONTEXT, f"{self.pipeline_name}.{node}")]
    [ex_id], ids, _ = self.store.put_lineage_subgraph(
        [ex], new_artifacts, contexts, edges)
    for art, new_id in zip(new_artifacts, ids):
      art.id = new_id
    self._next_id = ex_id + 1
    if ex_id != expected:  # another writer got there first: rename
      renamed = [a for a in new_artifacts
                 if a.uri.endswith(f"/{expected}") and self.pipeline_root
                 and a.uri.startswith(self.pipeline_root)]
      for art in renamed:
        art.uri = art.uri[:-len(str(expected))] + str(ex_id)
      if renamed:
        self.store.put_artifacts(renamed)
    return {k: list(v) for k, v in (outputs or {}).items()}

  def _uri(self, node: str, key: str, execution_id: int) -> str:
    return f"{self.pipeline_root}/{node}/{key}/{execution_id}"


# --- one daily run --------------------------------------------------------------


@dataclasses.dataclass
class RunSpec:
  """What one synthetic daily run recorded.

  Attributes:
    span: the run's day (ExampleGen's one split, the eval day).
    params: the Trainer's custom_config (span defaults to `span`).
    run_id: the pipeline_run context's name (default: the day, 06:00).
    blessed: ForecastGate's verdict; a blessed model is pushed.
    metrics: ForecastGate's figures on the eval day (model_mae, ...).
    next_day: NextDayValidator's figures for the model serving on `span`
      (mae, rmse, seasonal_naive_mae, ..., alert, reason); None records
      an unscored result. Ignored on a run with no serving model.
    version: the pushed version's name (default: 1700000000 + run index).
    examples_dir, statistics_dir: a real ExampleGen / StatisticsGen output
      of this span to copy into the artifacts' folders.
    model_dir: a real SavedModel for this run's Model (default: build's).
    eval_examples, anomaly_count: DataGate's report on the day (default:
      every cell and slot, no anomalies).
    reasons: ForecastGate's reasons for an unblessed model.
    anomaly_lines: DataGate's lines for the day's anomalies (its JSON
      summary); default one line per anomaly.
    drift: {feature: distance} against the previous day, written as TFDV's
      drift_skew_info in DataGate's report with the curated schema's
      thresholds (a feature over its threshold is a drift anomaly line).
    skew: {feature: distance} of the day's served rows, written as a
      SkewValidator report (alert if any is over its threshold).
    killed_in: a node id: the run's process died inside it (kill -9). The
      node is left RUNNING with its outputs PENDING and the nodes after it
      are not written; later runs of the store resolve nothing from it.
  """
  span: int
  params: Optional[c.RunParameters] = None
  run_id: Optional[str] = None
  blessed: bool = True
  metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
  next_day: Optional[Mapping[str, Any]] = None
  version: Optional[str] = None
  examples_dir: Optional[str] = None
  statistics_dir: Optional[str] = None
  model_dir: Optional[str] = None
  eval_examples: Optional[int] = None
  anomaly_count: int = 0
  reasons: Optional[str] = None
  anomaly_lines: Optional[Sequence[str]] = None
  drift: Optional[Mapping[str, float]] = None
  skew: Optional[Mapping[str, float]] = None
  killed_in: Optional[str] = None

  def parameters(self) -> c.RunParameters:
    params = self.params or c.RunParameters(
        train_days=28, train_steps=2000, naive_margin=0.1,
        change_tolerance=0.0, cell_margin=0.25, code_version="0.1.0")
    return dataclasses.replace(params, span=self.span)


@dataclasses.dataclass
class RunRecord:
  """The artifacts one run wrote that later runs and tests refer to."""
  spec: RunSpec
  run_id: str
  examples: pb.Artifact
  statistics: pb.Artifact
  model: Optional[pb.Artifact]          # None: DataGate refused the day
  blessing: Optional[pb.Artifact]
  pushed_model: Optional[pb.Artifact]
  version: Optional[str]
  cache: Optional[pb.Artifact] = None   # Transform's updated analyzer cache


def materialize(src: Optional[Union[str, os.PathLike]], dst: str,
                link: bool) -> None:
  """Puts a copy of (or a link to) `src` at `dst`; nothing if no src."""
  if src is None:
    return
  dst_path = Path(dst)
  dst_path.parent.mkdir(parents=True, exist_ok=True)
  if link:
    dst_path.symlink_to(Path(src).resolve(), target_is_directory=True)
  else:
    shutil.copytree(src, dst_path)


def _write_json(folder: str, name: str, content: Mapping[str, Any]) -> None:
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, name), "w") as f:
    json.dump(content, f, indent=2, sort_keys=True)


def _comparators(kind: str) -> Dict[str, tuple]:
  """{feature: (measure, threshold)} of the curated schema's `kind`
  ("drift" or "skew") comparators."""
  from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: PLC0415
  from google.protobuf import text_format  # noqa: PLC0415
  schema = text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())
  out = {}
  for feature in schema.feature:
    comparator = getattr(feature, f"{kind}_comparator")
    if comparator.HasField("infinity_norm"):
      out[feature.name] = ("L_INFTY", comparator.infinity_norm.threshold)
    elif comparator.HasField("jensen_shannon_divergence"):
      out[feature.name] = ("JENSEN_SHANNON_DIVERGENCE",
                           comparator.jensen_shannon_divergence.threshold)
  return out


def _write_gate_report(uri: str, spec: RunSpec, previous_span: Optional[int],
                       eval_examples: int) -> None:
  """DataGate's files: its JSON summary and, with `spec.drift`, the drift
  anomalies as TFDV writes them (drift_skew_info per compared feature)."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # noqa: PLC0415
  lines = (list(spec.anomaly_lines) if spec.anomaly_lines is not None else
           [f"[day] schema: synthetic anomaly {i + 1}"
            for i in range(spec.anomaly_count)])
  drift_lines = []
  if spec.drift and previous_span is not None:
    anomalies = anomalies_pb2.Anomalies()
    thresholds = _comparators("drift")
    for name, distance in sorted(spec.drift.items()):
      measure, threshold = thresholds.get(name, ("L_INFTY", 0.05))
      info = anomalies.drift_skew_info.add()
      info.path.step.append(name)
      m = info.drift_measurements.add()
      m.type = anomalies_pb2.DriftSkewInfo.Measurement.Type.Value(measure)
      m.value, m.threshold = float(distance), float(threshold)
      if distance > threshold:
        anomalies.anomaly_info[name].description = (
            f"drift {distance:.3f} above {threshold:g}")
        drift_lines.append(f"[drift vs {spans.date_of(previous_span)}] {name}: "
                           f"drift {distance:.3f} above {threshold:g}")
    folder = os.path.join(uri, c.SPLIT_FOLDER.format(split=c.DAY_SPLIT))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, c.ANOMALIES_FILE), "wb") as f:
      f.write(anomalies.SerializeToString())
  _write_json(uri, c.DATA_GATE_FILE, {
      "span": spec.span, "schema_anomalies": len(lines),
      "eval_examples": eval_examples,
      "drift_checked": previous_span is not None,
      "previous_span": previous_span, "drift_anomalies": len(drift_lines),
      "lines": lines + drift_lines, "passed": spec.anomaly_count == 0})


def _skew_report(skew: Optional[Mapping[str, float]]
                 ) -> Optional[Dict[str, Any]]:
  """A SkewValidator report's JSON body for {feature: distance}."""
  if skew is None:
    return None
  thresholds = _comparators("skew")
  feats = {}
  for name, distance in sorted(skew.items()):
    measure, threshold = thresholds.get(name, ("L_INFTY", 0.05))
    feats[name] = {"distance": float(distance), "threshold": float(threshold),
                   "flagged": distance > threshold,
                   "comparator": measure.lower()}
  flagged = sorted(n for n, f in feats.items() if f["flagged"])
  return {"checked": True, "alert": bool(flagged), "flagged": flagged,
          "features": feats}


class Killed(Exception):
  """write_run's run died in the node named (RunSpec.killed_in)."""


@dataclasses.dataclass
class Record:
  """What one node's execution records, besides what the table says.

  Attributes:
    props: the execution's exec properties.
    outputs: output key -> the artifacts written (for a resolver: what it
      resolved). A non-resolver's output left out gets an artifact of the
      table's type, without properties.
    state: the execution's state.
    then: given the written outputs, writes the files inside them.
  """
  props: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  outputs: Mapping[str, List[pb.Artifact]] = dataclasses.field(
      default_factory=dict)
  state: int = COMPLETE
  then: Optional[Callable[[Dict[str, List[pb.Artifact]]], None]] = None


@dataclasses.dataclass
class Run:
  """One daily run being written: what its nodes' records read.

  `base` is the newest blessed run before this one (what LatestBlessedModel
  and ServingModelTraining resolve: the model serving on `spec.span`),
  `previous` the run of the previous span (PreviousSpanStatistics),
  `window` the earlier days' examples it trains on (TrainingWindow) and
  `cache` the previous run's analyzer cache (what LatestAnalyzerCache
  resolves on consecutive days: it holds the most of the window). `out`
  holds, per node id, the outputs (or a resolver's results) written so far.
  """
  w: Writer
  spec: RunSpec
  home: Path
  schema: pb.Artifact
  first: bool
  base: Optional[RunRecord]
  previous: Optional[RunRecord]
  version: str
  window: Sequence[pb.Artifact]
  cache: Optional[pb.Artifact]
  model_dir: Optional[str]
  link: bool
  keep: int
  out: Dict[str, Dict[str, List[pb.Artifact]]] = dataclasses.field(
      default_factory=dict)

  @property
  def span(self) -> int:
    return self.spec.span

  @property
  def params(self) -> c.RunParameters:
    return self.spec.parameters()

  @property
  def date(self) -> str:
    return spans.day_of(self.spec.span).isoformat()

  @property
  def run_id(self) -> str:
    return self.spec.run_id or f"{self.date}T06:00:00"

  def output(self, node_id: str, key: str) -> Optional[pb.Artifact]:
    """The first artifact node `node_id` wrote under `key`, or None."""
    return next(iter(self.out.get(node_id, {}).get(key, [])), None)

  def serving(self) -> Dict[str, List[pb.Artifact]]:
    """The serving model and its blessing, as the resolvers find them."""
    if self.base is None:
      return {}
    return {c.MODEL: [self.base.model], c.MODEL_BLESSING: [self.base.blessing]}

  def serving_statistics(self) -> Dict[str, List[pb.Artifact]]:
    """The serving model's training statistics and schema."""
    if self.base is None:
      return {}
    return {c.STATISTICS: [self.base.statistics], c.SCHEMA: [self.schema]}


# --- what each node records: one function per node, keyed by node id ---------
# A node of the table without one records its outputs without properties.


def _curated_schema(r: Run) -> Record:
  return Record(state=COMPLETE if r.first else CACHED,
                props={"schema_file": str(SCHEMA_FILE)},
                outputs={c.SCHEMA: [r.schema]})


def _example_gen(r: Run) -> Record:
  w, span, home = r.w, r.span, r.home
  return Record(props={
      c.SPAN: span, c.WAREHOUSE_PATH: str(home / "warehouse.duckdb"),
      "output_data_format": 6, "output_file_format": 5},
                outputs={c.EXAMPLES: [w.artifact(
                    "Examples", span=span, split_names=SPLITS,
                    custom={c.SPAN: span, **records.IngestFingerprint(
                        f"synthetic:{span}").properties()})]},
                then=lambda out: materialize(
                    r.spec.examples_dir, out[c.EXAMPLES][0].uri, r.link))


def _latest_blessed_model(r: Run) -> Record:
  return Record(outputs=r.serving())


def _previous_statistics(r: Run) -> Record:
  previous = r.previous
  return Record(outputs=(
      {c.STATISTICS: [previous.statistics]} if previous else {}))


def _serving_model_training(r: Run) -> Record:
  return Record(outputs={**r.serving(), **r.serving_statistics()})


def _skew_validator(r: Run) -> Record:
  w, span, date, home = r.w, r.span, r.date, r.home
  skew = _skew_report(r.spec.skew)

  def files(out):
    if skew is not None:
      _write_json(out[c.REPORT][0].uri, c.SKEW_REPORT_FILE,
                  {"date": date, **skew})
  return Record(props={
      "date": date, "serving_log_dir": str(home / "serving_log"),
      "fail_on_skew": 0}, outputs={
          c.REPORT: [w.artifact(c.SKEW_REPORT, custom=records.SkewRecord(
              span=span, date=date, checked=skew is not None,
              alert=bool(skew and skew["alert"])).properties())]},
                then=files)


def _statistics_gen(r: Run) -> Record:
  w, span = r.w, r.span
  return Record({"exclude_splits": "[]"},
                {c.STATISTICS: [w.artifact("ExampleStatistics", span=span,
                                           split_names=SPLITS)]},
                then=lambda out: materialize(
                    r.spec.statistics_dir, out[c.STATISTICS][0].uri, r.link))


def _example_validator(r: Run) -> Record:
  w, span = r.w, r.span
  return Record({"exclude_splits": "[]"},
                {c.ANOMALIES: [w.artifact(
                    "ExampleAnomalies", span=span, split_names=SPLITS,
                    custom=records.BlessingRecord(
                        blessed=True).properties())]})


def _schema_gen(r: Run) -> Record:
  del r
  return Record({"exclude_splits": "[]", "infer_feature_shape": 1})


def _data_gate(r: Run) -> Record:
  w, span, spec, previous = r.w, r.span, r.spec, r.previous
  cells_slots = CELLS * SLOTS_PER_DAY
  report = w.artifact(
      "ExampleAnomalies", span=span, split_names=SPLITS,
      custom=records.DataGateRecord(
          anomaly_count=spec.anomaly_count,
          drift_checked=previous is not None,
          passed=spec.anomaly_count == 0,
          eval_examples=(spec.eval_examples if spec.eval_examples is not None
                         else cells_slots)).properties())
  return Record(outputs={c.REPORT: [report]}, then=lambda out: (
      _write_gate_report(out[c.REPORT][0].uri, spec,
                         previous.spec.span if previous else None,
                         records.DataGateRecord.read(report).eval_examples)))


def _next_day_validator(r: Run) -> Record:
  w, span, date, base, spec = r.w, r.span, r.date, r.base, r.spec
  result = {c.SPAN: span, "date": date, "source": "pipeline"}
  if base is None:
    result.update(alert=0, reason="no model was serving before this day")
  elif spec.next_day is None:
    result.update(alert=0, reason="synthetic: not scored",
                  model_id=base.model.id)
  else:
    result.update({**spec.next_day, "model_id": base.model.id})
    result["eval_mae"] = records.ForecastGateRecord.read(
        base.blessing).model_mae
    result["alert"] = int(bool(result.get("alert")))
  return Record(outputs={c.RESULT: [w.artifact(
      c.NEXT_DAY_RESULT,
      custom=records.NextDayRecord.read(result).properties())]})


def _training_window(r: Run) -> Record:
  return Record(outputs={c.EXAMPLES: list(r.window)})


def _latest_analyzer_cache(r: Run) -> Record:
  cache = r.cache
  return Record(outputs={"cache": [cache]} if cache is not None else {})


def _transform(r: Run) -> Record:
  del r
  return Record({
      "preprocessing_fn": "taxi_demand.modeling.preprocessing.preprocessing_fn",
      "custom_config": "null", "force_tf_compat_v1": 0,
      "disable_statistics": 1,
      "splits_config": json.dumps({"analyze": [c.DAY_SPLIT]})})


def _trainer(r: Run) -> Record:
  params = r.params
  return Record({
      c.CUSTOM_CONFIG: json.dumps(params.to_custom_config(), sort_keys=True),
      "run_fn": "taxi_demand.modeling.trainer.run_fn",
      "train_args": json.dumps({"num_steps": params.train_steps,
                                "splits": [c.DAY_SPLIT]}),
      "eval_args": json.dumps({"num_steps": 20, "splits": [c.DAY_SPLIT]})},
                then=lambda out: materialize(
                    r.model_dir, os.path.join(out[c.MODEL][0].uri,
                                              "Format-Serving"), r.link))



def _judged(r: Run) -> records.ForecastGateRecord:
  """The blessing's fields naming the model it judged."""
  model = r.output(c.TRAINER, c.MODEL)
  return records.ForecastGateRecord(current_model=model.uri,
                                    current_model_id=model.id)


def _evaluator(r: Run) -> Record:
  w, spec, base = r.w, r.spec, r.base
  judged = dataclasses.replace(_judged(r), blessed=spec.blessed)
  # TFX's Evaluator writes the verdict and the model judged, none of
  # ForecastGate's own fields (an empty `unmeasured` included).
  named = records.ForecastGateRecord.names()
  evaluator_fields = {*records.BlessingRecord.property_names(),
                      named.current_model, named.current_model_id}
  evaluator_blessing = w.artifact("ModelBlessing", custom={
      k: v for k, v in judged.properties().items() if k in evaluator_fields})
  if base is not None:
    _fill(evaluator_blessing.custom_properties, {
        "baseline_model": base.model.uri, "baseline_model_id": base.model.id})
  return Record({"example_splits": json.dumps([c.DAY_SPLIT])},
                {c.BLESSING: [evaluator_blessing]})


def _guidance_gate(r: Run) -> Record:
  w, span, home, params = r.w, r.span, r.home, r.params
  return Record({
      "warehouse_path": str(home / "warehouse.duckdb"),
      "query_config": json.dumps(params.to_custom_config(), sort_keys=True)},
                {c.RESULT: [w.artifact(
                    c.GUIDANCE_RESULT, custom=records.GuidanceRecord(
                        span=span, passed=True, reason="",
                        margin=0.02).properties())]})


def _forecast_gate(r: Run) -> Record:
  w, span, spec, base, params = r.w, r.span, r.spec, r.base, r.params
  judged = _judged(r)
  figures = dict(spec.metrics)
  if base is not None and spec.next_day and "mae" in spec.next_day:
    figures.setdefault("baseline_model_mae", float(spec.next_day["mae"]))
  return Record({
      "naive_margin": params.naive_margin, "cell_margin": params.cell_margin,
      "min_cell_pickups": 200, "min_eval_pickups": 1000},
                {c.BLESSING: [w.artifact(
                    "ModelBlessing", custom=dataclasses.replace(
                        judged, blessed=spec.blessed, forecast_gate=True,
                        span=span,
                        reasons="" if spec.blessed else (
                            spec.reasons or "synthetic: not blessed"),
                        **_figures(figures)).properties())
                ]})


def _figures(figures: Mapping[str, Any]) -> Dict[str, Any]:
  """A blessing's metrics as floats (typed Any: they fill many fields)."""
  return {k: float(v) for k, v in figures.items()}


def _pusher(r: Run) -> Record:
  w, spec, home, version = r.w, r.spec, r.home, r.version
  pushed_props: Dict[str, Any] = {c.PUSHED: int(spec.blessed)}
  if spec.blessed:
    pushed_props.update({c.PUSHED_VERSION: version, c.PUSHED_DESTINATION: str(
        home / "models" / version)})

  def files(out):
    if spec.blessed:
      materialize(r.model_dir, out[c.PUSHED_MODEL][0].uri, r.link)
  return Record({
      "push_destination": json.dumps({"filesystem": {
          "base_directory": str(home / "models")}}),
      "custom_config": json.dumps({"keep_versions": r.keep})},
                {c.PUSHED_MODEL: [w.artifact("PushedModel", **pushed_props)]},
                then=files)


RECORDS: Dict[str, Callable[[Run], Record]] = {
    c.CURATED_SCHEMA: _curated_schema,
    c.EXAMPLE_GEN: _example_gen,
    c.LATEST_BLESSED_MODEL: _latest_blessed_model,
    c.PREVIOUS_STATISTICS: _previous_statistics,
    c.SERVING_MODEL_TRAINING: _serving_model_training,
    c.SKEW_VALIDATOR: _skew_validator,
    c.STATISTICS_GEN: _statistics_gen,
    c.EXAMPLE_VALIDATOR: _example_validator,
    c.SCHEMA_GEN: _schema_gen,
    c.DATA_GATE: _data_gate,
    c.NEXT_DAY_VALIDATOR: _next_day_validator,
    c.TRAINING_WINDOW: _training_window,
    c.LATEST_ANALYZER_CACHE: _latest_analyzer_cache,
    c.TRANSFORM: _transform,
    c.TRAINER: _trainer,
    c.EVALUATOR: _evaluator,
    c.GUIDANCE_GATE: _guidance_gate,
    c.FORECAST_GATE: _forecast_gate,
    c.PUSHER: _pusher,
}


def _write_node(r: Run, node: nodes.Node) -> None:
  """Node `node`'s execution in run `r`: its inputs and outputs as the table
  declares them, its values from RECORDS."""
  record = RECORDS.get(node.id, lambda run: Record())(r)
  inputs = {} if node.resolver else {
      key: r.out[source.producer][source.key]
      for key, source in node.inputs.items()
      if r.out.get(source.producer, {}).get(source.key)}
  if node.gated:
    inputs[COND_INPUT] = r.out[nodes.GATE][nodes.GATE_OUTPUT]
  outputs = dict(record.outputs)
  if not node.resolver:
    outputs = {key: outputs.get(key) or [r.w.artifact(type_name)]
               for key, type_name in node.outputs.items()}
  kwargs: Dict[str, Any] = dict(inputs=inputs, type_name=node.type)
  kwargs["internal_outputs" if node.resolver else "outputs"] = outputs
  if node.id == r.spec.killed_in:
    for artifact in (a for arts in outputs.values() for a in arts):
      artifact.state = pb.Artifact.PENDING
    r.w.execute(r.run_id, node.id, pb.Execution.RUNNING, record.props,
                **kwargs)
    raise Killed(node.id)
  r.w.execute(r.run_id, node.id, record.state, record.props, **kwargs)
  r.out[node.id] = outputs
  if record.then is not None:
    record.then(outputs)


def _gate_passed(r: Run) -> bool:
  report = r.output(nodes.GATE, nodes.GATE_OUTPUT)
  return bool(records.DataGateRecord.read(report).passed)


def write_run(w: Writer, spec: RunSpec, *, home: Path, schema: pb.Artifact,
              first: bool, base: Optional[RunRecord],
              previous: Optional[RunRecord], version: str,
              window: Sequence[pb.Artifact] = (),
              cache: Optional[pb.Artifact] = None,
              model_dir: Optional[str] = None, link: bool = False,
              keep: int = 5) -> RunRecord:
  """The records of one daily run: the node table's local nodes, in the
  order LocalDagRunner runs them (see `Run` for the arguments).

  A day the gate refused skips the gated nodes, as the pipeline's Cond does.
  """
  r = Run(w=w, spec=spec, home=home, schema=schema, first=first, base=base,
          previous=previous, version=version, window=window, cache=cache,
          model_dir=spec.model_dir or model_dir, link=link, keep=keep)
  for node in nodes.run_order(nodes.LOCAL):
    if node.gated and not _gate_passed(r):
      continue
    _write_node(r, node)
  model = r.output(c.TRAINER, c.MODEL)
  return RunRecord(spec=spec, run_id=r.run_id,
                   examples=r.output(c.EXAMPLE_GEN, c.EXAMPLES),
                   statistics=r.output(c.STATISTICS_GEN, c.STATISTICS),
                   model=model, blessing=r.output(c.FORECAST_GATE, c.BLESSING),
                   pushed_model=r.output(c.PUSHER, c.PUSHED_MODEL),
                   version=(version if spec.blessed and model is not None
                            else None),
                   cache=r.output(c.TRANSFORM, c.UPDATED_ANALYZER_CACHE)
                   or cache)


def default_runs(runs: int, first_span: int = FIRST_SPAN) -> List[RunSpec]:
  """`runs` daily runs of made-up figures, for the benches.

  Every tenth run has a 14-day window (the others 28), so runs differ in one
  parameter; the code version changes every 25 runs; MAE rises 0.01 a run.
  """
  specs = []
  for i in range(runs):
    mae = 2.5 + 0.01 * i
    specs.append(RunSpec(
        span=first_span + i,
        run_id=f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}",
        params=c.RunParameters(
            train_days=28 if i % 10 else 14, train_steps=2000,
            naive_margin=0.1, change_tolerance=0.0, cell_margin=0.25,
            code_version=f"0.1.{i // 25}"),
        metrics={"model_mae": mae, "model_rmse": 2 * mae,
                 "seasonal_naive_mae": 3.5},
        next_day={"mae": (2.5 + 0.01 * (i - 1)) * 1.1, "rmse": 2 * mae,
                  "seasonal_naive_mae": 3.5, "alert": 0, "reason": "ok"}))
  return specs


def _lookup(table: Union[None, Mapping[int, Any], Callable[[int], Any]],
            span: int) -> Any:
  if table is None:
    return None
  if callable(table):
    return table(span)
  return table.get(span)


def write_store(home: os.PathLike, runs: Sequence[RunSpec], *,
                model_dir: Optional[os.PathLike] = None, link: bool = False,
                keep: int = 5) -> List[RunRecord]:
  """Writes `runs` (oldest first) into home/metadata.sqlite and the registry.

  Returns one record per run. The registry keeps the newest `keep` pushed
  versions, as the Pusher does; with a `model_dir` their folders hold
  copies of it (always copies: tests roll back and prune them).
  """
  home = Path(home)
  home.mkdir(parents=True, exist_ok=True)
  w = Writer(home / "metadata.sqlite", pipeline_root=home / "pipeline")
  schema = w.artifact("Schema")
  records: List[RunRecord] = []
  base = previous = None
  for i, spec in enumerate(runs):
    days = int(spec.parameters().train_days or 1)
    window = [r.examples for r in records
              if spec.span - 2 * days <= r.spec.span < spec.span
              and r.spec.anomaly_count == 0][-days:]
    try:
      record = write_run(
          w, spec, home=home, schema=schema, first=i == 0, base=base,
          previous=previous, version=spec.version or str(1_700_000_000 + i),
          window=window, cache=previous.cache if previous else None,
          model_dir=None if model_dir is None else str(model_dir), link=link,
          keep=keep)
    except Killed:
      continue
    if i == 0 and SCHEMA_FILE.is_file():
      os.makedirs(schema.uri, exist_ok=True)
      shutil.copy(SCHEMA_FILE, os.path.join(schema.uri, "schema.pbtxt"))
    records.append(record)
    previous = record
    if record.version is not None:
      base = record
  pushed = [r for r in records if r.version is not None]
  models = home / "models"
  models.mkdir(exist_ok=True)
  for r in pushed[-keep:]:
    source = r.spec.model_dir or model_dir
    if source is None:
      (models / r.version).mkdir()
    else:
      shutil.copytree(source, models / r.version)
  if pushed:  # CURRENT: the newest push, from the day after its run's
    registry.set_serving(models, pushed[-1].version,
                         span=pushed[-1].spec.span)
  return records


def build(home: os.PathLike, runs: Union[int, Sequence[RunSpec]], *,
          first_span: int = FIRST_SPAN,
          model_dir: Optional[os.PathLike] = None,
          examples_uri_for: Union[None, Mapping[int, str],
                                  Callable[[int], Optional[str]]] = None,
          statistics_uri_for: Union[None, Mapping[int, str],
                                    Callable[[int], Optional[str]]] = None,
          link: bool = False, keep: int = 5) -> List[str]:
  """A home whose metadata holds `runs` daily runs; returns pushed versions.

  Args:
    home: the home folder (created); metadata.sqlite, models/ and
      pipeline/ are written, the warehouse is left to the caller.
    runs: a number of bench runs from `first_span` (see `default_runs`), or
      the runs to write, oldest first.
    first_span: the first run's span when `runs` is a number.
    model_dir: a real SavedModel every run's Model and push holds.
    examples_uri_for, statistics_uri_for: span -> a real ExampleGen or
      StatisticsGen output folder for that span (a mapping or a function;
      None or a missing span: records only).
    link: symlink the pipeline artifacts' files to the given folders
      instead of copying them (the registry's folders are always copies).
    keep: how many pushed versions the registry keeps.
  """
  specs = default_runs(runs, first_span) if isinstance(runs, int) else list(
      runs)
  specs = [dataclasses.replace(
      s, examples_dir=s.examples_dir or _lookup(examples_uri_for, s.span),
      statistics_dir=s.statistics_dir or _lookup(statistics_uri_for, s.span))
           for s in specs]
  records = write_store(home, specs, model_dir=model_dir, link=link, keep=keep)
  return [r.version for r in records if r.version is not None]


def with_checks(specs: Sequence[RunSpec], seed: int = 0,
                refuse_every: int = 9, unbless_every: int = 7
                ) -> List[RunSpec]:
  """`specs` with what the report draws, made up deterministically: drift
  and skew distances per feature, served MAE by lead on next-day results,
  a day DataGate refused (drift over its threshold) every `refuse_every`
  runs and an unblessed model every `unbless_every` (0: never)."""
  import numpy as np  # noqa: PLC0415
  rng = np.random.default_rng(seed)
  drift, skew = _comparators("drift"), _comparators("skew")
  out = []
  for i, spec in enumerate(specs):
    changes: Dict[str, Any] = {
        "drift": {n: round(float(rng.uniform(0.05, 0.7)) * t, 4)
                  for n, (_, t) in drift.items()},
        "skew": {n: round(float(rng.uniform(0.05, 0.8)) * t, 4)
                 for n, (_, t) in skew.items()}}
    if i and refuse_every and i % refuse_every == refuse_every - 1:
      name = sorted(drift)[i % len(drift)]
      changes["drift"][name] = round(drift[name][1] * 2.5, 4)
      changes.update(anomaly_count=1, blessed=False,
                     anomaly_lines=[])  # DataGate lists the drift line
    elif unbless_every and i % unbless_every == unbless_every - 1:
      changes.update(blessed=False, reasons=(
          "MAE not 10% below seasonal naive on the eval day"))
    if i % 5 == 4:  # now and then the served rows skew
      name = sorted(skew)[i % len(skew)]
      changes["skew"][name] = round(skew[name][1] * 1.6, 4)
    if spec.next_day and "mae" in spec.next_day:
      mae = float(spec.next_day["mae"])
      naive = float(spec.next_day.get("seasonal_naive_mae") or mae * 1.3)
      changes["next_day"] = {**spec.next_day, "served_by_lead": {
          str(lead): {"mae": round(mae * (0.8 + lead / 150), 4),
                      "seasonal_naive_mae": naive, "forecasts": 77 * 4}
          for lead in range(0, 60, 5)}}
    out.append(dataclasses.replace(spec, **changes))
  return out
