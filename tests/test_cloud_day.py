"""A cloud day end to end, on loopback: the models on an emulated bucket, the
trips behind the BigQuery REST double, the 5-minute job run as the image's
`job` target runs it, and every reader reading it all back.

The same ticks are served on a local home over the same trips and model;
the two served logs must hold the same forecasts, and skew, next-day,
replay, recommend and the report must give the same figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import taxi_demand  # noqa: F401  (before TensorFlow)
from taxi_demand import cli
from taxi_demand.serving import registry
from taxi_demand.serving import servelog

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DAY = "2024-02-10"
# The second run finds 08:05 missing (no run happened then) and serves it
# beside 08:10, each as of its own time.
RUNS = ("2024-02-10T08:00", "2024-02-10T08:12")
SERVED_TICKS = 3
# Fields that name where a result was written, or when: not figures.
_NOT_FIGURES = re.compile(r"uri|path|report|seconds|execution|artifact_id|"
                          r"predicted_at|folder|files|home|created")


def job_entrypoint():
  """The `job` stage's ENTRYPOINT, as the Dockerfile writes it."""
  text = (REPO / "Dockerfile").read_text()
  stage = text[text.index(" AS job"):]
  found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", stage, re.M)
  assert found, "the Dockerfile's job stage has no ENTRYPOINT"
  argv = json.loads(found.group(1))
  assert argv[0] == "taxi-demand"
  # The console script, as the image installs it.
  return [str(Path(sys.executable).parent / "taxi-demand"), *argv[1:]]


def figures(value):
  """A command's JSON with where and when left out, floats rounded."""
  if isinstance(value, dict):
    return {k: figures(v) for k, v in value.items()
            if not _NOT_FIGURES.search(k)}
  if isinstance(value, list):
    return [figures(v) for v in value]
  if isinstance(value, float):
    return round(value, 9)
  return value


def served_rows(log_root) -> pa.Table:
  table = servelog.read_day(log_root, servelog.parse_date(DAY)).table
  table = table.drop([servelog.PREDICTED_AT])
  return table.sort_by([("issued_at", "ascending"), ("cell", "ascending"),
                        ("slot_start", "ascending")])


def mirror_registry(local_models: Path, gs_models: str, snap) -> None:
  """Pushes every kept version to the bucket under its own name, with the
  run parameters its Pusher would write, and CURRENT as it is locally."""
  from taxi_demand import objectstore  # noqa: PLC0415
  from taxi_demand.lineage import queries  # noqa: PLC0415
  store = objectstore.at(gs_models)
  for version in registry.versions(local_models):
    params = queries.push_parameters(snap, version)

    def fill(folder, version=version, params=params):
      shutil.copytree(local_models / version, folder, dirs_exist_ok=True)
      (folder / registry.PARAMETERS_FILE).write_text(
          json.dumps(params.to_custom_config()))

    store.publish_folder(version, fill)
  registry.set_serving(gs_models, registry.serving_version(local_models),
                       registry.serving_span(local_models))


class Day:
  """The local and the cloud home after the same ticks, and their answers."""

  def __init__(self, local, cloud, store: str, warehouse: str, job_env,
               bigquery):
    self.local, self.cloud, self.bigquery = local, cloud, bigquery
    self.store, self.warehouse, self.job_env = store, warehouse, job_env

  def local_cli(self, *argv: str) -> int:
    return cli.main(["--home", str(self.local.root), *argv])

  def cloud_cli(self, *argv: str) -> int:
    return cli.main(["--home", str(self.cloud.root), "--store", self.store,
                     "--warehouse", self.warehouse, *argv])


