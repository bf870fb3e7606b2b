"""Questions the CLI asks of ML Metadata, answered through a store Snapshot.

Every function here asks a `store.Snapshot` for what its question needs (by
context, type, filter query or id; never the whole store) and returns plain
dicts and dataclasses, so the commands only format. Questions asked in a
loop read their ids in bulk first (`Snapshot.prefetch_*`). No TensorFlow:
schema files are parsed with the tensorflow_metadata protos.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from taxi_demand import features
from taxi_demand import spans
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage import store as st
from taxi_demand.lineage.records import DataGateRecord
from taxi_demand.lineage.records import ForecastGateRecord
from taxi_demand.lineage.records import IngestFingerprint
from taxi_demand.lineage.records import NextDayRecord

METRICS = ForecastGateRecord.METRICS
# The blessing's figures `show`, `diff` and `lineage` print as recorded.
_BLESSING_FIGURES = METRICS + (ForecastGateRecord.names().blessed,)
# The properties an artifact shows in a lineage tree, whatever its type.
_TREE_PROPERTIES = (contract.SPAN, contract.SPLIT_NAMES, contract.PUSHED_VERSION,
                    ForecastGateRecord.names().blessed,
                    ForecastGateRecord.names().model_mae,
                    DataGateRecord.names().anomaly_count)
# A next-day result's properties `next_day_results` gives typed.
_NEXT_DAY_TYPED = (NextDayRecord.names().model_version,
                   NextDayRecord.names().alert,
                   NextDayRecord.names().served_by_lead)
# Upstream inputs that point at an earlier run's output: the warm-start and
# baseline models, and Transform's analyzer cache (each day's Transform
# reads the cache the one before it wrote). The tree shows them but does
# not walk into them: each run's would hold every earlier run's tree, as
# deep as the runs are many (a RecursionError after some 250 days).
_NOT_WALKED = (contract.BASE_MODEL, contract.BASELINE_MODEL,
               contract.ANALYZER_CACHE)


# training_inputs' key for the days a model read.
WINDOW = "window"

date_of = spans.date_of
span_of_date = spans.parse_span


# --- runs ------------------------------------------------------------------


def parameters(snap: st.Snapshot, run: st.Run) -> Optional[Dict[str, Any]]:
  """The run's parameters as recorded (Trainer custom_config), or None."""
  del snap  # the Trainer's execution carries them
  trainer = run.node(contract.TRAINER)
  return contract.parse_custom_config(
      trainer.properties.get(contract.CUSTOM_CONFIG) if trainer else None)


def run_parameters(snap: st.Snapshot,
                   run: st.Run) -> Optional[contract.RunParameters]:
  """The run's parameters, typed; None in layouts that recorded none."""
  return contract.RunParameters.from_custom_config(parameters(snap, run))


def run_span(snap: st.Snapshot, run: st.Run) -> Optional[int]:
  """ExampleGen's span property, else its examples' span, else the params'."""
  gen = run.node(contract.EXAMPLE_GEN)
  if gen is not None:
    if gen.properties.get(contract.SPAN) not in (None, ""):
      return int(gen.properties[contract.SPAN])
    examples = snap.first_output(gen.execution_id, contract.EXAMPLES)
    if examples is not None and examples.span is not None:
      return examples.span
  span = (parameters(snap, run) or {}).get("span")
  return None if span is None else int(span)


def producer_span(snap: st.Snapshot, artifact_id: int) -> Optional[int]:
  """The day of the run whose execution produced an artifact."""
  producer = snap.producer(artifact_id)
  run_id = producer and snap.run_of.get(producer.execution_id)
  return None if not run_id else run_span(snap, run_by_id(snap, run_id))


def _recorded(record, names) -> Dict[str, Any]:
  """{name: value as recorded (a flag as 0 or 1), or None} of a record."""
  stored = record.properties()
  return {k: stored.get(k) for k in names}


def blessing_record(snap: st.Snapshot, run: st.Run) -> ForecastGateRecord:
  """ForecastGate's blessing in a run (every field None if it has none)."""
  blessing = snap.run_output(run, contract.FORECAST_GATE, contract.BLESSING)
  return (ForecastGateRecord() if blessing is None else
          ForecastGateRecord.read(blessing))


def pushed_version(snap: st.Snapshot, run: st.Run) -> Optional[str]:
  pushed = snap.run_output(run, contract.PUSHER, contract.PUSHED_MODEL)
  if pushed is None or not pushed.properties.get(contract.PUSHED):
    return None
  version = pushed.properties.get(contract.PUSHED_VERSION)
  return None if version in (None, "") else str(version)


def refused(snap: st.Snapshot, run: st.Run) -> bool:
  """Whether DataGate refused the run's day (nothing downstream ran)."""
  report = snap.run_output(run, contract.DATA_GATE, contract.REPORT)
  return report is not None and DataGateRecord.read(report).passed is False


def run_status(snap: st.Snapshot, run: st.Run) -> str:
  """COMPLETE, FAILED, RUNNING, REFUSED (a decision, not a crash), or
  INGESTED: a run that only ingested and checked a day of a later window."""
  if run.status == "COMPLETE" and refused(snap, run):
    return "REFUSED"
  if (run.status == "COMPLETE" and run.node(contract.DATA_GATE) is not None
      and run.node(contract.TRANSFORM) is None):
    return "INGESTED"
  return run.status


def finished_nodes(run: st.Run) -> FrozenSet[str]:
  """The nodes a run finished (ran or reused): what resuming it reuses."""
  return frozenset(n.node_id for n in run.nodes if n.finished)


def prefetch_rows(snap: st.Snapshot, runs: List[st.Run]) -> None:
  """Reads what `run_row` asks of each of `runs` in a few requests: the
  outputs of their DataGate, ForecastGate and Pusher."""
  snap.prefetch_runs(runs, (contract.DATA_GATE, contract.FORECAST_GATE,
                            contract.PUSHER))


def run_row(snap: st.Snapshot, run: st.Run) -> Dict[str, Any]:
  """One line of `taxi-demand runs`; absent facts are None (shown n/a)."""
  blessing = blessing_record(snap, run)
  span = run_span(snap, run)
  return {
      "run_id": run.run_id,
      "span": span,
      "date": date_of(span),
      "status": run_status(snap, run),
      "wall_s": round(run.wall_s, 3),
      "mae": blessing.model_mae,
      "seasonal_naive_mae": blessing.seasonal_naive_mae,
      "blessed": blessing.blessed,
      "pushed_version": pushed_version(snap, run),
      # The checks the blessing was decided without (e.g. guidance on a
      # day whose trips carry no dropoff area).
      "unmeasured": list(blessing.unmeasured),
  }


