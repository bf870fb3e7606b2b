"""The window's uncached days' analyzer cache, computed in process as TFT's per-day Beam analysis writes it, and the days' entries merged into the window's."""

from __future__ import annotations

import collections
import logging
import os
from typing import (Callable, Dict, Iterable, List, Mapping, NamedTuple,
                    Optional, Tuple)

# A new home's first Transform analyses the 28 days of its window, each
# day a branch of TFT's Beam graph: about 23 stages a day, whose building,
# translating and running cost about 1.3 s a day however small the day
# (the data itself, a few thousand rows, takes milliseconds). Here each
# uncached day's cache entries are computed in process, with TFT's own
# batch reductions, combiner and cache coders, under TFT's own keys, and
# written where TFT reads its input cache. TFT is then handed the window
# as one dataset whose entries are the days' merged here (write_window):
# it reads two entries and applies, however long the window.

_LOG = logging.getLogger(__name__)

# A day is read as one batch: its entries are then TFT's own for a day
# read as one batch, bit for bit (the tests check it). TFT's reader batches by Beam's BatchElements, sized by time as it
# reads (1, 2, 4, ... up to 1000 rows), so TFT's own mean accumulator of a
# day is itself a sum of float32 batch means that varies by a float32
# rounding from run to run; the vocabulary's counts never vary.

Inputs = Dict[str, object]  # feature name -> tf.Tensor / SparseTensor / ...

# The one shard TFT's default cache sink (beam.io.WriteToTFRecord of
# PREFIX, suffix .gz) writes for an entry, which its reader globs as
# PREFIX-*-of-* and decompresses by the suffix.
SHARD = "-00000-of-00001.gz"
# Its dataset metadata, written by an uncompressed WriteToTFRecord.
_METADATA = "METADATA-00000-of-00001"


def write_entry(path: str, values: Iterable[bytes]) -> None:
  """Writes a cache entry's encoded values as one gzipped TFRecord file."""
  import tensorflow as tf  # noqa: PLC0415
  tf.io.gfile.makedirs(os.path.dirname(path))  # gs:// as well as local
  with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(
      compression_type="GZIP")) as out:
    for value in values:
      out.write(value)


class Analyzer(NamedTuple):
  """An analyzer this module computes without Beam.

  Attributes:
    probe: a preprocessing_fn that calls only this analyzer, as the real
      one calls it: its one cache entry key must be among the real one's.
    entry: a day's batches of input tensors -> the entry's encoded values.
    merge: several days' entries (encoded values each) -> the one entry
      of those days taken together, as TFT's merge of them would make it.
  """
  probe: Callable[[Inputs], Inputs]
  entry: Callable[[Iterable[Inputs]], List[bytes]]
  merge: Callable[[List[List[bytes]]], List[bytes]]


def _vocabulary_probe(inputs: Inputs) -> Inputs:
  import tensorflow_transform as tft  # noqa: PLC0415
  from taxi_demand import features  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  return {"cell": tft.compute_and_apply_vocabulary(
      preprocessing.cell_token(inputs),
      vocab_filename=features.CELL_VOCABULARY)}


def _vocabulary_entry(batches: Iterable[Inputs]) -> List[bytes]:
  """The vocabulary's (token, count) pairs, as TFT's VocabularyAccumulate
  (frequency order, no weights) counts and caches them: every token of
  every batch after its text-file filter (empty strings, newlines)."""
  from tensorflow_transform import analyzers  # noqa: PLC0415
  from tensorflow_transform import tf_utils  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  counts: Dict[bytes, int] = collections.Counter()
  for inputs in batches:
    tokens = preprocessing.cell_token(inputs)
    kept = tf_utils.reduce_batch_weighted_counts(
        tokens, filter_regex=analyzers.get_vocab_newline_characters_regex(
            tokens.dtype, analyzers.DEFAULT_VOCABULARY_FILE_FORMAT)).unique_x
    counts.update(kept.numpy().tolist())
  coder = _vocabulary_coder()
  return [coder.encode_cache(pair) for pair in counts.items()]


def _vocabulary_coder():
  import tensorflow as tf  # noqa: PLC0415
  from tensorflow_transform import analyzer_nodes  # noqa: PLC0415
  return analyzer_nodes.VocabularyAccumulate(
      vocab_ordering_type=None, input_dtype=tf.string.name).cache_coder


