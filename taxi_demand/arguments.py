"""argparse for every entry point: one-line usage errors, values checked early.

`taxi-demand`, runner_local.py and runner_vertex.py build their parsers from
`Parser`, so a mistyped flag is one line and exit code 1, as every other bad
input is, instead of argparse's usage block and exit code 2. `count` and
`number` are argparse types that refuse nonsense (a zero count, nan, inf)
where the flag is read, before any work starts. Standard library only.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, NoReturn, Optional

from taxi_demand.errors import EXIT_ERROR


class Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line on stderr and exit code 1.

  Subparsers made with `add_subparsers().add_parser` are of the same class.
  `--help` is untouched: the whole help on stdout, exit code 0.
  """

  def error(self, message: str) -> NoReturn:
    # argparse quotes most values with repr(), but not an unrecognized
    # argument: escape line breaks so a value cannot forge a second line.
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    print(f"{self.prog}: error: {message} (see {self.prog} --help)",
          file=sys.stderr)
    self.exit(EXIT_ERROR)


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool],
             wanted: str, name: str) -> Callable[[str], Any]:
  """An argparse type: `convert(text)`, refused with `wanted` unless ok."""

  def parse(text: str):
    try:
      value = convert(text)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"expected {wanted}, got {text!r}") from None
    if not ok(value):
      raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
    return value

  parse.__name__ = name  # argparse names a type by it in some messages
  return parse


def count(minimum: int = 1) -> Callable[[str], int]:
  """An argparse type: an integer >= `minimum`."""
  return _checked(int, lambda v: v >= minimum, f"an integer >= {minimum}",
                  "count")


def number(minimum: Optional[float] = None, *, positive: bool = False
           ) -> Callable[[str], float]:
  """An argparse type: a finite float, > 0 if `positive`, >= `minimum`.

  float() reads "nan" and "inf"; no limit or speed means anything then.
  """
  wanted = "a finite number" + (" > 0" if positive else "") + (
      "" if minimum is None else f" >= {minimum:g}")
  return _checked(
      float, lambda v: math.isfinite(v) and not (positive and v <= 0) and (
          minimum is None or v >= minimum), wanted, "number")
