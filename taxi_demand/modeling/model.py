"""Keras demand model: Poisson rate with a log link. Plain TensorFlow, no TFX.

The simulated (and, roughly, the real) intensity is multiplicative:
λ = base × share(cell) × profile(time of week) × day-level factors. On the log
scale that is a sum of a seasonal part (cell + time of week + holiday) and a
day-level shift that recent lags reveal; `build_model` spells out the terms.
It is trained with the Poisson loss, its label clipped a few standard
deviations from λ̂ (`ClippedPoisson`), and outputs λ̂ >= 0 ([batch, 1]).

Inputs are the dense rank-1 tensors produced by
`taxi_demand.modeling.preprocessing.preprocessing_fn`, keyed by
`features.transformed_name(...)`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from taxi_demand import features as F


class WarmStartSchedule(str, enum.Enum):
  """The learning-rate schedule of a run that starts from a previous model."""
  # The tail of the cold run's schedule: the warm run's steps are the last
  # steps of a cold run, at the small rates a converged model is tuned with.
  TAIL = "tail"
  # The cold schedule compressed into the warm run's steps, from the peak.
  RESTART = "restart"


class PointForecast(str, enum.Enum):
  """Which summary of the predicted Poisson distribution to serve."""
  # The median minimises expected absolute error: the benchmark's MAE target is
  # against the oracle's Poisson median, and with many low-rate slots the mean
  # (e.g. 0.3) loses ~40% MAE against the median (0).
  MEDIAN = "median"
  # The mean minimises squared error and is unbiased in total.
  MEAN = "mean"


@dataclasses.dataclass(frozen=True)
class HParams:
  """Model and training hyperparameters; defaults are the tuned ones."""
  learning_rate: float = 0.003
  # Cosine decay to this fraction of learning_rate over the training steps.
  final_learning_rate_fraction: float = 0.05
  batch_size: int = 512
  # Steps of a run from scratch.
  train_steps: int = 4000
  # Steps of a run that warm-starts from a previous model; train_steps when
  # None.
  warm_start_steps: Optional[int] = None
  # A warm start fine-tunes the serving model, which has already converged.
  # Restarted at the peak rate (RESTART), Adam's first steps threw it out of
  # its minimum, and each candidate landed wherever its shortened decay left
  # it: candidates' next-day MAE moved by about 2% with the seed alone, more
  # than a day of fresher data gains, and the Evaluator refused eight days
  # running. TAIL continues the cold schedule's last steps instead.
  warm_start_schedule: WarmStartSchedule = WarmStartSchedule.TAIL
  # The exported weights are the mean of the weights after each step in the
  # last this fraction of the cold schedule (Polyak/SWA averaging; see
  # averaged_steps): all of a default warm start's; 0: the last step's.
  # One step's weights carry the noise of the last few batches, which the
  # mean averages out: on the operation bench the 02-17 candidate went from
  # 1.8684 to 1.8501 mean next-day MAE. A fraction, not a fixed horizon, so
  # that a run of a few steps averages its own tail, not its start.
  average_last_fraction: float = 0.25
  # Evaluation on the whole eval split when None.
  eval_steps: Optional[int] = None
  epochs: int = 4
  cell_embedding_dim: int = 8
  time_embedding_dim: int = 8
  hidden_units: Sequence[int] = (32, 16)
  # L2 on the quarter-hour refinement; it should only move when data insist.
  slot_of_week_l2: float = 1e-4
  point_forecast: PointForecast = PointForecast.MEDIAN
  # Keras runs this many steps per tf.function call: large speed-up on CPU
  # for a model this small.
  steps_per_execution: int = 50
  seed: int = 0
  # Whether the idle-taxi features (features.SUPPLY_FEATURES) move the
  # forecast. Off by default: where pickups are not held back by too few
  # taxis (the simulator, whose demand ignores its fleet), idle taxis are an
  # effect of demand, not a cause, and fitting them learnt that a venue
  # emptied of taxis by an event would see fewer pickups (one cell's MAE
  # doubled). Turn it on (--hparam use_supply=true) where supply limits the
  # pickups a cell shows.
  use_supply: bool = False
  # The served median's per-cell, hour-of-day correction (MedianShift).
  # Groups whose mean predicted rate is below this keep none: the Poisson
  # median of a low rate is already the median, and their ratios are noise.
  median_shift_min_rate: float = 30.0
  # Nor groups with fewer examples than this (6 days of the day type at
  # 30-minute slots): in a short window one day's event or quirk is the
  # median, and the fitted shift carried it to every later day (a 3-day
  # window served 2% worse with it).
  median_shift_min_examples: int = 12
  # The Poisson loss's label is clipped to λ̂ ± this many sqrt(λ̂) (see
  # ClippedPoisson); 0: the plain Poisson loss. A venue's unforeseeable
  # evening event is tens of standard deviations out in a busy cell, and
  # its pull on the plain loss grows with the cell's count: the busiest
  # cell's first evening slots were fitted to a few window days' events
  # (1.3-1.7x an ordinary evening) and it lost to its seasonal naive.
  poisson_clip_sigmas: float = 5.0

  @classmethod
  def from_dict(cls, overrides: Optional[Mapping[str, Any]]) -> "HParams":
    """HParams defaults with `overrides` applied; unknown keys are an error."""
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
      raise ValueError(f"unknown hyperparameters: {unknown}")
    if "hidden_units" in overrides:
      overrides["hidden_units"] = tuple(overrides["hidden_units"])
    if "use_supply" in overrides and not isinstance(overrides["use_supply"],
                                                    bool):
      raise ValueError(f"use_supply must be true or false, got "
                       f"{overrides['use_supply']!r}")
    if "point_forecast" in overrides:
      overrides["point_forecast"] = PointForecast(overrides["point_forecast"])
    if "warm_start_schedule" in overrides:
      overrides["warm_start_schedule"] = WarmStartSchedule(
          overrides["warm_start_schedule"])
    if not 0.0 <= float(overrides.get("average_last_fraction", 0.0)) <= 1.0:
      raise ValueError(f"average_last_fraction must be in [0, 1], got "
                       f"{overrides['average_last_fraction']!r}")
    return dataclasses.replace(cls(), **overrides)

  def steps(self, warm_started: bool) -> int:
    """Optimiser steps of a run, from scratch or warm-started."""
    if warm_started and self.warm_start_steps:
      return int(self.warm_start_steps)
    return int(self.train_steps)


# Input names (after Transform).
CELL_XF = F.transformed_name(F.CELL)
HOUR_OF_WEEK_XF = F.transformed_name(F.HOUR_OF_WEEK)
SLOT_OF_WEEK_XF = F.transformed_name(F.SLOT_OF_WEEK)
IS_HOLIDAY_XF = F.transformed_name(F.IS_HOLIDAY)
HISTORY_XF = tuple(F.transformed_name(k) for k in F.HISTORY_FEATURES)
CITY_LEVEL_XF = F.transformed_name(F.CITY_LEVEL)
CITY_3H_XF = F.transformed_name(F.CITY_3H)
NOW_XF = F.transformed_name(F.NOW_PICKUPS)
NOW_ELAPSED_XF = F.transformed_name(F.NOW_ELAPSED)
LEAD_XF = F.transformed_name(F.LEAD_MINUTES)
SUPPLY_XF = tuple(F.transformed_name(k) for k in F.SUPPLY_FEATURES)
LABEL_XF = F.transformed_name(F.LABEL)
INPUT_NAMES = (CELL_XF, HOUR_OF_WEEK_XF, SLOT_OF_WEEK_XF, IS_HOLIDAY_XF,
               CITY_LEVEL_XF, CITY_3H_XF, NOW_XF, NOW_ELAPSED_XF,
               LEAD_XF) + HISTORY_XF + SUPPLY_XF

# Layers whose first axis is indexed by the cell vocabulary; warm start remaps
# their rows by token.
CELL_INDEXED_LAYERS = ("cell_bias", "cell_embedding", "cell_lag_weights",
                       "median_shift")
# Global log-rate bias; train() initialises it from the data's mean.
_BIAS_LAYER = "global_bias"
# exp(12) ≈ 160k pickups per slot: far beyond reality, and keeps exp finite.
_MAX_LOG_RATE = 12.0
_MIN_LOG_RATE = -15.0


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class ClippedPoisson(tf.keras.losses.Loss):
  """The Poisson loss with the label clipped to λ̂ ± sigmas·sqrt(λ̂).

  Within the clip it is Keras's Poisson loss, λ̂ - y log λ̂. Beyond it, an
  example pulls log λ̂ as hard as one `sigmas` Poisson standard deviations
  out, however far it lies: ordinary noise (|y - λ̂| <= 5 sqrt(λ̂) but on
  one example in a million) is untouched, while a random 2.5x event in a
  cell of 800 pickups a slot (40 standard deviations) no longer outweighs
  a week of ordinary evenings, so the fit stays near the ordinary level
  where nothing known at issue time reveals the event, and follows it
  where the lags do (the pull keeps its sign until the fit is within the
  clip). The bounds hold no gradient.
  """

  def __init__(self, sigmas: float, name: str = "clipped_poisson", **kwargs):
    super().__init__(name=name, **kwargs)
    self.sigmas = float(sigmas)

  def call(self, y_true, y_pred):
    y_pred = tf.convert_to_tensor(y_pred)
    # Labels come as [batch], rates as [batch, 1].
    y_true = tf.reshape(tf.cast(y_true, y_pred.dtype), tf.shape(y_pred))
    rate = tf.stop_gradient(y_pred)
    half = self.sigmas * tf.sqrt(rate)
    target = tf.clip_by_value(y_true, tf.maximum(rate - half, 0.0),
                              rate + half)
    return tf.reduce_mean(
        y_pred - target * tf.math.log(y_pred + 1e-7), axis=-1)

  def get_config(self) -> Dict[str, Any]:
    return dict(super().get_config(), sigmas=self.sigmas)


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class ClippedExp(tf.keras.layers.Layer):
  """exp(z) with z clipped, so a wild early step cannot overflow to inf."""

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return tf.exp(tf.clip_by_value(inputs, _MIN_LOG_RATE, _MAX_LOG_RATE))


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class NowResidual(tf.keras.layers.Layer):
  """log1p(pickups so far) - log1p(what the seasonal rate expects so far).

  The slot under way has run for a share `elapsed` of its length, so the
  seasonal expectation of its count so far is exp(seasonal) x elapsed, with
  `seasonal` the slot under way's own seasonal log-rate (`RecentSlots`); at
  a slot boundary it is the slot just ended (elapsed 1), its count complete.
  """

  def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    seasonal, now, elapsed = inputs
    expected = tf.math.log1p(
        tf.exp(tf.clip_by_value(tf.stop_gradient(seasonal), _MIN_LOG_RATE,
                                _MAX_LOG_RATE)) * elapsed)
    return now - expected


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class LagResiduals(tf.keras.layers.Layer):
  """log1p(observed lag) - log1p(lag expected from the seasonal log-rate).

  The expectation is exp(seasonal + offset): `seasonal` ([batch, features])
  is the seasonal log-rate of the lag's own slot for lag_1..lag_3
  (`RecentSlots`) and the target's for the others, and the learnt offset
  says how each lag's window differs from that at this hour of the week.
  The seasonal term enters without gradient: it is learnt from the target
  directly, and the residuals only read it.
  """

  def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    seasonal, offsets, history = inputs
    expected = tf.nn.softplus(tf.stop_gradient(seasonal) + offsets)
    return history - expected


# The lags of the slots just before the slot under way, in order: the
# seasonal rate of each is read at its own slot (RecentSlots), so they must
# lead HISTORY_FEATURES, in this order.
_RECENT_LAGS = (F.LAG_1, F.LAG_2, F.LAG_3)
if F.HISTORY_FEATURES[:len(_RECENT_LAGS)] != _RECENT_LAGS:
  raise ImportError("features.HISTORY_FEATURES must start with "
                    f"{_RECENT_LAGS}, the lags RecentSlots locates")
# The slot under way and those lags: the slots RecentSlots locates.
_RECENT_SLOTS = 1 + len(_RECENT_LAGS)
_QUARTER_HOUR_MINUTES = 15
_QUARTER_HOURS_PER_HOUR = 4


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class RecentSlots(tf.keras.layers.Layer):
  """Slot and hour of week ([batch, 4] each) of the slot under way and of
  lag_1..lag_3.

  The slot under way holds the second before the issue time, lead minutes
  before the target slot's start: floor(lead / slot) + 1 slots before the
  target (at 30-minute slots one at leads 0..25, two at 30..55), and lag_j
  j slots before it. Slot of week counts quarter hours (preprocessing), so
  the seasonal embeddings can be read at these slots as at the target's.
  """

  def __init__(self, slot_minutes: int = F.DEFAULT_SLOT_MINUTES, **kwargs):
    super().__init__(**kwargs)
    self.slot_minutes = int(slot_minutes)

  def call(self, inputs: Sequence[tf.Tensor]
           ) -> Tuple[tf.Tensor, tf.Tensor]:
    slot_of_week, lead = inputs
    lead_minutes = tf.cast(lead, tf.int64) * F.LEAD_STEP_MINUTES
    back = lead_minutes // self.slot_minutes + 1
    slots = back[:, None] + tf.range(_RECENT_SLOTS, dtype=tf.int64)[None, :]
    quarters = slots * (self.slot_minutes // _QUARTER_HOUR_MINUTES)
    slot_of_week = tf.math.floormod(
        tf.cast(slot_of_week, tf.int64)[:, None] - quarters,
        F.QUARTER_HOURS_PER_WEEK)
    return slot_of_week, slot_of_week // _QUARTER_HOURS_PER_HOUR

  def get_config(self) -> Dict[str, Any]:
    return dict(super().get_config(), slot_minutes=self.slot_minutes)


# Keras 2's package under TF_USE_LEGACY_KERAS (see keep_autograph_out_of_keras).
_TF_KERAS = "tf_keras"


def keep_autograph_out_of_keras() -> None:
  """Lets AutoGraph call Keras's own code as written, as it did for Keras 2.

  AutoGraph leaves modules named "keras" unconverted, and Keras 2 was
  written to run unconverted. Through tf_keras (TF_USE_LEGACY_KERAS) the
  same code lives in a module AutoGraph does not know, so every trace of a
  train, test or serving function rewrote Keras's train_step, losses,
  metrics, optimizer and functional graph runner: about half of the
  Trainer's wall time on a warm-started day. The graphs, hence the
  trained weights, are the same either way. Idempotent; without the
  private rules module (a TF release that moved it) traces are only slower.
  """
  try:
    from tensorflow.python.autograph.core import config as autograph_config  # noqa: PLC0415
  except ImportError:  # pragma: no cover - a TF release that moved it
    return
  rules = tuple(autograph_config.CONVERSION_RULES)
  if not any(isinstance(rule, autograph_config.DoNotConvert) and
             rule.matches(_TF_KERAS) for rule in rules):
    autograph_config.CONVERSION_RULES = (
        autograph_config.DoNotConvert(_TF_KERAS),) + rules


def build_model(cell_vocab_size: int, hparams: HParams = HParams(),
                warm_started: bool = False,
                slot_minutes: int = F.DEFAULT_SLOT_MINUTES) -> tf.keras.Model:
  """Builds and compiles the Poisson demand model.

  log λ̂ = seasonal + Σ_k (w_k + w_k[cell] + w_k[hour]) r_k
  + (v + v[hour]) · city + u · supply + mlp(cell, how, r, holiday, city),
  where seasonal = b + holiday + cell_bias[cell] + hour_of_week_bias[how]
  + slot_of_week_bias[sow] is the additive structure of the intensity, and
  r_k (`LagResiduals`, `NowResidual`) is how far history feature k sits
  above or below what the seasonal term expects of it (for the slot under
  way and lag_1..lag_3, the seasonal term of their own slots): the
  day-level shift (weather, trend, closures, an evening event already
  under way). Per-cell weights let busy cells,
  whose lags are precise, trust them more than quiet, noisy ones. city holds
  the city-wide level of the last 3 hours (see preprocessing), which reveals
  the day's weather far more precisely than one cell's lags. supply is
  log1p of the idle taxis in the cell now and over the last hour.

  Args:
    cell_vocab_size: rows of the cell embeddings, including OOV buckets.
    hparams: model and optimiser settings.
    warm_started: whether `train` will start it from a previous model: its
      optimiser is then set for hparams.steps(True) steps, on the schedule
      hparams.warm_start_schedule names.
    slot_minutes: the slot length of the examples (where the slot under way
      and the lags lie before the target; see RecentSlots).

  Returns:
    A compiled Keras model mapping the transformed feature dict to the
    predicted rate λ̂, shape [batch, 1], float32, >= 0.
  """
  keep_autograph_out_of_keras()
  tf.keras.utils.set_random_seed(hparams.seed)
  inputs = {
      CELL_XF: tf.keras.Input(shape=(), name=CELL_XF, dtype=tf.int64),
      HOUR_OF_WEEK_XF: tf.keras.Input(
          shape=(), name=HOUR_OF_WEEK_XF, dtype=tf.int64),
      SLOT_OF_WEEK_XF: tf.keras.Input(
          shape=(), name=SLOT_OF_WEEK_XF, dtype=tf.int64),
      IS_HOLIDAY_XF: tf.keras.Input(
          shape=(), name=IS_HOLIDAY_XF, dtype=tf.float32),
      CITY_LEVEL_XF: tf.keras.Input(
          shape=(), name=CITY_LEVEL_XF, dtype=tf.float32),
      CITY_3H_XF: tf.keras.Input(
          shape=(), name=CITY_3H_XF, dtype=tf.float32),
      NOW_XF: tf.keras.Input(shape=(), name=NOW_XF, dtype=tf.float32),
      NOW_ELAPSED_XF: tf.keras.Input(
          shape=(), name=NOW_ELAPSED_XF, dtype=tf.float32),
      LEAD_XF: tf.keras.Input(shape=(), name=LEAD_XF, dtype=tf.int64),
  }
  for name in HISTORY_XF + SUPPLY_XF:
    inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
  n_history = len(HISTORY_XF)

  def zeros_embedding(name, size, dim=1, l2=0.0):
    return tf.keras.layers.Embedding(
        size, dim, name=name, embeddings_initializer="zeros",
        embeddings_regularizer=tf.keras.regularizers.L2(l2) if l2 else None)

  cell, how, sow = (inputs[CELL_XF], inputs[HOUR_OF_WEEK_XF],
                    inputs[SLOT_OF_WEEK_XF])
  holiday = tf.keras.layers.Reshape((1,), name="holiday")(inputs[IS_HOLIDAY_XF])
  city_level = tf.keras.layers.Concatenate(name="city_level")(
      [tf.keras.layers.Reshape((1,))(inputs[n])
       for n in (CITY_LEVEL_XF, CITY_3H_XF)])
  history = tf.keras.layers.Concatenate(name="history")(
      [tf.keras.layers.Reshape((1,))(inputs[n]) for n in HISTORY_XF])

  global_bias = tf.keras.layers.Dense(1, name=_BIAS_LAYER,
                                      kernel_initializer="zeros")
  cell_bias = zeros_embedding("cell_bias", cell_vocab_size)
  hour_of_week_bias = zeros_embedding("hour_of_week_bias", F.HOURS_PER_WEEK)
  slot_of_week_bias = zeros_embedding(
      "slot_of_week_bias", F.QUARTER_HOURS_PER_WEEK,
      l2=hparams.slot_of_week_l2)
  seasonal = tf.keras.layers.Add(name="seasonal")([
      global_bias(holiday), cell_bias(cell), hour_of_week_bias(how),
      slot_of_week_bias(sow)])
  # The slot under way and lag_1..lag_3 lie one slot further back from lead
  # 30 on than at leads 0..25. Measured against the target's seasonal rate,
  # their residuals carried the seasonal ramp from their slot to the
  # target's, which differs between the two halves of the leads, and every
  # weight that multiplies them (per cell, per hour, the deep part) had to
  # undo a ramp of either size: on a replayed day, lead 25 was 12.6% worse
  # than lead 30, whose information it holds, worst in the steep night
  # hours of the busiest cells. Each is measured against its own slot's
  # seasonal rate instead: the same embeddings, read at that slot.
  recent_sow, recent_how = RecentSlots(slot_minutes, name="recent_slots")(
      [sow, inputs[LEAD_XF]])
  recent_seasonal = tf.keras.layers.Add(name="recent_seasonal")([
      global_bias(holiday), cell_bias(cell),
      tf.keras.layers.Reshape((_RECENT_SLOTS,))(
          hour_of_week_bias(recent_how)),
      tf.keras.layers.Reshape((_RECENT_SLOTS,))(
          slot_of_week_bias(recent_sow))])
  lag_seasonal = tf.keras.layers.Concatenate(name="lag_seasonal")(
      [recent_seasonal[:, 1:],
       tf.tile(seasonal, [1, n_history - len(_RECENT_LAGS)])])
  offsets = zeros_embedding("lag_offset", F.HOURS_PER_WEEK, n_history)(how)
  lag_residuals = LagResiduals(name="lag_residuals")(
      [lag_seasonal, offsets, history])
  now_residual = NowResidual(name="now_residual")([
      recent_seasonal[:, :1], tf.keras.layers.Reshape((1,))(inputs[NOW_XF]),
      tf.keras.layers.Reshape((1,))(inputs[NOW_ELAPSED_XF])])
  residuals = tf.keras.layers.Concatenate(name="residuals")(
      [lag_residuals, now_residual])
  # How far each residual carries depends on how far ahead the target is.
  # The lead enters through a fixed piecewise-linear basis (lead_basis), so
  # that its effect is smooth in the lead: free weights per 5-minute step
  # see a twelfth of the examples each and learn noise (a replay measured
  # lead 50 worse than both 45 and 55).
  lead = tf.keras.layers.Embedding(
      F.N_LEADS, len(LEAD_KNOTS_MINUTES), name="lead_basis",
      embeddings_initializer=tf.keras.initializers.Constant(lead_basis()),
      trainable=False)(inputs[LEAD_XF])
  lead_lag = tf.keras.layers.Dot(axes=1, name="lead_lag")([
      tf.keras.layers.Dense(n_history + 1, use_bias=False,
                            kernel_initializer="zeros",
                            name="lead_lag_weights")(lead),
      residuals])

  lag_linear = tf.keras.layers.Dense(
      1, name="lag_linear", use_bias=False,
      kernel_initializer="zeros")(residuals)
  # The day's weather scales every cell alike: one weight for all cells.
  city_linear = tf.keras.layers.Dense(
      1, name="city_linear", use_bias=False,
      kernel_initializer="zeros")(city_level)
  # Idle taxis: where pickups are held back by too few taxis, the count a
  # cell shows departs from its demand. One zero-initialised weight each,
  # outside the deep part, trained only with hparams.use_supply: otherwise
  # they stay 0 and the forecast is the model's without them.
  supply = tf.keras.layers.Concatenate(name="supply")(
      [tf.keras.layers.Reshape((1,))(inputs[n]) for n in SUPPLY_XF])
  supply_linear = tf.keras.layers.Dense(
      1, name="supply_linear", use_bias=False, kernel_initializer="zeros",
      trainable=bool(hparams.use_supply))(supply)
  cell_lag = tf.keras.layers.Dot(axes=1, name="cell_lag")([
      zeros_embedding("cell_lag_weights", cell_vocab_size, n_history + 1)(
          cell), residuals])
  # How far a departure carries depends on the target's time of day: a
  # venue's evening crowd ends with the evening, and the slots before a
  # night target belong to the day before. With one weight per residual for
  # every hour, the busiest cell's evening event carried into the night
  # (00:00 forecast 406 pickups, 193 came; its seasonal naive was off by
  # 33), and that cell lost to its naive on the day after. 24 rows: each
  # is learnt from every cell and day of the week.
  hour_of_day = tf.math.floormod(how, 24)
  hour_lag = tf.keras.layers.Dot(axes=1, name="hour_lag")([
      zeros_embedding("hour_lag_weights", 24, n_history + 1 + 2)(
          hour_of_day),
      tf.keras.layers.Concatenate(name="carried")([residuals, city_level])])

  cell_emb = tf.keras.layers.Embedding(
      cell_vocab_size, hparams.cell_embedding_dim, name="cell_embedding")(cell)
  how_emb = tf.keras.layers.Embedding(
      F.HOURS_PER_WEEK, hparams.time_embedding_dim,
      name="hour_of_week_embedding")(how)
  deep = tf.keras.layers.Concatenate(name="deep_input")(
      [cell_emb, how_emb, lead, residuals, holiday, city_level])
  for i, units in enumerate(hparams.hidden_units):
    deep = tf.keras.layers.Dense(units, activation="relu",
                                 name=f"hidden_{i}")(deep)
  # Zero-initialised so training starts from the seasonal model.
  deep_out = tf.keras.layers.Dense(1, name="deep_out",
                                   kernel_initializer="zeros")(deep)

  log_rate = tf.keras.layers.Add(name="log_rate")(
      [seasonal, lag_linear, lead_lag, city_linear, supply_linear, cell_lag,
       hour_lag, deep_out])
  rate = ClippedExp(name="rate")(log_rate)
  model = tf.keras.Model(inputs=inputs, outputs=rate)
  steps = hparams.steps(warm_started)
  # Outside the graph of λ̂: it moves only the served median (served_point),
  # and it is fitted after training (fit_median_shift), not by the loss.
  model.median_shift = MedianShift(cell_vocab_size, name="median_shift")
  model.compile(
      optimizer=TailAveragedAdam(
          average_steps=averaged_steps(hparams, warm_started),
          total_steps=steps,
          learning_rate=learning_rate_schedule(hparams, warm_started)),
      loss=(ClippedPoisson(hparams.poisson_clip_sigmas)
            if hparams.poisson_clip_sigmas else tf.keras.losses.Poisson()),
      metrics=[tf.keras.metrics.MeanAbsoluteError(name="mae"),
               tf.keras.metrics.RootMeanSquaredError(name="rmse")],
      steps_per_execution=hparams.steps_per_execution)
  return model


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class ShiftedSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
  """`schedule` from its step `offset` on: the tail of a longer schedule."""

  def __init__(self, schedule: tf.keras.optimizers.schedules.LearningRateSchedule,
               offset: int):
    self.schedule = schedule
    self.offset = int(offset)

  def __call__(self, step):
    return self.schedule(step + self.offset)

  def get_config(self) -> Dict[str, Any]:
    return {"schedule": tf.keras.optimizers.schedules.serialize(
        self.schedule), "offset": self.offset}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["schedule"] = tf.keras.optimizers.schedules.deserialize(
        config["schedule"])
    return cls(**config)


def learning_rate_schedule(
    hparams: HParams, warm_started: bool = False
) -> tf.keras.optimizers.schedules.LearningRateSchedule:
  """The learning rate by step of a run from scratch or warm-started.

  From scratch: cosine decay from learning_rate to its
  final_learning_rate_fraction over train_steps. A warm start of n steps
  runs the last n steps of that decay (WarmStartSchedule.TAIL), or the
  whole decay squeezed into n steps (RESTART).
  """
  steps = hparams.steps(warm_started)
  cold_steps = hparams.train_steps
  if (not warm_started or
      hparams.warm_start_schedule is WarmStartSchedule.RESTART):
    cold_steps = steps
  cold = tf.keras.optimizers.schedules.CosineDecay(
      hparams.learning_rate, max(cold_steps, steps, 1),
      alpha=hparams.final_learning_rate_fraction)
  offset = max(cold_steps - steps, 0)
  return ShiftedSchedule(cold, offset) if offset else cold


def averaged_steps(hparams: HParams, warm_started: bool = False) -> int:
  """How many of a run's last steps its exported weights are the mean of.

  Those in the last average_last_fraction of the cold schedule, where its
  learning rate is low and the weights only wander about their optimum:
  averaged from higher rates, the mean lagged behind a run still
  descending. A warm start on the schedule's tail (TAIL) averages those of
  its steps that lie there; one that restarts the schedule (RESTART) the
  same share of its own steps.
  """
  steps = hparams.steps(warm_started)
  schedule_steps = max(hparams.train_steps, steps)
  if warm_started and (
      hparams.warm_start_schedule is WarmStartSchedule.RESTART):
    schedule_steps = steps
  return min(round(hparams.average_last_fraction * schedule_steps), steps)


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class TailAveragedAdam(tf.keras.optimizers.Adam):
  """Adam whose final weights are the mean over the last steps of the run.

  Keras's own EMA (use_ema) keeps `m * average + (1 - m) * weights` from
  the weights the run starts with: a fixed horizon that, in a run of a few
  steps, leaves the result dragged toward its initial weights. This keeps
  the uniform mean of the weights after each of the last `average_steps`
  of `total_steps` (before them the average just follows the weights), and
  Keras's fit writes it into the model when the run ends
  (`finalize_variable_values`). A run shorter than total_steps averages
  only the steps of the window it reaches.
  """

  def __init__(self, average_steps: int, total_steps: int, **kwargs):
    kwargs.pop("use_ema", None)
    super().__init__(use_ema=average_steps > 0, **kwargs)
    self.average_steps = int(average_steps)
    self.total_steps = int(total_steps)

  def _update_model_variables_moving_average(self, var_list):
    # iterations counts the steps before this one: the weights are those
    # after step iterations + 1, the k-th of the averaged window.
    k = tf.cast(self.iterations + 1 - (self.total_steps - self.average_steps),
                tf.float32)
    weight = 1.0 / tf.maximum(k, 1.0)

    def update_average(average, var):
      average.assign_add(tf.cast(weight, var.dtype) * (var - average))

    for var in var_list:
      average = self._model_variables_moving_average[
          self._index_dict[self._var_key(var)]]
      self._distribution_strategy.extended.update(
          average, update_average, args=(var,), group=False)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.pop("use_ema", None)
    config.update(average_steps=self.average_steps,
                  total_steps=self.total_steps)
    return config


# Knots of the lead basis, in minutes, for the default 30-minute slots. The
# ticks from a slot boundary (0, 30: the slot just ended is complete) to the
# last one before the next (25, 55) share one slot under way and the same
# lags, and vary smoothly between; from 25 to 30 the slot under way and
# every lag move one slot back, a regime of its own.
LEAD_KNOTS_MINUTES = (0, 25, 30, 55)


def lead_basis() -> np.ndarray:
  """[N_LEADS, knots]: each lead step's hat-function weights on the knots."""
  knots = np.asarray(LEAD_KNOTS_MINUTES, dtype=float)
  leads = np.arange(F.N_LEADS) * F.LEAD_STEP_MINUTES
  basis = np.zeros((F.N_LEADS, len(knots)), np.float32)
  for i, lead in enumerate(leads):
    j = min(int(np.searchsorted(knots, lead, side="right")) - 1,
            len(knots) - 2)
    t = (lead - knots[j]) / (knots[j + 1] - knots[j])
    basis[i, j], basis[i, j + 1] = 1 - t, t
  return basis


