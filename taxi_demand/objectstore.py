"""One small object store over a local folder or a gs://BUCKET/PREFIX.

The registry and the served log say what they store (keys such as
`1000/saved_model.pb`, `CURRENT`, `date=2024-02-11/part-...parquet`); a store
says how it is made visible whole on its backend:

* a local folder writes a hidden temporary and renames it into place (files
  through `taxi_demand.atomic`, folders through one directory rename);
* Cloud Storage makes an object visible only when its upload completes, so a
  file is one upload. A folder is many objects, so it is visible only once a
  completion marker (`MARKER`) is uploaded after every file: readers list
  only folders that have one.

Cloud Storage goes through google-cloud-storage, whose client is created on
first use (it costs about a second, and `--help` must not wait for it),
honours $STORAGE_EMULATOR_HOST (anonymous credentials, as the tests use), and
retries transient errors for `cloud.retry_deadline()` seconds. Whatever it
raises reaches the caller as one TaxiDemandError line naming the address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from concurrent import futures
from pathlib import Path
from typing import (Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple, Union)

from taxi_demand import atomic
from taxi_demand import cloud
from taxi_demand.errors import TaxiDemandError

Location = Union[str, os.PathLike]

# Inside a folder on Cloud Storage: uploaded after every other object, so a
# folder without it is one whose writer died mid-upload (never read).
MARKER = ".complete"
# A local folder's temporary while it is filled (renamed into place).
STAGING = ".incoming-"
# Seconds one request may take before it counts as failed (and is retried).
_REQUEST_TIMEOUT_S = 60.0
# Parallel downloads: a day of the served log is ~288 objects.
_READERS = 8


def is_gcs(location: Location) -> bool:
  """A Cloud Storage address, also a mistyped one (`gs:/b`), so that it
  fails as a bad address instead of naming a local folder `gs:`."""
  return isinstance(location, cloud.GcsAddress) or (
      isinstance(location, str) and location.strip().lower().startswith(
          "gs:"))


def _address(location: Location) -> cloud.GcsAddress:
  return cloud.parse_gcs(str(location))


def at(location: Location) -> "Store":
  """The store rooted at a local folder or a gs:// address.

  Raises:
    TaxiDemandError: a gs:// address that does not parse.
  """
  if is_gcs(location):
    return GcsStore(_address(location))
  return LocalStore(Path(location))


def join(location: Location, key: str) -> Union[Path, str]:
  """`location`/`key`: a Path for a local folder, a str on Cloud Storage."""
  if is_gcs(location):
    return str(_address(location).child(key))
  return Path(location) / key


def split(location: Location) -> Tuple[Union[Path, str], str]:
  """(parent, name) of a file's address."""
  if is_gcs(location):
    address = _address(location)
    parent, _, name = address.prefix.rpartition("/")
    if not name:
      raise TaxiDemandError(f"bad object address {location!r}: it "
                                  "names a bucket, not an object")
    return str(cloud.GcsAddress(address.bucket, parent)), name
  path = Path(location)
  return path.parent, path.name


class Store:
  """Keys are '/'-separated names relative to the store's root."""

  location: Union[Path, str]

  def child(self, key: str) -> Union[Path, str]:
    """The address of `key`, for messages and return values."""
    raise NotImplementedError

  def read_bytes(self, key: str) -> Optional[bytes]:
    """The object's bytes, or None if there is none."""
    raise NotImplementedError

  def read_many(self, keys: Sequence[str]
                ) -> List[Union[bytes, None, OSError]]:
    """read_bytes of each key, in order; a local file that cannot be read
    is its OSError instead (a reader skips it and says why)."""
    out: List[Union[bytes, None, OSError]] = []
    for key in keys:
      try:
        out.append(self.read_bytes(key))
      except OSError as e:
        out.append(e)
    return out

  def write_bytes(self, key: str, data: bytes,
                  before_publish: Callable[[], None] = lambda: None) -> None:
    """Replaces `key` whole; a reader sees the old object or the new one.

    `before_publish` runs once the bytes are ready and not yet visible (a
    crash point).
    """
    raise NotImplementedError

  def exists(self, key: str) -> bool:
    raise NotImplementedError

  def delete(self, key: str) -> None:
    """Deletes one object (a missing one is fine)."""
    raise NotImplementedError

  def listing(self, prefix: str = "") -> Tuple[List[str], List[str]]:
    """(folder names, file names) directly under `prefix`, sorted."""
    raise NotImplementedError

  # -- folders published whole -----------------------------------------------

  def folders(self) -> List[str]:
    """Top-level folders that are complete, sorted by name."""
    raise NotImplementedError

  def has_folder(self, name: str) -> bool:
    """Whether the top-level folder `name` is complete."""
    raise NotImplementedError

  def unfinished(self) -> List[str]:
    """Top-level folders whose writer died before publishing them."""
    raise NotImplementedError

  def publish_folder(self, name: str, fill: Callable[[Path], None],
                     before_publish: Callable[[], None] = lambda: None
                     ) -> None:
    """Calls `fill(folder)` on an empty local folder, then publishes it as
    the top-level folder `name` (which must not exist yet), whole.

    `before_publish` runs once every file is stored and none is visible.
    """
    raise NotImplementedError

  def delete_folder(self, name: str) -> None:
    """Deletes a folder, complete or not."""
    raise NotImplementedError

  def download_folder(self, name: str, to: Path) -> None:
    """Copies a complete folder's files into the new local folder `to`."""
    raise NotImplementedError


