"""The Vertex side, offline: golden spec, span in the query, submit/schedule, bad input."""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest

import taxi_demand  # noqa: F401  (must precede any TensorFlow import)
import runner_vertex
import vertex_container
from pipeline import vertex_run
from taxi_demand.data import sql

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "testdata" / "vertex_pipeline_golden.json"
PROJECT = "taxi-demand-test"
SERVICE_ACCOUNT = f"pipeline-runner@{PROJECT}.iam.gserviceaccount.com"
NETWORK = "projects/123456789/global/networks/ml-vpc"
KMS_KEY = (f"projects/{PROJECT}/locations/us-central1/keyRings/ml/"
           "cryptoKeys/pipeline")
IMAGE = f"us-central1-docker.pkg.dev/{PROJECT}/taxi-demand/pipeline:0.1.0"
# The fixed config of the golden spec: every cloud option on.
GOLDEN_FLAGS = [
    "--project", PROJECT, "--region", "us-central1",
    "--pipeline-root", f"gs://{PROJECT}-bucket/pipeline",
    "--image", IMAGE, "--service-account", SERVICE_ACCOUNT,
    "--network", NETWORK, "--kms-key", KMS_KEY,
    "--train-steps", "500", "--vertex-training",
    "--accelerator-type", "NVIDIA_TESLA_T4", "--endpoint", "taxi-demand",
]
SPAN_2024_02_04 = (datetime.date(2024, 2, 4) - datetime.date(1970, 1, 1)).days


def _args(action: str, *extra: str, output: str = "unused.json"):
  args = runner_vertex.parse_args([action, *GOLDEN_FLAGS, "--output", output,
                                   *extra])
  vertex_run.resolve_cloud(args)
  return args


def _normalised(job: dict) -> dict:
  """The spec minus what changes with the SDK release, not with our code."""
  job = copy.deepcopy(job)
  job["pipelineSpec"]["sdkVersion"] = "tfx-VERSION"
  job["labels"] = {k: "LABEL" for k in job.get("labels", {})}
  return job


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  """(args, path, job dict) of the golden config, compiled once, clock fixed."""
  out = tmp_path_factory.mktemp("vertex") / "pipeline.json"
  args = _args("compile", output=str(out))
  with mock.patch("tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner."
                  "_get_current_time",
                  return_value=datetime.datetime(2024, 2, 5, 2, 0)):
    job = vertex_run.compile_pipeline(vertex_run.build_config(args), args.image,
                                      str(out))
  return args, out, job


_tasks = vertex_container.tasks
_executor = vertex_container.executor
VERDICTS_ROOT = f"gs://{PROJECT}-bucket/pipeline/day_verdicts"


def _constant(job: dict, task: str, parameter: str):
  return _tasks(job)[task]["inputs"]["parameters"][parameter][
      "runtimeValue"]["constant"]


# --- the compiled spec ------------------------------------------------------


def test_compiled_spec_matches_golden(compiled):
  _, path, job = compiled
  actual = _normalised(json.loads(path.read_text()))
  assert actual == _normalised(job)  # what was written is what was returned
  if os.environ.get("UPDATE_GOLDEN"):
    GOLDEN.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
  assert actual == json.loads(GOLDEN.read_text())


def test_spec_names_no_host_path_and_the_image_everywhere(compiled):
  _, path, job = compiled
  text = path.read_text()
  assert str(REPO) not in text  # module files or host paths would leak here
  images = {e["container"]["image"] for e in
            job["pipelineSpec"]["deploymentSpec"]["executors"].values()
            if "container" in e}
  assert images == {IMAGE}
  assert _tasks(job)["CuratedSchema"]["inputs"]["parameters"]["schema_file"][
      "runtimeValue"]["constant"] == vertex_run.SCHEMA_IN_IMAGE


def test_beam_heavy_nodes_run_on_dataflow_with_the_cloud_options(compiled):
  _, _, job = compiled
  for task in ("ExampleGen", "TrainingWindow", "StatisticsGen", "Transform",
               "Evaluator"):
    args = _executor(job, task)["args"]
    for flag in ("--runner=DataflowRunner", f"--project={PROJECT}",
                 "--region=us-central1",
                 f"--temp_location=gs://{PROJECT}-bucket/pipeline/dataflow/tmp",
                 f"--service_account_email={SERVICE_ACCOUNT}",
                 "--machine_type=n1-standard-4", "--max_num_workers=4",
                 f"--sdk_container_image={IMAGE}", "--network=ml-vpc",
                 f"--dataflow_kms_key={KMS_KEY}"):
      assert flag in args, (task, flag)
  for task in ("CuratedSchema", "DataGate", "Trainer", "Pusher"):
    assert "--runner=DataflowRunner" not in _executor(job, task)["args"]