def poisson_median(rate: tf.Tensor) -> tf.Tensor:
  """Exact median of Poisson(rate), elementwise, as float32.

  The median lies in [rate - ln 2, rate + 1/3) (Choi, 1994), so it is either
  k0 = ceil(rate - ln 2) or k0 + 1; one regularised incomplete gamma call
  (P(Y <= k) = Q(k + 1, rate)) decides which.
  """
  rate = tf.maximum(tf.cast(rate, tf.float32), 0.0)
  k0 = tf.maximum(tf.math.ceil(rate - math.log(2.0)), 0.0)
  cdf_k0 = tf.math.igammac(k0 + 1.0, rate)
  return tf.where(cdf_k0 >= 0.5, k0, k0 + 1.0)


def point_forecast(rate: tf.Tensor, kind: PointForecast) -> tf.Tensor:
  """The served point forecast for predicted rates `rate`."""
  kind = PointForecast(kind)
  if kind is PointForecast.MEDIAN:
    return poisson_median(rate)
  return tf.cast(rate, tf.float32)


@tf.keras.utils.register_keras_serializable(package="taxi_demand")
class MedianShift(tf.keras.layers.Layer):
  """log(served median / λ̂) per cell and hour of the day (weekdays apart
  from weekends); 0 until fitted.

  The Poisson loss fits λ̂ to the conditional mean. Where demand is a
  mixture that nothing known at issue time separates, the mean is not where
  a Poisson around it puts the median: a venue whose evenings are x2.5 on
  15% of days, at random, has a mean 1.22x its usual evening, and the
  Poisson median of that mean over-predicts the 85% of ordinary evenings
  (the busiest cell lost to its seasonal naive on such days). The absolute
  error the forecast is judged by is minimised by the median, so the
  served forecast is the Poisson median of λ̂ x exp(shift).
  """

  def __init__(self, cell_vocab_size: int, **kwargs):
    super().__init__(trainable=False, **kwargs)
    self.cell_vocab_size = cell_vocab_size
    with tf.name_scope(self.name):
      self.shift = self.add_weight(
          name="shift", shape=(cell_vocab_size, _DAY_HOURS),
          initializer="zeros", trainable=False)

  def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    cell, hour_of_week = inputs
    return tf.gather_nd(self.shift, tf.stack(
        [tf.cast(cell, tf.int64), day_hour(tf.cast(hour_of_week, tf.int64))],
        axis=-1))

  def get_config(self) -> Dict[str, Any]:
    return dict(super().get_config(), cell_vocab_size=self.cell_vocab_size)


