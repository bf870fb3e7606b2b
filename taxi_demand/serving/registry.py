"""The pushed-model registry: versioned folders and the pointer to the serving one.

Layout under the models folder (TAXI_DEMAND_HOME/models locally):
  <version>/        one SavedModel per push; versions are integers that sort
                    in push order (unix seconds, bumped on collision)
  CURRENT           the serving version's name, then the day (span) from
                    which it serves, minus one; replaced atomically by a push
                    or a rollback

Readers resolve CURRENT, so they never see a half-written model: a push
writes into a hidden folder and renames it into place before CURRENT moves.

CURRENT moves by the rule ML Metadata's serving timeline applies
(taxi_demand.lineage.queries.serving_timeline): a push by the run for day S
serves only if no push or rollback for a later day is in force. So re-running
an old day publishes its model as a version but never replaces one trained
on later data; `rollback` is how a person asks for an older model.
Pure filesystem code, no TensorFlow, so the metadata commands can use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from taxi_demand.errors import TaxiDemandError

POINTER = "CURRENT"
_INCOMING = ".incoming-"
# Inside each version: where its model came from (the pushed model's path),
# so a push of the same model again (a Pusher killed after the rename and
# run again by --resume) finds its version instead of publishing a twin.
SOURCE_FILE = ".pushed_from"


def versions(models_dir: os.PathLike) -> List[str]:
  """Complete versions, oldest first."""
  root = Path(models_dir)
  if not root.is_dir():
    return []
  return sorted((p.name for p in root.iterdir()
                 if p.is_dir() and p.name.isdigit()), key=int)


def _pointer(models_dir: os.PathLike) -> Tuple[Optional[str], Optional[int]]:
  """(version, span) that CURRENT names; span is None in older pointers."""
  pointer = Path(models_dir) / POINTER
  if not pointer.is_file():
    return None, None
  try:
    lines = pointer.read_text(encoding="utf-8").split()
  except UnicodeDecodeError:
    # Not what set_serving writes (a version number and a day): say so
    # rather than guess which model to serve.
    raise TaxiDemandError(
        f"{pointer} is corrupt (not text); delete it to serve the newest "
        "pushed version, or write a version number into it") from None
  except OSError as e:
    raise TaxiDemandError(f"cannot read {pointer}: {e.strerror}") from None
  if not lines:
    return None, None
  span = int(lines[1]) if len(lines) > 1 and lines[1].lstrip("-").isdigit() \
      else None
  return lines[0], span


def serving_version(models_dir: os.PathLike) -> Optional[str]:
  """The version CURRENT names, else the newest, else None."""
  name, _ = _pointer(models_dir)
  if name is not None and (Path(models_dir) / name).is_dir():
    return name
  found = versions(models_dir)
  return found[-1] if found else None


def serving_span(models_dir: os.PathLike) -> Optional[int]:
  """The day of the push or rollback CURRENT records (None if unrecorded)."""
  return _pointer(models_dir)[1]


def resolve(models_dir: os.PathLike, version: Optional[str] = None) -> Path:
  """The folder of `version` (default: serving), or one clear error."""
  found = versions(models_dir)
  if version is None:
    version = serving_version(models_dir)
    if version is None:
      raise TaxiDemandError(
          f"no pushed model under {models_dir}; run the pipeline first "
          "(python runner_local.py)")
  if version not in found:
    raise TaxiDemandError(
        f"model version {version!r} does not exist; pushed versions: "
        f"{', '.join(found) or 'none'}")
  return Path(models_dir) / version


def set_serving(models_dir: os.PathLike, version: str,
                span: Optional[int] = None) -> None:
  """Points CURRENT at `version` atomically (write a temp file, rename).

  `span` is the day of the push or rollback that makes it serve.
  """
  root = Path(models_dir)
  resolve(root, version)
  fd, tmp = tempfile.mkstemp(dir=root, prefix=".pointer-")
  with os.fdopen(fd, "w") as f:
    f.write(version + "\n" + ("" if span is None else f"{int(span)}\n"))
  os.replace(tmp, root / POINTER)


def supersedes(models_dir: os.PathLike, span: Optional[int]) -> bool:
  """Whether a push for day `span` serves over what CURRENT names now."""
  current = serving_span(models_dir)
  return span is None or current is None or int(span) >= current


def version_of_source(models_dir: os.PathLike, source: str
                      ) -> Optional[str]:
  """The newest version pushed from `source`, if one is still kept."""
  root = Path(models_dir)
  for version in reversed(versions(root)):
    marker = root / version / SOURCE_FILE
    try:
      if marker.read_text() == source:
        return version
    except (OSError, UnicodeDecodeError):
      continue
  return None


def push(models_dir: os.PathLike, write: Callable[[Path], None],
         keep: int = 5, now: Callable[[], float] = time.time,
         span: Optional[int] = None, source: Optional[str] = None) -> str:
  """Publishes a new version atomically; it serves unless superseded.

  With `source` (where the model comes from), a model already pushed from
  there keeps its version: the push only makes sure CURRENT says what a
  push says. So a push that died after its rename, run again, records the
  version that may already have served instead of publishing a second.

  Args:
    models_dir: the registry folder.
    write: fills the given (hidden, empty) folder with the model.
    keep: how many versions to keep; older ones are deleted, but never the
      one CURRENT names.
    now: clock, for tests.
    span: the day of the run that pushes; CURRENT moves only if no push or
      rollback for a later day serves (see `supersedes`).

  Returns:
    The new version's name.
  """
  root = Path(models_dir)
  root.mkdir(parents=True, exist_ok=True)
  existing = versions(root)
  found = None if source is None else version_of_source(root, source)
  if found is not None:
    version = int(found)
  else:
    version = int(now())
    if existing:
      version = max(version, int(existing[-1]) + 1)
    staging = Path(tempfile.mkdtemp(dir=root,
                                    prefix=f"{_INCOMING}{version}-"))
    try:
      write(staging)
      if source is not None:
        (staging / SOURCE_FILE).write_text(source)
      os.rename(staging, root / str(version))  # atomic within a filesystem
    except BaseException:
      shutil.rmtree(staging, ignore_errors=True)
      raise
  if supersedes(root, span):
    set_serving(root, str(version), span)
  prune(root, keep)
  return str(version)


def prune(models_dir: os.PathLike, keep: int) -> List[str]:
  """Deletes all but the newest `keep` versions (and the serving one)."""
  root = Path(models_dir)
  serving = serving_version(root)
  found = versions(root)
  doomed = [v for v in found[:-keep] if v != serving] if keep > 0 else []
  for v in doomed:
    shutil.rmtree(root / v, ignore_errors=True)
  for stale in root.glob(_INCOMING + "*"):  # left by a crashed push
    shutil.rmtree(stale, ignore_errors=True)
  return doomed
