"""The report's figures, one function each, over `report.data`'s plain data.

Each returns a matplotlib Figure built without pyplot, so the same call
draws in the notebook (`display(fig)`) and in the static page
(`page.svg(fig)`). None of them reads a store or a file. matplotlib loads
on the first figure: `taxi-demand report` draws in worker processes.
"""

from __future__ import annotations

import datetime
from typing import (TYPE_CHECKING, Any, List, Mapping, Optional,
                    Sequence)

import numpy as np

if TYPE_CHECKING:
  from matplotlib.figure import Figure

WIDTH = 9.0
LABELLED_CELLS = 15
BLUE, ORANGE, GREY, RED, GREEN = ("#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728",
                                  "#2ca02c")


def _figure(height: float = 3.2, width: float = WIDTH, left: float = 0.8,
            bottom: float = 0.75, top: float = 0.35, right: float = 0.25
            ) -> Figure:
  """A figure with fixed margins in inches: a layout engine would cost
  three times the drawing (the report's 5-second budget). matplotlib is
  imported here, by the process that draws."""
  from matplotlib.figure import Figure  # noqa: PLC0415
  fig = Figure(figsize=(width, height))
  fig.subplots_adjust(left=left / width, right=1 - right / width,
                      bottom=bottom / height, top=1 - top / height)
  return fig


# Any: matplotlib plots dates through its unit converters, which its stubs
# do not know (they take only numbers and arrays).
def _dates(values: Sequence[Optional[str]]) -> List[Any]:
  return [datetime.date.fromisoformat(v) for v in values]


def _series(rows, key) -> np.ndarray:
  return np.array([np.nan if r.get(key) is None else float(r[key])
                   for r in rows])


def runs_over_time(runs: Sequence[Mapping[str, Any]]) -> Figure:
  """Each run's MAE on its eval day beside the seasonal-naive forecast's and
  the serving model's; blessed runs filled, pushed ones starred, refused
  days shaded."""
  fig = _figure(4.2, bottom=1.55)
  ax = fig.add_subplot()
  dated = [r for r in runs if r.get("date")]
  x = _dates([r["date"] for r in dated])
  ax.plot(x, _series(dated, "seasonal_naive_mae"), "--", color=GREY,
          marker="_", markersize=12, label="seasonal naive")
  ax.plot(x, _series(dated, "serving_mae"), ":", color=ORANGE, marker=".",
          label="model serving then")
  mae = _series(dated, "mae")
  ax.plot(x, mae, "-", color=BLUE, label="candidate model")
  blessed = np.array([bool(r.get("blessed")) for r in dated])
  pushed = np.array([bool(r.get("pushed_version")) for r in dated])
  if len(dated):
    ax.scatter(np.array(x)[blessed], mae[blessed], color=BLUE, zorder=3,
               label="blessed")
    ax.scatter(np.array(x)[~blessed], mae[~blessed], facecolor="white",
               edgecolor=BLUE, zorder=3, label="not blessed")
    ax.scatter(np.array(x)[pushed], mae[pushed], marker="*", s=140,
               color=GREEN, zorder=4, label="pushed")
  refused = [d for d, r in zip(x, dated) if r.get("status") == "REFUSED"]
  if refused:
    _shade_days(ax, refused, label="refused by DataGate")
  _day_limits(ax, x)
  ax.set_ylabel("MAE, pickups per cell and slot")
  ax.set_title("Runs over time: the eval day's MAE")
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2),
            fontsize="small", ncols=4, frameon=False)
  _date_axis(ax)
  return fig


def _shade_days(ax, days: Sequence[datetime.date], label: str) -> None:
  """One shaded band per day, ending at its noon (see _dates), the bands
  drawn as one collection: a season of refused days as separate spans
  costs seconds of drawing."""
  from matplotlib import collections as mcoll  # noqa: PLC0415
  from matplotlib import dates as mdates  # noqa: PLC0415
  ends = [mdates.date2num(datetime.datetime.combine(day, datetime.time(12)))
          for day in days]
  ax.add_collection(mcoll.PolyCollection(
      [[(end - 1, 0), (end - 1, 1), (end, 1), (end, 0)] for end in ends],
      transform=ax.get_xaxis_transform(), facecolor=RED, alpha=0.2,
      edgecolor="none", label=label), autolim=False)


def _day_limits(ax, days: Sequence[datetime.date]) -> None:
  """The days drawn, a day either side: runs that only ingested have no
  MAE, and a lone point would otherwise get years of axis."""
  if days:
    ax.set_xlim(datetime.datetime.combine(min(days), datetime.time()) -
                datetime.timedelta(days=1),
                datetime.datetime.combine(max(days), datetime.time()) +
                datetime.timedelta(days=1))


