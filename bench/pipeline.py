"""Wall time and memory of `make run`'s pipeline beside TFX's own taxi example.

  .venv/bin/python bench/pipeline.py --json

Runs, each in a fresh Python process and with the same Beam settings
(DirectRunner, one in-memory worker):
  ours  the daily pipeline of `make run` (default simulated warehouse, 28-day
        window, default training steps) through runner_local.py;
  tfx   TFX's chicago_taxi_pipeline native-Keras example from the installed
        wheel, on its 15k-trip sample, by LocalDagRunner.
Prints one JSON object: wall_s, examples, tfx_example_wall_s,
tfx_example_examples, ratio (ours / tfx), components (per node id: wall_s,
peak_rss_mb), tfx_components, and the warehouse build time (not in wall_s).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BEAM_ARGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
_RUNNING = re.compile(r"^Component (\S+) is running\.$")
_FINISHED = re.compile(r"^Component (\S+) is finished\.$")


class NodeRecorder(logging.Handler):
  """Per-node wall time and peak RSS (this process and its children)."""

  def __init__(self):
    super().__init__(logging.INFO)
    import psutil  # pylint: disable=g-import-not-at-top
    self._proc = psutil.Process()
    self.components = {}
    self._node = None
    self._start = 0.0
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
    elif (m := _FINISHED.match(message)) and self._node == m.group(1):
      self.components[self._node] = {
          "wall_s": round(time.monotonic() - self._start, 2),
          "peak_rss_mb": round(max(self._peak, self._rss()) / 2**20, 1)}
      self._node = None


def child_ours(home: str) -> dict:
  import runner_local  # pylint: disable=g-import-not-at-top
  recorder = NodeRecorder()
  logging.getLogger("absl").addHandler(recorder)
  code = runner_local.main(["--home", home])
  if code != 0:
    raise SystemExit(f"our pipeline exited {code}")
  from taxi_demand.lineage import queries  # pylint: disable=g-import-not-at-top
  from taxi_demand.lineage import store  # pylint: disable=g-import-not-at-top
  snap = store.load(Path(home) / "metadata.sqlite")
  summary = queries.run_summary(snap, snap.run("last"))
  return {"components": recorder.components,
          "examples": (summary.get("train_examples") or 0) +
                      (summary.get("eval_examples") or 0)}


def child_tfx(root: str) -> dict:
  import taxi_demand  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import absl.logging  # pylint: disable=g-import-not-at-top
  from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as ex  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=g-import-not-at-top
  absl.logging.set_verbosity(absl.logging.INFO)
  absl.logging.use_python_logging(quiet=True)
  logging.getLogger().removeHandler(absl.logging.get_absl_handler())
  recorder = NodeRecorder()
  logging.getLogger("absl").addHandler(recorder)
  example_dir = Path(ex.__file__).parent
  data_root = example_dir / "data" / "simple"
  LocalDagRunner().run(ex._create_pipeline(  # pylint: disable=protected-access
      pipeline_name="chicago_taxi_native_keras",
      pipeline_root=os.path.join(root, "pipeline"),
      data_root=str(data_root),
      module_file=str(example_dir / "taxi_utils_native_keras.py"),
      serving_model_dir=os.path.join(root, "serving"),
      metadata_path=os.path.join(root, "metadata.db"),
      beam_pipeline_args=BEAM_ARGS))
  with open(data_root / "data.csv") as f:
    examples = sum(1 for _ in csv.reader(f)) - 1
  return {"components": recorder.components, "examples": examples}


def run_child(kind: str, path: str) -> tuple[float, dict]:
  start = time.monotonic()
  proc = subprocess.run(
      [sys.executable, __file__, "--child", kind, "--path", path],
      capture_output=True, text=True, env={**os.environ,
                                           "TF_CPP_MIN_LOG_LEVEL": "3"})
  wall = time.monotonic() - start
  if proc.returncode != 0:
    sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
    raise SystemExit(f"the {kind} run failed (exit {proc.returncode})")
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  return wall, result


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", action="store_true",
                      help="print only the JSON object on stdout")
  parser.add_argument("--child", choices=("ours", "tfx"), help=argparse.SUPPRESS)
  parser.add_argument("--path", help=argparse.SUPPRESS)
  parser.add_argument("--workdir", help="keep runs here (default: a temp dir)")
  args = parser.parse_args()
  if args.child:
    with contextlib.redirect_stdout(sys.stderr):
      result = (child_ours if args.child == "ours" else child_tfx)(args.path)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip TensorFlow's noisy interpreter teardown

  work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-pipeline-"))
  home = work / "home"
  print(f"building the default warehouse in {home}", file=sys.stderr)
  start = time.monotonic()
  from pipeline import local_run  # pylint: disable=g-import-not-at-top
  from taxi_demand.home import Home  # pylint: disable=g-import-not-at-top
  with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
    local_run.ensure_warehouse(Home(home))
  warehouse_s = time.monotonic() - start

  print("running our pipeline (make run)", file=sys.stderr)
  wall, ours = run_child("ours", str(home))
  print(f"  {wall:.1f} s; running TFX's chicago_taxi native-Keras example",
        file=sys.stderr)
  tfx_wall, tfx = run_child("tfx", str(work / "tfx_example"))
  print(f"  {tfx_wall:.1f} s", file=sys.stderr)
  result = {
      "wall_s": round(wall, 1),
      "examples": ours["examples"],
      "tfx_example_wall_s": round(tfx_wall, 1),
      "tfx_example_examples": tfx["examples"],
      "ratio": round(wall / tfx_wall, 3),
      "examples_ratio": round(ours["examples"] / tfx["examples"], 2),
      "components": ours["components"],
      "tfx_components": tfx["components"],
      "warehouse_build_s": round(warehouse_s, 1),
      "beam_args": BEAM_ARGS,
      "targets_met": {
          "ratio_at_most_1": wall <= tfx_wall,
          "examples_at_least_5x": ours["examples"] >= 5 * tfx["examples"]},
  }
  print(json.dumps(result, indent=None if args.json else 2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
