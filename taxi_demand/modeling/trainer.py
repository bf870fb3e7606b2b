"""TFX Trainer run_fn: adapts FnArgs to `model.train` and exports signatures.

The exported SavedModel has the two signatures its readers call:

* `serving_default(examples: string[batch])`: serialized tf.Examples (label
  absent or present) -> {"predicted_pickups": float32[batch]}. TFMA's Evaluator
  uses it; it is the only output, so no `prediction_key` is needed.
* `predict_raw(**columns)`: one rank-1 tensor per `features.SERVING_COLUMNS`
  entry, int64 for `features.INT_COLUMNS` and float32 for
  `features.FLOAT_COLUMNS` -> {"predicted_pickups": float32[batch],
  "predicted_rate": float32[batch]}. Batch prediction calls it once per batch
  with no tf.Example round trip; use `load_for_serving(path)` from Python.

"predicted_pickups" is the point forecast chosen by `HParams.point_forecast`
(by default the Poisson median of λ̂ corrected per cell and hour of day by
`model.MedianShift`, fitted on the window after training); "predicted_rate"
is the expected pickups λ̂.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from taxi_demand import features as F
from taxi_demand.modeling import model as model_lib
# The exported model's contract, shared with serving (which loads TF only).
from taxi_demand.modeling.saved_model import PREDICT_RAW_SIGNATURE
from taxi_demand.modeling.saved_model import PREDICTION_KEY
from taxi_demand.modeling.saved_model import RATE_KEY
from taxi_demand.modeling.saved_model import SERVING_SIGNATURE
from taxi_demand.modeling.saved_model import load_for_serving  # noqa: F401
from taxi_demand.modeling.saved_model import raw_input_dtype
from taxi_demand.modeling.saved_model import resolve_saved_model

# The run parameter (custom_config key) for the steps of a warm start.
WARM_START_STEPS_KEY = "warm_start_steps"

# Written next to the SavedModel so the next day's warm start can map cell
# embedding rows by token even if the vocabulary grew or was reordered.
CELL_VOCABULARY_FILE = os.path.join("assets.extra", "cell_vocabulary.txt")


def _input_fn(file_pattern: List[str],
              tf_transform_output: tft.TFTransformOutput, batch_size: int,
              training: bool, seed: int,
              max_batches: Optional[int] = None) -> tf.data.Dataset:
  """Batches of (transformed features, label) from the window's raw days.

  Transform materialises nothing: each day's examples were written once, by
  the run that ingested it, and today's graph is applied here as they are
  read, so every day of the window is transformed with the same vocabulary
  and mean. One transformed pass is cached in memory (about 100k small
  examples): later epochs cost no decompression, parsing or transforming.
  Training repeats forever in a freshly shuffled batch order; evaluation is
  one pass of at most `max_batches`.
  """
  raw = _window_days(file_pattern, batch_size, training, seed)
  if max_batches:
    raw = raw.take(max_batches)
  dataset = raw.map(_transform_fn(tf_transform_output),
                    num_parallel_calls=tf.data.AUTOTUNE).cache()
  if not training:
    return dataset
  return dataset.shuffle(1024, seed=seed,
                         reshuffle_each_iteration=True).repeat()


# Examples a batch of the one pass that fits the median shift: a batch of
# the training size made ~4k model calls on the 500 m grid's window.
WINDOW_PASS_BATCH = 8192


def _window_pass(file_pattern: List[str],
                 tf_transform_output: tft.TFTransformOutput
                 ) -> tf.data.Dataset:
  """The window's days once, in order, as (transformed features, label),
  in large batches.

  Nothing is cached (a pass read once would only hold the whole
  transformed window in memory), and the next batches are read and
  transformed on the other core while the model predicts the current one.
  """
  raw = _window_days(file_pattern, WINDOW_PASS_BATCH, False, seed=0)
  return raw.map(_transform_fn(tf_transform_output),
                 num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                     tf.data.AUTOTUNE)


def _transform_fn(tf_transform_output: tft.TFTransformOutput):
  """Serialized examples -> (transformed features, label), in one trace."""
  spec = tf_transform_output.raw_feature_spec()
  layer = tf_transform_output.transform_features_layer()

  # Plain TF calls, no Python control flow on tensors: AutoGraph would only
  # rewrite the transform layer's (and tf_keras's) code, seconds a trace.
  @tf.autograph.experimental.do_not_convert
  def transform(serialized):
    transformed = layer(tf.io.parse_example(serialized, spec))
    label = transformed.pop(model_lib.LABEL_XF)
    return transformed, label

  return transform


def _window_days(file_pattern: List[str], batch_size: int, training: bool,
                 seed: int) -> tf.data.Dataset:
  """The window's serialized examples, batched, read day by day in the
  order given.

  `file_pattern` holds one pattern per day, in the resolver's span order.
  Handing them all to one glob would order the files by path (TF's glob
  sorts names), and a path carries its ingest's execution id: a day
  ingested again after a kill would move in the read order and train a
  different model from the same data. So the days keep the order given,
  and a day's files are read in name order.

  Evaluation (and the median shift's pass) reads the days one after the
  other, through one reader. Training reads each day as TFX's reader
  (tfx_bsl's TFExampleRecord) reads a day of one file: its records
  shuffled in TFX's buffer with `seed`. It draws each example from the
  days at random with `seed`, so the same days give the same stream, the
  stream TFX's readers gave. (Two faster ways of mixing the days moved
  the forecast benches beyond their noise: each day in an order of its
  own, taken in turn, served the realtime bench's day 1.5-3.8% worse over
  three seeds; every day in the one order, the forecast week 5% worse.)

  The examples are ExampleGen's gzipped tf.Example records, left
  serialized: the window is parsed once, after the days are mixed, by one
  traced step. No day is read through TFX's parallel interleave: a TFX
  reader per day (make_tf_record_dataset) cost about 40 ms to build and
  as much to start, three times a run; with the median shift's pass read
  through them, that was most of the Trainer's growth with the window.
  """
  found = [sorted(tf.io.gfile.glob(pattern)) for pattern in file_pattern]
  days = [names for names in found if names]
  if not days:
    raise ValueError(f"no example files in the window: {file_pattern}")
  # The data gate passed these days, so a day without files is a broken
  # or removed artifact: trained around, but said.
  for pattern, names in zip(file_pattern, found):
    if not names:
      logging.warning("No example files at %s: the window is read without "
                      "that day.", pattern)
  if not training:
    return tf.data.TFRecordDataset(
        [name for names in days for name in names], "GZIP").batch(batch_size)
  # TensorFlowDatasetOptions' default buffer, as TFExampleRecord applies it.
  readers = [tf.data.TFRecordDataset(names, "GZIP").shuffle(
      _DAY_SHUFFLE_BUFFER, seed) for names in days]
  if len(readers) == 1:
    return readers[0].batch(batch_size)
  return tf.data.Dataset.choose_from_datasets(
      readers, _day_choices(len(readers), seed),
      stop_on_empty_dataset=False).batch(batch_size)


# Examples of a day TFX's reader shuffles together (its default buffer).
_DAY_SHUFFLE_BUFFER = 10_000


# Day choices computed per call of _day_choices' traced function.
_CHOICES_CHUNK = 4096


def _day_choices(days: int, seed: int) -> tf.data.Dataset:
  """The day each example of the mixed window comes from: the choices
  `tf.data.Dataset.sample_from_datasets(days, seed=seed)` makes, draw for
  draw, so the same days still give the same stream.

  sample_from_datasets draws each choice in its own call of a traced
  function (a stateless categorical draw, seeded by the next two numbers
  of `Dataset.random(seed)`): about 50 µs an example, most of the
  Trainer's CPU on the 500 m grid, whose warm start mixes about a million
  examples (its batch shuffle reads 1024 batches ahead). Here one call
  makes the same draws for a chunk of seeds.
  """
  logits = tf.ones([1, days])

  # No Python control flow on tensors: AutoGraph would only rewrite it.
  @tf.autograph.experimental.do_not_convert
  def choose(seeds):
    return tf.map_fn(
        lambda pair: tf.random.stateless_categorical(logits, 1, pair)[0, 0],
        seeds, fn_output_signature=tf.int64, parallel_iterations=16)

  return tf.data.Dataset.random(seed=seed).batch(2).batch(
      _CHOICES_CHUNK).map(choose).unbatch()


def _serving_raw_spec(tf_transform_output: tft.TFTransformOutput
                      ) -> Dict[str, tf.io.FixedLenFeature]:
  spec = tf_transform_output.raw_feature_spec()
  spec.pop(F.LABEL, None)
  return spec


def _to_raw_feature(value: tf.Tensor, spec) -> tf.Tensor | tf.SparseTensor:
  """Shapes a rank-1 column like `tf.io.parse_example` would for `spec`."""
  value = tf.cast(value, spec.dtype)
  if isinstance(spec, tf.io.VarLenFeature):
    return tf.sparse.from_dense(tf.expand_dims(value, -1))
  if len(spec.shape) == 1:
    return tf.expand_dims(value, -1)
  return value


def _signatures(model: tf.keras.Model,
                tf_transform_output: tft.TFTransformOutput,
                forecast: model_lib.PointForecast
                ) -> Dict[str, tf.types.experimental.ConcreteFunction]:
  """The serving signatures described in the module docstring.

  No `transform_features` signature: TFMA looks for one named
  "transformed_features", and no other reader called it, while tracing and
  loading it cost a third of the signatures' time.
  """
  # The layer must be tracked by the model to be saved with it.
  model.tft_layer = tf_transform_output.transform_features_layer()
  serving_spec = _serving_raw_spec(tf_transform_output)

  def predict_transformed(raw_features):
    transformed = model.tft_layer(raw_features)
    inputs = {k: transformed[k] for k in model_lib.INPUT_NAMES}
    rate = tf.reshape(model(inputs), [-1])
    return rate, model_lib.served_point(model, inputs, rate, forecast)

  # Without AutoGraph: no Python control flow here depends on a tensor, so
  # the graphs are the same, and converting this code (and the transform
  # layer's) cost seconds of each export.
  @tf.function(input_signature=[
      tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")],
               autograph=False)
  def serve_tf_examples_fn(serialized):
    raw = tf.io.parse_example(serialized, serving_spec)
    _, point = predict_transformed(raw)
    return {PREDICTION_KEY: point}

  @tf.function(input_signature=[{
      c: tf.TensorSpec(shape=[None], dtype=raw_input_dtype(c), name=c)
      for c in F.SERVING_COLUMNS}], autograph=False)
  def predict_raw_fn(columns):
    raw = {c: _to_raw_feature(columns[c], serving_spec[c])
           for c in F.SERVING_COLUMNS if c in serving_spec}
    rate, point = predict_transformed(raw)
    return {PREDICTION_KEY: point, RATE_KEY: rate}

  return {
      SERVING_SIGNATURE: serve_tf_examples_fn.get_concrete_function(),
      PREDICT_RAW_SIGNATURE: predict_raw_fn.get_concrete_function(),
  }


def export(model: tf.keras.Model, path: str,
           signatures: Optional[Dict[str, Any]] = None) -> None:
  """Saves the model's variables and `signatures` as a SavedModel at `path`.

  Every reader calls a signature (serving, TFMA, next-day scoring, the
  fleet) or reads the variables by name (the next warm start). Keras's
  own traces of each layer's call, which tf.saved_model.save adds for a
  Keras model, are read by none: tracing them made half of the export,
  and loading them slowed every load of the model (the Evaluator's two,
  the GuidanceGate's two, next-day scoring, the next warm start).
  """
  model.save(path, save_format="tf", include_optimizer=False,
             save_traces=False, signatures=signatures)


def _read_vocabulary(path: str) -> Optional[List[str]]:
  file = os.path.join(path, CELL_VOCABULARY_FILE)
  if not tf.io.gfile.exists(file):
    return None
  with tf.io.gfile.GFile(file) as f:
    return f.read().splitlines()


def cell_row_map(new_vocab: Sequence[str], old_vocab: Sequence[str],
                 oov_buckets: int = F.CELL_OOV_BUCKETS) -> np.ndarray:
  """New embedding row -> old row, matching cells by token (-1: new cell).

  Rows after each vocabulary are OOV buckets; they map onto each other.
  """
  old_index = {token: i for i, token in enumerate(old_vocab)}
  rows = [old_index.get(token, -1) for token in new_vocab]
  rows += [len(old_vocab) + i for i in range(oov_buckets)]
  return np.asarray(rows, dtype=np.int64)


def run_fn(fn_args: FnArgs) -> None:
  """Trains on the window's days, transformed as read, and saves the model.

  Hyperparameters: `model.HParams` defaults, overridden by
  `fn_args.custom_config["hparams"]` (a dict) when given; TrainArgs/EvalArgs
  step counts override `train_steps`/`eval_steps`. Warm-starts from
  `fn_args.base_model` when the Trainer has a base_model input, and then
  trains `custom_config["warm_start_steps"]` steps when that is set.
  """
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  custom_config = fn_args.custom_config or {}
  overrides = dict(custom_config.get("hparams") or {})
  base = resolve_saved_model(fn_args.base_model)
  if fn_args.train_steps:
    overrides["train_steps"] = int(fn_args.train_steps)
  if base and custom_config.get(WARM_START_STEPS_KEY):
    # Incremental retraining: the serving model already knows all but the
    # newest day of the window.
    overrides["warm_start_steps"] = int(custom_config[WARM_START_STEPS_KEY])
  if fn_args.eval_steps:
    overrides["eval_steps"] = int(fn_args.eval_steps)
  hparams = model_lib.HParams.from_dict(overrides)
  logging.info("Training with %s", hparams)

  vocab = [t.decode() if isinstance(t, bytes) else str(t)
           for t in tf_transform_output.vocabulary_by_name(F.CELL_VOCABULARY)]
  train_ds = _input_fn(fn_args.train_files, tf_transform_output, hparams.batch_size, True,
                       hparams.seed)
  eval_ds = _input_fn(fn_args.eval_files, tf_transform_output, hparams.batch_size, False,
                      hparams.seed, max_batches=hparams.eval_steps)

  if fn_args.base_model and not base:
    logging.warning("No SavedModel at base model %s; training from scratch.",
                    fn_args.base_model)
  row_maps = None
  if base:
    old_vocab = _read_vocabulary(base)
    if old_vocab is not None:
      rows = cell_row_map(vocab, old_vocab)
      row_maps = {name: rows for name in model_lib.CELL_INDEXED_LAYERS}

  def build(warm_started: bool):
    return model_lib.build_model(
        len(vocab) + F.CELL_OOV_BUCKETS, hparams, warm_started=warm_started,
        slot_minutes=int(custom_config.get("slot_minutes") or
                         F.DEFAULT_SLOT_MINUTES))

  model = build(bool(base))
  warm_from = None
  if base:
    warm_from = model_lib.saved_weights(base)
    gaps = model_lib.warm_start_gaps(model, warm_from, row_maps)
    if gaps:
      # A base model of another build (this code's new version added or
      # resized a layer): warm-started, those weights would start afresh
      # and get only a warm start's few steps at its small rates, and
      # every day's candidate, warm-started from the same serving model,
      # would be refused alike while the serving model aged.
      logging.warning(
          "The base model %s does not fit this model: %d of its weights "
          "would start untrained (%s); training from scratch, %d steps.",
          base, len(gaps), ", ".join(gaps), hparams.steps(False))
      model, warm_from = build(False), None
  callbacks = []
  if fn_args.model_run_dir:
    callbacks.append(tf.keras.callbacks.TensorBoard(
        log_dir=fn_args.model_run_dir, update_freq="epoch"))
  model_lib.train(model, train_ds, eval_ds, hparams,
                  warm_start_from=warm_from, warm_start_row_maps=row_maps,
                  callbacks=callbacks)
  # After training (and whatever it does to the weights): the shift is
  # read against the final λ̂, on one pass over the window.
  if hparams.point_forecast is model_lib.PointForecast.MEDIAN:
    model_lib.fit_median_shift(
        model, _window_pass(fn_args.train_files, tf_transform_output),
        hparams)

  signatures = _signatures(model, tf_transform_output, hparams.point_forecast)
  export(model, fn_args.serving_model_dir, signatures)
  vocab_file = os.path.join(fn_args.serving_model_dir, CELL_VOCABULARY_FILE)
  tf.io.gfile.makedirs(os.path.dirname(vocab_file))
  with tf.io.gfile.GFile(vocab_file, "w") as f:
    f.write("".join(token + "\n" for token in vocab))
