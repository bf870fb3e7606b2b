"""The report as one self-contained HTML file: inline CSS, figures as SVG
data URIs, no script and no request to any network, so it opens from a
`file://` URL or a bucket as it is."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

from taxi_demand import atomic
from taxi_demand.errors import TaxiDemandError
from taxi_demand.monitoring.nextday import DEFAULT_TREND_SLOPE as TREND_ALERT
from taxi_demand.report import plots

SECTIONS = (("runs", "Runs over time"), ("serving", "The serving model"),
            ("checks", "Data checks per day"), ("demand", "Demand"),
            ("compare", "Compare two runs"))
FILE_NAME = "index.html"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;
color:#1d1d1f;background:#fafafa}
header{background:#16324f;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.8}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid #ddd;
position:sticky;top:0}nav a{margin-right:18px;color:#16324f}
main{padding:0 28px 40px;max-width:1100px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;
margin:18px 0;padding:4px 20px 16px}
h2{font-size:18px;border-bottom:1px solid #eee;padding-bottom:6px}
h3{font-size:15px;margin:18px 0 6px}
img.fig{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border-bottom:1px solid #eee;padding:3px 10px 3px 0;text-align:left;
vertical-align:top}th{color:#555;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e;font-weight:600}.good{color:#1b6e20}
.note{color:#666;font-style:italic}
pre{background:#f4f4f4;padding:10px;overflow-x:auto;font-size:11.5px}
pre.tree{max-height:420px;overflow-y:auto}
.kpi{display:inline-block;margin:4px 26px 4px 0}
.kpi b{display:block;font-size:20px}
"""


def svg(fig) -> str:
  """A figure as SVG text (text kept as text: smaller and searchable)."""
  import matplotlib  # noqa: PLC0415
  buf = io.StringIO()
  with matplotlib.rc_context({"svg.fonttype": "none",
                              "svg.hashsalt": "taxi_demand"}):
    fig.savefig(buf, format="svg", metadata={"Date": None})  # reproducible
  return buf.getvalue()


def svgs(report, names: Sequence[str]) -> Dict[str, str]:
  """The named figures of a report drawn as SVG text (absent: no data)."""
  out = {}
  for name in names:
    fig = plots.figure(report, name)
    if fig is not None:
      out[name] = svg(fig)
  return out


def _img(svg_text: str, alt: str) -> str:
  data = base64.b64encode(svg_text.encode()).decode()
  return (f'<img class="fig" alt="{html.escape(alt)}" '
          f'src="data:image/svg+xml;base64,{data}">')


def _e(value: Any, digits: int = 3) -> str:
  if value is None or value == "":
    return "n/a"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
  """Cells are HTML already (escaped by the caller)."""
  head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                 for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: Optional[str]) -> str:
  return f'<p class="note">{html.escape(text)}</p>' if text else ""


_WHY_HELD = {"FAILED": "a node failed (taxi-demand show RUN names it)",
             "ABORTED": "its process died mid-node (runner_local.py --resume)"}


def _runs(report, figs) -> str:
  out = [_img(figs["runs"], "runs over time")] if figs.get("runs") else []
  held = [r for r in report.runs
          if r["status"] in ("REFUSED", "FAILED", "ABORTED")
          or r.get("blessed") is False]
  out.append("<h3>Refused and unblessed days</h3>")
  out.append(_table(["day", "run", "status", "reason"], (
      [_e(r["date"]), _e(r["run_id"]), f'<span class="bad">{_e(r["status"])}'
       "</span>", _e(r["reasons"] or _WHY_HELD.get(r["status"],
                                                   "not blessed"))]
      for r in held))
             if held else _note("none: every run in view passed its gates"))
  out.append(f"<details><summary>All {len(report.runs)} runs</summary>")
  out.append(_table(
      ["run", "day", "status", "wall s", "MAE", "naive MAE", "serving MAE",
       "blessed", "pushed"],
      ([_e(r["run_id"]), _e(r["date"]), _e(r["status"]),
        f'<span class="num">{r["wall_s"]:.1f}</span>', _e(r["mae"]),
        _e(r["seasonal_naive_mae"]), _e(r["serving_mae"]), _e(r["blessed"]),
        _e(r["pushed_version"])] for r in reversed(report.runs))))
  out.append("</details>")
  return "".join(out)


