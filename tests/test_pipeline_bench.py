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
