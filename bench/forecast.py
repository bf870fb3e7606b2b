"""Forecast-quality bench: the pushed model on an unseen week against oracle and baselines.

Usage: python bench/forecast.py --json [--incremental [--warm-start-steps N]]
                                [--workdir DIR] [--keep]

Simulates a fixed 9-week city (from 2024-01-01, seed 7, the `make run` city
made longer) into a fresh home, runs the real daily pipeline for the last day
of week 8 (day 56) with the default window and steps, exactly as `make run`
does, so that a model is trained and pushed having seen nothing of week 9.
Then, for every day of week 9, it takes that day's examples from the demand
query (features known before each slot, plus the label) and scores:

* the pushed model's served point forecast (`predict_raw`);
* the oracle: the median of Poisson(true λ), λ from the simulator's `truth`
  table summed into 30-minute slots; no forecast can beat it on average;
* seasonal naive: the same slot last week (`lag_7d`);
* HM: the mean of the same slot over the previous 7 days and 4 weeks.

With --incremental it runs day 55 first, then day 56 warm-started from
day 55's model with --warm-start-steps (the daily case once a window
exists: incremental retraining), and scores day 56's trained model whether
or not it was blessed, so that the quality of fewer steps is what is seen.

`every_lead` scores the same week at every lead (0 to 55 minutes), each
cell and slot at each, with the oracle and seasonal naive on the same rows:
unlike the headline figures, which take each slot at the one lead the demand
query samples for it, it does not move when that sampling does.

Targets: model MAE <= 1.05 x oracle MAE, model MAE <= 0.80 x seasonal-naive
MAE, model RMSE <= 0.90 x HM RMSE. Progress goes to stderr; one JSON object
alone goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere

import taxi_demand  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS first)

START = datetime.date(2024, 1, 1)
SEED = 7
DAYS = 63
# 1-based day 56 is the last day of week 8: its eval split is that day and the
# 28 training days precede it, so no example of week 9 reaches the model.
RUN_DAY = 56
TEST_DAYS = range(DAYS - 7, DAYS)  # 0-based offsets of week 9
HM_HISTORY_DAYS = 28               # HM reaches back 4 weeks
TARGETS = {"model_over_oracle_mae": 1.05, "model_over_naive_mae": 0.80,
           "model_over_hm_rmse": 0.90}


def _say(message: str) -> None:
  print(f"bench/forecast.py: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
  """Sends everything written to fd 1 (the runner's console) to stderr."""
  sys.stdout.flush()
  saved = os.dup(1)
  os.dup2(2, 1)
  try:
    with contextlib.redirect_stdout(sys.stderr):
      yield
  finally:
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(saved)


def _span(offset: int) -> int:
  return (START + datetime.timedelta(days=offset) -
          datetime.date(1970, 1, 1)).days


def _train(home, runner_args, incremental: bool) -> Path:
  """Simulates the city and runs the real pipeline; returns the model.

  The pushed model; with `incremental`, the model day 56's run trained
  (warm-started from day 55's), blessed or not.
  """
  import runner_local  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.serving import registry  # noqa: PLC0415
  home.ensure()
  began = time.monotonic()
  with wh.Warehouse(home.warehouse) as warehouse:
    report = simulate.simulate_into(warehouse, start=START, days=DAYS,
                                    seed=SEED)
  _say(f"simulated {DAYS} days, {report.loaded:,} trips in "
       f"{time.monotonic() - began:.0f} s")
  for day in ([RUN_DAY - 1, RUN_DAY] if incremental else [RUN_DAY]):
    run_date = START + datetime.timedelta(days=day - 1)
    began = time.monotonic()
    with _stdout_to_stderr():
      code = runner_local.main(["--home", str(home.root), "--date",
                                run_date.isoformat(), *runner_args])
    _say(f"pipeline for {run_date} exited {code} in "
         f"{time.monotonic() - began:.0f} s")
    if code != 0:
      raise SystemExit(f"bench/forecast.py: the pipeline failed (exit {code})")
    if registry.serving_version(home.models) is None:
      raise SystemExit("bench/forecast.py: the pipeline pushed no model (not "
                       "blessed); see the run summary above")
  if not incremental:
    return registry.resolve(home.models)
  from taxi_demand.lineage import store  # noqa: PLC0415
  snap = store.load(home.metadata)
  trainer = snap.last_run().node("Trainer")
  model = snap.first_output(trainer.execution_id, "model")
  return Path(model.uri) / "Format-Serving"


def _every_lead(warehouse, cfg, predictor, truth) -> dict:
  """Week 9 scored at every lead (0 to 55 minutes), each cell and slot at
  each, against the oracle on the same rows.

  The headline figures score each cell and slot at the one lead the demand
  query samples for it, and that sampling is the training path's: a figure
  that moves when the sampling changes, however the model does. This one
  does not, and it says how the forecast changes as the slot nears.
  """
  import numpy as np  # noqa: PLC0415
  import pandas as pd  # noqa: PLC0415
  from taxi_demand import features as F  # noqa: PLC0415
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  from taxi_demand.modeling import model as model_lib  # noqa: PLC0415
  from taxi_demand.modeling import trainer  # noqa: PLC0415
  days = []
  for offset in TEST_DAYS:
    begin = _span(offset) * F.SECONDS_PER_DAY
    frame = warehouse.every_lead_features(
        cfg, begin, begin + F.SECONDS_PER_DAY).to_pandas()
    frame["predicted"] = predictor(frame)[trainer.PREDICTION_KEY]
    days.append(frame)
  rows = pd.concat(days, ignore_index=True).merge(
      truth, on=[F.CELL, F.SLOT_START], how="left")
  if rows["rate"].isna().any():
    raise SystemExit("bench/forecast.py: truth is missing for some slots")
  actual = rows[F.LABEL].to_numpy(dtype=float)
  model = rows["predicted"].to_numpy(dtype=float)
  oracle = model_lib.poisson_median(rows["rate"].to_numpy()).numpy()
  naive = rows[F.SEASONAL_NAIVE].to_numpy(dtype=float)
  lead = rows[F.LEAD_MINUTES].to_numpy()
  out = {"model_mae_by_lead": {
      str(int(k)): round(baselines.mae(actual[lead == k], model[lead == k]), 4)
      for k in sorted(set(lead.tolist()))}}
  for name, forecast in (("model", model), ("oracle", oracle),
                         ("seasonal_naive", naive)):
    out[f"{name}_mae"] = round(baselines.mae(actual, forecast), 4)
  out["model_over_oracle_mae"] = round(out["model_mae"] / out["oracle_mae"], 4)
  out["model_over_naive_mae"] = round(
      out["model_mae"] / out["seasonal_naive_mae"], 4)
  out["rows"] = int(len(rows))
  out["mean_pickups"] = round(float(np.mean(actual)), 4)
  return out


def _score(home, model_dir: Path) -> dict:
  """Scores model, oracle, seasonal naive and HM on week 9."""
  import numpy as np  # noqa: PLC0415
  import pandas as pd  # noqa: PLC0415
  from taxi_demand.data import warehouse as wh  # noqa: PLC0415
  from taxi_demand.data.sql import QueryConfig  # noqa: PLC0415
  from taxi_demand.modeling import baselines  # noqa: PLC0415
  from taxi_demand import features as F  # noqa: PLC0415
  from taxi_demand.modeling import model as model_lib  # noqa: PLC0415
  from taxi_demand.modeling import trainer  # noqa: PLC0415
  from taxi_demand.testing import benches  # noqa: PLC0415
  cfg = QueryConfig()
  predictor = trainer.load_for_serving(str(model_dir))
  first = _span(TEST_DAYS[0])
  with wh.Warehouse(home.warehouse, read_only=True) as warehouse:
    # Pickups before week 9 for HM: the 28 days before its first day.
    history = [warehouse.query_demand(cfg, first,
                                      days_before=HM_HISTORY_DAYS).to_pandas()]
    days = []
    for offset in TEST_DAYS:
      frame = warehouse.query_demand(cfg, _span(offset)).to_pandas()
      frame["predicted"] = predictor(frame)[trainer.PREDICTION_KEY]
      days.append(frame)
    week = pd.concat(days, ignore_index=True)
    truth = benches.true_rates(
        warehouse, first * F.SECONDS_PER_DAY,
        (_span(TEST_DAYS[-1]) + 1) * F.SECONDS_PER_DAY, cfg.slot_seconds)
    every = _every_lead(warehouse, cfg, predictor, truth)
  columns = [F.CELL, F.SLOT_START, F.LABEL]
  history = pd.concat(history + [week[columns]], ignore_index=True)[columns]
  week = week.merge(truth, on=[F.CELL, F.SLOT_START], how="left")
  if week["rate"].isna().any():
    raise SystemExit("bench/forecast.py: truth is missing for some slots")
  oracle = model_lib.poisson_median(week["rate"].to_numpy()).numpy()
  hm = baselines.historical_mean(history, week).to_numpy()
  actual = week[F.LABEL].to_numpy(dtype=float)
  forecasts = {"model": week["predicted"].to_numpy(dtype=float),
               "oracle": oracle, "seasonal_naive":
               week[F.SEASONAL_NAIVE].to_numpy(dtype=float), "hm": hm}
  out = {}
  for metric, fn in (("mae", baselines.mae), ("rmse", baselines.rmse)):
    for name, forecast in forecasts.items():
      out[f"{name}_{metric}"] = round(fn(actual, forecast), 4)
  out["model_over_oracle_mae"] = round(out["model_mae"] / out["oracle_mae"], 4)
  out["model_over_naive_mae"] = round(
      out["model_mae"] / out["seasonal_naive_mae"], 4)
  out["model_over_hm_rmse"] = round(out["model_rmse"] / out["hm_rmse"], 4)
  out["targets_met"] = all(out[k] <= v for k, v in TARGETS.items())
  out["targets"] = TARGETS
  out["examples"] = int(len(week))
  out["mean_pickups"] = round(float(np.mean(actual)), 4)
  out["every_lead"] = every
  out["model_version"] = (model_dir.parent.name if model_dir.name ==
                          "Format-Serving" else model_dir.name)
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true",
                      help="print the JSON result (the only output on stdout)")
  parser.add_argument("--workdir", default=None,
                      help="where the temporary home goes (default: $TMPDIR)")
  parser.add_argument("--incremental", action="store_true",
                      help="train day 55, then day 56 warm-started from it "
                      "(see --warm-start-steps), and score day 56's model")
  parser.add_argument("--warm-start-steps", type=int, default=None,
                      help="passed to runner_local.py (default: its own)")
  parser.add_argument("--keep", action="store_true",
                      help="keep the home afterwards and name it on stderr")
  args = parser.parse_args()
  from taxi_demand.home import Home  # noqa: PLC0415
  began = time.monotonic()
  if args.workdir:
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix="bench-forecast-", dir=args.workdir)
  try:
    home = Home(Path(tmp) / "home")
    runner_args = ([] if args.warm_start_steps is None else
                   ["--warm-start-steps", str(args.warm_start_steps)])
    model_dir = _train(home, runner_args, args.incremental)
    result = _score(home, model_dir)
    result["incremental"] = args.incremental
    result["warm_start_steps"] = args.warm_start_steps
  finally:
    if args.keep:
      _say(f"kept the home at {Path(tmp) / 'home'}")
    else:
      shutil.rmtree(tmp, ignore_errors=True)
  result["seconds"] = round(time.monotonic() - began, 1)
  _say(", ".join(f"{k}={result[k]}" for k in TARGETS) +
       f", targets_met={result['targets_met']}")
  if args.json:
    print(json.dumps(result, sort_keys=True))
  else:
    for key, value in sorted(result.items()):
      print(f"{key}: {value}")
  return 0


if __name__ == "__main__":
  code = main()
  sys.stdout.flush()
  sys.stderr.flush()
  # Skip interpreter teardown: TensorFlow's function destructors print noise.
  os._exit(code)
