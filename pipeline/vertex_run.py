"""What runner_vertex.py needs beyond flags: checks, config, compile, submit, schedule."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from pipeline import flags
from taxi_demand import __version__
from taxi_demand import cloud
from taxi_demand import spans
from taxi_demand.lineage import contract
from taxi_demand.data import contract as data_contract
from taxi_demand.data.sql import check_table
from taxi_demand.errors import TaxiDemandError

# Vertex pipeline names allow no underscore; the run context in Vertex ML
# Metadata is named after it.
PIPELINE_NAME = contract.PIPELINE_NAME.replace("_", "-")  # KFP names take dashes
DEFAULT_TABLE = "bigquery-public-data.chicago_taxi_trips.taxi_trips"
DEFAULT_REGION = "us-central1"
DEFAULT_OUTPUT = "build/vertex/taxi_demand_pipeline.json"
# 03:00 in the city: yesterday ended 3 hours ago (more than the default
# freshness lag), and no daylight-saving change skips or repeats 03:00.
DEFAULT_CRON = f"TZ={data_contract.CITY_TIME_ZONE} 0 3 * * *"
# `compile` must work on a fresh clone with no project; the spec then names
# this project and submit/schedule refuse it.
PLACEHOLDER_PROJECT = "your-project"
# Where the Dockerfile puts this repository inside the image. The curated
# schema is read from there at run time, never from the compiling host.
IMAGE_SOURCE_DIR = "/taxi_demand"
SCHEMA_IN_IMAGE = f"{IMAGE_SOURCE_DIR}/pipeline/schema/schema.pbtxt"
# From the dependency-free contract, not from TFX-importing modules:
# `--help` and bad-input checks stay fast.
SPAN_PARAMETER = contract.SPAN_PARAMETER
AUTO_SPAN = contract.AUTO_SPAN

_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]")
_GCS_URI = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\s]*)?")
_SERVICE_ACCOUNT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]@"
                              r"[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com")
_NETWORK = re.compile(r"projects/[a-z0-9-]+/global/networks/([a-z][a-z0-9-]{0,62})")
_KMS_KEY = re.compile(r"projects/[a-z0-9-]+/locations/[a-z0-9-]+/keyRings/"
                      r"[\w-]+/cryptoKeys/[\w-]+")
_IMAGE = re.compile(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+"
                    r"(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})?")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_ENDPOINT = re.compile(r"[A-Za-z0-9][\w-]{0,127}")
_MACHINE = re.compile(r"[a-z][a-z0-9-]{1,62}")


def _match(pattern: re.Pattern, value: str, what: str, expected: str) -> str:
  if not isinstance(value, str) or not pattern.fullmatch(value):
    raise TaxiDemandError(f"bad {what} {value!r}: expected {expected}")
  return value


def check_gcs_uri(flag: str, uri: str) -> str:
  """`uri` without a trailing slash, if it is a gs://bucket[/path] URI."""
  return _match(_GCS_URI, uri, flag, "a gs://bucket/path URI").rstrip("/")


def check_bigquery_table(table: str) -> str:
  """A BigQuery `project.dataset.table`; nothing else reaches the query."""
  try:
    ok = check_table(table).count(".") == 2
  except TaxiDemandError:
    ok = False
  if not ok:
    raise TaxiDemandError(f"bad --table {table!r}: expected a BigQuery "
                          f"project.dataset.table such as {DEFAULT_TABLE}")
  return table


def check_service_account(email: str) -> str:
  """A user-managed service account: never the default compute identity."""
  if email.endswith("-compute@developer.gserviceaccount.com"):
    raise TaxiDemandError(
        f"--service-account {email} is the default compute identity; create "
        "a dedicated one (README: Run on Google Cloud)")
  return _match(_SERVICE_ACCOUNT, email, "--service-account",
                "NAME@PROJECT.iam.gserviceaccount.com")


