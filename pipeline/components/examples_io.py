"""Reading an Examples artifact's split back as columns, for the gates and checks."""

from typing import Dict

import numpy as np

from pipeline.components import artifact_files
from taxi_demand import features
from taxi_demand.lineage import contract

# ExampleGen's one split is the run's day.
NEW_DAY_SPLIT = contract.DAY_SPLIT
_BATCH = 4096


def read_columns(examples_uri: str,
                 split: str = NEW_DAY_SPLIT) -> Dict[str, np.ndarray]:
  """The raw columns of one split of an Examples artifact."""
  import tensorflow as tf  # noqa: PLC0415
  files = artifact_files.split_files(
      examples_uri, contract.SPLIT_FOLDER.format(split=split))
  columns = {c: [] for c in features.RAW_COLUMNS}
  # Records in batches: one eager step per record cost ~0.2 ms, 10 s of a
  # 500 m grid's day (58k examples).
  records = tf.data.TFRecordDataset(files, compression_type="GZIP")
  for batch in records.batch(_BATCH).as_numpy_iterator():
    for raw in batch:
      feature = tf.train.Example.FromString(raw).features.feature
      for c in features.RAW_COLUMNS:
        values = (feature[c].int64_list.value if c in features.INT_COLUMNS
                  else feature[c].float_list.value)
        columns[c].append(values[0] if values else np.nan)
  return {c: np.asarray(v) for c, v in columns.items()}
