"""One Beam pass over many days' ExampleGen and StatisticsGen work, adopted per day.

A new home's window is 28 days to ingest, and a day's two Beam pipelines
(ExampleGen's, StatisticsGen's) are mostly fixed start-up: about 7 s a day
for a few thousand rows. `stage` runs every missing day's query, writes its
examples and computes their statistics in ONE Beam pipeline of one branch
(a branch per day would pay the graph and the bundles per day again: as
slow as 28 pipelines), into a folder per day under the pipeline root, keyed
by what the day's examples are made of (span, the trips it reads, the
query: IngestFingerprint); TFDV computes the statistics sliced by day, with
StatisticsGen's options. It marks each day complete last. The per-day
partial runs still run, so ML Metadata, lineage, DataGate's verdicts and
kill/resume are what they always were; only their ExampleGen and StatisticsGen executors, finding their day staged and
complete, move the staged files into their output instead of running Beam
(`AdoptsStaged`). Everything TFX's executors record (split names, payload
and file format, span, the statistics' custom properties) is still set by
their own code: they run with a pipeline that drops what is applied to it
(`UnrunPipeline`). A day without its completion mark (a killed pass) is
computed again; a day whose staged files are gone is run by Beam as before.

It is local only (a Vertex node's outputs are gs:// URIs, and `staged_for`
finds nothing there), so it lives beside the local runner rather than among
the nodes, which reach their artifacts through artifact_files alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from taxi_demand.lineage import contract
from taxi_demand.lineage.records import IngestFingerprint

# Under the pipeline root, beside the nodes' folders.
STAGING_DIR = "_staged_ingest"
COMPLETE_FILE = "COMPLETE"
EXAMPLES_DIR, STATISTICS_DIR = "examples", "statistics"


def staging_root(pipeline_root: str) -> Path:
  return Path(pipeline_root) / STAGING_DIR


def day_dir(pipeline_root: str, span: int,
            fingerprint: IngestFingerprint) -> Path:
  """Where day `span`'s staged outputs live: one folder per span and
  fingerprint, so a day read from other trips or by another query is never
  adopted."""
  digest = hashlib.sha256(fingerprint.text().encode("utf-8")).hexdigest()
  return staging_root(pipeline_root) / f"{int(span)}-{digest[:16]}"


def is_complete(folder: Path) -> bool:
  return (folder / COMPLETE_FILE).is_file()


def _pipeline_root_of(output_uri: str) -> Path:
  """The pipeline root an executor's output lives under: LocalDagRunner
  puts a node's output at ROOT/NODE_ID/OUTPUT_KEY/EXECUTION_ID."""
  return Path(output_uri).parents[2]


def staged_for(output_uri: str, span: Optional[int],
               fingerprint: Optional[IngestFingerprint]) -> Optional[Path]:
  """The complete staged day an executor writing to `output_uri` may
  adopt, or None (nothing staged, or not for this span and fingerprint)."""
  if span is None or fingerprint is None or "://" in str(output_uri):
    return None
  folder = day_dir(str(_pipeline_root_of(output_uri)), span, fingerprint)
  return folder if is_complete(folder) else None


def _move_splits(source: Path, artifact_uri: str) -> bool:
  """Moves the split folders of `source` into the artifact (a rename each,
  on one file system). False if `source` holds none (taken already)."""
  if not source.is_dir():
    return False
  splits = sorted(p for p in source.iterdir() if p.is_dir())
  if not splits:
    return False
  os.makedirs(artifact_uri, exist_ok=True)
  for split in splits:
    os.replace(split, os.path.join(artifact_uri, split.name))
  shutil.rmtree(source, ignore_errors=True)
  return True


class UnrunPipeline:
  """Stands in for a Beam pipeline whose output is staged already: every
  transform applied to it is dropped, and nothing runs on exit. TFX's
  executor code around its pipeline (the artifact properties it sets) runs
  unchanged."""

  def __enter__(self) -> "UnrunPipeline":
    return self

  def __exit__(self, *exc_info) -> None:
    return None

  def __or__(self, transform) -> "UnrunPipeline":
    del transform  # applied to nothing
    return self


class AdoptsStaged:
  """A Beam executor mix-in: while `_adopted`, its Beam pipeline is an
  UnrunPipeline (the staged files are its output)."""

  _adopted = False

  def _make_beam_pipeline(self):
    if self._adopted:
      return UnrunPipeline()
    return super()._make_beam_pipeline()  # type: ignore[misc]

  def run_adopting(self, staged: Optional[Path], subdir: str,
                   artifact_uri: str, do, *args) -> None:
    """Runs `do(*args)` (the executor's own Do) without Beam when the
    staged `subdir` of `staged` moved into `artifact_uri`, else with it."""
    self._adopted = staged is not None and _move_splits(staged / subdir,
                                                        artifact_uri)
    try:
      do(*args)
    finally:
      self._adopted = False


