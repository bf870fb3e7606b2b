"""Tests for the Keras demand model on hand-made transformed rows, no TFX."""

import dataclasses

import numpy as np
import pytest
import scipy.stats

import taxi_demand  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
import tensorflow as tf

from taxi_demand.modeling import model as M

_N_CELLS = 5
_FAST = M.HParams(train_steps=120, epochs=2, batch_size=64,
                  steps_per_execution=10, learning_rate=0.03)


def _rows(n: int = 1024, seed: int = 0):
  """Transformed features and Poisson labels with a multiplicative rate."""
  rng = np.random.default_rng(seed)
  cell = rng.integers(0, _N_CELLS, n)
  how = rng.integers(0, 168, n)
  # The day's city-wide level (weather) scales every cell alike.
  level = rng.normal(0.0, 0.3, n)
  rate = np.array([0.2, 1.0, 3.0, 8.0, 20.0])[cell] * (
      1.0 + 0.8 * np.sin(how / 168 * 2 * np.pi)) * np.exp(level)
  features = {
      M.CELL_XF: cell.astype(np.int64),
      M.HOUR_OF_WEEK_XF: how.astype(np.int64),
      M.SLOT_OF_WEEK_XF: (how * 4 + rng.integers(0, 4, n)).astype(np.int64),
      M.IS_HOLIDAY_XF: np.zeros(n, np.float32),
      M.CITY_LEVEL_XF: level.astype(np.float32),
      M.CITY_3H_XF: level.astype(np.float32),
  }
  for name in M.HISTORY_XF:
    features[name] = np.log1p(rng.poisson(rate)).astype(np.float32)
  # The slot under way: a share of it gone by, and its pickups so far.
  elapsed = rng.integers(1, 7, n) / 6  # 1: at a boundary, complete
  features[M.NOW_ELAPSED_XF] = elapsed.astype(np.float32)
  features[M.NOW_XF] = np.log1p(rng.poisson(rate * elapsed)).astype(
      np.float32)
  features[M.LEAD_XF] = rng.integers(0, 12, n).astype(np.int64)
  for name in M.SUPPLY_XF:
    features[name] = np.log1p(rng.poisson(3.0, n)).astype(np.float32)
  labels = rng.poisson(rate).astype(np.float32)
  return features, labels


def _dataset(features, labels, batch_size=64):
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(
      batch_size)


@pytest.mark.slow
def test_training_lowers_poisson_loss_and_predicts_non_negative_rates():
  features, labels = _rows()
  ds = _dataset(features, labels)
  model = M.build_model(_N_CELLS, _FAST)
  before = model.evaluate(ds, verbose=0)[0]
  history = M.train(model, ds, ds, _FAST)
  after = model.evaluate(ds, verbose=0)[0]
  assert after < before - 0.3
  assert history.history["val_loss"][-1] < history.history["val_loss"][0]
  rate = model.predict(features, verbose=0)
  assert rate.shape == (len(labels), 1)
  assert np.all(np.isfinite(rate)) and np.all(rate >= 0)
  # The cell effect (0.2 .. 20 pickups) is learnt in the right order.
  by_cell = [rate[features[M.CELL_XF] == c].mean() for c in range(_N_CELLS)]
  assert by_cell == sorted(by_cell)
  # A busier city (same lags otherwise) means more pickups.
  busy, quiet = dict(features), dict(features)
  for name in (M.CITY_LEVEL_XF, M.CITY_3H_XF):
    busy[name] = np.full_like(features[name], 0.5)
    quiet[name] = np.full_like(features[name], -0.5)
  assert (model.predict(busy, verbose=0).mean() >
          model.predict(quiet, verbose=0).mean())


def _without_tf_keras_rule(rules):
  from tensorflow.python.autograph.core import config as autograph_config  # noqa: PLC0415
  return tuple(r for r in rules if not (
      isinstance(r, autograph_config.DoNotConvert) and r.matches("tf_keras")))


