"""The registry and the served log on Cloud Storage: the real client against
fake-gcs-server on loopback (conftest `gcs_emulator`), and loopback stubs for
the failures an emulator cannot make (403, 503). No network, no credentials.
"""

import datetime
import os
import socket
import subprocess
import sys
import time

import pytest

from cloud_stubs import status_server
from served_rows import serve
from taxi_demand import faults
from taxi_demand import features
from taxi_demand import objectstore
from taxi_demand.errors import TaxiDemandError
from taxi_demand.serving import predict
from taxi_demand.serving import registry
from taxi_demand.serving import servelog

DAY = datetime.date(2024, 2, 10)


def epoch(text: str) -> int:
  return int(datetime.datetime.fromisoformat(text).replace(
      tzinfo=datetime.timezone.utc).timestamp())


def _writer(text):
  def write(folder):
    (folder / "saved_model.pb").write_text(text)
    (folder / "variables").mkdir()
    (folder / "variables" / "variables.index").write_text(text)
  return write


def test_the_client_is_anonymous_on_the_emulator(gcs_root, gcs_emulator):
  from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
  client = objectstore._client()  # pylint: disable=protected-access
  assert isinstance(client._credentials, AnonymousCredentials)  # pylint: disable=protected-access
  assert client._connection.API_BASE_URL == gcs_emulator  # pylint: disable=protected-access


# ---- the registry ---------------------------------------------------------------


def test_resolve_names_the_version_on_cloud_storage(gcs_root):
  models = f"{gcs_root}/models"
  version = registry.push(models, _writer("m"), now=lambda: 7)
  assert registry.resolve(models) == f"{models}/{version}"


def test_a_version_is_downloaded_once_and_a_killed_download_is_not_a_model(
    gcs_root, monkeypatch, tmp_path):
  models = f"{gcs_root}/models"
  first = registry.push(models, _writer("one"), now=lambda: 1)
  downloads = []
  real = objectstore.GcsStore.download_folder

  def counting(self, name, to):
    downloads.append(name)
    return real(self, name, to)

  monkeypatch.setattr(objectstore.GcsStore, "download_folder", counting)
  cache = tmp_path / "cache" / "models" / gcs_root[len("gs://"):] / "models"
  # A download killed earlier left its hidden folder: never taken for one.
  (cache / f".downloading-{first}-dead").mkdir(parents=True)
  folder = registry.local_copy(models)
  assert folder == cache / first and downloads == [first]
  assert (folder / "variables" / "variables.index").read_text() == "one"
  for _ in range(3):
    assert registry.local_copy(models) == folder
    assert registry.local_copy(models, first) == folder
  assert downloads == [first]
  second = registry.push(models, _writer("two"), now=lambda: 2)
  assert registry.local_copy(models).name == second
  assert downloads == [first, second]
  assert sorted(p.name for p in cache.iterdir()
                if not p.name.startswith(".")) == [first, second]


# ---- the served log -------------------------------------------------------------


def _everything(root):
  days = [DAY, DAY + datetime.timedelta(days=1)]
  begin, end = epoch("2024-02-10T00:00"), epoch("2024-02-12T00:00")
  return {
      "days": servelog.logged_days(root),
      "ticks": servelog.served_ticks(root, days),
      "forecasts": servelog.forecasts_between(root, begin, end).to_pylist(),
      "day": servelog.read_day(root, DAY).table.to_pylist(),
      "next": servelog.read_day(root, days[1]).table.to_pylist(),
  }


def test_the_served_log_reads_the_same_on_both_backends(gcs_root, tmp_path):
  local, cloud_root = tmp_path / "log", f"{gcs_root}/serving_log"
  results = {}
  for root in (local, cloud_root):
    late = epoch("2024-02-10T23:10")  # its horizon crosses midnight
    for issued in (epoch("2024-02-10T08:00"), epoch("2024-02-10T08:05"), late):
      serve(root, issued)
    files = serve(root, late, predicted=2.5)  # served again: replaced
    assert len(files) == 2
    results[str(root)] = _everything(root)
  assert results[str(local)] == results[str(cloud_root)]
  on_cloud = results[str(cloud_root)]
  assert on_cloud["days"] == ["2024-02-10", "2024-02-11"]
  assert sorted(on_cloud["ticks"]) == [epoch("2024-02-10T08:00"),
                                       epoch("2024-02-10T08:05"), late]
  assert {r[servelog.PREDICTED] for r in on_cloud["forecasts"]
          if r[features.ISSUED_AT] == late} == {2.5}
  assert all(str(f).startswith(cloud_root) for f in files)
  log = servelog.read_day(cloud_root, DAY)
  assert log.folder == f"{cloud_root}/date=2024-02-10"
  assert len(log.files) == 3 and log.skipped == []
  assert servelog.sweep(cloud_root) == []


_APPEND_ONE_TICK = """
import datetime, sys
sys.path.insert(0, {tests!r})
from served_rows import serve
serve({root!r}, {issued})
"""


def _append_in_child(root, issued, crash=""):
  env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
  if crash:
    env[faults.ENV_VAR] = crash
  code = _APPEND_ONE_TICK.format(tests=os.path.dirname(__file__), root=root,
                                 issued=issued)
  return subprocess.run([sys.executable, "-c", code], env=env,
                        capture_output=True, text=True, timeout=120)