def stage(pipeline_root: str, warehouse_path: str, input_config,
          days: Mapping[int, IngestFingerprint], schema_file: str,
          beam_args: Sequence[str] = (), one_query: bool = False
          ) -> List[int]:
  """Stages the examples and statistics of `days` in one Beam pipeline.

  Args:
    pipeline_root: the pipeline root whose runs will adopt them.
    warehouse_path: the DuckDB warehouse, opened read-only.
    input_config: DuckDBExampleGen's example_gen_pb2.Input, placeholders
      unfilled (input_config_for).
    days: span -> its ingest fingerprint, as the day's run will compute it.
    schema_file: the curated schema StatisticsGen is given.
    beam_args: the pipeline's Beam arguments.
    one_query: each run of consecutive days is read by one query over
      their range, split by day (the query's rows for a day must not
      depend on the range it is run for: sql.range_independent).

  Returns:
    The spans staged by this call: those not complete already, and not
    empty (a day without examples is left to its run).
  """
  todo = {span: fp for span, fp in sorted(days.items())
          if not is_complete(day_dir(pipeline_root, span, fp))}
  for span, fp in todo.items():  # half-written by a killed pass
    shutil.rmtree(day_dir(pipeline_root, span, fp), ignore_errors=True)
  if not todo:
    return []
  folders = {span: str(day_dir(pipeline_root, span, fp))
             for span, fp in todo.items()}
  _run_stage_pipeline(folders, warehouse_path, input_config, schema_file,
                      beam_args, one_query)
  staged = []
  for span, fp in todo.items():  # last: a day is complete only now
    folder = day_dir(pipeline_root, span, fp)
    if all((folder / sub / f"Split-{split.name}").is_dir()
           for sub in (EXAMPLES_DIR, STATISTICS_DIR)
           for split in input_config.splits):
      _mark_complete(folder, span, fp)
      staged.append(span)
    else:
      shutil.rmtree(folder, ignore_errors=True)
  return staged


# The schema metadata key that tells a staged record batch's day and split.
_DAY_KEY = b"taxi_demand.staged_day"


def consecutive(spans: Sequence[int]) -> List[List[int]]:
  """`spans` (ascending) in runs of consecutive days."""
  runs: List[List[int]] = []
  for span in spans:
    if runs and span == runs[-1][-1] + 1:
      runs[-1].append(span)
    else:
      runs.append([span])
  return runs


def _run_stage_pipeline(folders: Mapping[int, str], warehouse_path: str,
                        input_config, schema_file: str,
                        beam_args: Sequence[str],
                        one_query: bool = False) -> None:
  """The Beam pipeline: ONE branch for every day, so that its start-up and
  graph are paid once. Each day's query is encoded and written as
  DuckDBExampleGen writes it; the days' examples go through one TFDV
  GenerateStatistics (StatisticsGen's generators and options), sliced by
  day, and each day's slice is written as StatisticsGen writes it."""
  import apache_beam as beam  # noqa: PLC0415
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  from apache_beam.options.pipeline_options import PipelineOptions  # noqa: PLC0415
  from tfx.utils import io_utils  # noqa: PLC0415

  # StatisticsGen's options: the defaults and the schema input, through the
  # same JSON round trip its executor makes per split; then the slicing.
  options = tfdv.StatsOptions.from_json(tfdv.StatsOptions(
      schema=io_utils.SchemaReader().read(schema_file)).to_json())
  options.experimental_slice_functions = [_slice_by_day]
  # A query per day, or per run of consecutive days: the demand query's
  # fixed cost (its 7-day lookback, the cells, the joins) is most of a
  # day's, so 28 days read at once cost about half as much.
  groups = (consecutive(sorted(folders)) if one_query
            else [[span] for span in sorted(folders)])
  work = [(split.name, split.pattern,
           tuple((span, folders[span]) for span in group))
          for group in groups for split in input_config.splits]
  with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
    _ = (p
         | "Days" >> beam.Create(work, reshuffle=False)
         | "Examples" >> beam.FlatMap(_stage_examples, warehouse_path)
         | "GenerateStatistics" >> tfdv.GenerateStatistics(options)
         | "WriteStatistics" >> beam.FlatMap(_write_statistics))


