"""Daily-span pipeline speed: marginal day, window growth, 500 m grid, TFX.

  .venv/bin/python bench/pipeline.py --json             # everything, 1 h+
  .venv/bin/python bench/pipeline.py --only default,tfx --workdir /tmp/b
  .venv/bin/python bench/pipeline.py --only growth --growth-windows 2,4
      --train-steps 20                   # a quick check of the bench itself

Every pipeline run is its own Python process (one per day, as a daily
schedule runs it) with the same Beam settings (DirectRunner, one in-memory
worker), on a fresh home over a copy of a simulated warehouse built once.
Times are the child process's wall time (imports included); peak RSS is the
child's process tree, sampled every 0.2 s. Phases (--only):

  default  the default city (42 days from 2024-01-01, seed 7), D+1 = its
           newest day. The previous design (--baseline-rev, checked out into
           a temporary `git worktree`): one run of D+1 on a fresh home, which
           re-reads the whole 28-day window ("today's full run"). This tree:
           D on a fresh home (cold: ingests the window's 28 days first), then
           D+1 (the marginal day). Target: marginal <= 0.5 x full.
           Then D again on that home, an earlier day rerun: first as is
           (TFX's cache on: nothing changed, so every node is a cache hit),
           then with --no-cache, every node running again: its window's
           days are in the analyzer caches D and D+1 wrote, so Transform
           should analyse none of them again. Target: that rerun <= 1.2 x marginal (D is the
           home's first day: its rerun trains from scratch, --train-steps,
           where D+1 warm-starts). About 17 minutes at --train-steps 50
           (full run 2.3, cold run 8, of which 4.5 ingesting, marginal day
           2, reruns 0.5 and 2), plus the training time of 4 runs at the
           default steps.
  grid     the same on `--spatial-unit grid --grid-metres 500`. Targets:
           marginal <= 0.4 x full, <= 4 min wall, <= 4 GB peak RSS.
           Longer than `default`: more cells, so more examples a day.
  growth   a 66-day city (same seed and scale): this tree's cold run of D and
           marginal D+1 with --train-days 28, then again with --train-days
           56, each on its own home (--growth-windows changes the two).
           Target: marginal(56) <= 1.25 x marginal(28), like with like.
           Whether a day's candidate is blessed and pushed is the gates'
           verdict, not the window's cost: if both marginal days pushed,
           or both refused, the ratio is of their wall times; if one
           pushed and the other refused, of their wall times less each
           one's Pusher node (`ratio_basis` says which). `outcomes` holds
           each run's verdict and Pusher time (the cold runs, both pushed,
           show how the Pusher grows with the window), and
           `marginal_56_over_28_whole_run` the plain ratio. About 25
           minutes (84 days ingested, 4 runs), plus the training of 4 runs.
  tfx      TFX's chicago_taxi_pipeline native-Keras example from the
           installed wheel, on its 15k-trip sample, by LocalDagRunner. With
           `default`: our marginal day <= 1.0 x its wall time, on >= 5 x its
           examples (the marginal run's train + eval examples).
           About 2 minutes.

Prints one JSON object: per phase and run, the wall time, the in-process
runner time, CPU time, CPU time other processes used meanwhile (other
work stretches wall times: run it on an idle machine), the window ingestion
(days, time, per node), per-node wall time, CPU time (not stretched by
other work) and peak RSS of the day's own run, and examples; and "targets"
of the phases run, each with its value, limit and whether it is met
(null for tfx's without `default`). Progress goes to stderr. Exit 0
whether or not targets are met; 1 on an error (e.g. the baseline revision
is missing, or a run failed: its log tail is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# TFX's example runs as runner_local.py does (pipeline/local_run.py
# build_config): no Beam flags, the DirectRunner's one in-memory worker.
# Any flag would make each of its Beam nodes package TFX for remote workers
# (seconds a node) that ours no longer pay.
BEAM_ARGS: list = []
_RUNNING = re.compile(r"^Component (\S+) is running\.$")
_FINISHED = re.compile(r"^Component (\S+) is finished\.$")

PHASES = ("default", "grid", "growth", "tfx")
BASELINE_REV = "128ba94"  # the last commit before daily spans (issue 12)
GRID_FLAGS = ["--spatial-unit", "grid", "--grid-metres", "500"]
GROWTH_WINDOWS = (28, 56)
LOOKBACK_DAYS = 7  # taxi_demand.features.LOOKBACK_DAYS, checked at build time
MIN_FREE_GB = 5
LIMITS = {
    "marginal_over_full": 0.5,
    "earlier_day_rerun_over_marginal": 1.2,
    "grid_marginal_over_full": 0.4,
    "grid_marginal_wall_s": 240.0,
    "grid_marginal_peak_rss_gb": 4.0,
    "window_growth": 1.25,  # marginal(long window) / marginal(short)
    "ours_over_tfx_wall": 1.0,
    "ours_over_tfx_examples": 5.0,  # a lower bound
}


class BenchError(Exception):
  """A one-line reason the bench cannot go on."""


def say(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


# ---- the child: one pipeline run in its own process ------------------------


class NodeRecorder(logging.Handler):
  """Per-node wall time and peak RSS (this process and its children).

  Nodes of the window's ingestion runs (phase "ingest") are summed apart
  from the day's own run (phase "run").
  """

  def __init__(self):
    super().__init__(logging.INFO)
    import psutil  # noqa: PLC0415
    self._proc = psutil.Process()
    self.phase = "run"
    self.components = {"run": {}, "ingest": {}}
    self._node = None
    self._start = 0.0
    self._cpu_start = 0.0
    self._peak = 0
    self._stop = threading.Event()
    threading.Thread(target=self._sample, daemon=True).start()

  def _rss(self) -> int:
    total = self._proc.memory_info().rss
    for child in self._proc.children(recursive=True):
      try:
        total += child.memory_info().rss
      except Exception:  # pylint: disable=broad-except  (child just exited)
        pass
    return total

  def _sample(self):
    while not self._stop.wait(0.05):
      if self._node is not None:
        self._peak = max(self._peak, self._rss())

  def emit(self, record):
    message = record.getMessage()
    if m := _RUNNING.match(message):
      self._node, self._start, self._peak = m.group(1), time.monotonic(), \
          self._rss()
      # CPU time, all threads (Beam's too): unlike the wall time, not
      # stretched by other work on the machine.
      self._cpu_start = _own_cpu_s()
    elif (m := _FINISHED.match(message)) and self._node == m.group(1):
      wall = time.monotonic() - self._start
      cpu = _own_cpu_s() - self._cpu_start
      peak = max(self._peak, self._rss()) / 2**20
      seen = self.components[self.phase].setdefault(
          self._node, {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0,
                       "runs": 0})
      seen["wall_s"] = round(seen["wall_s"] + wall, 2)
      seen["cpu_s"] = round(seen["cpu_s"] + cpu, 2)
      seen["peak_rss_mb"] = round(max(seen["peak_rss_mb"], peak), 1)
      seen["runs"] += 1
      self._node = None


def _check_imports(repo: Path) -> dict:
  """Where runner_local, pipeline and taxi_demand come from; must be `repo`."""
  import runner_local  # noqa: PLC0415
  import pipeline  # noqa: PLC0415
  import taxi_demand  # noqa: PLC0415
  found = {m.__name__: str(Path(m.__file__).resolve())
           for m in (runner_local, pipeline, taxi_demand)}
  for name, path in found.items():
    if not Path(path).is_relative_to(repo):
      raise SystemExit(f"{name} imports from {path}, not from {repo}")
  return found


def child_ours(home: str, runner_args: list, repo: Path) -> dict:
  imports = _check_imports(repo)
  import runner_local  # noqa: PLC0415
  from pipeline import local_run  # noqa: PLC0415
  recorder = NodeRecorder()
  logging.getLogger("absl").addHandler(recorder)
  ingests = []
  original_ingest = getattr(local_run, "ingest", None)  # daily spans only
  if original_ingest is not None:
    def timed_ingest(pipeline_, home_, span, *args, **kwargs):
      recorder.phase = "ingest"
      started = time.monotonic()
      try:
        return original_ingest(pipeline_, home_, span, *args, **kwargs)
      finally:
        ingests.append({"span": span,
                        "wall_s": round(time.monotonic() - started, 2)})
        recorder.phase = "run"
    local_run.ingest = timed_ingest
  started = time.monotonic()
  code = runner_local.main(["--home", home, *runner_args])
  runner_s = time.monotonic() - started
  if code != 0:
    raise SystemExit(f"runner_local.py {' '.join(runner_args)} exited {code}")
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = store.load(Path(home) / "metadata.sqlite")
  summary = queries.run_summary(snap, snap.run("last"))
  ingest_s = sum(i["wall_s"] for i in ingests)
  return {
      "runner_s": round(runner_s, 2),
      "run_s": round(runner_s - ingest_s, 2),
      "ingest": {"days": len(ingests), "wall_s": round(ingest_s, 2),
                 "per_day_s": [i["wall_s"] for i in ingests],
                 "components": recorder.components["ingest"]},
      "components": {node: {"wall_s": c["wall_s"], "cpu_s": c["cpu_s"],
                            "peak_rss_mb": c["peak_rss_mb"]}
                     for node, c in recorder.components["run"].items()},
      "train_examples": summary.get("train_examples"),
      "eval_examples": summary.get("eval_examples"),
      "examples": (summary.get("train_examples") or 0) +
                  (summary.get("eval_examples") or 0),
      "summary": {k: summary.get(k) for k in
                  ("run_id", "date", "status", "mae", "seasonal_naive_mae",
                   "blessed", "pushed_version")},
      "imports": imports,
      **_usage(),
  }


def child_tfx(root: str, runner_args: list, repo: Path) -> dict:
  del runner_args, repo  # the example has its own settings
  import taxi_demand  # noqa: F401,PLC0415
  import absl.logging  # noqa: PLC0415
  from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as ex  # noqa: PLC0415
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: PLC0415
  absl.logging.set_verbosity(absl.logging.INFO)
  absl.logging.use_python_logging(quiet=True)
  logging.getLogger().removeHandler(absl.logging.get_absl_handler())
  recorder = NodeRecorder()
  logging.getLogger("absl").addHandler(recorder)
  example_dir = Path(ex.__file__).parent
  data_root = example_dir / "data" / "simple"
  started = time.monotonic()
  LocalDagRunner().run(ex._create_pipeline(  # pylint: disable=protected-access
      pipeline_name="chicago_taxi_native_keras",
      pipeline_root=os.path.join(root, "pipeline"),
      data_root=str(data_root),
      module_file=str(example_dir / "taxi_utils_native_keras.py"),
      serving_model_dir=os.path.join(root, "serving"),
      metadata_path=os.path.join(root, "metadata.db"),
      beam_pipeline_args=BEAM_ARGS))
  runner_s = time.monotonic() - started
  with open(data_root / "data.csv") as f:
    examples = sum(1 for _ in csv.reader(f)) - 1
  return {"runner_s": round(runner_s, 2),
          "components": {node: {"wall_s": c["wall_s"],
                                "peak_rss_mb": c["peak_rss_mb"]}
                         for node, c in recorder.components["run"].items()},
          "examples": examples,
          **_usage()}


def _usage() -> dict:
  """This process's peak RSS, and CPU time with its children's."""
  me = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return {"self_max_rss_mb": round(me.ru_maxrss / 1024, 1),
          "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime +
                         kids.ru_stime, 1)}


def child_main(args) -> None:
  repo = Path(args.repo).resolve()
  # Import this run's tree first: the venv's editable install of
  # taxi_demand points at the main checkout, and its finder comes after
  # sys.path; the bench folder itself is no package root.
  here = str(Path(__file__).resolve().parent)
  sys.path[:] = [p for p in sys.path
                 if p and Path(p).resolve() not in (REPO, Path(here))]
  sys.path.insert(0, str(repo))
  kind = {"ours": child_ours, "tfx": child_tfx}[args.child]
  with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
    result = kind(args.path, json.loads(args.runner_args), repo)
  print(json.dumps(result))
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(0)  # skip TensorFlow's noisy interpreter teardown


# ---- the parent: phases, children, targets ---------------------------------


class Bench:
  """Runs children one at a time; owns the work dir and the baseline tree."""

  def __init__(self, work: Path, keep: bool, train_steps, timeout_s: float):
    self.work = work
    self.keep = keep
    self.train_steps = train_steps
    self.timeout_s = timeout_s
    self.proc = None  # the running child, stopped on the way out
    self.baseline = None  # (worktree path, sha), made on first use
    self._baseline_tmp = None

  # -- children

  def run_child(self, kind: str, path: Path, repo: Path,
                runner_args=(), name: str = "child") -> dict:
    """One child process; its wall time, tree peak RSS and its JSON.

    Its stdout (the JSON) and stderr (the console and TensorFlow's noise)
    go to `name`.out and `name`.log beside `path`.
    """
    import psutil  # noqa: PLC0415
    path.parent.mkdir(parents=True, exist_ok=True)
    out_file = path.parent / f"{name}.out"
    err_file = path.parent / f"{name}.log"
    args = list(runner_args)
    if kind == "ours" and self.train_steps is not None:
      args += ["--train-steps", str(self.train_steps)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(
               [str(repo)] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p])}
    env.pop("TAXI_DEMAND_HOME", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
           "--path", str(path), "--repo", str(repo),
           "--runner-args", json.dumps(args)]
    peak = 0
    busy_before, mine_before = _busy_cpu_s(), _own_cpu_s()
    with open(out_file, "w") as out, open(err_file, "w") as err:
      start = time.monotonic()
      self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env,
                                   cwd=repo, stdin=subprocess.DEVNULL)
      tree = psutil.Process(self.proc.pid)
      while True:
        try:
          self.proc.wait(timeout=0.2)
          break
        except subprocess.TimeoutExpired:
          pass
        peak = max(peak, _tree_rss(tree))
        if time.monotonic() - start > self.timeout_s:
          self.stop_child()
          sys.stderr.write(_tail(err_file, 4000))
          raise BenchError(f"the {kind} run {' '.join(args)} took over "
                           f"{self.timeout_s:.0f} s (--timeout)"
                           + self._log_note(err_file))
      wall = time.monotonic() - start
    busy = _busy_cpu_s() - busy_before - (_own_cpu_s() - mine_before)
    code, self.proc = self.proc.returncode, None
    if code != 0:
      sys.stderr.write(_tail(out_file, 2000) + _tail(err_file, 4000))
      raise BenchError(f"the {kind} run {' '.join(args)} failed (exit "
                       f"{code})" + self._log_note(err_file))
    result = json.loads(out_file.read_text().strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    # CPU time the rest of the machine used meanwhile: other work stretches
    # the wall time on 2 cores.
    result["other_cpu_s"] = round(max(0.0, busy - result.get("cpu_s", 0)), 1)
    if result["other_cpu_s"] > 0.1 * wall:
      say(f"  (other processes used {result['other_cpu_s']:.0f} CPU-s during "
          f"this {wall:.0f} s run: its times are stretched)")
    result["peak_rss_mb"] = round(max(peak / 2**20,
                                      result.get("self_max_rss_mb", 0)), 1)
    return result

  def _log_note(self, log: Path) -> str:
    return (f"; log: {log}" if self.keep else
            "; its log tail is above (--workdir keeps the whole log)")

  def stop_child(self) -> None:
    proc, self.proc = self.proc, None
    if proc is None or proc.poll() is not None:
      return
    proc.terminate()
    try:
      proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()

  def ours(self, label: str, home: Path, day: str, args=(), baseline=False,
           name: str = "") -> dict:
    repo = self.baseline_tree()[0] if baseline else REPO
    what = (f"old design ({self.baseline[1][:7]})" if baseline
            else "this tree")
    say(f"bench: {label}: {what}, day {day} ...")
    result = self.run_child("ours", home, repo, ["--date", day, *args],
                            name=name or f"run-{day}")
    result["date"] = day
    ingest = result.get("ingest", {})
    say(f"  {result['wall_s']:.1f} s (runner {result['runner_s']:.1f} s"
        + (f", ingest {ingest['days']} day(s) {ingest['wall_s']:.1f} s"
           if ingest.get("days") else "")
        + f"), peak {result['peak_rss_mb']:.0f} MB, "
        f"{result['examples']} examples")
    return result

  # -- state

  def fresh_home(self, phase: str, label: str, warehouse: Path) -> Path:
    home = self.work / "runs" / phase / label / "home"
    if home.parent.exists():
      shutil.rmtree(home.parent)
    home.mkdir(parents=True)
    shutil.copy2(warehouse, home / "warehouse.duckdb")
    return home

  def done_with(self, phase: str) -> None:
    """Without --workdir, a phase's homes go as soon as it is measured."""
    if not self.keep:
      shutil.rmtree(self.work / "runs" / phase, ignore_errors=True)

  def warehouse(self, name: str, days: int) -> tuple[Path, dict]:
    """The simulated city `name` of `days` days, built once per work dir."""
    from pipeline import local_run  # noqa: PLC0415
    from taxi_demand import features  # noqa: PLC0415
    from taxi_demand import spans  # noqa: PLC0415
    from taxi_demand.data import simulate  # noqa: PLC0415
    from taxi_demand.data import warehouse as wh  # noqa: PLC0415
    if features.LOOKBACK_DAYS != LOOKBACK_DAYS:
      raise BenchError(f"features.LOOKBACK_DAYS is {features.LOOKBACK_DAYS},"
                       f" the bench assumes {LOOKBACK_DAYS}")
    path = self.work / "warehouses" / f"{name}-{days}d.duckdb"
    first = local_run.DEFAULT_START
    last = first + datetime.timedelta(days=days - 1)
    wanted = (spans.span_of(first), spans.span_of(last))
    info = {"start": first.isoformat(), "days": days,
            "seed": local_run.DEFAULT_SEED, "path": str(path)}
    if path.exists():
      try:
        with wh.Warehouse(path, read_only=True) as warehouse:
          found = tuple(warehouse.span_range() or ())
      except Exception:  # pylint: disable=broad-except  (rebuilt below)
        found = ()
      if found == wanted:
        return path, {**info, "build_s": 0.0, "reused": True}
      path.unlink()
    say(f"bench: simulating the {name} city: {days} days from {first} "
        f"(seed {local_run.DEFAULT_SEED}) ...")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    for stale in (partial, Path(str(partial) + ".wal")):
      stale.unlink(missing_ok=True)
    started = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):
      with wh.Warehouse(partial) as warehouse:
        report = simulate.simulate_into(warehouse, start=first, days=days,
                                        seed=local_run.DEFAULT_SEED)
    partial.rename(path)
    build_s = time.monotonic() - started
    say(f"  {report.loaded} trips in {build_s:.1f} s")
    return path, {**info, "trips": report.loaded,
                  "build_s": round(build_s, 1), "reused": False}

  def check_baseline(self, rev: str) -> str:
    """The baseline's commit sha; a BenchError if this clone lacks it."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
         f"{rev}^{{commit}}"], capture_output=True, text=True)
    if found.returncode != 0:
      raise BenchError(f"baseline revision {rev!r} is not in {REPO} (fetch "
                       "it, or pick one with --baseline-rev)")
    sha = found.stdout.strip()
    has_runner = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{sha}:runner_local.py"],
        capture_output=True)
    if has_runner.returncode != 0:
      raise BenchError(f"baseline revision {rev!r} has no runner_local.py")
    self.baseline = (None, sha)
    return sha

  def baseline_tree(self) -> tuple[Path, str]:
    """A detached worktree of the baseline, removed by close()."""
    if self.baseline[0] is None:
      sha = self.baseline[1]
      self._baseline_tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
      tree = self._baseline_tmp / "src"
      say(f"bench: checking out the old design {sha[:7]} into {tree}")
      made = subprocess.run(
          ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
           str(tree), sha], capture_output=True, text=True)
      if made.returncode != 0:
        raise BenchError("git worktree add failed: " +
                         (made.stderr.strip().splitlines() or ["?"])[-1])
      self.baseline = (tree, sha)
    return self.baseline

  def close(self) -> None:
    self.stop_child()
    if self._baseline_tmp is not None:
      tree = self._baseline_tmp / "src"
      subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                      str(tree)], capture_output=True)
      shutil.rmtree(self._baseline_tmp, ignore_errors=True)
      subprocess.run(["git", "-C", str(REPO), "worktree", "prune"],
                     capture_output=True)
      self._baseline_tmp = None


def _busy_cpu_s() -> float:
  """CPU seconds the whole machine has spent busy since boot."""
  import psutil  # noqa: PLC0415
  times = psutil.cpu_times()
  return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _own_cpu_s() -> float:
  me = resource.getrusage(resource.RUSAGE_SELF)
  return me.ru_utime + me.ru_stime


def _tree_rss(proc) -> int:
  try:
    procs = [proc] + proc.children(recursive=True)
  except Exception:  # pylint: disable=broad-except  (it just exited)
    return 0
  total = 0
  for p in procs:
    try:
      total += p.memory_info().rss
    except Exception:  # pylint: disable=broad-except
      pass
  return total


def _tail(path: Path, chars: int) -> str:
  try:
    text = path.read_text(errors="replace")
  except OSError:
    return ""
  text = text[-chars:]
  return text if not text or text.endswith("\n") else text + "\n"


def _day(span_date: str, days: int) -> str:
  return (datetime.date.fromisoformat(span_date) +
          datetime.timedelta(days=days)).isoformat()


def _target(value, limit, at_least=False) -> dict:
  if value is None:
    return {"value": None, "limit": limit, "met": None}
  return {"value": round(value, 3), "limit": limit,
          "rule": ">=" if at_least else "<=",
          "met": value >= limit if at_least else value <= limit}


def _marginal_phase(bench: Bench, phase: str, label: str, warehouse: Path,
                    last_day: str, flags: list, rerun: bool = False) -> dict:
  """Old design's full run of D+1 beside this tree's cold D and marginal D+1;
  with `rerun`, then D again on that home (an earlier day rerun)."""
  d, d1 = _day(last_day, -1), last_day
  old = bench.ours(f"{label}, full run", bench.fresh_home(
      phase, "old_full", warehouse), d1, flags, baseline=True)
  home = bench.fresh_home(phase, "new", warehouse)
  cold = bench.ours(f"{label}, cold run", home, d, flags)
  marginal = bench.ours(f"{label}, marginal day", home, d1, flags)
  found = {"flags": flags, "days": {"D": d, "D+1": d1},
           "old_full": old, "new_cold": cold, "new_marginal": marginal,
           "marginal_over_full": round(marginal["wall_s"] / old["wall_s"], 3),
           "marginal_over_full_runner": round(
               marginal["runner_s"] / old["runner_s"], 3)}
  if rerun:
    cached = bench.ours(f"{label}, rerun of the earlier day", home, d, flags,
                        name=f"rerun-{d}")
    again = bench.ours(f"{label}, rerun of the earlier day, --no-cache",
                       home, d, [*flags, "--no-cache"],
                       name=f"rerun-no-cache-{d}")
    found.update({
        "earlier_day_rerun_cached": cached,
        "earlier_day_rerun_cached_s": cached["wall_s"],
        "earlier_day_rerun": again,
        "earlier_day_rerun_s": again["wall_s"],
        "earlier_day_rerun_over_marginal": round(
            again["wall_s"] / marginal["wall_s"], 3),
        "earlier_day_rerun_over_marginal_runner": round(
            again["runner_s"] / marginal["runner_s"], 3)})
  bench.done_with(phase)
  return found


PUSHER = "Pusher"


def outcome(run: dict) -> dict:
  """A run's verdict and what its Pusher cost: blessed, pushed_version
  (None: refused, nothing pushed), pusher_wall_s."""
  summary = run.get("summary", {})
  return {"blessed": summary.get("blessed"),
          "pushed_version": summary.get("pushed_version"),
          "pusher_wall_s": run.get("components", {}).get(
              PUSHER, {}).get("wall_s")}


def growth_ratio(small: dict, big: dict, key: str = "wall_s") -> tuple:
  """(big over small, its basis), like with like: the whole runs' `key`
  if both pushed or both refused; else both without the Pusher's wall
  time (a refused candidate's Pusher only marks it not pushed, so a
  pushed side would carry a cost the gates chose, not the window)."""
  pushed = [outcome(r)["pushed_version"] is not None for r in (small, big)]
  if pushed[0] == pushed[1]:
    return (round(big[key] / small[key], 3),
            "whole run: both " + ("pushed" if pushed[0] else "refused"))
  without = [r[key] - (outcome(r)["pusher_wall_s"] or 0.0)
             for r in (small, big)]
  return (round(without[1] / without[0], 3),
          "without the Pusher: " + ", ".join(
              f"{side} {'pushed' if p else 'refused'}"
              for side, p in zip(("short window", "long window"), pushed)))


def growth_city_days(windows) -> int:
  """The longest window, its days' lookback, the cold day, the marginal day
  and one to spare: 66 for 28 and 56."""
  return max(windows) + LOOKBACK_DAYS + 3


def run_phases(bench: Bench, only: list, result: dict,
               windows=GROWTH_WINDOWS) -> None:
  phases, targets = result["phases"], result["targets"]
  from pipeline import local_run  # noqa: PLC0415
  if "default" in only or "grid" in only:
    city, info = bench.warehouse("default", local_run.DEFAULT_DAYS)
    result["warehouses"]["default"] = info
    last = _day(info["start"], info["days"] - 1)
  if "default" in only:
    phases["default"] = p = _marginal_phase(
        bench, "default", "default city", city, last, [], rerun=True)
    targets["marginal_over_full"] = _target(
        p["marginal_over_full"], LIMITS["marginal_over_full"])
    targets["earlier_day_rerun_over_marginal"] = _target(
        p["earlier_day_rerun_over_marginal"],
        LIMITS["earlier_day_rerun_over_marginal"])
  if "grid" in only:
    phases["grid"] = p = _marginal_phase(
        bench, "grid", "500 m grid", city, last, GRID_FLAGS)
    marginal = p["new_marginal"]
    targets["grid_marginal_over_full"] = _target(
        p["marginal_over_full"], LIMITS["grid_marginal_over_full"])
    targets["grid_marginal_wall_s"] = _target(
        marginal["wall_s"], LIMITS["grid_marginal_wall_s"])
    targets["grid_marginal_peak_rss_gb"] = _target(
        marginal["peak_rss_mb"] / 1024, LIMITS["grid_marginal_peak_rss_gb"])
  if "growth" in only:
    city, info = bench.warehouse("growth", growth_city_days(windows))
    result["warehouses"]["growth"] = info
    last = _day(info["start"], info["days"] - 1)
    growth = {"windows": list(windows),
              "days": {"D": _day(last, -1), "D+1": last}}
    for days in windows:
      flags = ["--train-days", str(days)]
      home = bench.fresh_home("growth", f"window_{days}", city)
      cold = bench.ours(f"{days}-day window, cold run", home,
                        growth["days"]["D"], flags)
      marginal = bench.ours(f"{days}-day window, marginal day", home, last,
                            flags)
      growth[f"window_{days}"] = {"cold": cold, "marginal": marginal}
    small, big = (growth[f"window_{d}"]["marginal"] for d in windows)
    name = f"{windows[1]}_over_{windows[0]}"
    growth["outcomes"] = {
        str(d): {"marginal": outcome(growth[f"window_{d}"]["marginal"]),
                 "cold": outcome(growth[f"window_{d}"]["cold"])}
        for d in windows}
    growth[f"marginal_{name}"], growth["ratio_basis"] = growth_ratio(
        small, big)
    growth[f"marginal_{name}_runner"] = growth_ratio(
        small, big, "runner_s")[0]
    growth[f"marginal_{name}_whole_run"] = round(
        big["wall_s"] / small["wall_s"], 3)
    say(f"bench: growth {name}: {growth[f'marginal_{name}']} "
        f"({growth['ratio_basis']}; whole runs "
        f"{growth[f'marginal_{name}_whole_run']})")
    bench.done_with("growth")
    phases["growth"] = growth
    targets[f"window_growth_{name}"] = _target(
        growth[f"marginal_{name}"], LIMITS["window_growth"])
  if "tfx" in only:
    say("bench: TFX's chicago_taxi native-Keras example ...")
    tfx = bench.run_child("tfx", bench.work / "runs" / "tfx" / "root", REPO)
    say(f"  {tfx['wall_s']:.1f} s, peak {tfx['peak_rss_mb']:.0f} MB, "
        f"{tfx['examples']} examples")
    bench.done_with("tfx")
    phases["tfx"] = entry = {"tfx_example": tfx}
    ours = phases.get("default", {}).get("new_marginal")
    if ours is None:
      entry["note"] = "ours needs the default phase (--only default,tfx)"
    else:
      entry.update({
          "ours_wall_s": ours["wall_s"], "ours_examples": ours["examples"],
          "ratio": round(ours["wall_s"] / tfx["wall_s"], 3),
          "examples_ratio": round(ours["examples"] / tfx["examples"], 2)})
    targets["ours_over_tfx_wall"] = _target(
        entry.get("ratio"), LIMITS["ours_over_tfx_wall"])
    targets["ours_over_tfx_examples"] = _target(
        entry.get("examples_ratio"), LIMITS["ours_over_tfx_examples"],
        at_least=True)


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="bench/pipeline.py", description=__doc__.split("\n")[0],
      epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--json", action="store_true",
                      help="print the JSON object on one line")
  parser.add_argument("--only", default=",".join(PHASES), metavar="PHASES",
                      help="comma-separated phases to run, of "
                      f"{','.join(PHASES)} (default: all)")
  parser.add_argument("--baseline-rev", default=BASELINE_REV, metavar="REV",
                      help="git revision of the previous design, for the "
                      "full runs of `default` and `grid` (default "
                      f"{BASELINE_REV})")
  parser.add_argument("--workdir", help="keep the warehouses (reused by a "
                      "later run), homes and each run's console "
                      "(runs/PHASE/RUN/run-DAY.log) here (default: a temp "
                      "dir, removed at the end)")
  parser.add_argument("--train-steps", type=int, metavar="N",
                      help="pass --train-steps N to every runner_local.py "
                      "run, old and new (default: the model's own; for "
                      "quick checks of the bench itself)")
  parser.add_argument("--growth-windows", default="28,56", metavar="A,B",
                      help="the two --train-days of `growth` (default "
                      "28,56; smaller ones check the bench itself quickly)")
  parser.add_argument("--timeout", type=float, default=3600, metavar="S",
                      help="stop a run that takes longer (default 3600 s)")
  parser.add_argument("--child", choices=("ours", "tfx"), help=argparse.SUPPRESS)
  parser.add_argument("--path", help=argparse.SUPPRESS)
  parser.add_argument("--repo", default=str(REPO), help=argparse.SUPPRESS)
  parser.add_argument("--runner-args", default="[]", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if not args.child:
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(only) - set(PHASES))
    if unknown or not only:
      parser.error(f"--only: unknown phase(s) {','.join(unknown) or '(none)'}"
                   f"; pick from {','.join(PHASES)}")
    args.only = [p for p in PHASES if p in only]
    if args.train_steps is not None and args.train_steps < 1:
      parser.error("--train-steps must be >= 1")
    try:
      args.growth_windows = tuple(
          int(w) for w in args.growth_windows.split(","))
    except ValueError:
      args.growth_windows = ()
    if (len(args.growth_windows) != 2 or
        not 1 <= args.growth_windows[0] < args.growth_windows[1]):
      parser.error("--growth-windows: two day counts A,B with 1 <= A < B")
  return args


def _raise_on_sigterm(signum, frame):
  del frame
  raise SystemExit(128 + signum)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.child:
    child_main(args)  # never returns
  signal.signal(signal.SIGTERM, _raise_on_sigterm)
  started = time.monotonic()
  keep = args.workdir is not None
  work = (Path(args.workdir).absolute() if keep
          else Path(tempfile.mkdtemp(prefix="bench-pipeline-")))
  bench = None
  try:
    work.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(work).free / 2**30
    if free_gb < MIN_FREE_GB:
      raise BenchError(f"{work} has {free_gb:.1f} GB free; the bench needs "
                       f"{MIN_FREE_GB} GB")
    bench = Bench(work, keep, args.train_steps, args.timeout)
    result = {"phases_run": args.only, "train_steps": args.train_steps,
              "beam_args": BEAM_ARGS, "workdir": str(work) if keep else None,
              "warehouses": {}, "phases": {}, "targets": {}}
    if "default" in args.only or "grid" in args.only:
      result["baseline_rev"] = args.baseline_rev
      result["baseline_sha"] = bench.check_baseline(args.baseline_rev)
    run_phases(bench, args.only, result, args.growth_windows)
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    judged = [t["met"] for t in result["targets"].values()
              if t["met"] is not None]
    result["targets_met"] = all(judged) if judged else None
  except BenchError as e:
    say(f"error: {e}")
    return 1
  except KeyboardInterrupt:
    say("interrupted")
    return 130
  finally:
    if bench is not None:
      bench.close()
    if not keep:
      shutil.rmtree(work, ignore_errors=True)
  say(f"bench: done in {result['bench_wall_s']:.0f} s; targets met: "
      f"{result['targets_met']}")
  print(json.dumps(result, indent=None if args.json else 2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