def test_vertex_only_uses_builtin_resolvers(compiled):
  _, _, job = compiled
  tasks = _tasks(job)
  assert "PreviousSpanStatistics" not in tasks
  assert "LatestBlessedModel-model-blessing-resolver" in tasks
  # Only ForecastGate's blessings: the Evaluator's carry blessed=1 too.
  [query] = job["pipelineSpec"]["deploymentSpec"]["executors"][
      "LatestBlessedModel-model-blessing-resolver_executor"]["resolver"][
          "outputArtifactQueries"].values()
  assert query["filter"] == (
      'schema_title="tfx.ModelBlessing" AND state=LIVE AND '
      "metadata.blessed.number_value=1 AND "
      "metadata.forecast_gate.number_value=1")
  # Drift is checked on Vertex too, against the day verdicts DataGate
  # records (no resolver): the previous span's statistics are no input.
  gate = tasks["DataGate"]["inputs"]
  assert "check_drift" not in gate["parameters"]
  assert "previous_statistics" not in gate.get("artifacts", {})
  assert _constant(job, "DataGate", "verdicts_root") == VERDICTS_ROOT
  # SkewValidator finds the serving model's training statistics the same
  # way: from the registry and the day verdicts.
  skew = tasks["SkewValidator"]["inputs"]
  assert set(skew["artifacts"]) == {"examples", "schema"}
  assert _constant(job, "SkewValidator", "verdicts_root") == VERDICTS_ROOT
  assert _constant(job, "SkewValidator", "models_dir") == (
      f"gs://{PROJECT}-bucket/models")
  assert _constant(job, "SkewValidator", "warehouse_path") == (
      f"bq://{vertex_run.DEFAULT_TABLE}")


def test_the_monitors_read_the_5_minute_jobs_served_log(compiled):
  """The job's store (`--store gs://BUCKET`) keeps models/ and serving_log/
  side by side; the pipeline pushes to that models/."""
  _, _, job = compiled
  for task in ("NextDayValidator", "SkewValidator"):
    assert _constant(job, task, "serving_log_dir") == (
        f"gs://{PROJECT}-bucket/serving_log")
  assert vertex_run.serving_log_beside("gs://bkt/a/models") == (
      "gs://bkt/a/serving_log")
  assert vertex_run.serving_log_beside("gs://bkt") == "gs://bkt/serving_log"


def test_vertex_training_and_endpoint_push(compiled):
  _, _, job = compiled
  trainer = _executor(job, "Trainer")["args"]
  assert "tfx.extensions.google_cloud_ai_platform.trainer.executor." \
      "GenericExecutor" in trainer
  custom = json.loads(_tasks(job)["Trainer"]["inputs"]["parameters"][
      "custom_config"]["runtimeValue"]["constant"])
  spec = custom["ai_platform_training_args"]
  assert spec["service_account"] == SERVICE_ACCOUNT
  assert spec["network"] == NETWORK
  pool = spec["worker_pool_specs"][0]
  assert pool["container_spec"]["image_uri"] == IMAGE
  assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_T4"
  assert custom["ai_platform_vertex_region"] == "us-central1"
  # The GCS push stays; the endpoint push comes on top of it.
  tasks = _tasks(job)
  assert "gs://taxi-demand-test-bucket/models" in tasks["Pusher"]["inputs"][
      "parameters"]["push_destination"]["runtimeValue"]["constant"]
  endpoint = json.loads(tasks["EndpointPusher"]["inputs"]["parameters"][
      "custom_config"]["runtimeValue"]["constant"])
  assert endpoint["ai_platform_serving_args"]["endpoint_name"] == "taxi-demand"


def test_span_is_a_runtime_parameter(compiled):
  _, _, job = compiled
  root = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
  assert root == {"span": {"parameterType": "NUMBER_INTEGER"}}
  assert job["runtimeConfig"]["parameterValues"] == {
      "span": vertex_run.AUTO_SPAN}
  params = _tasks(job)["ExampleGen"]["inputs"]["parameters"]
  assert params["span"] == {"componentInputParameter": "span"}
  assert params["schedule_time"]["runtimeValue"]["constant"] == (
      "{{$.pipeline_job_schedule_time_utc}}")
  # No driver runs on Vertex: the compiled query still holds TFX's
  # placeholders, which is why the executor must fill them.
  assert "@span_begin_timestamp" in params["input_config"]["runtimeValue"][
      "constant"]


