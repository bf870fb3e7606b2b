"""TFT preprocessing_fn: raw demand examples to the model's dense inputs."""

from __future__ import annotations

from typing import Dict, Union

import tensorflow as tf
import tensorflow_transform as tft

from taxi_demand import features as F

_Tensor = Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]

_SECONDS_PER_QUARTER_HOUR = 900
_QUARTERS_PER_HOUR = 4


def _dense(x: _Tensor) -> tf.Tensor:
  """Returns `x` as a rank-1 dense tensor, missing values as 0.

  The raw feature spec depends on the schema: a curated or shape-inferred
  schema gives FixedLenFeature (rank 1, or rank 2 with one column), an inferred
  schema without shapes gives VarLenFeature (SparseTensor). All are one value
  per example in our data, so they collapse to [batch].
  """
  if isinstance(x, tf.SparseTensor):
    x = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
        default_value=tf.zeros([], x.dtype))
  elif isinstance(x, tf.RaggedTensor):
    x = x.to_tensor(default_value=tf.zeros([], x.dtype), shape=[None, 1])
  return tf.reshape(x, [-1])


def _log1p_count(x: _Tensor) -> tf.Tensor:
  return tf.math.log1p(tf.maximum(tf.cast(_dense(x), tf.float32), 0.0))


# The analyzers' inputs, each one function that preprocessing_fn and the
# local Transform's in-process analysis (pipeline/components/day_cache.py)
# both call: TFT keys a day's cached analysis by the graph that computes
# the analyzer's input, so the two cannot drift apart unnoticed.


def cell_token(inputs: Dict[str, _Tensor]) -> tf.Tensor:
  """The cell vocabulary's input: the cell id as a decimal string."""
  return tf.strings.as_string(_dense(inputs[F.CELL]))


def city_now(inputs: Dict[str, _Tensor]) -> tf.Tensor:
  """The city's 3-hour count on the log1p scale, the mean's input."""
  return _log1p_count(inputs[F.CITY_3H])


def preprocessing_fn(inputs: Dict[str, _Tensor]) -> Dict[str, tf.Tensor]:
  """tf.Transform callback: maps raw features to the model's inputs.

  History features become log1p counts rather than z-scores on purpose: log1p
  is the scale on which the demand model is additive, and it does not depend on
  the span's statistics, so warm-started weights keep their meaning from one
  day's model to the next. The one exception is the city's 3-hour count,
  centred on the span's mean log count only to start near 0: that mean moves
  by the city's slow trend from one day's window to the next, well under a
  percent, and the hour-of-week terms absorb it.

  The label is passed through only when present: the serving signatures apply
  this graph to raw features without the label, and TFT's layer prunes outputs
  whose inputs are missing.

  Args:
    inputs: raw features keyed by the names in `features.RAW_COLUMNS`.

  Returns:
    Dense rank-1 tensors keyed by `features.transformed_name(...)`.
  """
  outputs = {}
  # The vocabulary is ordered by frequency; each span has one row per cell and
  # slot, so in practice ties are broken by the token. The trainer remaps
  # embedding rows by token when warm-starting, so order changes are safe.
  outputs[F.transformed_name(F.CELL)] = tft.compute_and_apply_vocabulary(
      cell_token(inputs),
      num_oov_buckets=F.CELL_OOV_BUCKETS,
      vocab_filename=F.CELL_VOCABULARY)

  hour = tf.clip_by_value(tf.cast(_dense(inputs[F.HOUR]), tf.int64), 0, 23)
  day_of_week = tf.clip_by_value(
      tf.cast(_dense(inputs[F.DAY_OF_WEEK]), tf.int64), 1, 7)
  hour_of_week = (day_of_week - 1) * 24 + hour
  outputs[F.transformed_name(F.HOUR_OF_WEEK)] = hour_of_week
  # Slots may be 15, 30 or 60 minutes; a quarter-hour index covers all three.
  quarter = tf.math.floormod(
      tf.cast(_dense(inputs[F.SLOT_START]), tf.int64),
      3600) // _SECONDS_PER_QUARTER_HOUR
  outputs[F.transformed_name(F.SLOT_OF_WEEK)] = (
      hour_of_week * _QUARTERS_PER_HOUR + quarter)

  outputs[F.transformed_name(F.IS_HOLIDAY)] = tf.cast(
      tf.clip_by_value(_dense(inputs[F.IS_HOLIDAY]), 0, 1), tf.float32)

  def log1p_count(key: str) -> tf.Tensor:
    return _log1p_count(inputs[key])

  for key in F.HISTORY_FEATURES:
    outputs[F.transformed_name(key)] = log1p_count(key)
  # The slot under way: what is known of it so far, and how much has passed.
  outputs[F.transformed_name(F.NOW_PICKUPS)] = log1p_count(F.NOW_PICKUPS)
  outputs[F.transformed_name(F.NOW_ELAPSED)] = tf.clip_by_value(
      tf.cast(_dense(inputs[F.NOW_ELAPSED]), tf.float32), 0.0, 1.0)
  # Supply: idle taxis in the cell now and over the last hour, 0 where the
  # trips carry no taxi_id.
  for key in F.SUPPLY_FEATURES:
    outputs[F.transformed_name(key)] = log1p_count(key)
  # The lead as an index of the 5-minute steps: its own weights per lead.
  outputs[F.transformed_name(F.LEAD_MINUTES)] = tf.clip_by_value(
      tf.cast(_dense(inputs[F.LEAD_MINUTES]), tf.int64) //
      F.LEAD_STEP_MINUTES, 0, F.N_LEADS - 1)
  # The day's weather scales the whole city. Two views of it, both near 0 on
  # the model's log scale: today's last 3 hours against the same hours of
  # the 6 days before (the city's size cancels), and the same count against
  # the span's mean, which the model's hour-of-week terms turn into "against
  # this hour's usual level" over the whole training window, whose weather
  # averages out better than 6 days'.
  city = city_now(inputs)
  outputs[F.transformed_name(F.CITY_LEVEL)] = (
      city - log1p_count(F.CITY_3H_PREV_6D))
  outputs[F.transformed_name(F.CITY_3H)] = city - tft.mean(city)

  if F.LABEL in inputs:
    outputs[F.transformed_name(F.LABEL)] = tf.cast(
        _dense(inputs[F.LABEL]), tf.float32)
  return outputs
