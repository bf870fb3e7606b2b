"""Cloud Composer 3 (Airflow 3) DAGs of taxi_demand: the daily Vertex pipeline and the 5-minute job.

Two DAGs, both only triggers of work that runs elsewhere:

* `taxi_demand_daily` submits the Vertex AI pipeline (the JSON written by
  `python runner_vertex.py compile`, uploaded to Cloud Storage) for the city
  day that has just ended, a little after local midnight, and waits for it.
* `taxi_demand_5min` executes the Cloud Run job (the image's entrypoint,
  `taxi-demand predict` for the current tick) every 5 minutes.

This file imports only Airflow, its Google provider and the standard library:
never taxi_demand or TFX (TFX 1.16's AirflowDagRunner caps Airflow below 3,
and Composer 3 runs Airflow 3 on Python 3.11).

Settings. Airflow Variables, read when a task runs (never while the file is
parsed, which would hit the database on every parse); each can also come from
the environment as AIRFLOW_VAR_<NAME upper-cased>, as for any Variable:

  taxi_demand_project          Google Cloud project (required; no default)
  taxi_demand_region           Vertex AI and Cloud Run region (us-central1)
  taxi_demand_template         compiled pipeline JSON
                               (gs://PROJECT-taxi-demand/templates/taxi_demand_pipeline.json)
  taxi_demand_pipeline_root    pipeline root (gs://PROJECT-taxi-demand/pipeline,
                               as runner_vertex.py)
  taxi_demand_service_account  the pipeline's own identity
                               (taxi-demand-pipeline@PROJECT.iam.gserviceaccount.com)
  taxi_demand_job              Cloud Run job name (taxi-demand-predict)

One environment variable, read at parse time because the schedule depends on
it (an Airflow environment variable of the Composer environment):

  TAXI_DEMAND_CITY_TZ          the city's IANA time zone (America/Chicago: the
                               warehouse keeps Chicago wall-clock time)
"""

from __future__ import annotations

import datetime
import os
import zoneinfo

from airflow.providers.google.cloud.operators.cloud_run import CloudRunExecuteJobOperator
from airflow.providers.google.cloud.operators.vertex_ai.pipeline_job import RunPipelineJobOperator
from airflow.sdk import DAG
from airflow.sdk import Variable
from airflow.timetables.trigger import CronTriggerTimetable

CITY_TZ_ENV = "TAXI_DEMAND_CITY_TZ"
DEFAULT_CITY_TZ = "America/Chicago"

# Variable name -> default; "{project}" is filled with the project's value.
SETTINGS = {
    "taxi_demand_project": None,
    "taxi_demand_region": "us-central1",
    "taxi_demand_template":
        "gs://{project}-taxi-demand/templates/taxi_demand_pipeline.json",
    "taxi_demand_pipeline_root": "gs://{project}-taxi-demand/pipeline",
    "taxi_demand_service_account":
        "taxi-demand-pipeline@{project}.iam.gserviceaccount.com",
    "taxi_demand_job": "taxi-demand-predict",
}

# The pipeline's runtime parameter: the day to train on, in days since
# 1970-01-01 (taxi_demand.lineage.contract.SPAN_PARAMETER; not imported, see
# above). Always explicit: the pipeline's own 0 ("the day before the run's
# scheduled time", in UTC) would move with a late or retried run.
SPAN_PARAMETER = "span"
EPOCH = datetime.date(1970, 1, 1)
# Vertex pipeline names take dashes (runner_vertex.py's PIPELINE_NAME).
PIPELINE_DISPLAY_NAME = "taxi-demand"

# 00:15 city time: the city day has ended, and no daylight saving change
# (at 02:00 in Chicago) skips or repeats it.
DAILY_CRON = "15 0 * * *"
EVERY_5_MINUTES = "*/5 * * * *"
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def city_tz() -> str:
  """The city's IANA time zone, from $TAXI_DEMAND_CITY_TZ; checked."""
  name = os.environ.get(CITY_TZ_ENV) or DEFAULT_CITY_TZ
  try:
    zoneinfo.ZoneInfo(name)
  except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ValueError(f"{CITY_TZ_ENV}={name!r} is not an IANA time zone "
                     "such as America/Chicago") from None
  return name


def setting(name: str) -> str:
  """A setting's Variable, or its default; called while a task renders."""
  default = SETTINGS[name]
  value = Variable.get(name, default=None)
  if value:
    return value
  if default is None:
    raise ValueError(f"set the Airflow Variable {name} (or the environment "
                     f"variable AIRFLOW_VAR_{name.upper()})")
  return default.format(project=setting("taxi_demand_project"))


