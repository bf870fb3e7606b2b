"""What runner_local.py needs beyond flags: spans, config, the run, the summary."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import time
from pathlib import Path
from typing import (Any, Callable, ContextManager, Dict, FrozenSet, Iterator,
                    List, Optional)

from pipeline import flags
from taxi_demand import __version__
from taxi_demand import errors
from taxi_demand import logs
from taxi_demand import spans
from taxi_demand.errors import AlertError
from taxi_demand.errors import TaxiDemandError
from taxi_demand.home import Home
from taxi_demand.lineage import contract
from taxi_demand.lineage import nodes
from taxi_demand.lineage.records import DataGateRecord
from taxi_demand.lineage.records import IngestFingerprint

# The default embedded warehouse: deterministic simulated days, enough for a
# 28-day window plus a week of lag history plus the newest (eval) day.
DEFAULT_START = datetime.date(2024, 1, 1)
DEFAULT_DAYS = 42
DEFAULT_SEED = 7

_log = logging.getLogger(__name__)


def say(message: str) -> None:
  print(message, flush=True)


def tfx_sample_csv() -> Path:
  """The 15k real Chicago trips that ship inside the tfx wheel."""
  import importlib.util  # noqa: PLC0415
  tfx_dir = Path(importlib.util.find_spec("tfx").origin).parent
  return tfx_dir / "examples/chicago_taxi_pipeline/data/simple/data.csv"


def ensure_warehouse(home: Home, sample: bool = False) -> None:
  """Builds the default embedded warehouse when the home has none."""
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  if home.local_warehouse("the local run").exists():
    with wh.Warehouse(home.warehouse, read_only=True) as warehouse:
      if warehouse.newest_span() is not None:
        return
  home.ensure()
  started = time.monotonic()
  if sample:
    sample_csv = tfx_sample_csv()
    say(f"empty warehouse: loading the real Chicago sample ({sample_csv})")
    with wh.Warehouse(home.warehouse) as warehouse:
      report = warehouse.load([sample_csv])
    say(f"  read {report.read}, loaded {report.loaded}, quarantined "
        f"{report.quarantined}")
  else:
    from taxi_demand.data import simulate  # noqa: PLC0415
    say(f"empty warehouse: simulating {DEFAULT_DAYS} days of a calibrated "
        f"city from {DEFAULT_START} (seed {DEFAULT_SEED}) into "
        f"{home.warehouse}")
    with wh.Warehouse(home.warehouse) as warehouse:
      report = simulate.simulate_into(warehouse, start=DEFAULT_START,
                                      days=DEFAULT_DAYS, seed=DEFAULT_SEED)
    say(f"  loaded {report.loaded} trips")
  say(f"  warehouse ready in {time.monotonic() - started:.1f} s")


def spans_to_run(args, home: Home) -> List[int]:
  """The days this invocation runs, oldest first."""
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  if args.backfill:
    first, last = (spans.parse_span(d) for d in args.backfill)
    if last < first:
      raise TaxiDemandError(f"--backfill end {args.backfill[1]} is before "
                            f"start {args.backfill[0]}")
    return list(range(first, last + 1))
  if args.date:
    return [spans.parse_span(args.date)]
  with wh.Warehouse(home.warehouse, read_only=True) as warehouse:
    newest = warehouse.newest_span()
  if newest is None:
    raise TaxiDemandError(f"the warehouse {home.warehouse} has no trips; "
                          "load some with `taxi-demand load PATH`")
  return [newest]


def build_config(args, home: Home, span: int):
  """Flags and home -> PipelineConfig. The one place paths are decided."""
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  if args.beam_workers < 1:
    raise TaxiDemandError("--beam-workers must be >= 1")
  # No flags for one worker, the DirectRunner's default: TFX's Beam
  # executors package all of TFX into an sdist for remote workers whenever
  # a run has Beam flags but none naming its dependencies: 2-5 s a Beam
  # node, and a 42 MB copy of TFX left in /tmp, for a package the
  # in-process DirectRunner never installs.
  beam_args = []
  if args.beam_workers > 1:
    beam_args = ["--direct_num_workers=%d" % args.beam_workers,
                 "--direct_running_mode=multi_processing"]
  return PipelineConfig(
      pipeline_name=contract.PIPELINE_NAME,
      pipeline_root=str(home.pipeline_root),
      span=span,
      warehouse_path=str(home.warehouse),
      metadata_path=str(home.metadata),
      serving_dir=str(home.models),
      serving_log_dir=str(home.serving_log),
      beam_pipeline_args=tuple(beam_args),
      enable_cache=not args.no_cache,
      code_version=__version__,
      **flags.model_config_kwargs(args))


@dataclasses.dataclass
class Step:
  """One pipeline run this invocation makes.

  `window`: ingest the days of the span's window first (a whole day's run);
  a resumed run reuses its run's window as it was. `ingest`: the run stops
  at DataGate (a day of a later window). `reuse`: a resumed run's, the
  nodes its run finished; every other node of the pipeline runs.
  """
  span: int
  options: Optional[object] = None     # tfx RunOptions, for partial runs
  window: bool = True
  ingest: bool = False
  reuse: Optional[FrozenSet[str]] = None

  def record(self, main: int) -> dict:
    return {"span": self.span, "for": main,
            "kind": "ingest" if self.ingest else "run"}

  def run_options(self, pipeline):
    """The tfx RunOptions of this step's run of `pipeline` (a tfx Pipeline).

    A resumed run starts from every node its run did not finish, not only
    the one that died: the nodes run one at a time, but the graph is not a
    chain. NextDayValidator and SkewValidator run before Transform and do
    not feed it, so a run resumed from either alone (and the nodes
    downstream of it, all TFX adds) never trained, blessed or pushed.
    """
    if self.reuse is None:
      return self.options
    from tfx.orchestration import pipeline as tfx_pipeline  # noqa: PLC0415
    rerun = [c.id for c in pipeline.components if c.id not in self.reuse]
    to_nodes = nodes.ingest_ends() if self.ingest else None
    if not rerun and not to_nodes:
      return None  # nothing left to reuse around: the whole run again
    return tfx_pipeline.RunOptions(from_nodes=rerun or None,
                                   to_nodes=to_nodes)


def plan(args, home: Home, previous: Optional[dict] = None) -> List[Step]:
  """The runs of this invocation, oldest first.

  `previous` is what the last daily run on the home recorded in the run
  lock (RunLock.previous): with --resume, its unfinished days follow the
  resumed run.
  """
  from tfx.orchestration import pipeline as tfx_pipeline  # noqa: PLC0415
  if args.resume:
    return resume_plan(home, previous or {})
  spans = spans_to_run(args, home)
  if args.from_node:
    if len(spans) > 1:
      raise TaxiDemandError("--from-node runs one day, not a backfill")
    return [Step(spans[0], tfx_pipeline.RunOptions(
        from_nodes=[args.from_node]), window=False)]
  return [Step(span) for span in spans]


def resume_plan(home: Home, previous: dict) -> List[Step]:
  """--resume: the last run again from every node it did not finish (the
  one that failed or whose process died, and those it had not reached),
  then the days its invocation had not reached.

  A resumed run reuses every artifact its run had published (a TFX partial
  run), so finished nodes are not run again. A run that was ingesting a day
  of a later window stops at DataGate again.
  """
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = store.load(home.metadata) if home.metadata.exists() else None
  last = snap.last_run() if snap is not None else None
  unfinished = bool(previous.get("plan")) and not previous.get("done")
  step = (previous.get("step") or {}) if unfinished else {}
  steps: List[Step] = []
  if last is not None and last.status in ("FAILED", "ABORTED"):
    span = queries.run_span(snap, last)
    if span is None and step.get("span") is not None:
      # Killed before any node recorded its day (inside ExampleGen's first
      # second): the run lock noted the step before it started. Nothing
      # was published, so the step runs again, whole.
      steps.append(rerun_whole(last, step))
    elif span is None:
      raise TaxiDemandError(f"--resume: cannot tell the span of run "
                            f"{last.run_id}; rerun it with --date")
    if span is not None:
      node = next(n.node_id for n in last.nodes
                  if n.state == "FAILED" or n.aborted)
      ingest = step.get("kind") == "ingest" and step.get("span") == span
      say(f"resuming run {last.run_id} ({spans.date_of(span)}, "
          f"{last.status.lower()}) from {node} and the nodes it had not "
          "reached" + (", up to DataGate" if ingest else ""))
      steps.append(Step(span, window=False, ingest=ingest,
                        reuse=queries.finished_nodes(last)))
  if unfinished:
    main = step.get("for", previous["plan"][0])
    done_with_main = bool(steps) and not steps[0].ingest and (
        steps[0].span == main)
    finished = set(previous.get("finished", []))
    rest = [d for d in previous["plan"] if d not in finished and (
        d > main or (d == main and not done_with_main))]
    if rest:
      say(f"then the days `{' '.join(previous.get('argv', []))}` had not "
          f"finished: {', '.join(str(spans.date_of(d)) for d in rest)}")
    steps += [Step(d) for d in rest]
  if not steps:
    why = ("no earlier run in ML Metadata" if last is None else
           f"the last run ({last.run_id}) did not fail; nothing to resume")
    raise TaxiDemandError(f"--resume: {why}")
  return steps


def rerun_whole(last, step: dict) -> Step:
  """The run lock's step `last` died in, from its start: an ingest up to
  DataGate, or the day's run (its window checked first)."""
  span, ingest = int(step["span"]), step.get("kind") == "ingest"
  say(f"run {last.run_id} ({spans.date_of(span)}) was {last.status.lower()} "
      "before it recorded anything: running it again"
      + (", up to DataGate" if ingest else ""))
  if ingest:
    return Step(span, ingest_options(), window=False, ingest=True)
  return Step(span)