@pytest.fixture(scope="module")
def day(city_home, bigquery_city, gcs_emulator, tmp_path_factory):
  from taxi_demand.data.bigquery import ENDPOINT_ENV_VAR  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.lineage import store as lineage  # noqa: PLC0415
  root = tmp_path_factory.mktemp("cloud-day")
  local = city_home.copy(root / "local")
  # The readers' home: its ML Metadata (which run made which model, their
  # training statistics), but no registry, log or warehouse of its own.
  cloud = city_home.copy(root / "cloud")
  for gone in ("models", "serving_log", "replay_log"):
    shutil.rmtree(cloud.root / gone, ignore_errors=True)
  (cloud.root / "warehouse.duckdb").unlink()
  env = {"STORAGE_EMULATOR_HOST": gcs_emulator,
         ENDPOINT_ENV_VAR: bigquery_city.url,
         "TAXI_DEMAND_CLOUD_RETRY_S": "5",
         "TAXI_DEMAND_CACHE": str(root / "cache")}
  with pytest.MonkeyPatch.context() as mp:
    for key, value in env.items():
      mp.setenv(key, value)
    bigquery_city.reset()
    from google.cloud import storage  # noqa: PLC0415
    storage.Client(project="test").create_bucket(f"cloud-day-{os.getpid()}")
    store = f"gs://cloud-day-{os.getpid()}/taxi"
    mirror_registry(local.models, Home(cloud.root, store_at=store).models,
                    lineage.load(local.metadata))
    # The container: an empty scratch home, everything else from the
    # environment, as the Cloud Run job's settings give it.
    job_env = {**os.environ, "TAXI_DEMAND_HOME": str(root / "job-home"),
               "TAXI_DEMAND_WAREHOUSE": bigquery_city.address,
               "TAXI_DEMAND_STORE": store}
    yield Day(local, cloud, store, bigquery_city.address, job_env,
              bigquery_city)


