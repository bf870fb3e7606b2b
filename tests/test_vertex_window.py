"""The training window on Vertex: the days DataGate passed, read from BigQuery.

Vertex compiles only TFX's built-in resolvers, so the window ExampleGen
reads DataGate's day verdicts (taxi_demand.data.verdicts) and asks them the
local resolver's rule (spans.window_days). Its query, run by the container
entrypoint as Vertex runs it and answered by the loopback BigQuery double,
must hold the days the local window holds, row for row.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

import vertex_container
from taxi_demand import spans
from taxi_demand.data import sql
from taxi_demand.data import verdicts
from taxi_demand.errors import TaxiDemandError
from taxi_demand.lineage.contract import DAY_SPLIT as DAY

D = spans.parse_span("2024-02-10")   # with 2 x 3 days and their history
TRAIN_DAYS = 3
TABLE = "test-project.city.trips"    # the double's table
WINDOW = "TrainingWindow"


def _day_config():
  from pipeline.components.duckdb_example_gen import input_config_for  # noqa: PLC0415
  return input_config_for(sql.QueryConfig(table=TABLE))


def _key() -> str:
  from pipeline.components.duckdb_example_gen import query_key  # noqa: PLC0415
  return query_key(_day_config())


def _record(root, passed: dict) -> None:
  """DataGate's verdicts: {days before D: passed}."""
  store = verdicts.VerdictStore(root)
  for back, ok in passed.items():
    store.write(verdicts.DayVerdict(span=D - back, passed=ok,
                                    query_key=_key(),
                                    statistics_uri=f"/stats/{D - back}"))


def _window_query(tmp_path, root) -> str:
  """The window ExampleGen, compiled for Vertex and run as its container,
  for span D; returns the query it hands to TFX's BigQuery executor."""
  from tfx.orchestration import data_types  # noqa: PLC0415
  from pipeline.components.bigquery_example_gen import SpanBigQueryExampleGen  # noqa: PLC0415
  window = SpanBigQueryExampleGen(
      input_config=_day_config(),
      span=data_types.RuntimeParameter(name="span", ptype=int, default=0),
      window_days=TRAIN_DAYS, verdicts_root=str(root)).with_id(WINDOW)
  job = vertex_container.compile_job([window], tmp_path)
  queries, span = vertex_container.run_example_gen(job, WINDOW, tmp_path,
                                                   {"span": D})
  # The run's own day, as the local window's consumers see it.
  assert span == D
  return queries[DAY]


def _sorted(table: pa.Table) -> list:
  return table.sort_by([(c, "ascending") for c in
                        ("slot_start", "cell", "issued_at")]).to_pylist()


def test_a_refused_day_is_left_out_and_one_further_back_read(
    tmp_path, gcs_root, bigquery, city):
  from taxi_demand.data import bigquery as bq  # noqa: PLC0415
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  # D-2 refused; D-5 and D-6 passed too, D-7 beyond 2 x 3 days.
  _record(gcs_root, {1: True, 2: False, 3: True, 4: True, 5: True,
                     6: True, 7: True})
  query = _window_query(tmp_path, gcs_root)
  with bq.BigQueryWarehouse(bigquery.address) as cloud:
    got = cloud._rows(query)  # pylint: disable=protected-access
  days = {spans.span_of_epoch(s) for s in
          got.column("slot_start").to_pylist()}
  assert days == {D - 4, D - 3, D - 1}
  # Each day exactly as its own run ingests it, as the local window is.
  with Warehouse(city.warehouse, read_only=True) as local:
    want = pa.concat_tables([local.query_demand(
        sql.QueryConfig(), day) for day in (D - 4, D - 3, D - 1)])
  assert got.num_rows == want.num_rows == 3 * 77 * 48
  assert _sorted(got) == _sorted(want.cast(got.schema))


def test_the_window_never_reaches_back_more_than_twice_its_days(tmp_path):
  # The three days before D refused: the window is the three before them,
  # not the older passed day beyond 2 x 3 days.
  root = tmp_path / "verdicts"
  _record(root, {1: False, 2: False, 3: False, 4: True, 5: True, 6: True,
                 7: True})
  query = _window_query(tmp_path, root)
  from pipeline.components import bigquery_example_gen  # noqa: PLC0415
  (split,) = _day_config().splits
  assert query == bigquery_example_gen.window_query(
      split.pattern, [D - 6, D - 5, D - 4])


def test_no_passed_day_on_record_is_one_line(tmp_path):
  _record(tmp_path / "verdicts", {1: False})
  with pytest.raises(TaxiDemandError) as raised:
    _window_query(tmp_path, tmp_path / "verdicts")
  message = str(raised.value)
  assert "\n" not in message
  assert message.startswith("no day before 2024-02-10 has passed data "
                            "validation on record at ")


def test_the_rule_is_the_local_resolvers():
  assert spans.window_days(10, 3, [9, 7, 6, 5, 4, 3]) == [6, 7, 9]
  assert spans.window_days(10, 3, [6, 5, 4, 3]) == [4, 5, 6]
  assert spans.window_days(10, 3, [10, 11]) == []
  assert spans.window_days(10, 3, []) == []


def test_a_broken_verdict_or_query_key_is_one_line(tmp_path):
  root = tmp_path / "verdicts"
  _record(root, {1: True})
  (root / _key() / f"{D - 1}.json").write_text("{not json")
  store = verdicts.VerdictStore(root)
  with pytest.raises(TaxiDemandError, match=f"^unreadable day verdict "
                     f".*{D - 1}.json: "):
    store.window(_key(), D, TRAIN_DAYS)
  with pytest.raises(TaxiDemandError, match="^bad query key '../x'"):
    store.window("../x", D, TRAIN_DAYS)
