"""Day verdicts: DataGate's decision on each day, kept where Vertex's nodes read it.

Locally the pipeline's resolvers ask ML Metadata which days DataGate passed
(`taxi_demand.lineage.queries`). Vertex compiles only TFX's built-in
resolvers, which cannot ask that, so there DataGate also writes its verdict
as one small JSON object per (query key, day) under the pipeline root, a
local folder or gs:// (`taxi_demand.objectstore`):

    <root>/<query key>/<span>.json   {"span", "passed", "query_key",
                                      "statistics_uri", "reasons"}

The window ExampleGen reads the days of its window from here, and DataGate
the previous passed day's statistics for its drift check. The query key is
`duckdb_example_gen.query_key` of the day's query: days made by another slot
length, grid or arrival rule are another dataset. A day run again replaces
its object: the newest verdict counts, as the newest ingest does locally.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Dict, Iterable, List, Optional, Tuple

from taxi_demand import objectstore
from taxi_demand import spans
from taxi_demand.errors import TaxiDemandError

# Under the pipeline root (`root_under`).
FOLDER = "day_verdicts"
_SUFFIX = ".json"
# query_key's digest: a name that is safe in a path and an object name.
_QUERY_KEY = re.compile(r"[0-9a-f]{8,64}")


def root_under(pipeline_root: str) -> str:
  """Where a pipeline's day verdicts live: FOLDER under its root."""
  return str(objectstore.join(pipeline_root, FOLDER))


def check_query_key(key: str) -> str:
  """A query key as `query_key` makes it, or one clear error."""
  if not _QUERY_KEY.fullmatch(str(key or "")):
    raise TaxiDemandError(
        f"bad query key {key!r}: expected the day query's hex digest "
        "(duckdb_example_gen.query_key)")
  return str(key)


@dataclasses.dataclass(frozen=True)
class DayVerdict:
  """What DataGate decided about one day made by one query.

  Attributes:
    span: the day.
    passed: whether the day may be trained on and compared against.
    query_key: the query that made the day's examples.
    statistics_uri: the day's ExampleStatistics artifact (its split
      folders hold the statistics), the next day's drift reference.
    reasons: DataGate's lines when refused.
  """
  span: int
  passed: bool
  query_key: str
  statistics_uri: str
  reasons: Tuple[str, ...] = ()

  def to_bytes(self) -> bytes:
    body = dataclasses.asdict(self)
    body["reasons"] = list(self.reasons)
    return json.dumps(body, indent=2, sort_keys=True).encode("utf-8")

  @classmethod
  def from_bytes(cls, data: bytes, where: str) -> "DayVerdict":
    try:
      body = json.loads(data)
      return cls(span=int(body["span"]), passed=bool(body["passed"]),
                 query_key=str(body["query_key"]),
                 statistics_uri=str(body["statistics_uri"]),
                 reasons=tuple(str(r) for r in body.get("reasons") or ()))
    except (ValueError, TypeError, KeyError) as e:
      raise TaxiDemandError(f"unreadable day verdict {where}: {e}") from None


class VerdictStore:
  """The day verdicts under one root (see the module docstring)."""

  def __init__(self, location: objectstore.Location):
    self.location = location
    self._store = objectstore.at(location)

  @staticmethod
  def _key(query_key: str, span: int) -> str:
    return f"{check_query_key(query_key)}/{int(span)}{_SUFFIX}"

  def write(self, verdict: DayVerdict) -> None:
    """Records (or replaces) the verdict of its day, whole."""
    self._store.write_bytes(self._key(verdict.query_key, verdict.span),
                            verdict.to_bytes())

  def read(self, query_key: str, days: Iterable[int]
           ) -> Dict[int, DayVerdict]:
    """{span: verdict} of those `days` that have one."""
    days = sorted({int(d) for d in days})
    keys = [self._key(query_key, d) for d in days]
    found = {}
    for day, key, data in zip(days, keys, self._store.read_many(keys)):
      if isinstance(data, OSError):
        raise TaxiDemandError(f"cannot read the day verdict "
                              f"{self._store.child(key)}: {data}")
      if data is not None:
        found[day] = DayVerdict.from_bytes(data, str(self._store.child(key)))
    return found

  def recorded_days(self, query_key: str) -> List[int]:
    """The days with a verdict made by `query_key`, oldest first (one
    listing of names, a few bytes a day)."""
    _, names = self._store.listing(check_query_key(query_key))
    return sorted(int(n[:-len(_SUFFIX)]) for n in names
                  if n.endswith(_SUFFIX) and n[:-len(_SUFFIX)].isdigit())

  def passed_before(self, query_key: str, span: int
                    ) -> Optional[DayVerdict]:
    """The newest passed day before `span`: the drift check's reference,
    as PreviousSpanStrategy finds it in ML Metadata locally."""
    for day in reversed([d for d in self.recorded_days(query_key)
                         if d < int(span)]):
      verdict = self.read(query_key, [day]).get(day)
      if verdict is not None and verdict.passed:
        return verdict
    return None

  def window(self, query_key: str, span: int, days: int) -> List[int]:
    """The days a model for `span` trains on (`spans.window_days`), read
    from the verdicts of the 2 x `days` days before it."""
    first = spans.window_start(span, days)
    recorded = self.read(query_key, range(first, int(span)))
    return spans.window_days(span, days, [d for d, v in recorded.items()
                                          if v.passed])
