"""`taxi-demand report`: its data, its page in a real browser, its errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from taxi_demand import cli
from taxi_demand import features
from taxi_demand import spans
from taxi_demand.data.warehouse import Warehouse
from taxi_demand.lineage import queries
from taxi_demand.lineage import store
from taxi_demand.report import data
from taxi_demand.report import page
from taxi_demand.serving import servelog

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAST_DAY = "2024-02-11"


@pytest.fixture(scope="module")
def gathered(report_home):
  return data.gather(report_home)


# --- the page in Chromium -------------------------------------------------------


def test_the_page_renders_every_section_in_chromium(report_home, tmp_path):
  if not os.access(CHROMIUM, os.X_OK):
    pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it "
                "(tools/chromium.sh), or set CHROMIUM")
  from playwright.sync_api import sync_playwright  # noqa: PLC0415
  out = tmp_path / "report"
  assert cli.main(["--home", str(report_home.root), "report", "--out",
                   str(out)]) == 0
  index = out / "index.html"
  text = index.read_text()
  assert "http://" not in text and "https://" not in text  # no CDN, no link

  errors, requests = [], []
  with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"])
    try:
      view = browser.new_page(viewport={"width": 1280, "height": 900})
      view.on("console", lambda m: errors.append(m.text)
              if m.type == "error" else None)
      view.on("pageerror", lambda e: errors.append(str(e)))
      view.on("request", lambda r: requests.append(r.url))
      view.goto(index.as_uri(), wait_until="load")
      sections = view.evaluate("""() => [...document.querySelectorAll(
          'main > section')].map(s => ({
            id: s.id, title: s.querySelector('h2').innerText,
            text: s.innerText.length, height: s.getBoundingClientRect().height,
            images: [...s.querySelectorAll('img')].map(i => ({
              alt: i.alt, ok: i.complete && i.naturalWidth > 0,
              width: i.getBoundingClientRect().width})),
            tables: s.querySelectorAll('table tbody tr').length,
            notes: [...s.querySelectorAll('.note')].map(n => n.innerText)}))""")
      shot = REPO / "build" / "report.png"
      shot.parent.mkdir(exist_ok=True)
      view.screenshot(path=str(shot), full_page=True)
    finally:
      browser.close()

  assert errors == []
  assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
  by_id = {s["id"]: s for s in sections}
  assert [s["title"] for s in sections] == [title for _, title in page.SECTIONS]
  for section in sections:
    assert section["height"] > 300, section["id"]
    assert section["images"] or section["tables"], section["id"]
    assert section["text"] > len(section["title"]) + 20, section["id"]
    assert all(i["ok"] and i["width"] > 200 for i in section["images"]), (
        section["id"], section["images"])
  alts = {i["alt"] for s in sections for i in s["images"]}
  # Every figure drew: the city has served forecasts, drift, skew, a
  # refused day and next-day results with served MAE by lead.
  assert alts == {"runs over time", "next-day MAE", "served MAE by lead",
                  "drift per feature", "skew per feature",
                  "pickups by cell and hour", "predicted against actual",
                  "cells coloured by next-slot forecast"}
  assert by_id["runs"]["tables"] >= 10 + 2  # every run, the held days
  assert by_id["compare"]["tables"] >= 10
  # No section fell back to "no ... yet".
  assert not [n for s in sections for n in s["notes"] if n.startswith("no ")]
  assert shot.stat().st_size > 50_000


# --- what it shows ----------------------------------------------------------------


def test_runs_show_refused_and_unblessed_days_with_reasons(gathered):
  rows = {r["date"]: r for r in gathered.runs}
  assert len(rows) == 10 and gathered.runs[-1]["date"] == LAST_DAY
  refused = [r for r in gathered.runs if r["status"] == "REFUSED"]
  assert [r["date"] for r in refused] == ["2024-02-10"]
  assert "drift" in refused[0]["reasons"] and refused[0]["mae"] is None
  unblessed = [r for r in gathered.runs if r["blessed"] is False]
  assert [r["date"] for r in unblessed] == ["2024-02-08"]
  assert "seasonal naive" in unblessed[0]["reasons"]
  # The serving model then: the newest blessed model before each run.
  assert gathered.runs[0]["serving_mae"] is None
  assert all(r["serving_mae"] is not None for r in gathered.runs[1:]
             if r["status"] == "COMPLETE")


def test_checks_carry_drift_and_skew_per_feature(gathered):
  checks = {c["date"]: c for c in gathered.checks}
  first, refused = checks["2024-02-02"], checks["2024-02-10"]
  assert not first["drift_checked"] and first["drift"] == {}
  assert refused["anomaly_count"] == 1
  flagged = [n for n, f in refused["drift"].items() if f["flagged"]]
  assert len(flagged) == 1 and flagged[0] in refused["lines"][0]
  assert all(f["threshold"] > 0 and f["distance"] >= 0
             for c in gathered.checks for f in c["drift"].values())
  skewed = [d for d, c in checks.items() if c["skew_alert"]]
  assert skewed and all(any(f["flagged"] for f in checks[d]["skew"].values())
                        for d in skewed)


def test_serving_shows_lineage_as_the_lineage_command_prints_it(
    report_home, gathered, capsys):
  assert cli.main(["--home", str(report_home.root), "lineage",
                   "serving"]) == 0
  assert capsys.readouterr().out.splitlines() == gathered.serving["lineage"]
  snap = store.load(report_home.metadata)
  assert gathered.serving["version"] == queries.serving_version(snap)
  by_lead = gathered.serving["served_by_lead"]
  assert sorted(map(int, by_lead)) == list(range(0, 60, 5))


def test_the_pages_trend_is_the_one_the_gradual_alert_reads(report_home,
                                                           gathered):
  """The page shows the trend `next-day` judged the newest result by: one
  definition (nextday.trend), over the same results, so the page cannot show
  a trend the alert would not raise."""
  from taxi_demand.monitoring import nextday  # noqa: PLC0415
  points = nextday.mae_points(queries.next_day_results(
      store.load(report_home.metadata)))
  shown = gathered.serving["trend_per_day"]
  assert shown is not None and shown == nextday.trend(points)
  *earlier, (span, mae) = sorted(points)
  alert, reason = nextday.judge(span, mae, None, earlier, nextday.Rules())
  assert f"{shown:+.1%}/day" in reason
  assert alert == (shown > nextday.Rules().trend_slope)


def test_demand_counts_the_days_trips_and_places_the_forecast(
    report_home, gathered):
  demand = gathered.demand
  assert demand.day == LAST_DAY
  with Warehouse(report_home.warehouse, read_only=True) as wh:
    trips = wh.trips_on(spans.parse_span(LAST_DAY))
  assert demand.total == trips  # every pickup with an area, in its cell
  totals = demand.hourly.sum(axis=1)
  assert list(totals) == sorted(totals, reverse=True)
  assert demand.predicted_leads  # the day's served forecasts sit beside it
  busiest = demand.cells[0]
  shown = demand.predicted[busiest]
  assert np.isfinite(shown).all()
  assert np.corrcoef(shown, demand.actual[busiest])[0, 1] > 0.8
  plane = gathered.plane
  assert len(plane.cells) > 50 and "forecast pickups" in plane.label
  assert np.all((41.6 < plane.latitude) & (plane.latitude < 42.1))


def test_compare_defaults_to_the_newest_run_against_the_serving_models(
    report_home, gathered):
  compare = gathered.compare
  assert compare["b"]["date"] == LAST_DAY
  assert compare["a"]["date"] == "2024-02-09"  # the refused 02-10 trained none
  assert compare["diff"]["parameters"]["train_days"] == {"a": 7, "b": 6}
  picked = data.gather(report_home, compare=["2024-02-02", "2024-02-05"])
  assert (picked.compare["a"]["date"], picked.compare["b"]["date"]) == (
      "2024-02-02", "2024-02-05")


def test_last_n_limits_runs_and_checks(report_home):
  report = data.gather(report_home, last=3, with_demand=False)
  assert [r["date"] for r in report.runs] == [
      "2024-02-09", "2024-02-10", "2024-02-11"]
  assert len(report.checks) == 3 and report.demand is None


def test_the_report_shows_its_newest_page_of_runs_unless_told(
    report_home, tmp_path, capsys, monkeypatch):
  """A history longer than the page shows its newest runs and says how many
  it left out, in the console line and on the page; --all shows every one."""
  from taxi_demand import cli  # noqa: PLC0415
  from taxi_demand.report import commands  # noqa: PLC0415
  total = len(data.gather(report_home, with_demand=False).runs)
  monkeypatch.setattr(commands, "REPORT_PAGE", 3)
  argv = ["--home", str(report_home.root), "report", "--out"]
  assert cli.main([*argv, str(tmp_path / "paged")]) == 0
  out = capsys.readouterr().out
  assert f"report: the newest 3 of {total} runs up to 2024-02-11" in out
  page = (tmp_path / "paged" / "index.html").read_text()
  assert f"the newest 3 of {total} runs" in page
  assert cli.main([*argv, str(tmp_path / "all"), "--all"]) == 0
  assert f"report: {total} runs up to 2024-02-11" in capsys.readouterr().out


# --- the pieces, on hand-made rows ------------------------------------------------


def _forecasts(rows):
  cell, slot, issued, lead, value = zip(*rows)
  return pa.table({features.CELL: pa.array(cell, pa.int64()),
                   features.SLOT_START: pa.array(slot, pa.int64()),
                   features.ISSUED_AT: pa.array(issued, pa.int64()),
                   features.LEAD_MINUTES: pa.array(lead, pa.int64()),
                   servelog.PREDICTED: pa.array(value, pa.float64()),
                   servelog.MODEL_VERSION: pa.array(["7"] * len(cell))})


def _pickups(rows):
  cell, slot, n, located, lat, lon = zip(*rows)
  return pa.table({features.CELL: pa.array(cell, pa.int64()),
                   features.SLOT_START: pa.array(slot, pa.int64()),
                   "pickups": pa.array(n, pa.int64()),
                   "located": pa.array(located, pa.int64()),
                   "latitude_sum": pa.array(lat, pa.float64()),
                   "longitude_sum": pa.array(lon, pa.float64())})


SPAN = 19_700
T0 = SPAN * 86_400


def test_demand_of_day_fills_slots_and_orders_cells():
  pickups = _pickups([(3, T0, 2, 2, 83.0, -175.0), (3, T0 + 1800, 1, 0, 0, 0),
                      (5, T0 + 3600, 9, 1, 41.9, -87.6),
                      (5, T0 - 1800, 100, 0, 0, 0)])  # the day before
  demand = data.demand_of_day(pickups, SPAN, 30)
  assert demand.cells == [5, 3] and len(demand.slot_starts) == 48
  assert list(demand.actual[3][:3]) == [2, 1, 0]
  assert demand.hourly[0][1] == 9 and demand.hourly[1][0] == 3
  assert data.positions(pickups) == {3: (41.5, -87.5), 5: (41.9, -87.6)}


def test_forecasts_shown_are_issued_nearest_to_thirty_minutes_ahead():
  demand = data.demand_of_day(_pickups([(1, T0 + 3600, 4, 0, 0, 0)]), SPAN, 30)
  slot = T0 + 3600
  demand = data.add_forecasts(demand, _forecasts([
      (1, slot, slot - 3300, 55, 1.0), (1, slot, slot - 1500, 25, 2.0),
      (1, slot, slot - 2100, 35, 3.0), (1, slot, slot, 0, 4.0),
      (9, slot, slot - 1800, 30, 5.0)]))  # a cell with no pickups: left out
  # 25 and 35 are both 5 min off: the earlier issue (35) wins.
  assert demand.predicted[1][2] == 3.0 and demand.predicted_leads == [35]
  assert np.isnan(demand.predicted[1][0])


def test_next_slot_forecast_takes_each_cells_newest_for_the_next_slot():
  tick = T0 + 8 * 3600 + 300   # 08:05
  slot = T0 + 8 * 3600 + 1800  # 08:30
  got = data.next_slot_forecast(_forecasts([
      (1, slot, tick - 300, 30, 1.0), (1, slot, tick, 25, 2.0),
      (1, slot + 1800, tick, 55, 9.0), (2, slot, tick - 600, 35, 3.0),
      (3, slot - 1800, tick - 900, 15, 7.0)]))
  assert (got["issued_at"], got["slot_start"]) == (tick, slot)
  assert got["by_cell"] == {1: 2.0, 2: 3.0}


def test_a_list_of_days_is_shown_compactly_with_its_gaps():
  days = ["2024-02-01", "2024-02-02", "2024-02-04", "2024-02-05"]
  assert page._compact(days) == (  # pylint: disable=protected-access
      "2024-02-01 .. 2024-02-05 (4 days, without 2024-02-03)")


# --- errors and weight ------------------------------------------------------------


@pytest.mark.parametrize("setup,message", [
    ("missing", "no ML Metadata store at"),
    ("empty", "holds no runs yet"),
])
def test_an_empty_or_missing_store_is_one_line_exit_1(tmp_path, setup,
                                                      message):
  home = tmp_path / "home"
  if setup == "empty":
    from ml_metadata import metadata_store  # noqa: PLC0415
    from ml_metadata.proto import metadata_store_pb2  # noqa: PLC0415
    home.mkdir()
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(home / "metadata.sqlite")
    config.sqlite.connection_mode = 3
    metadata_store.MetadataStore(config)
  done = subprocess.run(
      [sys.executable, "-m", "taxi_demand", "--home", str(home), "report"],
      capture_output=True, text=True, check=False)
  assert done.returncode == 1
  assert done.stderr.count("\n") == 1 and message in done.stderr
  assert "Traceback" not in done.stderr and done.stdout == ""
  assert not (home / "report").exists()


def test_bad_arguments_are_one_line_exit_1(report_home, tmp_path, capsys):
  home = ["--home", str(report_home.root)]
  assert cli.main(home + ["report", "--compare", "nope", "last"]) == 1
  assert cli.main(home + ["report", "--last", "0"]) == 1
  afile = tmp_path / "afile"
  afile.write_text("")
  assert cli.main(home + ["report", "--out", str(afile)]) == 1
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 3 and "no run 'nope'" in err[0]
  assert "--last must be >= 1" in err[1] and "is a file" in err[2]


_NO_TF = """
import sys
from pathlib import Path
from taxi_demand.home import Home
from taxi_demand.report import build
build.build(Home(Path(sys.argv[1])), sys.argv[2], parallel=False)
heavy = [m for m in ("tensorflow", "tfx", "tensorflow_transform",
                     "tensorflow_data_validation", "apache_beam")
         if m in sys.modules]