def hold(home: Home, argv: List[str]):
  """The home's run lock, to take with `with`: a second daily run is
  refused in one line."""
  from taxi_demand import locks  # noqa: PLC0415
  home.ensure()
  return locks.RunLock(home.run_lock, "runner_local.py " + " ".join(argv))


def mark_aborted(home: Home) -> List[str]:
  """Marks the nodes left RUNNING by a daily run that died (kill -9) as
  aborted in ML Metadata, and puts back a CURRENT a killed Pusher moved
  (registry.reconcile); one line per run and for the registry. Call it
  holding the run lock."""
  if not home.metadata.exists():
    return []
  from taxi_demand.lineage import record  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  ids = record.abort_unfinished(
      record.open_writable(home.metadata),
      f"its process died; found by pid {os.getpid()} at "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}")
  # A Pusher killed between moving CURRENT and its record left the registry
  # ahead of ML Metadata: CURRENT goes back to the recorded version.
  moved = [line for line in [registry.reconcile(home.models, home.metadata)]
           if line]
  if not ids:
    for line in moved:
      say(line)
    return moved
  snap = store.load(home.metadata)
  snap.prefetch_executions(ids)
  snap.prefetch_run_ids(ids)
  killed: Dict[str, List[str]] = {}
  for execution_id in sorted(ids):
    run_id = snap.run_of.get(execution_id)
    if run_id is not None:
      killed.setdefault(run_id, []).append(
          snap.execution(execution_id).node_id)
  lines = [f"run {run_id} was killed in {', '.join(nodes)}: "
           "marked aborted; `--resume` continues it"
           for run_id, nodes in killed.items()] + moved
  for line in lines:
    say(line)
  return lines


