"""The local Transform analyses uncached days in process, as TFT would, and
reads and writes its analyzer cache in one Beam step an entry, files that
TFT's own reader reads as it reads TFT's own, with the same content and
the same transform graph as TFX's Transform."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Dict, List

import pytest

import executor_artifacts as art
from taxi_demand import features as F
from taxi_demand.lineage import contract


# The window's one dataset, as the local Transform names it for TFT.
_WINDOW = "window-"


def _write(sink, values: List[bytes], prefix: str) -> None:
  import apache_beam as beam  # noqa: PLC0415
  with beam.Pipeline() as p:
    _ = p | beam.Create(values, reshuffle=False) | sink(prefix)


def _read(prefix: str) -> List[bytes]:
  """An entry's values, sorted, found as TFT's reader finds them."""
  import tensorflow as tf  # noqa: PLC0415
  return sorted(r.numpy() for r in tf.data.TFRecordDataset(
      tf.io.gfile.glob(f"{prefix}-*-of-*"), "GZIP"))


@pytest.mark.parametrize("values", [[b"\x00a", b"bc", b"d" * 300], []])
def test_a_cache_entry_written_in_one_step_reads_back_as_tfts_own(tmp_path,
                                                                   values):
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  from pipeline.components import transform  # noqa: PLC0415
  ours, tfts = tmp_path / "ours" / "0", tmp_path / "tft" / "0"
  _write(transform.WriteCacheEntry, values, str(ours))
  _write(analyzer_cache._WriteToTFRecordGzip, values, str(tfts))  # noqa: SLF001
  assert os.listdir(ours.parent) == os.listdir(tfts.parent)
  assert _read(str(ours)) == _read(str(tfts)) == sorted(values)


def test_cache_entries_read_off_one_impulse_are_tfts_own(tmp_path):
  import apache_beam as beam  # noqa: PLC0415
  from apache_beam.testing import util  # noqa: PLC0415
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  from pipeline.components import transform  # noqa: PLC0415
  entries = {"0": [b"\x00a", b"bc"], "1": [b"d" * 300], "2": []}
  for name, values in entries.items():
    _write(analyzer_cache._WriteToTFRecordGzip, values,  # noqa: SLF001
           str(tmp_path / name))
  with beam.Pipeline() as p:
    for name, values in entries.items():
      pattern = f"{tmp_path / name}-*-of-*"
      ours = p | f"Ours{name}" >> transform.ReadCacheEntry(pattern)
      tfts = p | f"Tft{name}" >> beam.io.ReadFromTFRecord(pattern)
      util.assert_that(ours, util.equal_to(values), label=f"Ours{name}Eq")
      util.assert_that(tfts, util.equal_to(values), label=f"Tft{name}Eq")


def test_the_local_transform_writes_its_cache_with_the_one_step_sink():
  from pipeline.components import transform  # noqa: PLC0415
  from pipeline.pipeline import FACTORIES, VERTEX_FACTORIES  # noqa: PLC0415
  from pipeline.pipeline import create_pipeline  # noqa: PLC0415
  from pipeline.config import PipelineConfig  # noqa: PLC0415
  from tfx.components.transform import executor as tfx_transform  # noqa: PLC0415
  config = PipelineConfig(pipeline_name="p", pipeline_root="/tmp/p",
                          span=19760, warehouse_path="/tmp/w.duckdb",
                          metadata_path="/tmp/m.sqlite")
  [node] = [c for c in create_pipeline(config).components
            if c.id == contract.TRANSFORM]
  assert node.executor_spec.executor_class is transform.Executor
  assert VERTEX_FACTORIES[contract.TRANSFORM] is not FACTORIES[
      contract.TRANSFORM]
  with transform._processed_by(transform._Processor):  # noqa: SLF001
    assert (tfx_transform.TransformProcessor._GetCacheSink()  # noqa: SLF001
            is transform.WriteCacheEntry)
    assert (tfx_transform.TransformProcessor._GetCacheSource()  # noqa: SLF001
            is transform.ReadCacheEntry)
  assert tfx_transform.TransformProcessor._GetCacheSink() is None  # noqa: SLF001


# ---- against TFX's own Transform, on three small days ---------------------

def _rows(day: int) -> List[Dict[str, float]]:
  """A day's few rows: each day one Beam batch, so that the mean's float32
  sums (which TFT adds by batch, and Beam sizes batches by time) are the
  same whichever executor adds them."""
  k = day % 10
  return [{F.CELL: 1 + (i * (k + 3)) % 9, F.CITY_3H: 100 + 7 * i + k,
           F.HOUR: i % 24, F.DAY_OF_WEEK: 1 + k % 7}
          for i in range(40 + k)]


def _transform(executor_class, root: Path, examples) -> Path:
  from tfx.proto import transform_pb2  # noqa: PLC0415
  from tfx.types import standard_artifacts  # noqa: PLC0415
  from google.protobuf import json_format  # noqa: PLC0415
  from pipeline.pipeline import PREPROCESSING_FN  # noqa: PLC0415
  graph = art.artifact(standard_artifacts.TransformGraph, root / "graph")
  cache = art.artifact(standard_artifacts.TransformCache, root / "cache")
  executor_class().Do(
      {contract.EXAMPLES: examples,
       contract.SCHEMA: [art.schema(root / "schema")]},
      {"transform_graph": [graph], "updated_analyzer_cache": [cache]},
      {"preprocessing_fn": PREPROCESSING_FN, "disable_statistics": 1,
       "force_tf_compat_v1": 0,
       "splits_config": json_format.MessageToJson(transform_pb2.SplitsConfig(
           analyze=[contract.DAY_SPLIT]))})
  return root


def _cache(root: Path) -> Dict[str, Dict[str, List[bytes]]]:
  """{dataset key: {cache entry key: its values, sorted}} of the
  TransformCache artifact at `root`."""
  return _cache_of(root / "cache")


def _cache_of(folder: Path) -> Dict[str, Dict[str, List[bytes]]]:
  found = {}
  for dataset in sorted(folder.iterdir()):
    manifest = pickle.loads((dataset / "MANIFEST").read_bytes())
    found[dataset.name] = {key: _read(f"{dataset}/{index}")
                           for key, index in manifest.items()}
  return found


def _assert_same_cache(ours, theirs) -> None:
  """Equal caches, the mean's accumulators to float32 rounding."""
  import json  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  assert {d: set(e) for d, e in ours.items()} == {
      d: set(e) for d, e in theirs.items()}
  for dataset, entries in ours.items():
    for key, values in entries.items():
      if b"CacheableCombineAccumulate[mean" in key:
        [mine], [tfts] = values, theirs[dataset][key]
        np.testing.assert_allclose(json.loads(mine), json.loads(tfts),
                                   rtol=1e-5)
      else:
        assert values == theirs[dataset][key]