@pytest.mark.slow
def test_keras_runs_unconverted_by_autograph_and_trains_the_same(
    monkeypatch):
  """AutoGraph rewrote all of tf_keras at every trace (half the Trainer's
  wall time); left as written, as Keras 2 was, it trains the same weights."""
  from tensorflow.python.autograph.core import config as autograph_config  # noqa: PLC0415
  from tensorflow.python.autograph.impl import conversion  # noqa: PLC0415
  features, labels = _rows(256)
  hparams = dataclasses.replace(_FAST, train_steps=20, epochs=1)

  def trained_weights():
    model = M.build_model(_N_CELLS, hparams)
    M.train(model, _dataset(features, labels), None, hparams)
    return [w.numpy() for w in model.weights]

  monkeypatch.setattr(autograph_config, "CONVERSION_RULES",
                      _without_tf_keras_rule(autograph_config.CONVERSION_RULES))
  with monkeypatch.context() as converting:
    converting.setattr(M, "keep_autograph_out_of_keras", lambda: None,
                       raising=False)
    converted = trained_weights()
    assert not conversion.is_allowlisted(tf.keras.Model.train_step)
  as_written = trained_weights()
  assert conversion.is_allowlisted(tf.keras.Model.train_step)
  for a, b in zip(converted, as_written):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_train_step_is_traced_once_and_trains_the_same():
  """The optimizer's slots are made before fit: made by the first step,
  they made tf.function trace the whole step twice (seconds a run). The
  weights are those of the optimizer left to make them itself."""
  features, labels = _rows(256)
  hparams = dataclasses.replace(_FAST, train_steps=20, epochs=1)

  def trained(model):
    M.train(model, _dataset(features, labels), None, hparams)
    return model.train_function.experimental_get_tracing_count(), [
        w.numpy() for w in model.weights]

  traces, weights = trained(M.build_model(_N_CELLS, hparams))
  assert traces == 1
  lazy = M.build_model(_N_CELLS, hparams)
  build = lazy.optimizer.build
  calls = []

  def left_to_the_first_step(var_list):
    calls.append(len(var_list))
    if len(calls) > 1:  # the train step's own, as before
      build(var_list)

  lazy.optimizer.build = left_to_the_first_step
  lazy_traces, lazy_weights = trained(lazy)
  assert len(calls) > 1 and lazy_traces == 2  # the reference: the old way
  for a, b in zip(weights, lazy_weights):
    np.testing.assert_array_equal(a, b)


def test_rate_stays_finite_for_extreme_inputs():
  model = M.build_model(_N_CELLS, _FAST)
  lag_linear = model.get_layer("lag_linear").kernel
  lag_linear.assign(np.full(lag_linear.shape, 1e3))
  features, _ = _rows(8)
  rate = model.predict(features, verbose=0)
  assert np.all(np.isfinite(rate)) and np.all(rate > 0)


def test_the_slot_under_way_and_the_lags_are_read_against_their_own_slots():
  """At lead 25 the slot under way is the target's previous slot, from lead
  30 on the one before (lag_1 at lead 25): measured against the target's
  seasonal rate, each residual carried the ramp between its slot and the
  target's, a ramp of another size in each half of the leads, and lead 25
  scored 12.6% worse than lead 30 on a replayed day. Counts at their own
  slots' seasonal rate are no departure at either lead, the week's first
  slot included (its earlier slots are the end of the week)."""
  model = M.build_model(_N_CELLS, _FAST)
  slot_bias = model.get_layer("slot_of_week_bias").embeddings
  target, sow_25, sow_30 = 100.0, 40.0, 10.0
  bias = np.zeros(slot_bias.shape, np.float32)
  for sow in (8, 0):  # Sunday 02:00 and 00:00
    bias[sow] = np.log(target)
    bias[(sow - 2) % bias.shape[0]] = np.log(sow_25)
    bias[(sow - 4) % bias.shape[0]] = np.log(sow_30)
  slot_bias.assign(bias)
  residuals = tf.keras.Model(model.inputs, [
      model.get_layer("now_residual").output,
      model.get_layer("lag_residuals").output])
  sow = np.array([8, 8, 0, 0], np.int64)
  lead = np.array([5, 6, 5, 6], np.int64)  # 25 and 30 minutes
  elapsed = np.array([1 / 6, 1.0, 1 / 6, 1.0], np.float32)
  now = np.log1p(np.where(lead == 5, sow_25, sow_30) * elapsed)
  features = {name: np.zeros(4, np.float32) for name in M.INPUT_NAMES}
  features.update({
      M.CELL_XF: np.zeros(4, np.int64), M.SLOT_OF_WEEK_XF: sow,
      M.HOUR_OF_WEEK_XF: sow // 4, M.LEAD_XF: lead,
      M.NOW_ELAPSED_XF: elapsed, M.NOW_XF: now.astype(np.float32)})
  # lag_1 at lead 25 is the slot under way at lead 30.
  features[M.HISTORY_XF[0]] = np.log1p(
      np.where(lead == 5, sow_30, 1.0)).astype(np.float32)
  now_residual, lag_residuals = residuals(features)
  np.testing.assert_allclose(now_residual.numpy()[:, 0], 0.0, atol=1e-5)
  np.testing.assert_allclose(lag_residuals.numpy()[lead == 5, 0], 0.0,
                             atol=1e-5)