_HOURS_PER_DAY = 24
# A weekend's hours (nights out, no commute) are a day type of their own.
_DAY_HOURS = 2 * _HOURS_PER_DAY


def day_hour(hour_of_week):
  """Hour of the day, plus 24 on a weekend: MedianShift's column.

  Hour of week 0 is Sunday 00:00 (features.DAY_OF_WEEK 1 = Sunday), so
  days 0 and 6 are the weekend. Works on tensors and numpy arrays alike.
  """
  day = hour_of_week // _HOURS_PER_DAY
  weekend = (day == 0) | (day == 6)
  return hour_of_week % _HOURS_PER_DAY + _HOURS_PER_DAY * (
      tf.cast(weekend, hour_of_week.dtype) if tf.is_tensor(hour_of_week)
      else weekend.astype(hour_of_week.dtype))


def served_point(model: tf.keras.Model, inputs: Mapping[str, tf.Tensor],
                 rate: tf.Tensor, kind: PointForecast) -> tf.Tensor:
  """The point forecast served for `model`'s rates `rate` ([batch]) at
  `inputs`: the median corrected by the model's MedianShift, or the mean."""
  if PointForecast(kind) is PointForecast.MEDIAN:
    shift = model.median_shift([inputs[CELL_XF], inputs[HOUR_OF_WEEK_XF]])
    rate = tf.cast(rate, tf.float32) * tf.exp(tf.reshape(shift, [-1]))
  return point_forecast(rate, kind)