# --- pushes, rollbacks and what served when ----------------------------------


class Push:
  """A model version published by a Pusher.

  Attributes:
    version: the version's name.
    span: the pushing run's day; it serves from span + 1. Read when first
      asked: the day is on the push's blessing, and a question about
      versions alone (which model each version is) need not read a
      thousand blessings (`prefetch_spans` reads many in one request).
    at_ms: when the Pusher finished.
    pushed_model: the Pusher's output.
    execution_id: the Pusher's execution.
    model_id: the Model it pushed (None if unrecorded).
    blessing_id: the blessing the Pusher read (None if unrecorded).
    run_id, model: the pushing run's id and the Model's view, read when
      first asked.
  """

  _UNREAD = object()

  def __init__(self, snap: st.Snapshot, version: str, at_ms: int,
               pushed_model: st.ArtifactView, execution_id: int,
               model_id: Optional[int], blessing_id: Optional[int]):
    self._snap = snap
    self.version = version
    self._span: Any = self._UNREAD
    self.at_ms = at_ms
    self.pushed_model = pushed_model
    self.execution_id = execution_id
    self.model_id = model_id
    self.blessing_id = blessing_id

  def __repr__(self) -> str:
    return f"Push({self.version!r}, span={self.span})"

  @property
  def span(self) -> Optional[int]:
    """The day its blessing judged (ForecastGate's carries the run's
    span), else its run's."""
    if self._span is self._UNREAD:
      blessing = (None if self.blessing_id is None else
                  self._snap.artifact(self.blessing_id))
      span = None if blessing is None else blessing.span
      if span is None:
        run_id = self.run_id
        span = None if run_id is None else run_span(
            self._snap, run_by_id(self._snap, run_id))
      self._span = span
    return self._span

  @property
  def run_id(self) -> Optional[str]:
    return self._snap.run_of.get(self.execution_id)

  @property
  def model(self) -> Optional[st.ArtifactView]:
    return (None if self.model_id is None else
            self._snap.artifact(self.model_id))


def prefetch_spans(snap: st.Snapshot, found: List[Push]) -> List[Push]:
  """`found`, their blessings (which carry their days) read in one request."""
  snap.prefetch_artifacts(p.blessing_id for p in found
                          if p.blessing_id is not None)
  return found


@dataclasses.dataclass
class ServingEvent:
  """A push or a rollback: from then on, `version` serves."""
  kind: str                      # "push" or "rollback"
  version: str
  span: Optional[int]            # effective from day span + 1
  at_ms: int
  execution_id: int


def pushes(snap: st.Snapshot) -> List[Push]:
  """Every successful push, oldest first.

  Asks for the PushedModel artifacts and keeps those with `pushed` set
  that a completed Pusher wrote; each one's day is read when first asked (see
  `Push.span`).
  """
  # By type, not by filter: ML Metadata answers a filter a hundred rows a
  # request, running it again for each, and most PushedModels are pushed.
  return snap.memo("pushes", lambda: _read_pushes(
      snap, snap.artifacts_of(contract.PUSHED_MODEL_TYPE)))


def _read_pushes(snap: st.Snapshot,
                 pushed: List[st.ArtifactView]) -> List[Push]:
  """The pushes that wrote `pushed` (PushedModel artifacts), oldest first."""
  pushed = [a for a in pushed if a.properties.get(contract.PUSHED)]
  producers = snap.producer_ids(a.id for a in pushed)
  snap.prefetch_executions(producers.values())
  snap.prefetch_execution_events(producers.values())
  found = []
  for artifact in pushed:
    node = snap.execution(producers.get(artifact.id))
    if (node is None or node.state != "COMPLETE" or
        not snap.may_be(node, contract.PUSHER) or
        node.node_id != contract.PUSHER):
      continue
    found.append((node, artifact))
  out = []
  for node, artifact in sorted(found, key=lambda f: (f[0].start_ms,
                                                     f[0].execution_id)):
    blessing = snap.input_ids(node.execution_id, contract.MODEL_BLESSING)
    model = snap.input_ids(node.execution_id, contract.MODEL)
    out.append(Push(snap, version=str(artifact.properties.get(
        contract.PUSHED_VERSION)), at_ms=node.end_ms, pushed_model=artifact,
                    execution_id=node.execution_id,
                    model_id=model[0] if model else None,
                    blessing_id=blessing[0] if blessing else None))
  return out


def run_by_id(snap: st.Snapshot, run_id: str) -> st.Run:
  run = snap.run_by_id(run_id)
  if run is None:
    raise TaxiDemandError(f"no run {run_id!r}")
  return run


def push_of(snap: st.Snapshot, version: str) -> Push:
  """The first push of `version`, asked of ML Metadata by its version (a
  version no push recorded reads every push, to name the known ones)."""
  found = _read_pushes(snap, snap.artifacts_of(
      contract.PUSHED_MODEL_TYPE, st.pushed_filter(str(version))))
  for push in found or pushes(snap):
    if push.version == str(version):
      return push
  known = ", ".join(p.version for p in pushes(snap)) or "none"
  raise TaxiDemandError(f"no push of model version {version!r} in ML "
                        f"Metadata; pushed versions: {known}")


def push_recorded(snap: st.Snapshot, version: str) -> bool:
  """Whether ML Metadata records a push of `version`, in one filtered
  question (TFX writes a PushedModel's version and `pushed` only as it
  records its Pusher's success)."""
  return str(version).isdigit() and bool(snap.artifacts_of(
      contract.PUSHED_MODEL_TYPE, st.pushed_filter(str(version))))


def serving_timeline(snap: st.Snapshot) -> List[ServingEvent]:
  """Pushes and rollbacks in the order they took effect.

  Ordered by the day they start serving (a push of run span S serves from
  S + 1; a rollback counts as effective after the newest push it followed),
  then by wall clock. In a daily schedule that is wall-clock order; in a
  backfill, where every push happens "now", it is the order a daily
  schedule would have produced.
  """
  return _timeline(snap, prefetch_spans(snap, pushes(snap)))


def _timeline(snap: st.Snapshot, found: List[Push]) -> List[ServingEvent]:
  """Pushes `found` and every rollback, in `serving_timeline`'s order."""
  events = [ServingEvent("push", p.version, p.span, p.at_ms,
                         p.pushed_model.id) for p in found]
  for node in snap.executions_of(contract.ROLLBACK):
    if node.state != "COMPLETE":
      continue
    span = node.properties.get(contract.SPAN)
    events.append(ServingEvent(
        "rollback", str(node.properties.get(contract.TO_VERSION)),
        None if span in (None, "") else int(span), node.end_ms,
        node.execution_id))
  # A rollback recorded without a span (never by this code) sorts by time.
  return sorted(events, key=lambda e: (e.span if e.span is not None else
                                       _max_span(events), e.at_ms))