def _date_axis(ax) -> None:
  from matplotlib import dates as mdates  # noqa: PLC0415
  locator = mdates.AutoDateLocator(maxticks=10)
  ax.xaxis.set_major_locator(locator)
  ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def next_day_trend(results: Sequence[Mapping[str, Any]],
                   version: Optional[str] = None) -> Figure:
  """Next-day MAE of the model that served each day, the serving version's
  days highlighted."""
  fig = _figure(3.0, bottom=0.5)
  ax = fig.add_subplot()
  x = _dates([r["date"] for r in results])
  ax.plot(x, _series(results, "seasonal_naive_mae"), "--", color=GREY,
          label="seasonal naive")
  mae = _series(results, "mae")
  ax.plot(x, mae, "-o", color=BLUE, markersize=4, label="model serving that day")
  own = np.array([str(r.get("model_version")) == str(version)
                  for r in results])
  if own.any():
    ax.scatter(np.array(x)[own], mae[own], s=80, facecolor="none",
               edgecolor=GREEN, linewidth=2, zorder=3,
               label=f"version {version}")
  alerts = np.array([bool(r.get("alert")) for r in results])
  if alerts.any():
    ax.scatter(np.array(x)[alerts], mae[alerts], marker="x", color=RED, s=80,
               zorder=4, label="degradation alert")
  _day_limits(ax, x)
  ax.set_ylabel("MAE on the day served")
  ax.set_title("Next-day MAE: yesterday's model on today's demand")
  ax.legend(fontsize="small")
  _date_axis(ax)
  return fig


def served_by_lead(by_lead: Mapping[Any, Mapping[str, Any]]) -> Figure:
  """Served forecasts' MAE by lead time against seasonal naive."""
  fig = _figure(2.8, 6.0, bottom=0.6)
  ax = fig.add_subplot()
  leads = sorted(by_lead, key=int)
  x = [int(k) for k in leads]
  ax.plot(x, [by_lead[k].get("mae") for k in leads], "-o", color=BLUE,
          label="served forecasts")
  ax.plot(x, [by_lead[k].get("seasonal_naive_mae") for k in leads], "--",
          color=GREY, label="seasonal naive")
  ax.set_xlabel("lead, minutes before the slot")
  ax.set_ylabel("MAE")
  ax.set_title("Served MAE by lead time")
  ax.legend(fontsize="small")
  return fig