def test_a_tick_killed_before_its_object_is_visible_is_served_next_run(
    gcs_root):
  root = f"{gcs_root}/serving_log"
  issued = epoch("2024-02-10T08:05")
  serve(root, issued - 300)  # the tick before, served
  killed = _append_in_child(root, issued, crash="servelog.written")
  assert killed.returncode == -9, killed.stderr
  # Nothing of it is visible: not listed, not read, not counted as served.
  assert servelog.served_ticks(root, [DAY]) == {issued - 300: ["7"]}
  assert len(servelog.read_day(root, DAY).files) == 1
  last = max(servelog.served_ticks(root, [DAY]))
  assert predict.due_ticks(issued + 10, 300, last, 3600) == [issued]
  # The next run serves it.
  again = _append_in_child(root, issued)
  assert again.returncode == 0, again.stderr
  assert sorted(servelog.served_ticks(root, [DAY])) == [issued - 300, issued]
  assert servelog.read_day(root, DAY).table.num_rows == 12


def test_a_kill_after_publishing_leaves_the_whole_object(gcs_root):
  root = f"{gcs_root}/serving_log"
  issued = epoch("2024-02-10T08:05")
  killed = _append_in_child(root, issued, crash="servelog.published")
  assert killed.returncode == -9, killed.stderr
  assert servelog.read_day(root, DAY).table.num_rows == 6


# ---- failures: one line each ----------------------------------------------------


def _one_line(error) -> str:
  text = str(error.value)
  assert "\n" not in text
  return text


def test_a_bucket_without_permission_is_one_line(monkeypatch):
  denied = ("robot@p.iam.gserviceaccount.com does not have "
            "storage.objects.list access to the Google Cloud Storage bucket.")
  with status_server(403, denied) as server:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST",
                       f"http://127.0.0.1:{server.server_port}")
    with pytest.raises(TaxiDemandError) as error:
      registry.versions("gs://locked-bucket/models")
    line = _one_line(error)
    assert line.startswith("gs://locked-bucket/models: permission denied")
    assert "storage.objects.list" in line
    with pytest.raises(TaxiDemandError, match="permission denied"):
      serve("gs://locked-bucket/serving_log", epoch("2024-02-10T08:00"))
    assert server.requests == 2  # a 403 is not retried


def test_retries_that_run_out_are_one_line(monkeypatch):
  # The first of the client's jittered backoffs is at most 2 s: 3 s of
  # retries make at least two attempts.
  monkeypatch.setenv("TAXI_DEMAND_CLOUD_RETRY_S", "3")
  with status_server(503, "Service Unavailable") as server:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST",
                       f"http://127.0.0.1:{server.server_port}")
    started = time.monotonic()
    with pytest.raises(TaxiDemandError) as error:
      registry.serving_version("gs://busy-bucket/models")
    assert time.monotonic() - started < 10
    assert server.requests > 1, str(error.value)  # it did retry
  assert _one_line(error).startswith(
      "gs://busy-bucket/models/CURRENT: still failing after 3 s of retries")


def test_a_missing_bucket_is_one_line(gcs_root):
  del gcs_root  # the emulator, without that bucket
  with pytest.raises(TaxiDemandError) as error:
    registry.versions("gs://no-such-bucket/models")
  assert _one_line(error).startswith("gs://no-such-bucket/models: not found")
  with pytest.raises(TaxiDemandError, match="not found"):
    serve("gs://no-such-bucket/log", epoch("2024-02-10T08:00"))
  with pytest.raises(TaxiDemandError, match="not found"):
    registry.push("gs://no-such-bucket/models", _writer("m"))


@pytest.mark.parametrize("address, needle", [
    ("gs://Bad_Bucket/models", "is not a bucket name"),
    ("gs://bucket/a//b", "empty, '.' or '..' parts"),
    ("gs:/bucket/models", "expected gs://BUCKET"),
])
def test_a_bad_address_is_one_line(address, needle):
  for call in (lambda: registry.versions(address),
               lambda: servelog.logged_days(address),
               lambda: servelog.sweep(address)):
    with pytest.raises(TaxiDemandError, match=needle) as error:
      call()
    assert _one_line(error).startswith("bad store address")


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]  # closed again when this returns


def test_missing_credentials_fail_fast_in_one_line(tmp_path):
  """No emulator and no credentials: google.auth looks for them, probes
  the metadata server (pointed at a closed loopback port here, so nothing
  leaves the machine) and gives up; the line says what to do."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "GCE_",
                              "CLOUDSDK_"))}
  metadata = f"127.0.0.1:{_closed_port()}"
  env.update(GCE_METADATA_HOST=metadata, GCE_METADATA_IP=metadata,
             CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path))
  code = ("from taxi_demand.errors import TaxiDemandError\n"
          "from taxi_demand.serving import registry\n"
          "try:\n"
          "  registry.serving_version('gs://some-bucket/models')\n"
          "except TaxiDemandError as e:\n"
          "  print(e)\n")
  started = time.monotonic()
  done = subprocess.run([sys.executable, "-c", code], env=env,
                        capture_output=True, text=True, timeout=60)
  assert time.monotonic() - started < 30
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines() == [
      "gs://some-bucket/models/CURRENT: no Google Cloud credentials found: "
      "run `gcloud auth application-default login`, or run as a service "
      "account"]
  assert "Warning" not in done.stderr