def _vocabulary_merge(days: List[List[bytes]]) -> List[bytes]:
  """The days' (token, count) pairs summed by token, as TFT's
  VocabularyMerge sums the datasets' before it orders them (integers:
  the same whichever way they are grouped)."""
  coder = _vocabulary_coder()
  counts: Dict[bytes, int] = collections.Counter()
  for values in days:
    for value in values:
      token, count = coder.decode_cache(value)
      counts[token] += int(count)
  return [coder.encode_cache(pair) for pair in counts.items()]


def _mean_probe(inputs: Inputs) -> Inputs:
  import tensorflow_transform as tft  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  return {"city": tft.mean(preprocessing.city_now(inputs))}


def _mean_entry(batches: Iterable[Inputs]) -> List[bytes]:
  """The mean's accumulator, as TFT's CacheableCombineAccumulate makes it:
  each batch's float32 count, mean and variance (its graph's reduction),
  added by TFT's WeightedMeanAndVarCombiner, encoded by its coder."""
  import numpy as np  # noqa: PLC0415
  import tensorflow as tf  # noqa: PLC0415
  from tensorflow_transform import tf_utils  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  combiner = _mean_combiner()
  accumulator = combiner.create_accumulator()
  for inputs in batches:
    x = tf.cast(preprocessing.city_now(inputs), tf.float32)
    count, mean, variance = tf_utils.reduce_batch_count_mean_and_var(
        x, reduce_instance_dims=True)
    accumulator = combiner.add_input(accumulator, (
        count.numpy(), mean.numpy(), variance.numpy(), np.float32(0)))
  # Beam merges the one bundle's accumulator alone, then TFT caches it.
  accumulator = combiner.merge_accumulators([accumulator])
  return [combiner.accumulator_coder.encode_cache(accumulator)]


def _mean_combiner():
  import numpy as np  # noqa: PLC0415
  from tensorflow_transform import analyzers  # noqa: PLC0415
  return analyzers.WeightedMeanAndVarCombiner(np.float32, output_shape=())


def _mean_merge(days: List[List[bytes]]) -> List[bytes]:
  """The days' accumulators merged by TFT's combiner, in the days' order
  (float32 sums: TFT's own merge of the days, in whatever order Beam
  hands them over, differs from this by a rounding)."""
  combiner = _mean_combiner()
  coder = combiner.accumulator_coder
  return [coder.encode_cache(combiner.merge_accumulators(
      [coder.decode_cache(value) for values in days for value in values]))]


# preprocessing_fn's analyzers, in its order (TFT's cache indexes entries
# in the order its graph lists them).
ANALYZERS = (Analyzer(_vocabulary_probe, _vocabulary_entry, _vocabulary_merge),
             Analyzer(_mean_probe, _mean_entry, _mean_merge))


def _entry_keys(preprocessing_fn, typespecs, force_tf_compat_v1) -> set:
  from tensorflow_transform.beam import analysis_graph_builder  # noqa: PLC0415
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  return analysis_graph_builder.get_analysis_cache_entry_keys(
      preprocessing_fn, typespecs, [analyzer_cache.DatasetKey("probe")],
      force_tf_compat_v1)


def known_entries(preprocessing_fn, typespecs, force_tf_compat_v1: bool,
                  analyzers: Iterable[Analyzer] = ANALYZERS
                  ) -> Optional[Dict[bytes, Analyzer]]:
  """Each cache entry key of `preprocessing_fn` -> the analyzer that
  computes it here, or None when any key is not one of `analyzers`'
  (an analyzer this module does not know, or one fed or configured
  otherwise): then TFT analyses every uncached day itself.

  A key is TFT's hash of the graph path that feeds the analyzer and of
  the analyzer's settings (not of names), so equal keys mean the probe
  computes what the real graph computes.
  """
  wanted = _entry_keys(preprocessing_fn, typespecs, force_tf_compat_v1)
  known = {}
  for analyzer in analyzers:
    known.update(dict.fromkeys(
        _entry_keys(analyzer.probe, typespecs, force_tf_compat_v1), analyzer))
  if set(known) != wanted:
    _LOG.warning("Transform: analyzers not all known to the in-process "
                 "analysis (%d of %d), TFT analyses the uncached days",
                 len(set(known) & wanted), len(wanted))
    return None
  return known


def read_entry(pattern: str) -> List[bytes]:
  """A cache entry's encoded values (`pattern`: PREFIX-*-of-*)."""
  return _records(pattern)


def _records(file_pattern: str) -> List[bytes]:
  """The serialized examples of a day's files, as Beam's ReadFromTFRecord
  reads them (compression by the file's suffix), but without tf.data,
  whose set-up per dataset cost more than a day's data."""
  import tensorflow as tf  # noqa: PLC0415
  records = []
  for path in sorted(tf.io.gfile.glob(file_pattern)):
    options = tf.io.TFRecordOptions(
        compression_type="GZIP" if path.endswith(".gz") else "")
    records.extend(tf.compat.v1.io.tf_record_iterator(path, options))
  return records