def _serving(report, figs) -> str:
  s = report.serving
  if s is None:
    return _note(report.notes.get("serving", "no serving model"))
  own = [r for r in s["next_day"] if str(r.get("model_version")) ==
         str(s["version"]) and r.get("mae") is not None]
  latest = own[-1] if own else None
  trend = s["trend_per_day"]
  kpis = [("version", _e(s["version"])),
          ("pushed for", _e(s["pushed"]["date"])),
          ("eval MAE", _e((s["blessing"] or {}).get("model_mae"))),
          ("next-day MAE", f'{_e(latest["mae"])} ({_e(latest["date"])})'
           if latest else "not scored yet"),
          # Marked bad where the gradual alert (default rules) would raise.
          ("trend", "n/a" if trend is None else
           f'<span class="{"bad" if trend > TREND_ALERT else "good"}">'
           f"{trend:+.1%}/day</span>")]
  out = ['<div>' + "".join(f'<span class="kpi">{k}<b>{v}</b></span>'
                           for k, v in kpis) + "</div>"]
  if figs.get("next_day"):
    out.append(_img(figs["next_day"], "next-day MAE"))
  else:
    out.append(_note("no next-day result recorded yet "
                     "(taxi-demand next-day --date D)"))
  out.append("<h3>Served MAE by lead time</h3>")
  if figs.get("served_by_lead"):
    of = s["served_by_lead_of"]
    out.append(_note(f"forecasts served on {of['date']} by version "
                     f"{of['model_version']}, scored on that day's trips"))
    out.append(_img(figs["served_by_lead"], "served MAE by lead"))
  else:
    out.append(_note("no served forecast scored yet (taxi-demand next-day "
                     "scores the served log)"))
  out.append("<h3>Lineage</h3><pre class=\"tree\">"
             + html.escape("\n".join(s["lineage"])) + "</pre>")
  return "".join(out)


def _checks(report, figs) -> str:
  if not report.checks:
    return _note("no run checked a day yet")
  out = []
  for kind in ("drift", "skew"):
    if figs.get(kind):
      out.append(_img(figs[kind], f"{kind} per feature"))
    else:
      out.append(_note(f"no {kind} measured on the days in view"))
  out.append("<h3>Per day</h3>")
  rows = []
  for c in reversed(report.checks):
    flagged = sorted(n for kind in ("drift", "skew")
                     for n, f in c[kind].items() if f.get("flagged"))
    lines = "<br>".join(_e(line) for line in c["lines"]) or "none"
    rows.append([
        _e(c["date"]), _e(c["status"]), _e(c["eval_examples"]),
        f'<span class="{"bad" if c["anomaly_count"] else "good"}">'
        f'{_e(c["anomaly_count"])}</span>',
        "yes" if c["drift_checked"] else "no (no previous day)",
        ("not checked" if not c["skew"] else
         '<span class="bad">alert</span>' if c["skew_alert"] else "ok"),
        _e(", ".join(flagged)) if flagged else "none", lines])
  out.append(_table(["day", "status", "examples", "anomalies", "drift checked",
                     "skew", "flagged features", "DataGate lines"], rows))
  return "".join(out)


def _demand(report, figs) -> str:
  if report.demand is None:
    return _note(report.notes.get("demand", "no demand data"))
  out = [_img(figs["heatmap"], "pickups by cell and hour"),
         _img(figs["predicted"], "predicted against actual"),
         _note(report.notes.get("predicted"))]
  if figs.get("plane"):
    out.append(_img(figs["plane"], "cells coloured by next-slot forecast"))
    if report.plane.unplaced:
      out.append(_note(f"{report.plane.unplaced} cell(s) have no located "
                       "pickup in the last days and are not drawn"))
  out.append(_note(report.notes.get("plane")))
  return "".join(out)


