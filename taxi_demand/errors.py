"""Errors that the CLI turns into one line and an exit code.

`exit_codes` is the one place a failure becomes an exit code and its console
lines; `taxi-demand`, runner_local.py and runner_vertex.py each wrap their
work in it with their own prefix. Standard library only: `--help` and the
bad-input checks must not wait for TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Callable, Iterator, Optional

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ALERT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class TaxiDemandError(Exception):
  """A user-facing failure: bad input, missing state. Exit code 1."""

  exit_code = EXIT_ERROR


class CannotMeasure(TaxiDemandError):
  """Valid data that lacks what a check needs: no dropoff areas for the
  fleet, too few trips to judge. A gate records it as "not measured, and
  why" and the run goes on to its decision on what can be measured; a
  command reports it like any other bad input (exit 1). Anything else a
  check raises is a failure of the check itself."""


class AlertError(TaxiDemandError):
  """A validation, skew or degradation alert. Exit code 3."""

  exit_code = EXIT_ALERT


class Outcome:
  """How a block guarded by `exit_codes` ended: `exit_code`, 0 until set.

  `outcome["exit_code"]` reads the same value, for callers of the dict that
  `pipeline.local_run.guarded` used to yield.
  """

  def __init__(self) -> None:
    self.exit_code = EXIT_OK

  def __getitem__(self, key: str) -> int:
    if key != "exit_code":
      raise KeyError(key)
    return self.exit_code


def _unexpected(error: BaseException) -> str:
  return (f"unexpected {type(error).__name__}: {error} "
          "(rerun with --verbose for the traceback)")


@contextlib.contextmanager
def exit_codes(
    prefix: str,
    verbose: bool = False,
    *,
    alert_prefix: Optional[str] = None,
    interrupted: Optional[str] = None,
    unexpected: Callable[[BaseException], str] = _unexpected,
    log_unexpected: Optional[Callable[[BaseException], None]] = None,
    broken_pipe_ok: bool = False,
) -> Iterator[Outcome]:
  """Turns what the block raises into stderr lines and `outcome.exit_code`.

    with exit_codes("taxi-demand runs: ", args.verbose) as outcome:
      outcome.exit_code = handler(args)
    return outcome.exit_code

  TaxiDemandError: its exit_code and `prefix + message`. KeyboardInterrupt:
  130. Anything else: 1 and `prefix + unexpected(error)`. Tracebacks only
  with `verbose`. Nothing else is caught (SystemExit passes through).

  Args:
    prefix: starts every line, e.g. "taxi-demand runs: " or "error: ".
    verbose: also print the traceback.
    alert_prefix: when set, an AlertError prints one `alert_prefix + line`
      per line of its message instead of the `prefix` line.
    interrupted: the whole line for Ctrl-C (default `prefix + "interrupted"`).
    unexpected: the message, after `prefix`, for an error that is not a
      TaxiDemandError.
    log_unexpected: called with such an error first, e.g. to put the whole
      story in a log file.
    broken_pipe_ok: a BrokenPipeError means the reader (`| head`) left
      early: exit 0 and silence stdout's final flush.
  """
  outcome = Outcome()
  try:
    yield outcome
  except TaxiDemandError as e:
    if verbose:
      traceback.print_exc()
    if alert_prefix is not None and isinstance(e, AlertError):
      lines = [alert_prefix + line for line in str(e).splitlines()]
    else:
      lines = [f"{prefix}{e}"]
    for line in lines:
      print(line, file=sys.stderr)
    outcome.exit_code = e.exit_code
  except KeyboardInterrupt:
    print(f"{prefix}interrupted" if interrupted is None else interrupted,
          file=sys.stderr)
    outcome.exit_code = EXIT_INTERRUPTED
  except Exception as e:  # pylint: disable=broad-except
    if broken_pipe_ok and isinstance(e, BrokenPipeError):
      _silence_stdout()
      return  # exit_code stays 0
    if log_unexpected is not None:
      log_unexpected(e)
    if verbose:
      traceback.print_exc()
    print(f"{prefix}{unexpected(e)}", file=sys.stderr)
    outcome.exit_code = EXIT_ERROR


def _silence_stdout() -> None:
  """Points stdout at devnull so the interpreter's final flush is quiet."""
  try:
    fd = sys.stdout.fileno()
  except (AttributeError, OSError, ValueError):  # not a real file (tests)
    return
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, fd)
  finally:
    os.close(devnull)
