"""The Cloud Composer DAG file, parsed by Airflow 3 itself in .venv-airflow (tools/airflow_env.sh)."""

from __future__ import annotations

import ast
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import vertex_run
from taxi_demand import spans
from taxi_demand.lineage import contract

REPO = Path(__file__).resolve().parent.parent
DAG_FOLDER = REPO / "deploy" / "composer"
DAG_FILE = DAG_FOLDER / "taxi_demand_dags.py"
AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW_PYTHON = AIRFLOW_VENV / "bin" / "python"
AIRFLOW_LOCK = DAG_FOLDER / "requirements.lock"
FACTS_SCRIPT = Path(__file__).resolve().parent / "composer_dag_facts.py"

DAILY, EVERY_5 = "taxi_demand_daily", "taxi_demand_5min"
PROJECT = "taxi-demand-test"
REGION = "europe-west4"  # set as a Variable: it must win over the default
PROVIDER = "airflow.providers.google.cloud.operators."
CHICAGO = "America/Chicago"


def utc(text: str) -> str:
  """A UTC ISO time from 'YYYY-MM-DD HH:MM:SS'."""
  return datetime.datetime.fromisoformat(text).replace(
      tzinfo=datetime.timezone.utc).isoformat()


# Chicago changes clocks at 02:00: 2024-03-10 (to CDT, UTC-5) and 2024-11-03
# (to CST, UTC-6). The daily run is at 00:15 city time.
SCHEDULE_AFTER = {
    DAILY: [utc("2024-03-09 06:15:00"),   # 00:15 CST
            utc("2024-03-10 06:15:00"),   # 00:15 CST, on the change day
            utc("2024-11-03 05:15:00")],  # 00:15 CDT, on the change day
    EVERY_5: [utc("2024-03-10 07:55:00")],  # the spring change is at 08:00Z
}
NEXT_RUNS = {
    DAILY: [utc("2024-03-10 06:15:00"),   # still CST at 00:15
            utc("2024-03-11 05:15:00"),   # CDT: an hour earlier in UTC
            utc("2024-11-04 06:15:00")],  # back to CST
    EVERY_5: [utc("2024-03-10 08:00:00")],
}
# (logical date or None, run_after) -> the city day the run must train on.
SPAN_FOR = [
    # Scheduled runs, on either side of both changes.
    ((utc("2024-03-10 06:15:00"), utc("2024-03-10 06:15:00")), "2024-03-09"),
    ((utc("2024-03-11 05:15:00"), utc("2024-03-11 05:15:00")), "2024-03-10"),
    ((utc("2024-11-03 05:15:00"), utc("2024-11-03 05:15:00")), "2024-11-02"),
    ((utc("2024-11-04 06:15:00"), utc("2024-11-04 06:15:00")), "2024-11-03"),
    # One second after city midnight, and one before it: already the next
    # UTC day, still the same city day.
    ((utc("2024-03-11 05:00:01"), utc("2024-03-11 05:00:01")), "2024-03-10"),
    ((utc("2024-03-11 04:59:59"), utc("2024-03-11 04:59:59")), "2024-03-09"),
    # A retried or late run trains its own day, not the day it ran.
    ((utc("2024-03-11 05:15:00"), utc("2024-03-13 17:00:00")), "2024-03-10"),
    # A manual run without a logical date: the day before its city date.
    ((None, utc("2024-03-11 16:00:00")), "2024-03-10"),
]
CITY_TZ_VARIANTS = ["Europe/Berlin", "Mars/Olympus"]


def test_the_dag_file_imports_only_airflow_and_the_standard_library():
  tree = ast.parse(DAG_FILE.read_text())
  roots = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      roots.update(alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      assert node.level == 0, "relative import in the DAG file"
      roots.add(node.module.split(".")[0])
  assert "airflow" in roots
  assert not roots & {"taxi_demand", "tfx", "pipeline", "runner_vertex",
                      "tensorflow", "google"}
  # Anything else would have to be installed on Composer by hand.
  assert roots - {"airflow", "__future__"} <= sys.stdlib_module_names, roots


def module_constants(path: Path) -> dict:
  """The DAG file's top-level literal assignments, read without importing it."""
  constants = {}
  for node in ast.parse(path.read_text()).body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)):
      try:
        constants[node.targets[0].id] = ast.literal_eval(node.value)
      except ValueError:
        pass
  return constants


def test_the_dag_file_copies_of_the_pipeline_contract_agree():
  # The DAG file cannot import them; it keeps copies, checked here.
  constants = module_constants(DAG_FILE)
  assert constants["SPAN_PARAMETER"] == contract.SPAN_PARAMETER
  assert constants["PIPELINE_DISPLAY_NAME"] == vertex_run.PIPELINE_NAME
  assert constants["DEFAULT_CITY_TZ"] == CHICAGO