# --- the query ExampleGen runs ----------------------------------------------


def _run_example_gen_container(job, tmp_path, run_parameters, schedule_time,
                               task="ExampleGen"):
  """Runs an ExampleGen container entrypoint as Vertex would, minus BigQuery.

  Returns:
    (the input_config TFX's BigQuery executor was given, the span written on
    the output Examples artifact).
  """
  # Dataflow options make Beam look for credentials and GCS buckets; they are
  # checked in their own test. BigQuery's project is all the query needs.
  return vertex_container.run_example_gen(
      job, task, tmp_path, run_parameters, schedule_time,
      keep_beam_arg=lambda a: a.startswith("--project="))


def _expected_queries(span):
  cfg = sql.QueryConfig(table=vertex_run.DEFAULT_TABLE)
  return {"day": sql.substitute_span(sql.render_bigquery(cfg), span)}


def test_submitted_span_reaches_the_bigquery_query(compiled, tmp_path):
  _, _, job = compiled
  queries, span = _run_example_gen_container(
      job, tmp_path, {"span": SPAN_2024_02_04}, schedule_time="")
  assert span == SPAN_2024_02_04
  assert queries == _expected_queries(SPAN_2024_02_04)
  begin = int(datetime.datetime(2024, 2, 4, tzinfo=datetime.timezone.utc)
              .timestamp())
  assert f"< {begin + 86400}" in queries["day"]
  assert "@span_" not in queries["day"]


def test_the_window_is_read_for_the_same_span_on_vertex(compiled, tmp_path):
  """Vertex compiles no window resolver: TrainingWindow reads, for the same
  span parameter, the 28 days before the run's day that DataGate passed,
  from the verdicts DataGate records (same root, same query key); it runs
  after DataGate, on a passed day only."""
  from pipeline.components import bigquery_example_gen  # noqa: PLC0415
  from taxi_demand.data import verdicts  # noqa: PLC0415
  _, _, job = compiled
  assert _constant(job, "TrainingWindow", "verdicts_root") == VERDICTS_ROOT
  assert _constant(job, "TrainingWindow", "window_days") == 28
  assert "DataGate" in _tasks(job)["TrainingWindow"]["dependentTasks"]
  assert "condition" in _tasks(job)["TrainingWindow"]["triggerPolicy"]
  # The compiled root is on Cloud Storage; the same verdicts, in a folder.
  job = copy.deepcopy(job)
  root = tmp_path / "day_verdicts"
  _tasks(job)["TrainingWindow"]["inputs"]["parameters"]["verdicts_root"][
      "runtimeValue"]["constant"] = str(root)
  key = _constant(job, "DataGate", "query_key")
  store = verdicts.VerdictStore(root)
  for day in range(SPAN_2024_02_04 - 30, SPAN_2024_02_04):
    store.write(verdicts.DayVerdict(
        span=day, passed=day != SPAN_2024_02_04 - 2, query_key=key,
        statistics_uri=f"/stats/{day}"))
  queries, span = _run_example_gen_container(
      job, tmp_path, {"span": SPAN_2024_02_04}, schedule_time="",
      task="TrainingWindow")
  assert span == SPAN_2024_02_04
  days = [d for d in range(SPAN_2024_02_04 - 29, SPAN_2024_02_04)
          if d != SPAN_2024_02_04 - 2]
  cfg = sql.QueryConfig(table=vertex_run.DEFAULT_TABLE)
  assert queries == {"day": bigquery_example_gen.window_query(
      sql.render_bigquery(cfg), days)}


def test_scheduled_run_takes_the_newest_city_day_that_has_ended(compiled,
                                                               tmp_path):
  _, _, job = compiled
  # The default schedule's time: 03:00 in Chicago (CST, UTC-6).
  queries, span = _run_example_gen_container(
      job, tmp_path, {"span": vertex_run.AUTO_SPAN},
      schedule_time="2024-02-05T09:00:00Z")
  assert span == SPAN_2024_02_04
  assert queries == _expected_queries(SPAN_2024_02_04)
  # 02:00 UTC is 20:00 on 2024-02-04 in Chicago: that day is not over.
  _, span = _run_example_gen_container(
      job, tmp_path / "early", {"span": vertex_run.AUTO_SPAN},
      schedule_time="2024-02-05T02:00:00Z")
  assert span == SPAN_2024_02_04 - 1


