"""The supply forecast's rates recorded with a pushed model: fitted once from
the model's training window, read by the 5-minute job, skew and next-day.

A pushed version holds its SavedModel, `run_parameters.json` and, when the
Pusher could read the warehouse, `supply_rates.npz`: the flow balance's
rates (`taxi_demand.supply.Rates`) fitted from the trips of the days the
demand model was trained on, point in time (nothing known after the
window's end). So the supply forecast served beside a model's demand
forecast is that model's, not a fit made at serving time, and a served
row's `supply_rates` tag says which rates made it: `recorded:<digest>`
(the version's file) or `fit-at-serving` (a version pushed without one:
the four weeks before the serving day, as before).

numpy only: no TensorFlow, no TFX, no warehouse until asked.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from taxi_demand import supply

RATES_FILE = "supply_rates.npz"
# A served row's supply_rates tag: the model's recorded rates (and their
# digest), or the fit made when serving (a version pushed without them).
RECORDED = "recorded"
FIT_AT_SERVING = "fit-at-serving"
_DIGEST_CHARS = 12
_FIELDS = tuple(f.name for f in dataclasses.fields(supply.Rates))


@dataclasses.dataclass(frozen=True)
class RecordedRates:
  """Rates fitted over the window's cells, and one row for any other cell.

  Attributes:
    cells: the sorted cell ids seen in the window's trips.
    rates: over `cells` and, last, a cell never seen (the city's leave
      rate, no dropoffs, the mean trip time to and from it): what a cell
      that first appears after the window gets.
    begin, end: the window, epoch seconds.
    tag: what a served row records: `recorded:<digest of the file>`.
  """
  cells: np.ndarray
  rates: supply.Rates
  begin: int
  end: int
  tag: str = RECORDED

  def for_cells(self, cells: np.ndarray) -> supply.Rates:
    """The rates over `cells` (sorted ids), in their order."""
    idx = supply.cell_index(self.cells, np.asarray(cells, np.int64))
    idx = np.where(idx >= 0, idx, len(self.cells))   # unseen: the last row
    r = self.rates
    return dataclasses.replace(
        r, leave_per_s=r.leave_per_s[idx], dropoffs_per_s=r.dropoffs_per_s[idx],
        trip_mean_s=r.trip_mean_s[np.ix_(idx, idx)],
        pickups_per_s=(None if r.pickups_per_s is None
                       else r.pickups_per_s[idx]))

  def to_bytes(self) -> bytes:
    # Compressed, read once per process. The spell and trip distributions
    # are a bounded set of points with their CDF (`supply.distribution`),
    # so the file does not grow with the window's trips. Versions recorded
    # before hold every spell and trip and no `*_cdf` (7 MB for four weeks
    # of the growth bench's city): they read as they always did.
    sink = io.BytesIO()
    np.savez_compressed(
        sink, cells=self.cells, window=np.array([self.begin, self.end]),
        **{name: getattr(self.rates, name) for name in _FIELDS
           if getattr(self.rates, name) is not None})
    return sink.getvalue()

  @classmethod
  def from_bytes(cls, data: bytes) -> "RecordedRates":
    with np.load(io.BytesIO(data)) as saved:
      # A field missing from a file written before it was learned keeps
      # its default (`Rates.pickups_per_s`: None): old versions serve.
      rates = supply.Rates(**{name: saved[name] for name in _FIELDS
                              if name in saved.files})
      begin, end = (int(v) for v in saved["window"])
      return cls(saved["cells"], rates, begin, end, tag_of(data))


def tag_of(data: bytes) -> str:
  """`recorded:<digest>`: which file a served forecast's rates came from."""
  return f"{RECORDED}:{hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]}"


def fit_window(reader, cfg, begin: int, end: int) -> Optional[RecordedRates]:
  """The rates of the trips of [begin, end) in a warehouse reader, as known
  at `end`: a trip that ends after `end` counts as under way (its end is
  the future), and one not known by `end` under the arrival rule is not
  read. A window reaching before the warehouse's first day starts there.
  None if no trip of the window carries a taxi_id."""
  begin = supply.observed_from(reader, begin)
  table = reader.taxi_trips(cfg, begin, end, known_by=end)
  if table.num_rows == 0:
    return None
  cells = _cells_of(table)
  # One more id, above every seen one (sorted order kept): no trip touches
  # it, so the fit gives it what a cell never seen gets.
  with_unseen = np.r_[cells, (cells.max() + 1) if len(cells) else 0]
  trips = supply.TaxiTrips.from_table(with_unseen, table)
  future = trips.dropoff_at > end
  trips = dataclasses.replace(
      trips, dropoff=np.where(future, -1, trips.dropoff),
      dropoff_at=np.where(future, trips.pickup_at, trips.dropoff_at))
  rates = supply.Rates.fit(trips, len(with_unseen), begin, end)
  return RecordedRates(cells, rates, int(begin), int(end))


def _cells_of(table) -> np.ndarray:
  """The sorted cell ids the trips start or end in (unknown ones not):
  in Arrow, where a set of Python ints over weeks of trips took seconds."""
  import pyarrow as pa  # noqa: PLC0415
  import pyarrow.compute as pc  # noqa: PLC0415
  both = pa.chunked_array(
      table.column("pickup_cell").chunks + table.column("dropoff_cell").chunks,
      type=table.schema.field("pickup_cell").type)
  return np.sort(pc.unique(both).drop_null().to_numpy()).astype(np.int64)


def record(folder: Union[str, Path], warehouse, cfg, begin: int,
           end: int) -> Optional[Path]:
  """Fits the window's rates and writes them into a version's `folder`;
  None (nothing written) if no trip of the window carries a taxi_id."""
  from taxi_demand.data.reader import open_reader  # noqa: PLC0415
  with open_reader(warehouse) as reader:
    found = fit_window(reader, cfg, begin, end)
  if found is None:
    return None
  path = Path(folder) / RATES_FILE
  path.write_bytes(found.to_bytes())
  return path


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> RecordedRates:
  del mtime_ns  # part of the key only
  return RecordedRates.from_bytes(Path(path).read_bytes())


def recorded(model_dir: Union[str, Path]) -> Optional[RecordedRates]:
  """The rates recorded in a pushed version's local folder, read once per
  process (a version never changes); None if it was pushed without them."""
  path = Path(model_dir) / RATES_FILE
  try:
    stat = path.stat()
  except FileNotFoundError:
    return None
  return _load(str(path), stat.st_mtime_ns)


def rates_for(recorded_rates: Optional[RecordedRates], warehouse, cfg,
              cells: np.ndarray, day_begin: int
              ) -> Tuple[Optional[supply.Rates], str]:
  """(rates over `cells`, their tag): the recorded ones if given, else the
  four weeks before `day_begin` fitted at serving (`supply.cached_rates`;
  None where no trip there carries a taxi_id)."""
  if recorded_rates is not None:
    return recorded_rates.for_cells(cells), recorded_rates.tag
  return (supply.cached_rates(str(warehouse), cfg,
                              tuple(int(c) for c in cells), day_begin),
          FIT_AT_SERVING)
