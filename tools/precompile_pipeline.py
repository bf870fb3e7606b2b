"""Writes the bytecode of what a local pipeline run imports, once, at install.

Neither uv nor pip writes bytecode, and where PYTHONDONTWRITEBYTECODE is set
(CI, these machines) no run writes it either: every runner_local.py process
then compiles the ~7,700 modules it imports (TensorFlow, TFX, TFMA, Beam, and
what they pull in) from source, about 10 CPU-s of each daily run. Importing
them here with bytecode writing on compiles exactly those modules, in one
process, instead of all of site-packages (minutes). Run by
tools/bootstrap.sh after the install; a module a run imports that is not
reached from here is compiled by that run, as before.
"""

import importlib
import sys
from pathlib import Path

# A local run's entry points and the executors its nodes run (LocalDagRunner
# imports each node's executor when the node starts).
ENTRY_MODULES = (
    "taxi_demand",  # sets TF_USE_LEGACY_KERAS before TensorFlow loads
    "runner_local",
    "pipeline.local_run",
    "pipeline.pipeline",
    "pipeline.staged_ingest",
    "tfx.orchestration.local.local_dag_runner",
    "tfx.components.statistics_gen.executor",
    "tfx.components.schema_gen.executor",
    "tfx.components.schema_gen.import_schema_gen.executor",
    "tfx.components.example_validator.executor",
    "tfx.components.transform.executor",
    "tfx.components.trainer.executor",
    "tfx.components.evaluator.executor",
    "tfx.components.pusher.executor",
    "tensorflow_transform.beam",
    "tensorflow_data_validation",
    "tensorflow_model_analysis",
    "taxi_demand.modeling.trainer",
    "taxi_demand.modeling.preprocessing",
    "taxi_demand.fleet",
    "taxi_demand.serving.predict",
)


def main() -> int:
  sys.dont_write_bytecode = False  # PYTHONDONTWRITEBYTECODE is for runs
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runner_local
  for name in ENTRY_MODULES:
    importlib.import_module(name)
  return 0


if __name__ == "__main__":
  sys.exit(main())
