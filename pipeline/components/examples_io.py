"""Reading an Examples artifact's split back as columns, for the gates and checks."""

from typing import Dict

import numpy as np

from pipeline.components import artifact_files
from taxi_demand import features
from taxi_demand.lineage import contract

# ExampleGen's one split is the run's day.
NEW_DAY_SPLIT = contract.DAY_SPLIT


def read_columns(examples_uri: str,
                 split: str = NEW_DAY_SPLIT) -> Dict[str, np.ndarray]:
  """The raw columns of one split of an Examples artifact."""
  import tensorflow as tf  # noqa: PLC0415
  files = artifact_files.split_files(
      examples_uri, contract.SPLIT_FOLDER.format(split=split))
  columns = {c: [] for c in features.RAW_COLUMNS}
  for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    feature = tf.train.Example.FromString(raw.numpy()).features.feature
    for c in features.RAW_COLUMNS:
      values = (feature[c].int64_list.value if c in features.INT_COLUMNS
                else feature[c].float_list.value)
      columns[c].append(values[0] if values else np.nan)
  return {c: np.asarray(v) for c, v in columns.items()}
