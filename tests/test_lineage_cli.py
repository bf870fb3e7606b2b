"""`taxi-demand runs|show|diff|lineage|rollback`: output, errors, no TensorFlow."""

import json
import shutil
import subprocess
import sys

import pytest

from taxi_demand import cli
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.testing import synthetic
from taxi_demand.serving import registry

_COMMANDS = (["runs", "--json"], ["show", "last"], ["diff", "2024-01-01T00:00:00",
                                                   "last", "--json"],
             ["lineage", "serving"], ["lineage", "--span", "2023-12-10"],
             ["rollback", "--json"])

_NO_TF = """
import sys
from taxi_demand import cli
codes = [cli.main(["--home", sys.argv[1], *c]) for c in {commands!r}]
heavy = [m for m in ("tensorflow", "tfx", "tensorflow_transform",
                     "tensorflow_data_validation", "apache_beam") if m in sys.modules]
print("CODES=" + ",".join(map(str, codes)))
print("HEAVY=" + ",".join(heavy))
"""


@pytest.fixture(scope="module")
def _synthetic(tmp_path_factory):
  home = tmp_path_factory.mktemp("synthetic") / "home"
  return home, synthetic.build(home, 4)


@pytest.fixture
def synthetic_home(_synthetic, tmp_path):
  """A fresh copy of a 4-run TFX-layout store (tests may roll back)."""
  home, versions = _synthetic
  shutil.copytree(home, tmp_path / "home")
  return tmp_path / "home", versions


def _run(capsys, home, *argv):
  code = cli.main(["--home", str(home), *argv])
  out, err = capsys.readouterr()
  return code, out, err


def test_metadata_commands_do_not_import_tensorflow(synthetic_home):
  home, _ = synthetic_home
  proc = subprocess.run(
      [sys.executable, "-c", _NO_TF.format(commands=[list(c) for c in
                                                      _COMMANDS]), str(home)],
      capture_output=True, text=True, check=True)
  lines = proc.stdout.strip().splitlines()
  assert lines[-2] == "CODES=" + ",".join("0" * len(_COMMANDS))
  assert lines[-1] == "HEAVY="


def test_runs_json_has_one_object_per_run_with_the_contract_keys(
    synthetic_home, capsys):
  home, versions = synthetic_home
  code, out, _ = _run(capsys, home, "runs", "--json", "--last", "2")
  rows = json.loads(out)
  assert code == 0 and len(rows) == 2
  assert set(rows[0]) >= {"run_id", "span", "status", "wall_s", "mae",
                          "seasonal_naive_mae", "blessed", "pushed_version"}
  assert rows[-1]["pushed_version"] == versions[-1]
  code, out, _ = _run(capsys, home, "runs")
  assert code == 0 and len(out.strip().splitlines()) == 5  # header + 4


def test_runs_shows_a_page_of_the_newest_runs_and_all_on_request(
    synthetic_home, capsys, monkeypatch):
  """A long history shows its newest page (and says so); --all every run;
  the next-day history of a shown version is whole either way."""
  from taxi_demand.lineage import commands  # noqa: PLC0415
  home, versions = synthetic_home
  monkeypatch.setattr(commands, "RUNS_PAGE", 2)
  _, out, _ = _run(capsys, home, "runs", "--json")
  paged = json.loads(out)
  _, out, _ = _run(capsys, home, "runs", "--all", "--json")
  every = json.loads(out)
  assert len(every) == 4 and paged == every[-2:]
  _, out, _ = _run(capsys, home, "runs")
  lines = out.strip().splitlines()
  assert len(lines) == 4  # header, 2 runs, the footer
  assert lines[-1] == "the newest 2 of 4 runs; --all lists every one"


def test_runs_shows_the_degradation_history_of_a_version(synthetic_home,
                                                         capsys):
  home, versions = synthetic_home
  _, out, _ = _run(capsys, home, "runs", "--json")
  rows = {r["pushed_version"]: r for r in json.loads(out)}
  # Version 1 served on the third run's day only, where NextDayValidator
  # scored it.
  assert [r["date"] for r in rows[versions[1]]["next_day"]] == [
      queries.date_of(synthetic.FIRST_SPAN + 2)]
  _, out, _ = _run(capsys, home, "lineage", versions[1], "--json")
  assert [r["span"] for r in json.loads(out)["next_day"]] == [
      synthetic.FIRST_SPAN + 2]