def fit_median_shift(model: tf.keras.Model, dataset: tf.data.Dataset,
                     hparams: HParams = HParams()) -> np.ndarray:
  """Sets `model.median_shift` from one pass over the training window.

  For each cell and `day_hour`, the shift is log of the rate-weighted
  median of label / λ̂: the factor s minimising Σ|y - s λ̂| (the absolute
  error of the served forecast), so that the served forecast sits at the
  median of what came. Groups with a mean λ̂ under
  `hparams.median_shift_min_rate`, or fewer examples than
  `hparams.median_shift_min_examples`, keep 0.

  Args:
    model: a trained model from `build_model`.
    dataset: finite batches of (transformed features, label), each
      example once: a repeated one would count its examples again.
    hparams: the thresholds above.

  Returns:
    The shift set, [cell_vocab_size, 48].
  """
  # One traced step for all batches (whatever their size: the last of each
  # day is short): eager calls cost seconds a run.
  @tf.function(autograph=False, reduce_retracing=True)
  def step(features, label):
    return (tf.reshape(model(features, training=False), [-1]),
            features[CELL_XF], day_hour(features[HOUR_OF_WEEK_XF]),
            tf.reshape(label, [-1]))

  batches = [[np.asarray(t) for t in step(*batch)] for batch in dataset]
  rate, cell, hour, label = (
      np.concatenate([b[i] for b in batches]).astype(t)
      for i, t in enumerate((float, np.int64, np.int64, float)))
  shift = np.zeros(model.median_shift.shift.shape, np.float32)
  group = cell * _DAY_HOURS + hour
  # Only the groups that can pass both thresholds are sorted and searched
  # (on the 500 m grid, a few of 70k): the rest keep 0 as they would below.
  # The slack keeps a group whose mean sits at the threshold up to rounding.
  counts = np.bincount(group, minlength=shift.size)
  rate_sums = np.bincount(group, weights=rate, minlength=shift.size)
  candidates = ((counts >= hparams.median_shift_min_examples) &
                (rate_sums >= hparams.median_shift_min_rate * counts *
                 (1.0 - 1e-9)))
  kept = np.flatnonzero(candidates[group])
  rate, group = rate[kept], group[kept]
  ratio = label[kept] / np.maximum(rate, 1e-9)
  order = np.lexsort((ratio, group))
  starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
  for rows in np.split(order, starts[1:]) if len(order) else ():
    if (len(rows) < hparams.median_shift_min_examples or
        rate[rows].mean() < hparams.median_shift_min_rate):
      continue
    weights = np.cumsum(rate[rows])
    median = ratio[rows][np.searchsorted(weights, weights[-1] / 2)]
    shift.flat[group[rows[0]]] = math.log(max(median, 1e-3))
  model.median_shift.shift.assign(shift)
  return shift


