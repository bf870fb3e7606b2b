"""Times the metadata commands on a synthetic ML Metadata store of N runs.

Writes, with ml_metadata only (no pipeline, no TensorFlow), the records a
daily run leaves, laid out as LocalDagRunner writes them (see
taxi_demand/lineage/synthetic.py): the pipeline, pipeline_run and node
contexts, one execution per node with TFX's event keys and properties, a
pushed model per run and a next-day result per day. Then runs each command
as a user would (a fresh `python -m taxi_demand` process) and prints JSON:

  .venv/bin/python bench/lineage.py [--runs 100] [--repeat 3]

Each command must answer in under 2 s (`ok`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from taxi_demand.lineage.synthetic import build  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

LIMIT_S = 2.0


def time_command(home: Path, argv: List[str], repeat: int) -> dict:
  best, rc = None, None
  for _ in range(repeat):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "taxi_demand", "--home",
                           str(home), *argv], capture_output=True, text=True,
                          check=False)
    took = time.monotonic() - started
    best = took if best is None else min(best, took)
    rc = proc.returncode
  return {"argv": " ".join(argv), "seconds": round(best, 3), "exit_code": rc}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=100)
  parser.add_argument("--repeat", type=int, default=3,
                      help="runs per command; the best is reported")
  parser.add_argument("--json", action="store_true",
                      help="accepted for `make bench`; the output is JSON")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    home = Path(tmp) / "home"
    started = time.monotonic()
    versions = build(home, args.runs)
    build_s = time.monotonic() - started
    first, last = (f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}"
                   for i in (0, args.runs - 1))
    commands = {
        "runs": ["runs", "--json"],
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
    size = (home / "metadata.sqlite").stat().st_size
  print(json.dumps({
      "runs": args.runs, "store_bytes": size,
      "build_store_s": round(build_s, 2), "limit_s": LIMIT_S,
      "commands": results,
      "ok": all(r["seconds"] < LIMIT_S and r["exit_code"] == 0
                for r in results.values())}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