def _compare(report) -> str:
  c = report.compare
  if c is None:
    return _note(report.notes.get("compare", "nothing to compare"))
  a, b, diff = c["a"], c["b"], c["diff"]
  out = [f"<p>a = run {_e(a['run_id'])} ({_e(a['date'])}), b = run "
         f"{_e(b['run_id'])} ({_e(b['date'])}). "
         "Pick others with <code>--compare RUN_A RUN_B</code>.</p>"]
  metrics = sorted(set(a["metrics"]) | set(b["metrics"]))
  rows = []
  for key in metrics:
    va, vb = a["metrics"].get(key), b["metrics"].get(key)
    delta = (vb - va) if isinstance(va, float) and isinstance(vb, float) \
        else None
    rows.append([_e(key), _e(va, 4), _e(vb, 4),
                 "" if delta is None else f"{delta:+.4f}"])
  for key in ("blessed", "pushed_version", "status"):
    rows.append([key, _e(a[key]), _e(b[key]), ""])
  out.append("<h3>Metrics</h3>" + _table(["", "a", "b", "b - a"], rows))
  keys = sorted(set(a["parameters"]) | set(b["parameters"]))
  changed = set((diff.get("parameters") or {}))
  out.append("<h3>Parameters</h3>" + _table(["", "a", "b"], (
      [(f'<span class="bad">{_e(k)}</span>' if k in changed else _e(k)),
       _e(a["parameters"].get(k)), _e(b["parameters"].get(k))]
      for k in keys)))
  if "data" in diff:
    out.append("<h3>Data</h3>" + _table(["", "a", "b"], (
        [_e(k), _e(_compact(v["a"])), _e(_compact(v["b"]))]
        for k, v in diff["data"].items())))
  for section in ("schema", "code_version"):
    if section in diff:
      out.append(f"<h3>{section.replace('_', ' ').capitalize()}</h3><pre>"
                 + html.escape(_pretty(diff[section])) + "</pre>")
  if len(diff) <= 2:
    out.append(_note("the two runs differ in nothing recorded"))
  return "".join(out)


def _compact(value: Any) -> Any:
  """A list of days as "first .. last (n)", gaps named."""
  if not isinstance(value, list) or len(value) < 4:
    return ", ".join(map(str, value)) if isinstance(value, list) else value
  import datetime  # noqa: PLC0415
  try:
    days = [datetime.date.fromisoformat(str(v)) for v in value]
  except ValueError:
    return ", ".join(map(str, value))
  missing = [d for d in (days[0] + datetime.timedelta(i) for i in range(
      (days[-1] - days[0]).days + 1)) if d not in set(days)]
  gap = f", without {', '.join(map(str, missing))}" if missing else ""
  return f"{days[0]} .. {days[-1]} ({len(days)} days{gap})"


def _pretty(value: Any) -> str:
  import json  # noqa: PLC0415
  return json.dumps(value, indent=2, sort_keys=True, default=str)


def render(report, figs: Optional[Dict[str, str]] = None) -> str:
  """The page's HTML text; `figs` are the figures as SVG text (default:
  drawn here, all of them)."""
  if figs is None:
    figs = svgs(report, plots.METADATA_FIGURES + plots.DEMAND_FIGURES)
  bodies = {"runs": _runs(report, figs), "serving": _serving(report, figs),
            "checks": _checks(report, figs), "demand": _demand(report, figs),
            "compare": _compare(report)}
  nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS)
  sections = "".join(f'<section id="{key}"><h2>{title}</h2>{bodies[key]}'
                     "</section>" for key, title in SECTIONS)
  newest = report.runs[-1]["date"] if report.runs else None
  shown = (f"the newest {len(report.runs)} of {report.total_runs} runs "
           "(<code>taxi-demand report --all</code> shows every one)"
           if len(report.runs) < report.total_runs else
           f"{len(report.runs)} runs")
  return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width\">"
          f"<title>taxi_demand report {_e(newest)}</title>"
          f"<style>{_CSS}</style></head><body><header><h1>taxi_demand "
          f"report</h1><p>{shown} up to {_e(newest)} · home "
          f"{_e(report.home)} · generated {_e(report.generated_at)}</p>"
          f"</header><nav>{nav}</nav><main>{sections}</main></body></html>\n")


def write(report, out_dir: os.PathLike,
          figs: Optional[Dict[str, str]] = None) -> Path:
  """Writes `out_dir/index.html` atomically; returns its path."""
  out = Path(out_dir)
  if out.exists() and not out.is_dir():
    raise TaxiDemandError(f"--out {out} is a file; give a folder")
  try:
    out.mkdir(parents=True, exist_ok=True)
    text = render(report, figs)
    final = atomic.write_text(out / FILE_NAME, text)
  except OSError as e:
    raise TaxiDemandError(f"cannot write the report to {out}: "
                          f"{e.strerror or e}") from None
  return final