# (scheduled time, hours of lag, the day it trains on, why). Chicago is
# UTC-6 in winter (CST), UTC-5 in summer (CDT); in 2024 the clocks jump
# from 02:00 to 03:00 on 03-10 and fall back from 02:00 to 01:00 on 11-03.
SCHEDULE_CASES = [
    ("2024-02-05T02:00:00Z", 2, "2024-02-03",
     "cron '0 2 * * *' (UTC): 20:00 on 02-04 in the city"),
    ("2024-02-05T09:00:00Z", 2, "2024-02-04",
     "cron 'TZ=America/Chicago 0 3 * * *': 03:00 CST"),
    ("2024-02-05T07:59:00Z", 2, "2024-02-03", "01:59 CST: under the lag"),
    ("2024-02-05T08:00:00Z", 2, "2024-02-04", "02:00 CST: exactly the lag"),
    ("2024-02-05T06:00:00Z", 0, "2024-02-04", "midnight CST, no lag"),
    ("2024-02-05T05:59:59Z", 0, "2024-02-03", "a second before midnight"),
    ("2024-02-05T10:00:00+01:00", 0, "2024-02-04", "an offset, not Z"),
    ("2024-03-10T08:00:00Z", 2, "2024-03-09",
     "spring forward: 03:00 CDT; 03-09 ended at 06:00Z"),
    ("2024-03-10T07:59:00Z", 2, "2024-03-08", "01:59 CST as the clocks jump"),
    ("2024-03-11T07:00:00Z", 2, "2024-03-10",
     "02:00 CDT after the 23-hour day (it ended at 05:00Z)"),
    ("2024-03-11T06:59:00Z", 2, "2024-03-09", "01:59 CDT: under the lag"),
    ("2024-11-03T07:00:00Z", 2, "2024-11-02",
     "fall back: the second 01:00 (CST); 11-02 ended at 05:00Z"),
    ("2024-11-03T06:59:00Z", 2, "2024-11-01", "the first 01:59 (CDT)"),
    ("2024-11-04T08:00:00Z", 2, "2024-11-03",
     "02:00 CST after the 25-hour day (it ended at 06:00Z)"),
    ("2024-07-01T08:00:00Z", 2, "2024-06-30",
     "cron 'TZ=America/Chicago 0 3 * * *' in summer: 03:00 CDT"),
    ("2024-07-01T02:00:00Z", 2, "2024-06-29",
     "cron '0 2 * * *' (UTC) in summer: 21:00 on 06-30"),
    ("2024-07-01T08:00:00Z", 30, "2024-06-28",
     "a lag over a day: 06-29 is ready at 11:00Z"),
]


@pytest.mark.parametrize("when,hours,day,why", SCHEDULE_CASES,
                         ids=[c[3] for c in SCHEDULE_CASES])
def test_the_scheduled_day_is_the_citys_newest_ended_day(when, hours, day,
                                                         why):
  from pipeline.components import bigquery_example_gen  # noqa: PLC0415
  assert bigquery_example_gen.scheduled_span(when, hours) == (
      datetime.date.fromisoformat(day) - datetime.date(1970, 1, 1)).days, why
  # A submit without --date at that moment takes the same day.
  moment = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
  assert vertex_run.yesterday_span(hours, now=moment) == (
      datetime.date.fromisoformat(day) - datetime.date(1970, 1, 1)).days


def test_auto_span_without_a_schedule_time_fails_clearly(compiled, tmp_path):
  _, _, job = compiled
  with pytest.raises(Exception, match="no scheduled time"):
    _run_example_gen_container(job, tmp_path, {"span": vertex_run.AUTO_SPAN},
                               schedule_time="{{$.pipeline_job_schedule_time_utc}}")


# --- aiplatform, offline ----------------------------------------------------


def _anonymous():
  from google.auth import credentials  # noqa: PLC0415
  return credentials.AnonymousCredentials()


def test_compiled_json_loads_into_pipeline_job_offline(compiled):
  args, path, _ = compiled
  from google.cloud import aiplatform  # noqa: PLC0415
  job = aiplatform.PipelineJob(
      display_name="taxi-demand", template_path=str(path),
      credentials=_anonymous(), project=PROJECT, location="us-central1",
      parameter_values={"span": SPAN_2024_02_04})
  resource = job._gca_resource
  assert resource.runtime_config.gcs_output_directory == args.pipeline_root
  assert resource.runtime_config.parameter_values["span"] == SPAN_2024_02_04
  assert resource.pipeline_spec["pipelineInfo"]["name"] == "taxi-demand"


