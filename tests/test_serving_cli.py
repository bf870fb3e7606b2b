"""`taxi-demand predict` and `skew` from the command line: JSON shapes, exit
codes 0/1/3, one-line errors, and Ctrl-C out of `--every`. On copies of the
session's city home."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from taxi_demand import cli

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_log(city_copy):
  """The city home with metadata, registry and serving log of its own."""
  return city_copy


def one_line_error(err: str, code: int, want: int) -> str:
  assert code == want
  assert err.count("\n") == 1 and "Traceback" not in err, err
  return err


def test_predict_json_rows(fresh_log, city_home, capsys):
  assert cli.main(["--home", str(fresh_log.root), "predict",
                   "--at", "2024-02-10T08:00", "--json"]) == 0
  rows = json.loads(capsys.readouterr().out)
  assert len(rows) == 77
  assert set(rows[0]) == {"cell", "slot_start", "issued_at", "lead_minutes",
                          "data_age_minutes", "predicted_pickups",
                          "model_version", "predicted_at"}
  assert {r["slot_start"] for r in rows} == {1707552000}
  assert {(r["issued_at"], r["lead_minutes"]) for r in rows} == {
      (1707552000, 0)}
  assert {r["model_version"] for r in rows} == {city_home.new}


def test_predict_missing_model_lists_versions(fresh_log, city_home, capsys):
  code = cli.main(["--home", str(fresh_log.root), "predict", "--model", "42"])
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert "'42' does not exist" in err
  assert ", ".join(city_home.kept) in err


def test_predict_without_history_names_the_warehouse_range(fresh_log, capsys):
  code = cli.main(["--home", str(fresh_log.root), "predict"])  # now: 2020s
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert "trips from 2024-01-18" in err and "--at" in err


def test_skew_clean_day_exits_0_with_the_issue_json(fresh_log, city_home,
                                                    serving_log_tools, capsys):
  t = serving_log_tools
  old = city_home.old
  t.log_day(fresh_log, old, t.day)
  assert cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   t.day.isoformat(), "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert {"date", "model_version", "alert", "features"} <= set(out)
  assert (out["date"], out["model_version"], out["alert"]) == (
      t.day.isoformat(), old, False)
  for f in out["features"].values():
    assert {"distance", "threshold", "flagged"} <= set(f)


def test_skew_shifted_lags_exit_3(fresh_log, city_home, serving_log_tools,
                                  capsys):
  t = serving_log_tools
  t.log_day(fresh_log, city_home.old, t.day,
            transform=lambda table: t.shifted(table, t.shift))
  code = cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   t.day.isoformat(), "--json"])
  captured = capsys.readouterr()
  assert code == 3, captured.err
  out = json.loads(captured.out)
  assert out["alert"] is True
  assert any(out["features"][lag]["flagged"] for lag in ("lag_1", "lag_1d"))
  assert "skew" in captured.err


def test_skew_corrupted_file_is_named_and_the_rest_count(
    fresh_log, city_home, serving_log_tools, capsys):
  t = serving_log_tools
  t.log_day(fresh_log, city_home.old, t.day)
  from taxi_demand.serving import servelog  # noqa: PLC0415
  bad = servelog.partition(fresh_log.serving_log, t.day) / "part-0-bad.parquet"
  bad.write_bytes(b"PAR1\x00garbage")
  assert cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   t.day.isoformat(), "--json"]) == 0
  captured = capsys.readouterr()
  assert captured.err.count("\n") == 1 and str(bad) in captured.err
  assert json.loads(captured.out)["rows"] == 77 * 48


def test_skew_empty_day_is_one_line(fresh_log, capsys):
  code = cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   "2024-02-09"])
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert "no served features logged for 2024-02-09" in err


def _as_from_a_terminal():
  """Ctrl-C as an interactive shell delivers it: SIGINT neither ignored nor
  blocked. A child inherits both from the pytest worker, where libraries
  run earlier in the session may have changed them; in two fresh-clone
  runs of the whole suite the child then never saw the signal."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_every_stops_cleanly_on_ctrl_c(fresh_log):
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  proc = subprocess.Popen(
      [sys.executable, "-m", "taxi_demand", "--home", str(fresh_log.root),
       "predict", "--every", "1s", "--at", "2024-02-10T08:00", "--json"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, preexec_fn=_as_from_a_terminal)
  try:
    first = proc.stdout.readline()  # one job's rows, as one JSON line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert len(json.loads(first)) == 77
  assert proc.returncode == 0, err
  assert "stopped after" in err and "Traceback" not in err


def test_skew_without_the_warehouse_is_one_line_and_records_nothing(
    fresh_log, city_home, serving_log_tools, capsys):
  """With no training path to join or to calibrate against, a partial day
  read as skewed by its hour mix alone: exit 3, seven features flagged, and
  a SKEW entry kept for good. Now: one line, exit 1, nothing recorded."""
  from taxi_demand.lineage import store  # noqa: PLC0415
  from taxi_demand.monitoring import skew  # noqa: PLC0415
  t = serving_log_tools
  t.log_day(fresh_log, city_home.old, t.day)
  fresh_log.warehouse.unlink()
  code = cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   t.day.isoformat()])
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert f"no warehouse at {fresh_log.warehouse}" in err
  assert store.load(fresh_log.metadata).executions_of(skew.CHECK_TYPE) == []
  assert not (fresh_log.root / "reports").exists()
  assert cli.main(["--home", str(fresh_log.root), "skew", "--history"]) == 0
  assert capsys.readouterr().out == "no skew checks recorded\n"


def test_predict_on_an_unreadable_metadata_store_is_one_line(fresh_log,
                                                             capsys):
  """The store records the query settings each model was trained with; a
  corrupt one made predict serve the defaults, exit 0, no warning."""
  fresh_log.metadata.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
  code = cli.main(["--home", str(fresh_log.root), "predict", "--at",
                   "2024-02-10T08:00"])
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert f"cannot read the metadata store {fresh_log.metadata}" in err
  assert "query settings" in err
  assert not any(fresh_log.serving_log.iterdir())
