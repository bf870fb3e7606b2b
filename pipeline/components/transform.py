"""Transform's executor, locally: TFX's own, its uncached days analysed in process, the window handed to TFT as one cached dataset, its cache read and written in one Beam step an entry."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import weakref
from typing import Any, Iterator, Mapping, NamedTuple, Optional

import apache_beam as beam
from tfx.components.transform import executor as tfx_transform
from tfx.components.transform import labels
from tfx.components.util import value_utils
from tfx.dsl.io import fileio
from tfx.utils import io_utils
from tfx.proto import example_gen_pb2

from pipeline.components import day_cache

_LOG = logging.getLogger(__name__)
# Where the run's input cache, completed, is assembled: TFX's temp folder
# for this execution, deleted when it succeeds.
_COMPLETED_CACHE = "completed_analyzer_cache"


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
    self._path = file_path_prefix + day_cache.SHARD

  def expand(self, values: beam.PCollection) -> beam.PCollection:
    return (values.pipeline
            | "Path" >> beam.Create([self._path], reshuffle=False)
            | "WriteFile" >> beam.Map(day_cache.write_entry,
                                      beam.pvalue.AsList(values)))


# Each pipeline's one Impulse that every cache entry is read from.
_ENTRY_ROOTS: "weakref.WeakKeyDictionary[beam.Pipeline, beam.PCollection]" = (
    weakref.WeakKeyDictionary())


class ReadCacheEntry(beam.PTransform):
  """An analyzer cache entry's values, read as TFT's default source reads
  them (PATTERN: PREFIX-*-of-*, decompressed by the suffix), in one step
  off the pipeline's one shared Impulse.

  TFT reads every entry of every day of the window through
  beam.io.ReadFromTFRecord, a splittable source of its own stages, so 28
  cached days cost 56 sources. Reading the entries (a few kilobytes each)
  in steps that hang off one Impulse lets Beam fuse them into one stage.
  """

  def __init__(self, file_pattern: str):
    super().__init__()
    self._pattern = file_pattern

  def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
    pipeline = pbegin.pipeline
    if pipeline not in _ENTRY_ROOTS:
      _ENTRY_ROOTS[pipeline] = pipeline | "CacheEntries" >> beam.Impulse()
    return _ENTRY_ROOTS[pipeline] | "Values" >> beam.FlatMap(
        _read_entry, self._pattern)


def _read_entry(unused_impulse: bytes, pattern: str):
  return day_cache.read_entry(pattern)


class _Processor(tfx_transform.TransformProcessor):
  """TFX's Transform with the one-step cache sink (its own hook), and its
  input cache completed in process before TFT reads it."""

  @staticmethod
  def _GetCacheSink():
    return WriteCacheEntry

  @staticmethod
  def _GetCacheSource():
    return ReadCacheEntry

  def Transform(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
                status_file: Optional[str] = None) -> None:
    completed = self._CompletedCache(inputs, outputs)
    if completed is None:
      super().Transform(inputs, outputs, status_file)
      return
    # TFT is handed the window as one dataset, cached: the merge of its
    # days' entries (day_cache.write_window), under a key of its own.
    # Its pattern names a folder that holds no examples, so a TFT that
    # found it uncached would find nothing to read, never another day's
    # examples.
    # Sorted: the mean's accumulators are merged in this order (float32).
    days = sorted(name.rstrip("/") for name in fileio.listdir(completed.path))
    window = os.path.join(completed.path, _WINDOW_PREFIX + _digest(days))
    pattern = os.path.join(window, "no-examples", "*")
    key = tfx_transform._Dataset(  # noqa: SLF001
        pattern, labels.FORMAT_TFRECORD, None, None).dataset_key.key
    day_cache.write_window(os.path.join(completed.path, key),
                           [os.path.join(completed.path, d) for d in days],
                           completed.entries)
    super().Transform({
        **inputs, labels.CACHE_INPUT_PATH_LABEL: completed.path,
        labels.ANALYZE_DATA_PATHS_LABEL: [pattern],
        labels.ANALYZE_PATHS_FILE_FORMATS_LABEL: [labels.FORMAT_TFRECORD],
    }, outputs, status_file)
    # TFX copied the window's entry into the updated cache, the entry of
    # the one dataset it was given; the next run reads the days'.
    output_cache = value_utils.GetSoleValue(
        outputs, labels.CACHE_OUTPUT_PATH_LABEL)
    if fileio.exists(os.path.join(output_cache, key)):
      fileio.rmtree(os.path.join(output_cache, key))
    for day in days:
      io_utils.copy_dir(os.path.join(completed.path, day),
                        os.path.join(output_cache, day))

  def _CompletedCache(self, inputs: Mapping[str, Any],
                      outputs: Mapping[str, Any]) -> Optional[_Completed]:
    """The run's input cache with every analysed day in it: the days it
    held, copied, and the others' entries computed in process
    (day_cache). None when TFT is to run as it would: no cache is kept,
    the examples are not plain tf.Examples, or the preprocessing_fn has
    an analyzer day_cache does not know."""
    get = value_utils.GetSoleValue
    input_cache = get(inputs, labels.CACHE_INPUT_PATH_LABEL, strict=False)
    data_format = get(inputs, labels.EXAMPLES_DATA_FORMAT_LABEL)
    if (get(outputs, labels.CACHE_OUTPUT_PATH_LABEL, strict=False) is None or
        data_format != example_gen_pb2.FORMAT_TF_EXAMPLE or
        get(inputs, labels.DATA_VIEW_LABEL, strict=False) is not None):
      return None
    schema = self._ReadMetadata(
        data_format, get(inputs, labels.SCHEMA_PATH_LABEL)).schema
    # TFX's own datasets and keys, as its Transform makes them.
    datasets = self._MakeDatasetList(
        value_utils.GetValues(inputs, labels.ANALYZE_DATA_PATHS_LABEL),
        value_utils.GetValues(inputs, labels.ANALYZE_PATHS_FILE_FORMATS_LABEL),
        data_format, None, can_process_jointly=False)
    for dataset in datasets:
      dataset.tfxio = self._CreateTFXIO(dataset, schema)
    typespecs = datasets[0].tfxio.TensorAdapter().OriginalTypeSpecs()
    preprocessing_fn = inputs[labels.PREPROCESSING_FN]
    force_tf_compat_v1 = get(inputs, labels.FORCE_TF_COMPAT_V1_LABEL)
    entries = day_cache.known_entries(preprocessing_fn, typespecs,
                                      force_tf_compat_v1)
    if entries is None:
      return None
    uncached = [d for d in datasets if not day_cache.holds(
        input_cache, d.dataset_key.key, entries)]
    started = time.monotonic()
    import tensorflow_transform as tft  # noqa: PLC0415
    columns = tft.get_analyze_input_columns(
        preprocessing_fn, typespecs, force_tf_compat_v1=force_tf_compat_v1)
    reader = day_cache.DayReader(schema, datasets[0].tfxio, columns)
    completed = os.path.join(get(outputs, labels.TEMP_OUTPUT_LABEL),
                             _COMPLETED_CACHE)
    for dataset in datasets:
      day_dir = os.path.join(completed, dataset.dataset_key.key)
      if dataset in uncached:
        day_cache.write_day(day_dir, dataset.file_pattern, reader, entries)
      else:
        self._CopyCache(os.path.join(input_cache, dataset.dataset_key.key),
                        day_dir)
    _LOG.info("Transform: %d of %d days' analyzer cache computed in process "
              "(%.1f s)", len(uncached), len(datasets),
              time.monotonic() - started)
    return _Completed(completed, entries)


class _Completed(NamedTuple):
  """A run's completed input cache: its folder (a folder a day), and the
  analyzers day_cache computes each entry with."""
  path: str
  entries: Mapping[bytes, day_cache.Analyzer]


# The window's one dataset: its (example-less) folder's name.
_WINDOW_PREFIX = "window-"


def _digest(days) -> str:
  """Which days (their cache folders' names) a window is made of."""
  return hashlib.sha256("\n".join(sorted(days)).encode()).hexdigest()[:16]


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
  """TFX's Transform executor. The window's days that no input cache holds
  are analysed in process (day_cache) before TFT runs, and TFT is handed
  the window as one dataset, cached: its days' entries merged in process,
  so its Beam graph does not grow with the window. The updated cache holds
  a folder a day, as TFT's would. Analyzer cache entries are read off one
  Impulse (ReadCacheEntry) and written in one Beam step each
  (WriteCacheEntry), files as TFT's own sink writes them. Vertex runs
  TFX's own executor."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    with _processed_by(_Processor):
      super().Do(input_dict, output_dict, exec_properties)
