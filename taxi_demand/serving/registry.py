"""The pushed-model registry: versioned folders and the pointer to the serving one.

Layout under the models folder (TAXI_DEMAND_HOME/models locally, or
gs://BUCKET/PREFIX/models):
  <version>/        one SavedModel per push; versions are integers that sort
                    in push order (unix seconds, bumped on collision)
    run_parameters.json   the run parameters the model was trained with
                    (slot length, cells, arrival rule...), when the push
                    gave them: the 5-minute job needs nothing else
    supply_rates.npz      the supply forecast's rates, fitted from the
                    training window by a Pusher that had the warehouse
                    (taxi_demand.supply_rates)
    .pushed_from    where the model was pushed from (idempotent pushes)
  CURRENT           the serving version's name, then the day (span) from
                    which it serves, minus one; replaced whole by a push
                    or a rollback

Readers resolve CURRENT, so they never see a half-written model: a push
fills a hidden folder and renames it into place before CURRENT moves. On
Cloud Storage a version is its objects plus a completion marker uploaded
last (taxi_demand.objectstore), and only marked versions exist for readers;
a push killed mid-upload leaves an unmarked folder that `prune` deletes.

CURRENT moves by the rule ML Metadata's serving timeline applies
(taxi_demand.lineage.queries.serving_timeline): a push by the run for day S
serves only if no push or rollback for a later day is in force. So re-running
an old day publishes its model as a version but never replaces one trained
on later data; `rollback` is how a person asks for an older model.
No TensorFlow, so the metadata commands can use it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from taxi_demand import cloud
from taxi_demand import faults
from taxi_demand import objectstore
from taxi_demand.errors import TaxiDemandError

POINTER = "CURRENT"
# Inside each version: where its model came from (the pushed model's path),
# so a push of the same model again (a Pusher killed after the rename and
# run again by --resume) finds its version instead of publishing a twin.
SOURCE_FILE = ".pushed_from"
# Inside each version: the run parameters it was trained with
# (lineage.contract.RunParameters.to_custom_config), written by the push.
PARAMETERS_FILE = "run_parameters.json"
# Where gs:// versions are copied to be loaded (TAXI_DEMAND_CACHE).
CACHE_ENV_VAR = "TAXI_DEMAND_CACHE"
_DEFAULT_CACHE = Path("~/.cache/taxi_demand")
_DOWNLOADING = ".downloading-"

Models = Union[str, os.PathLike]


def versions(models_dir: Models) -> List[str]:
  """Complete versions, oldest first."""
  return sorted((v for v in objectstore.at(models_dir).folders()
                 if v.isdigit()), key=int)


def _pointer(models_dir: Models) -> Tuple[Optional[str], Optional[int]]:
  """(version, span) that CURRENT names; span is None in older pointers."""
  store = objectstore.at(models_dir)
  pointer = store.child(POINTER)
  try:
    data = store.read_bytes(POINTER)
  except OSError as e:
    raise TaxiDemandError(f"cannot read {pointer}: {e.strerror}") from None
  if data is None:
    return None, None
  try:
    lines = data.decode("utf-8").split()
  except UnicodeDecodeError:
    # Not what set_serving writes (a version number and a day): say so
    # rather than guess which model to serve.
    raise TaxiDemandError(
        f"{pointer} is corrupt (not text); delete it to serve the newest "
        "pushed version, or write a version number into it") from None
  if not lines:
    return None, None
  span = int(lines[1]) if len(lines) > 1 and lines[1].lstrip("-").isdigit() \
      else None
  return lines[0], span


def serving_version(models_dir: Models) -> Optional[str]:
  """The version CURRENT names, else the newest, else None."""
  name, _ = _pointer(models_dir)
  if name is not None and objectstore.at(models_dir).has_folder(name):
    return name
  found = versions(models_dir)
  return found[-1] if found else None


def recorded_version(models_dir: Models,
                     metadata: Optional[os.PathLike]) -> Optional[str]:
  """The version that serves: CURRENT's, once ML Metadata records its push.

  The Pusher moves CURRENT inside its executor, and TFX records the push
  only after the executor returns; a process killed between the two (kill
  -9, a power loss) leaves CURRENT naming a version ML Metadata does not
  know, while `lineage serving` and the next run's resolver read ML
  Metadata. So ML Metadata is the record of what serves, and CURRENT its
  copy for a reader without a store: with the store at hand
  (`metadata`, the home's SQLite file), a CURRENT whose push it has not
  recorded is a push not made yet, and its serving version
  (queries.serving_version) serves. The next daily run puts CURRENT back
  (`reconcile`); `--resume` runs the Pusher again, which records the same
  version. CURRENT cannot simply move after TFX's record: the executor has
  returned by then, and a node of its own to move it would leave the same
  gap the other way round. Without a store (the 5-minute job on Google
  Cloud, where ML Metadata is Vertex's), or with one that cannot be read,
  CURRENT is trusted: the job keeps serving.

  Raises:
    TaxiDemandError: CURRENT names a version whose push was never recorded
      and ML Metadata records no push at all.
  """
  current = serving_version(models_dir)
  if current is None or metadata is None or not os.path.isfile(metadata):
    return current
  event = _unrecorded(current, metadata)
  return current if event is None else event.version


def _unrecorded(current: str, metadata: os.PathLike):
  """ML Metadata's serving event (queries.ServingEvent) if it has no push
  of version `current`; None if it has, or if the store cannot be read."""
  from taxi_demand.lineage import queries  # noqa: PLC0415
  from taxi_demand.lineage import store  # noqa: PLC0415
  try:
    snap = store.load(metadata)
  except TaxiDemandError:  # unreadable: the job keeps serving CURRENT, as
    return None            # it would with no store (the next run says why)
  if queries.push_recorded(snap, current):
    return None
  timeline = queries.serving_timeline(snap)
  if not timeline:
    raise TaxiDemandError(
        f"the registry names version {current}, but ML Metadata records no "
        "push yet (its Pusher did not finish); `python runner_local.py "
        "--resume` finishes it")
  return timeline[-1]


def reconcile(models_dir: Models, metadata: os.PathLike) -> Optional[str]:
  """Points CURRENT back at ML Metadata's serving version if it names a
  version whose push was never recorded (see `recorded_version`); returns
  the line saying so, or None. The daily run calls it as it starts."""
  current = serving_version(models_dir)
  if current is None or not os.path.isfile(metadata):
    return None
  try:
    event = _unrecorded(current, metadata)
    if event is None:
      return None
    set_serving(models_dir, event.version, event.span)
  except TaxiDemandError:  # no push recorded, or its folder is gone:
    return None            # --resume records the push again
  return (f"registry: CURRENT named version {current}, whose push ML "
          "Metadata never recorded (its Pusher was killed): version "
          f"{event.version} serves again")


def serving_span(models_dir: Models) -> Optional[int]:
  """The day of the push or rollback CURRENT records (None if unrecorded)."""
  return _pointer(models_dir)[1]


def _existing(models_dir: Models, version: Optional[str]) -> str:
  """`version` (default: the serving one) if it is complete, else one line."""
  if version is None:
    version = serving_version(models_dir)
    if version is None:
      raise TaxiDemandError(
          f"no pushed model under {models_dir}; run the pipeline first "
          "(python runner_local.py)")
    return version
  if not str(version).isdigit() or not objectstore.at(models_dir).has_folder(
      str(version)):
    found = versions(models_dir)
    raise TaxiDemandError(
        f"model version {version!r} does not exist; pushed versions: "
        f"{', '.join(found) or 'none'}")
  return str(version)


def resolve(models_dir: Models, version: Optional[str] = None
            ) -> Union[Path, str]:
  """Where `version` (default: serving) is, or one clear error.

  A Path for a local registry; for one on Cloud Storage the version's
  gs:// address (a str), checked but not downloaded: `local_copy` gives a
  folder to load.
  """
  return objectstore.join(models_dir, _existing(models_dir, version))


def cache_root() -> Path:
  """Where versions from Cloud Storage are kept to load ($TAXI_DEMAND_CACHE)."""
  return Path(os.environ.get(CACHE_ENV_VAR) or _DEFAULT_CACHE).expanduser()


def local_copy(models_dir: Models, version: Optional[str] = None) -> Path:
  """A local folder holding `version` (default: serving), to load.

  A local registry's version is its own folder. A version on Cloud Storage
  is downloaded once into the cache (`cache_root()`/models/BUCKET/PREFIX/
  VERSION): into a hidden folder renamed into place, so a download that was
  killed is never taken for a model. Versions never change once complete,
  and their numbers are never reused, so a cached one is used as it is.

  Raises:
    TaxiDemandError: no such version (or none serving), or a Cloud Storage
      failure.
  """
  if not objectstore.is_gcs(models_dir):
    return Path(resolve(models_dir, version))
  address = cloud.parse_gcs(str(models_dir))
  folder = cache_root() / "models" / address.bucket / address.prefix
  if version is not None and str(version).isdigit() and (
      folder / str(version)).is_dir():
    return folder / str(version)  # no request at all
  version = _existing(models_dir, version)
  final = folder / version
  if final.is_dir():
    return final
  folder.mkdir(parents=True, exist_ok=True)
  partial = folder / f"{_DOWNLOADING}{version}-{secrets.token_hex(4)}"
  try:
    objectstore.at(models_dir).download_folder(version, partial)
    try:
      os.rename(partial, final)
    except OSError:
      if not final.is_dir():  # not a twin download that finished first
        raise
  finally:
    shutil.rmtree(partial, ignore_errors=True)  # left only by a failure
  return final


def parameters(models_dir: Models, version: str) -> Optional[Dict]:
  """The run parameters pushed with `version`, or None if it has none.

  Raises:
    TaxiDemandError: the file is there but is not a JSON object.
  """
  store = objectstore.at(models_dir)
  key = f"{version}/{PARAMETERS_FILE}"
  data = store.read_bytes(key)
  if data is None:
    return None
  try:
    value = json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, ValueError) as e:
    raise TaxiDemandError(f"{store.child(key)} is corrupt: {e}") from None
  if not isinstance(value, dict):
    raise TaxiDemandError(f"{store.child(key)} is corrupt: not a JSON object")
  return value


def set_serving(models_dir: Models, version: str,
                span: Optional[int] = None) -> None:
  """Points CURRENT at `version`, replacing it whole.

  `span` is the day of the push or rollback that makes it serve.
  """
  resolve(models_dir, version)
  objectstore.at(models_dir).write_bytes(
      POINTER, (version + "\n" + ("" if span is None else f"{int(span)}\n")
                ).encode("utf-8"))


def supersedes(models_dir: Models, span: Optional[int]) -> bool:
  """Whether a push for day `span` serves over what CURRENT names now."""
  current = serving_span(models_dir)
  return span is None or current is None or int(span) >= current


def version_of_source(models_dir: Models, source: str) -> Optional[str]:
  """The newest version pushed from `source`, if one is still kept."""
  store = objectstore.at(models_dir)
  for version in reversed(versions(models_dir)):
    try:
      marker = store.read_bytes(f"{version}/{SOURCE_FILE}")
      if marker is not None and marker.decode("utf-8") == source:
        return version
    except (OSError, UnicodeDecodeError):
      continue
  return None


def push(models_dir: Models, write: Callable[[Path], None],
         keep: int = 5, now: Callable[[], float] = time.time,
         span: Optional[int] = None, source: Optional[str] = None,
         parameters: Optional[Dict] = None) -> str:
  """Publishes a new version atomically; it serves unless superseded.

  With `source` (where the model comes from), a model already pushed from
  there keeps its version: the push only makes sure CURRENT says what a
  push says. So a push that died after its rename, run again, records the
  version that may already have served instead of publishing a second.

  Args:
    models_dir: the registry: a folder or a gs:// address.
    write: fills the given (hidden, empty, local) folder with the model.
    keep: how many versions to keep; older ones are deleted, but never the
      one CURRENT names.
    now: clock, for tests.
    span: the day of the run that pushes; CURRENT moves only if no push or
      rollback for a later day serves (see `supersedes`).
    source: where the model comes from (see above).
    parameters: the run parameters (JSON-able), written into the version
      as PARAMETERS_FILE before it becomes visible; see `parameters()`.

  Returns:
    The new version's name.
  """
  store = objectstore.at(models_dir)
  found = None if source is None else version_of_source(models_dir, source)
  if found is not None:
    version = int(found)
  else:
    # Above every folder, unfinished ones included: a number is never
    # reused, so a cached copy of a version is always that version.
    taken = [int(v) for v in store.listing()[0] if v.isdigit()]
    version = max([int(now())] + [v + 1 for v in taken])

    def fill(folder: Path) -> None:
      write(folder)
      if parameters is not None:
        (folder / PARAMETERS_FILE).write_text(
            json.dumps(parameters, sort_keys=True, indent=1) + "\n")
      if source is not None:
        (folder / SOURCE_FILE).write_text(source)

    store.publish_folder(str(version), fill,
                         before_publish=lambda: faults.point(
                             "registry.staged"))
  if supersedes(models_dir, span):
    set_serving(models_dir, str(version), span)
  prune(models_dir, keep)
  return str(version)


def prune(models_dir: Models, keep: int) -> List[str]:
  """Deletes all but the newest `keep` versions (and the serving one), and
  what pushes that died left unfinished."""
  store = objectstore.at(models_dir)
  serving = serving_version(models_dir)
  found = versions(models_dir)
  doomed = [v for v in found[:-keep] if v != serving] if keep > 0 else []
  for v in doomed:
    store.delete_folder(v)
  for stale in store.unfinished():  # left by a crashed push
    store.delete_folder(stale)
  return doomed