@pytest.mark.parametrize("rate", [0.0, 1e-4, 0.3, 0.69, 0.7, 1.0, 1.68, 2.0,
                                  2.67, 3.5, 10.0, 10.4, 57.3, 400.0])
def test_poisson_median_is_exact(rate):
  expected = 0.0 if rate == 0 else scipy.stats.poisson.median(rate)
  assert float(M.poisson_median(tf.constant([rate]))[0]) == expected


def test_point_forecast_mean_is_the_rate():
  rate = tf.constant([0.3, 2.5])
  np.testing.assert_allclose(
      M.point_forecast(rate, M.PointForecast.MEAN), [0.3, 2.5])
  np.testing.assert_allclose(M.point_forecast(rate, "median"), [0.0, 2.0])


def test_hparams_from_dict_overrides_defaults_and_rejects_unknown_keys():
  hp = M.HParams.from_dict({"hidden_units": [4], "point_forecast": "mean",
                            "learning_rate": 0.1})
  assert hp.hidden_units == (4,)
  assert hp.point_forecast is M.PointForecast.MEAN
  assert hp.batch_size == M.HParams().batch_size
  with pytest.raises(ValueError, match="lerning_rate"):
    M.HParams.from_dict({"lerning_rate": 0.1})
  with pytest.raises(ValueError, match="average_last_fraction"):
    M.HParams.from_dict({"average_last_fraction": 1.5})


def test_a_warm_start_continues_the_cold_schedules_tail():
  """A warm start fine-tunes a converged model: restarted at the peak rate,
  candidates moved ~2% in next-day MAE with the seed alone and the gate
  refused eight days running. Its steps are the cold run's last ones."""
  hp = M.HParams(train_steps=4000, warm_start_steps=1000)
  cold = M.build_model(_N_CELLS, hp).optimizer
  warm = M.build_model(_N_CELLS, hp, warm_started=True).optimizer
  cold_rate = cold._learning_rate  # the schedule, by step
  for warm_step, cold_step in ((0, 3000), (500, 3500), (999, 3999)):
    np.testing.assert_allclose(float(warm._learning_rate(warm_step)),
                               float(cold_rate(cold_step)), rtol=1e-6)
  assert float(warm.learning_rate) < 0.2 * hp.learning_rate
  assert float(cold.learning_rate) == pytest.approx(hp.learning_rate)
  restart = M.HParams.from_dict({"train_steps": 4000, "warm_start_steps": 1000,
                                 "warm_start_schedule": "restart"})
  assert float(M.learning_rate_schedule(restart, True)(0)) == pytest.approx(
      hp.learning_rate)