class LocalStore(Store):
  """A local folder: hidden temporaries renamed into place."""

  def __init__(self, root: Path):
    self.location = root
    self.root = root

  def child(self, key: str) -> Path:
    return self.root / key

  def read_bytes(self, key: str) -> Optional[bytes]:
    try:
      return (self.root / key).read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
      return None

  def write_bytes(self, key: str, data: bytes,
                  before_publish: Callable[[], None] = lambda: None) -> None:
    final = self.root / key
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(final) as f:
      f.write(data)
      f.flush()
      before_publish()

  def exists(self, key: str) -> bool:
    return (self.root / key).exists()

  def delete(self, key: str) -> None:
    (self.root / key).unlink(missing_ok=True)

  def listing(self, prefix: str = "") -> Tuple[List[str], List[str]]:
    folder = self.root / prefix if prefix else self.root
    if not folder.is_dir():
      return [], []
    folders, files = [], []
    for p in folder.iterdir():
      (folders if p.is_dir() else files).append(p.name)
    return sorted(folders), sorted(files)

  def folders(self) -> List[str]:
    return [n for n in self.listing()[0] if not n.startswith(".")]

  def has_folder(self, name: str) -> bool:
    return (self.root / name).is_dir()

  def unfinished(self) -> List[str]:
    return [n for n in self.listing()[0] if n.startswith(STAGING)]

  def publish_folder(self, name: str, fill: Callable[[Path], None],
                     before_publish: Callable[[], None] = lambda: None
                     ) -> None:
    self.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{STAGING}{name}-"))
    try:
      fill(staging)
      before_publish()
      os.rename(staging, self.root / name)  # atomic within a filesystem
    except BaseException:
      shutil.rmtree(staging, ignore_errors=True)
      raise

  def delete_folder(self, name: str) -> None:
    shutil.rmtree(self.root / name, ignore_errors=True)

  def download_folder(self, name: str, to: Path) -> None:
    shutil.copytree(self.root / name, to)


# ---- Cloud Storage -------------------------------------------------------------

_clients: Dict[Tuple[Optional[str], int], object] = {}
_clients_lock = threading.Lock()


def _client():
  """The process's storage client, made on first use.

  One per $STORAGE_EMULATOR_HOST (tests point it at their emulator) and
  process (a forked child must not share its parent's connections). The
  reader threads share it, as google-cloud-storage's transfer_manager does.
  """
  key = (os.environ.get("STORAGE_EMULATOR_HOST"), os.getpid())
  with _clients_lock:
    if key not in _clients:
      with _quiet_google():
        from google.cloud import storage  # noqa: PLC0415 - about a second
      # project=None: object calls need no project, and the client then
      # does not fail where the credentials carry none (a service account
      # on Cloud Run does; a user's gcloud login may not).
      _clients[key] = storage.Client(project=None)
    return _clients[key]


@contextlib.contextmanager
def _quiet_google() -> Iterator[None]:
  """google.api_core warns on import that Python 3.10 support ends."""
  import warnings  # noqa: PLC0415
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)
    yield


def _retry():
  """The client's retry policy for transient errors, with our deadline."""
  from google.cloud.storage.retry import DEFAULT_RETRY  # noqa: PLC0415
  return DEFAULT_RETRY.with_deadline(cloud.retry_deadline())


def _is_not_found(error: BaseException) -> bool:
  from google.api_core import exceptions as api  # noqa: PLC0415
  return isinstance(error, api.NotFound)


def _google_errors() -> Tuple[type, ...]:
  """What the client raises for a call that failed (not for a bug of ours,
  nor a full local disk, which keep their own messages)."""
  import requests  # noqa: PLC0415
  from google.api_core import exceptions as api  # noqa: PLC0415
  from google.auth import exceptions as auth  # noqa: PLC0415
  from google.resumable_media import common as media  # noqa: PLC0415
  return (api.GoogleAPIError, auth.GoogleAuthError,
          requests.exceptions.RequestException, media.InvalidResponse,
          media.DataCorruption)


