"""One tick of served rows, appended to a served log: shared by test_gcs.py
and the child processes it kills mid-append (which import this module, not
a test module)."""

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
