"""In-process callers of the CLI and the runners get their logging back.

`cli.main`, `runner_local.main` and `runner_vertex.main` are called from
tests and notebooks: when they return, the root logger's handlers and level,
the warnings filters, `logging.captureWarnings` and absl's verbosity must be
as the caller had them.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import pytest

import taxi_demand  # noqa: F401  (must precede any TensorFlow import)
import runner_local
import runner_vertex
from pipeline import local_run
from pipeline import vertex_run
from taxi_demand import cli
from taxi_demand import logs


def global_state() -> dict:
  from absl import logging as absl_logging  # noqa: PLC0415
  root = logging.getLogger()
  py_warnings = logging.getLogger("py.warnings")
  return {
      "root handlers": list(root.handlers),
      "root level": root.level,
      "warnings filters": list(warnings.filters),
      "showwarning": warnings.showwarning,  # captureWarnings replaces it
      "py.warnings": (list(py_warnings.handlers), py_warnings.level,
                      py_warnings.propagate, py_warnings.disabled),
      "absl": (absl_logging.get_verbosity(),
               absl_logging.get_absl_logger().level),
  }


@pytest.fixture
def caller_setup():
  """A caller with its own root handler, level and warnings filters.

  Tests take their `global_state()` in the call itself: pytest swaps its
  log-capture handlers on the root logger between setup and call.
  """
  root = logging.getLogger()
  mine = logging.NullHandler()
  level = root.level
  root.addHandler(mine)
  root.setLevel(logging.DEBUG)
  with warnings.catch_warnings():
    warnings.simplefilter("default")
    yield
  root.removeHandler(mine)
  root.setLevel(level)


def test_a_cli_command_leaves_logging_as_it_found_it(tmp_path, capsys,
                                                     caller_setup):
  home = tmp_path / "home"
  home.mkdir()  # so the command opens a log file under home/logs
  before = global_state()
  code = cli.main(["--home", str(home), "runs"])
  err = capsys.readouterr().err
  assert code == 1 and "no metadata store at" in err, err
  assert global_state() == before


def test_a_cli_command_can_log_to_its_file_and_still_restore(
    tmp_path, capsys, caller_setup, monkeypatch):
  home = tmp_path / "home"
  home.mkdir()

  def chatty(args, home):
    logging.getLogger("some.library").info("library chatter")
    warnings.warn("a library warning", UserWarning, stacklevel=2)
    return 0

  args = argparse.Namespace(command="chatty", handler=chatty, home=str(home))
  monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(args))
  before = global_state()
  assert cli.main([]) == 0
  assert "library chatter" not in capsys.readouterr().err  # quiet console
  log = next((home / "logs").glob("chatty-*.log")).read_text()
  assert "INFO some.library: library chatter" in log
  assert "a library warning" in log  # captured into the log file
  assert global_state() == before


class _FixedParser:
  """build_parser() stand-in whose parse_args gives the args it was made with."""

  def __init__(self, args):
    self._args = args

  def parse_args(self, argv):
    return self._args


def test_runner_vertex_bad_input_leaves_logging_as_it_found_it(
    tmp_path, capsys, caller_setup):
  out = tmp_path / "p.json"
  before = global_state()
  code = runner_vertex.main(["compile", "--table", "trips",
                             "--output", str(out)])
  err = capsys.readouterr().err.strip()
  assert code == 1 and err.startswith("error: bad --table"), err
  assert global_state() == before


def test_runner_vertex_quiets_only_during_the_call(tmp_path, capsys,
                                                   caller_setup, monkeypatch):
  seen = {}

  def failing_compile(config, image, output):
    seen["root level"] = logging.getLogger().level
    seen["filters"] = list(warnings.filters)
    raise RuntimeError("boom\nsecond line")

  monkeypatch.setattr(vertex_run, "compile_pipeline", failing_compile)
  before = global_state()
  code = runner_vertex.main(["compile", "--output", str(tmp_path / "p.json")])
  err = capsys.readouterr().err.strip()
  assert code == 1
  assert err == "error: compile failed: RuntimeError: boom", err
  assert seen["root level"] == logging.ERROR  # quiet inside the call...
  assert seen["filters"][0][0] == "ignore"
  assert global_state() == before  # ...and only there


def test_runner_local_logs_a_failure_then_restores(tmp_path, capsys,
                                                   caller_setup, monkeypatch):
  def broken_warehouse(home, sample=False):
    raise RuntimeError("disk on fire")

  monkeypatch.setattr(local_run, "ensure_warehouse", broken_warehouse)
  home = tmp_path / "home"
  before = global_state()
  code = runner_local.main(["--home", str(home)])
  err = capsys.readouterr().err.strip()
  assert code == 1
  assert err == ("error: the run failed: RuntimeError: disk on fire (details "
                 "in the log; `--resume` reruns from the failed node)"), err
  log = next((home / "logs").glob("run-*.log")).read_text()
  assert "ERROR pipeline.local_run: the run failed" in log
  assert "Traceback" in log and "disk on fire" in log
  assert global_state() == before


def test_configure_replaces_only_its_own_handlers(tmp_path):
  root = logging.getLogger()
  foreign = logging.NullHandler()
  root.addHandler(foreign)
  try:
    with logs.preserved():
      before = list(root.handlers)
      first = logs.configure(tmp_path, name="a")
      ours_first = [h for h in root.handlers if h not in before]
      second = logs.configure(tmp_path, name="b")
      ours_second = [h for h in root.handlers if h not in before]
      assert foreign in root.handlers
      assert len(ours_first) == len(ours_second) == 2  # file and console
      assert not set(ours_first) & set(root.handlers)  # replaced...
      assert all(h.stream is None for h in ours_first  # ...and closed
                 if isinstance(h, logging.FileHandler))
      assert first.log_file.name.startswith("a-")
      assert second.log_file.name.startswith("b-")
    assert root.handlers == before  # foreign kept, ours gone
    assert all(h.stream is None for h in ours_second
               if isinstance(h, logging.FileHandler))
  finally:
    root.removeHandler(foreign)


def test_the_handle_configure_returns_restores_on_close(tmp_path):
  before = global_state()
  setup = logs.configure(tmp_path, verbose=False, name="x")
  assert global_state() != before
  setup.close()
  setup.close()  # idempotent
  assert global_state() == before
  with logs.configure(None, verbose=True) as setup:
    assert setup.log_file is None
  assert global_state() == before
