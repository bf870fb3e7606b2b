"""Times the metadata commands on a synthetic ML Metadata store of N runs.

Writes, with ml_metadata only (no pipeline, no TensorFlow), the records a
daily run leaves, laid out as LocalDagRunner writes them (see
taxi_demand/testing/synthetic.py): the pipeline, pipeline_run and node
contexts, one execution per node with TFX's event keys and properties, a
pushed model per run and a next-day result per day. Then runs each command
as a user would (a fresh `python -m taxi_demand` process) and prints JSON:

  .venv/bin/python bench/lineage.py [--runs 100] [--repeat 3] [--home DIR]

With `--home DIR` the store is built in DIR once and reused by later calls
with the same `--runs` (building 1,000 runs takes minutes); what `rollback`
writes is undone after each call, so every call times the same store.

Each command must answer in under 1 s (`ok`), the median of `--repeat`
runs. `runs` shows its default page (the newest 60); `runs_all` (every run,
`runs --all`) is timed beside it but is outside the limit: reading a
thousand runs' membership is a thousand questions to ML Metadata. Each
command's `cpu_s` (the process's user + system time) sits beside its wall
time, as a shared machine's load stretches the wall time and not the CPU. `resolve` times what the next day's run asks of the store before it
trains: its training window (TrainingWindowStrategy) and the model serving
on its day (ServingModelStrategy), each through a fresh reader of an open
store as TFX hands it to a resolver; limit 0.5 s for both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from taxi_demand.testing import benches
from taxi_demand.testing.synthetic import FIRST_SPAN, build

LIMIT_S = 1.0
RESOLVE_LIMIT_S = 0.5
# Timed and reported, outside the limit: every run of the history.
UNLIMITED = ("runs_all",)
# Beside a kept home's store: the runs it holds and the versions pushed.
BUILT_FILE = "bench_lineage.json"
# What `rollback` changes in a home: restored after each timed call.
MUTABLE = ("metadata.sqlite", "models/CURRENT")


def time_command(home: Path, argv: List[str], repeat: int) -> dict:
  walls, cpus, rc, size = [], [], None, 0
  for _ in range(repeat):
    started, cpu = time.monotonic(), benches.children_cpu_s()
    proc = subprocess.run([sys.executable, "-m", "taxi_demand", "--home",
                           str(home), *argv], capture_output=True, text=True,
                          check=False)
    walls.append(time.monotonic() - started)
    cpus.append(benches.children_cpu_s() - cpu)
    rc, size = proc.returncode, len(proc.stdout.encode())
  return {"argv": " ".join(argv), "seconds": round(statistics.median(walls), 3),
          "min_s": round(min(walls), 3),
          "cpu_s": round(statistics.median(cpus), 3), "exit_code": rc,
          "stdout_bytes": size}


def time_resolve(home: Path, span: int, train_days: int, repeat: int) -> dict:
  """The next day's window and serving model, as its resolvers ask them:
  each strategy reads through a fresh reader of the open store TFX hands
  it (the candidates TFX passes in are left out: their cost is TFX's)."""
  from pipeline.components import resolvers  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  walls = []
  for _ in range(repeat):
    raw = store.connect(home / "metadata.sqlite")
    started = time.monotonic()
    resolvers.TrainingWindowStrategy(
        span=span, train_days=train_days).resolve_artifacts(raw, {})
    resolvers.ServingModelStrategy(span=span).resolve_artifacts(raw, {})
    walls.append(time.monotonic() - started)
  snap = store.Snapshot.load(store.connect(home / "metadata.sqlite"))
  window = queries.training_window(snap, span, train_days)
  serving = resolvers.serving_artifact_ids(snap, span)
  median = statistics.median(walls)
  return {"span": span, "window_days": len(window),
          "serving_model_id": serving.get("model"),
          "seconds": round(median, 3), "min_s": round(min(walls), 3),
          "limit_s": RESOLVE_LIMIT_S,
          "ok": median < RESOLVE_LIMIT_S and bool(window) and bool(serving)}


@contextlib.contextmanager
def bench_home(kept: Optional[Path], runs: int) -> Iterator[tuple]:
  """(home, pushed versions, seconds spent building): a fresh temporary
  home, or `kept`, built there once for `runs` and restored afterwards."""
  with tempfile.TemporaryDirectory() as tmp:
    home = kept or Path(tmp) / "home"
    built = home / BUILT_FILE
    started = time.monotonic()
    if built.is_file() and json.loads(built.read_text())["runs"] == runs:
      versions = json.loads(built.read_text())["versions"]
    else:
      if home.exists() and not built.is_file() and any(home.iterdir()):
        sys.exit(f"{home} holds something else than a bench home: not reused")
      if home.exists():
        shutil.rmtree(home)
      versions = build(home, runs)
      built.write_text(json.dumps({"runs": runs, "versions": versions}))
    build_s = time.monotonic() - started
    saved = Path(tmp) / "saved"
    for name in MUTABLE:
      (saved / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(home / name, saved / name)
    try:
      yield home, versions, build_s
    finally:
      for name in MUTABLE:
        shutil.copy2(saved / name, home / name)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=100)
  parser.add_argument("--repeat", type=int, default=3,
                      help="runs per command; the median is reported")
  parser.add_argument("--json", action="store_true",
                      help="accepted for `make bench`; the output is JSON")
  parser.add_argument("--home", type=Path,
                      help="build the store here once and reuse it (same "
                      "--runs); rollback's writes are undone after each call")
  args = parser.parse_args(argv)
  with bench_home(args.home, args.runs) as (home, versions, build_s):
    first, last = (f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}"
                   for i in (0, args.runs - 1))
    commands = {
        "runs": ["runs", "--json"],
        "runs_all": ["runs", "--all", "--json"],
        "runs_last_10": ["runs", "--last", "10", "--json"],
        "show": ["show", "last", "--json"],
        "diff": ["diff", first, last, "--json"],
        "lineage_serving": ["lineage", "serving", "--json"],
        "lineage_span": ["lineage", "--span", "2023-12-10", "--json"],
        "rollback": ["rollback", "--to", versions[-3], "--json"],
    }
    results = {name: time_command(home, cmd, 1 if name == "rollback"
                                  else args.repeat)
               for name, cmd in commands.items()}
    resolve = time_resolve(home, FIRST_SPAN + args.runs, 28, args.repeat)
    size = (home / "metadata.sqlite").stat().st_size
  print(json.dumps({
      "runs": args.runs, "store_bytes": size,
      "build_store_s": round(build_s, 2), "limit_s": LIMIT_S,
      "commands": results, "resolve": resolve,
      "load_average": list(os.getloadavg()),
      "ok": resolve["ok"] and all(r["seconds"] < LIMIT_S and
                                  r["exit_code"] == 0
                                  for name, r in results.items()
                                  if name not in UNLIMITED)}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
