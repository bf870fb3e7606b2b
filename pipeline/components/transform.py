"""Transform's executor, locally: TFX's own, writing its analyzer cache in one Beam step an entry."""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator

import apache_beam as beam
from tfx.components.transform import executor as tfx_transform

# The one shard TFT's default cache sink (beam.io.WriteToTFRecord of
# PREFIX, suffix .gz) writes for an entry, which its reader globs as
# PREFIX-*-of-* and decompresses by the suffix.
_SHARD = "-00000-of-00001.gz"


def write_entry(path: str, values: Iterable[bytes]) -> None:
  """Writes a cache entry's encoded values as one gzipped TFRecord file."""
  import tensorflow as tf  # noqa: PLC0415
  tf.io.gfile.makedirs(os.path.dirname(path))  # gs:// as well as local
  with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(
      compression_type="GZIP")) as out:
    for value in values:
      out.write(value)


class WriteCacheEntry(beam.PTransform):
  """An analyzer cache entry written as TFT's default sink writes it (one
  file, PREFIX-00000-of-00001.gz), in one Beam step.

  TFT writes every entry through beam.io.WriteToTFRecord: a sharded write
  of four Beam stages (initialise, write bundles, group, finalise). The
  cache holds two entries a day of the window (the vocabulary's counts,
  the mean's sums), so a new home's first Transform, which analyses and
  caches 28 days, ran 224 of its 644 stages to write them. Here an entry
  is one step that reads its values as a side input; the reader (TFT's
  default, ReadFromTFRecord) finds the same file.
  """

  def __init__(self, file_path_prefix: str):
    super().__init__()
    self._path = file_path_prefix + _SHARD

  def expand(self, values: beam.PCollection) -> beam.PCollection:
    return (values.pipeline
            | "Path" >> beam.Create([self._path], reshuffle=False)
            | "WriteFile" >> beam.Map(write_entry,
                                      beam.pvalue.AsList(values)))


class _Processor(tfx_transform.TransformProcessor):
  """TFX's Transform with the one-step cache sink (its own hook)."""

  @staticmethod
  def _GetCacheSink():
    return WriteCacheEntry


@contextlib.contextmanager
def _processed_by(processor: type) -> Iterator[None]:
  """TFX's Executor.Do makes its TransformProcessor by the module's name,
  with no hook to pass another: the name points at `processor` while Do
  runs (the local runner runs one node at a time)."""
  original = tfx_transform.TransformProcessor
  tfx_transform.TransformProcessor = processor
  try:
    yield
  finally:
    tfx_transform.TransformProcessor = original


class Executor(tfx_transform.Executor):
  """TFX's Transform executor; its analyzer cache entries are written in one
  Beam step each (WriteCacheEntry), files as TFT's own sink writes them."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    with _processed_by(_Processor):
      super().Do(input_dict, output_dict, exec_properties)
