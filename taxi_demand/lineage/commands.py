"""`taxi-demand runs|show|diff|lineage`: questions to ML Metadata.

They only read metadata and never import TensorFlow: each opens the store
(`store.load`), asks `queries` what it needs and formats the answer.
"""

from __future__ import annotations

import argparse
import os

# The runs shown unless --last or --all says otherwise: two months of daily
# runs, read in a few hundred milliseconds however long the history is.
RUNS_PAGE = 60

_RUNS_EPILOG = """\
Columns: run id, day (span), status, wall time, the model's MAE on its eval
day against the seasonal-naive MAE, blessed, the version pushed, and the
newest next-day result of that version (MAE on the day after, ! = alert).
Runs from an older layout (no ForecastGate, no recorded parameters) show n/a.

Status: COMPLETE, REFUSED (DataGate refused the day), INGESTED (a day of a
later window, up to DataGate), FAILED, RUNNING, or ABORTED: its process died
mid-node (kill -9, power loss). A run left RUNNING with no daily run alive
on the home shows ABORTED at once; the next daily run records it so in ML
Metadata, and `runner_local.py --resume` continues it.

Shows the newest {page} runs unless told otherwise, oldest first, as a long
history makes the full table slow to read and to ask for: --last N shows the
newest N, --all every run.

Examples:
  taxi-demand runs --last 5
  taxi-demand runs --all --json
""".format(page=RUNS_PAGE)

_LINEAGE_EPILOG = """\
Walks ML Metadata upstream from a pushed model: Trainer, Transform (graph,
transformed examples), the schema, ExampleGen's examples and statistics, down
to the trips days the query read. Also shows the blessing, rollbacks to the
version, its warm-start chain (each model once, with the base model it
started from) and its next-day (degradation) history. --span goes
downstream instead: every model whose training window included that day.

Examples:
  taxi-demand lineage serving
  taxi-demand lineage 1732000000 --json
  taxi-demand lineage --span 2024-02-05
"""


def _snapshot(home):
  from taxi_demand.lineage import store  # noqa: PLC0415
  return store.load(home.metadata)


def _fmt(value, digits: int = 3) -> str:
  from taxi_demand.lineage import queries  # noqa: PLC0415
  return queries.format_value(value, digits)