def run_all(args, home: Home, run_lock, argv: List[str]) -> None:
  """Plans and runs this invocation's days, keeping the run lock's record
  of where it is, so that `--resume` can go on after a crash."""
  from pipeline.pipeline import create_pipeline  # noqa: PLC0415
  previous = run_lock.previous
  steps = plan(args, home, previous)
  run_lock.note(plan=sorted({s.span for s in steps if not s.ingest}),
                argv=previous.get("argv", argv) if args.resume else argv,
                finished=[], done=False)
  for step in steps:
    run_lock.note(step=step.record(step.span))
    if step.window:
      ingest_window(args, home, step.span,
                    note=lambda record: run_lock.note(step=record))
      run_lock.note(step=step.record(step.span))
    config = build_config(args, home, step.span)
    result = None
    try:
      pipeline = create_pipeline(config)
      result = execute(pipeline, config, step.run_options(pipeline), home)
    except AlertError:  # refused: a decision taken, not work left undone
      if not step.ingest:
        run_lock.note(finished=run_lock.record["finished"] + [step.span])
        raise
      # A window day refused: left out of every window, as `ingest` does;
      # the day whose window it is goes on.
    if step.ingest:  # a resumed ingest: its verdict, not a run's summary
      say(f"  ingest {spans.date_of(step.span)}: {ingest_verdict(home)}")
    else:
      run_lock.note(finished=run_lock.record["finished"] + [step.span])
      # The summary reads through the step's reader when execute made one.
      print_summary(*(home, config) + ((result.snap,) if result else ()))
  run_lock.note(done=True)


