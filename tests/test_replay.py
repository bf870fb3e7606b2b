"""`taxi-demand replay`: a past day served as of each tick, recorded, scored
by lead. On copies of the session's city home."""

import collections
import json

import pyarrow.parquet as pq
import pytest

from taxi_demand import cli
from taxi_demand import features
from taxi_demand import spans
from taxi_demand.serving import predict
from taxi_demand.serving import servelog

pytestmark = pytest.mark.slow

DAY = "2024-02-10"


def _one_line(err, code, want):
  assert code == want
  assert err.count("\n") == 1 and "Traceback" not in err, err
  return err


def test_replay_records_every_lead_and_scores_it(city_copy, capsys):
  code = cli.main(["--home", str(city_copy.root), "replay", "--date", DAY,
                   "--every", "30m", "--json"])
  summary = json.loads(capsys.readouterr().out)
  assert code == 0
  # Ticks every 30 minutes from 23:05 the day before: leads 25 and 55 for
  # every slot of the day, each forecast issued on the grid.
  assert set(summary["by_lead"]) == {"25", "55"}
  assert all(row["forecasts"] == 77 * 48 for row in summary["by_lead"].values())
  for row in summary["by_lead"].values():
    assert 0 < row["mae"] < row["seasonal_naive_mae"] * 1.5
  assert 0 < summary["complete_information_mae"]
  # Recorded as the live job records, in the replay log: both forecasts of
  # a slot are kept. The served log holds only what was served live.
  day = spans.start_of(spans.parse_span(DAY))
  kept = servelog.forecasts_between(city_copy.replay_log, day, day + 86400)
  assert collections.Counter(kept.column("lead_minutes").to_pylist()) == {
      25: 77 * 48, 55: 77 * 48}
  assert servelog.logged_days(city_copy.serving_log) == []
  log = servelog.read_day(city_copy.replay_log,
                          servelog.parse_date(DAY))
  assert log.has_issue_times and log.table.num_rows == 2 * 77 * 48
  issued = log.table.column(features.ISSUED_AT).to_pylist()
  slots = log.table.column(features.SLOT_START).to_pylist()
  assert all(i < s or i == s for i, s in zip(issued, slots))


@pytest.mark.parametrize("argv, needle", [
    (["--date", "2024-03-30"], "the warehouse ends on 2024-02-11"),
    (["--date", "2024-01-20"], "needs the 7 days before it"),
    (["--date", DAY, "--every", "7m"], "multiple of 5 minutes"),
    (["--date", "2024-02-31"], "bad date"),
    (["--date", DAY, "--between", "09:00-07:00"], "bad --between"),
    (["--date", DAY, "--between", "07:10-07:20"], "no whole 30-minute slot"),
])
def test_replay_bad_input_is_one_line_exit_1(city_copy, capsys, argv, needle):
  code = cli.main(["--home", str(city_copy.root), "replay", *argv])
  assert needle in _one_line(capsys.readouterr().err, code, 1)


def _files(folder):
  return {p.relative_to(folder): p.read_bytes()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_replay_beside_a_live_tick_leaves_the_served_log_as_served(
    city_copy, capsys):
  """predict at 07:30 served 08:00 too; a replay of 07:30-08:00 wrote its
  own 07:30 file over the live one (77 rows for 154), and after late trips
  its features were hindsight, dated 07:30. Now the replay records apart,
  and nothing that reads the served log sees it."""
  home = ["--home", str(city_copy.root)]
  assert cli.main(home + ["predict", "--at", f"{DAY}T07:30", "--horizon",
                          "2"]) == 0
  live = _files(city_copy.serving_log)
  [live_file] = live
  assert pq.read_metadata(city_copy.serving_log / live_file).num_rows == 154
  tick = predict.parse_at(f"{DAY}T07:30")
  assert cli.main(home + ["replay", "--date", DAY, "--between",
                          "07:30-08:00", "--json"]) == 0
  capsys.readouterr()
  assert _files(city_copy.serving_log) == live   # byte for byte, no more
  # The replay's 07:30 tick, under the same name, in its own log.
  replayed = city_copy.replay_log / live_file
  assert pq.read_metadata(replayed).num_rows == 77
  # predict's catch-up and next-day's served forecasts see the live tick only.
  day = servelog.parse_date(DAY)
  assert servelog.served_ticks(city_copy.serving_log, [day]) == {
      tick: [live_file.name.split("-v")[-1][:-len(".parquet")]]}
  served = servelog.forecasts_between(
      city_copy.serving_log, spans.start_of(spans.parse_span(DAY)),
      spans.start_of(spans.parse_span(DAY) + 1))
  assert served.num_rows == 154
  assert set(served.column("issued_at").to_pylist()) == {tick}


def test_replay_live_job_and_every_lead_rows_serve_one_revised_forecast(
    city_copy, capsys):
  """Each tick's forecast is revised from what was served at the tick
  before (revision): the replay, the live job, a replay every 30 minutes
  and a table of every lead (the fleet's) serve the same, and it differs
  from the model's own forecast after the slot's first tick."""
  import numpy as np  # noqa: PLC0415
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  from taxi_demand.serving import replay  # noqa: PLC0415
  from taxi_demand.serving import revision  # noqa: PLC0415
  home = ["--home", str(city_copy.root)]
  assert cli.main(home + ["replay", "--date", DAY, "--between",
                          "08:00-08:30", "--json"]) == 0
  capsys.readouterr()
  slot = predict.parse_at(f"{DAY}T08:00")
  replayed = servelog.forecasts_between(city_copy.replay_log, slot,
                                        slot + 1800).to_pandas()
  assert sorted(set(replayed["lead_minutes"])) == list(range(0, 60, 5))
  model = predict.LoadedModel(city_copy)
  with open_reader(city_copy.warehouse) as wh:
    rows = wh.every_lead_features(model.cfg, slot, slot + 1800)
  raw = np.asarray(model.score(rows), float)
  frame = rows.select([features.CELL, features.ISSUED_AT]).to_pandas()
  frame["revised"] = revision.revise_every_lead(rows, raw)
  frame["raw"] = raw
  both = replayed.merge(frame, on=[features.CELL, features.ISSUED_AT])
  assert len(both) == 12 * 77
  assert (both["predicted_pickups"] == both["revised"]).all()
  moved = both["revised"] != both["raw"]
  assert moved.any() and not moved[both["lead_minutes"] == 55].any()

  def at_lead(lead):
    return both[both["lead_minutes"] == lead].sort_values(features.CELL)[
        "predicted_pickups"].tolist()

  # The live job at 07:35 (lead 25) reads the slot's earlier ticks from the
  # warehouse and serves the same ...
  live = predict.run_job(city_copy, model, slot - 1500).predictions
  live = live.to_pandas().sort_values(features.CELL)
  assert live["predicted_pickups"].tolist() == at_lead(25)
  # ... as does a replay ticking every 30 minutes (07:05 and 07:35).
  sparse = replay.replay(city_copy, DAY, every_s=1800, record=False,
                         between=(8 * 3600, 8 * 3600 + 1800)).served
  sparse = sparse.to_pandas()
  sparse = sparse[sparse["lead_minutes"] == 25].sort_values(features.CELL)
  assert sparse["predicted_pickups"].tolist() == at_lead(25)
