"""Spans: days since 1970-01-01, the unit of every daily run and partition."""

from __future__ import annotations

import datetime
from typing import Iterable, List, Optional

from taxi_demand.errors import TaxiDemandError

EPOCH = datetime.date(1970, 1, 1)


def span_of(day: datetime.date) -> int:
  """The span of a calendar day."""
  return (day - EPOCH).days


def day_of(span: int) -> datetime.date:
  """The calendar day of a span."""
  return EPOCH + datetime.timedelta(days=int(span))


def date_of(span: Optional[int]) -> Optional[str]:
  """A span as YYYY-MM-DD; None stays None (an unrecorded span)."""
  return None if span is None else day_of(span).isoformat()


def parse_day(text: str) -> datetime.date:
  """YYYY-MM-DD, or one clear error naming what was given."""
  try:
    return datetime.date.fromisoformat(str(text))
  except (TypeError, ValueError):
    raise TaxiDemandError(f"bad date {text!r}: expected YYYY-MM-DD") from None


def parse_span(text: str) -> int:
  """The span of a YYYY-MM-DD date."""
  return span_of(parse_day(text))


SECONDS_PER_DAY = 86_400


def start_of(span: int) -> int:
  """Epoch seconds at the first moment of a span (warehouse wall clock)."""
  return int(span) * SECONDS_PER_DAY


def span_of_epoch(seconds: float) -> int:
  """The span that holds an epoch second (warehouse wall clock)."""
  return int(seconds) // SECONDS_PER_DAY


def day_of_epoch(seconds: float) -> datetime.date:
  """The calendar day that holds an epoch second (warehouse wall clock)."""
  return day_of(span_of_epoch(seconds))


def day_before(day: datetime.date) -> int:
  """The span of the day before `day`: a daily run's default day."""
  return span_of(day) - 1


def newest_complete_day(now: datetime.datetime, time_zone: str,
                        ready_after_hours: float = 0.0) -> int:
  """The span of the newest day that has ended in `time_zone`, by `now`,
  at least `ready_after_hours` ago (the table's freshness lag).

  A day ends at the next local midnight, an instant that daylight saving
  moves in UTC, so a schedule written in UTC would take a day that is
  still going on in the city for part of the year.

  Args:
    now: an aware datetime (a naive one is read as UTC), such as a run's
      scheduled time.
    time_zone: an IANA name, e.g. "America/Chicago".
    ready_after_hours: hours after a day's end before its trips count as
      loaded.
  """
  from zoneinfo import ZoneInfo  # noqa: PLC0415  (a cloud-only question)
  zone = ZoneInfo(time_zone)
  if now.tzinfo is None:
    now = now.replace(tzinfo=datetime.timezone.utc)
  lag = datetime.timedelta(hours=float(ready_after_hours))
  day = now.astimezone(zone).date()
  while True:
    end = datetime.datetime.combine(day, datetime.time(0), tzinfo=zone)
    # In UTC: adding to a zoned time adds wall-clock hours, not elapsed ones.
    if end.astimezone(datetime.timezone.utc) + lag <= now:
      return span_of(day) - 1
    day -= datetime.timedelta(days=1)


def window_start(span: int, days: int) -> int:
  """The oldest day a `days`-day training window for `span` may hold.

  A refused day is replaced by one further back, but a model is never
  silently trained on a month-old window: 2 x `days` back at most.
  """
  return int(span) - 2 * int(days)


def window_days(span: int, days: int, passed: Iterable[int]) -> List[int]:
  """THE window rule: the last `days` of the `passed` days before `span`.

  Oldest first, never before `window_start`. Only days that were ingested
  and passed DataGate may be given as `passed`: a day without a verdict
  was never checked, so it is not trained on. Both platforms ask it: the
  local resolver of its ML Metadata records, Vertex's window ExampleGen of
  the day verdicts (`taxi_demand.data.verdicts`).
  """
  first = window_start(span, days)
  ok = sorted({int(d) for d in passed if first <= int(d) < int(span)})
  return ok[max(len(ok) - int(days), 0):]


def format_epoch(epoch: int) -> str:
  """Epoch seconds (naive Chicago wall clock) as 'YYYY-MM-DD HH:MM'."""
  return datetime.datetime.fromtimestamp(
      int(epoch), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
