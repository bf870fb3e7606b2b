"""Flags both runners share: what the model is trained on, and how."""

from __future__ import annotations


import dataclasses
import json
import types
from typing import Any, Dict, List

from pipeline.config import PipelineConfig
from pipeline.config import Thresholds
from taxi_demand.arguments import count
from taxi_demand.arguments import number
from taxi_demand.data.sql import ArrivalRule
from taxi_demand.data.sql import QueryConfig
from taxi_demand.data.sql import SpatialUnit
from taxi_demand.errors import TaxiDemandError


def add_model_flags(group) -> None:
  """--train-days, --train-steps, --hparam, granularity, pushes and gates.

  Args:
    group: an argparse parser or argument group.
  """
  # Each flag defaults to the PipelineConfig field it fills.
  config = types.SimpleNamespace(**{f.name: f.default for f in
                                    dataclasses.fields(PipelineConfig)})
  group.add_argument("--train-days", type=count(1), default=config.train_days,
                     help="rolling training window in days (default "
                     "%(default)s)")
  group.add_argument("--train-steps", type=count(1), default=None,
                     help="training steps (default: the model's default)")
  group.add_argument("--warm-start-steps", type=int, default=None,
                     help="training steps when the Trainer warm-starts from "
                     "the serving model (incremental retraining on a window "
                     f"one day newer; default {config.warm_start_steps}; "
                     "0: as many as --train-steps)")
  group.add_argument("--hparam", action="append", default=[],
                     metavar="KEY=VALUE",
                     help="model hyperparameter, repeatable (e.g. "
                     "learning_rate=0.01); recorded in ML Metadata")
  group.add_argument("--slot-minutes", type=int,
                     default=config.query.slot_minutes, choices=(15, 30, 60),
                     help="slot length (default %(default)s)")
  group.add_argument("--spatial-unit", default=config.query.spatial_unit.value,
                     choices=[u.value for u in SpatialUnit],
                     help="what a cell is (default %(default)s)")
  group.add_argument("--grid-metres", type=count(1),
                     default=config.query.grid_metres,
                     help="grid cell side for --spatial-unit grid (default "
                     "%(default)s)")
  group.add_argument("--arrival", default="start",
                     metavar="start|end[+DELAY]",
                     help="when a trip is known to the 5-minute job, in "
                     "training and serving alike: 'start' (a probe-style "
                     "feed), 'end+5m' (a trips export, 5 minutes after the "
                     "trip ends); default start")
  group.add_argument("--keep-versions", type=count(1),
                     default=config.keep_versions,
                     help="pushed model versions to keep (default %(default)s)")
  defaults = config.thresholds
  group.add_argument("--naive-margin", type=number(),
                     default=defaults.naive_margin,
                     help="push only if MAE beats the seasonal-naive forecast "
                     "by this fraction (default %(default)s)")
  group.add_argument("--cell-margin", type=number(),
                     default=defaults.cell_margin,
                     help="refuse if a busy cell's MAE is this fraction above "
                     "its own seasonal-naive MAE (default %(default)s)")
  group.add_argument("--min-eval-pickups", type=int,
                     default=defaults.min_eval_pickups, metavar="N",
                     help="the evidence floor: bless nothing, first run "
                     "included, on an eval day with fewer than N pickups in "
                     "all, whatever its metrics; the refusal and its reason "
                     "are recorded beside the figures. On a day of mostly "
                     "empty slots a forecast of zero everywhere beats "
                     "seasonal naive, so such a comparison judges nothing "
                     "(default %(default)s; the default simulated city has "
                     "~60000 a day; 0: no floor)")


def parse_hparams(pairs: List[str]) -> Dict[str, Any]:
  """["learning_rate=0.01", ...] -> {"learning_rate": 0.01, ...}."""
  out = {}
  for pair in pairs:
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
      raise TaxiDemandError(f"--hparam {pair!r}: expected KEY=VALUE")
    try:
      value = json.loads(raw)
    except ValueError:
      value = raw
    out[key.strip()] = value
  return out


def model_config_kwargs(args, table: str = "trips") -> Dict[str, Any]:
  """The PipelineConfig fields that add_model_flags' flags decide."""
  kwargs = dict(
      train_days=args.train_days,
      hparams=parse_hparams(args.hparam or []),
      query=QueryConfig(table=table, slot_minutes=args.slot_minutes,
                        spatial_unit=SpatialUnit(args.spatial_unit),
                        grid_metres=args.grid_metres,
                        arrival=ArrivalRule.parse(args.arrival)),
      keep_versions=args.keep_versions,
      thresholds=Thresholds(naive_margin=args.naive_margin,
                            cell_margin=args.cell_margin,
                            min_eval_pickups=args.min_eval_pickups))
  if args.train_steps:
    kwargs["train_steps"] = args.train_steps
  if args.warm_start_steps is not None:
    if args.warm_start_steps < 0:
      raise TaxiDemandError("--warm-start-steps must be >= 0 (0: as many "
                            "as --train-steps)")
    kwargs["warm_start_steps"] = args.warm_start_steps
  if args.min_eval_pickups < 0:
    raise TaxiDemandError("--min-eval-pickups must be >= 0 (0: no floor)")
  return kwargs