@pytest.mark.e2e
def test_the_local_transform_caches_and_analyses_as_tfxs_own(tmp_path,
                                                              monkeypatch):
  import numpy as np  # noqa: PLC0415
  import tensorflow_transform as tft  # noqa: PLC0415
  from tfx.components.transform import executor as tfx_transform  # noqa: PLC0415
  from pipeline.components import transform  # noqa: PLC0415
  days = [art.examples(tmp_path / "examples" / str(d), _rows(d), span=d)
          for d in (19750, 19751, 19752)]
  tfxs = _transform(tfx_transform.Executor, tmp_path / "tfx", days)
  read = []
  init = transform.ReadCacheEntry.__init__

  def reading(self, pattern):
    read.append(pattern)
    init(self, pattern)
  monkeypatch.setattr(transform.ReadCacheEntry, "__init__", reading)
  ours = _transform(transform.Executor, tmp_path / "ours", days)
  # TFT read the window as one cached dataset: its two entries, not two a
  # day (a Beam branch each, which made Transform grow with the window).
  assert len(read) == 2 and all(_WINDOW in p for p in read)
  # One dataset per day, under TFX's keys, each entry's values the same:
  # the vocabulary's counts exactly, the mean's float32 sums to a rounding
  # (TFT adds the batches Beam sizes as it reads, day_cache a day at once).
  assert len(_cache(ours)) == 3
  _assert_same_cache(_cache(ours), _cache(tfxs))
  out = {name: tft.TFTransformOutput(str(root / "graph"))
         for name, root in (("ours", ours), ("tfx", tfxs))}
  assert (out["ours"].vocabulary_by_name(F.CELL_VOCABULARY) ==
          out["tfx"].vocabulary_by_name(F.CELL_VOCABULARY))
  raw = {F.CITY_3H: np.array([[50.0], [5000.0]], np.float32)}
  city = F.transformed_name(F.CITY_3H)
  mean = {name: o.transform_raw_features(
      {**{c: np.ones([2, 1], np.float32 if c not in F.INT_COLUMNS
                     else np.int64) for c in F.RAW_COLUMNS
          if c != F.LABEL}, **raw})[city].numpy()
          for name, o in out.items()}
  np.testing.assert_allclose(mean["ours"], mean["tfx"], rtol=0, atol=1e-6)


