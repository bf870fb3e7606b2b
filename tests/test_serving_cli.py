"""`taxi-demand predict` and `skew` from the command line: JSON shapes, exit
codes 0/1/3, one-line errors, and Ctrl-C out of `--every`."""

import json
import os
import signal
import subprocess
import sys

import pytest

from taxi_demand import cli
from test_predict import REPO
from test_predict import build_serving_home
from test_predict import copy_home
from test_predict import versions_of
from test_skew import log_day
from test_skew import shifted
from test_skew import DAY
from test_skew import E2E_SHIFT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory):
  return build_serving_home(tmp_path_factory)


@pytest.fixture
def fresh_log(serving_home, tmp_path):
  """The shared home with a serving log of its own for one test."""
  return copy_home(serving_home, tmp_path / "home")


def one_line_error(err: str, code: int, want: int) -> str:
  assert code == want
  assert err.count("\n") == 1 and "Traceback" not in err, err
  return err


def test_predict_json_rows(fresh_log, capsys):
  assert cli.main(["--home", str(fresh_log.root), "predict",
                   "--at", "2024-02-10T08:00", "--json"]) == 0
  rows = json.loads(capsys.readouterr().out)
  assert len(rows) == 77
  assert set(rows[0]) == {"cell", "slot_start", "predicted_pickups",
                          "model_version", "predicted_at"}
  assert {r["slot_start"] for r in rows} == {1707552000}
  assert {r["model_version"] for r in rows} == {versions_of(fresh_log)[1]}


def test_predict_missing_model_lists_versions(fresh_log, capsys):
  code = cli.main(["--home", str(fresh_log.root), "predict", "--model", "42"])
  err = one_line_error(capsys.readouterr().err, code, 1)
  old, new = versions_of(fresh_log)
  assert "'42' does not exist" in err and f"{old}, {new}" in err


def test_predict_without_history_names_the_warehouse_range(fresh_log, capsys):
  code = cli.main(["--home", str(fresh_log.root), "predict"])  # now: 2020s
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert "trips from 2024-01-01" in err and "--at" in err


def test_skew_clean_day_exits_0_with_the_issue_json(fresh_log, capsys):
  old, _ = versions_of(fresh_log)
  log_day(fresh_log, old, DAY)
  assert cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   DAY.isoformat(), "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert {"date", "model_version", "alert", "features"} <= set(out)
  assert (out["date"], out["model_version"], out["alert"]) == (
      DAY.isoformat(), old, False)
  for f in out["features"].values():
    assert {"distance", "threshold", "flagged"} <= set(f)


def test_skew_shifted_lags_exit_3(fresh_log, capsys):
  old, _ = versions_of(fresh_log)
  log_day(fresh_log, old, DAY, transform=lambda t: shifted(t, E2E_SHIFT))
  code = cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   DAY.isoformat(), "--json"])
  captured = capsys.readouterr()
  assert code == 3, captured.err
  out = json.loads(captured.out)
  assert out["alert"] is True
  assert any(out["features"][lag]["flagged"] for lag in ("lag_1", "lag_1d"))
  assert "skew" in captured.err


def test_skew_corrupted_file_is_named_and_the_rest_count(fresh_log, capsys):
  old, _ = versions_of(fresh_log)
  log_day(fresh_log, old, DAY)
  from taxi_demand.serving import servelog
  bad = servelog.partition(fresh_log.serving_log, DAY) / "part-0-bad.parquet"
  bad.write_bytes(b"PAR1\x00garbage")
  assert cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   DAY.isoformat(), "--json"]) == 0
  captured = capsys.readouterr()
  assert captured.err.count("\n") == 1 and str(bad) in captured.err
  assert json.loads(captured.out)["rows"] == 77 * 48


def test_skew_empty_day_is_one_line(fresh_log, capsys):
  code = cli.main(["--home", str(fresh_log.root), "skew", "--date",
                   "2024-02-09"])
  err = one_line_error(capsys.readouterr().err, code, 1)
  assert "no served features logged for 2024-02-09" in err


def test_every_stops_cleanly_on_ctrl_c(fresh_log):
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  proc = subprocess.Popen(
      [sys.executable, "-m", "taxi_demand", "--home", str(fresh_log.root),
       "predict", "--every", "1s", "--at", "2024-02-10T08:00", "--json"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
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