def lock_key(lock: Path) -> str:
  """tools/airflow_env.sh's stamp key: the lock's sha256, 16 hex digits."""
  return hashlib.sha256(lock.read_bytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
  """What Airflow 3 makes of the DAG folder, from a run in .venv-airflow."""
  if not (AIRFLOW_VENV / f".installed-{lock_key(AIRFLOW_LOCK)}").exists():
    pytest.fail(f"no {AIRFLOW_VENV.name}/ built from {AIRFLOW_LOCK.name} as "
                "it is now: run tools/airflow_env.sh to build the Airflow "
                "environment (`make test` builds it)", pytrace=False)
  scratch = tmp_path_factory.mktemp("airflow")
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("AIRFLOW", "TAXI_DEMAND_CITY_TZ", "PYTHON"))}
  env.update(AIRFLOW_HOME=str(scratch / "home"),
             AIRFLOW__CORE__LOAD_EXAMPLES="False",
             # Airflow gives a DAG file 30 s to import. The Google provider's
             # first import in a fresh environment compiles its bytecode, and
             # on two busy cores that alone took longer: what is tested here
             # is what the file defines, not how fast a cold venv imports it.
             AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="600",
             AIRFLOW_VAR_TAXI_DEMAND_PROJECT=PROJECT,
             AIRFLOW_VAR_TAXI_DEMAND_REGION=REGION)
  probes = {"schedule_after": SCHEDULE_AFTER,
            "span_for": [list(probe) for probe, _ in SPAN_FOR],
            "city_tz_variants": CITY_TZ_VARIANTS}
  output = scratch / "facts.json"
  proc = subprocess.run(
      [str(AIRFLOW_PYTHON), str(FACTS_SCRIPT), str(DAG_FOLDER),
       json.dumps(probes), str(output)],
      env=env, cwd=scratch, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(output.read_text())


@pytest.mark.slow
def test_the_folder_imports_through_dagbag_with_no_errors(facts):
  assert facts["import_errors"] == {}
  assert sorted(facts["dags"]) == sorted([DAILY, EVERY_5])
  for dag in facts["dags"].values():
    assert dag["serialization_error"] is None  # the DAG processor stores it


@pytest.mark.slow
def test_the_daily_run_is_at_00_15_city_time(facts):
  daily = facts["dags"][DAILY]
  assert (daily["timetable"], daily["cron"], daily["timezone"]) == (
      "CronTriggerTimetable", "15 0 * * *", CHICAGO)
  assert daily["next_runs"] == NEXT_RUNS[DAILY]


@pytest.mark.slow
def test_the_daily_run_submits_the_vertex_pipeline(facts):
  daily = facts["dags"][DAILY]
  assert daily["catchup"] is False
  assert daily["max_active_runs"] == 1
  assert daily["dagrun_timeout"] == 12 * 3600
  assert daily["tasks"] == {"submit_pipeline": {
      "operator": PROVIDER + "vertex_ai.pipeline_job.RunPipelineJobOperator",
      "retries": 2, "retry_delay": 600.0,
      "execution_timeout": 8 * 3600.0, "deferrable": False}}
  rendered = daily["rendered"]["submit_pipeline"]
  assert {k: rendered[k] for k in (
      "project_id", "region", "template_path", "pipeline_root",
      "service_account")} == {
          "project_id": PROJECT,
          "region": REGION,
          "template_path":
              f"gs://{PROJECT}-taxi-demand/templates/taxi_demand_pipeline.json",
          # runner_vertex.py's default pipeline root for the project.
          "pipeline_root": f"gs://{PROJECT}-taxi-demand/pipeline",
          "service_account":
              f"taxi-demand-pipeline@{PROJECT}.iam.gserviceaccount.com"}
  assert daily["submission"] == {
      "display_name": vertex_run.PIPELINE_NAME,
      "labels": {"orchestrator": "composer", "dag": DAILY},
      "enable_caching": None}


@pytest.mark.slow
def test_the_daily_run_submits_the_city_day_that_ended(facts):
  rendered = facts["dags"][DAILY]["spans"]
  expected = [spans.parse_span(day) for _, day in SPAN_FOR]
  assert [spans.date_of(s) for s in rendered] == [d for _, d in SPAN_FOR]
  assert rendered == expected
  # An integer: the pipeline's `span` is a NUMBER_INTEGER parameter.
  assert all(type(s) is int for s in rendered)  # pylint: disable=unidiomatic-typecheck
  # The span the pipeline gets is never its own "day before" default.
  assert contract.AUTO_SPAN not in rendered


@pytest.mark.slow
def test_the_5_minute_job_executes_cloud_run_without_airflow_catch_up(facts):
  job = facts["dags"][EVERY_5]
  assert (job["timetable"], job["cron"], job["timezone"]) == (
      "CronTriggerTimetable", "*/5 * * * *", "UTC")
  assert job["next_runs"] == NEXT_RUNS[EVERY_5]
  assert job["catchup"] is False
  assert job["max_active_runs"] == 1
  assert job["dagrun_timeout"] == 270.0 < 300
  assert job["tasks"] == {"execute_job": {
      "operator": PROVIDER + "cloud_run.CloudRunExecuteJobOperator",
      "retries": 2, "retry_delay": 15.0, "execution_timeout": 180.0,
      "deferrable": False}}
  rendered = job["rendered"]["execute_job"]
  assert (rendered["project_id"], rendered["region"], rendered["job_name"]) == (
      PROJECT, REGION, "taxi-demand-predict")
  assert ("A tick that failed is served by the next run's catch-up"
          in " ".join(job["doc_md"].split()))


@pytest.mark.slow
def test_a_missing_project_fails_the_task_in_one_clear_line(facts):
  for dag_id, task_id in ((DAILY, "submit_pipeline"), (EVERY_5, "execute_job")):
    rendered = facts["dags"][dag_id]["without_project"][task_id]
    assert rendered == {"error": (
        "ValueError: set the Airflow Variable taxi_demand_project (or the "
        "environment variable AIRFLOW_VAR_TAXI_DEMAND_PROJECT)")}


@pytest.mark.slow
def test_the_city_time_zone_comes_from_the_environment(facts):
  variants = facts["city_tz_variants"]
  assert variants["Europe/Berlin"] == {
      "import_errors": [],
      "timezones": {DAILY: "Europe/Berlin", EVERY_5: "UTC"}}
  [error] = variants["Mars/Olympus"]["import_errors"]
  assert ("TAXI_DEMAND_CITY_TZ='Mars/Olympus' is not an IANA time zone"
          in error)
  assert variants["Mars/Olympus"]["timezones"] == {}


# tools/airflow_env.sh, in a scratch checkout (none of these builds anything).


@pytest.fixture
def checkout(tmp_path):
  """The files tools/airflow_env.sh reads, in a scratch folder."""
  (tmp_path / "tools").mkdir()
  shutil.copy(REPO / "tools" / "airflow_env.sh", tmp_path / "tools")
  shutil.copy(REPO / "requirements.lock", tmp_path)  # uv's pin
  (tmp_path / "deploy" / "composer").mkdir(parents=True)
  shutil.copy(AIRFLOW_LOCK, tmp_path / "deploy" / "composer")
  return tmp_path


def airflow_env(checkout, **env):
  return subprocess.run(["bash", str(checkout / "tools" / "airflow_env.sh")],
                        capture_output=True, text=True,
                        env={**os.environ, **env}, timeout=60)


def test_the_environment_script_refuses_a_missing_python_in_one_line(checkout):
  proc = airflow_env(checkout, AIRFLOW_PYTHON="/nonexistent")
  assert proc.returncode == 1
  [line] = proc.stderr.strip().splitlines()
  assert "not a working Python 3.11" in line
  assert not (checkout / ".venv-airflow").exists()


def test_a_matching_stamp_skips_the_build(checkout):
  venv = checkout / ".venv-airflow"
  venv.mkdir()
  (venv / f".installed-{lock_key(AIRFLOW_LOCK)}").touch()
  proc = airflow_env(checkout)
  assert (proc.returncode, proc.stderr) == (0, "")


def test_a_failed_build_leaves_no_half_environment(checkout, tmp_path):
  # An earlier build killed half way (no stamp) is removed, and the new one,
  # failing while it creates the venv, leaves nothing either.
  (checkout / ".venv-airflow" / "bin").mkdir(parents=True)
  fake = tmp_path / "python3.11"
  # Passes the version check, then dies half way through `-m venv DIR`.
  fake.write_text('#!/bin/sh\n[ "$1" = -m ] || exit 0\n'
                  'mkdir -p "$3/bin" && touch "$3/bin/python"; exit 1\n')
  fake.chmod(0o755)
  proc = airflow_env(checkout, AIRFLOW_PYTHON=str(fake))
  assert proc.returncode == 1
  assert "removing .venv-airflow" in proc.stderr
  assert "creating .venv-airflow" in proc.stderr.strip().splitlines()[-1]
  assert not (checkout / ".venv-airflow").exists()