def _stage_examples(item, warehouse_path: str):
  """The split of one day, or of a run of consecutive days read by one
  query: each day's examples written, then decoded into one record batch
  tagged with where its statistics go."""
  import tensorflow as tf  # noqa: PLC0415
  from tfx.components.example_gen import write_split  # noqa: PLC0415
  from tfx_bsl.coders import example_coder  # noqa: PLC0415

  split, pattern, days = item
  for (_, folder), records in zip(days, _day_records(
      pattern, [span for span, _ in days], warehouse_path)):
    if not records:
      continue
    examples_dir = Path(folder) / EXAMPLES_DIR / f"Split-{split}"
    examples_dir.mkdir(parents=True)
    # What TFX's WriteSplit writes: gzipped TFRecords of serialized examples.
    with tf.io.TFRecordWriter(
        str(examples_dir / f"{write_split.DEFAULT_FILE_NAME}-00000-of-00001"
            ".gz"), tf.io.TFRecordOptions(compression_type="GZIP")) as out:
      for record in records:
        out.write(record)
    # TFX's StatisticsGen reads them back through TFXIO, decoded the same
    # way.
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    target = str(Path(folder) / STATISTICS_DIR / f"Split-{split}")
    yield batch.replace_schema_metadata({_DAY_KEY: target.encode("utf-8")})


def _day_records(pattern: str, spans: Sequence[int],
                 warehouse_path: str) -> List[List[bytes]]:
  """Each of `spans`' serialized examples, in the query's order: one day's
  query as TFX's driver fills it, or one over the consecutive days' range,
  its rows split by the day of their slot."""
  import numpy as np  # noqa: PLC0415
  from tfx.components.example_gen import utils as example_gen_utils  # noqa: PLC0415
  from tfx_bsl.coders import example_coder  # noqa: PLC0415

  from pipeline.components.duckdb_example_gen import executor  # noqa: PLC0415
  from taxi_demand import features  # noqa: PLC0415
  from taxi_demand.data import sql  # noqa: PLC0415
  if len(spans) == 1:
    return [list(executor.read_examples(
        example_gen_utils.get_query_for_span(pattern, spans[0]),
        warehouse_path))]
  query = sql.substitute_range(pattern, spans[0] * features.SECONDS_PER_DAY,
                               (spans[-1] + 1) * features.SECONDS_PER_DAY)
  encoder = example_coder.RecordBatchToExamplesEncoder()
  by_day: Dict[int, List[bytes]] = {span: [] for span in spans}
  for batch in executor.query_record_batches(warehouse_path, query):
    slot = batch.column(features.SLOT_START).flatten().to_numpy()
    day = slot // features.SECONDS_PER_DAY
    for span in np.unique(day).tolist():
      by_day[span].extend(encoder.encode(batch.filter(day == span)))
  return [by_day[span] for span in spans]


def _slice_by_day(batch):
  """TFDV slice function: a staged batch is one slice, its day's."""
  target = (batch.schema.metadata or {}).get(_DAY_KEY)
  if target is not None:
    yield target.decode("utf-8"), batch.replace_schema_metadata(None)


def _write_statistics(statistics):
  """Each day's slice, as StatisticsGen writes a split's statistics: a
  DatasetFeatureStatisticsList of one unnamed dataset."""
  from tensorflow_data_validation import constants  # noqa: PLC0415
  from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: PLC0415
  for dataset in statistics.datasets:
    if dataset.name == constants.DEFAULT_SLICE_KEY:
      continue  # every day together
    day = statistics_pb2.DatasetFeatureStatisticsList()
    day.datasets.add().CopyFrom(dataset)
    day.datasets[0].ClearField("name")  # unsliced, it has none
    os.makedirs(dataset.name, exist_ok=True)
    Path(dataset.name, contract.STATISTICS_FILE).write_bytes(
        day.SerializeToString())
  return []


def _mark_complete(folder: Path, span: int,
                   fingerprint: IngestFingerprint) -> None:
  tmp = folder / (COMPLETE_FILE + ".tmp")
  tmp.write_text(json.dumps({"span": span, "fingerprint": fingerprint.text()}))
  os.replace(tmp, folder / COMPLETE_FILE)


def discard(pipeline_root: str,
            days: Iterable[tuple[int, IngestFingerprint]]) -> None:
  """Removes what is left staged of `days` (a day its run took from
  elsewhere), and the staging folder once empty."""
  for span, fp in days:
    shutil.rmtree(day_dir(pipeline_root, span, fp), ignore_errors=True)
  root = staging_root(pipeline_root)
  if root.is_dir() and not any(root.iterdir()):
    root.rmdir()