def _max_span(events: List[ServingEvent]) -> int:
  return max((e.span for e in events if e.span is not None), default=0)


# The newest pushes read first to say what serves: a year of daily pushes
# need not be read to find the newest (see _recent_in_force).
RECENT_PUSHES = 32


def _recent_pushes(snap: st.Snapshot) -> Tuple[list, List[Push]]:
  """(the newest RECENT_PUSHES pushed PushedModels, their pushes)."""
  newest = snap.newest_artifacts_of(contract.PUSHED_MODEL_TYPE,
                                    st.pushed_filter(), RECENT_PUSHES)
  return newest, prefetch_spans(snap, _read_pushes(snap, newest))


def _recent_in_force(snap: st.Snapshot, span: Optional[int]
                     ) -> Tuple[bool, Optional[ServingEvent]]:
  """(known, the event in force on day `span`, or now if None) from the
  newest RECENT_PUSHES pushes and every rollback.

  `known` is False where those cannot show it: no push among them took
  effect before `span`, one has no ForecastGate blessing (an older
  layout's push, whose day is its run's), or a blessed ForecastGate
  blessing of a day between the answer and `span` belongs to none of them
  (an older push that outranks the newest, as a backfill of later days
  before earlier ones leaves). An older push of the answer's own day
  finished before it, so it sorts before it, as in `serving_timeline`.
  """
  newest, recent = snap.memo(f"recent_pushes_{RECENT_PUSHES}",
                             lambda: _recent_pushes(snap))
  if any(p.blessing_id is None for p in recent):
    return False, None
  events = _timeline(snap, recent)
  before = [e for e in events if e.span is not None and
            (span is None or e.span < span)]
  if len(newest) < RECENT_PUSHES:  # every push there is
    return True, before[-1] if before else None
  if not any(e.kind == "push" for e in before):
    return False, None
  floor = max(e.span for e in before if e.kind == "push")
  name = ForecastGateRecord.names()
  above = [st.custom_filter(name.forecast_gate, "=", 1),
           st.custom_filter(name.blessed, "=", 1),
           st.custom_filter(name.span, ">", floor)]
  if span is not None:
    above.append(st.custom_filter(name.span, "<", span))
  known = {p.blessing_id for p in recent}
  outranking = [a for a in snap.artifacts_of(contract.MODEL_BLESSING_TYPE,
                                             " AND ".join(above))
                if a.id not in known]
  return (False, None) if outranking else (True, before[-1])


def serving_version(snap: st.Snapshot) -> Optional[str]:
  """The version serving now according to ML Metadata."""
  known, event = _recent_in_force(snap, None)
  if not known:
    timeline = serving_timeline(snap)
    event = timeline[-1] if timeline else None
  return None if event is None else event.version


def serving_on(snap: st.Snapshot, span: int) -> Optional[ServingEvent]:
  """The push or rollback in force on day `span` (it took effect before)."""
  known, event = _recent_in_force(snap, span)
  if known:
    return event
  before = [e for e in serving_timeline(snap)
            if e.span is not None and e.span < span]
  return before[-1] if before else None


def consumer_output(snap: st.Snapshot, artifact_id: int, node_id: str,
                    key: str, as_input: Optional[str] = None
                    ) -> Optional[st.ArtifactView]:
  """The `key` output of the first `node_id` execution that read an artifact.

  With `as_input`, only an execution that read it under that input key.
  """
  read_by = snap.consumed_as(artifact_id)
  for consumer in snap.consumers(artifact_id):
    if (not snap.may_be(consumer, node_id) or consumer.node_id != node_id or
        (as_input is not None and
         as_input not in read_by.get(consumer.execution_id, []))):
      continue
    found = snap.first_output(consumer.execution_id, key)
    if found is not None:
      return found
  return None


def blessing_of_model(snap: st.Snapshot,
                      model_id: int) -> Optional[st.ArtifactView]:
  """ForecastGate's blessing of a model: it carries the eval-day metrics."""
  return consumer_output(snap, model_id, contract.FORECAST_GATE,
                         contract.BLESSING)


def gate_report_of_statistics(snap: st.Snapshot,
                              statistics_id: int) -> Optional[st.ArtifactView]:
  """DataGate's verdict on the day these statistics describe.

  Only the gate that checked them as its own day's: the next day's gate
  reads them too, as its previous span.
  """
  return consumer_output(snap, statistics_id, contract.DATA_GATE,
                         contract.REPORT, as_input=contract.STATISTICS)


def data_gate_report(snap: st.Snapshot,
                     examples_id: int) -> Optional[st.ArtifactView]:
  """DataGate's verdict on a span's examples (through their statistics)."""
  stats = consumer_output(snap, examples_id, contract.STATISTICS_GEN,
                          contract.STATISTICS)
  return None if stats is None else gate_report_of_statistics(snap, stats.id)


def data_gate_reports(snap: st.Snapshot, examples: List[st.ArtifactView],
                      first: int, end: int
                      ) -> Dict[int, Optional[st.ArtifactView]]:
  """{examples id: DataGate's verdict on them} for days first <= span < end.

  What `data_gate_report` answers for each, read in a few requests: the
  statistics of those days (by filter query), the StatisticsGen executions
  that wrote them and what they read, then the gates that checked them.
  Examples whose StatisticsGen is not among those days' fall back to
  `data_gate_report`.
  """
  stats = snap.artifacts_of(
      "ExampleStatistics", f"properties.span.int_value >= {int(first)} AND "
      f"properties.span.int_value < {int(end)}")
  producers = snap.producer_ids(a.id for a in stats)
  snap.prefetch_executions(producers.values())
  snap.prefetch_execution_events(producers.values())
  # The first StatisticsGen execution that read each examples artifact.
  stats_of: Dict[int, tuple] = {}
  for statistics in stats:
    gen = snap.execution(producers.get(statistics.id))
    if gen is None or not snap.may_be(gen, contract.STATISTICS_GEN) or (
        gen.node_id != contract.STATISTICS_GEN):
      continue
    for examples_id in snap.input_ids(gen.execution_id, contract.EXAMPLES):
      if statistics.id not in snap.output_ids(gen.execution_id,
                                              contract.STATISTICS)[:1]:
        continue
      best = stats_of.get(examples_id)
      if best is None or gen.execution_id < best[0]:
        stats_of[examples_id] = (gen.execution_id, statistics.id)
  # The gates that read them as their own day's (not the next day's, which
  # reads them as its previous span).
  read = [c for _, sid in stats_of.values() for c, keys in
          snap.consumed_as(sid).items() if contract.STATISTICS in keys]
  snap.prefetch_executions(read)
  gates = [c for c in read if snap.may_be(snap.execution(c),
                                          contract.DATA_GATE)]
  snap.prefetch_execution_events(gates)
  snap.prefetch_artifacts(i for c in gates
                          for i in snap.output_ids(c, contract.REPORT))
  out = {}
  for a in examples:
    found = stats_of.get(a.id)
    out[a.id] = (gate_report_of_statistics(snap, found[1]) if found else
                 data_gate_report(snap, a.id))
  return out


