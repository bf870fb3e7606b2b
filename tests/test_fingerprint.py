"""ExampleGen's cache key: the warehouse fingerprint moves with the data."""

import datetime

from taxi_demand.data import simulate
from taxi_demand.data import warehouse as wh

DAY = 86_400


def test_fingerprint_changes_with_trips_before_the_cut_and_only_those(tmp_path):
  path = tmp_path / "w.duckdb"
  with wh.Warehouse(path) as w:
    simulate.simulate_into(w, start=datetime.date(2024, 1, 1), days=3,
                           seed=1, scale=0.05)
    first, last = w.span_range()
    cut = (first + 2) * DAY                       # before the last day
    before = w.fingerprint(cut)
    assert w.fingerprint(cut) == before           # deterministic
    w.con.execute("DELETE FROM trips WHERE trip_start_timestamp >= "
                  "make_timestamp(CAST(? AS BIGINT) * 1000000)", [cut])
    assert w.fingerprint(cut) == before           # later trips don't count
    w.con.execute("DELETE FROM trips WHERE unique_key = (SELECT min(unique_key)"
                  " FROM trips)")
    assert w.fingerprint(cut) != before