print("HEAVY=" + ",".join(heavy))
"""


def test_the_report_reads_metadata_without_tensorflow(report_home, tmp_path):
  done = subprocess.run(
      [sys.executable, "-c", _NO_TF, str(report_home.root),
       str(tmp_path / "out")], capture_output=True, text=True, check=True)
  assert "HEAVY=\n" in done.stdout
  assert (tmp_path / "out" / "index.html").stat().st_size > 100_000


def test_parallel_and_serial_builds_write_the_same_page(report_home,
                                                        tmp_path):
  """The forked build runs as the command runs it, in a process without
  TensorFlow; this test process has loaded it (report_home scores a day),
  so a build here must not fork: a forked child that frees a TensorFlow
  object hangs."""
  import tensorflow  # noqa: F401, PLC0415
  from taxi_demand.home import Home  # noqa: PLC0415
  from taxi_demand.report import build  # noqa: PLC0415
  home = Home(report_home.root)
  forked = subprocess.run(
      [sys.executable, "-c",
       "import sys; from pathlib import Path; "
       "from taxi_demand.home import Home; "
       "from taxi_demand.report import build; "
       "build.build(Home(Path(sys.argv[1])), sys.argv[2], parallel=True); "
       "assert 'tensorflow' not in sys.modules",
       str(home.root), str(tmp_path / "a")],
      capture_output=True, text=True, timeout=300)
  assert forked.returncode == 0, forked.stderr[-2000:]
  a = tmp_path / "a" / "index.html"
  _, b = build.build(home, tmp_path / "b", parallel=False)
  _, c = build.build(home, tmp_path / "c", parallel=True)  # serial here

  def body(path):  # the generation time differs
    text = path.read_text()
    return text[text.index("</header>"):]
  assert body(a) == body(b) == body(c)


def test_help_teaches_and_stays_light():
  done = subprocess.run([sys.executable, "-m", "taxi_demand", "report",
                         "--help"], capture_output=True, text=True, check=True)
  assert "--compare RUN_A RUN_B" in done.stdout and "Examples:" in done.stdout
  probe = subprocess.run(
      [sys.executable, "-c", "import sys; from taxi_demand import cli; "
       "cli.build_parser(); print('matplotlib' in sys.modules)"],
      capture_output=True, text=True, check=True)
  assert probe.stdout.strip() == "False"


def test_links_planted_in_the_out_folder_are_never_written_through(
    tmp_path, capsys):
  """A shared --out folder: whoever can write there may plant symlinks at the
  temporary's old, predictable name and at index.html itself. The report
  replaces index.html with a file of its own and leaves both victims as
  they were."""
  from taxi_demand.testing import synthetic  # noqa: PLC0415
  home = tmp_path / "home"
  synthetic.build(home, 3)
  out = tmp_path / "shared"
  out.mkdir()
  victims = {name: tmp_path / f"victim-{i}" for i, name in enumerate(
      [f".index.html.{os.getpid()}.tmp", "index.html"])}
  for name, victim in victims.items():
    victim.write_text("precious\n")
    (out / name).symlink_to(victim)
  assert cli.main(["--home", str(home), "report", "--out", str(out)]) == 0
  capsys.readouterr()
  assert all(v.read_text() == "precious\n" for v in victims.values())
  index = out / "index.html"
  assert not index.is_symlink() and "taxi_demand report" in index.read_text()
  # The planted temporary is someone else's: left alone, not followed.
  assert (out / f".index.html.{os.getpid()}.tmp").is_symlink()
  assert sorted(p.name for p in out.iterdir()) == sorted(victims)