def verdict_passed(report: Optional[st.ArtifactView]) -> bool:
  """Whether a DataGate report passed its day (no report: not passed)."""
  return report is not None and DataGateRecord.read(report).passed is True


def ingested_spans(snap: st.Snapshot, query_key: Optional[str] = None,
                   first: Optional[int] = None, end: Optional[int] = None
                   ) -> Dict[int, st.ArtifactView]:
  """{span: the newest ExampleGen output of that day}.

  With `query_key`, only days made by that query (their fingerprint ends
  in it; see duckdb_example_gen.ingest_fingerprint). With `first` and
  `end`, only days first <= span < end (asked of ML Metadata by filter).
  """
  bounds = [f"properties.span.int_value >= {int(first)}"] * (
      first is not None) + [f"properties.span.int_value < {int(end)}"] * (
          end is not None)
  candidates = [a for a in snap.artifacts_of(contract.EXAMPLES_TYPE,
                                             " AND ".join(bounds))
                if a.span is not None and (query_key is None or getattr(
                    IngestFingerprint.read(a), "query", None) == query_key)]
  made_by_gen = _made_by(snap, candidates, contract.EXAMPLE_GEN)
  newest: Dict[int, st.ArtifactView] = {}
  for examples in candidates:  # oldest first
    if examples.id in made_by_gen:
      newest[examples.span] = examples
  return newest


def _made_by(snap: st.Snapshot, artifacts: List[st.ArtifactView],
             node_id: str) -> set:
  """The ids of `artifacts` that an execution of `node_id` wrote."""
  producers = snap.producer_ids(a.id for a in artifacts)
  snap.prefetch_executions(producers.values())
  return {a for a, ex in producers.items()
          if _is_node(snap, snap.execution(ex), node_id)}


def _is_node(snap: st.Snapshot, execution: Optional[st.NodeExecution],
             node_id: str) -> bool:
  """Whether `execution` is one of node `node_id`'s."""
  return (execution is not None and snap.may_be(execution, node_id) and
          execution.node_id == node_id)


def training_window(snap: st.Snapshot, span: int, days: int,
                    query_key: Optional[str] = None) -> List[st.ArtifactView]:
  """The examples a model for day `span` trains on, oldest span first.

  The newest ingest of each of the last `days` days before `span` that
  DataGate passed. A refused day is skipped and the window reaches one day
  further back instead, but never more than 2 x `days` days back: a model
  is not silently trained on a month-old window. With `query_key`, only
  days made by that query: another slot length or grid is another dataset.
  Reads those 2 x `days` days' records, whatever the store holds besides.
  The rule is `spans.window_days`, which Vertex's window asks too.
  """
  first = spans.window_start(span, days)
  newest = ingested_spans(snap, query_key, first, span)
  reports = data_gate_reports(snap, list(newest.values()), first, span)
  return [newest[s] for s in spans.window_days(
      span, days, [s for s in newest
                   if verdict_passed(reports.get(newest[s].id))])]


@dataclasses.dataclass(frozen=True)
class WindowCaches:
  """What the analyzer caches of earlier Transforms hold of a window.

  Transform keys its cache by dataset (each day's examples, by URI) and
  its output cache holds every day its window had, so an earlier
  Transform's examples inputs say which of a window's days its cache holds.

  Attributes:
    covered: {updated analyzer cache id: how many of the window's days it
      holds}, for every cache that holds one at least.
    read_on_window: the analyzer caches (ids; [] for none) that the newest
      finished Transform of exactly this window read, or None if no
      Transform finished on it: what a rerun resolves to be TFX-cached.
  """
  covered: Dict[int, int]
  read_on_window: Optional[List[int]]


def window_caches(snap: st.Snapshot,
                  window: List[st.ArtifactView]) -> WindowCaches:
  """The caches of the Transforms that analysed any day of `window`.

  Asks for the window's consumers and their events only: its cost grows
  with the runs whose windows overlap this one, not with the store.
  """
  days = {a.id for a in window}
  snap.prefetch_artifact_events(days)
  read_by = {day: snap.consumed_as(day) for day in days}
  snap.prefetch_executions(ex for found in read_by.values() for ex in found)
  transforms = sorted({
      ex for found in read_by.values() for ex, keys in found.items()
      if contract.EXAMPLES in keys and _is_node(
          snap, snap.execution(ex), contract.TRANSFORM)})
  snap.prefetch_execution_events(transforms)
  covered: Dict[int, int] = {}
  read_on_window = None
  for ex in transforms:  # oldest first
    analysed = set(snap.input_ids(ex, contract.EXAMPLES))
    for cache in snap.output_ids(ex, contract.UPDATED_ANALYZER_CACHE):
      covered[cache] = len(analysed & days)
    if analysed == days and snap.execution(ex).finished:
      read_on_window = snap.input_ids(ex, contract.ANALYZER_CACHE)
  return WindowCaches(covered=covered, read_on_window=read_on_window)


def training_inputs(snap: st.Snapshot, model_id: int) -> Dict[str, Any]:
  """The one upstream walk from a Model: its Trainer and the days it read.

  Returns:
    {"trainer": NodeExecution or None, "transform_graph", "schema",
     "base_model", "window" (the ExampleGen outputs the Trainer read, one a
     day, oldest first), "examples" (the newest of them) and "statistics"
     (StatisticsGen's output for it)}: artifact views, [] or None where the
     lineage stops.
  """
  found: Dict[str, Any] = dict.fromkeys(
      ("trainer", contract.TRANSFORM_GRAPH, contract.SCHEMA,
       contract.BASE_MODEL, contract.EXAMPLES, contract.STATISTICS))
  found[WINDOW] = []
  trainer = snap.producer(model_id)
  if trainer is None:
    return found
  found["trainer"] = trainer
  for key in (contract.TRANSFORM_GRAPH, contract.SCHEMA, contract.BASE_MODEL):
    found[key] = snap.first_input(trainer.execution_id, key)
  window = sorted(snap.inputs(trainer.execution_id).get(contract.EXAMPLES, []),
                  key=lambda a: (a.span or 0, a.id))
  found[WINDOW] = window
  if window:
    found[contract.EXAMPLES] = window[-1]
    found[contract.STATISTICS] = statistics_of(snap, window[-1])
  return found


