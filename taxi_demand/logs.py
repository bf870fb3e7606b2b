"""Quiet console, full log file: where TensorFlow, absl and Beam chatter goes."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(log_dir: Path | None, verbose: bool = False,
              name: str = "taxi_demand") -> Path | None:
  """Routes library logging to a file and keeps the console to our own lines.

  Call before TensorFlow is imported: TF's C++ logging reads
  TF_CPP_MIN_LOG_LEVEL once, at import.

  Args:
    log_dir: folder for the log file; None keeps logs off disk.
    verbose: bring TF, absl and Beam INFO (and their warnings) back to stderr.
    name: stem of the log file name.

  Returns:
    The log file's path, or None.
  """
  if not verbose:
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
    root.removeHandler(handler)
  _silence_absl_stderr()
  log_file = None
  if log_dir is not None:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    log_file = Path(log_dir) / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(file_handler)
  console = logging.StreamHandler(sys.stderr)
  console.setFormatter(logging.Formatter(_FORMAT))
  # Our commands print their own lines; library errors reach the console
  # only with --verbose (they are always in the log file).
  console.setLevel(logging.INFO if verbose else logging.CRITICAL)
  root.addHandler(console)
  logging.captureWarnings(True)
  return log_file


def _silence_absl_stderr() -> None:
  """absl installs its own stderr handler on the root logger; take it off."""
  try:
    from absl import logging as absl_logging  # cheap: no TensorFlow
  except ImportError:  # pragma: no cover - absl ships with TFX
    return
  handler = absl_logging.get_absl_handler()
  logging.getLogger().removeHandler(handler)
  # absl's logger still needs to emit INFO into our root handlers.
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logging.use_python_logging(quiet=True)
