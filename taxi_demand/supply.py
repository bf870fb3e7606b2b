"""Supply: idle taxis per cell and slot, from trips alone.

A taxi that dropped a passenger off waits, empty, in the dropoff cell until
its next pickup (`sql.idle_intervals_bigquery` finds those waits; a gap over
the cap is a shift's end, not supply). Here the waits become the mean
number of idle taxis in each (cell, slot): idle taxi-seconds over the slot's
seconds.
"""

from __future__ import annotations

from typing import Dict, Tuple

import pyarrow as pa


def idle_taxis_per_slot(intervals: pa.Table, begin: int, end: int,
                        slot_seconds: int) -> Dict[Tuple[int, int], float]:
  """{(cell, slot_start): mean idle taxis} over the slots of [begin, end).

  `intervals` has `Warehouse.idle_intervals`' columns (cell, idle_start,
  idle_end); each wait counts for the part of it inside each slot.
  """
  out: Dict[Tuple[int, int], float] = {}
  for cell, start, stop in zip(intervals.column("cell").to_pylist(),
                               intervals.column("idle_start").to_pylist(),
                               intervals.column("idle_end").to_pylist()):
    start, stop = max(int(start), begin), min(int(stop), end)
    slot = start - (start - begin) % slot_seconds
    while slot < stop:
      overlap = min(stop, slot + slot_seconds) - max(start, slot)
      key = (int(cell), slot)
      out[key] = out.get(key, 0.0) + overlap / slot_seconds
      slot += slot_seconds
  return out