def window_to_ingest(home: Home, span: int, train_days: int,
                     key: str) -> List[int]:
  """The days of `span`'s window that ML Metadata lacks, or has stale.

  A day is ingested once: its examples, statistics and DataGate verdict are
  reused by every window that holds it, unless the trips it reads (its
  day and lookback) changed since, which its fingerprint tells, or it was
  made by another query (`key`, duckdb_example_gen.query_key).
  """
  from pipeline.components import duckdb_example_gen  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  with wh.Warehouse(home.warehouse, read_only=True) as warehouse:
    known = warehouse.span_range()
    if known is None:
      return []
    days = range(max(known[0], span - train_days), span)
    wanted = {day: duckdb_example_gen.ingest_fingerprint(
        warehouse.span_fingerprint(day), key) for day in days}
  snap = store.load(home.metadata) if home.metadata.exists() else None
  ingested = (queries.ingested_spans(snap, key, min(wanted, default=span),
                                     span) if snap is not None else {})
  todo = []
  for day, fingerprint in wanted.items():
    examples = ingested.get(day)
    if (examples is None or IngestFingerprint.read(examples) != fingerprint or
        queries.data_gate_report(snap, examples.id) is None):
      todo.append(day)
  return todo


@contextlib.contextmanager
def crash_points() -> Iterator[None]:
  """The kill matrix's node points (taxi_demand.faults), while armed."""
  from taxi_demand import faults  # noqa: PLC0415
  if not faults.armed().startswith("node."):
    yield
    return
  from pipeline.progress import CrashPoints  # noqa: PLC0415
  handler, root = CrashPoints(), logging.getLogger()
  root.addHandler(handler)
  try:
    yield
  finally:
    root.removeHandler(handler)


def ingest_options():
  """The tfx RunOptions of a day's run up to DataGate: the node table's
  INGEST group (its nodes that no other ingest node reads, and all they
  read)."""
  from tfx.orchestration import pipeline as tfx_pipeline  # noqa: PLC0415
  return tfx_pipeline.RunOptions(to_nodes=nodes.ingest_ends())


def ingest(pipeline, home: Home, span: int) -> None:
  """Runs a day's pipeline up to DataGate: ingested, checked, one line."""
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: PLC0415
  started = time.monotonic()
  with crash_points():
    LocalDagRunner().run(pipeline, run_options=ingest_options())
  say(f"  ingest {spans.date_of(span)}: {ingest_verdict(home)} "
      f"({time.monotonic() - started:.1f} s)")


def ingest_verdict(home: Home) -> str:
  """What DataGate said of the last run's day: passed, or refused and
  why."""
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = store.load(home.metadata)
  report = snap.run_output(snap.last_run(), contract.DATA_GATE,
                           contract.REPORT)
  return ("checked" if report is None else
          "passed" if DataGateRecord.read(report).passed else
          "refused, left out of every window: " + "; ".join(
              _refusal_lines(report.uri)[:2]))