def day_to_train(moment: datetime.datetime, tz: str) -> int:
  """The span of the city day before `moment`'s own city date.

  Args:
    moment: an aware time: the run's logical date (its scheduled time), or
      when it was triggered by hand without one.
    tz: the city's IANA time zone.

  Returns:
    Days since 1970-01-01 of the day that ended at the city's last midnight.
  """
  local_day = moment.astimezone(zoneinfo.ZoneInfo(tz)).date()
  return (local_day - EPOCH).days - 1


def span_of_run(logical_date, dag_run, tz: str) -> int:
  """The span a daily run submits: from its logical date, else its run_after.

  A scheduled, retried or late run has the same logical date, so it trains
  the same day. Airflow 3 lets a manual run have no logical date; it then
  trains the day before the day it was triggered.
  """
  return day_to_train(logical_date or dag_run.run_after, tz)


DAILY_DOC = """Submits the Vertex AI pipeline for the city day that ended at the
last city midnight (`span` = its days since 1970-01-01), at 00:15 city time,
and waits for the run. A retried or late run submits the same day: the day
comes from the run's logical date, not from the clock. Settings: the Variables
listed in the DAG file's docstring."""
EVERY_5_DOC = """Executes the Cloud Run job, which serves the current tick.
A tick that failed is served by the next run's catch-up: the job serves the
ticks it missed itself, as `taxi-demand predict` does locally. So Airflow's
catch-up is off and a failed run is never backfilled: a backfilled run would
only queue behind the current one and serve nothing new."""

CITY_TZ = city_tz()


def taxi_demand_dag(dag_id: str, cron: str, tz: str,
                    retry_delay: datetime.timedelta, **kwargs) -> DAG:
  """A DAG with what both share: no catch-up, one run at a time, 2 retries.

  Neither catches up: a new deployment must not submit every day since START
  (a missed day is submitted by hand: `airflow backfill create`, or
  runner_vertex.py submit --date), and a missed tick is served by the job's
  own catch-up (EVERY_5_DOC).
  """
  return DAG(
      dag_id=dag_id,
      schedule=CronTriggerTimetable(cron, timezone=tz),
      start_date=START,
      catchup=False,
      max_active_runs=1,
      user_defined_macros={"setting": setting, "span_of_run": span_of_run,
                           "city_tz": CITY_TZ},
      default_args={"retries": 2, "retry_delay": retry_delay},
      tags=["taxi_demand"],
      **kwargs)


# Settings every task renders; `setting` reads them when the task runs.
PROJECT = "{{ setting('taxi_demand_project') }}"
REGION = "{{ setting('taxi_demand_region') }}"

with taxi_demand_dag(
    "taxi_demand_daily", DAILY_CRON, CITY_TZ,
    retry_delay=datetime.timedelta(minutes=10),
    description="Submit the Vertex AI pipeline for the city day that ended.",
    dagrun_timeout=datetime.timedelta(hours=12),
    # The span must reach Vertex as an integer (a NUMBER_INTEGER parameter),
    # not as the text a template renders by default.
    render_template_as_native_obj=True,
    doc_md=DAILY_DOC,
) as daily:
  # Waits for the pipeline (a retry after a failed run resubmits it; steps
  # that finished are cached). Not deferrable: it needs no triggerer, at the
  # cost of one worker slot while the pipeline runs.
  RunPipelineJobOperator(
      task_id="submit_pipeline",
      project_id=PROJECT,
      region=REGION,
      display_name=PIPELINE_DISPLAY_NAME,
      template_path="{{ setting('taxi_demand_template') }}",
      pipeline_root="{{ setting('taxi_demand_pipeline_root') }}",
      service_account="{{ setting('taxi_demand_service_account') }}",
      parameter_values={
          SPAN_PARAMETER: "{{ span_of_run(logical_date, dag_run, city_tz) }}"},
      # None keeps the compiled spec's caching (runner_vertex.py compile
      # --enable-caching/--no-enable-caching).
      enable_caching=None,
      labels={"orchestrator": "composer", "dag": "taxi_demand_daily"},
      deferrable=False,
      execution_timeout=datetime.timedelta(hours=8),
  )

# In UTC: every 5 minutes is the same in any zone, and UTC has no daylight
# saving hour to repeat or skip.
with taxi_demand_dag(
    "taxi_demand_5min", EVERY_5_MINUTES, "UTC",
    # Quick retries for a transient API error; a slow failure is left to the
    # next tick.
    retry_delay=datetime.timedelta(seconds=15),
    description="Execute the Cloud Run job: serve the current tick.",
    # Ends before the next tick is due, so runs never pile up.
    dagrun_timeout=datetime.timedelta(minutes=4, seconds=30),
    doc_md=EVERY_5_DOC,
) as every_5_minutes:
  CloudRunExecuteJobOperator(
      task_id="execute_job",
      project_id=PROJECT,
      region=REGION,
      job_name="{{ setting('taxi_demand_job') }}",
      deferrable=False,
      execution_timeout=datetime.timedelta(minutes=3),
  )
