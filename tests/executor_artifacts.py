"""Hand-built artifacts for the executor tests, as TFX's own executor tests build them.

Each test makes its input artifacts here (uris under tmp_path, the files
the upstream component would have written: an Examples split, TFDV
statistics of a small in-memory table, a schema), calls the component's
`Executor().Do(input_dict, output_dict, exec_properties)` through `run`,
and asserts on what the executor wrote to its output artifacts.
"""

import os
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

import taxi_demand  # noqa: F401  (must precede any TensorFlow import)
from taxi_demand import features
from taxi_demand.lineage import contract

DAY = contract.DAY_SPLIT


def artifact(cls, uri: Path, span: Optional[int] = None, artifact_id=None):
  """An artifact of type `cls` at `uri` (created), as a launcher hands it."""
  from tfx.types import artifact_utils  # noqa: PLC0415
  made = cls()
  made.uri = str(uri)
  os.makedirs(made.uri, exist_ok=True)
  if span is not None:
    made.span = span
  if artifact_id is not None:
    made.id = artifact_id
  if "split_names" in (made.PROPERTIES or {}):
    made.split_names = artifact_utils.encode_split_names([DAY])
  return made


def run(component, inputs: Mapping[str, list], outputs: Mapping[str, list],
        **exec_properties) -> None:
  """A decorated component's executor, called as the launcher calls it."""
  executor = component.EXECUTOR_SPEC.executor_class()
  executor.Do(dict(inputs), dict(outputs), exec_properties)


def examples(uri: Path, rows: Iterable[Mapping[str, float]], span: int):
  """An Examples artifact whose day split holds `rows` as ExampleGen writes
  them (GZIP TFRecords of tf.train.Example). A column a row leaves out is
  1: the executors under test read only some of them."""
  import tensorflow as tf  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  made = artifact(standard_artifacts.Examples, uri, span=span)
  split = Path(uri) / contract.SPLIT_FOLDER.format(split=DAY)
  split.mkdir(parents=True)
  with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as out:
    for row in rows:
      example = tf.train.Example()
      for column in features.RAW_COLUMNS:
        value = row.get(column, 1)
        feature = example.features.feature[column]
        if column in features.INT_COLUMNS:
          feature.int64_list.value.append(int(value))
        else:
          feature.float_list.value.append(float(value))
      out.write(example.SerializeToString())
  return made


def schema(uri: Path, text: Optional[str] = None):
  """A Schema artifact holding `text` (default: the curated schema)."""
  from tfx.types import standard_artifacts  # noqa: PLC0415
  made = artifact(standard_artifacts.Schema, uri)
  if text is None:
    text = (Path(__file__).resolve().parent.parent / "pipeline" / "schema" /
            "schema.pbtxt").read_text()
  (Path(uri) / "schema.pbtxt").write_text(text)
  return made


def statistics(uri: Path, columns: Dict[str, list], span: int,
               schema_text: Optional[str] = None):
  """An ExampleStatistics artifact: TFDV's statistics of `columns` (in
  memory, with the schema as StatisticsGen is given it) in the day split."""
  import pandas as pd  # noqa: PLC0415
  import tensorflow_data_validation as tfdv  # noqa: PLC0415
  from google.protobuf import text_format  # noqa: PLC0415
  from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  options = tfdv.StatsOptions()
  if schema_text is not None:
    options.schema = text_format.Parse(schema_text, schema_pb2.Schema())
  stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns),
                                                  stats_options=options)
  made = artifact(standard_artifacts.ExampleStatistics, uri, span=span)
  split = Path(uri) / contract.SPLIT_FOLDER.format(split=DAY)
  split.mkdir(parents=True)
  (split / contract.STATISTICS_FILE).write_bytes(stats.SerializeToString())
  return made