def checks_heatmap(checks: Sequence[Mapping[str, Any]], kind: str
                   ) -> Optional[Figure]:
  """Per feature and day, a check's distance over its threshold (`kind`:
  "drift" or "skew"); flagged cells marked. None if nothing was measured."""
  days = [c for c in checks if c.get(kind)]
  names = sorted({n for c in days for n in c[kind]})
  if not names:
    return None
  ratio = np.full((len(names), len(days)), np.nan)
  flagged = np.zeros_like(ratio, dtype=bool)
  for j, day in enumerate(days):
    for i, name in enumerate(names):
      found = day[kind].get(name)
      if not found:
        continue
      flagged[i, j] = bool(found.get("flagged"))
      if found.get("distance") is not None and found.get("threshold"):
        ratio[i, j] = found["distance"] / found["threshold"]
      elif flagged[i, j]:
        ratio[i, j] = 1.0
  fig = _figure(1.1 + 0.2 * len(names), WIDTH, left=1.5, bottom=0.45,
                right=0.6)
  ax = fig.add_subplot()
  image = ax.imshow(ratio, aspect="auto", cmap="RdYlGn_r", vmin=0, vmax=2,
                    interpolation="nearest")
  for i, j in zip(*np.nonzero(flagged)):
    ax.text(j, i, "!", ha="center", va="center", fontsize=8, weight="bold")
  ax.set_yticks(range(len(names)), names, fontsize=7)
  step = max(1, -(-len(days) // 12))  # at most 12 labels
  ax.set_xticks(range(0, len(days), step),
                [days[j]["date"][5:] for j in range(0, len(days), step)],
                fontsize=7)
  ax.set_title(f"{kind.capitalize()} per feature: distance / threshold "
               "(! = flagged)")
  fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
  return fig


def demand_heatmap(demand, cells: int = 40) -> Figure:
  """Pickups by cell and hour of the day, busiest cells first."""
  shown = demand.hourly[:cells]
  fig = _figure(1.3 + 0.15 * len(shown), bottom=0.55, right=0.9)
  ax = fig.add_subplot()
  image = ax.imshow(shown, aspect="auto", cmap="viridis",
                    interpolation="nearest")
  ax.set_yticks(range(len(shown)), [str(c) for c in demand.cells[:cells]],
                fontsize=6)
  ax.set_xticks(range(0, 24, 2))
  ax.set_xlabel("hour of day")
  ax.set_ylabel(f"cell ({min(cells, len(demand.cells))} busiest of "
                f"{len(demand.cells)})")
  ax.set_title(f"Pickups by cell and hour on {demand.day} "
               f"({demand.total} in all)")
  fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="pickups")
  return fig


def predicted_vs_actual(demand, cells: int = 6) -> Figure:
  """Actual pickups per slot against the served forecast, busiest cells."""
  shown = demand.cells[:cells]
  cols = 3
  rows = max(1, -(-len(shown) // cols))
  fig = _figure(2.0 * rows + 0.6, bottom=0.45, top=0.55, left=0.5)
  axes = fig.subplots(rows, cols, sharex=True, squeeze=False,
                      gridspec_kw={"hspace": 0.35, "wspace": 0.22})
  hours = (demand.slot_starts - demand.slot_starts[0]) / 3600.0
  leads = demand.predicted_leads
  for ax, cell in zip(axes.flat, shown):
    ax.step(hours, demand.actual[cell], where="post", color=GREY,
            label="actual")
    if cell in demand.predicted:
      ax.step(hours, demand.predicted[cell], where="post", color=BLUE,
              label="forecast")
    ax.set_title(f"cell {cell}", fontsize=9)
    ax.set_xticks(range(0, 25, 6))
  for ax in list(axes.flat)[len(shown):]:
    ax.set_visible(False)
  axes.flat[0].legend(fontsize="x-small")
  lead = (f"served {leads[0]}-{leads[-1]} min ahead" if leads else
          "no forecast served")
  fig.suptitle(f"Predicted against actual on {demand.day}, busiest cells "
               f"({lead}; hour of day)", fontsize=10)
  return fig


def cells_plane(plane) -> Figure:
  """Cells at their mean pickup position, coloured by one value each."""
  fig = _figure(6.0, 6.5, left=0.9, bottom=0.6, right=0.9)
  ax = fig.add_subplot()
  points = ax.scatter(plane.longitude, plane.latitude, c=plane.value,
                      s=140, cmap="YlOrRd", edgecolor="#444444",
                      linewidth=0.4)
  # The busiest cells are named; naming all would cost a third of the
  # figure's drawing time and cover the map.
  for i in np.argsort(-plane.value, kind="stable")[:LABELLED_CELLS]:
    ax.annotate(str(plane.cells[i]), (plane.longitude[i], plane.latitude[i]),
                fontsize=6, ha="center", va="bottom", color="#333333",
                xytext=(0, 6), textcoords="offset points")
  ax.set_aspect(1 / np.cos(np.radians(np.nanmean(plane.latitude)))
                if len(plane.latitude) else 1.0, adjustable="datalim")
  ax.set_xlabel("longitude")
  ax.set_ylabel("latitude")
  ax.set_title(plane.label + f"\n(the {LABELLED_CELLS} highest named)",
               fontsize=9)
  fig.colorbar(points, ax=ax, fraction=0.04, pad=0.02, label="pickups")
  return fig


# What each figure draws from: ML Metadata, or the warehouse and served log.
METADATA_FIGURES = ("runs", "next_day", "served_by_lead", "drift", "skew")
DEMAND_FIGURES = ("heatmap", "predicted", "plane")


def figure(report, name: str) -> Optional[Figure]:
  """One named figure of a gathered report (None where it has no data)."""
  serving = report.serving or {}
  if name == "runs":
    return runs_over_time(report.runs) if report.runs else None
  if name == "next_day":
    scored = [r for r in serving.get("next_day") or []
              if r.get("mae") is not None]
    return (next_day_trend(scored, serving["version"]) if scored else None)
  if name == "served_by_lead":
    return (served_by_lead(serving["served_by_lead"])
            if serving.get("served_by_lead") else None)
  if name in ("drift", "skew"):
    return checks_heatmap(report.checks, name)
  if report.demand is None:
    return None
  if name == "heatmap":
    return demand_heatmap(report.demand)
  if name == "predicted":
    return predicted_vs_actual(report.demand)
  if name == "plane":
    return (cells_plane(report.plane) if report.plane is not None
            and report.plane.cells else None)
  raise ValueError(f"no figure {name!r}")
