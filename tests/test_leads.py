"""A forecast issued nearer its slot knows more and scores no worse.

On the session's simulated city (known intensity) and its model trained by
run_fn: the same target slots issued at lead 0 and at lead 5. At lead 0
the slot before the target is complete; at lead 5 it has 5 minutes to go.
"""

import numpy as np
import pytest

from conftest import RUN_SPANS
from conftest import _load_predictor
from conftest import _query_config
from taxi_demand import features as F

# The features a forecast knows before the slot under way (the lags, the
# windows before it, the settled history): the same at every tick of it.
_BEFORE_THE_SLOT_UNDER_WAY = (F.HISTORY_FEATURES + F.CITY_FEATURES)


def _examples(warehouse, lead: int):
  """Every day's examples of the runs' days, all issued `lead` minutes
  before their slot, in one key order."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  with open_reader(warehouse) as wh:
    tables = [wh.query_demand(_query_config(), span, lead_minutes=lead)
              for span in RUN_SPANS]
  columns = {name: np.concatenate([t.column(name).to_numpy() for t in tables])
             for name in F.RAW_COLUMNS}
  order = np.lexsort((columns[F.CELL], columns[F.SLOT_START]))
  return {name: values[order] for name, values in columns.items()}


@pytest.mark.slow
def test_lead_0_holds_the_complete_slot_and_scores_no_worse_than_lead_5(city):
  at_0, at_5 = _examples(city.warehouse, 0), _examples(city.warehouse, 5)
  for key in (F.CELL, F.SLOT_START, F.LABEL):
    np.testing.assert_array_equal(at_0[key], at_5[key])
  # Lead 0 knows what lead 5 knows, in the same features, and the last 5
  # minutes of the slot under way besides: the complete slot.
  for name in _BEFORE_THE_SLOT_UNDER_WAY:
    np.testing.assert_array_equal(at_0[name], at_5[name], err_msg=name)
  assert set(at_0[F.NOW_ELAPSED]) == {1.0}
  assert np.all(at_0[F.NOW_PICKUPS] >= at_5[F.NOW_PICKUPS])
  assert at_0[F.NOW_PICKUPS].sum() > at_5[F.NOW_PICKUPS].sum()

  predict = _load_predictor(city.model_dir)
  mae = {}
  for lead, examples in ((0, at_0), (5, at_5)):
    served = {c: examples[c] for c in F.SERVING_COLUMNS}
    predicted = np.asarray(predict(served)["predicted_pickups"], float)
    mae[lead] = float(np.mean(np.abs(predicted - examples[F.LABEL])))
  # "Not worse" as the issue measures it: within 2% of the longer lead, or
  # below. Measured: 1.145 against 1.100 (+4.1%) when the boundary tick's
  # slot under way was the target itself (every lag one slot nearer than at
  # the other ticks); 1.104 against 1.105 once it is the slot just ended.
  assert mae[0] <= 1.02 * mae[5], mae
