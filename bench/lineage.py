"""Times the metadata commands on a synthetic ML Metadata store of N runs.

Writes, with ml_metadata only (no pipeline, no TensorFlow), the records a
daily run leaves: the pipeline, pipeline_run and node contexts, thirteen
node executions with TFX's input/output event keys and properties, a pushed
model per run and a next-day result per day. Then runs each command as a
user would (a fresh `python -m taxi_demand` process) and prints JSON:

  .venv/bin/python bench/lineage.py [--runs 100] [--repeat 3]

Each command must answer in under 2 s (`ok`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from taxi_demand.lineage import record  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

PIPELINE = "taxi_demand"
FIRST_SPAN = 19700
LIMIT_S = 2.0


class Writer:
  """put_* helpers that mimic the layout TFX's LocalDagRunner writes."""

  def __init__(self, path: Path):
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    self.store = metadata_store.MetadataStore(config)
    self._types: Dict[tuple, int] = {}
    self._contexts: Dict[tuple, pb.Context] = {}

  def _type(self, kind: str, name: str) -> int:
    if (kind, name) not in self._types:
      put = {"artifact": (self.store.put_artifact_type, pb.ArtifactType),
             "execution": (self.store.put_execution_type, pb.ExecutionType),
             "context": (self.store.put_context_type, pb.ContextType)}[kind]
      self._types[(kind, name)] = put[0](put[1](name=name))
    return self._types[(kind, name)]

  def context(self, type_name: str, name: str) -> pb.Context:
    key = (type_name, name)
    if key not in self._contexts:
      ctx = pb.Context(type_id=self._type("context", type_name), name=name)
      ctx.id = self.store.put_contexts([ctx])[0]
      self._contexts[key] = ctx
    return self._contexts[key]

  def artifact(self, type_name: str, uri: str, **props) -> pb.Artifact:
    art = pb.Artifact(type_id=self._type("artifact", type_name), uri=uri,
                      state=pb.Artifact.LIVE)
    _fill(art.custom_properties, props)
    return art

  def execute(self, run_id: str, node: str, state: int,
              props: Optional[dict] = None,
              inputs: Optional[Dict[str, List[pb.Artifact]]] = None,
              outputs: Optional[Dict[str, List[pb.Artifact]]] = None
              ) -> Dict[str, List[pb.Artifact]]:
    """One node execution; returns its outputs with their new ids."""
    ex = pb.Execution(type_id=self._type("execution", f"tfx.{node}"),
                      last_known_state=state)
    _fill(ex.custom_properties, props or {})
    pairs = []
    for kind, arts in ((pb.Event.INPUT, inputs or {}),
                       (pb.Event.OUTPUT, outputs or {})):
      for key, items in arts.items():
        for i, art in enumerate(items):
          event = pb.Event(type=kind)
          event.path.steps.add(key=key)
          event.path.steps.add(index=i)
          pairs.append((art, event))
    contexts = [self.context("pipeline", PIPELINE),
                self.context("pipeline_run", run_id),
                self.context("node", f"{PIPELINE}.{node}")]
    _, ids, _ = self.store.put_execution(ex, pairs, contexts)
    flat = [a for items in (outputs or {}).values() for a in items]
    for art, new_id in zip(flat, ids[len(ids) - len(flat):]):
      art.id = new_id
    return outputs or {}


def _fill(target, props: dict) -> None:
  for key, value in props.items():
    if isinstance(value, bool) or isinstance(value, int):
      target[key].int_value = int(value)
    elif isinstance(value, float):
      target[key].double_value = value
    else:
      target[key].string_value = str(value)


