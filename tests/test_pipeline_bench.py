"""bench/pipeline.py records each node's wall and CPU time from TFX's log."""

import logging

from taxi_demand.testing import benches


def _log(recorder, message: str) -> None:
  recorder.emit(logging.LogRecord("absl", logging.INFO, __file__, 0, message,
                                  None, None))


def test_each_node_gets_its_cpu_seconds_beside_its_wall_time():
  recorder = benches.load("pipeline").NodeRecorder()
  _log(recorder, "Component Evaluator is running.")
  assert sum(i * i for i in range(300_000)) > 0  # CPU work inside the node
  _log(recorder, "Component Evaluator is finished.")
  node = recorder.components["run"]["Evaluator"]
  assert node["runs"] == 1
  # CPU time is not stretched by other work on the machine: the figure
  # that stays comparable between runs under load.
  assert 0 < node["cpu_s"] <= node["wall_s"] + 0.05


def _marginal(wall_s: float, pusher_s: float, pushed) -> dict:
  return {"wall_s": wall_s, "runner_s": wall_s - 0.3,
          "components": {"Trainer": {"wall_s": 20.0},
                         "Pusher": {"wall_s": pusher_s}},
          "summary": {"blessed": pushed is not None,
                      "pushed_version": pushed}}


def test_window_growth_compares_like_with_like():
  """The growth ratio must not turn on whether the gates blessed one side's
  candidate: one pushed and one refused, both are compared without the
  Pusher; both pushed (or refused), whole run against whole run. Each
  side's verdict is reported beside it."""
  bench = benches.load("pipeline")
  # issue 30's run: 28 days refused (Pusher 0.06 s), 56 days pushed (8.05 s).
  refused, pushed = _marginal(57.5, 0.06, None), _marginal(72.3, 8.05, "17")
  ratio, basis = bench.growth_ratio(refused, pushed)
  assert ratio == round((72.3 - 8.05) / (57.5 - 0.06), 3)
  assert basis == ("without the Pusher: short window refused, "
                   "long window pushed")
  both = bench.growth_ratio(_marginal(61.8, 4.3, "16"), pushed)
  assert both == (round(72.3 / 61.8, 3), "whole run: both pushed")
  assert bench.outcome(pushed) == {"blessed": True, "pushed_version": "17",
                                   "pusher_wall_s": 8.05}
