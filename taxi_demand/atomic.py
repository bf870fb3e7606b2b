"""Files written whole or not at all, and never through a link planted beside them.

A writer fills a temporary in the target's folder, then renames it over the
target. The temporary is created with O_CREAT | O_EXCL | O_NOFOLLOW under a
random name: a name anyone could predict (say `.index.html.<pid>.tmp`) lets
whoever can write to a shared folder plant a symlink there first, and an
open() that follows it writes into the link's target instead. O_EXCL refuses
any existing name, a dangling link included; the rename replaces a link at
the target's own name instead of writing through it.

The temporary's name ends in `.<pid>.tmp`, so a sweeper can tell one whose
writer died (`writer_pid`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

SUFFIX = ".tmp"
_ATTEMPTS = 16


def _create_exclusive(folder: Path, name: str) -> tuple:
  """(fd, path) of a new file in `folder`, made by us, under a random name."""
  flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
           | getattr(os, "O_CLOEXEC", 0))
  for _ in range(_ATTEMPTS):
    tmp = folder / f".{name}.{secrets.token_hex(8)}.{os.getpid()}{SUFFIX}"
    try:
      return os.open(tmp, flags, 0o666), tmp  # the umask applies, as for open()
    except FileExistsError:
      continue  # someone holds that name: never reuse it
  raise FileExistsError(f"no free temporary name for {name} in {folder}")


@contextlib.contextmanager
def replacing(final: os.PathLike) -> Iterator[BinaryIO]:
  """Yields a binary file; on a clean exit it replaces `final` whole.

  On an exception the temporary is removed and `final` is left as it was.
  """
  final = Path(final)
  fd, tmp = _create_exclusive(final.parent, final.name)
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
    os.replace(tmp, final)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_bytes(final: os.PathLike, data: bytes) -> Path:
  """Replaces `final` with `data`, atomically."""
  with replacing(final) as f:
    f.write(data)
  return Path(final)


def write_text(final: os.PathLike, text: str, encoding: str = "utf-8") -> Path:
  """Replaces `final` with `text`, atomically."""
  return write_bytes(final, text.encode(encoding))


def writer_pid(tmp: os.PathLike) -> Optional[int]:
  """The pid in a temporary's name (None if it is not one of ours)."""
  name = Path(tmp).name
  if not name.endswith(SUFFIX):
    return None
  pid = name[:-len(SUFFIX)].rsplit(".", 1)[-1]
  return int(pid) if pid.isdigit() else None
