"""Runs the daily pipeline on Vertex AI: flags -> PipelineConfig -> compile | submit | schedule.

  python runner_vertex.py compile             # no network, no credentials
  python runner_vertex.py submit --project P --service-account SA \\
      --image REGION-docker.pkg.dev/P/taxi-demand/pipeline:0.1.0 --date 2024-02-04
  python runner_vertex.py schedule --project P --service-account SA

compile writes the pipeline job JSON (KubeflowV2DagRunner); submit compiles,
then sends one run with google.cloud.aiplatform.PipelineJob; schedule
compiles, then creates a Vertex schedule (default 03:00 in the city's time
zone) whose runs each take the newest city day that had ended
--ready-after-hours before their scheduled time. --dry-run prints the request
instead of sending it.

ExampleGen reads the demand query from BigQuery (--table), the Beam-heavy
nodes (ExampleGen, StatisticsGen, Transform, Evaluator) run on Dataflow, and
the span (days since 1970-01-01) is the runtime parameter `span`: 0 means the
newest complete city day at the run's scheduled time. Build and push --image first (README:
Run on Google Cloud). `runner_vertex.py ACTION --help` lists an action's flags.
Exit codes: 0 ok, 1 error (one line; --verbose for the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import taxi_demand  # sets TF_USE_LEGACY_KERAS before TensorFlow
from pipeline import flags
from taxi_demand import arguments
from taxi_demand import errors
from taxi_demand.lineage import contract

ACTIONS = ("compile", "submit", "schedule")


def _pipeline_flags() -> arguments.Parser:
  """Flags that shape the compiled spec; every action takes them."""
  from pipeline import vertex_run  # noqa: PLC0415
  p = arguments.Parser(add_help=False)
  g = p.add_argument_group("project and image")
  g.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT"),
                 help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT; "
                 f"compile alone falls back to {vertex_run.PLACEHOLDER_PROJECT!r})")
  g.add_argument("--region", default=vertex_run.DEFAULT_REGION,
                 help="Vertex AI and Dataflow region (default %(default)s)")
  g.add_argument("--pipeline-root", metavar="GS_URI",
                 help="gs:// root of pipeline artifacts (default "
                 "gs://PROJECT-taxi-demand/pipeline)")
  g.add_argument("--serving-dir", metavar="GS_URI",
                 help="gs:// folder blessed models are pushed to (default: "
                 "models/ in the pipeline root's bucket); the served log "
                 "is read from serving_log/ beside it")
  g.add_argument("--image", help="the pipeline image built from Dockerfile "
                 "(default REGION-docker.pkg.dev/PROJECT/taxi-demand/"
                 f"pipeline:{taxi_demand.__version__})")
  g.add_argument("--output", default=vertex_run.DEFAULT_OUTPUT,
                 help="where the compiled JSON goes (default %(default)s)")
  g = p.add_argument_group("identity and network (used by Dataflow, training, "
                           "the endpoint and the run itself)")
  g.add_argument("--service-account", metavar="EMAIL",
                 help="a dedicated service account; required by submit and "
                 "schedule")
  g.add_argument("--network", help="VPC network, projects/NUMBER/global/"
                 "networks/NAME")
  g.add_argument("--kms-key", help="CMEK key, projects/P/locations/L/keyRings/"
                 "R/cryptoKeys/K")
  g = p.add_argument_group("data and model")
  g.add_argument("--table", default=vertex_run.DEFAULT_TABLE,
                 help="BigQuery trips table, project.dataset.table (default "
                 "%(default)s)")
  g.add_argument("--date", help="the day to run, YYYY-MM-DD (submit default: "
                 "the newest city day that has ended, see "
                 "--ready-after-hours; a schedule takes that day as of each "
                 "scheduled time)")
  g.add_argument("--ready-after-hours", type=arguments.number(0), default=(
      contract.DEFAULT_READY_AFTER_HOURS), metavar="H",
                 help="a city day counts as loaded H hours after its "
                 "midnight (%(default)s): without --date, the run takes the "
                 "newest day that ended at least H hours ago in the city's "
                 "time zone (recorded in the run parameters)")
  flags.add_model_flags(g)
  g.add_argument("--enable-caching", action=argparse.BooleanOptionalAction,
                 default=True, help="reuse results of unchanged steps "
                 "(default: on)")
  g = p.add_argument_group("Dataflow, training and serving")
  g.add_argument("--dataflow-machine-type", default="n1-standard-4",
                 help="Dataflow worker machine (default %(default)s)")
  g.add_argument("--dataflow-max-workers", type=arguments.count(1),
                 default=4,
                 help="Dataflow autoscaling cap (default %(default)s)")
  g.add_argument("--vertex-training", action="store_true",
                 help="train in a Vertex custom job instead of the pipeline "
                 "step's own container")
  g.add_argument("--training-machine-type", default="n1-standard-4",
                 help="custom job machine (default %(default)s)")
  g.add_argument("--accelerator-type",
                 help="custom job accelerator, e.g. NVIDIA_TESLA_T4")
  g.add_argument("--accelerator-count", type=arguments.count(0), default=0,
                 help="accelerators per machine (default 1 with a type)")
  g.add_argument("--endpoint", help="also deploy blessed models to this "
                 "Vertex endpoint (display name), besides the GCS push")
  p.add_argument("--verbose", "-v", action="store_true",
                 help="show TFX logs and tracebacks")
  return p


def _cloud_flags() -> arguments.Parser:
  """Flags of the request itself: submit and schedule."""
  p = arguments.Parser(add_help=False)
  g = p.add_argument_group("the request")
  g.add_argument("--labels", help="run labels, KEY=VALUE[,KEY=VALUE...]")
  g.add_argument("--parameter", action="append", default=[],
                 metavar="NAME=VALUE", help="a runtime parameter value "
                 "(repeatable); the pipeline takes `span`")
  g.add_argument("--dry-run", action="store_true",
                 help="print the request instead of sending it")
  return p


def parse_args(argv=None) -> argparse.Namespace:
  from pipeline import vertex_run  # noqa: PLC0415
  parser = arguments.Parser(
      prog="runner_vertex.py",
      description=__doc__.split("\n")[0],
      epilog=__doc__.split("\n", 1)[1],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  actions = parser.add_subparsers(dest="action", metavar="ACTION")
  pipeline_flags, cloud_flags = _pipeline_flags(), _cloud_flags()
  actions.add_parser(
      "compile", parents=[pipeline_flags],
      help="write the pipeline job JSON (the default action)",
      description="Writes the pipeline job JSON. No network, no credentials.")
  actions.add_parser(
      "submit", parents=[pipeline_flags, cloud_flags],
      help="compile, then send one run",
      description="Compiles, then sends one run for --date (default the "
      "newest city day that has ended, see --ready-after-hours) with "
      "google.cloud.aiplatform.PipelineJob.")
  schedule = actions.add_parser(
      "schedule", parents=[pipeline_flags, cloud_flags],
      help="compile, then create the daily schedule",
      description="Compiles, then creates a Vertex schedule. Each scheduled "
      "run takes the newest city day that had ended --ready-after-hours "
      "before its scheduled time.")
  schedule.add_argument("--cron", default=vertex_run.DEFAULT_CRON,
                        help="when runs start, UTC unless prefixed with "
                        "TZ=... (default \"%(default)s\": 03:00 in the "
                        "city)")
  argv = list(sys.argv[1:] if argv is None else argv)
  # `python runner_vertex.py [flags]` compiles.
  if not any(a in ACTIONS for a in argv) and not {"-h", "--help"} & set(argv):
    argv.insert(0, "compile")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  if not args.verbose:
    # Process-wide and kept: TensorFlow's C++ logging reads it once, when
    # TensorFlow loads (during this call), so undoing it would change nothing.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  from pipeline import vertex_run  # noqa: PLC0415
  from taxi_demand import logs  # noqa: PLC0415
  # preserved(): the warnings filter and log levels quieting the SDKs below
  # last for this call only; tests call main in-process.
  with logs.preserved(), errors.exit_codes(
      "error: ", args.verbose, alert_prefix="ALERT: ",
      interrupted="interrupted",  # nothing to resume: rerun the action
      unexpected=lambda e: f"{args.action} failed: {_one_line(e)}") as outcome:
    if not args.verbose:
      warnings.filterwarnings("ignore")  # the SDKs' deprecation chatter
    _run(args, vertex_run)
  return outcome.exit_code


def _one_line(error: BaseException) -> str:
  """A library's error in one line: its type and first line."""
  first = (str(error).strip().splitlines() or [""])[0]
  return f"{type(error).__name__}: {first}"


def _run(args, vertex_run) -> None:
  """Checks, compiles, then submits or schedules."""
  vertex_run.resolve_cloud(args)
  if args.action != "compile":
    vertex_run.require_for_cloud(args, args.action)
  config = vertex_run.build_config(args)
  if not args.verbose:
    import logging  # noqa: PLC0415
    from absl import logging as absl_logging  # noqa: PLC0415
    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
  job_spec = vertex_run.compile_pipeline(config, args.image, args.output)
  print(f"compiled {args.output} (image {args.image}, pipeline root "
        f"{args.pipeline_root})", flush=True)
  if args.project == vertex_run.PLACEHOLDER_PROJECT:
    print(f"note: no --project; the spec names {args.project!r}",
          file=sys.stderr)
  if args.action == "submit":
    request = vertex_run.submit(args, args.output, job_spec)
  elif args.action == "schedule":
    request = vertex_run.schedule(args, args.output, job_spec)
  else:
    return
  if args.dry_run:
    vertex_run.print_json(request)
  else:
    print(f"{args.action}: sent", flush=True)


if __name__ == "__main__":
  sys.exit(main())
