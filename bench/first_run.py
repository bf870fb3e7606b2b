"""A new user's first `make run`, timed by phase from an empty home.

  .venv/bin/python bench/first_run.py                  # about 2-5 minutes
  .venv/bin/python bench/first_run.py --keep /tmp/fr   # keep the home there
  .venv/bin/python bench/first_run.py --repo /tmp/old  # time another checkout
                                                       # with this venv

Runs what the Makefile's `run` target runs once the venv is built, on a
fresh `--home` in a temporary folder: `runner_local.py` (an empty warehouse
is simulated and loaded, the newest day's 28-day window is ingested, then
the day's own run), then `taxi-demand report` when the run exits 0 or 3.
Both are child processes of this venv's Python, with the checkout's own
code first on the path (`--repo`: a checkout of another commit, e.g. to
time the code before a change with the same environment).

Phases are cut where the runner's console says a phase begins or ends,
timed as each line arrives: `startup` (imports, up to the home line),
`simulate_load` (the empty warehouse filled), `window_ingest` (its days,
with each day's seconds as the runner printed them, and within it
`staging_pass_s`, the one Beam pass that staged their examples and
statistics for those days' runs to adopt), `day_run` (the day's
own pipeline run, up to the runner's exit) and `report`. The day's run is
broken down by node from ML Metadata (each execution's recorded start to
its last update), and so are the ingests: each node's median over the
window's days. Other work on the machine stretches every figure: the
load average before and after is in the JSON, and worth quoting with it,
and so is the CPU time the commands used (`cpu_s`), which it stretches
less.

Prints one JSON object: total seconds, the phases, the day's nodes, the
target (120 s) and `ok` (total <= target). Exit 0 whether or not the
target is met; 1 if the run failed (its output's tail is on stderr).
`--json` is accepted for `make bench` (the output is always JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from taxi_demand.testing import benches  # noqa: E402  (after the path)
TARGET_S = 120.0  # issue 30: a fresh `make run` in two minutes on 2 cores

# The runner's console lines that open a phase (pipeline/local_run.py).
_MARKS = {
    "home": re.compile(r"^home \S+; logs "),
    "simulate_load": re.compile(r"^empty warehouse: "),
    "window_ingest": re.compile(r"^window of \S+: ingesting "),
    "day_run": re.compile(r"^run \S+ for \S+ \(span "),
}
_INGESTED_DAY = re.compile(r"^  ingest (\S+): .*\((\d+(?:\.\d+)?) s\)$")
# The window's one Beam pass (local_run.stage_window), inside window_ingest.
_STAGED = re.compile(r"^  staged (\d+) day\(s\)' .* in one pass "
                     r"\((\d+(?:\.\d+)?) s\)$")


def _child_env(repo: Path) -> Dict[str, str]:
  """The environment of the timed commands: `repo`'s code first."""
  env = dict(os.environ)
  env.pop("TAXI_DEMAND_HOME", None)  # --home says where
  env["PYTHONPATH"] = os.pathsep.join(
      [str(repo)] + [p for p in [env.get("PYTHONPATH")] if p])
  return env


def run_timed(argv: List[str], repo: Path) -> dict:
  """Runs `argv`, stamping each stdout line with its arrival (seconds from
  the start). Returns {"lines": [(t, line)], "seconds", "cpu_s" (its
  CPU time, children included), "exit_code"}."""
  started, cpu_before = time.monotonic(), benches.children_cpu_s()
  lines = []
  proc = subprocess.Popen(argv, cwd=repo, env=_child_env(repo),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1)
  assert proc.stdout is not None
  for line in proc.stdout:
    lines.append((time.monotonic() - started, line.rstrip("\n")))
  code = proc.wait()
  return {"lines": lines, "seconds": time.monotonic() - started,
          "cpu_s": benches.children_cpu_s() - cpu_before, "exit_code": code}


def phases(lines: List[tuple], total: float) -> dict:
  """The runner's phases in seconds, cut at the lines that open them."""
  opened: Dict[str, float] = {}
  days: List[float] = []
  staged: Optional[tuple] = None
  for at, line in lines:
    for name, mark in _MARKS.items():
      if name not in opened and mark.match(line):
        opened[name] = at
    found = _INGESTED_DAY.match(line)
    if found:
      days.append(float(found.group(2)))
    found = _STAGED.match(line)
    if found:
      staged = (int(found.group(1)), float(found.group(2)))
  order = [name for name in _MARKS if name in opened]
  out: Dict[str, Optional[float]] = {"startup": opened.get("home")}
  for name, following in zip(order, order[1:] + [None]):
    if name != "home":
      out[name] = (opened[following] if following else total) - opened[name]
  for name in _MARKS:
    out.setdefault(name, None)
  del out["home"]
  result = {k: (None if v is None else round(v, 1)) for k, v in out.items()}
  result["window_days"] = len(days)
  # Of window_ingest: the one pass that staged the days' examples and
  # statistics, and the days' runs that adopted them (ingest_day_s).
  result["staged_days"] = staged[0] if staged else 0
  result["staging_pass_s"] = staged[1] if staged else None
  result["ingest_day_s"] = ({
      "min": min(days), "median": statistics.median(days), "max": max(days)}
      if days else None)
  return result