def ingest_window(args, home: Home, span: int,
                  note: Callable[[dict], None] = lambda step: None) -> None:
  """Ingests the days of `span`'s window that need it; fails if none passed.

  `note` is told of each day before its run (RunLock.note), for --resume.
  """
  from pipeline.components import duckdb_example_gen  # noqa: PLC0415
  from pipeline import staged_ingest  # noqa: PLC0415
  from pipeline.pipeline import create_pipeline  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  config = build_config(args, home, span)
  key = duckdb_example_gen.query_key(duckdb_example_gen.input_config_for(
      config.query))
  todo = window_to_ingest(home, span, args.train_days, key)
  if todo:
    say(f"window of {spans.date_of(span)}: ingesting {len(todo)} day(s) "
        f"{spans.date_of(todo[0])} .. {spans.date_of(todo[-1])}, once each")
  staged = stage_window(config, todo, key)
  for day in todo:
    note(Step(day, ingest=True).record(span))
    ingest(create_pipeline(build_config(args, home, day)), home, day)
  # What a day's run took from elsewhere (TFX's cache) stays staged.
  staged_ingest.discard(config.pipeline_root, staged.items())
  window = queries.training_window(store.load(home.metadata), span,
                                   args.train_days, key)
  if not window:
    raise TaxiDemandError(
        f"no day before {spans.date_of(span)} has passed data validation "
        f"(the window looks back {2 * args.train_days} days at most); load "
        "trips for the days before it, or pick a later --date")


def stage_window(config, todo: List[int], key: str) -> Dict[int, Any]:
  """Stages the examples and statistics of the window days `todo` in one
  Beam pass (staged_ingest.stage), when there are several: their runs
  adopt them. Returns {day: its IngestFingerprint} of the days staged.

  A single day (the marginal day's window) is left to its run: one pass
  or its own, the Beam start-up is the same, and adopting adds nothing.
  """
  if len(todo) < 2:
    return {}
  from pipeline.components import duckdb_example_gen  # noqa: PLC0415
  from pipeline import staged_ingest  # noqa: PLC0415
  from pipeline.pipeline import SCHEMA_FILE  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  with wh.Warehouse(config.warehouse_path, read_only=True) as warehouse:
    days = {day: duckdb_example_gen.ingest_fingerprint(
        warehouse.span_fingerprint(day), key) for day in todo}
  started = time.monotonic()
  done = staged_ingest.stage(
      config.pipeline_root, config.warehouse_path,
      duckdb_example_gen.input_config_for(config.query), days, SCHEMA_FILE,
      config.beam_pipeline_args,
      one_query=sql.range_independent(config.query))
  say(f"  staged {len(done)} day(s)' examples and statistics in one pass "
      f"({time.monotonic() - started:.1f} s)" if done else
      "  their examples and statistics were staged already")
  return days


def _refusal_lines(report_uri: str) -> List[str]:
  from pipeline.components import data_gate  # noqa: PLC0415
  return data_gate.verdict_lines(report_uri) or ["see the run's log"]


@dataclasses.dataclass
class RunResult:
  span: int
  run_id: Optional[str]
  ok: bool
  nodes: list
  summary: dict
  snap: Any = None                # the step's reader of ML Metadata


def execute(pipeline, config, options, home: Home) -> RunResult:
  """Runs one pipeline with a console line per node; never raises for alerts."""
  from pipeline import progress as node_progress  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  # Each node's line is read from its execution's state in ML Metadata.
  progress = node_progress.NodeProgress(home.metadata)
  say(f"run {config.pipeline_name} for {spans.date_of(config.span)} "
      f"(span {config.span}, {config.train_days}-day window)")
  try:
    with crash_points():
      node_progress.run(pipeline, options, progress)
  except Exception as e:  # the node's error; described below
    alert = _alert_in(e)
    progress.stop("ALERT" if alert else "FAILED")
    raise (alert or e)  # noqa: B904 - the alert is a cause of e, or e itself
  except BaseException:  # Ctrl-C: the node it stopped says so
    progress.stop("stopped")
    raise
  progress.stop()
  # The step's one reader of the finished run: the refusal check here, the
  # summary after.
  snap = store.load(home.metadata)
  refused = refusal(home, snap)
  if refused is not None:
    raise refused
  return RunResult(span=config.span, run_id=None, ok=True,
                   nodes=progress.rows, summary={}, snap=snap)


