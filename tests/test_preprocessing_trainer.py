"""preprocessing_fn through tft_beam, then run_fn on its output, then serving."""

import functools
import os
from unittest import mock

import numpy as np
import pytest

import taxi_demand  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tfx.components.trainer.fn_args_utils import DataAccessor
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.util import tfxio_utils
from tfx.types import standard_artifacts

from taxi_demand import features as F
from taxi_demand.modeling import model as M
from taxi_demand.modeling import preprocessing
from taxi_demand.modeling import trainer

_DAY = 20_000 * F.SECONDS_PER_DAY  # a Thursday
_FAST_HPARAMS = {"batch_size": 16, "epochs": 1, "steps_per_execution": 5,
                 "hidden_units": [8]}


def _raw_rows(cells, n_slots=12, seed=0):
  rng = np.random.default_rng(seed)
  rows = []
  for cell in cells:
    for slot in range(n_slots):
      start = _DAY + slot * 1800 + 7 * 3600
      lead = 5 * int(rng.integers(0, 12))
      row = {F.CELL: cell, F.SLOT_START: start,
             F.ISSUED_AT: start - 60 * lead, F.LEAD_MINUTES: lead,
             F.HOUR: (start % F.SECONDS_PER_DAY) // 3600, F.DAY_OF_WEEK: 5,
             F.IS_HOLIDAY: int(slot == 3), F.LABEL: int(rng.poisson(cell)),
             F.NOW_ELAPSED: (30 - lead % 30) / 30,  # 1 at a boundary
             F.NOW_PICKUPS: float(rng.poisson(cell / 2)),
             F.IDLE_NOW: float(rng.poisson(3)),
             F.IDLE_1H: float(rng.uniform(0, 5))}
      for key in F.HISTORY_FEATURES:
        row[key] = float(rng.poisson(cell))
      # City-wide: the same for every cell of a slot.
      row[F.CITY_3H] = float(100 + 10 * slot)
      row[F.CITY_3H_PREV_6D] = 100.0
      rows.append(row)
  return rows


def _raw_spec(var_len: bool = False):
  def spec(key):
    dtype = tf.int64 if key in F.INT_COLUMNS else tf.float32
    return tf.io.VarLenFeature(dtype) if var_len else tf.io.FixedLenFeature(
        [], dtype)
  return {key: spec(key) for key in F.RAW_COLUMNS}


def _serialize(row, with_label=True):
  feature = {}
  for key, value in row.items():
    if key == F.LABEL and not with_label:
      continue
    if key in F.INT_COLUMNS:
      feature[key] = tf.train.Feature(
          int64_list=tf.train.Int64List(value=[int(value)]))
    else:
      feature[key] = tf.train.Feature(
          float_list=tf.train.FloatList(value=[float(value)]))
  return tf.train.Example(
      features=tf.train.Features(feature=feature)).SerializeToString()


def _transform(rows, workdir, var_len=False):
  """Analyses like the pipeline's Transform, which materialises nothing.

  Returns (transform dir, a glob of the raw examples): run_fn applies the
  graph to the raw days as it reads them.
  """
  tft_dir = os.path.join(workdir, "transform_graph")
  examples_prefix = os.path.join(workdir, "raw", "examples")
  metadata = tft.DatasetMetadata.from_feature_spec(_raw_spec(var_len))
  raw_rows = [{k: [v] for k, v in r.items()} for r in rows] if var_len else (
      rows)
  with beam.Pipeline() as pipeline:
    with tft_beam.Context(temp_dir=os.path.join(workdir, "tmp")):
      raw = pipeline | beam.Create(raw_rows)
      transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(
          preprocessing.preprocessing_fn)
      _ = transform_fn | tft_beam.WriteTransformFn(tft_dir)
      # TFX's Transform also writes the raw metadata, which run_fn reads.
      _ = metadata | "WriteRaw" >> tft_beam.WriteMetadata(
          os.path.join(tft_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
          pipeline)
  os.makedirs(os.path.dirname(examples_prefix), exist_ok=True)
  with tf.io.TFRecordWriter(examples_prefix + "-0.gz", "GZIP") as writer:
    for row in rows:
      writer.write(_serialize(row))
  return tft_dir, examples_prefix + "*.gz"


def _fn_args(workdir, tft_dir, files, name, base_model=None, hparams=None):
  examples = standard_artifacts.Examples()
  examples.uri = os.path.dirname(files)
  accessor = DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
          [examples], []),
      record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact(
          [examples], []),
      data_view_decode_fn=None)
  return FnArgs(
      train_files=[files], eval_files=[files], transform_output=tft_dir,
      serving_model_dir=os.path.join(workdir, name, "Format-Serving"),
      model_run_dir=os.path.join(workdir, name, "logs"),
      data_accessor=accessor, train_steps=30, base_model=base_model,
      custom_config={"hparams": {**_FAST_HPARAMS, **(hparams or {})}})