def _copy(message):
  return type(message).deserialize(type(message).serialize(message))


class FakePipelineService:
  """Stands in for Vertex's pipeline and schedule services; records requests."""

  def __init__(self):
    self.requests = []

  def create_pipeline_job(self, parent, pipeline_job, pipeline_job_id,
                          timeout=None):
    del timeout
    self.requests.append(("create_pipeline_job", parent, pipeline_job,
                          pipeline_job_id))
    created = _copy(pipeline_job)
    created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
    return created

  def create_schedule(self, parent, schedule, timeout=None):
    del timeout
    self.requests.append(("create_schedule", parent, schedule))
    created = _copy(schedule)
    created.name = f"{parent}/schedules/1"
    return created


@pytest.fixture
def fake_service(monkeypatch):
  from google.cloud.aiplatform import initializer  # noqa: PLC0415
  from google.cloud.aiplatform import pipeline_jobs  # noqa: PLC0415
  service = FakePipelineService()
  monkeypatch.setattr(initializer.global_config, "create_client",
                      lambda *a, **k: service)
  # submit() also makes sure the pipeline root's bucket exists; not here.
  monkeypatch.setattr(
      pipeline_jobs.gcs_utils,
      "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
      lambda **k: None)
  return service


def _cloud_args(action, compiled, *extra):
  _, path, _ = compiled
  return _args(action, "--labels", "team=forecasting,env=prod",
               "--no-enable-caching", *extra, output=str(path))


def test_submit_sends_identity_network_labels_caching_and_span(
    compiled, fake_service):
  args = _cloud_args("submit", compiled, "--date", "2024-02-04")
  _, path, job_spec = compiled
  request = vertex_run.submit(args, str(path), job_spec,
                              credentials=_anonymous())
  [(method, parent, sent, job_id)] = fake_service.requests
  assert method == "create_pipeline_job"
  assert parent == f"projects/{PROJECT}/locations/us-central1"
  assert sent.service_account == SERVICE_ACCOUNT
  assert sent.network == NETWORK
  assert dict(sent.labels) == {"team": "forecasting", "env": "prod"}
  assert sent.encryption_spec.kms_key_name == KMS_KEY
  assert sent.runtime_config.parameter_values["span"] == SPAN_2024_02_04
  # --no-enable-caching reaches every task of the spec that is sent.
  assert all(not t.get("cachingOptions", {}).get("enableCache")
             for t in sent.pipeline_spec["root"]["dag"]["tasks"].values())
  assert request["pipelineJobId"] == job_id
  assert request["pipelineJob"]["serviceAccount"] == SERVICE_ACCOUNT


def test_submit_without_date_runs_yesterday(compiled, fake_service):
  args = _cloud_args("submit", compiled)
  _, path, job_spec = compiled
  vertex_run.submit(args, str(path), job_spec, credentials=_anonymous())
  sent = fake_service.requests[0][2]
  assert sent.runtime_config.parameter_values["span"] == (
      vertex_run.yesterday_span(2.0))


def test_schedule_creates_a_daily_schedule_with_auto_span(compiled,
                                                          fake_service):
  args = _cloud_args("schedule", compiled, "--cron", "0 2 * * *")
  _, path, job_spec = compiled
  vertex_run.schedule(args, str(path), job_spec, credentials=_anonymous())
  [(method, parent, schedule)] = fake_service.requests
  assert method == "create_schedule"
  assert parent == f"projects/{PROJECT}/locations/us-central1"
  assert schedule.cron == "0 2 * * *"
  assert schedule.max_concurrent_run_count == 1
  request = schedule.create_pipeline_job_request
  job = request.pipeline_job
  assert job.service_account == SERVICE_ACCOUNT
  assert job.network == NETWORK
  assert dict(job.labels) == {"team": "forecasting", "env": "prod"}
  assert job.runtime_config.parameter_values["span"] == vertex_run.AUTO_SPAN


def test_the_default_schedule_is_written_in_the_citys_time_zone(
    compiled, fake_service):
  args = _cloud_args("schedule", compiled)
  _, path, job_spec = compiled
  vertex_run.schedule(args, str(path), job_spec, credentials=_anonymous())
  [(_, _, schedule)] = fake_service.requests
  assert schedule.cron == "TZ=America/Chicago 0 3 * * *"


