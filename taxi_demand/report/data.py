"""What the report shows, gathered from ML Metadata, the warehouse and the
served log as plain data. No TensorFlow: ML Metadata is read through
`lineage.store`, TFDV's files through the tensorflow_metadata protos.

Two levels. Functions over one artifact folder or one table
(`gate_summary`, `drift_by_feature`, `skew_by_feature`, `statistics_rows`;
`demand_of_day`, `positions`, `add_forecasts`, `next_slot_forecast`,
`place` over `Warehouse.pickups` and served rows), which the notebook calls
on what its cells produced; and `gather` / `gather_demand`, which
`taxi-demand report` calls on a whole home.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from taxi_demand import features
from taxi_demand import spans
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage import contract
from taxi_demand.lineage import queries
from taxi_demand.lineage import store as st
from taxi_demand.lineage.records import DataGateRecord
from taxi_demand.lineage.records import NextDayRecord
from taxi_demand.lineage.records import SkewRecord
from taxi_demand.monitoring import nextday

# The lead whose forecasts "predicted against actual" shows: a driver needs
# about half an hour to reposition (NTT Docomo's AI Taxi forecasts 30
# minutes ahead). The served lead nearest to it is taken per slot.
SHOWN_LEAD_MINUTES = 30
# A next-day result's names (queries.next_day_results gives its properties).
_NEXT_DAY = NextDayRecord.names()
_NEXT_DAY_SHOWN = (_NEXT_DAY.span, _NEXT_DAY.date, _NEXT_DAY.mae,
                   _NEXT_DAY.seasonal_naive_mae, _NEXT_DAY.alert,
                   _NEXT_DAY.reason, _NEXT_DAY.model_version)
CENTROID_DAYS = 7       # days of located pickups that place a cell


# --- one artifact folder -------------------------------------------------------


_NUMPY_OF = {"int64": np.int64, "double": np.float64}


def _array(column, dtype=None) -> np.ndarray:
  """A pyarrow column as numpy, nulls as NaN with a float dtype.

  Straight from the buffers for null-free int64 and double chunks, else
  through Python lists: pyarrow's own to_numpy imports pandas, which costs
  the report a tenth of its time budget.
  """
  parts = []
  for chunk in column.chunks:
    kind = _NUMPY_OF.get(str(chunk.type))
    if kind is not None and chunk.null_count == 0:
      data = np.frombuffer(chunk.buffers()[1], dtype=kind)
      parts.append(data[chunk.offset:chunk.offset + len(chunk)])
    elif dtype is float:
      parts.append(np.array([np.nan if v is None else v
                             for v in chunk.to_pylist()], float))
    else:
      parts.append(np.array(chunk.to_pylist(), dtype))
  if not parts:
    return np.zeros(0, float if dtype is float else np.int64)
  out = np.concatenate(parts)
  return out.astype(float) if dtype is float else out


def _split_file(uri: str, name: str, split: str = contract.DAY_SPLIT) -> str:
  return os.path.join(uri, contract.SPLIT_FOLDER.format(split=split), name)


def gate_summary(report_uri: str) -> Optional[Dict[str, Any]]:
  """DataGate's JSON summary in its report folder (None if absent)."""
  path = os.path.join(report_uri, contract.DATA_GATE_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def drift_by_feature(report_uri: str) -> Dict[str, Dict[str, Any]]:
  """{feature: {distance, threshold, measure, flagged}} from DataGate's
  drift anomalies (TFDV's drift_skew_info); {} where drift was not checked."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # noqa: PLC0415
  path = _split_file(report_uri, contract.ANOMALIES_FILE)
  if not os.path.isfile(path):
    return {}
  anomalies = anomalies_pb2.Anomalies()
  with open(path, "rb") as f:
    anomalies.ParseFromString(f.read())
  out: Dict[str, Dict[str, Any]] = {}
  for info in anomalies.drift_skew_info:
    name = ".".join(info.path.step)
    for m in info.drift_measurements:
      out[name] = {
          "distance": float(m.value), "threshold": float(m.threshold),
          "measure": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
          "flagged": float(m.value) > float(m.threshold)}
  for name in anomalies.anomaly_info:
    out.setdefault(name, {"distance": None, "threshold": None,
                          "measure": None, "flagged": True})["flagged"] = True
  return out


def skew_by_feature(report_uri: str) -> Dict[str, Dict[str, Any]]:
  """{feature: {distance, threshold, flagged}} from a skew report (the
  pipeline's folder or `taxi-demand skew`'s JSON file); {} if unchecked."""
  path = report_uri if report_uri.endswith(".json") else os.path.join(
      report_uri, contract.SKEW_REPORT_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    report = json.load(f)
  out = {name: {"distance": f.get("distance"), "threshold": f.get("threshold"),
                "flagged": bool(f.get("flagged"))}
         for name, f in (report.get("features") or {}).items()}
  for name, f in ((report.get("join") or {}).get("features") or {}).items():
    if f.get("flagged"):
      out.setdefault(name, {"distance": None, "threshold": None})[
          "flagged"] = True
  return out


def statistics_rows(statistics_uri: str,
                    split: str = contract.DAY_SPLIT) -> List[Dict[str, Any]]:
  """One row per feature of a StatisticsGen split: count, mean, sd, zeros,
  min, max (numeric) or unique values (strings). What Facets would show,
  readable offline."""
  from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: PLC0415
  path = _split_file(statistics_uri, contract.STATISTICS_FILE, split)
  if not os.path.isfile(path):
    raise TaxiDemandError(f"no {split} statistics at {path}")
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  with open(path, "rb") as f:
    stats.ParseFromString(f.read())
  rows = []
  for dataset in stats.datasets:
    for feat in dataset.features:
      name = ".".join(feat.path.step) or feat.name
      if feat.HasField("num_stats"):
        n = feat.num_stats
        rows.append({"feature": name, "count": int(
            n.common_stats.num_non_missing), "missing": int(
                n.common_stats.num_missing), "mean": n.mean, "sd": n.std_dev,
                     "zeros": int(n.num_zeros), "min": n.min, "max": n.max})
      elif feat.HasField("string_stats"):
        s = feat.string_stats
        rows.append({"feature": name, "count": int(
            s.common_stats.num_non_missing), "missing": int(
                s.common_stats.num_missing), "unique": int(s.unique)})
  return rows


# --- demand ---------------------------------------------------------------------


@dataclasses.dataclass
class Demand:
  """One day's pickups by cell, and what was forecast for it.

  `hourly[i]` is cell `cells[i]`'s pickups per hour of the day, cells
  busiest first. `actual` and `predicted` are per slot of the day
  (`slot_starts`); predicted is NaN where no forecast was served.
  """
  day: str
  slot_minutes: int
  cells: List[int]
  hourly: np.ndarray
  slot_starts: np.ndarray
  actual: Dict[int, np.ndarray]
  predicted: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
  predicted_leads: List[int] = dataclasses.field(default_factory=list)

  @property
  def total(self) -> int:
    return int(self.hourly.sum())


def demand_of_day(pickups, span: int, slot_minutes: int) -> Demand:
  """A day's pickups per (cell, slot) from `Warehouse.pickups` rows (other
  days' rows are ignored; slots without a row count zero)."""
  slot_s = slot_minutes * 60
  begin = spans.start_of(span)
  starts = np.arange(begin, begin + features.SECONDS_PER_DAY, slot_s)
  cell = _array(pickups.column(features.CELL))
  index = (_array(pickups.column(features.SLOT_START)) - begin) // slot_s
  count = _array(pickups.column("pickups"), float)
  inside = (index >= 0) & (index < len(starts))
  by_cell = {int(c): np.zeros(len(starts)) for c in np.unique(cell[inside])}
  for c, i, n in zip(cell[inside], index[inside], count[inside]):
    by_cell[int(c)][int(i)] = n
  order = sorted(by_cell, key=lambda c: (-by_cell[c].sum(), c))
  hours = ((starts - begin) // 3600).astype(int)
  hourly = np.zeros((len(order), 24))
  for row, c in enumerate(order):
    np.add.at(hourly[row], hours, by_cell[c])
  return Demand(day=spans.day_of(span).isoformat(), slot_minutes=slot_minutes,
                cells=order, hourly=hourly, slot_starts=starts,
                actual=by_cell)


def positions(pickups) -> Dict[int, tuple]:
  """{cell: (latitude, longitude)}: the mean of its located pickups in
  `Warehouse.pickups` rows; cells without one are absent."""
  cell = _array(pickups.column(features.CELL))
  cells, row = np.unique(cell, return_inverse=True)
  sums = np.zeros((len(cells), 3))
  for j, name in enumerate(("located", "latitude_sum", "longitude_sum")):
    np.add.at(sums[:, j], row, _array(pickups.column(name), float))
  return {int(c): (la / n, lo / n)
          for c, (n, la, lo) in zip(cells, sums) if n > 0}


def add_forecasts(demand: Demand, forecasts,
                  lead_minutes: int = SHOWN_LEAD_MINUTES) -> Demand:
  """Puts served forecasts (servelog.forecasts_between's columns) beside the
  actual counts: per (cell, slot), the one issued at the lead nearest to
  `lead_minutes`, the earlier issue on a tie."""
  from taxi_demand.serving import servelog  # noqa: PLC0415 - pyarrow only
  if forecasts.num_rows == 0 or not demand.actual:
    return demand
  cell = _array(forecasts.column(features.CELL))
  slot = _array(forecasts.column(features.SLOT_START))
  lead = _array(forecasts.column(features.LEAD_MINUTES))
  value = _array(forecasts.column(servelog.PREDICTED), float)
  begin, step = int(demand.slot_starts[0]), demand.slot_minutes * 60
  index = (slot - begin) // step
  cells = np.array(sorted(demand.actual), dtype=np.int64)
  row = np.searchsorted(cells, cell)
  keep = ((index >= 0) & (index < len(demand.slot_starts)) &
          (row < len(cells)) & (cells[np.minimum(row, len(cells) - 1)] == cell)
          & ~np.isnan(value))
  # Per (cell, slot): the lead nearest the shown one, the earlier issue on
  # a tie: sort by key, then by that rank, and take each key's first row.
  key = row[keep] * len(demand.slot_starts) + index[keep]
  rank = np.abs(lead[keep] - lead_minutes) * 1000 - lead[keep]
  order = np.lexsort((rank, key))
  first = order[np.r_[True, np.diff(key[order]) != 0]] if len(order) else order
  grid = np.full((len(cells), len(demand.slot_starts)), np.nan)
  grid.flat[key[first]] = value[keep][first]
  predicted = {int(c): grid[i] for i, c in enumerate(cells)}
  leads = set(int(x) for x in np.unique(lead[keep][first]))
  demand.predicted = predicted
  demand.predicted_leads = sorted(leads)
  return demand


@dataclasses.dataclass
class Plane:
  """Cells at their mean pickup position, with one value each."""
  cells: List[int]
  latitude: np.ndarray
  longitude: np.ndarray
  value: np.ndarray
  label: str           # what `value` is
  unplaced: int = 0    # cells with a value but no located pickup


def next_slot_forecast(served) -> Optional[Dict[str, Any]]:
  """The next slot's forecast per cell as of the newest tick in served rows
  (servelog columns): the slot the newest tick first forecast, and for each
  cell the newest forecast for it issued by then. {issued_at, slot_start,
  model_version, by_cell}; None without forecasts."""
  from taxi_demand.serving import servelog  # noqa: PLC0415
  if served is None or served.num_rows == 0:
    return None
  issued = _array(served.column(features.ISSUED_AT))
  slot = _array(served.column(features.SLOT_START))
  values = _array(served.column(servelog.PREDICTED), float)
  known = ~np.isnan(values)
  if not known.any():
    return None
  newest = int(issued[known].max())
  at_tick = known & (issued == newest)
  ahead = at_tick & (slot >= newest)
  target = int(slot[ahead].min() if ahead.any() else slot[at_tick].min())
  rows = np.flatnonzero(known & (slot == target))
  rows = rows[np.argsort(issued[rows], kind="stable")]  # newest issue last
  cells = _array(served.column(features.CELL))
  versions = served.column(servelog.MODEL_VERSION).to_pylist()
  return {"issued_at": newest, "slot_start": target,
          "model_version": versions[int(rows[-1])],
          "by_cell": {int(cells[i]): float(values[i]) for i in rows}}


def place(where: Dict[int, tuple], values: Dict[int, float],
          label: str) -> Plane:
  """Cells with a value, at their `positions`."""
  cells = [c for c in sorted(values) if c in where]
  return Plane(cells=cells,
               latitude=np.array([where[c][0] for c in cells]),
               longitude=np.array([where[c][1] for c in cells]),
               value=np.array([values[c] for c in cells]), label=label,
               unplaced=len(values) - len(cells))


# --- the whole home ---------------------------------------------------------------


@dataclasses.dataclass
class Report:
  """Everything `taxi-demand report` draws; sections left None say why in
  `notes`."""
  home: str
  generated_at: str
  runs: List[Dict[str, Any]]
  serving: Optional[Dict[str, Any]]
  checks: List[Dict[str, Any]]
  demand: Optional[Demand]
  plane: Optional[Plane]
  compare: Optional[Dict[str, Any]]
  notes: Dict[str, str] = dataclasses.field(default_factory=dict)
  params: Optional[contract.RunParameters] = None  # the serving model's
  total_runs: int = 0   # in ML Metadata; `runs` holds the newest of them


def _run_rows(snap: st.Snapshot, runs: Sequence[st.Run]) -> List[Dict]:
  rows = []
  for run in runs:
    row = queries.run_row(snap, run)
    blessing = queries.blessing_record(snap, run)
    row["serving_mae"] = blessing.baseline_model_mae
    row["reasons"] = blessing.reasons or ""
    if row["status"] == "REFUSED":
      gate = snap.run_output(run, contract.DATA_GATE, contract.REPORT)
      summary = gate_summary(gate.uri) if gate is not None else None
      row["reasons"] = "; ".join((summary or {}).get("lines") or []) or (
          "DataGate refused the day")
    rows.append(row)
  return rows


def _checks(snap: st.Snapshot, runs: Sequence[st.Run],
            rows: Sequence[Dict]) -> List[Dict[str, Any]]:
  """Per run that checked a day: DataGate's verdict and lines, drift and
  skew per feature."""
  skew_reports: Dict[int, st.ArtifactView] = {}
  for art in snap.artifacts_of(contract.SKEW_REPORT):  # oldest first
    skew = SkewRecord.read(art)
    if skew.span is not None and skew.checked:
      skew_reports[skew.span] = art
  out = []
  for run, row in zip(runs, rows):
    gate = snap.run_output(run, contract.DATA_GATE, contract.REPORT)
    if gate is None:
      continue
    summary = gate_summary(gate.uri) or {}
    verdict = DataGateRecord.read(gate)
    skew_art = skew_reports.get(row["span"]) if row["span"] else None
    out.append({
        "run_id": run.run_id, "date": row["date"], "status": row["status"],
        "anomaly_count": verdict.anomaly_count,
        "eval_examples": verdict.eval_examples,
        "drift_checked": bool(verdict.drift_checked),
        "lines": list(summary.get("lines") or []),
        "drift": drift_by_feature(gate.uri),
        "skew": skew_by_feature(skew_art.uri) if skew_art else {},
        "skew_alert": bool(skew_art and SkewRecord.read(skew_art).alert),
    })
  return out


def _serving(snap: st.Snapshot, version: Optional[str]
             ) -> Optional[Dict[str, Any]]:
  if version is None:
    return None
  tree = queries.lineage_of_version(snap, version)
  results = queries.next_day_results(snap)
  own = [r for r in results
         if str(r.get(_NEXT_DAY.model_version)) == str(version)]
  # The serving version's newest scored day; a version pushed last night
  # has served no scored day yet, so then the newest of the one before.
  scored = next((r for r in reversed(own) if r.get(_NEXT_DAY.served_by_lead)),
                None) or next((r for r in reversed(results)
                               if r.get(_NEXT_DAY.served_by_lead)), None)
  return {"version": version, "pushed": tree["pushed"],
          "blessing": tree["blessing"], "lineage": queries.version_lines(tree),
          "next_day": [{k: r.get(k) for k in _NEXT_DAY_SHOWN}
                       for r in results],
          # The trend the gradual alert reads (nextday.trend, default rules):
          # a fraction of the mean MAE per day, over every model's results.
          "trend_per_day": nextday.trend(nextday.mae_points(results)),
          "served_by_lead": scored and scored[_NEXT_DAY.served_by_lead],
          "served_by_lead_of": scored and {
              "date": scored.get(_NEXT_DAY.date),
              "model_version": scored.get(_NEXT_DAY.model_version)},
          "params": queries.push_parameters(snap, version)}


def _default_pair(snap: st.Snapshot, runs: Sequence[st.Run]):
  """The newest run that trained, against the one that pushed the serving
  model (or the trained run before it)."""
  # Newest first, stopping at the second: a long history's older runs are
  # not read (each run's nodes are a question to ML Metadata).
  trained = list(itertools.islice(
      (r for r in reversed(runs) if r.node(contract.TRAINER) is not None), 2))
  if len(trained) < 2:
    return None
  newest = trained[0]
  serving = queries.serving_version(snap)
  if serving is not None:
    push = queries.push_of(snap, serving)
    if push.run_id and push.run_id != newest.run_id:
      return queries.run_by_id(snap, push.run_id), newest
  return trained[1], newest


def _compare(snap: st.Snapshot, a: st.Run, b: st.Run) -> Dict[str, Any]:
  side = {}
  for key, run in (("a", a), ("b", b)):
    detail = queries.run_detail(snap, run)
    side[key] = {k: detail[k] for k in ("run_id", "date", "status", "metrics",
                                        "blessed", "pushed_version")}
    side[key]["parameters"] = queries.flatten(detail["parameters"])
  return {"diff": queries.diff_runs(snap, a, b), **side}


def _newest_day(runs: Sequence[Dict[str, Any]], warehouse) -> Optional[int]:
  """The newest run's day inside the warehouse's days, else its newest."""
  known = warehouse.span_range()
  if known is None:
    return None
  for row in reversed(runs):
    if row["span"] is not None and known[0] <= row["span"] <= known[1]:
      return int(row["span"])
  return known[1]


def gather_demand(home, rows: Sequence[Dict[str, Any]],
                  params: Optional[contract.RunParameters]) -> tuple:
  """(demand, plane, notes): the newest run's day of trips in the warehouse
  (`rows` are the runs' rows), its served forecasts, and the cells placed
  and coloured by the newest tick's next-slot forecast; cells and slots
  follow `params` (the serving model's)."""
  notes: Dict[str, str] = {}
  demand, plane = _demand(home, rows, params, notes)
  return demand, plane, notes


def _demand(home, rows, params, notes) -> tuple:
  from taxi_demand.data import sql  # noqa: PLC0415
  from taxi_demand.data import reader  # noqa: PLC0415
  from taxi_demand.serving import servelog  # noqa: PLC0415
  if not reader.warehouse_exists(home.warehouse):
    notes["demand"] = f"no warehouse at {home.warehouse}"
    return None, None
  cfg = params.query_config() if params is not None else sql.QueryConfig()
  with reader.open_reader(home.warehouse) as wh:
    span = _newest_day(rows, wh)
    if span is None:
      notes["demand"] = f"the warehouse {home.warehouse} holds no trips"
      return None, None
    begin = spans.start_of(span)
    pickups = wh.pickups(cfg, spans.start_of(span - CENTROID_DAYS + 1),
                         begin + features.SECONDS_PER_DAY)
  demand = demand_of_day(pickups, span, cfg.slot_minutes)
  where = positions(pickups)
  add_forecasts(demand, servelog.forecasts_between(
      home.serving_log, begin, begin + features.SECONDS_PER_DAY))
  if not demand.predicted_leads:
    notes["predicted"] = (f"no forecast was served for {demand.day} "
                          "(taxi-demand predict --every 5m serves them)")
  newest = _newest_served(home.serving_log)
  forecast = next_slot_forecast(newest)
  if forecast is not None:
    label = (f"forecast pickups, slot "
             f"{spans.format_epoch(forecast['slot_start'])}, issued "
             f"{spans.format_epoch(forecast['issued_at'])} by "
             f"{forecast['model_version']}")
    plane = place(where, forecast["by_cell"], label)
  else:
    notes["plane"] = ("no forecast served yet; cells coloured by their mean "
                      f"pickups per slot on {demand.day} instead")
    plane = place(where, {c: float(v.mean()) for c, v in
                              demand.actual.items()},
                  f"mean pickups per slot on {demand.day}")
  return demand, plane


def _newest_served(log_root):
  """The newest logged day's served rows, or None."""
  from taxi_demand.serving import servelog  # noqa: PLC0415
  for day in reversed(servelog.logged_days(log_root)):
    try:
      return servelog.read_day(log_root, datetime.date.fromisoformat(day)).table
    except (TaxiDemandError, ValueError):
      continue
  return None


def gather(home, last: Optional[int] = None,
           compare: Optional[Sequence[str]] = None,
           with_demand: bool = True) -> Report:
  """The report's data for a home: runs (the newest `last`), the serving
  model, data checks, two runs compared (`compare`, else the newest trained
  run against the serving model's) and, `with_demand`, the newest day's
  demand (else `gather_demand(home, report.runs, report.params)` adds it)."""
  if last is not None and last < 1:
    raise TaxiDemandError(f"--last must be >= 1, got {last}")
  if not Path(home.metadata).is_file():
    raise TaxiDemandError(f"no ML Metadata store at {home.metadata}: run the "
                          "pipeline first (python runner_local.py)")
  snap = st.load(home.metadata)
  if not snap.runs:
    raise TaxiDemandError(f"ML Metadata at {home.metadata} holds no runs yet: "
                          "run the pipeline first (python runner_local.py)")
  runs = snap.runs[-last:] if last else list(snap.runs)
  queries.prefetch_rows(snap, runs)  # each run's gate, blessing and push
  rows = _run_rows(snap, runs)
  notes: Dict[str, str] = {}
  version = queries.serving_version(snap)
  if version is None:
    notes["serving"] = "no model was pushed yet"
  if compare:
    pair = (snap.run(compare[0]), snap.run(compare[1]))
  else:
    pair = _default_pair(snap, snap.runs)
    if pair is None:
      notes["compare"] = "fewer than two runs trained a model"
  params = (queries.push_parameters(snap, version) if version else None) or (
      queries.run_parameters(snap, runs[-1]))
  report = Report(
      home=str(home.root),
      generated_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      runs=rows, serving=_serving(snap, version),
      checks=_checks(snap, runs, rows), demand=None, plane=None,
      compare=_compare(snap, *pair) if pair else None, notes=notes,
      params=params, total_runs=len(snap.runs))
  if with_demand:
    report.demand, report.plane, more = gather_demand(home, rows, params)
    report.notes.update(more)
  return report