# ---- a day's analysis in process (day_cache), against TFT's own ----------

def _tfxio(examples, columns=None):
  """The day's examples as TFX's Transform reads them (curated schema)."""
  from tfx_bsl.tfxio import tf_example_record  # noqa: PLC0415
  made = tf_example_record.TFExampleRecord(_pattern(examples),
                                           schema=_schema())
  return made.Project(columns) if columns else made


def _schema():
  """The curated schema, as Transform is given it."""
  from google.protobuf import text_format  # noqa: PLC0415
  from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: PLC0415
  return text_format.Parse(
      (Path(art.__file__).resolve().parent.parent / "pipeline" / "schema" /
       "schema.pbtxt").read_text(), schema_pb2.Schema())


def _pattern(examples) -> str:
  return f"{examples.uri}/{contract.SPLIT_FOLDER.format(split=art.DAY)}/*"


def _known(preprocessing_fn):
  from pipeline.components import day_cache  # noqa: PLC0415
  return day_cache.known_entries(preprocessing_fn, _typespecs(),
                                 force_tf_compat_v1=False)


def _typespecs():
  from tfx.types import standard_artifacts  # noqa: PLC0415
  fake = standard_artifacts.Examples()
  fake.uri = "/nonexistent"
  return _tfxio(fake).TensorAdapter().OriginalTypeSpecs()


def _tfts_own_cache(root: Path, days: Dict[str, object], columns) -> None:
  """TFT's own analysis of `days` (name -> Examples), each day handed over
  as one record batch, its cache written by TFT's own sink."""
  import apache_beam as beam  # noqa: PLC0415
  import tensorflow_transform.beam as tft_beam  # noqa: PLC0415
  from tensorflow_transform.beam import analyzer_cache  # noqa: PLC0415
  from tfx_bsl.tfxio import dataset_options  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  batches = {}
  for name, examples in days.items():
    [batches[name]] = _tfxio(examples, columns).RecordBatches(
        dataset_options.RecordBatchesOptions(batch_size=10_000, num_epochs=1,
                                             shuffle=False))
  config = _tfxio(next(iter(days.values())), columns).TensorAdapterConfig()
  with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(root / "tmp")):
    data = {analyzer_cache.DatasetKey(name): p | f"Day{name}" >> beam.Create(
        [batch], reshuffle=False) for name, batch in batches.items()}
    _, cache = ((data, {}, config) | tft_beam.AnalyzeDatasetWithCache(
        preprocessing.preprocessing_fn, pipeline=p))
    _ = cache | analyzer_cache.WriteAnalysisCacheToFS(p, str(root / "cache"))


def test_a_days_cache_computed_in_process_is_tfts_own(tmp_path):
  import tensorflow_transform as tft  # noqa: PLC0415
  from pipeline.components import day_cache  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  days = {str(d): art.examples(tmp_path / "examples" / str(d), _rows(d),
                               span=d) for d in (19750, 19751)}
  columns = tft.get_analyze_input_columns(
      preprocessing.preprocessing_fn, _typespecs(), force_tf_compat_v1=False)
  _tfts_own_cache(tmp_path / "tft", days, columns)
  entries = _known(preprocessing.preprocessing_fn)
  assert entries is not None and len(entries) == 2
  for name, examples in days.items():
    day_cache.write_day(
        str(tmp_path / "ours" / "cache" / name), _pattern(examples),
        day_cache.DayReader(_schema(), _tfxio(examples), columns), entries)
  # Every entry under TFT's key, byte for byte: each day is one batch here,
  # as day_cache reads it (TFT's own batches are sized by Beam as it goes,
  # which moves the mean's float32 sums by a rounding; see day_cache).
  assert _cache(tmp_path / "ours") == _cache(tmp_path / "tft")
  for name in days:
    assert ((tmp_path / "ours" / "cache" / name / "METADATA-00000-of-00001")
            .read_bytes() == (tmp_path / "tft" / "cache" / name /
                              "METADATA-00000-of-00001").read_bytes())
    assert (pickle.loads((tmp_path / "ours" / "cache" / name / "MANIFEST")
                         .read_bytes()) ==
            pickle.loads((tmp_path / "tft" / "cache" / name / "MANIFEST")
                         .read_bytes()))