def test_preprocessing_fn_outputs(tmp_path):
  rows = _raw_rows([3, 10], n_slots=4)
  tft_dir, files = _transform(rows, str(tmp_path), var_len=True)
  output = tft.TFTransformOutput(tft_dir)
  assert sorted(output.vocabulary_by_name(F.CELL_VOCABULARY)) == [b"10", b"3"]
  raw = tf.io.parse_example([_serialize(r) for r in rows],
                            output.raw_feature_spec())
  xf = output.transform_raw_features(raw)
  vocab = [t.decode() for t in output.vocabulary_by_name(F.CELL_VOCABULARY)]
  np.testing.assert_array_equal(
      xf[M.CELL_XF], [vocab.index(str(r[F.CELL])) for r in rows])
  # Thursday (5) 07:00 is hour 4 * 24 + 7 of the week; slots are 30 minutes.
  np.testing.assert_array_equal(xf[M.HOUR_OF_WEEK_XF],
                                [103, 103, 104, 104] * 2)
  np.testing.assert_array_equal(xf[M.SLOT_OF_WEEK_XF],
                                [412, 414, 416, 418] * 2)
  np.testing.assert_allclose(xf[F.transformed_name(F.LAG_7D)],
                             np.log1p([r[F.LAG_7D] for r in rows]), rtol=1e-6)
  np.testing.assert_array_equal(xf[M.IS_HOLIDAY_XF], [0, 0, 0, 1] * 2)
  # log(1 + city_3h) - log(1 + city_3h_prev_6d): 0 when today is as busy.
  np.testing.assert_allclose(
      xf[M.CITY_LEVEL_XF], np.log([101, 111, 121, 131] * 2) - np.log(101),
      rtol=1e-5, atol=1e-6)
  # log(1 + city_3h) centred on the span's mean: the 4 slots sum to zero.
  city = np.log([101, 111, 121, 131])
  np.testing.assert_allclose(xf[M.CITY_3H_XF], list(city - city.mean()) * 2,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(xf[M.LABEL_XF], [r[F.LABEL] for r in rows])
  # The lead as its 5-minute step; the slot under way as log1p and share.
  np.testing.assert_array_equal(
      xf[M.LEAD_XF], [r[F.LEAD_MINUTES] // 5 for r in rows])
  np.testing.assert_allclose(
      xf[M.NOW_XF], np.log1p([r[F.NOW_PICKUPS] for r in rows]), rtol=1e-6)
  np.testing.assert_allclose(
      xf[M.NOW_ELAPSED_XF], [r[F.NOW_ELAPSED] for r in rows], rtol=1e-6)
  # Idle taxis, now and over the last hour, as log1p.
  for key in F.SUPPLY_FEATURES:
    np.testing.assert_allclose(xf[F.transformed_name(key)],
                               np.log1p([r[key] for r in rows]), rtol=1e-6)
  for name in M.INPUT_NAMES:
    assert xf[name].shape.rank == 1, name


@pytest.mark.slow
def test_run_fn_exports_consistent_signatures_and_warm_starts(tmp_path,
                                                             monkeypatch):
  workdir = str(tmp_path)
  rows = _raw_rows([1, 2, 3, 4, 5])
  tft_dir, files = _transform(rows, os.path.join(workdir, "day1"))
  args = _fn_args(workdir, tft_dir, files, "model1")
  trainer.run_fn(args)

  loaded = tf.saved_model.load(args.serving_model_dir)
  # The signatures the readers call, and only those (each costs tracing
  # at export and time at every load).
  assert set(loaded.signatures) == {trainer.SERVING_SIGNATURE,
                                    trainer.PREDICT_RAW_SIGNATURE}
  serialized = tf.constant([_serialize(r, with_label=False) for r in rows])
  from_examples = loaded.signatures["serving_default"](examples=serialized)
  assert list(from_examples) == [trainer.PREDICTION_KEY]
  point = from_examples[trainer.PREDICTION_KEY].numpy()

  columns = {c: np.array([r[c] for r in rows]) for c in F.SERVING_COLUMNS}
  raw = trainer.load_for_serving(os.path.dirname(args.serving_model_dir))(
      columns)
  np.testing.assert_array_equal(raw[trainer.PREDICTION_KEY], point)
  assert point.shape == (len(rows),)
  assert np.all(point >= 0) and np.all(raw[trainer.RATE_KEY] > 0)
  # Default point forecast: the Poisson median of the predicted rate (these
  # cells are too quiet for a MedianShift: see test_model.py).
  np.testing.assert_array_equal(
      point, M.poisson_median(raw[trainer.RATE_KEY]).numpy())
  # The model learnt that busier cells have more pickups.
  by_cell = [raw[trainer.RATE_KEY][columns[F.CELL] == c].mean()
             for c in (1, 5)]
  assert by_cell[0] < by_cell[1]

  # A label in the examples does not change serving predictions.
  with_label = tf.constant([_serialize(r) for r in rows])
  np.testing.assert_array_equal(
      loaded.signatures["serving_default"](examples=with_label)[
          trainer.PREDICTION_KEY], point)

  # Day 2: a new cell joins, which reorders the vocabulary. With a zero
  # learning rate the warm-started weights are the exported ones, so each
  # known cell must keep its own embedding row.
  tft_dir2, files2 = _transform(_raw_rows([1, 2, 3, 4, 5, 42]),
                                os.path.join(workdir, "day2"))
  args2 = _fn_args(workdir, tft_dir2, files2, "model2",
                   base_model=os.path.dirname(args.serving_model_dir),
                   hparams={"learning_rate": 0.0})
  trainer.run_fn(args2)
  old = M.saved_weights(args.serving_model_dir)["cell_embedding/embeddings"]
  new = M.saved_weights(args2.serving_model_dir)["cell_embedding/embeddings"]
  vocab1 = tft.TFTransformOutput(tft_dir).vocabulary_by_name("cell")
  vocab2 = tft.TFTransformOutput(tft_dir2).vocabulary_by_name("cell")
  assert list(vocab1) != list(vocab2)[:len(vocab1)]
  for i, token in enumerate(vocab1):
    np.testing.assert_array_equal(new[list(vocab2).index(token)], old[i])

  # Incremental retraining: a warm start trains `warm_start_steps` steps,
  # from the cold schedule's tail (it fine-tunes); a cold start the
  # Trainer's own count, from the peak rate, whatever the run parameter
  # says. Training stops at its step count: nothing is exported, which is
  # the slow part of run_fn and not what this checks.
  steps, first_rates = [], []

  class Counted(Exception):
    pass

  def train(model, train_ds, eval_ds, hparams, **kwargs):
    del train_ds, eval_ds
    steps.append(hparams.steps(bool(kwargs["warm_start_from"])))
    first_rates.append(float(model.optimizer.learning_rate))
    raise Counted

  monkeypatch.setattr(M, "train", train)
  # "rebuilt": warm-started from the same base by a model of another build
  # (a new version of this code resized the hidden layers), whose weights
  # a warm start would leave untrained: it trains from scratch instead.
  for name, base, hparams in (
      ("warm", args.serving_model_dir, None), ("cold", None, None),
      ("rebuilt", args.serving_model_dir, {"hidden_units": [4]})):
    args3 = _fn_args(workdir, tft_dir2, files2, name,
                     base_model=base and os.path.dirname(base),
                     hparams=hparams)
    args3.custom_config[trainer.WARM_START_STEPS_KEY] = 7
    with pytest.raises(Counted):
      trainer.run_fn(args3)
  assert steps == [7, 30, 30]
  cold_schedule = M.learning_rate_schedule(M.HParams.from_dict(
      {**args3.custom_config["hparams"], "train_steps": 30}))
  assert first_rates[0] == pytest.approx(float(cold_schedule(30 - 7)))
  assert first_rates[1] == pytest.approx(float(cold_schedule(0)))
  assert first_rates[2] == pytest.approx(float(cold_schedule(0)))


def test_exported_and_keras_saved_models_give_the_same_warm_start_weights(
    tmp_path):
  """The next warm start reads an export without Keras's layer traces as
  it reads models saved with them (those pushed before it)."""
  model = M.build_model(5, M.HParams(hidden_units=(4,)))
  for i, variable in enumerate(model.weights):
    variable.assign(np.full(variable.shape, i, variable.dtype.as_numpy_dtype))
  tf.saved_model.save(model, str(tmp_path / "keras"))
  trainer.export(model, str(tmp_path / "export"))
  expected = {v.name.split(":")[0]: v.numpy() for v in model.weights}
  for path in ("keras", "export"):
    weights = M.saved_weights(str(tmp_path / path))
    assert sorted(weights) == sorted(expected)
    for name, value in expected.items():
      np.testing.assert_array_equal(weights[name], value)


def test_cell_row_map_matches_tokens_and_oov_buckets():
  rows = trainer.cell_row_map(["9", "77", "8"], ["8", "9"], oov_buckets=1)
  np.testing.assert_array_equal(rows, [1, -1, 0, 2])


def _day_files(rows, root, name):
  """One day's raw examples in their own artifact folder, as ExampleGen writes."""
  os.makedirs(os.path.join(root, name), exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(root, name, "data-0.gz"),
                            "GZIP") as writer:
    for row in rows:
      writer.write(_serialize(row))
  return os.path.join(root, name, "*.gz")

def _window_of_days(tmp_path, n_days):
  """(TFTransformOutput, per-day example files) of `n_days` days of 80
  examples each (2 cells x 40 slots), transformed together."""
  days = [_raw_rows([3 * k + 1, 3 * k + 2], n_slots=40, seed=k)
          for k in range(n_days)]
  tft_dir, _ = _transform([r for day in days for r in day], str(tmp_path))
  files = [_day_files(day, str(tmp_path / "examples"), str(i))
           for i, day in enumerate(days)]
  return tft.TFTransformOutput(tft_dir), files



def test_window_is_read_in_the_resolvers_order_whatever_its_paths(tmp_path):
  """A day ingested again after a kill gets a new path; the model must not.

  TF's glob sorts file names, so reading the window through one pattern
  list ordered the days by their execution ids: "examples/14" before
  "examples/9". The same days under other ids must give the same stream.
  """
  # Day k's cells, hence its labels, are near 100 * k.
  days = [_raw_rows([100 * k + 1, 100 * k + 2], seed=k) for k in range(3)]
  tft_dir, _ = _transform([r for day in days for r in day], str(tmp_path))
  output = tft.TFTransformOutput(tft_dir)

  def stream(ids, training):
    files = [_day_files(day, str(tmp_path / "examples"), str(i))
             for day, i in zip(days, ids)]
    dataset = trainer._input_fn(files, output, batch_size=8,
                                training=training, seed=7)
    return np.concatenate([label.numpy() for _, label in dataset.take(9)])

  for training in (True, False):
    # 2, 8, 14 sort as "14" < "2" < "8"; 1, 2, 3 sort as given.
    np.testing.assert_array_equal(stream([2, 8, 14], training),
                                  stream([1, 2, 3], training))
  # Training draws from every day at once; evaluation reads day by day.
  def days_in_first_batch(training):
    return set(np.round(stream([1, 2, 3], training)[:8] / 100))
  assert len(days_in_first_batch(True)) > 1
  assert days_in_first_batch(False) == {0}


def _tfx_readers_stream(files, output, batch_size, training, seed,
                        max_batches=None):
  """The reference: one TFX reader per day (the data accessor the Trainer
  hands run_fn), each parsing its own batches, mixed as _window_days
  documents. The parsing of that reader was traced once per day."""
  from tfx_bsl.tfxio import dataset_options  # noqa: PLC0415
  examples = standard_artifacts.Examples()
  examples.uri = os.path.dirname(files[0])
  factory = tfxio_utils.get_tf_dataset_factory_from_artifact([examples], [])
  days = [factory([pattern], dataset_options.TensorFlowDatasetOptions(
      batch_size=batch_size, shuffle=training, shuffle_seed=seed,
      num_epochs=1), output.raw_metadata.schema) for pattern in files]
  if training:
    raw = tf.data.Dataset.sample_from_datasets(
        [d.unbatch() for d in days], seed=seed).batch(batch_size)
  else:
    raw = functools.reduce(tf.data.Dataset.concatenate, days)
  if max_batches:
    raw = raw.take(max_batches)
  layer = output.transform_features_layer()
  dataset = raw.map(lambda raw: (lambda t: (t, t.pop(M.LABEL_XF)))(layer(raw)))
  if not training:
    return dataset
  return dataset.cache().shuffle(1024, seed=seed,
                                 reshuffle_each_iteration=True).repeat()


def test_the_window_is_read_as_tfx_readers_read_it_one_parse_for_all(
    tmp_path):
  """Parsing the mixed window once gives the batches one TFX reader per
  day gave, value for value, in training: the same data, hence the same
  weights. Evaluation gives their examples in the same order, in batches
  that run across the days."""
  output, files = _window_of_days(tmp_path, 4)
  # 320 examples, 20 batches a pass: training goes into its second pass.
  ours = trainer._input_fn(files, output, batch_size=16, training=True,
                           seed=3)
  reference = _tfx_readers_stream(files, output, 16, True, 3)
  got = list(ours.take(31))
  want = list(reference.take(31))
  assert len(got) == len(want) == 31
  for (features, label), (expected, expected_label) in zip(got, want):
    np.testing.assert_array_equal(label, expected_label)
    assert sorted(features) == sorted(expected)
    for key, value in features.items():
      np.testing.assert_array_equal(value, expected[key])
  for max_batches in (None, 7):
    ours = trainer._input_fn(files, output, batch_size=16, training=False,
                             seed=3, max_batches=max_batches)
    reference = list(_tfx_readers_stream(files, output, 320, False, 3))
    features = {key: np.concatenate([f[key] for f, _ in reference])
                for key in reference[0][0]}
    label = np.concatenate([lab for _, lab in reference])
    (want, want_label) = ({k: v[:16 * (max_batches or 20)]
                           for k, v in features.items()},
                          label[:16 * (max_batches or 20)])
    got = list(ours)
    assert len(got) == (max_batches or 20)
    np.testing.assert_array_equal(
        np.concatenate([lab for _, lab in got]), want_label)
    for key, value in want.items():
      np.testing.assert_array_equal(
          np.concatenate([f[key] for f, _ in got]), value)


def test_day_choices_are_the_draws_sample_from_datasets_makes():
  """The window is mixed with sample_from_datasets' own draws, made a
  chunk at a time (one traced call per draw was most of the Trainer's CPU
  on the 500 m grid): the same days give the same stream, also where days
  of unequal length run out, across a chunk boundary."""
  def days():
    # Day k yields k, k + 5, k + 10, ...: a value names its day and rank.
    return [tf.data.Dataset.range(k, 5 * n, 5)
            for k, n in enumerate((900, 2500, 40, 3000, 1))]

  for seed in (0, 11):
    ours = tf.data.Dataset.choose_from_datasets(
        days(), trainer._day_choices(5, seed), stop_on_empty_dataset=False)
    theirs = tf.data.Dataset.sample_from_datasets(days(), seed=seed)
    got = np.concatenate(list(ours.batch(4096).as_numpy_iterator()))
    want = np.concatenate(list(theirs.batch(4096).as_numpy_iterator()))
    assert len(got) == 900 + 2500 + 40 + 3000 + 1 > trainer._CHOICES_CHUNK
    np.testing.assert_array_equal(got, want)


def test_the_input_pipeline_is_built_once_whatever_the_windows_length(
    tmp_path):
  """A TFX reader per day cost about 40 ms to build and as much to start,
  three times a Trainer run: evaluation's pipeline must not grow with the
  window's days, nor training read a day through TFX's interleave."""
  output, files = _window_of_days(tmp_path, 6)

  def nodes(days, training):
    dataset = trainer._input_fn(files[:days], output, batch_size=16,
                                training=training, seed=0)
    graph = tf.compat.v1.GraphDef.FromString(
        dataset._as_serialized_graph().numpy())
    return len(graph.node) + sum(len(f.node_def)
                                 for f in graph.library.function)

  assert nodes(2, False) == nodes(6, False)

  training = tf.compat.v1.GraphDef.FromString(trainer._input_fn(
      files, output, batch_size=16, training=True,
      seed=0)._as_serialized_graph().numpy())
  assert not [node.op for node in training.node
              if node.op.startswith(("Interleave", "ParallelInterleave"))]


def test_a_window_without_example_files_is_refused_in_one_line(tmp_path):
  output, _ = _window_of_days(tmp_path, 1)
  missing = [str(tmp_path / "nowhere" / "*.gz")] * 2
  with pytest.raises(ValueError, match="no example files in the window"):
    trainer._input_fn(missing, output, batch_size=16, training=True, seed=0)


def test_a_day_without_example_files_is_read_around_and_named(tmp_path):
  """The other days train; the missing day's pattern is in the log."""
  from absl import logging as absl_logging  # noqa: PLC0415
  output, files = _window_of_days(tmp_path, 2)
  missing = str(tmp_path / "nowhere" / "*.gz")
  warnings = []
  with mock.patch.object(absl_logging, "warning",
                         lambda msg, *args: warnings.append(msg % args)):
    dataset = trainer._input_fn([files[0], missing, files[1]], output,
                                batch_size=16, training=True, seed=0)
  assert next(iter(dataset))[1].shape[0] > 0
  assert [w for w in warnings if missing in w], warnings


def test_the_median_shift_pass_reads_the_window_once_in_large_batches(
    tmp_path):
  """One pass, every example once, in batches of WINDOW_PASS_BATCH: in
  the training batch size the 500 m grid's window took ~4k model calls,
  and the pass cached the whole transformed window in memory."""
  output, files = _window_of_days(tmp_path, 2)
  dataset = trainer._window_pass(files, output)
  assert b"CacheDataset" not in dataset._as_serialized_graph().numpy()
  sizes = [int(label.shape[0]) for _, label in dataset]
  assert sizes == [160]  # the days in one batch, under WINDOW_PASS_BATCH
  assert trainer.WINDOW_PASS_BATCH >= 8192
  want = list(trainer._input_fn(files, output, 8, False, 0))
  got = np.concatenate([label.numpy() for _, label in dataset])
  np.testing.assert_array_equal(
      got, np.concatenate([label.numpy() for _, label in want]))