def _recorded_run(average_last_fraction: float, steps: int = 20):
  """Trains a few one-step executions; returns (the weights after each
  step, the model's weights after the run)."""
  features, labels = _rows(256)
  hp = dataclasses.replace(_FAST, train_steps=steps, epochs=1,
                           steps_per_execution=1,
                           average_last_fraction=average_last_fraction)
  model = M.build_model(_N_CELLS, hp)
  after_each_step = []

  class Record(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      after_each_step.append([w.numpy() for w in model.trainable_weights])

  M.train(model, _dataset(features, labels), None, hp, callbacks=[Record()])
  return after_each_step, [w.numpy() for w in model.trainable_weights]


@pytest.mark.slow
def test_the_trained_weights_are_the_mean_of_the_last_steps():
  """One step's weights carry the last batches' noise; the model keeps the
  mean over the last quarter of its steps, here 5 of 20: a fraction, so
  that a short run averages its own tail, not its starting weights."""
  steps, final = _recorded_run(0.25)
  assert len(steps) == 20
  for i, weight in enumerate(final):
    np.testing.assert_allclose(
        weight, np.mean([step[i] for step in steps[-5:]], axis=0),
        rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(w, last) for w, last in zip(final, steps[-1]))
  unaveraged, final = _recorded_run(0.0)
  for weight, last in zip(final, unaveraged[-1]):
    np.testing.assert_array_equal(weight, last)
  # The window is the cold schedule's low-rate tail: a warm start that runs
  # in that tail averages all its steps; one restarted, its own last share.
  hp = M.HParams(train_steps=4000, warm_start_steps=1000,
                 average_last_fraction=0.25)
  assert M.averaged_steps(hp) == 1000
  assert M.averaged_steps(hp, warm_started=True) == 1000
  assert M.averaged_steps(dataclasses.replace(
      hp, warm_start_schedule=M.WarmStartSchedule.RESTART), True) == 250


def test_supply_moves_the_forecast_only_when_asked(tmp_path):
  """Idle taxis hold pickups back here: fewer idle, fewer pickups."""
  features, labels = _rows(512)
  idle = features[M.SUPPLY_XF[0]]
  labels = np.random.default_rng(1).poisson(
      np.exp(idle - idle.mean()) * 3).astype(np.float32)
  ds = _dataset(features, labels)
  weights = {}
  for use in (False, True):
    hp = dataclasses.replace(_FAST, use_supply=use)
    model = M.build_model(_N_CELLS, hp)
    M.train(model, ds, None, hp)
    weights[use] = model.get_layer("supply_linear").kernel.numpy().ravel()
  assert not weights[False].any()             # off: stays at 0
  assert weights[True][0] > 0.05              # on: learnt, with its sign
  assert M.HParams.from_dict({"use_supply": True}).use_supply
  with pytest.raises(ValueError, match="use_supply"):
    M.HParams.from_dict({"use_supply": "yes"})


def test_warm_start_copies_matching_weights_and_remaps_cell_rows(tmp_path):
  features, labels = _rows(256)
  old = M.build_model(_N_CELLS, _FAST)
  M.train(old, _dataset(features, labels), None,
          dataclasses.replace(_FAST, train_steps=20))
  path = str(tmp_path / "old")
  tf.saved_model.save(old, path)

  # The vocabulary grew by one cell, inserted at new row 0; the hidden layer
  # widths changed, so those weights must be skipped.
  hp = dataclasses.replace(_FAST, hidden_units=(7, 16), seed=1)
  new = M.build_model(_N_CELLS + 1, hp)
  fresh_embedding = new.get_layer("cell_embedding").embeddings.numpy().copy()
  fresh_hidden = new.get_layer("hidden_0").kernel.numpy().copy()
  rows = np.array([-1, 0, 1, 2, 3, 4])
  copied = M.warm_start(new, path,
                        {name: rows for name in M.CELL_INDEXED_LAYERS})

  old_embedding = old.get_layer("cell_embedding").embeddings.numpy()
  new_embedding = new.get_layer("cell_embedding").embeddings.numpy()
  np.testing.assert_array_equal(new_embedding[1:], old_embedding)
  np.testing.assert_array_equal(new_embedding[0], fresh_embedding[0])
  np.testing.assert_array_equal(
      new.get_layer("cell_bias").embeddings.numpy()[1:],
      old.get_layer("cell_bias").embeddings.numpy())
  np.testing.assert_array_equal(
      new.get_layer("hour_of_week_embedding").embeddings.numpy(),
      old.get_layer("hour_of_week_embedding").embeddings.numpy())
  np.testing.assert_array_equal(new.get_layer("hidden_0").kernel.numpy(),
                                fresh_hidden)
  assert "hidden_0/kernel" not in copied
  assert {"cell_embedding/embeddings", "hour_of_week_bias/embeddings",
          "lag_linear/kernel", "cell_lag_weights/embeddings"} <= set(copied)

  # What a warm start would leave untrained, which the Trainer reads to
  # train from scratch instead: the resized layers of another build; none
  # for the same build, its grown vocabulary remapped by token; the
  # cell-indexed layers too when they are not remapped.
  maps = {name: rows for name in M.CELL_INDEXED_LAYERS}
  assert M.warm_start_gaps(new, path, maps) == [
      "hidden_0/kernel", "hidden_0/bias", "hidden_1/kernel"]
  same = M.build_model(_N_CELLS + 1, dataclasses.replace(_FAST, seed=1))
  assert M.warm_start_gaps(same, path, maps) == []
  assert M.warm_start_gaps(same, M.saved_weights(path), maps) == []
  unmapped = M.warm_start_gaps(same, path)
  assert {"cell_bias/embeddings", "cell_embedding/embeddings",
          "cell_lag_weights/embeddings"} <= set(unmapped)
  assert "hidden_0/kernel" not in unmapped


def _night_rows(n: int = 6144, seed: int = 2):
  """Rows whose recent slots show the target's own day, except at night.

  Each day has a level of its own (weather, a venue's evening crowd). A
  target between midnight and 04:00 follows its own day, but its recent
  slots (the 3 hours before it) belong mostly to the day before, whose
  level is another: there, what the recent slots show does not carry.
  """
  rng = np.random.default_rng(seed)
  cell = rng.integers(0, _N_CELLS, n)
  hour = rng.integers(0, 24, n)
  how = rng.integers(0, 7, n) * 24 + hour
  base = np.array([5.0, 10.0, 20.0, 40.0, 80.0])[cell]
  today, yesterday = rng.normal(0.0, 0.4, n), rng.normal(0.0, 0.4, n)
  recent = np.where(hour < 4, yesterday, today)
  features = _recent_features(cell, how, base * np.exp(recent), base, rng)
  return features, rng.poisson(base * np.exp(today)).astype(np.float32)


def _recent_features(cell, how, recent_rate, base_rate, rng):
  """Transformed features at lead 0: the recent slots (and the city's last
  3 hours) at `recent_rate`, the settled history at `base_rate`."""
  n = len(cell)
  recent = {M.CELL_XF: cell.astype(np.int64),
            M.HOUR_OF_WEEK_XF: how.astype(np.int64),
            M.SLOT_OF_WEEK_XF: (how * 4).astype(np.int64),
            M.IS_HOLIDAY_XF: np.zeros(n, np.float32),
            M.CITY_LEVEL_XF: np.log(recent_rate / base_rate).astype(
                np.float32),
            M.CITY_3H_XF: np.log(recent_rate / base_rate).astype(np.float32),
            M.NOW_ELAPSED_XF: np.ones(n, np.float32),
            M.LEAD_XF: np.zeros(n, np.int64)}
  for name in M.SUPPLY_XF:
    recent[name] = np.zeros(n, np.float32)
  near = (M.NOW_XF,) + tuple(
      M.F.transformed_name(k) for k in (M.F.LAG_1, M.F.LAG_2, M.F.LAG_3,
                                        M.F.MEAN_3H))
  for name in near + M.HISTORY_XF:
    rate = recent_rate if name in near else base_rate
    recent[name] = np.log1p(rng.poisson(rate)).astype(np.float32)
  return recent


@pytest.mark.slow
def test_recent_slots_carry_by_day_but_not_across_the_night():
  """A surge in the slots before midnight (a venue's evening crowd) must not
  carry into the night's first hours, where the recent slots are another
  day's: measured before, the busiest cell's forecast at 00:00 after an
  evening event was 406 pickups against 193 (its seasonal naive: off by
  33), because one weight per history feature served every hour."""
  features, labels = _night_rows()
  hp = dataclasses.replace(_FAST, train_steps=400, epochs=4)
  model = M.build_model(_N_CELLS, hp)
  M.train(model, _dataset(features, labels, 128), None, hp)
  rng = np.random.default_rng(3)

  def carried(hour: int) -> float:
    """log(forecast after a 2.5x surge in the recent slots / without)."""
    cell = np.repeat(np.arange(_N_CELLS), 200)
    how = np.full(cell.shape, 2 * 24 + hour)
    base = np.array([5.0, 10.0, 20.0, 40.0, 80.0])[cell]
    surge, usual = (model.predict(_recent_features(
        cell, how, base * factor, base, rng), verbose=0).mean()
                    for factor in (2.5, 1.0))
    return float(np.log(surge / usual))

  night = np.mean([carried(hour) for hour in range(4)])
  day = np.mean([carried(hour) for hour in range(10, 16)])
  # By day the surge carries (the level is the day's: up to log 2.5 =
  # 0.92); at night it should barely move the forecast. Measured: night
  # about 0.12 against 0.95 by day; 0.30 against 0.92 when one weight per
  # residual served every hour.
  assert day > 0.5, (night, day)
  assert night < 0.18 * day, (night, day)


def _mixture_rows(usual: float, n: int = 4096, seed: int = 4):
  """One cell whose demand is `usual` on 85% of rows and 2.5x on 15%, at
  random (a venue's event nobody knows of yet), and features that cannot
  tell the two apart; with the model's rate set to the mixture's mean, as
  the Poisson loss fits it."""
  rng = np.random.default_rng(seed)
  cell = np.full(n, 2)
  how = rng.integers(0, 168, n)
  features = _recent_features(cell, how, np.full(n, usual),
                              np.full(n, usual), rng)
  event = rng.random(n) < 0.15
  labels = rng.poisson(np.where(event, 2.5 * usual, usual))
  model = M.build_model(_N_CELLS, _FAST)
  model.get_layer("global_bias").bias.assign([np.log(1.225 * usual)])
  return model, features, labels.astype(np.float32)


def _served(model, features):
  rate = tf.reshape(model(features), [-1])
  return M.served_point(model, features, rate, M.PointForecast.MEDIAN).numpy()


def test_served_median_of_a_mixture_sits_at_its_median_not_its_mean():
  """A venue with an evening event on 15% of days, at random: the Poisson
  loss fits λ̂ to the mean, 1.22x an ordinary evening, and the Poisson
  median of that over-predicted every ordinary evening (the busiest cell
  lost to its seasonal naive on such days). The served forecast must sit
  at the median of what comes, which minimises the absolute error."""
  model, features, labels = _mixture_rows(usual=100.0)
  mean_rate = float(np.reshape(model(features), [-1])[0])
  assert mean_rate == pytest.approx(122.5, rel=1e-4)

  M.fit_median_shift(model, _dataset(features, labels, 256), _FAST)
  served = _served(model, features)
  median = np.median(labels)
  assert abs(served.mean() - median) < 0.25 * abs(mean_rate - median), (
      served.mean(), median, mean_rate)
  assert (np.abs(labels - served).mean() <
          np.abs(labels - M.poisson_median(mean_rate).numpy()).mean())
  # The mean stays the model's output (predicted_rate): only the served
  # median moves.
  assert float(np.reshape(model(features), [-1])[0]) == mean_rate


@pytest.mark.parametrize("usual, hparams", [
    (2.0, _FAST),  # below median_shift_min_rate: its ratios are noise
    # too few examples of each cell and hour (a short window): one day's
    # event would be their median
    (100.0, dataclasses.replace(_FAST, median_shift_min_examples=200)),
])
def test_median_shift_leaves_quiet_or_thin_groups_to_the_poisson_median(
    usual, hparams):
  model, features, labels = _mixture_rows(usual)
  M.fit_median_shift(model, _dataset(features, labels, 256), hparams)
  rate = np.reshape(model(features), [-1])
  np.testing.assert_array_equal(_served(model, features),
                                M.poisson_median(rate).numpy())
  assert not model.median_shift.shift.numpy().any()


@pytest.mark.slow
def test_a_busy_cells_hidden_events_do_not_lift_its_fitted_rate():
  """A venue's evening event (2.5x, on 15% of days, at random) is 40
  Poisson standard deviations above an ordinary evening of 800 pickups,
  and nothing known at issue time tells it apart. The plain Poisson loss
  fitted the mixture's mean (1.22x), and per hour of the week from the few
  such evenings a window holds: on the operation bench the busiest cell's
  first evening slots were forecast 1.3-1.7x an ordinary evening on
  weekdays whose window held two events, and it lost to its seasonal
  naive. Clipped at a few standard deviations, an event pulls the fit no
  harder than ordinary noise does, and the rate stays near the ordinary
  level; without events the fit is the mean, as before."""
  usual, n = 800.0, 4096
  rng = np.random.default_rng(5)
  cell = np.full(n, 2)
  how = rng.integers(0, 168, n)
  features = _recent_features(cell, how, np.full(n, usual),
                              np.full(n, usual), rng)
  event = rng.random(n) < 0.15
  hp = dataclasses.replace(_FAST, train_steps=300, epochs=3)

  def fitted(labels) -> float:
    model = M.build_model(_N_CELLS, hp)
    M.train(model, _dataset(features, labels.astype(np.float32), 128),
            None, hp)
    return float(np.mean(model.predict(features, verbose=0)))

  mixed = fitted(rng.poisson(np.where(event, 2.5 * usual, usual)))
  ordinary = fitted(rng.poisson(np.full(n, usual)))
  # Measured: 1.225x usual with the plain Poisson loss.
  assert mixed < 1.06 * usual, mixed
  assert ordinary == pytest.approx(usual, rel=0.02)