def statistics_of(snap: st.Snapshot,
                  examples: st.ArtifactView) -> Optional[st.ArtifactView]:
  """StatisticsGen's output for an Examples artifact."""
  return consumer_output(snap, examples.id, contract.STATISTICS_GEN,
                         contract.STATISTICS)


def examples_of_span(snap: st.Snapshot,
                     span: int) -> Optional[st.ArtifactView]:
  """The newest ExampleGen output for day `span` (its one split is D)."""
  candidates = snap.artifacts_of(contract.EXAMPLES_TYPE,
                                f"properties.span.int_value = {int(span)}")
  made_by_gen = _made_by(snap, candidates, contract.EXAMPLE_GEN)
  producers = snap.producer_ids(a.id for a in candidates)
  found = [a for a in candidates if a.span == span and (
      a.id not in producers or a.id in made_by_gen)]
  return found[-1] if found else None


def push_parameters(snap: st.Snapshot,
                    version: str) -> Optional[contract.RunParameters]:
  """The parameters of the run that pushed `version` (None if unrecorded)."""
  push = push_of(snap, version)
  if push.run_id is None:
    return None
  return run_parameters(snap, run_by_id(snap, push.run_id))


def resolve_version(snap: st.Snapshot, version: Optional[str]) -> str:
  """"serving" (or None) -> the serving version; else checks it was pushed."""
  if version in (None, "serving", "current"):
    found = serving_version(snap)
    if found is None:
      raise TaxiDemandError("no model was ever pushed according to ML "
                            "Metadata; run the pipeline first")
    return found
  return push_of(snap, version).version


# --- next-day results ---------------------------------------------------------


def next_day_results(snap: st.Snapshot,
                     version: Optional[str] = None) -> List[Dict[str, Any]]:
  """Recorded next-day results, one per day (the newest), oldest day first."""
  version_of_model = _version_of_model(snap)
  wanted = None if version is None else {str(version)}
  return _next_day_rows(_next_day_artifacts(snap, wanted, version_of_model),
                        wanted, version_of_model)


def next_day_history(snap: st.Snapshot, versions: Optional[List[str]] = None
                     ) -> Dict[str, List[Dict[str, Any]]]:
  """{model version: its rows of `next_day_results(snap)`, oldest first}.

  With `versions`, theirs alone: ML Metadata is asked for those versions'
  pushes and their models' pushes, those versions' results, then every
  result of the same days (the newest of a day is its row, whichever
  version it scored); not for every push or every day's result.
  """
  wanted = None if versions is None else {str(v) for v in versions}
  if wanted is None:
    results = next_day_results(snap)
  else:
    version_of_model = _version_of_models(snap, wanted)
    days = sorted({NextDayRecord.read(a).span for a in _next_day_artifacts(
        snap, wanted, version_of_model)} - {None})
    results = _next_day_rows(snap.artifacts_of(
        contract.NEXT_DAY_RESULT,
        st.custom_in(NextDayRecord.names().span, days)) if days else [],
                             None, version_of_model)
  history: Dict[str, List[Dict[str, Any]]] = {}
  version_key = NextDayRecord.names().model_version
  for result in results:
    version = str(result.get(version_key))
    if wanted is None or version in wanted:
      history.setdefault(version, []).append(result)
  return history


def _version_of_models(snap: st.Snapshot, versions: set) -> Dict[int, str]:
  """`_version_of_model(snap)` for the models pushed as `versions` alone:
  asks for those versions' PushedModels, then for every push of their
  models (a model's newest push names it)."""
  if not versions:
    return {}
  models = sorted({p.model_id for p in _read_pushes(snap, snap.artifacts_of(
      contract.PUSHED_MODEL_TYPE, st.pushed_filter(sorted(versions))))
                   if p.model_id is not None})
  snap.prefetch_artifact_events(models)
  readers = sorted({ex for m in models for ex, keys in
                    snap.consumed_as(m).items() if contract.MODEL in keys})
  snap.prefetch_execution_events(readers)
  pushed = [i for ex in readers
            for i in snap.output_ids(ex, contract.PUSHED_MODEL)]
  snap.prefetch_artifacts(pushed)
  return {p.model_id: p.version for p in _read_pushes(
      snap, [snap.artifact(i) for i in pushed]) if p.model_id in models}


def _version_of_model(snap: st.Snapshot) -> Dict[int, str]:
  """{model id: the version its newest push published it as}."""
  return {p.model_id: p.version for p in pushes(snap)
          if p.model_id is not None}


def _next_day_rows(artifacts: List[st.ArtifactView], versions: Optional[set],
                   version_of_model: Dict[int, str]) -> List[Dict[str, Any]]:
  """`next_day_results`' rows from NextDayResult `artifacts` (oldest
  first): the newest of each day, of `versions` only if given."""
  by_span: Dict[int, Dict[str, Any]] = {}
  for art in artifacts:
    result = NextDayRecord.read(art)
    if result.span is None:
      continue
    model_version = result.model_version
    if model_version is None and result.model_id:
      # The pipeline node knows the model, not the version it was pushed as.
      model_version = version_of_model.get(result.model_id)
    if versions is not None and str(model_version) not in versions:
      continue
    # As recorded, with the version found, the alert a flag and the served
    # forecasts by lead parsed from their JSON.
    typed = dataclasses.replace(result, model_version=model_version,
                                alert=bool(result.alert))
    row = dict(art.properties)
    row.update({k: getattr(typed, k) for k in _NEXT_DAY_TYPED})
    row["uri"] = art.uri
    row["artifact_id"] = art.id
    by_span[result.span] = row  # artifacts_of is oldest first
  return [by_span[s] for s in sorted(by_span)]


