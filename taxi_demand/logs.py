"""Quiet console, full log file: where TensorFlow, absl and Beam chatter goes.

Library code must leave the process as it found it: `taxi_demand.cli.main`
and the runners' `main` are also called in-process (tests, notebooks). So
`configure` touches only handlers it installed itself, and `preserved()` (or
the handle `configure` returns) puts back the root logger's handlers and
level, the warnings filters, `logging.captureWarnings` and absl's verbosity.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, List, Optional

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OwnHandler:
  """Marks the handlers `configure` installs; only those are ever removed."""


class _FileHandler(_OwnHandler, logging.FileHandler):
  pass


class _ConsoleHandler(_OwnHandler, logging.StreamHandler):
  pass


class LogSetup:
  """The global logging state at creation; `close()` puts it back.

  Covers the root logger's handlers and level, warnings filters and
  `warnings.showwarning` (so `logging.captureWarnings`), the `py.warnings`
  logger, and absl's verbosity. Handlers added to the root logger since are
  taken off again, and closed if `configure` installed them. Usable as a
  context manager; `close()` is idempotent.

  Not covered: environment variables (see `configure`) and handlers other
  code adds to loggers other than root.
  """

  def __init__(self) -> None:
    self.log_file: Optional[Path] = None
    root = logging.getLogger()
    self._handlers: List[logging.Handler] = list(root.handlers)
    self._level = root.level
    py_warnings = logging.getLogger("py.warnings")
    self._py_warnings = (list(py_warnings.handlers), py_warnings.level,
                         py_warnings.propagate, py_warnings.disabled)
    # logging keeps the showwarning it replaced here while it captures.
    self._capturing = getattr(logging, "_warnings_showwarning", None) is not None
    self._warnings = warnings.catch_warnings()  # filters and showwarning
    self._warnings.__enter__()
    self._absl = _absl_state()
    self._closed = False

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    logging.captureWarnings(self._capturing)
    self._warnings.__exit__(None, None, None)
    _restore_absl(self._absl)  # before the root level: it may set it
    root = logging.getLogger()
    installed = [h for h in root.handlers if h not in self._handlers]
    root.handlers[:] = self._handlers  # as they were, in their order
    for handler in installed:
      if isinstance(handler, _OwnHandler):
        handler.close()
    root.setLevel(self._level)
    py_warnings = logging.getLogger("py.warnings")
    handlers, level, propagate, disabled = self._py_warnings
    py_warnings.handlers[:] = handlers
    py_warnings.setLevel(level)
    py_warnings.propagate = propagate
    py_warnings.disabled = disabled

  def __enter__(self) -> "LogSetup":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


@contextlib.contextmanager
def preserved() -> Iterator[LogSetup]:
  """Whatever the block does to logging and warnings is undone after it.

  Wrap the whole command, error handling included, so its last log lines
  still reach the log file that `configure` opened inside the block.
  """
  with LogSetup() as setup:
    yield setup


def configure(log_dir: Path | None, verbose: bool = False,
              name: str = "taxi_demand") -> LogSetup:
  """Routes library logging to a file and keeps the console to our own lines.

  Call before TensorFlow is imported: TF's C++ logging reads
  TF_CPP_MIN_LOG_LEVEL once, at import. Calling it again replaces the
  handlers an earlier call installed, and no others.

  Args:
    log_dir: folder for the log file; None keeps logs off disk.
    verbose: bring TF, absl and Beam INFO (and their warnings) back to stderr.
    name: stem of the log file name.

  Returns:
    A handle with `log_file` (the log file's path, or None); its `close()`
    (or leaving `with configure(...)`) restores the state before the call.
    Callers that configure inside `with preserved():` may ignore it.
  """
  setup = LogSetup()
  if not verbose:
    # Process-wide on purpose and never undone: TensorFlow's C++ logging and
    # gRPC core read these once, when they load, and stay loaded after the
    # call returns, so restoring them would change nothing. setdefault keeps
    # a value the caller chose.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # google-api-core warns on every import that Python 3.10 nears its end of
    # support; TFX 1.16 cannot move past 3.10, so the warning only adds noise.
    warnings.filterwarnings("ignore", category=FutureWarning,
                            module=r"google\..*")
    warnings.filterwarnings("ignore", message=r".*non-supported Python.*")
  root = logging.getLogger()
  root.setLevel(logging.INFO)
  for handler in list(root.handlers):
    if isinstance(handler, _OwnHandler):  # from an earlier configure
      root.removeHandler(handler)
      handler.close()
  _silence_absl_stderr()
  if log_dir is not None:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    setup.log_file = (Path(log_dir) /
                      f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log")
    file_handler = _FileHandler(setup.log_file)
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(file_handler)
  console = _ConsoleHandler(sys.stderr)
  console.setFormatter(logging.Formatter(_FORMAT))
  # Our commands print their own lines; library errors reach the console
  # only with --verbose (they are always in the log file).
  console.setLevel(logging.INFO if verbose else logging.CRITICAL)
  root.addHandler(console)
  logging.captureWarnings(True)
  return setup


def _silence_absl_stderr() -> None:
  """absl may put its own stderr handler on the root logger; take it off."""
  try:
    from absl import logging as absl_logging  # cheap: no TensorFlow  # noqa: PLC0415
  except ImportError:  # pragma: no cover - absl ships with TFX
    return
  handler = absl_logging.get_absl_handler()
  logging.getLogger().removeHandler(handler)
  # absl's logger still needs to emit INFO into our root handlers.
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logging.use_python_logging(quiet=True)


def _absl_state():
  """absl's verbosity flag value and its logger's level, if absl is there."""
  try:
    from absl import logging as absl_logging  # noqa: PLC0415
  except ImportError:  # pragma: no cover - absl ships with TFX
    return None
  flag = absl_logging.FLAGS["verbosity"]
  return (flag.value, flag.using_default_value,
          absl_logging.get_absl_logger().level)


def _restore_absl(state) -> None:
  if state is None:
    return
  from absl import logging as absl_logging  # noqa: PLC0415
  verbosity, using_default, level = state
  # The flag's own setter, as absl_logging.set_verbosity uses, which then
  # also marks the flag as set; put that mark back too.
  flag = absl_logging.FLAGS["verbosity"]
  flag.value = verbosity
  flag.using_default_value = using_default
  absl_logging.get_absl_logger().setLevel(level)