def parse_labels(text: Optional[str]) -> Dict[str, str]:
  """"team=ml,env=prod" -> {"team": "ml", "env": "prod"}, GCP label rules."""
  labels = {}
  for item in filter(None, (text or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep:
      raise TaxiDemandError(f"bad --labels item {item!r}: expected KEY=VALUE")
    _match(_LABEL_KEY, key, "label key", "lowercase letters, digits, _ or -, "
           "starting with a letter")
    _match(_LABEL_VALUE, value, f"label value for {key}",
           "lowercase letters, digits, _ or -")
    labels[key] = value
  return labels


def parse_parameters(items: Sequence[str],
                     declared: Mapping[str, str]) -> Dict[str, Any]:
  """NAME=VALUE flags -> typed runtime parameter values.

  Args:
    items: the --parameter flags.
    declared: {name: parameterType} from the compiled spec's root inputs.

  Returns:
    {name: value}, ints for NUMBER_INTEGER parameters.
  """
  values = {}
  for item in items or ():
    name, sep, raw = item.partition("=")
    if not sep:
      raise TaxiDemandError(f"bad --parameter {item!r}: expected NAME=VALUE")
    if name not in declared:
      raise TaxiDemandError(
          f"unknown --parameter {name!r}; the pipeline takes "
          f"{', '.join(sorted(declared)) or 'none'}")
    kind = declared[name]
    try:
      values[name] = (int(raw) if kind == "NUMBER_INTEGER" else
                      float(raw) if kind == "NUMBER_DOUBLE" else raw)
    except ValueError:
      raise TaxiDemandError(
          f"bad --parameter {name}={raw!r}: expected {kind}") from None
  return values


def check_cron(cron: str) -> str:
  """Five cron fields, optionally after a TZ=/CRON_TZ= prefix."""
  fields = cron.split()
  if fields and re.fullmatch(r"(CRON_)?TZ=[\w/+-]+", fields[0]):
    fields = fields[1:]
  if len(fields) != 5 or not all(re.fullmatch(r"[\d*/,\-A-Za-z?]+", f)
                                 for f in fields):
    raise TaxiDemandError(
        f"bad --cron {cron!r}: expected five fields, e.g. \"{DEFAULT_CRON}\" "
        "(in the city's time zone) or \"0 9 * * *\" (UTC)")
  return cron


def yesterday_span(ready_after_hours: float,
                   now: Optional[datetime.datetime] = None) -> int:
  """What a run submitted now trains on: the newest city day that ended at
  least `ready_after_hours` ago (the rule of a scheduled run's AUTO_SPAN)."""
  now = now or datetime.datetime.now(datetime.timezone.utc)
  return spans.newest_complete_day(now, data_contract.CITY_TIME_ZONE,
                                   ready_after_hours)


def resolve_cloud(args) -> None:
  """Validates the cloud flags and fills derived defaults, in place.

  Raises TaxiDemandError, one line, before anything is compiled.
  """
  args.project = args.project or PLACEHOLDER_PROJECT
  _match(_PROJECT, args.project, "--project", "a Google Cloud project id")
  _match(_REGION, args.region, "--region", "a region such as us-central1")
  check_bigquery_table(args.table)
  args.pipeline_root = check_gcs_uri(
      "--pipeline-root",
      args.pipeline_root or f"gs://{args.project}-taxi-demand/pipeline")
  bucket = args.pipeline_root.split("/")[2]
  args.serving_dir = check_gcs_uri(
      "--serving-dir", args.serving_dir or f"gs://{bucket}/models")
  args.image = _match(
      _IMAGE, args.image or (f"{args.region}-docker.pkg.dev/{args.project}/"
                             f"taxi-demand/pipeline:{__version__}"),
      "--image", "REGISTRY/PATH[:TAG]")
  if args.service_account:
    check_service_account(args.service_account)
  if args.network:
    _match(_NETWORK, args.network, "--network",
           "projects/PROJECT_NUMBER/global/networks/NAME")
  if args.kms_key:
    _match(_KMS_KEY, args.kms_key, "--kms-key",
           "projects/P/locations/L/keyRings/R/cryptoKeys/K")
  if args.endpoint:
    _match(_ENDPOINT, args.endpoint, "--endpoint", "an endpoint display name")
  for flag in ("dataflow_machine_type", "training_machine_type"):
    _match(_MACHINE, getattr(args, flag), "--" + flag.replace("_", "-"),
           "a machine type such as n1-standard-4")
  if Path(args.output).suffix != ".json":
    raise TaxiDemandError(f"bad --output {args.output!r}: the compiled spec "
                          "is written as JSON; name it *.json")
  if args.dataflow_max_workers < 1:
    raise TaxiDemandError("--dataflow-max-workers must be >= 1")
  if args.accelerator_count < 0:
    raise TaxiDemandError("--accelerator-count must be >= 0")
  if (args.accelerator_type or args.accelerator_count) and not (
      args.vertex_training):
    raise TaxiDemandError("--accelerator-* need --vertex-training")
  args.labels = parse_labels(getattr(args, "labels", None))
  for name, default in (("parameter", []), ("dry_run", False)):
    if not hasattr(args, name):
      setattr(args, name, default)


def dataflow_beam_args(args) -> List[str]:
  """DataflowRunner options for the Beam-heavy nodes."""
  flags = [
      "--runner=DataflowRunner",
      f"--project={args.project}",
      f"--region={args.region}",
      f"--temp_location={args.pipeline_root}/dataflow/tmp",
      f"--staging_location={args.pipeline_root}/dataflow/staging",
      f"--machine_type={args.dataflow_machine_type}",
      f"--max_num_workers={args.dataflow_max_workers}",
      # Workers run the pipeline image: the same TFX, TF and taxi_demand code
      # (Transform's preprocessing_fn) as the orchestrating container.
      f"--sdk_container_image={args.image}",
      "--experiments=use_runner_v2",
  ]
  if args.service_account:
    flags.append(f"--service_account_email={args.service_account}")
  if args.network:
    flags.append(f"--network={_NETWORK.fullmatch(args.network).group(1)}")
  if args.kms_key:
    flags.append(f"--dataflow_kms_key={args.kms_key}")
  return flags


def serving_log_beside(serving_dir: str) -> str:
  """The served log of the store that holds `serving_dir`: the 5-minute job
  (`--store gs://BUCKET[/PREFIX]`) keeps models/ and serving_log/ side by
  side, and the pipeline pushes to that models/."""
  models = cloud.parse_gcs(serving_dir, "--serving-dir")
  store = cloud.GcsAddress(models.bucket, models.prefix.rpartition("/")[0])
  return str(store.child("serving_log"))


def build_config(args):
  """Checked flags -> PipelineConfig for Platform.VERTEX. The one place."""
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  from pipeline.config import Platform  # noqa: PLC0415
  from pipeline.config import VertexConfig  # noqa: PLC0415
  span = spans.parse_span(args.date) if args.date else AUTO_SPAN
  vertex = VertexConfig(
      project=args.project,
      region=args.region,
      image=args.image,
      schema_file=SCHEMA_IN_IMAGE,
      dataflow_beam_args=tuple(dataflow_beam_args(args)),
      service_account=args.service_account or "",
      network=args.network or "",
      kms_key=args.kms_key or "",
      vertex_training=args.vertex_training,
      training_machine_type=args.training_machine_type,
      accelerator_type=args.accelerator_type or "",
      accelerator_count=args.accelerator_count,
      endpoint=args.endpoint or "",
      ready_after_hours=args.ready_after_hours)
  try:
    return PipelineConfig(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=args.pipeline_root,
        span=span,
        platform=Platform.VERTEX,
        serving_dir=args.serving_dir,
        # NextDayValidator and SkewValidator read what the job served.
        serving_log_dir=serving_log_beside(args.serving_dir),
        # Nodes outside Dataflow (ImportSchemaGen, DataGate, ...) run Beam, if
        # at all, in their own container; BigQuery needs a project and a
        # temp location either way.
        beam_pipeline_args=(f"--project={args.project}",
                            f"--temp_location={args.pipeline_root}/tmp"),
        enable_cache=args.enable_caching,
        code_version=__version__,
        vertex=vertex,
        **flags.model_config_kwargs(args, table=args.table))
  except ValueError as e:
    raise TaxiDemandError(str(e)) from None


def compile_pipeline(config, image: str, output: str) -> dict:
  """Writes the Vertex pipeline job JSON; no network, no credentials.

  Returns:
    The pipeline job dict that was written.
  """
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2  # noqa: PLC0415
  from pipeline.pipeline import create_pipeline  # noqa: PLC0415
  path = Path(output)
  runner = v2.KubeflowV2DagRunner(
      config=v2.KubeflowV2DagRunnerConfig(
          display_name=config.pipeline_name,
          default_image=image,
          use_pipeline_spec_2_1=True),
      output_dir=str(path.parent or "."),
      output_filename=path.name)
  # The span's default lands in runtimeConfig, so a run started from the
  # console without parameters is a scheduled-style (AUTO_SPAN) run.
  job = runner.run(create_pipeline(config),
                   parameter_values={SPAN_PARAMETER: config.span},
                   write_out=False)
  only_gate_blessings(job)
  path.parent.mkdir(parents=True, exist_ok=True)
  # As TFX's own writer does for .json.
  path.write_text(json.dumps(job, sort_keys=True))
  return job


# The compiled query of the baseline resolver's first step.
_BLESSING_QUERY_EXECUTOR = "LatestBlessedModel-model-blessing-resolver_executor"


def gate_clause() -> str:
  """The filter clause that keeps a blessing query to ForecastGate's."""
  from taxi_demand.lineage.records import ForecastGateRecord  # noqa: PLC0415
  mark = ForecastGateRecord.names().forecast_gate
  return f" AND metadata.{mark}.number_value=1"


def only_gate_blessings(job: dict) -> None:
  """Restricts the Vertex baseline resolver to ForecastGate's blessings.

  TFX compiles LatestBlessedModelStrategy to a Vertex ML Metadata query for
  the newest ModelBlessing with blessed=1, whoever produced it. The Evaluator
  writes one too, blessed when the candidate merely beats the last model, so
  the baseline (and the warm start) could be a model ForecastGate refused.
  Locally the resolver filters by producer; here the query gains the mark
  only ForecastGate sets (records.ForecastGateRecord.forecast_gate).
  """
  try:
    queries = job["pipelineSpec"]["deploymentSpec"]["executors"][
        _BLESSING_QUERY_EXECUTOR]["resolver"]["outputArtifactQueries"]
  except KeyError:
    raise TaxiDemandError(
        "the compiled spec has no baseline blessing query "
        f"({_BLESSING_QUERY_EXECUTOR}); has TFX's compiler changed?") from None
  clause = gate_clause()
  for query in queries.values():
    if clause not in query["filter"]:
      query["filter"] += clause


def declared_parameters(job_spec: dict) -> Dict[str, str]:
  """{name: parameterType} of the compiled pipeline's runtime parameters."""
  root = job_spec["pipelineSpec"]["root"].get("inputDefinitions", {})
  return {name: p.get("parameterType", "STRING")
          for name, p in root.get("parameters", {}).items()}


def pipeline_job(template_path: str, args, parameter_values: Mapping[str, Any],
                 credentials=None):
  """The aiplatform.PipelineJob that submit and schedule send.

  Args:
    template_path: the compiled JSON.
    args: checked flags (project, region, pipeline root, labels, caching,
      KMS key).
    parameter_values: runtime parameter values.
    credentials: None for Application Default Credentials.
  """
  from google.cloud import aiplatform  # noqa: PLC0415
  return aiplatform.PipelineJob(
      display_name=PIPELINE_NAME,
      template_path=template_path,
      pipeline_root=args.pipeline_root,
      parameter_values=dict(parameter_values),
      enable_caching=args.enable_caching,
      labels=dict(args.labels) or None,
      encryption_spec_key_name=args.kms_key or None,
      project=args.project,
      location=args.region,
      credentials=credentials)


def job_parameter_values(args, job_spec: dict, scheduled: bool) -> Dict[str, Any]:
  """The runtime parameter values a submit or schedule sends.

  A submitted run takes --date, else the newest city day that has ended
  (`yesterday_span`); a scheduled run takes AUTO_SPAN, which ExampleGen
  turns into the same day as of each scheduled time.
  """
  values = parse_parameters(args.parameter, declared_parameters(job_spec))
  if scheduled:
    if args.date or SPAN_PARAMETER in values:
      raise TaxiDemandError(
          "schedule: each scheduled run takes the newest city day ended "
          "--ready-after-hours before its scheduled time; --date and "
          "--parameter span= are for submit")
    values[SPAN_PARAMETER] = AUTO_SPAN
  elif SPAN_PARAMETER not in values:
    values[SPAN_PARAMETER] = (spans.parse_span(args.date) if args.date
                              else yesterday_span(args.ready_after_hours))
  return values


def request_of(job, service_account: str, network: Optional[str]) -> dict:
  """What `job.submit(service_account, network)` would send, as a dict."""
  from google.protobuf import json_format  # noqa: PLC0415
  cls = type(job._gca_resource)  # pylint: disable=protected-access
  resource = cls.deserialize(cls.serialize(job._gca_resource))  # pylint: disable=protected-access
  resource.service_account = service_account
  if network:
    resource.network = network
  body = json_format.MessageToDict(resource._pb)  # pylint: disable=protected-access
  # The spec itself is in the compiled file; the request around it is news.
  body["pipelineSpec"] = "<the compiled spec>"
  return {"parent": job._parent, "pipelineJobId": job.job_id,  # pylint: disable=protected-access
          "pipelineJob": body}


def require_for_cloud(args, action: str) -> None:
  """submit/schedule must name a real project and a dedicated identity."""
  if not args.service_account:
    raise TaxiDemandError(
        f"{action} needs --service-account: the pipeline must not run as the "
        "default compute identity")
  if args.project == PLACEHOLDER_PROJECT:
    raise TaxiDemandError(f"{action} needs --project")


def submit(args, template_path: str, job_spec: dict,
           credentials=None) -> dict:
  """Sends one pipeline run (or, with --dry-run, returns what it would send)."""
  require_for_cloud(args, "submit")
  job = pipeline_job(template_path, args,
                     job_parameter_values(args, job_spec, scheduled=False),
                     credentials=_dry_run_credentials(args, credentials))
  request = request_of(job, args.service_account, args.network)
  if not args.dry_run:
    job.submit(service_account=args.service_account,
               network=args.network or None)
  return request


def schedule(args, template_path: str, job_spec: dict,
             credentials=None) -> dict:
  """Creates the daily Vertex schedule (or, with --dry-run, describes it)."""
  require_for_cloud(args, "schedule")
  cron = check_cron(args.cron)
  job = pipeline_job(template_path, args,
                     job_parameter_values(args, job_spec, scheduled=True),
                     credentials=_dry_run_credentials(args, credentials))
  display_name = f"{PIPELINE_NAME}-daily"
  request = {"cron": cron, "displayName": display_name,
             "maxConcurrentRunCount": 1,
             "createPipelineJobRequest": request_of(
                 job, args.service_account, args.network)}
  if not args.dry_run:
    job.create_schedule(cron=cron, display_name=display_name,
                        max_concurrent_run_count=1,
                        service_account=args.service_account,
                        network=args.network or None)
  return request


def _dry_run_credentials(args, credentials):
  # A dry run sends nothing, so it must not need (or look for) credentials.
  if credentials is None and args.dry_run:
    from google.auth import credentials as auth  # noqa: PLC0415
    return auth.AnonymousCredentials()
  return credentials


def print_json(value: Any) -> None:
  print(json.dumps(value, indent=2, sort_keys=True), flush=True)