@pytest.fixture(scope="module")
def served(day):
  """The same runs of the job, locally (in process) and as the container."""
  outputs = []
  for at in RUNS:
    assert day.local_cli("predict", "--due", "--at", at) == 0
    done = subprocess.run([*job_entrypoint(), "--at", at], env=day.job_env,
                          capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    outputs.append(done)
  return outputs


def test_the_container_serves_what_the_local_job_serves(day, served):
  from taxi_demand.home import Home  # noqa: PLC0415
  cloud_log = Home(day.cloud.root, store_at=day.store).serving_log
  assert str(cloud_log).startswith("gs://")
  local_rows, cloud_rows = served_rows(day.local.serving_log), served_rows(
      cloud_log)
  assert len(set(cloud_rows.column("issued_at").to_pylist())) == SERVED_TICKS
  assert cloud_rows.equals(local_rows)   # features and forecasts, exactly
  # The job read no ML Metadata: its home has none, and never had.
  job_home = Path(day.job_env["TAXI_DEMAND_HOME"])
  assert not (job_home / "metadata.sqlite").exists()
  assert "served 2 tick(s)" in served[1].stderr
  # The model came from the bucket once per version, into the cache.
  cache = Path(day.job_env["TAXI_DEMAND_CACHE"]) / "models"
  cached = [p for p in cache.rglob("*") if p.is_dir() and p.name.isdigit()]
  assert [p.name for p in cached] == [registry.serving_version(
      day.local.models)]


def _json(run, capsys, *argv, codes=(0,)):
  code = run(*argv, "--json")
  out = capsys.readouterr().out
  assert code in codes, out
  return json.loads(out)


def test_skew_reads_the_cloud_day_as_the_local_one(day, served, capsys):
  local = _json(day.local_cli, capsys, "skew", "--date", DAY, codes=(0, 3))
  cloud = _json(day.cloud_cli, capsys, "skew", "--date", DAY, codes=(0, 3))
  assert figures(cloud) == figures(local)


def test_next_day_scores_the_cloud_day_as_the_local_one(day, served, capsys):
  local = _json(day.local_cli, capsys, "next-day", "--date", DAY,
                "--no-record", codes=(0, 3))
  cloud = _json(day.cloud_cli, capsys, "next-day", "--date", DAY,
                "--no-record", codes=(0, 3))
  assert local["served_by_lead"]  # the served forecasts were read back
  assert figures(cloud) == figures(local)


def test_replay_and_recommend_read_the_cloud_as_the_local(day, served, capsys):
  argv = ("replay", "--date", DAY, "--between", "08:00-09:00")
  local, cloud = (_json(day.local_cli, capsys, *argv),
                  _json(day.cloud_cli, capsys, *argv))
  assert cloud["forecasts"] > 0 and figures(cloud) == figures(local)
  from taxi_demand.home import Home  # noqa: PLC0415
  replayed = Home(day.cloud.root, store_at=day.store).replay_log
  assert servelog.logged_days(replayed) == [DAY]
  argv = ("recommend", "--at", "2024-02-10T08:12", "--cell", "8")
  assert figures(_json(day.cloud_cli, capsys, *argv)) == figures(
      _json(day.local_cli, capsys, *argv))


def test_the_report_draws_the_cloud_day_as_the_local_one(day, served,
                                                         tmp_path):
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.report import data  # noqa: PLC0415
  assert day.cloud_cli("report", "--out", str(tmp_path / "cloud")) == 0
  assert (tmp_path / "cloud" / "index.html").is_file()
  local = data.gather(day.local)
  cloud = data.gather(Home(day.cloud.root, warehouse_at=day.warehouse,
                           store_at=day.store))
  assert repr(cloud.demand) == repr(local.demand)
  assert repr(cloud.plane) == repr(local.plane)
  # The map shows the newest forecast served, read back from the bucket.
  assert cloud.plane is not None and "issued" in repr(cloud.plane)


# ---- every bad input: one line, exit 1, nothing written -----------------------


def _objects(day) -> list:
  from google.cloud import storage  # noqa: PLC0415
  bucket = day.store[len("gs://"):].split("/")[0]
  return sorted(b.name for b in storage.Client(project="test").list_blobs(
      bucket))


def _one_failed_line(capsys, code: int) -> str:
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 1 and len(err) == 1, err
  assert err[0].startswith("taxi-demand predict: "), err
  return err[0]


def test_each_bad_setting_is_one_line_and_writes_nothing(day, served, capsys,
                                                         monkeypatch):
  from cloud_stubs import status_server  # noqa: PLC0415
  at = ("predict", "--due", "--at", "2024-02-10T08:21")
  before = _objects(day)

  def fails(*settings: str, look: bool = True) -> str:
    code = cli.main(["--home", str(day.cloud.root), "--store", day.store,
                     "--warehouse", day.warehouse, *settings, *at])
    line = _one_failed_line(capsys, code)
    assert not look or _objects(day) == before, line
    return line

  assert "bad warehouse address 'bq://nope'" in fails("--warehouse",
                                                      "bq://nope")
  assert "bad store address 'gs://Bad_Bucket/x'" in fails(
      "--store", "gs://Bad_Bucket/x")
  assert ": not found" in fails("--store", "gs://no-such-bucket-here/taxi")
  try:
    for fault, says in (("forbidden", "permission denied"),
                        ("unavailable", "still failing after 1 s of retries")):
      monkeypatch.setenv("TAXI_DEMAND_CLOUD_RETRY_S", "1")
      _double(day).fault = fault
      assert says in fails(), fault
      _double(day).reset()
    _double(day).dropped_columns = {"trip_start_timestamp"}
    line = fails()
    assert "trip_start_timestamp" in line and day.warehouse in line
  finally:
    _double(day).reset()
  for status, says in ((403, "permission denied"),
                       (503, "still failing after 1 s of retries")):
    with status_server(status, "the stub's answer") as stub:
      monkeypatch.setenv("STORAGE_EMULATOR_HOST",
                         f"http://127.0.0.1:{stub.server_port}")
      line = fails(look=False)  # the bucket is the stub's now
      monkeypatch.setenv("STORAGE_EMULATOR_HOST", day.job_env[
          "STORAGE_EMULATOR_HOST"])
    assert says in line and day.store in line, line
    assert _objects(day) == before
  # Then a healthy run serves the failed tick (and the one before it).
  assert cli.main(["--home", str(day.cloud.root), "--store", day.store,
                   "--warehouse", day.warehouse, *at]) == 0
  assert "served 2 tick(s)" in capsys.readouterr().err


def _double(day):
  return day.bigquery


def test_the_job_without_credentials_is_one_line(day, served, tmp_path):
  """No emulator, no endpoint, no credentials: the container's job says so
  in one line, quickly (the metadata server is a closed loopback port)."""
  import socket  # noqa: PLC0415
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    closed = f"127.0.0.1:{s.getsockname()[1]}"
  env = {k: v for k, v in day.job_env.items()
         if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "GCE_",
                              "CLOUDSDK_", "TAXI_DEMAND_BIGQUERY"))}
  env.update(GCE_METADATA_HOST=closed, GCE_METADATA_IP=closed,
             CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path))
  done = subprocess.run([*job_entrypoint(), "--at", "2024-02-10T08:31"],
                        env=env, capture_output=True, text=True, timeout=120,
                        check=False)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 1 and len(lines) == 1, done.stderr
  assert "no Google Cloud credentials found" in lines[0]
