"""`taxi-demand load` and `simulate` from the command line: counts, JSON,
one-line errors with exit code 1 and no traceback."""

import json
import time
from pathlib import Path

import pytest

from taxi_demand import cli

DATA = Path(__file__).resolve().parent / "testdata" / "data"


def test_load_prints_the_three_counts(home, capsys):
  assert cli.main(["load", str(DATA / "bad_rows.csv")]) == 0
  out = capsys.readouterr().out
  assert "read 15  loaded 2  quarantined 13" in out
  assert "duplicate_key: 1" in out


def test_load_quarantines_a_row_over_the_readers_limit(home, tmp_path,
                                                      capsys):
  """A row longer than the CSV reader takes no longer refuses its file."""
  path = tmp_path / "long_row.csv"
  path.write_text((DATA / "tiny_trips.csv").read_text() +
                  "long," + "x" * 2_100_000 + "\n")
  assert cli.main(["load", str(path)]) == 0
  captured = capsys.readouterr()
  assert "read 11  loaded 10  quarantined 1" in captured.out
  assert "malformed_row: 1" in captured.out
  assert len(captured.out) + len(captured.err) < 2_000  # not the row itself


def test_load_json_and_idempotence(home, capsys):
  assert cli.main(["load", str(DATA / "tiny_trips.csv"), "--json"]) == 0
  first = json.loads(capsys.readouterr().out)
  assert (first["read"], first["loaded"], first["quarantined"]) == (10, 10, 0)
  assert cli.main(["load", str(DATA / "tiny_trips.csv"), "--json"]) == 0
  second = json.loads(capsys.readouterr().out)
  assert second["loaded"] == 0 and len(second["skipped"]) == 1


def test_unloadable_file_is_one_line_exit_1(home, tmp_path, capsys):
  bad = tmp_path / "semi.csv"
  bad.write_text("a;b;c\n1;2;3\n")
  assert cli.main(["load", str(bad)]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err
  assert str(bad) in err and "wrong delimiter" in err


def test_simulate_then_load(home, tmp_path, capsys):
  out = tmp_path / "trips"
  assert cli.main(["simulate", "--start", "2024-01-01", "--days", "2",
                   "--scale", "0.02", "--out", str(out)]) == 0
  assert "next: taxi-demand load" in capsys.readouterr().out
  assert cli.main(["load", str(out), "--json"]) == 0
  report = json.loads(capsys.readouterr().out)
  assert report["loaded"] == report["read"] > 0
  assert report["truth_rows"] == 2 * 77 * 96
  assert report["span_range"] == [19723, 19724]


@pytest.mark.parametrize("argv, needle", [
    (["--drift", "area=8:x3"], "no @DATE"),
    (["--start", "2024-02-30"], "bad start date"),
    (["--start", "9999-12-31"], "timestamp bounds"),
    (["--start", "1999-12-31"], "from 2000-01-01 to 2099-12-31"),
    (["--days", "0"], "--days"),
])
def test_simulate_bad_arguments(home, tmp_path, capsys, argv, needle):
  base = {"--start": "2024-01-01", "--days": "2", "--out": str(tmp_path)}
  for flag, value in zip(argv[::2], argv[1::2]):
    base[flag] = value
  args = ["simulate"] + [x for kv in base.items() for x in kv]
  assert cli.main(args) == 1
  err = capsys.readouterr().err
  assert needle in err and err.count("\n") == 1


def test_help_teaches_with_examples(capsys):
  for command in ("load", "simulate"):
    with pytest.raises(SystemExit):
      cli.main([command, "--help"])
    assert "Examples:" in capsys.readouterr().out


def test_a_newline_in_a_file_name_prints_no_line_of_its_own(home, tmp_path,
                                                           capsys):
  """A name is data: shown escaped, it cannot forge a line of output."""
  forged = "taxi-demand load: all good, 0 errors"
  empty = tmp_path / f"evil\n{forged}.csv"
  empty.write_text("")
  assert cli.main(["load", str(empty)]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "empty file" in err
  assert repr(str(empty)) in err
  good = tmp_path / "ok\nread 99  loaded 99  quarantined 0\x1b[2K.csv"
  good.write_bytes((DATA / "tiny_trips.csv").read_bytes())
  for _ in range(2):  # loaded, then skipped as already loaded
    assert cli.main(["load", str(good)]) == 0
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert not [line for line in lines if line.startswith("read 99")]
    assert "\x1b" not in captured.out + captured.err


@pytest.mark.parametrize("argv", [
    ["load", str(DATA / "tiny_trips.csv")],
    ["recommend", "--at", "2024-01-07T10:00", "--cell", "8"],  # read-only
], ids=["load", "recommend"])
def test_a_corrupt_warehouse_fails_at_once_in_one_line(home, monkeypatch,
                                                       capsys, argv):
  """Not a lock to wait 300 s for: a file that is no DuckDB database."""
  monkeypatch.delenv("TAXI_DEMAND_LOCK_WAIT", raising=False)
  home.warehouse.parent.mkdir(parents=True, exist_ok=True)
  home.warehouse.write_bytes(b"not a database\n" * 1000)
  began = time.monotonic()
  assert cli.main(argv) == 1
  assert time.monotonic() - began < 5
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err
  assert str(home.warehouse) in err and "broken" in err
  assert "not a valid DuckDB database" in err


def test_impossible_timestamps_leave_later_loads_and_answers_intact(
    home, tmp_path, capsys):
  """A trip in 1200 BC used to commit, then fail this load and every later
  one with "unexpected OverflowError"."""
  path = tmp_path / "ancient.csv"
  path.write_text(
      "unique_key,trip_start_timestamp,trip_seconds,trip_miles,"
      "pickup_community_area,pickup_latitude,pickup_longitude\n"
      "bc,-99999999999,600,1,8,,\n"
      "y5138,99999999999,600,1,8,,\n"
      "y2100,2100-06-01 08:00:00,600,1,8,,\n"
      "y1900,1900-06-01 08:00:00,600,1,8,,\n")
  for argv in (["load", str(path)], ["load", str(DATA / "tiny_trips.csv")]):
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "unexpected" not in captured.out + captured.err
  assert "trips from 2023-12-30 to 2024-01-08" in captured.out
  assert cli.main(["load", str(path), "--json"]) == 0  # skipped, answers
  assert json.loads(capsys.readouterr().out)["span_range"] == [19721, 19730]