def _variable_key(variable: tf.Variable) -> str:
  return variable.name.split(":")[0]


def saved_weights(path: str) -> Dict[str, np.ndarray]:
  """Variable values of a Keras model saved as a SavedModel, by name.

  A model saved with Keras's layer traces (tf.saved_model.save, as models
  were before trainer.export) loads as a Keras-like object that lists its
  variables; one saved without them is a plain object whose variables are
  found by walking what it tracks.
  """
  loaded = tf.saved_model.load(path)
  variables = getattr(loaded, "variables", None)
  if variables is None:
    variables = [v for v in tf.train.TrackableView(loaded).descendants()
                 if isinstance(v, tf.Variable)]
  return {_variable_key(v): v.numpy() for v in variables}


# For each row of a new cell-indexed layer, the old row it starts from.
RowMap = Sequence[int] | np.ndarray


def warm_start(model: tf.keras.Model,
               source: str | Mapping[str, np.ndarray],
               row_maps: Optional[Mapping[str, RowMap]] = None
               ) -> List[str]:
  """Initialises `model`'s weights from a previous model where they match.

  A weight is copied when a variable of the same name (e.g.
  "hidden_0/kernel") and shape exists in the source. Weights whose shapes
  differ are skipped, except for layers named in `row_maps`: for those, row i
  of the new weight takes row row_maps[layer][i] of the old one (-1 keeps the
  fresh initialisation). This is how a grown or reordered cell vocabulary
  keeps each known cell's embedding. Optimiser state is not copied.

  Args:
    model: a model from `build_model`.
    source: a SavedModel path of a previous model, or its `saved_weights`.
    row_maps: per layer name, new row -> old row index.

  Returns:
    The names of the variables that were (at least partly) initialised.
  """
  copied = []
  for variable, value in _warm_values(model, source, row_maps):
    variable.assign(value)
    copied.append(_variable_key(variable))
  return copied