def write_run(w: Writer, i: int, root: str, schema: pb.Artifact,
              base: Optional[pb.Artifact]) -> dict:
  """The records of one daily run for span FIRST_SPAN + i."""
  span, run_id = FIRST_SPAN + i, f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}"
  done, cached = pb.Execution.COMPLETE, pb.Execution.CACHED
  uri = lambda node, key: f"{root}/{node}/{key}/{i}"  # noqa: E731
  w.execute(run_id, "CuratedSchema", cached if i else done,
            outputs={"schema": [schema]})
  examples = w.execute(run_id, "ExampleGen", done, {"span": span},
                       outputs={"examples": [w.artifact(
                           "Examples", uri("ExampleGen", "examples"),
                           span=span)]})["examples"]
  stats = w.execute(run_id, "StatisticsGen", done, {},
                    {"examples": examples},
                    {"statistics": [w.artifact("ExampleStatistics", uri(
                        "StatisticsGen", "statistics"), span=span)]}
                    )["statistics"]
  w.execute(run_id, "SchemaGen", done, {}, {"statistics": stats},
            {"schema": [w.artifact("Schema", uri("SchemaGen", "schema"))]})
  anomalies = w.execute(run_id, "ExampleValidator", done, {},
                        {"statistics": stats, "schema": [schema]},
                        {"anomalies": [w.artifact("ExampleAnomalies", uri(
                            "ExampleValidator", "anomalies"), span=span)]}
                        )["anomalies"]
  w.execute(run_id, "DataGate", done, {},
            {"statistics": stats, "schema": [schema], "anomalies": anomalies},
            {"report": [w.artifact("ExampleAnomalies", uri("DataGate",
                                                           "report"),
                                   span=span, anomaly_count=0,
                                   train_examples=25872 + i,
                                   eval_examples=3696, drift_checked=1)]})
  transform = w.execute(run_id, "Transform", done, {},
                        {"examples": examples, "schema": [schema]},
                        {"transformed_examples": [w.artifact(
                            "Examples", uri("Transform", "transformed"))],
                         "transform_graph": [w.artifact(
                             "TransformGraph", uri("Transform", "graph"))]})
  w.execute(run_id, "LatestBlessedModel", done)
  params = {"span": span, "train_days": 28 if i % 10 else 14,
            "train_steps": 2000, "slot_minutes": 30,
            "spatial_unit": "community_area", "grid_metres": 1000,
            "source_table": "trips", "naive_margin": 0.1,
            "change_tolerance": 0.0, "cell_margin": 0.25,
            "code_version": f"0.1.{i // 25}", "hparams": {}}
  model = w.execute(run_id, "Trainer", done,
                    {"custom_config": json.dumps(params)},
                    {"examples": transform["transformed_examples"],
                     "transform_graph": transform["transform_graph"],
                     "schema": [schema],
                     **({"base_model": [base]} if base is not None else {})},
                    {"model": [w.artifact("Model", uri("Trainer", "model"))]}
                    )["model"]
  evaluation = w.execute(run_id, "Evaluator", done, {},
                         {"examples": examples, "model": model},
                         {"evaluation": [w.artifact(
                             "ModelEvaluation", uri("Evaluator", "eval"))],
                          "blessing": [w.artifact(
                              "ModelBlessing", uri("Evaluator", "blessing"),
                              blessed=1)]})
  mae = 2.5 + 0.01 * i
  blessing = w.execute(run_id, "ForecastGate", done, {},
                       {"model": model, "examples": examples,
                        "evaluation": evaluation["evaluation"],
                        "evaluator_blessing": evaluation["blessing"]},
                       {"blessing": [w.artifact(
                           "ModelBlessing", uri("ForecastGate", "blessing"),
                           blessed=1, span=span, model_mae=mae,
                           model_rmse=2 * mae, seasonal_naive_mae=3.5,
                           current_model_id=model[0].id)]})["blessing"]
  version = str(1_700_000_000 + i)
  w.execute(run_id, "Pusher", done, {},
            {"model": model, "model_blessing": blessing},
            {"pushed_model": [w.artifact(
                "PushedModel", uri("Pusher", "pushed_model"), pushed=1,
                pushed_version=version)]})
  if base is not None:  # yesterday's model, scored on today
    result = w.artifact(record.NEXT_DAY_RESULT, uri("NextDay", "result"), span=span,
                        date=f"span {span}", model_version=str(
                            1_700_000_000 + i - 1), mae=mae * 1.1,
                        rmse=2 * mae, seasonal_naive_mae=3.5, alert=0,
                        reason="ok")
    w.execute(run_id, "NextDayValidator", done, {}, {"model": [base]},
              {"result": [result]})
  return {"model": model[0], "version": version}


def build(home: Path, runs: int) -> List[str]:
  """A home whose metadata holds `runs` runs; returns the pushed versions."""
  home.mkdir(parents=True, exist_ok=True)
  w = Writer(home / "metadata.sqlite")
  schema = w.artifact("Schema", f"{home}/pipeline/CuratedSchema/schema/0")
  base, versions = None, []
  for i in range(runs):
    out = write_run(w, i, f"{home}/pipeline", schema, base)
    base = out["model"]
    versions.append(out["version"])
  for v in versions[-5:]:  # the registry keeps the newest five folders
    (home / "models" / v).mkdir(parents=True, exist_ok=True)
  (home / "models" / "CURRENT").write_text(versions[-1] + "\n")
  return versions


def time_command(home: Path, argv: List[str], repeat: int) -> dict:
  best, rc = None, None
  for _ in range(repeat):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "taxi_demand", "--home",
                           str(home), *argv], capture_output=True, text=True,
                          check=False)
    took = time.monotonic() - started
    best = took if best is None else min(best, took)
    rc = proc.returncode
  return {"argv": " ".join(argv), "seconds": round(best, 3), "exit_code": rc}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=100)
  parser.add_argument("--repeat", type=int, default=3,
                      help="runs per command; the best is reported")
  parser.add_argument("--json", action="store_true",
                      help="accepted for `make bench`; the output is JSON")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    home = Path(tmp) / "home"
    started = time.monotonic()
    versions = build(home, args.runs)
    build_s = time.monotonic() - started
    first, last = (f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}"
                   for i in (0, args.runs - 1))
    commands = {
        "runs": ["runs", "--json"],
        "runs_last_10": ["runs", "--last", "10", "--json"],
        "show": ["show", "last", "--json"],
        "diff": ["diff", first, last, "--json"],
        "lineage_serving": ["lineage", "serving", "--json"],
        "lineage_span": ["lineage", "--span", "2023-12-10", "--json"],
        "rollback": ["rollback", "--to", versions[-3], "--json"],
    }
    results = {name: time_command(home, cmd, 1 if name == "rollback"
                                  else args.repeat)
               for name, cmd in commands.items()}
    size = (home / "metadata.sqlite").stat().st_size
  print(json.dumps({
      "runs": args.runs, "store_bytes": size,
      "build_store_s": round(build_s, 2), "limit_s": LIMIT_S,
      "commands": results,
      "ok": all(r["seconds"] < LIMIT_S and r["exit_code"] == 0
                for r in results.values())}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
