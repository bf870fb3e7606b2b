"""bench/first_run.py cuts a first run's console into its phases."""

from taxi_demand.testing import benches


def _bench():
  return benches.load("first_run")


# What runner_local.py printed on a new home (pipeline/local_run.py), with
# the second each line arrived.
TRANSCRIPT = [
    (4.0, "home /tmp/h; logs /tmp/h/logs/run-1.log"),
    (4.1, "empty warehouse: simulating 42 days of a calibrated city from "
          "2024-01-01 (seed 7) into /tmp/h/warehouse.duckdb"),
    (20.0, "  loaded 2721246 trips"),
    (20.1, "  warehouse ready in 16.0 s"),
    (20.5, "window of 2024-02-11: ingesting 3 day(s) 2024-01-14 .. "
           "2024-01-16, once each"),
    (21.7, "  staged 3 day(s)' examples and statistics in one pass "
           "(1.2 s)"),
    (23.0, "  ingest 2024-01-14: passed (2.5 s)"),
    (26.0, "  ingest 2024-01-15: passed (3.0 s)"),
    (30.0, "  ingest 2024-01-16: refused, left out of every window: "
           "drift (4.0 s)"),
    (30.5, "run taxi_demand for 2024-02-11 (span 19764, 28-day window)"),
    (90.0, "summary"),
]


def test_a_first_runs_console_is_cut_into_its_phases():
  phases = _bench().phases(TRANSCRIPT, total=95.0)
  assert phases == {
      "startup": 4.0, "simulate_load": 16.4, "window_ingest": 10.0,
      "day_run": 64.5, "window_days": 3,
      "ingest_day_s": {"min": 2.5, "median": 3.0, "max": 4.0},
      "staged_days": 3, "staging_pass_s": 1.2}


def test_a_warm_home_has_no_simulate_nor_ingest_phase():
  phases = _bench().phases([TRANSCRIPT[0], TRANSCRIPT[-2]], total=70.0)
  assert phases["simulate_load"] is None and phases["window_ingest"] is None
  assert phases["day_run"] == 39.5 and phases["window_days"] == 0
  assert phases["staged_days"] == 0 and phases["staging_pass_s"] is None
