#!/usr/bin/env python3
"""Rewrites pylint's deferred-import suppressions into ruff's one syntax.

A deliberate deferred import (TensorFlow and TFX stay out of `--help` and the
metadata commands) is marked `# noqa: PLC0415`, which `make lint` checks.
Older code marks it `# pylint: disable=g-import-not-at-top`, sometimes with
`unused-import` or `wrong-import-position` beside it; this maps each name to
ruff's code (F401, E402), merges it into the line's `noqa`, and keeps any
reason written after it. Then ruff marks the deferred imports that carry no
mark at all. Rerun it after a merge:

  .venv/bin/python tools/deferred_imports.py

It is idempotent and prints how many lines it rewrote. Last, ruff drops any
`noqa` code that suppresses nothing (RUF100).
"""

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Set

REPO = Path(__file__).resolve().parent.parent
RUFF = REPO / ".venv" / "bin" / "ruff"

# pylint's name -> ruff's code. g-import-not-at-top is PLC0415 inside a
# function and E402 at module level (an import after code).
_CODES = {"unused-import": "F401", "wrong-import-position": "E402"}
_DEFERRED = "g-import-not-at-top"
_PYLINT = re.compile(r"#?\s*pylint:\s*disable=([\w,-]+)")
_NOQA = re.compile(r"#\s*noqa:\s*([A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)")


def _convert(line: str) -> str:
  """The line with its deferred-import pylint comment as a ruff `noqa`."""
  pylint = _PYLINT.search(line)
  if not pylint or _DEFERRED not in pylint.group(1).split(","):
    return line
  names = pylint.group(1).split(",")
  deferred = "PLC0415" if line[:1].isspace() else "E402"
  codes = [deferred if n == _DEFERRED else _CODES[n]
           for n in names if n == _DEFERRED or n in _CODES]
  rest = [n for n in names if n != _DEFERRED and n not in _CODES]
  head = line[:pylint.start()].rstrip()
  tail = line[pylint.end():].strip()  # a reason written after it, if any
  if not head.strip("# ") and not rest and not tail:
    return ""  # a block's own line: ruff marks each import instead
  noqa = _NOQA.search(head)
  have = [c.strip() for c in noqa.group(1).split(",")] if noqa else []
  merged = ",".join(dict.fromkeys(have + codes))
  if noqa:
    head = head[:noqa.start()] + "# noqa: " + merged + head[noqa.end():]
  else:
    head += "  # noqa: " + merged
  if rest:  # names with no ruff code stay pylint's
    head += "  pylint: disable=" + ",".join(rest)
  return head + ("  " + tail if tail else "") + (
      "\n" if line.endswith("\n") else "")


def _commented_lines(text: str) -> Set[int]:
  """Indexes of the lines whose comment (not a string) names it."""
  tokens = tokenize.generate_tokens(io.StringIO(text).readline)
  return {t.start[0] - 1 for t in tokens
          if t.type == tokenize.COMMENT and _DEFERRED in t.string}


def convert_files() -> int:
  """Rewrites every tracked Python file; returns the lines rewritten."""
  files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
  changed = 0
  for name in files:
    path = REPO / name
    text = path.read_text()
    if _DEFERRED not in text:
      continue
    old = text.splitlines(keepends=True)
    new = list(old)
    for i in _commented_lines(text):
      new[i] = _convert(old[i])
    if new != old:
      changed += sum(a != b for a, b in zip(old, new))
      path.write_text("".join(new))
  return changed


def mark_unmarked() -> None:
  """Lets ruff add `# noqa: PLC0415` to deferred imports with no mark."""
  subprocess.run([str(RUFF), "check", "--select", "PLC0415", "--add-noqa",
                  "--quiet", "."], cwd=REPO, check=True)


def drop_stale() -> None:
  """Lets ruff drop the codes that suppress nothing (RUF100): an E402 that
  ruff does not raise after a sys.path edit, say."""
  subprocess.run([str(RUFF), "check", "--fix-only", "--fixable", "RUF100",
                  "--quiet", "."], cwd=REPO, check=True)


def main() -> int:
  print(f"deferred_imports: {convert_files()} pylint comment(s) rewritten",
        file=sys.stderr)
  mark_unmarked()
  drop_stale()
  return 0


if __name__ == "__main__":
  sys.exit(main())