class GcsStore(Store):
  """gs://bucket/prefix: one upload per object, markers for folders."""

  def __init__(self, address: cloud.GcsAddress):
    self.address = address
    self.location = str(address)

  def child(self, key: str) -> str:
    return str(self.address.child(key))

  def _name(self, key: str) -> str:
    return f"{self.address.prefix}/{key}".strip("/")

  @contextlib.contextmanager
  def _calling(self, key: str = "") -> Iterator[None]:
    """Turns whatever the client raises into one line about the address."""
    try:
      with _quiet_google():
        yield
    except Exception as e:  # pylint: disable=broad-except  (filtered below)
      if not isinstance(e, _google_errors()):
        raise
      raise cloud.one_line(e, str(self.child(key) if key else self.location)
                           ) from None

  def _blob(self, key: str):
    return _client().bucket(self.address.bucket).blob(self._name(key))

  def read_bytes(self, key: str) -> Optional[bytes]:
    with self._calling(key):
      try:
        return self._blob(key).download_as_bytes(
            retry=_retry(), timeout=_REQUEST_TIMEOUT_S)
      except Exception as e:  # pylint: disable=broad-except
        # A missing object; a missing bucket shows at the next listing.
        if _is_not_found(e):
          return None
        raise

  def read_many(self, keys: Sequence[str]
                ) -> List[Union[bytes, None, OSError]]:
    if len(keys) < 2:
      return [self.read_bytes(k) for k in keys]
    # A failure here is the bucket's, not one object's: it raises.
    with futures.ThreadPoolExecutor(min(_READERS, len(keys))) as pool:
      return list(pool.map(self.read_bytes, keys))

  def write_bytes(self, key: str, data: bytes,
                  before_publish: Callable[[], None] = lambda: None) -> None:
    before_publish()  # the bytes are ready; the upload makes them visible
    with self._calling(key):
      # Retried although not conditional: the same bytes again are the same
      # object, which is what a tick served again means.
      self._blob(key).upload_from_string(
          data, retry=_retry(), timeout=_REQUEST_TIMEOUT_S)

  def exists(self, key: str) -> bool:
    with self._calling(key):
      return self._blob(key).exists(retry=_retry(), timeout=_REQUEST_TIMEOUT_S)

  def delete(self, key: str) -> None:
    with self._calling(key):
      try:
        self._blob(key).delete(retry=_retry(), timeout=_REQUEST_TIMEOUT_S)
      except Exception as e:  # pylint: disable=broad-except
        if not _is_not_found(e):
          raise

  def _list(self, prefix: str, delimiter: Optional[str]
            ) -> Tuple[List[str], List[str]]:
    """(sub-prefixes, object names), relative to `prefix`."""
    base = self._name(prefix)
    base = f"{base}/" if base else ""
    with self._calling(prefix):
      pages = _client().list_blobs(
          self.address.bucket, prefix=base, delimiter=delimiter,
          retry=_retry(), timeout=_REQUEST_TIMEOUT_S)
      names = [b.name[len(base):] for b in pages]
      folders = [p[len(base):].rstrip("/") for p in pages.prefixes]
    return sorted(folders), sorted(names)

  def listing(self, prefix: str = "") -> Tuple[List[str], List[str]]:
    return self._list(prefix, "/")

  def _tops(self) -> Tuple[List[str], set]:
    """(every top-level folder, those with a marker), in one listing."""
    _, names = self._list("", None)
    folders = sorted({n.split("/", 1)[0] for n in names if "/" in n})
    marked = {n.split("/", 1)[0] for n in names if n.endswith("/" + MARKER)
              and n.count("/") == 1}
    return folders, marked

  def folders(self) -> List[str]:
    folders, marked = self._tops()
    return [f for f in folders if f in marked]

  def has_folder(self, name: str) -> bool:
    return self.exists(f"{name}/{MARKER}")

  def unfinished(self) -> List[str]:
    folders, marked = self._tops()
    return [f for f in folders if f not in marked]

  def publish_folder(self, name: str, fill: Callable[[Path], None],
                     before_publish: Callable[[], None] = lambda: None
                     ) -> None:
    with tempfile.TemporaryDirectory(prefix=STAGING) as staging:
      fill(Path(staging))
      files = sorted(p for p in Path(staging).rglob("*") if p.is_file())
      with self._calling(name):
        for path in files:
          key = f"{name}/{path.relative_to(staging).as_posix()}"
          self._blob(key).upload_from_filename(
              str(path), retry=_retry(), timeout=_REQUEST_TIMEOUT_S)
      before_publish()
      self.write_bytes(f"{name}/{MARKER}", b"")  # last: now it is visible

  def delete_folder(self, name: str) -> None:
    _, names = self._list(name, None)
    # The marker first: a folder half deleted is unfinished, never read.
    for relative in sorted(names, key=lambda n: n != MARKER):
      self.delete(f"{name}/{relative}")

  def download_folder(self, name: str, to: Path) -> None:
    _, names = self._list(name, None)
    to.mkdir(parents=True)
    for relative in names:
      if relative == MARKER:
        continue
      target = to / relative
      target.parent.mkdir(parents=True, exist_ok=True)
      with self._calling(f"{name}/{relative}"):
        self._blob(f"{name}/{relative}").download_to_filename(
            str(target), retry=_retry(), timeout=_REQUEST_TIMEOUT_S)