def _table(rows, headers, indent: str = "") -> None:
  widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
            for i, h in enumerate(headers)]
  for line in [headers] + rows:
    print(indent + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


# --- runs --------------------------------------------------------------------


def _runs(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  if args.last is not None and args.last < 1:
    raise TaxiDemandError(f"--last must be >= 1, got {args.last}")
  snap = _snapshot(home)
  last = None if args.all else (
      RUNS_PAGE if args.last is None else args.last)
  every = snap.runs
  runs = every[-last:] if last else every
  queries.prefetch_rows(snap, runs)
  rows = []
  alive = _daily_run_alive(home)
  for run in runs:
    row = queries.run_row(snap, run)
    if row["status"] == "RUNNING" and alive is False:
      row["status"] = "ABORTED"
    rows.append(row)
  # With --last, the next-day results of the versions shown, not of all.
  history = queries.next_day_history(snap, [
      r["pushed_version"] for r in rows if r["pushed_version"]]
                                     if len(runs) < len(every) else None)
  for row in rows:
    row["next_day"] = [{k: r.get(k) for k in ("date", "mae", "alert")}
                       for r in history.get(str(row["pushed_version"]), [])
                       ] if row["pushed_version"] else []
  if args.json:
    cli.print_json(rows)
    return 0
  if not rows:
    print("no runs in ML Metadata yet")
    return 0
  _table([[r["run_id"], f"{_fmt(r['date'])} ({_fmt(r['span'])})", r["status"],
           f"{r['wall_s']:.1f}s", _fmt(r["mae"]),
           _fmt(r["seasonal_naive_mae"]), _blessed_cell(r),
           _fmt(r["pushed_version"]), _next_day_cell(r["next_day"])]
          for r in rows],
         ["run", "day (span)", "status", "wall", "MAE", "naive MAE",
          "blessed", "pushed", "next-day MAE"])
  if len(runs) < len(every):
    print(f"the newest {len(runs)} of {len(every)} runs; --all lists every "
          "one")
  if any(r["unmeasured"] for r in rows):
    print("* decided without the checks named: the day lacked what they "
          "need (`taxi-demand show RUN` says what)")
  return 0


def _blessed_cell(row) -> str:
  """yes/no, with the checks it was decided without: "yes (no
  guidance*)"."""
  cell = _fmt(row["blessed"])
  if row["unmeasured"]:
    cell += f" (no {','.join(row['unmeasured'])}*)"
  return cell


def _daily_run_alive(home):
  """Whether a daily run holds the home's run lock: True, False, or None
  where the system cannot tell (no /proc/locks). Takes no lock itself."""
  from taxi_demand import locks  # noqa: PLC0415
  if not home.run_lock.exists():
    return False
  if not os.path.exists("/proc/locks"):
    return None
  return bool(locks.holders(home.run_lock, include_self=True))


def _next_day_cell(results) -> str:
  if not results:
    return "-"
  last = results[-1]
  flag = "!" if last["alert"] else ""
  return f"{_fmt(last['mae'])}{flag} ({last['date']}, {len(results)}d)"


# --- show --------------------------------------------------------------------


def _show(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  snap = _snapshot(home)
  detail = queries.run_detail(snap, snap.run(args.run))
  if args.json:
    cli.print_json(detail)
    return 0
  print(f"run {detail['run_id']}  day {_fmt(detail['date'])} (span "
        f"{_fmt(detail['span'])})  {detail['status']}  "
        f"{detail['wall_s']:.1f}s  {_fmt(detail['start'])} .. "
        f"{_fmt(detail['end'])}")
  print("nodes")
  _table([[n["node"], n["status"], f"{n['wall_s']:.1f}s",
           "cache hit" if n["cached"] else ""] for n in detail["nodes"]],
         ["node", "status", "wall", "cache"], indent="  ")
  print("parameters")
  for key, value in sorted((detail["parameters"] or {}).items()):
    print(f"  {key}: {value}")
  if detail["parameters"] is None:
    print("  n/a (not recorded by this run's layout)")
  print("metrics")
  for key, value in detail["metrics"].items():
    print(f"  {key}: {_fmt(value, 4)}")
  print(f"  blessed: {_fmt(detail['blessed'])}"
        + (f" ({detail['reasons']})" if detail["reasons"] else "")
        + f"; pushed version {_fmt(detail['pushed_version'])}")
  print("anomalies")
  for key, value in (detail["anomalies"] or {"n/a": None}).items():
    print(f"  {key}: {_fmt(value)}")
  return 0


# --- diff --------------------------------------------------------------------


def _diff(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  snap = _snapshot(home)
  diff = queries.diff_runs(snap, snap.run(args.run_a), snap.run(args.run_b))
  if args.json:
    cli.print_json(diff)
    return 0
  print(f"a {diff['a']}\nb {diff['b']}")
  sections = [k for k in ("parameters", "data", "schema", "metrics",
                          "code_version") if k in diff]
  if not sections:
    print("no differences")
  for section in ("parameters", "data"):
    if section in diff:
      print(section)
      for key, change in diff[section].items():
        print(f"  {key}: {_fmt(change['a'])} -> {_fmt(change['b'])}")
  if "schema" in diff:
    schema = diff["schema"]
    print("schema")
    for name in schema["added"]:
      print(f"  + {name}")
    for name in schema["removed"]:
      print(f"  - {name}")
    for name, change in schema["changed"].items():
      print(f"  ~ {name}: {change['a']}  ->  {change['b']}")
  if "metrics" in diff:
    print("metrics")
    for key, change in diff["metrics"].items():
      delta = change["delta"]
      print(f"  {key}: {_fmt(change['a'], 4)} -> {_fmt(change['b'], 4)}"
            + ("" if delta is None else f" ({delta:+.4f})"))
  if "code_version" in diff:
    code = diff["code_version"]
    print(f"code_version: {_fmt(code['a'])} -> {_fmt(code['b'])}")
  return 0


# --- lineage -----------------------------------------------------------------


def _lineage(args, home) -> int:
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.errors import TaxiDemandError  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  snap = _snapshot(home)
  if args.span:
    if args.version:
      raise TaxiDemandError("give a MODEL_VERSION or --span, not both")
    models = queries.models_trained_on(snap, queries.span_of_date(args.span))
    if args.json:
      cli.print_json({"date": args.span, "models": models})
      return 0
    print(f"models trained on {args.span}: {len(models)}")
    for m in models:
      print(f"  model #{m['model_id']} run {m['run_id']} pushed "
            f"{_fmt(m['pushed_version'])}  {m['uri']}")
    return 0
  version = queries.resolve_version(snap, args.version)
  tree = queries.lineage_of_version(snap, version)
  if args.json:
    cli.print_json(tree)
    return 0
  for line in queries.version_lines(tree):
    print(line)
  return 0


def register(subparsers, parents) -> None:
  """Adds runs, show, diff and lineage."""
  from taxi_demand.cli import json_parent  # noqa: PLC0415 - argparse only
  with_json = parents + [json_parent()]
  fmt = argparse.RawDescriptionHelpFormatter

  runs = subparsers.add_parser(
      "runs", parents=with_json, help="table of pipeline runs from ML Metadata",
      description="Pipeline runs, oldest first: the newest "
      f"{RUNS_PAGE} unless --last or --all says otherwise.",
      epilog=_RUNS_EPILOG, formatter_class=fmt)
  shown = runs.add_mutually_exclusive_group()
  shown.add_argument("--last", type=int, metavar="N", default=None,
                     help=f"only the newest N runs (default {RUNS_PAGE})")
  shown.add_argument("--all", action="store_true",
                     help="every run in ML Metadata")
  runs.set_defaults(handler=_runs, writes_logs=False)

  show = subparsers.add_parser(
      "show", parents=with_json, help="one run: nodes, parameters, metrics",
      description="One run: every node with status, time and cache hit; "
      "parameters; metrics; anomalies.", formatter_class=fmt,
      epilog="RUN is a run id, a unique prefix of one, or 'last'.\n\n"
      "Examples:\n  taxi-demand show last\n  taxi-demand show 2024-11-28T04")
  show.add_argument("run", metavar="RUN")
  show.set_defaults(handler=_show, writes_logs=False)

  diff = subparsers.add_parser(
      "diff", parents=with_json, help="what differs between two runs",
      description="Only what differs: parameters, data spans and row counts, "
      "schema features, metrics (with deltas), code version.",
      formatter_class=fmt,
      epilog="Examples:\n  taxi-demand diff RUN_A RUN_B --json")
  diff.add_argument("run_a", metavar="RUN_A")
  diff.add_argument("run_b", metavar="RUN_B")
  diff.set_defaults(handler=_diff, writes_logs=False)

  lineage = subparsers.add_parser(
      "lineage", parents=with_json,
      help="a model's tree back to the trips it was trained on",
      description="The lineage of a pushed model version, with URIs.",
      epilog=_LINEAGE_EPILOG, formatter_class=fmt)
  lineage.add_argument("version", nargs="?", default=None,
                       metavar="MODEL_VERSION|serving",
                       help="a pushed version (default: serving)")
  lineage.add_argument("--span", metavar="DATE", default=None,
                       help="downstream: models trained on this day")
  lineage.set_defaults(handler=_lineage, writes_logs=False)