class DayReader:
  """Reads a day's examples as TFX's Beam source of a projected TFXIO
  reads them for TFT (tfx_bsl's ExamplesToRecordBatchDecoder of the
  projected schema), in one batch, into the tensors TFT's graph is fed.

  Args:
    schema: the examples' TFMD schema.
    tfxio: TFX's TFXIO of any day (the days share their schema).
    columns: the analysed columns (tft.get_analyze_input_columns).
  """

  def __init__(self, schema, tfxio, columns: List[str]):
    from tfx_bsl.coders import example_coder  # noqa: PLC0415
    from tfx_bsl.tfxio import tensor_representation_util  # noqa: PLC0415
    projected = (
        tensor_representation_util.ProjectTensorRepresentationsInSchema(
            schema, columns))
    self._decoder = example_coder.ExamplesToRecordBatchDecoder(
        projected.SerializeToString())
    self._adapter = tfxio.Project(columns).TensorAdapter()

  def batches(self, file_pattern: str) -> Tuple[List[Inputs], int]:
    """A day's batches (one; none for an empty day) and their Arrow size
    (TFT's dataset metadata)."""
    records = _records(file_pattern)
    if not records:
      return [], 0
    record_batch = self._decoder.DecodeBatch(records)
    return ([self._adapter.ToBatchTensors(record_batch)],
            record_batch.nbytes)


def write_day(day_dir: str, file_pattern: str, reader: DayReader,
              entries: Mapping[bytes, Analyzer]) -> None:
  """Computes one day's cache entries (`entries`: key -> its analyzer) from
  its examples (`file_pattern`, read by `reader`) and writes them in
  `day_dir` as TFT's WriteAnalysisCacheToFS does: an entry a file, the
  dataset's metadata, and the MANIFEST of key -> file index."""
  import tensorflow as tf  # noqa: PLC0415
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  batches, size = reader.batches(file_pattern)
  manifest = {}
  for index, (key, analyzer) in enumerate(entries.items()):
    write_entry(os.path.join(day_dir, str(index)) + SHARD,
                analyzer.entry(batches))
    manifest[key] = index
  with tf.io.TFRecordWriter(os.path.join(day_dir, _METADATA)) as out:
    out.write(analyzer_cache.DatasetCacheMetadata(size).encode())
  with analyzer_cache._ManifestFile(day_dir) as manifest_file:  # noqa: SLF001
    manifest_file.write(manifest)


def write_window(window_dir: str, day_dirs: List[str],
                 entries: Mapping[bytes, Analyzer]) -> None:
  """Writes in `window_dir`, as `write_day` writes a day, the cache of the
  days cached in `day_dirs` taken together: each entry the merge of the
  days' (`Analyzer.merge`), the metadata their total size.

  TFT reads, decodes and merges each day's entries in a Beam branch of
  its own: at 56 days, 1,100 transforms and 140 stages, whose building
  and running made Transform grow by about 0.15 s a day of the window.
  Handed one dataset, cached, it reads two entries.
  """
  import tensorflow as tf  # noqa: PLC0415
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  manifests = [analyzer_cache._ManifestFile(day).read()  # noqa: SLF001
               for day in day_dirs]
  manifest = {}
  for index, (key, analyzer) in enumerate(entries.items()):
    write_entry(os.path.join(window_dir, str(index)) + SHARD, analyzer.merge(
        [read_entry(os.path.join(day, str(found[key])) + "-*-of-*")
         for day, found in zip(day_dirs, manifests)]))
    manifest[key] = index
  size = 0
  for day in day_dirs:
    [record] = _records(os.path.join(day, _METADATA))
    size += analyzer_cache.DatasetCacheMetadata.decode(record).dataset_size
  with tf.io.TFRecordWriter(os.path.join(window_dir, _METADATA)) as out:
    out.write(analyzer_cache.DatasetCacheMetadata(size).encode())
  with analyzer_cache._ManifestFile(window_dir) as manifest_file:  # noqa: SLF001
    manifest_file.write(manifest)


def holds(cache_dir: Optional[str], day_key: str,
          entries: Mapping[bytes, Analyzer]) -> bool:
  """Whether `cache_dir` (None: no cache) holds every entry of a day."""
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  if cache_dir is None:
    return False
  manifest = analyzer_cache._ManifestFile(  # noqa: SLF001
      os.path.join(cache_dir, day_key)).read()
  return set(entries) <= set(manifest)
