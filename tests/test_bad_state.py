"""A home, a pointer or an output folder that cannot be used: one line each.

These used to surface as "unexpected NotADirectoryError", "unexpected
PermissionError", "unexpected UnicodeDecodeError", "unexpected
FileExistsError" and "unexpected OverflowError".
"""

from __future__ import annotations

import errno
import pathlib

import pytest

from taxi_demand import cli


def _one_line_error(capsys, argv):
  """The one stderr line of a refused `taxi-demand argv`; checks exit 1."""
  code = cli.main(argv)
  out, err = capsys.readouterr()
  assert code == 1, err
  assert out == "" and len(err.splitlines()) == 1, err
  assert "unexpected" not in err and "Traceback" not in err
  return err.strip()


def _trips(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("unique_key,trip_start_timestamp\n")
  return str(path)


@pytest.mark.parametrize("argv", [
    ["predict", "--at", "2024-02-11T08:00"],
    ["runs"],
    ["load", "TRIPS"],
])
def test_a_home_that_is_a_file(tmp_path, capsys, argv):
  home = tmp_path / "home"
  home.write_text("not a folder")
  argv = [_trips(tmp_path) if a == "TRIPS" else a for a in argv]
  line = _one_line_error(capsys, ["--home", str(home), *argv])
  assert line == (f"taxi-demand {argv[0]}: home {home} is a file, not a "
                  "folder")
  assert home.read_text() == "not a folder"


@pytest.mark.parametrize("argv", [
    ["predict", "--at", "2024-02-11T08:00"],
    ["load", "TRIPS"],
])
def test_a_home_under_a_file(tmp_path, capsys, argv):
  blocker = tmp_path / "blocker"
  blocker.write_text("")
  home = blocker / "home"
  argv = [_trips(tmp_path) if a == "TRIPS" else a for a in argv]
  line = _one_line_error(capsys, ["--home", str(home), *argv])
  assert line.endswith(f"home {home} cannot be a folder: {blocker} is a "
                       "file")


@pytest.fixture
def unwritable(monkeypatch):
  """Makes every folder under the returned paths' root refuse mkdir, as a
  folder without write permission does (the tests run as root, which
  permissions do not stop)."""
  roots = []
  real_mkdir = pathlib.Path.mkdir

  def mkdir(self, *args, **kwargs):
    if any(root == self or root in self.parents for root in roots):
      raise PermissionError(errno.EACCES, "Permission denied", str(self))
    return real_mkdir(self, *args, **kwargs)

  monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
  return roots


@pytest.mark.parametrize("argv, home_exists, denied", [
    # the command's log file, in a home that exists
    (["predict", "--at", "2024-02-11T08:00"], True, "home/logs"),
    # Home.ensure, creating a new home in a folder it may not write
    (["load", "TRIPS"], False, "home"),
])
def test_a_home_without_permission(tmp_path, capsys, unwritable, argv,
                                   home_exists, denied):
  home = tmp_path / "home"
  if home_exists:
    home.mkdir()
  unwritable.append(home if home_exists else tmp_path)
  argv = [_trips(tmp_path) if a == "TRIPS" else a for a in argv]
  line = _one_line_error(capsys, ["--home", str(home), *argv])
  assert line == (f"taxi-demand {argv[0]}: cannot use home {home}: "
                  f"Permission denied: {tmp_path / denied}")


def test_garbage_in_current_names_the_pointer(home, capsys):
  (home.models / "1700000000").mkdir(parents=True)
  (home.models / "CURRENT").write_bytes(b"\xff\xfe\x00\x9cgarbage")
  line = _one_line_error(capsys, ["predict", "--at", "2024-02-11T08:00"])
  assert line == (f"taxi-demand predict: {home.models / 'CURRENT'} is corrupt "
                  "(not text); delete it to serve the newest pushed version, "
                  "or write a version number into it")


def test_simulate_out_an_existing_file(tmp_path, capsys):
  out = tmp_path / "trips.parquet"
  out.write_bytes(b"PAR1")
  for target, message in ((out, f"--out {out} is a file, not a folder"),
                          (out / "sub", f"cannot create --out {out / 'sub'}: "
                           "Not a directory")):
    line = _one_line_error(capsys, ["simulate", "--start", "2024-01-01",
                                    "--days", "1", "--scale", "0.01",
                                    "--out", str(target)])
    assert line == f"taxi-demand simulate: {message}"
  assert out.read_bytes() == b"PAR1"


@pytest.mark.parametrize("start, days", [
    ("9999-12-31", "1"),   # its trips would end in year 10000
    ("9999-12-30", "3"),   # its last day is past the calendar's
    ("2099-12-31", "2"),   # past the trips contract's bounds: quarantined
])
def test_simulate_refuses_days_the_calendar_cannot_hold(tmp_path, capsys,
                                                        start, days):
  line = _one_line_error(capsys, ["simulate", "--start", start, "--days",
                                  days, "--scale", "0.01", "--out",
                                  str(tmp_path / "out")])
  assert line == (f"taxi-demand simulate: bad start date {start!r} for "
                  f"{days} day(s): simulated days must lie from 2000-01-01 "
                  "to 2099-12-31, the trips contract's timestamp bounds")
  assert not (tmp_path / "out").exists()