def test_show_prints_nodes_parameters_and_metrics(synthetic_home, capsys):
  home, _ = synthetic_home
  code, out, _ = _run(capsys, home, "show", "last", "--json")
  detail = json.loads(out)
  assert code == 0
  assert [n["node"] for n in detail["nodes"]][:2] == ["CuratedSchema",
                                                      "ExampleGen"]
  assert detail["nodes"][0]["cached"] is True
  assert detail["parameters"]["train_steps"] == 2000
  assert detail["metrics"]["model_mae"] == pytest.approx(2.53)
  assert detail["anomalies"]["anomaly_count"] == 0
  code, out, _ = _run(capsys, home, "show", "last")
  assert "cache hit" in out and "train_days: 28" in out


def test_diff_reports_only_what_differs(synthetic_home, capsys):
  home, _ = synthetic_home
  runs = ["2024-01-01T00:00:00", "2024-01-01T00:00:01"]
  code, out, _ = _run(capsys, home, "diff", *runs, "--json")
  diff = json.loads(out)
  assert code == 0
  # Run 0 has a 14-day window, run 1 a 28-day one (synthetic.default_runs).
  assert diff["parameters"] == {"train_days": {"a": 14, "b": 28}}
  assert set(diff["data"]) == {"eval_span", "eval_date", "train_dates",
                               "train_examples"}
  assert diff["metrics"]["model_mae"]["delta"] == pytest.approx(0.01)
  assert "code_version" not in diff and "schema" not in diff
  code, out, _ = _run(capsys, home, "diff", runs[0], runs[0])
  assert "no differences" in out


def test_lineage_text_names_every_intermediate_with_its_uri(synthetic_home,
                                                            capsys):
  home, _ = synthetic_home
  code, out, _ = _run(capsys, home, "lineage")
  assert code == 0 and "(serving)" in out
  snap = store.load(home / "metadata.sqlite")
  walked = queries.training_inputs(snap, queries.pushes(snap)[-1].model.id)
  graph = walked["transform_graph"].uri
  assert "/pipeline/Transform/transform_graph/" in graph
  for expected in ("<- Trainer", "<- Transform", "<- ExampleGen",
                   "TransformGraph", "Schema", "statistics: ExampleStatistics",
                   "base_model", graph, walked["statistics"].uri):
    assert expected in out, expected


def test_rollback_then_lineage_serving_shows_the_rolled_back_version(
    synthetic_home, capsys):
  home, versions = synthetic_home
  code, out, _ = _run(capsys, home, "rollback", "--to", versions[-3],
                      "--json")
  assert code == 0 and json.loads(out)["to_version"] == versions[-3]
  assert registry.serving_version(home / "models") == versions[-3]
  _, out, _ = _run(capsys, home, "lineage", "serving", "--json")
  tree = json.loads(out)
  assert tree["version"] == versions[-3] and tree["serving"] is True
  assert len(tree["rollbacks_to_it"]) == 1


@pytest.mark.parametrize("argv, message", [
    (["runs"], "no metadata store at"),
    (["show", "x"], "no metadata store at"),
])
def test_a_missing_store_is_one_line_exit_1(tmp_path, capsys, argv, message):
  code, out, err = _run(capsys, tmp_path / "empty", *argv)
  assert code == 1 and out == ""
  assert message in err and len(err.strip().splitlines()) == 1


