"""Prints, as JSON, what Airflow makes of deploy/composer: run by .venv-airflow's Python.

tests/test_composer_dag.py runs it in the Airflow environment (Airflow 3 and
TFX 1.16 cannot share one) and asserts on its output:

  python composer_dag_facts.py DAG_FOLDER PROBES_JSON OUTPUT_JSON

PROBES_JSON holds
  "schedule_after": {dag_id: [ISO time, ...]}  the next scheduled run after each;
  "span_for": [[logical ISO time or null, run_after ISO time], ...]  the span
      the daily task renders for a run with that logical date and run_after;
  "city_tz_variants": [zone, ...]  the folder parsed again with each
      $TAXI_DEMAND_CITY_TZ.
The facts go to OUTPUT_JSON, not stdout, which Airflow's own logging shares.
Set AIRFLOW_HOME to a scratch folder first; Variables come from
AIRFLOW_VAR_* environment variables.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import sys

PROJECT_VARIABLE = "AIRFLOW_VAR_TAXI_DEMAND_PROJECT"


def seconds(value):
  return None if value is None else value.total_seconds()


def parse(text):
  return None if text is None else datetime.datetime.fromisoformat(text)


def load(folder: str):
  """The folder's DagBag, parsed afresh (its module is imported again)."""
  from airflow.models.dagbag import DagBag  # noqa: PLC0415
  return DagBag(dag_folder=folder, include_examples=False)


def serialization_error(dag):
  """Why the DAG processor could not store the DAG, or None."""
  from airflow.serialization.serialized_objects import SerializedDAG  # noqa: PLC0415
  try:
    SerializedDAG.from_dict(SerializedDAG.to_dict(dag))
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"
  return None


def task_facts(task) -> dict:
  """What a task is and how it retries and ends."""
  cls = type(task)
  return {
      "operator": f"{cls.__module__}.{cls.__qualname__}",
      "retries": task.retries,
      "retry_delay": seconds(task.retry_delay),
      "execution_timeout": seconds(task.execution_timeout),
      "deferrable": getattr(task, "deferrable", None),
  }


def next_runs(dag, after: list) -> list:
  """The scheduled time (UTC ISO) of the run after each given time."""
  from airflow.timetables.base import DataInterval  # noqa: PLC0415
  from airflow.timetables.base import TimeRestriction  # noqa: PLC0415
  import pendulum  # noqa: PLC0415
  runs = []
  for text in after:
    # As the scheduler passes it: a pendulum time.
    moment = pendulum.instance(parse(text))
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(moment, moment),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True))
    runs.append(info.run_after.astimezone(datetime.timezone.utc).isoformat())
  return runs


class _DagRun:
  """What the templates read of a dag run."""

  def __init__(self, run_after):
    self.run_after = run_after


def context(logical, run_after) -> dict:
  return {"logical_date": logical, "dag_run": _DagRun(run_after)}


def rendered_spans(dag, task, probes: list) -> list:
  """The span parameter the task renders, through the DAG's own templating."""
  env = dag.get_template_env()
  return [task.render_template(task.parameter_values,
                               context(parse(logical), parse(run_after)),
                               env)["span"]
          for logical, run_after in probes]


def rendered_fields(dag, task) -> dict:
  """Every template field of the task, rendered as a worker would."""
  task = copy.copy(task)
  now = datetime.datetime(2024, 3, 11, 5, 15, tzinfo=datetime.timezone.utc)
  try:
    task.render_template_fields(context(now, now), dag.get_template_env())
  except Exception as e:  # pylint: disable=broad-except
    return {"error": f"{type(e).__name__}: {e}"}
  return {name: getattr(task, name) for name in task.template_fields}


def without_project(dag, task) -> dict:
  """The task rendered with no project Variable set."""
  saved = os.environ.pop(PROJECT_VARIABLE, None)
  try:
    return rendered_fields(dag, task)
  finally:
    if saved is not None:
      os.environ[PROJECT_VARIABLE] = saved


def dag_facts(dag, probes: dict) -> dict:
  timetable = dag.timetable
  facts = {
      "timetable": type(timetable).__name__,
      "cron": getattr(timetable, "_expression", None),
      "timezone": str(getattr(timetable, "_timezone", None)),
      "catchup": dag.catchup,
      "max_active_runs": dag.max_active_runs,
      "dagrun_timeout": seconds(dag.dagrun_timeout),
      "doc_md": dag.doc_md or "",
      "serialization_error": serialization_error(dag),
      "tasks": {t.task_id: task_facts(t) for t in dag.tasks},
      "rendered": {t.task_id: rendered_fields(dag, t) for t in dag.tasks},
      "without_project": {t.task_id: without_project(dag, t)
                          for t in dag.tasks},
      "next_runs": next_runs(dag, probes["schedule_after"].get(dag.dag_id, [])),
  }
  for task in dag.tasks:
    if hasattr(task, "parameter_values"):  # the pipeline submission
      facts["spans"] = rendered_spans(dag, task, probes["span_for"])
      facts["submission"] = {"display_name": task.display_name,
                             "labels": task.labels,
                             "enable_caching": task.enable_caching}
  return facts


def main(folder: str, probes: dict) -> dict:
  bag = load(folder)
  facts = {"import_errors": dict(bag.import_errors),
           "dags": {dag_id: dag_facts(dag, probes)
                    for dag_id, dag in sorted(bag.dags.items())},
           "city_tz_variants": {}}
  for zone in probes.get("city_tz_variants", []):
    os.environ["TAXI_DEMAND_CITY_TZ"] = zone
    variant = load(folder)
    facts["city_tz_variants"][zone] = {
        "import_errors": list(variant.import_errors.values()),
        "timezones": {dag_id: str(getattr(dag.timetable, "_timezone", None))
                      for dag_id, dag in sorted(variant.dags.items())}}
  return facts


if __name__ == "__main__":
  result = main(sys.argv[1], json.loads(sys.argv[2]))
  with open(sys.argv[3], "w", encoding="utf-8") as out:
    json.dump(result, out, default=str)
