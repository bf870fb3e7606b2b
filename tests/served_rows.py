"""Served rows appended to a served log: one tick of made-up rows (test_gcs.py
and the child processes it kills mid-append, which import this module, not
a test module), or the city's own serving features at a few ticks."""

import datetime

import pyarrow as pa

from taxi_demand import features
from taxi_demand.serving import servelog


def served(slots, issued, cells=(1, 2, 3)) -> pa.Table:
  """Served feature rows for `slots` x `cells`, issued at `issued`; every
  feature 1."""
  rows = {c: [] for c in features.SERVING_COLUMNS}
  for slot in slots:
    for cell in cells:
      for c in features.SERVING_COLUMNS:
        rows[c].append(cell if c == features.CELL else slot
                       if c == features.SLOT_START else issued
                       if c == features.ISSUED_AT else
                       (slot - issued) // 60 if c == features.LEAD_MINUTES
                       else 1)
  return pa.table({c: pa.array(v, pa.int64() if c in features.INT_COLUMNS
                               else pa.float64()) for c, v in rows.items()})


def serve(root, issued, version="7", predicted=1.5):
  """The 5-minute job's tick at `issued`: the next two slots, appended to
  the served log at `root`. Returns the files written."""
  slots = [issued + 1800 * k for k in (1, 2)]
  table = served(slots, issued)
  return servelog.append(root, table, version,
                         datetime.datetime.utcfromtimestamp(issued),
                         data_age_s=60, predicted=[predicted] * table.num_rows)


def city_ticks(root, warehouse, day: datetime.date, ticks, version: str,
               forecast_column: str = "") -> None:
  """The 5-minute job's ticks at `ticks` ("HH:MM") of `day`: the
  warehouse's own serving features, every cell, two slots ahead; scored
  with the `forecast_column` feature as the forecast, if given."""
  from taxi_demand.data.warehouse import Warehouse  # noqa: PLC0415
  from taxi_demand.lineage import contract  # noqa: PLC0415
  with Warehouse(warehouse, read_only=True) as wh:
    for hhmm in ticks:
      at = datetime.datetime.fromisoformat(f"{day}T{hhmm}")
      issued = int(at.replace(tzinfo=datetime.timezone.utc).timestamp())
      rows = wh.serving_features(contract.RunParameters().query_config(),
                                 issued, 2)
      servelog.append(root, rows, version, at, data_age_s=60, predicted=(
          rows.column(forecast_column).to_pylist() if forecast_column
          else None))
