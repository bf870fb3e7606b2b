"""Driver guidance on a simulated day: does following `recommend` pay?

A fleet (taxi_demand.fleet) replays one simulated day in which idle taxis
follow a policy: stay where they dropped off, go to the historically
busiest cell nearby (hotspot), follow `recommend` on the serving model's
forecasts as served at each tick (sharing each cell with the taxis idle
there and those the supply forecast expects idle soon;
`recommend_idle_now` with the idle ones only; `recommend_exact_trip_ends`
told every trip under way's true end, a reference for what knowing those
arrivals is worth to the rule), or greedy_on_true_intensity
(the same greedy ranking on the simulator's true intensity; once called
"the oracle", it is no ceiling). The fleet is sized so that staying taxis are empty half
of their time (DiDi's figure), and that share is printed.

The ceiling is `upper_bound` (taxi_demand.fleet_bound): the most pickups the
same taxis, from the same starts, could make on the day knowing every
request, under the simulation's rules (travel times, the wait limit, one
passenger per taxi). `share_of_upper_bound` gives every policy's pickups
per taxi-hour as a share of it (the same fleet and day: pickups over
pickups).

The model is a real one: a simulated city, then the daily pipeline
(runner_local.py) for the day before the simulated one, so the day is one
the model never trained on. `--home` reuses a home instead (its serving
model and newest day). Then `recommend` for 2,000 idle taxis at once,
timed cold and warm (a second call in the same process), and for every
taxi of the simulator's own fleet idle at 08:00.

  .venv/bin/python bench/guidance.py [--home H] [--date D] [--seed 0]

The supply forecast (taxi_demand.supply) is replayed on the same day, point
in time: issued at every 5-minute tick from what the warehouse knew then,
scored per cell and slot at leads 0..55 minutes against the idle taxis as
they were, beside idle now carried forward (`supply_replay`).

Targets: recommend >= +15% pickups per taxi-hour against stay, >= +5%
against hotspot, within 10% of greedy_on_true_intensity, >= 70% of the
upper bound; with forecast supply >= +5% over recommend_idle_now and >= +20%
over stay; the supply forecast's MAE <= 0.8x the naive one's at every lead;
2,000 taxis in < 1 s warm.

JSON keys renamed with issue #32: `policies.oracle` is now
`policies.greedy_on_true_intensity`, `recommend_of_oracle` is
`recommend_of_greedy_on_true_intensity`, and the target and `ok` entry
`of_oracle` is `of_greedy_on_true_intensity`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGETS = {"vs_stay": 0.15, "vs_hotspot": 0.05,
           "of_greedy_on_true_intensity": 0.90, "of_upper_bound": 0.70,
           "forecast_supply_over_idle_now": 0.05,
           "forecast_supply_vs_stay": 0.20,
           "supply_mae_of_naive": 0.80,
           "bulk_2000_warm_s": 1.0}
START, DAYS, SEED, SCALE = datetime.date(2024, 1, 18), 29, 7, 0.3


def say(text: str) -> None:
  print(f"guidance bench: {text}", file=sys.stderr, flush=True)


def build_home(root: Path, train_days: int):
  """A simulated city, and the daily run for its second-newest day; returns
  (Home, the newest day's span: the day guidance is measured on)."""
  import runner_local  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand.data import simulate  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  home = Home(root).ensure()
  with Warehouse(home.warehouse) as wh:
    simulate.simulate_into(wh, START, DAYS, seed=SEED, scale=SCALE)
    newest = wh.newest_span()
  say(f"simulated {DAYS} days; training on the {train_days} days before "
      f"{spans.date_of(newest - 1)} (a few minutes)")
  with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON
    code = runner_local.main(["--home", str(root), "--date",
                              spans.date_of(newest - 1), "--train-days",
                              str(train_days), "--naive-margin", "0",
                              "--cell-margin", "1.0"])
  if code != 0:
    raise SystemExit(f"the daily run exited {code}")
  return home, newest


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--home", default=None,
                      help="a home with a serving model (default: build one)")
  parser.add_argument("--date", default=None,
                      help="the day to simulate (default: the newest)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--train-days", type=int, default=7)
  parser.add_argument("--json", action="store_true", help="(always JSON)")
  args = parser.parse_args(argv)

  import numpy as np  # noqa: PLC0415
  import taxi_demand  # noqa: F401,PLC0415
  from taxi_demand import fleet  # noqa: PLC0415
  from taxi_demand import fleet_bound  # noqa: PLC0415
  from taxi_demand import spans  # noqa: PLC0415
  from taxi_demand import supply  # noqa: PLC0415
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.serving import predict  # noqa: PLC0415
  from taxi_demand.serving import recommend  # noqa: PLC0415

  started = time.perf_counter()
  tmp = None
  if args.home:
    home = Home(Path(args.home))
    from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
    with Warehouse(home.warehouse, read_only=True) as wh:
      span = wh.newest_span()
  else:
    tmp = tempfile.mkdtemp(prefix="guidance-bench-")
    home, span = build_home(Path(tmp) / "home", args.train_days)
  if args.date:
    span = spans.parse_span(args.date)
  setup_s = time.perf_counter() - started

  model = predict.LoadedModel(home)
  cfg = model.cfg
  say(f"simulating {spans.date_of(span)} with model {model.version}")
  day = fleet.load_day(home.warehouse, cfg, span)
  forecast_at = fleet.model_forecasts(home.warehouse, cfg, day, model.score)
  mark = time.perf_counter()
  taxis, results = fleet.evaluate(day, fleet.policies(day, forecast_at),
                                  seed=args.seed)
  fleet_s = time.perf_counter() - mark
  rate = {k: r.pickups_per_taxi_hour for k, r in results.items()}
  idle_now = fleet.RECOMMEND_IDLE_NOW
  ratios = {"vs_stay": rate["recommend"] / rate["stay"] - 1,
            "vs_hotspot": rate["recommend"] / rate["hotspot"] - 1,
            "forecast_supply_over_idle_now":
                rate["recommend"] / rate[idle_now] - 1,
            "idle_now_vs_stay": rate[idle_now] / rate["stay"] - 1}
  exact = fleet.RECOMMEND_EXACT_ENDS
  if exact in rate:
    ratios["exact_trip_ends_over_idle_now"] = rate[exact] / rate[idle_now] - 1
  say(f"fleet: {taxis} taxis, {fleet_s:.0f} s; recommend "
      f"{ratios['forecast_supply_over_idle_now']:+.1%} over {idle_now}")

  # The supply forecast replayed on the day, point in time.
  mark = time.perf_counter()
  if day.supply_rates is None:
    replay = {}
  else:
    with open_reader(home.warehouse) as wh:
      replay = supply.replay(wh, cfg, day.geometry.cells, day.supply_rates,
                             day.begin, day.end)
  for figures in replay.values():
    figures["of_naive"] = round(figures["forecast"] / figures["naive"], 4)
    figures["forecast"] = round(figures["forecast"], 4)
    figures["naive"] = round(figures["naive"], 4)
    figures["forecast_bias"] = round(figures["forecast_bias"], 4)
    figures["naive_bias"] = round(figures["naive_bias"], 4)
  worst = max((f["of_naive"] for f in replay.values()), default=float("nan"))
  say(f"supply replay: MAE at most {worst:.2f}x naive's "
      f"({time.perf_counter() - mark:.0f} s)")
  greedy = fleet.GREEDY_ON_TRUTH
  if greedy in rate:
    ratios["of_" + greedy] = rate["recommend"] / rate[greedy]
  mark = time.perf_counter()
  bound = fleet_bound.of_day(day, taxis, seed=args.seed)
  say(f"upper bound: {bound.pickups} of {bound.passengers} passengers "
      f"({time.perf_counter() - mark:.0f} s)")
  shares = {k: round(bound.share(r), 4) for k, r in results.items()}
  ratios["of_upper_bound"] = bound.share(results["recommend"])

  # recommend for 2,000 idle taxis at 08:00, the forecasts served at that
  # tick by the 5-minute job (as in production), cold then warm.
  at = day.begin + 8 * 3600
  predict.run_job(home, model.load(), at,
                  horizon=predict.demand_sql.max_horizon(cfg, at))
  rng = np.random.default_rng(args.seed)
  cells = [int(c) for c in rng.choice(day.geometry.cells, 2000)]
  ids = [f"bench-{i}" for i in range(len(cells))]
  bulk = []
  for _ in range(2):
    mark = time.perf_counter()
    result = recommend.recommend(home, at, cells, ids)
    bulk.append(round(time.perf_counter() - mark, 3))
  moved = sum(c.to_cell != c.from_cell for c in result.choices)
  # The simulator's own fleet at that moment: every taxi the trips show
  # idle (`recommend --all-idle`), with the others as competition.
  idle_ids, idle_cells, supply = recommend.idle_taxis(home, cfg, at)
  mark = time.perf_counter()
  fleet_result = recommend.recommend(home, at, idle_cells, idle_ids)
  all_idle = {
      "taxis": len(idle_ids), "supply": supply,
      "s": round(time.perf_counter() - mark, 3),
      "moved": sum(c.to_cell != c.from_cell for c in fleet_result.choices)}

  out = {
      "date": spans.date_of(span),
      "model_version": model.version,
      "taxis": taxis,
      "passengers": results["stay"].passengers,
      "stay_empty_share": round(results["stay"].empty_share, 4),
      "policies": fleet.summary(list(results.values())),
      "recommend_vs_stay": round(ratios["vs_stay"], 4),
      "recommend_vs_hotspot": round(ratios["vs_hotspot"], 4),
      "recommend_forecast_supply_over_idle_now": round(
          ratios["forecast_supply_over_idle_now"], 4),
      "recommend_forecast_supply_vs_stay": round(ratios["vs_stay"], 4),
      "recommend_idle_now_vs_stay": round(ratios["idle_now_vs_stay"], 4),
      # What knowing the trips under way exactly is worth to recommend's
      # rule: the same rule told every trip's true end (no dispatcher knows
      # it), over idle now; null without supply rates. The forecast's own
      # gain is recommend_forecast_supply_over_idle_now.
      "recommend_exact_trip_ends_over_idle_now": (
          round(ratios["exact_trip_ends_over_idle_now"], 4)
          if "exact_trip_ends_over_idle_now" in ratios else None),
      "supply_replay": {
          "what": "MAE per cell and slot of mean idle taxis, by lead "
                  "minutes: the flow balance vs idle now carried forward; "
                  "*_bias: mean of forecast minus truth",
          "leads": {str(k): v for k, v in replay.items()},
          "worst_of_naive": worst},
      f"recommend_of_{greedy}": round(ratios.get("of_" + greedy,
                                                  float("nan")), 4),
      "upper_bound": bound.to_dict(),
      "share_of_upper_bound": shares,
      "bulk_2000_s": bulk,
      "bulk_2000_moved": moved,
      "bulk_forecasts": result.forecasts.source,
      "all_idle_0800": all_idle,
      "targets": TARGETS,
      "ok": {
          "vs_stay": ratios["vs_stay"] >= TARGETS["vs_stay"],
          "vs_hotspot": ratios["vs_hotspot"] >= TARGETS["vs_hotspot"],
          "of_" + greedy: (ratios.get("of_" + greedy, 0) >=
                           TARGETS["of_" + greedy]),
          "of_upper_bound": (ratios["of_upper_bound"] >=
                             TARGETS["of_upper_bound"]),
          "forecast_supply_over_idle_now": (
              ratios["forecast_supply_over_idle_now"] >=
              TARGETS["forecast_supply_over_idle_now"]),
          "forecast_supply_vs_stay": (ratios["vs_stay"] >=
                                      TARGETS["forecast_supply_vs_stay"]),
          "supply_mae_of_naive": worst <= TARGETS["supply_mae_of_naive"],
          "bulk_2000_warm": bulk[-1] < TARGETS["bulk_2000_warm_s"],
      },
      "setup_s": round(setup_s, 1),
      "fleet_s": round(fleet_s, 1),
      "load_average": list(os.getloadavg()),
  }
  print(json.dumps(out, indent=2))
  return 0 if all(out["ok"].values()) else 1


if __name__ == "__main__":
  sys.exit(main())
