"""Serving bench: cold predict, warm scoring of all cells, batch rate, one-day skew,
and one warm tick on the cloud backends beside the same tick locally.

Usage: python bench/serving.py --json [--home DIR] [--rows N]

Needs a home with a pushed model; without --home it builds one in a temporary
folder (`runner_local.py`, a few minutes). Cold runs are fresh processes, as a
cron job would be. Targets: warm scoring of all cells < 1 s, batch scoring
>= 50k predictions/s, one warm tick on the cloud backends < 2 s.

The cloud figure runs the real google-cloud-bigquery and google-cloud-storage
clients against loopback doubles (tests/bigquery_double.py over the home's
warehouse, fake-gcs-server holding a copy of the serving version): it
measures the client libraries' overhead, not Google's network. The local
tick is timed in the same run, on the same ticks, model and trips.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import taxi_demand  # noqa: E402,F401  (before TensorFlow)

AT = "2024-02-10T08:00"
SKEW_DAY = "2024-02-10"


def _cli(home: Path, *args: str) -> float:
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  began = time.perf_counter()
  done = subprocess.run(
      [sys.executable, "-m", "taxi_demand", "--home", str(home), *args],
      cwd=REPO, env=env, capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - began
  if done.returncode not in (0, 3):
    raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
  return seconds


def _ensure_home(home: Path) -> None:
  if (home / "models" / "CURRENT").exists():
    return
  done = subprocess.run(
      [sys.executable, str(REPO / "runner_local.py"), "--home", str(home),
       "--date", SKEW_DAY], cwd=REPO, capture_output=True, text=True,
      check=False)
  if done.returncode != 0 or not (home / "models" / "CURRENT").exists():
    raise SystemExit("could not build a home with a pushed model:\n" +
                     done.stdout[-2000:])


def _warm(home: Path, rows: int) -> dict:
  import numpy as np  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  h = Home(home)
  model = predict.LoadedModel(h).load()
  at = predict.parse_at(AT)
  predict.run_job(h, model, at)  # first call traces the signature
  jobs, scores = [], []
  for i in range(5):
    result = predict.run_job(h, model, at + i * 1800)
    jobs.append(result.seconds["total"])
    scores.append(result.seconds["score"])
  cells = result.predictions.num_rows
  # Batch rate: the served rows tiled to `rows`, one predict_raw call.
  served = predict.columns_of(result.features)
  reps = -(-rows // cells)
  batch = {c: np.tile(v, reps)[:rows] for c, v in served.items()}
  model._predictor(batch)  # noqa: SLF001 - warm up this batch shape
  began = time.perf_counter()
  out = model._predictor(batch)  # noqa: SLF001
  rate = rows / (time.perf_counter() - began)
  assert len(out["predicted_pickups"]) == rows
  return {"cells": cells,
          "score_all_cells_warm_s": round(statistics.median(jobs), 4),
          "score_only_all_cells_warm_s": round(statistics.median(scores), 4),
          "predictions_per_s": round(rate)}


CLOUD_TARGET_S = 2.0


def _serve_day(home: Path) -> None:
  """A whole day of served features for the skew run: a tick every 30
  minutes, each for its next slot (a horizon of 48 slots from midnight
  would ask for leads no model is trained on)."""
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  h = Home(home)
  model = predict.LoadedModel(h).load()
  start = predict.parse_at(SKEW_DAY)
  for tick in range(start, start + 86_400, 1800):
    predict.run_job(h, model, tick)


def _cloud_tick(home: Path, ticks: int = 5) -> dict:
  """A warm tick (features, score, log) on BigQuery and Cloud Storage
  doubles, and the same ticks on the local home, side by side."""
  import shutil  # noqa: PLC0415
  sys.path.insert(0, str(REPO / "tests"))
  from bigquery_double import BigQueryDouble  # noqa: PLC0415
  from gcs_emulator import running  # noqa: PLC0415
  from taxi_demand import objectstore  # noqa: PLC0415
  from taxi_demand.data.bigquery import ENDPOINT_ENV_VAR  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  local = Home(home)
  version = registry.serving_version(local.models)
  cfg = predict.query_config_of(local, version)
  params = {"slot_minutes": cfg.slot_minutes,
            "spatial_unit": cfg.spatial_unit.value,
            "grid_metres": cfg.grid_metres, "arrival": str(cfg.arrival)}
  with tempfile.TemporaryDirectory(prefix="bench-cloud-") as scratch, \
      running(Path(scratch)) as gcs, \
      BigQueryDouble(local.warehouse) as bigquery:
    os.environ.update({"STORAGE_EMULATOR_HOST": gcs,
                       ENDPOINT_ENV_VAR: bigquery.url,
                       "TAXI_DEMAND_CACHE": str(Path(scratch) / "cache")})
    from google.cloud import storage  # noqa: PLC0415
    storage.Client(project="bench").create_bucket("bench-serving")
    cloud = Home(Path(scratch) / "home", warehouse_at=bigquery.address,
                 store_at="gs://bench-serving/taxi")

    def fill(folder: Path) -> None:
      shutil.copytree(local.models / version, folder, dirs_exist_ok=True)
      (folder / registry.PARAMETERS_FILE).write_text(json.dumps(params))

    objectstore.at(cloud.models).publish_folder(version, fill)
    registry.set_serving(cloud.models, version)
    began = time.perf_counter()
    cloud_model = predict.LoadedModel(cloud).load()
    first_load = time.perf_counter() - began
    local_model = predict.LoadedModel(local).load()
    at = predict.parse_at(AT)
    times = {"cloud": [], "local": []}
    for name, h, model in (("cloud", cloud, cloud_model),
                           ("local", local, local_model)):
      predict.run_job(h, model, at)  # warm: clients, signature
      for i in range(ticks):
        began = time.perf_counter()
        predict.run_job(h, model, at + (i + 1) * 300)
        times[name].append(time.perf_counter() - began)
  cloud_s = statistics.median(times["cloud"])
  local_s = statistics.median(times["local"])
  return {"cloud_tick_warm_s": round(cloud_s, 4),
          "cloud_tick_local_same_ticks_s": round(local_s, 4),
          "cloud_tick_ratio_to_local": round(cloud_s / local_s, 2),
          "cloud_model_first_load_s": round(first_load, 3),
          "cloud_tick_target_s": CLOUD_TARGET_S,
          "cloud_tick_met": cloud_s < CLOUD_TARGET_S}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true", help="print JSON")
  parser.add_argument("--home", default=None,
                      help="a home with a pushed model (default: build one)")
  parser.add_argument("--rows", type=int, default=100_000,
                      help="rows for the batch rate (default 100000)")
  args = parser.parse_args()
  tmp = None
  if args.home is None:
    tmp = tempfile.TemporaryDirectory(prefix="bench-serving-")
    home = Path(tmp.name)
  else:
    home = Path(args.home).absolute()
  _ensure_home(home)
  result = {"predict_cold_s": round(_cli(home, "predict", "--at", AT,
                                         "--json"), 3)}
  result.update(_warm(home, args.rows))
  _serve_day(home)
  result["skew_day_s"] = round(_cli(home, "skew", "--date", SKEW_DAY), 3)
  result.update(_cloud_tick(home))
  if args.json:
    print(json.dumps(result, indent=2, sort_keys=True))
  else:
    for key, value in result.items():
      print(f"{key:30} {value}")
  if tmp is not None:
    tmp.cleanup()
  return 0


if __name__ == "__main__":
  sys.exit(main())