def _seconds(run) -> Dict[str, float]:
  """{node id: seconds from its execution's start to its last update}."""
  return {n.node_id: (n.end_ms - n.start_ms) / 1000
          for n in run.nodes if n.end_ms and n.start_ms}


def nodes_by_run(metadata: Path) -> dict:
  """The home's runs by node, from ML Metadata: the last run's (the day's)
  seconds per node, and the median per node of the runs before it (the
  window's ingests)."""
  from taxi_demand.lineage import store  # noqa: PLC0415  (no TensorFlow)
  *ingests, last = store.load(metadata).runs or [None]
  per_node: Dict[str, List[float]] = {}
  for run in ingests:
    for node_id, seconds in _seconds(run).items():
      per_node.setdefault(node_id, []).append(seconds)
  return {
      "day_run_nodes_s": ({k: round(v, 1) for k, v in _seconds(last).items()}
                          if last is not None else {}),
      "ingest_day_nodes_median_s": {
          k: round(statistics.median(v), 2) for k, v in per_node.items()},
  }


def commit_of(repo: Path) -> Optional[str]:
  proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short",
                         "HEAD"], capture_output=True, text=True, check=False)
  return proc.stdout.strip() or None


def first_run(repo: Path, home: Path) -> dict:
  """Times `make run`'s two commands on `home` (which must not exist)."""
  python = sys.executable
  load_before = os.getloadavg()
  run = run_timed([python, str(repo / "runner_local.py"), "--home",
                   str(home)], repo)
  report = None
  if run["exit_code"] in (0, 3):  # as the Makefile's `run`
    report = run_timed([python, "-c", "import sys; from taxi_demand.cli "
                        "import main; sys.exit(main())", "report", "--home",
                        str(home)], repo)
  total = run["seconds"] + (report["seconds"] if report else 0.0)
  figures = phases(run["lines"], run["seconds"])
  figures["report"] = round(report["seconds"], 1) if report else None
  failed = run["exit_code"] not in (0, 3) or (
      report is not None and report["exit_code"] != 0)
  if failed:
    tail = (report or run) if run["exit_code"] in (0, 3) else run
    for _, line in tail["lines"][-30:]:
      print(line, file=sys.stderr)
  return {
      "bench": "first_run",
      "repo": str(repo), "commit": commit_of(repo),
      "total_s": round(total, 1),
      # Less stretched than wall time by other work on the machine.
      "cpu_s": round(run["cpu_s"] + (report["cpu_s"] if report else 0.0), 1),
      "phases_s": figures,
      **(nodes_by_run(home / "metadata.sqlite")
         if (home / "metadata.sqlite").exists() else {}),
      "run_exit_code": run["exit_code"],
      "report_exit_code": report["exit_code"] if report else None,
      "target_s": TARGET_S,
      "ok": not failed and total <= TARGET_S,
      "cores": os.cpu_count(),
      "load_average": {"before": [round(x, 2) for x in load_before],
                       "after": [round(x, 2) for x in os.getloadavg()]},
      "failed": failed,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repo", type=Path, default=REPO,
                      help="the checkout whose runner_local.py to time "
                      "(default: this one)")
  parser.add_argument("--keep", type=Path, metavar="DIR",
                      help="make the home at DIR (which must not exist) and "
                      "keep it; default: a temporary folder, removed")
  parser.add_argument("--json", action="store_true",
                      help="accepted for `make bench`; the output is JSON")
  args = parser.parse_args(argv)
  repo = args.repo.resolve()
  if not (repo / "runner_local.py").is_file():
    print(f"error: {repo} has no runner_local.py", file=sys.stderr)
    return 1
  if args.keep is not None and args.keep.exists():
    print(f"error: {args.keep} exists; the bench starts from an empty home",
          file=sys.stderr)
    return 1
  work = Path(tempfile.mkdtemp(prefix="first_run-"))
  home = args.keep.resolve() if args.keep is not None else work / "home"
  try:
    result = first_run(repo, home)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  print(json.dumps(result, indent=2))
  return 1 if result["failed"] else 0


if __name__ == "__main__":
  sys.exit(main())