def warm_start_gaps(model: tf.keras.Model,
                    source: str | Mapping[str, np.ndarray],
                    row_maps: Optional[Mapping[str, RowMap]] = None
                    ) -> List[str]:
  """The trainable variables of `model` that `warm_start` from `source`
  would leave as initialised: none when `source` is a model of the same
  build (a grown cell vocabulary included, through `row_maps`). A model of
  another build (a layer added, resized or renamed by a new version of this
  code) leaves some, and a warm start's few steps at its small rates do
  not train them."""
  found = {id(variable) for variable, _ in _warm_values(model, source,
                                                         row_maps)}
  return [_variable_key(v) for v in model.trainable_weights
          if id(v) not in found]


def _warm_values(model: tf.keras.Model,
                 source: str | Mapping[str, np.ndarray],
                 row_maps: Optional[Mapping[str, RowMap]] = None
                 ) -> List[Tuple[tf.Variable, np.ndarray]]:
  """(variable, its warm-start value) for each of `model`'s variables that
  `source` has a match for (see `warm_start`)."""
  old = saved_weights(source) if isinstance(source, str) else dict(source)
  row_maps = dict(row_maps or {})
  values = []
  for variable in model.weights:
    key = _variable_key(variable)
    if key not in old:
      continue
    value = old[key]
    layer = key.split("/")[0]
    if layer in row_maps:
      rows = np.asarray(row_maps[layer], dtype=np.int64)
      if rows.shape[0] != variable.shape[0] or value.shape[1:] != tuple(
          variable.shape[1:]):
        continue
      new = variable.numpy()
      known = (rows >= 0) & (rows < value.shape[0])
      new[known] = value[rows[known]]
      values.append((variable, new))
    elif tuple(value.shape) == tuple(variable.shape):
      values.append((variable, value))
  return values