def _next_day_artifacts(snap: st.Snapshot, versions: Optional[set],
                        version_of_model: Dict[int, str]
                        ) -> List[st.ArtifactView]:
  """NextDayResult artifacts, oldest first: every one, or with `versions`
  those that may be theirs (asked of ML Metadata by filter): recorded with
  one of those versions, or with a model pushed as one (the node records
  the model, not the version). The caller checks each as it does the
  others.
  """
  if versions is None:
    return snap.artifacts_of(contract.NEXT_DAY_RESULT)
  names = NextDayRecord.names()
  wanted = sorted(versions)
  if not wanted:
    return []
  found = {a.id: a for a in snap.artifacts_of(
      contract.NEXT_DAY_RESULT, st.custom_in(names.model_version, wanted))}
  models = sorted(m for m, v in version_of_model.items() if v in versions)
  if models:  # a second question: "A OR B" drops artifacts lacking A
    found.update((a.id, a) for a in snap.artifacts_of(
        contract.NEXT_DAY_RESULT, st.custom_in(names.model_id, models)))
  return sorted(found.values(), key=lambda a: (a.create_ms, a.id))


# --- show -----------------------------------------------------------------------


def run_detail(snap: st.Snapshot, run: st.Run) -> Dict[str, Any]:
  """Everything `taxi-demand show RUN` prints."""
  blessing = blessing_record(snap, run)
  detail = run_row(snap, run)
  detail.update({
      "start": _iso(run.start_ms), "end": _iso(run.end_ms),
      "nodes": [{"node": n.node_id, "status": n.state,
                 "cached": n.cached, "wall_s": round(n.wall_s, 3),
                 "execution_id": n.execution_id} for n in run.nodes],
      "parameters": parameters(snap, run),
      "metrics": blessing.metrics(),
      "reasons": blessing.reasons or None,
      "anomalies": data_checks(snap, run),
  })
  return detail


def run_window(snap: st.Snapshot, run: st.Run) -> List[st.ArtifactView]:
  """The days a run's Trainer read, oldest first; [] if it did not train."""
  trainer = run.node(contract.TRAINER)
  if trainer is None:
    return []
  return sorted(snap.inputs(trainer.execution_id).get(contract.EXAMPLES, []),
                key=lambda a: (a.span or 0, a.id))


def examples_count(snap: st.Snapshot, examples: st.ArtifactView,
                   report: Optional[st.ArtifactView] = None) -> Optional[int]:
  """A day's example count, as DataGate recorded it when it checked it
  (its `report`, if the caller read it already)."""
  report = report or data_gate_report(snap, examples.id)
  return None if report is None else DataGateRecord.read(report).eval_examples


def data_checks(snap: st.Snapshot, run: st.Run) -> Optional[Dict[str, Any]]:
  """What DataGate reported for a run's day, and its window's example count.

  None if DataGate did not run.
  """
  gate = snap.run_output(run, contract.DATA_GATE, contract.REPORT)
  if gate is None:
    return None
  window = run_window(snap, run)
  spans_ = [a.span for a in window if a.span is not None]
  reports = (data_gate_reports(snap, window, min(spans_), max(spans_) + 1)
             if spans_ else {})
  counts = [examples_count(snap, a, reports.get(a.id)) for a in window]
  verdict = DataGateRecord.read(gate)
  return {"anomaly_count": verdict.anomaly_count,
          "eval_examples": verdict.eval_examples,
          # As recorded (0 or 1), as `show --json` has always printed it.
          "drift_checked": verdict.properties().get(
              DataGateRecord.names().drift_checked),
          contract.TRAIN_EXAMPLES: (sum(counts) if counts and None not in counts
                                    else None)}


def run_summary(snap: st.Snapshot, run: st.Run) -> Dict[str, Any]:
  """The runner's closing lines: `runs`' row, the data checks, the reasons.

  Flat, for `python runner_local.py`'s summary, the e2e tests and
  bench/pipeline.py; `show` prints the fuller `run_detail`.
  """
  summary = run_row(snap, run)
  checks = data_checks(snap, run)
  blessing = blessing_record(snap, run)
  summary.update({
      "anomalies": checks and checks["anomaly_count"],
      "train_examples": checks and checks["train_examples"],
      "eval_examples": checks and checks["eval_examples"],
      "drift": checks and ("checked, none" if checks["drift_checked"] else
                           "not checked (no previous span)"),
      "reasons": blessing.reasons or "",
      "parameters": parameters(snap, run),
      "model_rmse": blessing.model_rmse,
      "seasonal_naive_rmse": blessing.seasonal_naive_rmse,
      "baseline_model_mae": blessing.baseline_model_mae,
      # Against the baseline: the MAE difference and the day's noise.
      "change_mae": blessing.change_mae,
      "change_noise": blessing.change_noise,
  })
  return summary


def _iso(ms: int) -> Optional[str]:
  if not ms:
    return None
  return datetime.datetime.fromtimestamp(
      ms / 1000, datetime.timezone.utc).isoformat(timespec="seconds")


# --- diff -----------------------------------------------------------------------


def flatten(params: Optional[Dict[str, Any]], prefix: str = ""
            ) -> Dict[str, Any]:
  """Nested parameters as dotted keys ({"hparams": {"a": 1}} -> hparams.a)."""
  out: Dict[str, Any] = {}
  for key, value in (params or {}).items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def data_window(snap: st.Snapshot, run: st.Run) -> Dict[str, Any]:
  """The days and row counts a run read: its window and its own day."""
  span = run_span(snap, run)
  checks = data_checks(snap, run) or {}
  window = run_window(snap, run)
  return {"eval_span": span, "eval_date": date_of(span),
          "train_dates": [date_of(a.span) for a in window] or None,
          "train_examples": checks.get(contract.TRAIN_EXAMPLES),
          "eval_examples": checks.get("eval_examples")}


def schema_of(snap: st.Snapshot, run: st.Run) -> Optional[st.ArtifactView]:
  """The schema the run trained with: Transform's input, else the imported."""
  transform = run.node(contract.TRANSFORM)
  if transform is not None:
    schema = snap.first_input(transform.execution_id, contract.SCHEMA)
    if schema is not None:
      return schema
  return (snap.run_output(run, contract.CURATED_SCHEMA, contract.SCHEMA) or
          snap.run_output(run, contract.SCHEMA_GEN, contract.SCHEMA))


def schema_features(uri: str) -> Optional[Dict[str, str]]:
  """{feature name: its definition as text} from a Schema artifact folder."""
  from google.protobuf import text_format  # noqa: PLC0415
  from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: PLC0415
  for name in ("schema.pbtxt", "Schema.pbtxt"):
    path = os.path.join(uri, name)
    if os.path.isfile(path):
      schema = schema_pb2.Schema()
      with open(path, encoding="utf-8") as f:
        text_format.Parse(f.read(), schema)
      out = {}
      for feature in schema.feature:
        copy = schema_pb2.Feature()
        copy.CopyFrom(feature)
        copy.ClearField("name")
        out[feature.name] = text_format.MessageToString(
            copy, as_one_line=True)
      return out
  return None