def test_a_corrupt_store_is_one_line_exit_1(tmp_path, capsys):
  home = tmp_path / "home"
  home.mkdir()
  (home / "metadata.sqlite").write_bytes(b"\x00garbage" * 512)
  code, _, err = _run(capsys, home, "runs", "--json")
  assert code == 1 and "cannot read the metadata store" in err
  assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["show", "2099-nope"], "no run '2099-nope'"),
    (["diff", "last", "nope"], "no run 'nope'"),
    (["lineage", "42"], "no push of model version '42'"),
    (["lineage", "--span", "yesterday"], "bad date 'yesterday'"),
    (["rollback", "--to", "42"], "no push of model version '42'"),
    (["runs", "--last", "0"], "--last must be >= 1"),
])
def test_bad_input_is_one_line_exit_1(synthetic_home, capsys, argv, message):
  home, _ = synthetic_home
  code, out, err = _run(capsys, home, *argv)
  assert code == 1 and out == ""
  assert message in err and len(err.strip().splitlines()) == 1


def test_an_old_layout_store_lists_with_na(tmp_path, capsys,
                                          old_layout_store):
  home = tmp_path / "home"
  home.mkdir()
  old_layout_store(home / "metadata.sqlite")
  code, out, _ = _run(capsys, home, "runs")
  assert code == 0 and "old-run-2" in out and "n/a" in out
  code, out, _ = _run(capsys, home, "show", "old-run-0")
  assert code == 0 and "n/a (not recorded" in out


# --- on the city home: ten synthetic daily runs over the session's city --------


@pytest.mark.slow
def test_backfill_lists_ten_runs_with_their_spans(city_home, capsys):
  code, out, _ = _run(capsys, city_home.root, "runs", "--json")
  rows = json.loads(out)
  assert code == 0 and len(rows) == 10
  first = 19755  # 2024-02-02
  assert [r["span"] for r in rows] == list(range(first, first + 10))
  assert [r["run_id"] for r in rows] == city_home.run_ids
  assert {r["status"] for r in rows} == {"COMPLETE"}
  assert all(r["mae"] is not None and r["seasonal_naive_mae"] is not None
             for r in rows)
  assert all(r["mae"] < r["seasonal_naive_mae"] for r in rows)
  assert [r["pushed_version"] for r in rows] == city_home.versions


@pytest.mark.slow
def test_diff_of_two_windows_shows_that_parameter_and_the_spans(city_home,
                                                                capsys):
  _, out, _ = _run(capsys, city_home.root, "runs", "--json", "--last", "2")
  a, b = (r["run_id"] for r in json.loads(out))
  code, out, _ = _run(capsys, city_home.root, "diff", a, b, "--json")
  diff = json.loads(out)
  assert code == 0
  # The last run trained on 6 days instead of 7; nothing else changed.
  assert diff["parameters"] == {"train_days": {"a": 7, "b": 6}}
  assert diff["data"]["eval_date"] == {"a": "2024-02-10", "b": "2024-02-11"}
  assert diff["data"]["train_dates"] == {
      "a": [f"2024-02-{d:02d}" for d in range(3, 10)],
      "b": [f"2024-02-{d:02d}" for d in range(5, 11)]}
  assert diff["data"]["train_examples"] == {"a": 7 * 77 * 48,
                                            "b": 6 * 77 * 48}
  assert "code_version" not in diff and "schema" not in diff


@pytest.mark.slow
def test_rollback_makes_predict_use_the_rolled_back_version(city_home,
                                                            city_copy, capsys):
  home = city_copy.root
  before = registry.serving_version(home / "models")
  assert before == city_home.new
  assert len(registry.versions(home / "models")) >= 2
  code, out, _ = _run(capsys, home, "rollback", "--json")
  done = json.loads(out)
  assert code == 0 and done["from_version"] == before
  assert done["to_version"] == city_home.old
  assert sorted(registry.versions(home / "models")) == sorted(
      city_home.kept)  # folders stay intact
  _, out, _ = _run(capsys, home, "lineage", "serving", "--json")
  assert json.loads(out)["version"] == done["to_version"]
  proc = subprocess.run(
      [sys.executable, "-m", "taxi_demand", "--home", str(home), "predict",
       "--at", "2024-02-11T08:00", "--json"],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr
  rows = json.loads(proc.stdout)
  assert len(rows) == 77
  assert {r["model_version"] for r in rows} == {done["to_version"]}