def _with_a_new_analyzer(inputs):
  import tensorflow_transform as tft  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  outputs = preprocessing.preprocessing_fn(inputs)
  outputs["hour_max"] = tft.max(inputs[F.HOUR])
  return outputs


def _city_mean_otherwise(inputs):
  """The same two analyzers, the mean fed otherwise."""
  import tensorflow as tf  # noqa: PLC0415
  import tensorflow_transform as tft  # noqa: PLC0415
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  return {"cell": tft.compute_and_apply_vocabulary(
      preprocessing.cell_token(inputs), vocab_filename=F.CELL_VOCABULARY),
          "city": tft.mean(tf.sqrt(preprocessing.city_now(inputs)))}


@pytest.mark.parametrize("preprocessing_fn", [_with_a_new_analyzer,
                                              _city_mean_otherwise])
def test_an_analyzer_the_in_process_analysis_does_not_know_falls_back(
    preprocessing_fn):
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  assert _known(preprocessing.preprocessing_fn) is not None
  assert _known(preprocessing_fn) is None


def _completed_cache(tmp_path: Path, days, preprocessing_fn, input_cache):
  """What the local Transform hands TFT as its input cache."""
  from tfx.components.transform import labels  # noqa: PLC0415
  from tfx.proto import example_gen_pb2  # noqa: PLC0415
  from pipeline.components import transform  # noqa: PLC0415
  schema = art.schema(tmp_path / "schema")
  inputs = {
      labels.EXAMPLES_DATA_FORMAT_LABEL: example_gen_pb2.FORMAT_TF_EXAMPLE,
      labels.SCHEMA_PATH_LABEL: f"{schema.uri}/schema.pbtxt",
      labels.DATA_VIEW_LABEL: None,
      labels.ANALYZE_DATA_PATHS_LABEL: [_pattern(d) for d in days],
      labels.ANALYZE_PATHS_FILE_FORMATS_LABEL: [
          labels.FORMAT_TFRECORD] * len(days),
      labels.PREPROCESSING_FN: preprocessing_fn,
      labels.FORCE_TF_COMPAT_V1_LABEL: False,
      **({labels.CACHE_INPUT_PATH_LABEL: str(input_cache)}
         if input_cache else {})}
  outputs = {labels.CACHE_OUTPUT_PATH_LABEL: str(tmp_path / "out"),
             labels.TEMP_OUTPUT_LABEL: str(tmp_path / "temp")}
  completed = transform._Processor()._CompletedCache(  # noqa: SLF001
      inputs, outputs)
  return None if completed is None else completed.path


def test_the_local_transform_hands_tft_every_day_cached(tmp_path):
  from taxi_demand.modeling import preprocessing  # noqa: PLC0415
  days = [art.examples(tmp_path / "examples" / str(d), _rows(d), span=d)
          for d in (19750, 19751, 19752)]
  fn = preprocessing.preprocessing_fn
  # A cold start: no input cache, every day computed in process.
  cold = _completed_cache(tmp_path / "cold", days, fn, None)
  assert cold is not None and len(os.listdir(cold)) == 3
  # A later run: two days cached (whichever run made them), one new; the
  # cached days are handed over as they were.
  earlier = tmp_path / "earlier"
  kept = sorted(os.listdir(cold))[:2]
  for name in kept:
    shutil.copytree(Path(cold) / name, earlier / name)
  later = _completed_cache(tmp_path / "later", days, fn, earlier)
  assert _cache_of(Path(later)) == _cache_of(Path(cold))
  for name in kept:
    assert ((Path(later) / name / "MANIFEST").read_bytes() ==
            (earlier / name / "MANIFEST").read_bytes())
  # Every day cached (a rerun): the days as they were.
  rerun = _completed_cache(tmp_path / "rerun", days, fn, Path(cold))
  assert _cache_of(Path(rerun)) == _cache_of(Path(cold))
  # An analyzer it does not know: TFT as it is.
  assert _completed_cache(tmp_path / "new", days, _with_a_new_analyzer,
                          None) is None