def _initialise_bias(model: tf.keras.Model, train_ds: tf.data.Dataset) -> None:
  """Starts the global log-rate at log(mean label) of one batch."""
  _, labels = next(iter(train_ds.take(1)))
  mean = float(tf.reduce_mean(tf.cast(labels, tf.float32)))
  model.get_layer(_BIAS_LAYER).bias.assign([math.log(max(mean, 1e-3))])


def _count_batches(ds: tf.data.Dataset) -> int:
  """Batches in a finite dataset (one pass when its size is unknown)."""
  n = int(ds.cardinality())
  if n == tf.data.INFINITE_CARDINALITY:
    raise ValueError("eval dataset is infinite: pass eval_steps")
  if n < 0:
    n = int(ds.reduce(0, lambda count, _: count + 1))
  return max(n, 1)


def train(model: tf.keras.Model,
          train_ds: tf.data.Dataset,
          eval_ds: Optional[tf.data.Dataset],
          hparams: HParams = HParams(),
          train_steps: Optional[int] = None,
          eval_steps: Optional[int] = None,
          warm_start_from: str | Mapping[str, np.ndarray] | None = None,
          warm_start_row_maps: Optional[Mapping[str, RowMap]] = None,
          callbacks: Sequence[tf.keras.callbacks.Callback] = (),
          ) -> tf.keras.callbacks.History:
  """Trains `model` in place.

  Args:
    model: from `build_model`.
    train_ds: batches of (transformed feature dict, label); repeated here,
      so a finite dataset is fine.
    eval_ds: finite batches like train_ds, or None.
    hparams: epochs and default step counts.
    train_steps: total optimiser steps; hparams.steps(warm-started) when
      None. The learning-rate schedule and the averaged window were built
      for that number, so pass the same to `build_model` via hparams.
    eval_steps: evaluation batches per epoch; the whole eval_ds when None.
    warm_start_from: path of a previous SavedModel to initialise from, or
      its `saved_weights` (see `warm_start`); when None the global bias
      starts at log(mean label).
      Build the model with warm_started=True for the warm-start schedule.
    warm_start_row_maps: passed to `warm_start`.
    callbacks: extra Keras callbacks.

  Returns:
    The Keras History.
  """
  steps = int(train_steps or hparams.steps(bool(warm_start_from)))
  epochs = max(1, min(hparams.epochs, steps))
  if warm_start_from:
    warm_start(model, warm_start_from, warm_start_row_maps)
  else:
    _initialise_bias(model, train_ds)
  eval_steps = eval_steps or hparams.eval_steps
  if eval_ds is not None and not eval_steps:
    eval_steps = _count_batches(eval_ds)
  # The optimizer's slots, made now rather than by the first train step:
  # variables made while tf.function traces that step make it trace the
  # whole step again (the second trace may not create any), several
  # seconds a run. The same zeros either way, so the same weights.
  model.optimizer.build(model.trainable_variables)
  return model.fit(
      train_ds.repeat(),
      epochs=epochs,
      steps_per_epoch=max(1, steps // epochs),
      validation_data=eval_ds.repeat() if eval_ds is not None else None,
      validation_steps=eval_steps,
      callbacks=[_LogEpochs()] + list(callbacks),
      # Keras writes progress to stdout; the console belongs to the runner's
      # one line per component, so epochs go to the log file instead.
      verbose=0)


class _LogEpochs(tf.keras.callbacks.Callback):
  """Logs each epoch's metrics through `logging` (the run's log file)."""

  def on_epoch_end(self, epoch, logs=None):
    logging.info("epoch %d: %s", epoch + 1, ", ".join(
        f"{k}={v:.4f}" for k, v in sorted((logs or {}).items())))