def schema_diff(snap: st.Snapshot, a: st.Run,
                b: st.Run) -> Optional[Dict[str, Any]]:
  """Features added, removed or changed between two runs' schemas."""
  sa, sb = schema_of(snap, a), schema_of(snap, b)
  if sa is None or sb is None or sa.uri == sb.uri:
    return None
  fa, fb = schema_features(sa.uri), schema_features(sb.uri)
  if fa is None or fb is None or fa == fb:
    return None
  return {"added": sorted(set(fb) - set(fa)),
          "removed": sorted(set(fa) - set(fb)),
          "changed": {k: {"a": fa[k], "b": fb[k]} for k in sorted(fa)
                      if k in fb and fa[k] != fb[k]},
          "a_uri": sa.uri, "b_uri": sb.uri}


def _changed(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Dict]:
  return {k: {"a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k)}


def diff_runs(snap: st.Snapshot, a: st.Run, b: st.Run) -> Dict[str, Any]:
  """Only what differs between two runs; empty sections are left out."""
  pa, pb = flatten(parameters(snap, a)), flatten(parameters(snap, b))
  code = {"a": pa.pop("code_version", None), "b": pb.pop("code_version", None)}
  pa.pop("span", None)  # shown under data, as spans
  pb.pop("span", None)
  out: Dict[str, Any] = {"a": a.run_id, "b": b.run_id}
  params = _changed(pa, pb)
  if params:
    out["parameters"] = params
  data = _changed(data_window(snap, a), data_window(snap, b))
  if data:
    out["data"] = data
  schema = schema_diff(snap, a, b)
  if schema:
    out["schema"] = schema
  ma = _recorded(blessing_record(snap, a), _BLESSING_FIGURES)
  mb = _recorded(blessing_record(snap, b), _BLESSING_FIGURES)
  metrics = {}
  for key in _BLESSING_FIGURES:
    va, vb = ma.get(key), mb.get(key)
    if va == vb:
      continue
    delta = (vb - va if isinstance(va, (int, float)) and
             isinstance(vb, (int, float)) else None)
    metrics[key] = {"a": va, "b": vb, "delta": delta}
  if metrics:
    out["metrics"] = metrics
  if code["a"] != code["b"]:
    out["code_version"] = code
  return out


# --- lineage ---------------------------------------------------------------------


def _artifact_node(art: st.ArtifactView) -> Dict[str, Any]:
  keep = {k: v for k, v in art.properties.items() if k in _TREE_PROPERTIES}
  return {"artifact": art.type_name, "id": art.id, "uri": art.uri, **keep}


def upstream(snap: st.Snapshot, art: st.ArtifactView,
             seen: Optional[set] = None) -> Dict[str, Any]:
  """The tree of artifacts and executions that produced `art`."""
  seen = set() if seen is None else seen
  node = _artifact_node(art)
  producer = snap.producer(art.id)
  if producer is None:
    return node
  if producer.execution_id in seen:
    node["producer"] = {"node": producer.node_id, "see_above": True}
    return node
  seen.add(producer.execution_id)
  step: Dict[str, Any] = {"node": producer.node_id,
                          "execution_id": producer.execution_id,
                          "run_id": snap.run_of.get(producer.execution_id),
                          "status": producer.state}
  if producer.node_id == contract.EXAMPLE_GEN:
    step["trips"] = _trips_read(snap, producer)
  inputs = {}
  _prefetch_upstream(snap, snap.inputs(producer.execution_id))
  for key, arts in sorted(snap.inputs(producer.execution_id).items()):
    if key.startswith("_"):
      continue  # TFX's implicit Cond input (DataGate's verdict), not data
    if key in _NOT_WALKED:
      inputs[key] = [_artifact_node(a) for a in arts]
    else:
      inputs[key] = [upstream(snap, a, seen) for a in arts]
  if inputs:
    step["inputs"] = inputs
  node["producer"] = step
  if art.type_name == "Examples" and producer.node_id == contract.EXAMPLE_GEN:
    stats = statistics_of(snap, art)
    if stats is not None:
      node["statistics"] = _artifact_node(stats)
  return node


def _prefetch_upstream(snap: st.Snapshot,
                       inputs: Dict[str, List[st.ArtifactView]]) -> None:
  """Reads, in a few requests, what the walk into `inputs` will ask of each
  (a window holds a day's examples each): their producers and those
  producers' events."""
  walked = [a.id for key, arts in inputs.items() if not key.startswith("_")
            and key not in _NOT_WALKED for a in arts]
  producers = snap.producer_ids(walked)
  snap.prefetch_executions(producers.values())
  snap.prefetch_execution_events(producers.values())
  snap.prefetch_run_ids(producers.values())


def _trips_read(snap: st.Snapshot, gen: st.NodeExecution) -> Dict[str, Any]:
  """Which day of trips an ExampleGen execution queried, and its lookback."""
  run_id = snap.run_of.get(gen.execution_id)
  params = parameters(snap, run_by_id(snap, run_id)) if run_id else None
  span = gen.properties.get(contract.SPAN)
  span = None if span in (None, "") else int(span)
  return {"table": (params or {}).get("source_table", "trips"),
          "warehouse": gen.properties.get(contract.WAREHOUSE_PATH),
          "date": date_of(span),
          "lookback_from": (None if span is None else
                            date_of(span - features.LOOKBACK_DAYS))}


def lineage_of_version(snap: st.Snapshot, version: str) -> Dict[str, Any]:
  """The tree from a pushed model version back to the trips it read."""
  push = push_of(snap, version)
  if push.model is None:
    raise TaxiDemandError(f"the push of version {version} names no model")
  tree = upstream(snap, push.model)
  blessing = blessing_of_model(snap, push.model.id)
  rollbacks = [{"to_version": e.version, "at": _iso(e.at_ms)}
               for e in _timeline(snap, [])  # the rollbacks alone
               if e.kind == "rollback" and e.version == push.version]
  return {
      "version": push.version,
      "serving": serving_version(snap) == push.version,
      "pushed": {"run_id": push.run_id, "span": push.span,
                 "date": date_of(push.span), "at": _iso(push.at_ms),
                 "uri": push.pushed_model.uri,
                 "destination": push.pushed_model.properties.get(
                     "pushed_destination")},
      "blessing": None if blessing is None else {
          "uri": blessing.uri,
          **_recorded(ForecastGateRecord.read(blessing), _BLESSING_FIGURES)},
      "rollbacks_to_it": rollbacks,
      "next_day": next_day_results(snap, push.version),
      "model": tree,
      # The warm-start chain, flat: the tree shows the base model, not its
      # own tree, so each model appears once however long the chain.
      "warm_start_chain": warm_start_chain(snap, push.model.id),
  }


def models_trained_on(snap: st.Snapshot, span: int) -> List[Dict[str, Any]]:
  """Downstream: every model whose training window included day `span`."""
  candidates = snap.artifacts_of(contract.EXAMPLES_TYPE,
                                 f"properties.span.int_value = {int(span)}")
  made_by_gen = _made_by(snap, candidates, contract.EXAMPLE_GEN)
  found: List[Dict[str, Any]] = []
  for examples in candidates:
    if examples.id not in made_by_gen or examples.span != span:
      continue
    trainers = [c.execution_id for c in snap.consumers(examples.id)
                if snap.may_be(c, contract.TRAINER) and
                c.node_id == contract.TRAINER]
    snap.prefetch_execution_events(trainers)
    snap.prefetch_run_ids(trainers)
    for execution_id in trainers:
      model = snap.first_output(execution_id, contract.MODEL)
      if model is not None:
        found.append({"model_id": model.id, "uri": model.uri,
                      "run_id": snap.run_of.get(execution_id),
                      "examples_span": examples.span})
  by_push = {p.model_id: p.version for p in pushes(snap)
             if p.model_id is not None}
  unique = {f["model_id"]: {**f, "pushed_version": by_push.get(f["model_id"])}
            for f in found}
  return [unique[k] for k in sorted(unique)]


def warm_start_chain(snap: st.Snapshot, model_id: int) -> List[Dict[str, Any]]:
  """A model and the models it was warm-started from, newest first.

  Each model once, with its parent (the base_model its Trainer read) named
  by id; the walk is a loop over ids, as long as the chain, not a nested
  tree. Reads the models' events in one request.
  """
  models = {m.id: m for m in snap.artifacts_of(contract.MODEL_TYPE)}
  snap.prefetch_artifact_events(models)
  parent_of: Dict[int, int] = {}   # Trainer execution -> its base model
  for candidate in models:
    for execution_id, keys in snap.consumed_as(candidate).items():
      if contract.BASE_MODEL in keys:
        parent_of.setdefault(execution_id, candidate)
  producers = snap.producer_ids(models)
  version_of = {p.model_id: p.version for p in pushes(snap)
                if p.model_id is not None}
  chain, seen, current = [], set(), model_id
  while current is not None and current not in seen:
    seen.add(current)
    parent = parent_of.get(producers.get(current))
    model = models.get(current) or snap.artifact(current)
    chain.append({"model_id": current,
                  "uri": None if model is None else model.uri,
                  "pushed_version": version_of.get(current),
                  "base_model": parent})
    current = parent
  return chain


def tree_lines(node: Dict[str, Any], indent: str = "") -> List[str]:
  """An upstream tree as indented text lines."""
  span = f" span {node['span']} ({date_of(node['span'])})" if node.get(
      "span") is not None else ""
  lines = [f"{indent}{node['artifact']} #{node['id']}{span}  {node['uri']}"]
  if "statistics" in node:
    stats = node["statistics"]
    lines.append(f"{indent}  statistics: {stats['artifact']} #{stats['id']}  "
                 f"{stats['uri']}")
  step = node.get("producer")
  if not step:
    return lines
  if step.get("see_above"):
    lines.append(f"{indent}  <- {step['node']} (see above)")
    return lines
  cache = " (cached)" if step.get("status") == "CACHED" else ""
  lines.append(f"{indent}  <- {step['node']}{cache} run {step['run_id']}")
  trips = step.get("trips")
  if trips:
    lines.append(f"{indent}     trips: table {trips['table']}, day "
                 f"{trips['date']} (lookback from {trips['lookback_from']})"
                 + (f"  ({trips['warehouse']})" if trips["warehouse"] else ""))
  for key, children in step.get("inputs", {}).items():
    for child in children:
      lines.append(f"{indent}     {key}:")
      if "producer" in child or key not in _NOT_WALKED:
        lines.extend(tree_lines(child, indent + "       "))
      else:
        lines.append(f"{indent}       {child['artifact']} #{child['id']}  "
                     f"{child['uri']} (an earlier run; not walked)")
  return lines


def format_value(value, digits: int = 3) -> str:
  """A recorded value as the metadata commands print it (None: n/a)."""
  if value is None:
    return "n/a"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  if isinstance(value, list):  # a window of days
    return "..".join(map(str, value))
  return str(value)


def _fmt(value, digits: int = 4) -> str:
  return format_value(value, digits)


def version_lines(tree: Dict[str, Any]) -> List[str]:
  """`lineage_of_version`'s answer as the text `taxi-demand lineage` prints
  (the report shows the same lines)."""
  pushed = tree["pushed"]
  lines = [f"model version {tree['version']}"
           + ("  (serving)" if tree["serving"] else ""),
           f"  pushed by run {pushed['run_id']} for {_fmt(pushed['date'])} at "
           f"{_fmt(pushed['at'])}  {pushed['uri']}"]
  if tree["blessing"]:
    b = tree["blessing"]
    lines.append(f"  blessing: blessed {_fmt(bool(b.get('blessed')))}, MAE "
                 f"{_fmt(b.get('model_mae'))} vs seasonal naive "
                 f"{_fmt(b.get('seasonal_naive_mae'))}  {b['uri']}")
  for rb in tree["rollbacks_to_it"]:
    lines.append(f"  rolled back to at {rb['at']}")
  lines += tree_lines(tree["model"], "  ")
  chain = tree.get("warm_start_chain") or []
  if len(chain) > 1:
    lines.append(f"warm-start chain ({len(chain)} models, newest first)")
    for link in chain:
      lines.append(f"  model #{link['model_id']}"
                   + (f" (version {link['pushed_version']})"
                      if link["pushed_version"] else "")
                   + (f" <- base model #{link['base_model']}"
                      if link["base_model"] is not None else
                      " (trained from scratch)"))
  lines.append("next-day history (degradation)")
  if not tree["next_day"]:
    lines.append("  none recorded (taxi-demand next-day --date D)")
  for r in tree["next_day"]:
    lines.append(f"  {r['date']}: MAE {_fmt(r.get('mae'))} vs seasonal naive "
                 f"{_fmt(r.get('seasonal_naive_mae'))}"
                 + ("  ALERT " + str(r.get("reason")) if r["alert"] else ""))
  return lines
