"""The local Transform writes its analyzer cache in one Beam step an entry,
files that TFT's own reader reads as it reads TFT's own, with the same
content and the same transform graph as TFX's Transform."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Dict, List

import pytest

import executor_artifacts as art
from taxi_demand import features as F
from taxi_demand.lineage import contract


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
  """{dataset key: {cache entry key: its values, sorted}}."""
  found = {}
  for dataset in sorted((root / "cache").iterdir()):
    manifest = pickle.loads((dataset / "MANIFEST").read_bytes())
    found[dataset.name] = {key: _read(f"{dataset}/{index}")
                           for key, index in manifest.items()}
  return found


@pytest.mark.e2e
def test_the_local_transform_caches_and_analyses_as_tfxs_own(tmp_path):
  import numpy as np  # noqa: PLC0415
  import tensorflow_transform as tft  # noqa: PLC0415
  from tfx.components.transform import executor as tfx_transform  # noqa: PLC0415
  from pipeline.components import transform  # noqa: PLC0415
  days = [art.examples(tmp_path / "examples" / str(d), _rows(d), span=d)
          for d in (19750, 19751, 19752)]
  tfxs = _transform(tfx_transform.Executor, tmp_path / "tfx", days)
  ours = _transform(transform.Executor, tmp_path / "ours", days)
  # One dataset per day, each entry's values the same.
  assert len(_cache(ours)) == 3
  assert _cache(ours) == _cache(tfxs)
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
  np.testing.assert_array_equal(mean["ours"], mean["tfx"])