def refusal(home: Home, snap=None) -> Optional[AlertError]:
  """DataGate's refusal of the last run's day as an alert, or None.

  `snap` is the step's reader (store.load of the home's metadata if None).
  """
  from pipeline.components import data_gate  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = snap or store.load(home.metadata)
  last = snap.last_run()
  report = last and snap.run_output(last, contract.DATA_GATE, contract.REPORT)
  if report is None or DataGateRecord.read(report).passed is not False:
    return None
  span = queries.run_span(snap, last)
  return data_gate.DataValidationAlert(
      f"data validation refused span {span} ({spans.day_of(span)}); "
      "nothing was trained or pushed:\n" +
      "\n".join(data_gate.verdict_lines(report.uri)))


def _alert_in(error: BaseException) -> Optional[AlertError]:
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, AlertError):
      return error
    error = error.__cause__ or error.__context__
  return None


def print_summary(home: Home, config, snap=None) -> dict:
  """The closing lines of a run, read back from ML Metadata (through the
  step's reader `snap`, if given)."""
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = snap or store.load(home.metadata)
  last = snap.last_run()
  if last is None:
    return {}
  summary = queries.run_summary(snap, last)
  def fmt(v):
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float)
                                    else str(v))
  say("summary")
  say(f"  run {summary['run_id']}  span {summary['span']} "
      f"({spans.date_of(summary['span']) if summary['span'] is not None else '?'})")
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  with wh.Warehouse(home.warehouse, read_only=True) as warehouse:
    trips = warehouse.trips_on(config.span)
  say(f"  rows: {trips} trips on the day; examples: train "
      f"{fmt(summary.get('train_examples'))}, eval "
      f"{fmt(summary.get('eval_examples'))}")
  say(f"  anomalies {fmt(summary.get('anomalies'))}; drift "
      f"{summary.get('drift') or 'n/a'}")
  say(f"  MAE {fmt(summary.get('mae'))} vs seasonal naive "
      f"{fmt(summary.get('seasonal_naive_mae'))} vs serving model "
      f"{fmt(summary.get('baseline_model_mae'))}")
  blessed = summary.get("blessed")
  pushed = summary.get("pushed_version")
  serving = queries.serving_version(snap)
  say(f"  blessed: {'yes' if blessed else 'no'}"
      + (f" ({summary['reasons']})" if summary.get("reasons") else "")
      + (f"; pushed version {pushed}" if pushed else "; nothing pushed")
      + (f" (not serving: version {serving}, for a later day, still serves;"
         " `taxi-demand rollback --to` switches)"
         if pushed and serving and serving != pushed else ""))
  return summary


def headline(error: BaseException) -> str:
  """The most telling single line of an error message.

  TensorFlow's messages open with "in user code:" and end with the cause.
  """
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return ""
  return lines[-1] if lines[0].endswith(":") else lines[0]


def guarded(verbose: bool) -> ContextManager[errors.Outcome]:
  """Turns failures into one line and an exit code in `outcome.exit_code`.

  Alerts print one ALERT line each; any other error is logged whole to the
  run's log file first. Wrap it in `logs.preserved()` (runner_local.main) so
  that log file is still open when the error is logged.
  """
  return errors.exit_codes(
      "error: ", verbose,
      alert_prefix="ALERT: ",
      interrupted="interrupted; `python runner_local.py --resume` continues",
      unexpected=lambda e: (
          f"the run failed: {type(e).__name__}: {headline(e)} (details in "
          "the log; `--resume` reruns from the failed node)"),
      log_unexpected=lambda e: _log.error("the run failed", exc_info=e))


def prepare(home: Home, args) -> None:
  """State folders, the log file, and the default warehouse when empty."""
  home.local_warehouse("the local run (runner_local.py)")
  home.ensure()
  # The caller restores logging (logs.preserved() in runner_local.main).
  log_file = logs.configure(home.logs, verbose=args.verbose,
                            name="run").log_file
  say(f"home {home.root}; logs {log_file}")
  ensure_warehouse(home, sample=args.sample)