def test_dry_run_prints_the_request_and_sends_nothing(compiled, fake_service,
                                                     capsys, tmp_path):
  out = tmp_path / "p.json"
  code = runner_vertex.main(["submit", *GOLDEN_FLAGS, "--output", str(out),
                             "--date", "2024-02-04", "--dry-run"])
  assert code == 0
  assert fake_service.requests == []
  printed = capsys.readouterr().out
  request = json.loads(printed[printed.index("{"):])
  assert request["pipelineJob"]["serviceAccount"] == SERVICE_ACCOUNT
  assert request["pipelineJob"]["network"] == NETWORK
  assert request["pipelineJob"]["runtimeConfig"]["parameterValues"] == {
      "span": SPAN_2024_02_04}


# --- bad input: one line, exit 1, nothing compiled --------------------------


@pytest.mark.parametrize("argv, message", [
    (["submit", "--project", PROJECT], "submit needs --service-account"),
    (["schedule", "--project", PROJECT], "schedule needs --service-account"),
    (["compile", "--pipeline-root", "s3://bucket/root"],
     "bad --pipeline-root 's3://bucket/root'"),
    (["compile", "--pipeline-root", "gs://"], "bad --pipeline-root"),
    (["compile", "--table", "trips; DROP TABLE x"], "bad --table 'trips;"),
    (["compile", "--table", "trips"], "bad --table 'trips'"),
    (["submit", "--project", PROJECT, "--service-account",
      "123-compute@developer.gserviceaccount.com"],
     "default compute identity"),
    (["submit", "--project", PROJECT, "--service-account", SERVICE_ACCOUNT,
      "--labels", "Team=x"], "bad label key"),
    (["schedule", "--project", PROJECT, "--service-account", SERVICE_ACCOUNT,
      "--cron", "daily"], "bad --cron"),
    (["submit", "--project", PROJECT, "--service-account", SERVICE_ACCOUNT,
      "--parameter", "days=3"], "unknown --parameter 'days'"),
])
def test_bad_input_is_one_line_and_exit_1(argv, message, tmp_path, capsys,
                                          fake_service):
  out = tmp_path / "p.json"
  code = runner_vertex.main([*argv, "--output", str(out), "--dry-run"]
                            if argv[0] != "compile" else
                            [*argv, "--output", str(out)])
  err = capsys.readouterr().err.strip()
  assert code == 1
  assert err.startswith("error: ") and message in err, err
  assert len(err.splitlines()) == 1 and "Traceback" not in err
  assert fake_service.requests == []
  if "parameter" not in message and "cron" not in message:
    assert not out.exists()  # refused before anything was compiled


def test_a_non_json_output_is_refused_before_compiling(tmp_path, capsys):
  out = tmp_path / "spec.yaml"
  code = runner_vertex.main(["compile", "--output", str(out)])
  err = capsys.readouterr().err.strip()
  assert code == 1 and err.startswith("error: bad --output")
  assert len(err.splitlines()) == 1 and not out.exists()


def test_help_shows_the_three_commands(capsys):
  with pytest.raises(SystemExit) as e:
    runner_vertex.parse_args(["--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  for word in ("compile", "submit", "schedule", "--service-account", "span"):
    assert word in text


# --- the image ----------------------------------------------------------------


def test_image_tfx_version_matches_the_lock():
  dockerfile = (REPO / "Dockerfile").read_text()
  base = re.search(r"^FROM\s+gcr\.io/tfx-oss-public/tfx:(\S+)", dockerfile,
                   re.M)
  locked = re.search(r"^tfx==(\S+)", (REPO / "requirements.lock").read_text(),
                     re.M)
  assert base and locked
  assert base.group(1) == locked.group(1)
  import tfx  # noqa: PLC0415
  assert tfx.__version__ == locked.group(1)


def test_image_installs_the_lock_keeps_legacy_keras_and_the_schema_path():
  dockerfile = (REPO / "Dockerfile").read_text()
  assert re.search(r"^ENV TF_USE_LEGACY_KERAS=1$", dockerfile, re.M)
  assert re.search(r"pip install .*-r requirements\.lock", dockerfile)
  workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.M).group(1)
  assert workdir == vertex_run.IMAGE_SOURCE_DIR
  assert (REPO / vertex_run.SCHEMA_IN_IMAGE[len(workdir) + 1:]).is_file()
