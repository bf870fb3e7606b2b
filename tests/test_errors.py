"""errors.exit_codes: the one place a failure becomes lines and an exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from taxi_demand import errors
from taxi_demand.errors import AlertError, TaxiDemandError, exit_codes


def guarded(error: BaseException, **kwargs):
  """The exit code of exit_codes("p: ", **kwargs) around `raise error`."""
  with exit_codes("p: ", **kwargs) as outcome:
    raise error
  return outcome.exit_code


def run(capsys, error, **kwargs):
  code = guarded(error, **kwargs)
  captured = capsys.readouterr()
  assert captured.out == ""
  return code, captured.err.splitlines()


def test_nothing_raised_is_0_or_what_the_block_set(capsys):
  with exit_codes("p: ") as outcome:
    pass
  assert outcome.exit_code == 0 and outcome["exit_code"] == 0
  with exit_codes("p: ") as outcome:
    outcome.exit_code = 4
  assert outcome.exit_code == 4 and capsys.readouterr().err == ""


def test_our_error_is_its_code_and_one_prefixed_line(capsys):
  assert run(capsys, TaxiDemandError("no store")) == (1, ["p: no store"])


def test_an_alert_is_one_line_unless_alert_lines_are_asked_for(capsys):
  alert = AlertError("skew on 2024-02-04\nlag_1 drifted")
  assert run(capsys, alert) == (3, ["p: skew on 2024-02-04", "lag_1 drifted"])
  assert run(capsys, alert, alert_prefix="ALERT: ") == (
      3, ["ALERT: skew on 2024-02-04", "ALERT: lag_1 drifted"])


def test_ctrl_c_is_130(capsys):
  assert run(capsys, KeyboardInterrupt()) == (130, ["p: interrupted"])
  assert run(capsys, KeyboardInterrupt(), interrupted="stopped; rerun") == (
      130, ["stopped; rerun"])


def test_anything_else_is_1_and_says_how_to_see_more(capsys):
  assert run(capsys, ValueError("bad")) == (
      1, ["p: unexpected ValueError: bad (rerun with --verbose for the "
          "traceback)"])
  seen = []
  code, lines = run(capsys, ValueError("bad"),
                    unexpected=lambda e: f"it failed: {e}",
                    log_unexpected=seen.append)
  assert (code, lines) == (1, ["p: it failed: bad"])
  assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_a_traceback_only_with_verbose(capsys):
  for error in (TaxiDemandError("x"), AlertError("y"), RuntimeError("z")):
    _, lines = run(capsys, error)
    assert not any("Traceback" in line for line in lines)
    _, lines = run(capsys, error, verbose=True)
    assert lines[0].startswith("Traceback")


def test_a_broken_pipe_is_0_only_where_asked(capsys):
  assert run(capsys, BrokenPipeError(), broken_pipe_ok=True) == (0, [])
  code, lines = run(capsys, BrokenPipeError("gone"))
  assert code == 1 and lines[0].startswith("p: unexpected BrokenPipeError")


def test_system_exit_passes_through():
  with pytest.raises(SystemExit):
    guarded(SystemExit(2))


def test_errors_imports_no_heavy_library():
  code = ("import sys, taxi_demand.errors; "
          "print(sorted({'tensorflow', 'tfx', 'duckdb', 'absl'} "
          "& set(sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == "[]"
  assert errors.EXIT_INTERRUPTED == 130
